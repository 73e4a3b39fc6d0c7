//! The tenant share tree: partnership → class (industry, sme, research, public) → organisation
//! → project. It is both the fair-share tree and the unit of accounting. Jobs are charged to
//! leaves (projects); usage of an inner node is the sum of its subtree.

use crate::error::ModelError;
use crate::ids::AccountId;
use serde::{Deserialize, Serialize};

/// One node of the tree. The root (id 0) is the partnership itself and has an empty path.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Account {
    /// Slash-separated path from the root, e.g. `research/inria/vision`.
    pub path: String,
    pub parent: Option<AccountId>,
    pub children: Vec<AccountId>,
    /// Raw shares relative to the siblings.
    pub shares: f64,
    /// Fraction of the whole facility this node is entitled to:
    /// the product of shares / sum of sibling shares along the path from the root.
    pub norm_share: f64,
    pub quota: Quota,
}

/// Capacity a subtree is guaranteed and may not exceed (Kueue's nominal quota and borrowing
/// limit, in GPUs).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    /// GPUs the subtree gets back within bounded time when it has demand.
    #[serde(default)]
    pub guarantee_gpus: Option<u64>,
    /// The same as a fraction of the facility's GPUs.
    #[serde(default)]
    pub guarantee_fraction: Option<f64>,
    /// Most GPUs the subtree may hold at once, borrowing included.
    #[serde(default)]
    pub limit_gpus: Option<u64>,
    /// Reclaim the guarantee by preempting borrowers, not only by waiting for their jobs to end.
    #[serde(default)]
    pub reclaim_by_preemption: bool,
}

impl Quota {
    /// The guarantee in GPUs on a facility of `total` GPUs.
    pub fn guarantee(&self, total: u64) -> Option<u64> {
        self.guarantee_gpus.or(self.guarantee_fraction.map(|f| (f * total as f64).floor() as u64))
    }
    pub fn is_set(&self) -> bool {
        self.guarantee_gpus.is_some() || self.guarantee_fraction.is_some() || self.limit_gpus.is_some()
    }
}

impl Account {
    pub fn is_leaf(&self) -> bool {
        self.children.is_empty()
    }
    /// The top-level segment: the class (industry, sme, research, public).
    pub fn class(&self) -> &str {
        self.path.split('/').next().unwrap_or("")
    }
}

/// One `[[account]]` entry of a facility file: a path and its shares. Missing inner nodes are
/// created with 1 share.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AccountSpec {
    pub path: String,
    #[serde(default = "one")]
    pub shares: f64,
    #[serde(flatten)]
    pub quota: Quota,
}

impl AccountSpec {
    pub fn new(path: impl Into<String>, shares: f64) -> AccountSpec {
        AccountSpec { path: path.into(), shares, quota: Quota::default() }
    }
}

fn one() -> f64 {
    1.0
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TenantTree {
    nodes: Vec<Account>,
}

impl TenantTree {
    /// Builds the tree from path/shares entries. `origin` names the file for error messages.
    /// The tree of `accounts` (paths and shares, in order) with the quotas (guarantees, limits,
    /// reclaim) `quotas` gives the same paths: a store's or a snapshot's accounts under a
    /// facility file's quotas.
    pub fn with_quotas_of(
        accounts: &[(String, f64)],
        quotas: &TenantTree,
        origin: &str,
    ) -> Result<TenantTree, ModelError> {
        let specs: Vec<AccountSpec> = accounts
            .iter()
            .map(|(p, s)| {
                let mut a = AccountSpec::new(p.clone(), *s);
                if let Some((_, q)) = quotas.iter().find(|(_, q)| &q.path == p) {
                    a.quota = q.quota.clone();
                }
                a
            })
            .collect();
        TenantTree::from_specs(&specs, origin)
    }

    pub fn from_specs(specs: &[AccountSpec], origin: &str) -> Result<TenantTree, ModelError> {
        let mut tree = TenantTree {
            nodes: vec![Account {
                path: String::new(),
                parent: None,
                children: vec![],
                shares: 1.0,
                norm_share: 1.0,
                quota: Quota::default(),
            }],
        };
        let mut explicit = vec![false];
        for (i, spec) in specs.iter().enumerate() {
            let field = format!("account[{i}]");
            if !(spec.shares.is_finite() && spec.shares > 0.0) {
                return Err(ModelError::invalid(origin, format!("{field}.shares"), "must be a positive number"));
            }
            let path = spec.path.trim().trim_matches('/');
            if path.is_empty() || path.split('/').any(|s| s.trim().is_empty()) {
                return Err(ModelError::invalid(
                    origin,
                    format!("{field}.path"),
                    format!("'{}' is not a path like class/org/project", spec.path),
                ));
            }
            let id = tree.ensure(path, &mut explicit);
            if explicit[id.idx()] {
                return Err(ModelError::invalid(origin, format!("{field}.path"), format!("'{path}' is listed twice")));
            }
            explicit[id.idx()] = true;
            tree.nodes[id.idx()].shares = spec.shares;
            if let Some(f) = spec.quota.guarantee_fraction {
                if !(0.0..=1.0).contains(&f) {
                    return Err(ModelError::invalid(
                        origin,
                        format!("{field}.guarantee_fraction"),
                        "must be in [0, 1]",
                    ));
                }
            }
            if let (Some(g), Some(l)) = (spec.quota.guarantee_gpus, spec.quota.limit_gpus) {
                if l < g {
                    return Err(ModelError::invalid(origin, format!("{field}.limit_gpus"), "is below guarantee_gpus"));
                }
            }
            tree.nodes[id.idx()].quota = spec.quota.clone();
        }
        if tree.nodes.len() == 1 {
            return Err(ModelError::invalid(origin, "account", "the tenant tree has no accounts"));
        }
        tree.normalise();
        Ok(tree)
    }

    fn ensure(&mut self, path: &str, explicit: &mut Vec<bool>) -> AccountId {
        let mut cur = AccountId(0);
        let mut prefix = String::new();
        for seg in path.split('/') {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(seg.trim());
            let found = self.nodes[cur.idx()].children.iter().copied().find(|c| self.nodes[c.idx()].path == prefix);
            cur = match found {
                Some(c) => c,
                None => {
                    let id = AccountId(self.nodes.len() as u32);
                    self.nodes.push(Account {
                        path: prefix.clone(),
                        parent: Some(cur),
                        children: vec![],
                        shares: 1.0,
                        norm_share: 0.0,
                        quota: Quota::default(),
                    });
                    explicit.push(false);
                    self.nodes[cur.idx()].children.push(id);
                    id
                }
            };
        }
        cur
    }

    fn normalise(&mut self) {
        // Parents are always created before their children, so one forward pass suffices.
        for i in 1..self.nodes.len() {
            let parent = self.nodes[i].parent.expect("non-root has a parent").idx();
            let sibling_sum: f64 = self.nodes[parent].children.iter().map(|c| self.nodes[c.idx()].shares).sum();
            self.nodes[i].norm_share = self.nodes[parent].norm_share * self.nodes[i].shares / sibling_sum;
        }
    }

    pub fn get(&self, id: AccountId) -> &Account {
        &self.nodes[id.idx()]
    }
    pub fn len(&self) -> usize {
        self.nodes.len()
    }
    pub fn is_empty(&self) -> bool {
        self.nodes.len() <= 1
    }
    pub fn iter(&self) -> impl Iterator<Item = (AccountId, &Account)> {
        self.nodes.iter().enumerate().map(|(i, a)| (AccountId(i as u32), a))
    }
    /// The accounts jobs can be charged to, in tree order.
    pub fn leaves(&self) -> impl Iterator<Item = (AccountId, &Account)> {
        self.iter().filter(|(_, a)| a.is_leaf() && a.parent.is_some())
    }

    /// Finds a leaf by its full path, or by its last segment when that is unique.
    pub fn resolve(&self, name: &str) -> Result<AccountId, String> {
        let name = name.trim().trim_matches('/');
        if let Some((id, a)) = self.iter().find(|(_, a)| a.path == name) {
            return if a.is_leaf() {
                Ok(id)
            } else {
                Err(format!(
                    "account '{name}' is not a project (a leaf of the tenant tree); jobs are charged to leaves"
                ))
            };
        }
        let mut matches = self.leaves().filter(|(_, a)| a.path.rsplit('/').next() == Some(name));
        match (matches.next(), matches.next()) {
            (Some((id, _)), None) => Ok(id),
            (Some(_), Some(_)) => Err(format!("account '{name}' is ambiguous; give its full path")),
            _ => Err(format!("unknown account '{name}'")),
        }
    }

    /// The built-in tenant mix of a public-private AI gigafactory, as described in the README:
    /// industry 35, SMEs 20, research 35, public sector 10 shares.
    pub fn default_tree() -> TenantTree {
        let specs: Vec<AccountSpec> = [
            ("industry", 35.0),
            ("industry/auto-ag/driving", 1.0),
            ("industry/pharma-co/biofm", 1.0),
            ("industry/telco-eu/llm", 1.0),
            ("industry/telco-eu/speech", 1.0),
            ("sme", 20.0),
            ("sme/startup-a/llm", 1.0),
            ("sme/startup-b/vision", 1.0),
            ("sme/startup-c/agents", 1.0),
            ("sme/startup-d/robotics", 1.0),
            ("research", 35.0),
            ("research/open-llm/pretrain", 2.0),
            ("research/open-llm/eval", 1.0),
            ("research/uni-consortium/nlp", 1.0),
            ("research/climate-inst/weather", 1.0),
            ("research/bio-lab/protein", 1.0),
            ("public", 10.0),
            ("public/health-agency/imaging", 1.0),
            ("public/admin-ai/assistant", 1.0),
        ]
        .iter()
        .map(|(p, s)| AccountSpec::new(p.to_string(), *s))
        .collect();
        TenantTree::from_specs(&specs, "built-in tenant tree").expect("built-in tree is valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(p: &str, s: f64) -> AccountSpec {
        AccountSpec::new(p, s)
    }

    #[test]
    fn normalised_shares_multiply_down_the_tree() {
        // industry 3 : research 1 → 0.75 / 0.25; inside industry a:b = 1:2 → 0.25 / 0.5.
        let t = TenantTree::from_specs(
            &[spec("industry", 3.0), spec("industry/x/a", 1.0), spec("industry/x/b", 2.0), spec("research/y/c", 1.0)],
            "t",
        )
        .unwrap();
        let share = |p: &str| t.get(t.resolve(p).unwrap()).norm_share;
        assert!((share("industry/x/a") - 0.25).abs() < 1e-12);
        assert!((share("b") - 0.5).abs() < 1e-12);
        assert!((share("c") - 0.25).abs() < 1e-12);
        assert_eq!(t.leaves().count(), 3);
    }

    #[test]
    fn leaves_sum_to_the_whole_facility() {
        let t = TenantTree::default_tree();
        let sum: f64 = t.leaves().map(|(_, a)| a.norm_share).sum();
        assert!((sum - 1.0).abs() < 1e-9);
    }

    #[test]
    fn bad_trees_name_the_field() {
        let e = TenantTree::from_specs(&[spec("a/b", 0.0)], "f.toml").unwrap_err().to_string();
        assert_eq!(e, "f.toml: account[0].shares: must be a positive number");
        let e = TenantTree::from_specs(&[spec("a//b", 1.0)], "f.toml").unwrap_err().to_string();
        assert!(e.starts_with("f.toml: account[0].path:"), "{e}");
        let e = TenantTree::from_specs(&[spec("a/b", 1.0), spec("a/b", 2.0)], "f.toml").unwrap_err().to_string();
        assert!(e.contains("listed twice"), "{e}");
    }

    #[test]
    fn quotas_parse_and_are_checked() {
        let mut s = spec("industry", 1.0);
        s.quota.guarantee_fraction = Some(0.3);
        s.quota.reclaim_by_preemption = true;
        let t = TenantTree::from_specs(&[s.clone(), spec("industry/a/b", 1.0)], "t").unwrap();
        let ind = t.iter().find(|(_, a)| a.path == "industry").unwrap().1;
        assert_eq!(ind.quota.guarantee(1000), Some(300));
        s.quota.guarantee_gpus = Some(500);
        s.quota.limit_gpus = Some(100);
        let e = TenantTree::from_specs(&[s], "f.toml").unwrap_err().to_string();
        assert_eq!(e, "f.toml: account[0].limit_gpus: is below guarantee_gpus");
    }

    #[test]
    fn resolving_names_inner_nodes_and_ambiguity() {
        let t = TenantTree::from_specs(&[spec("i/x/llm", 1.0), spec("r/y/llm", 1.0)], "t").unwrap();
        assert!(t.resolve("llm").unwrap_err().contains("ambiguous"));
        assert!(t.resolve("i/x").unwrap_err().contains("not a project"));
        assert!(t.resolve("nope").unwrap_err().contains("unknown account"));
        assert_eq!(t.get(t.resolve("r/y/llm").unwrap()).class(), "r");
    }
}

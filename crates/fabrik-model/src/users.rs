//! Who a tenant's jobs run as: the facility file's `[[run_as]]` entries map a subtree of the
//! share tree to a Unix user (and optionally a group and a Slurm account). Every executor that
//! runs real processes — local processes, Slurm — uses this one map, so a job never runs as the
//! control plane's own user.
//!
//! ```toml
//! [[run_as]]
//! account = "research"            # any node of the tree: its whole subtree
//! user = "fabrik-research"
//! group = "fabrik"                # optional: the user's primary group otherwise
//! slurm_account = "research"      # optional: the Slurm account its jobs are charged to
//! [[run_as]]
//! account = "research/uni-x/nlp"  # the most specific entry wins
//! user = "nlp-lab"
//! ```
//!
//! Names are checked here (POSIX portable user names, no `root`); whether they exist on a host
//! is the executor's concern.

use crate::error::ModelError;
use serde::{Deserialize, Serialize};

/// One `[[run_as]]` entry of a facility file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RunAsSpec {
    pub account: String,
    pub user: String,
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub slurm_account: Option<String>,
}

/// The Unix identity (by name) a job runs as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunAs {
    /// The subtree this entry covers (normalised path, no slashes at either end).
    pub account: String,
    pub user: String,
    pub group: Option<String>,
    pub slurm_account: Option<String>,
}

/// The account → Unix user map; the most specific (longest) matching subtree wins.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct UserMap {
    /// Sorted by path length, longest first, so the first match is the most specific.
    entries: Vec<RunAs>,
}

/// A name as POSIX's portable user and group names allow: `[A-Za-z_][A-Za-z0-9_.-]*`, at most
/// 32 characters (useradd's limit).
fn valid_name(s: &str) -> bool {
    let mut c = s.chars();
    s.len() <= 32
        && c.next().is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || matches!(x, '_' | '.' | '-'))
}

impl UserMap {
    /// Checks the entries of a facility file; `known` says whether an account path is a node of
    /// the share tree.
    pub fn from_specs(specs: &[RunAsSpec], origin: &str, known: impl Fn(&str) -> bool) -> Result<UserMap, ModelError> {
        let mut entries: Vec<RunAs> = Vec::with_capacity(specs.len());
        for (i, s) in specs.iter().enumerate() {
            let bad = |f: &str, m: String| ModelError::invalid(origin, format!("run_as[{i}].{f}"), m);
            let account = s.account.trim().trim_matches('/').to_string();
            if account.is_empty() {
                return Err(bad("account", "must not be empty".into()));
            }
            if !known(&account) {
                return Err(bad("account", format!("unknown account '{}'", s.account)));
            }
            if entries.iter().any(|e| e.account == account) {
                return Err(bad("account", format!("'{account}' is mapped twice")));
            }
            if !valid_name(&s.user) {
                return Err(bad("user", format!("'{}' is not a valid Unix user name", s.user)));
            }
            if s.user == "root" {
                return Err(bad("user", "jobs never run as root".into()));
            }
            if let Some(g) = &s.group {
                if !valid_name(g) {
                    return Err(bad("group", format!("'{g}' is not a valid Unix group name")));
                }
                if g == "root" {
                    return Err(bad("group", "jobs never run in group root".into()));
                }
            }
            if let Some(a) = &s.slurm_account {
                if a.is_empty() || a.len() > 64 || !a.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) {
                    return Err(bad("slurm_account", format!("'{a}' is not a valid Slurm account name")));
                }
            }
            entries.push(RunAs {
                account,
                user: s.user.clone(),
                group: s.group.clone(),
                slurm_account: s.slurm_account.clone(),
            });
        }
        entries.sort_by_key(|e| std::cmp::Reverse(e.account.len()));
        Ok(UserMap { entries })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entries(&self) -> &[RunAs] {
        &self.entries
    }

    /// The entry for a job of `account` (a full path): the longest mapped subtree holding it.
    pub fn resolve(&self, account: &str) -> Option<&RunAs> {
        self.entries.iter().find(|e| {
            account == e.account || (account.starts_with(&e.account) && account[e.account.len()..].starts_with('/'))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(account: &str, user: &str) -> RunAsSpec {
        RunAsSpec { account: account.into(), user: user.into(), group: None, slurm_account: None }
    }

    fn known(p: &str) -> bool {
        ["research", "research/uni-x", "research/uni-x/nlp", "industry"].contains(&p)
    }

    #[test]
    fn the_most_specific_subtree_wins() {
        let m = UserMap::from_specs(&[spec("research", "res"), spec("/research/uni-x/nlp/", "nlp")], "f.toml", known)
            .unwrap();
        assert_eq!(m.resolve("research/uni-x/nlp").unwrap().user, "nlp");
        assert_eq!(m.resolve("research/uni-x/nlp/sub").unwrap().user, "nlp");
        assert_eq!(m.resolve("research/uni-x/cv").unwrap().user, "res");
        assert_eq!(m.resolve("research").unwrap().user, "res");
        // a sibling whose name merely starts with a mapped one is not inside it
        assert!(m.resolve("researchers/x").is_none());
        assert!(m.resolve("industry/a").is_none());
    }

    #[test]
    fn bad_entries_name_their_field() {
        let err = |s: RunAsSpec| UserMap::from_specs(&[s], "f.toml", known).unwrap_err().to_string();
        assert!(
            err(spec("nowhere", "u")).contains("run_as[0].account: unknown account 'nowhere'"),
            "{}",
            err(spec("nowhere", "u"))
        );
        assert!(err(spec("", "u")).contains("run_as[0].account: must not be empty"));
        assert!(err(spec("research", "root")).contains("run_as[0].user: jobs never run as root"));
        assert!(err(spec("research", "a b")).contains("run_as[0].user: 'a b' is not a valid Unix user name"));
        assert!(err(spec("research", "-x")).contains("not a valid Unix user name"));
        assert!(err(spec("research", &"x".repeat(33))).contains("not a valid Unix user name"));
        let mut g = spec("research", "u");
        g.group = Some("root".into());
        assert!(err(g).contains("run_as[0].group: jobs never run in group root"));
        let mut s = spec("research", "u");
        s.slurm_account = Some("a;b".into());
        assert!(err(s).contains("run_as[0].slurm_account"));
        let twice = UserMap::from_specs(&[spec("research", "a"), spec("research/", "b")], "f.toml", known);
        assert!(twice.unwrap_err().to_string().contains("run_as[1].account: 'research' is mapped twice"));
    }
}

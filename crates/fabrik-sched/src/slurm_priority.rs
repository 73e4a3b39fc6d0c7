//! The `slurm` policy's job priority, as Slurm's priority plugins compute it.
//!
//! - `priority/basic`: submission order (Slurm gives each new job a priority one below the last;
//!   fabrik orders equal priorities by submission, which is the same order).
//! - `priority/multifactor` (slurm.conf(5) "PriorityWeight*", the "Multifactor Priority Plugin"
//!   page): `priority = ⌊w_age·age + w_fs·fs + w_js·size + w_part·partition + w_qos·qos⌋`, at
//!   least 1, each factor in [0, 1]:
//!   - age: time since the job became eligible over `PriorityMaxAge`, capped at 1;
//!   - job size (favour large, Slurm's default): the mean of the job's node share
//!     (min nodes / nodes) and CPU share (its CPU count over the cluster's CPUs, `CPUs=` of
//!     slurm.conf, else the facility's GPUs). A pending job's CPU count is its minimum, one
//!     per node, until it is allocated (`priority_multifactor.c`; measured on Slurm 22.05.8:
//!     InitPrio of 1-, 2- and 4-node jobs on 4 nodes of 8 CPUs is size 0.140625, 0.28125 and
//!     0.5625 whatever their GPUs). `PriorityFavorSmall=YES` takes 1 − each share;
//!   - partition: the default partition's `PriorityJobFactor` over the largest;
//!   - QOS: the job's QOS priority over the largest QOS priority;
//!   - fair-share, recomputed every `PriorityCalcPeriod` from usage decayed with
//!     `PriorityDecayHalfLife` (GPU-seconds, as `TRESBillingWeights=GRES/gpu=1` bills):
//!     Fair Tree (the default) or classic `2^(−U/S)` (`PriorityFlags=NO_FAIR_TREE`).
//!
//! Fair Tree (the "Fair Tree Fairshare Algorithm" page): at every level of the account tree,
//! siblings are ordered by their Level Fairshare `LF = S / U`, S the sibling's share of its
//! siblings' shares and U its share of their parent's usage (∞ without usage); the tree is
//! walked depth first in that order, and the n users (fabrik's projects, the leaves) get ranks
//! n, n−1, … in the order visited: fs = rank / n. Siblings with equal LF tie: tied users share a
//! rank, and the children of tied accounts are merged and ordered together.

use crate::fairshare::Usage;
use crate::policy::{Policy, PriorityCtx};
use crate::scheduler::JobEntry;
use fabrik_model::slurm_sched::{FairShareAlgo, PriorityType, SlurmSched};
use fabrik_model::{AccountId, Facility, TenantTree};

pub struct SlurmPolicy {
    cfg: SlurmSched,
    /// CPUs and nodes of the cluster (the job-size factor's denominators).
    cluster_cpus: f64,
    nodes: f64,
    /// GPUs per node of the largest pool (a job's minimum node count).
    node_gpus: u32,
    /// Fair-share factor per account at the last recalculation.
    fs: Vec<f64>,
}

impl SlurmPolicy {
    pub fn new(f: &Facility) -> SlurmPolicy {
        let node_gpus = f.pools.iter().map(|p| p.domain_gpus).max().unwrap_or(1).max(1);
        SlurmPolicy {
            cfg: f.slurm.clone(),
            cluster_cpus: f.slurm.cluster_cpus.unwrap_or(f.total_gpus()).max(1) as f64,
            nodes: f.domains.len().max(1) as f64,
            node_gpus,
            fs: vec![1.0; f.tenants.len()],
        }
    }

    fn multifactor(&self, ctx: &PriorityCtx<'_>, job: &JobEntry) -> f64 {
        let c = &self.cfg;
        let s = &job.spec;
        let eligible = s.earliest_start.map_or(s.submit, |e| e.max(s.submit));
        let waited = ctx.now.0.saturating_sub(eligible.0) as f64;
        let age = (waited / c.max_age_s.max(1) as f64).min(1.0);
        let min_nodes = f64::from(s.gpus.div_ceil(self.node_gpus));
        let (node_share, cpu_share) = (min_nodes / self.nodes, min_nodes / self.cluster_cpus);
        let size =
            if c.favor_small { ((1.0 - node_share) + (1.0 - cpu_share)) / 2.0 } else { (node_share + cpu_share) / 2.0 }
                .clamp(0.0, 1.0);
        let fs = self.fs.get(s.account.idx()).copied().unwrap_or(0.0);
        let p = f64::from(c.weight_age) * age
            + f64::from(c.weight_fairshare) * fs
            + f64::from(c.weight_job_size) * size
            + f64::from(c.weight_partition) * c.partition_factor()
            + f64::from(c.weight_qos) * c.qos_factor(&s.qos.to_string());
        // Slurm stores an integer; 0 means held
        p.floor().max(1.0)
    }
}

impl Policy for SlurmPolicy {
    fn name(&self) -> &'static str {
        "slurm"
    }
    fn backfill(&self) -> bool {
        self.cfg.backfill
    }
    fn dynamic(&self) -> bool {
        self.cfg.priority_type == PriorityType::Multifactor
    }
    fn refresh(&mut self, ctx: &PriorityCtx<'_>) {
        if self.cfg.priority_type != PriorityType::Multifactor || self.cfg.weight_fairshare == 0 {
            return;
        }
        self.fs = match self.cfg.fair_share {
            FairShareAlgo::FairTree => fair_tree(ctx.tenants, ctx.usage, self.cfg.root_user_association),
            FairShareAlgo::Classic => ctx.tenants.iter().map(|(a, _)| ctx.usage.factor(ctx.tenants, a)).collect(),
        };
    }
    fn priority(&self, ctx: &PriorityCtx<'_>, job: &JobEntry) -> f64 {
        match self.cfg.priority_type {
            PriorityType::Basic => 0.0,
            PriorityType::Multifactor => self.multifactor(ctx, job),
        }
    }
}

/// Stands for Slurm's `root` user association in Fair Tree (no account of the tree).
const ROOT_USER: AccountId = AccountId(u32::MAX);

/// Fair Tree's fair-share factor per account (meaningful for the leaves). `root_user`: Slurm's
/// accounting database holds user root in account root (created with the cluster), a user
/// without usage that Fair Tree ranks first and counts.
pub fn fair_tree(tenants: &TenantTree, usage: &Usage, root_user: bool) -> Vec<f64> {
    let n = tenants.len();
    // usage of each subtree: children have larger ids than their parents
    let mut sub = vec![0.0; n];
    for (a, acc) in tenants.iter() {
        if acc.is_leaf() {
            sub[a.idx()] = usage.usage_share(a);
        }
    }
    for i in (1..n).rev() {
        if let Some(p) = tenants.get(AccountId(i as u32)).parent {
            sub[p.idx()] += sub[i];
        }
    }
    let users = (tenants.leaves().count() + usize::from(root_user)).max(1);
    let mut out = vec![0.0; n];
    let mut st = FairTree { tenants, sub: &sub, out: &mut out, users, rank: users, rnt: users };
    let mut root = tenants.get(AccountId(0)).children.clone();
    if root_user {
        root.insert(0, ROOT_USER);
    }
    st.level(&root, false);
    out
}

struct FairTree<'a> {
    tenants: &'a TenantTree,
    sub: &'a [f64],
    out: &'a mut Vec<f64>,
    users: usize,
    rank: usize,
    rnt: usize,
}

impl FairTree<'_> {
    fn level_fs(&self, a: AccountId) -> f64 {
        if a == ROOT_USER {
            return f64::INFINITY;
        }
        let acc = self.tenants.get(a);
        let Some(parent) = acc.parent else { return f64::INFINITY };
        let shares: f64 = self.tenants.get(parent).children.iter().map(|&c| self.tenants.get(c).shares).sum();
        let s = if shares > 0.0 { acc.shares / shares } else { 0.0 };
        let pu = self.sub[parent.idx()];
        let u = if pu > 0.0 { self.sub[a.idx()] / pu } else { 0.0 };
        if s == 0.0 {
            0.0
        } else if u == 0.0 {
            f64::INFINITY
        } else {
            s / u
        }
    }

    fn level(&mut self, siblings: &[AccountId], account_tied: bool) {
        let mut sib: Vec<(f64, bool, AccountId)> =
            siblings.iter().map(|&a| (self.level_fs(a), a == ROOT_USER || self.tenants.get(a).is_leaf(), a)).collect();
        // higher Level Fairshare first; on ties users before accounts (stable otherwise)
        sib.sort_by(|x, y| y.0.total_cmp(&x.0).then(y.1.cmp(&x.1)));
        let mut prev: Option<f64> = None;
        let mut i = 0;
        while i < sib.len() {
            let (lf, leaf, a) = sib[i];
            let tied = if i == 0 { account_tied } else { prev == Some(lf) };
            if leaf {
                if !tied {
                    self.rank = self.rnt;
                }
                if a != ROOT_USER {
                    self.out[a.idx()] = self.rank as f64 / self.users as f64;
                }
                self.rnt = self.rnt.saturating_sub(1);
            } else {
                // accounts tied with this one (consecutive, same LF) have their children merged
                let mut j = i;
                while j + 1 < sib.len() && !sib[j + 1].1 && sib[j + 1].0 == lf {
                    j += 1;
                }
                let children: Vec<AccountId> =
                    sib[i..=j].iter().flat_map(|&(_, _, x)| self.tenants.get(x).children.clone()).collect();
                self.level(&children, tied);
                i = j;
            }
            prev = Some(lf);
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fabrik_model::tenants::AccountSpec;
    use fabrik_model::{JobSpec, Secs, SimTime};

    /// Accounts a (users x, y) and b (user z), equal shares; x used 300 GPU-s, y 100, z 200.
    fn tree_and_usage() -> (TenantTree, Usage, [AccountId; 3]) {
        let specs = [AccountSpec::new("a/x", 1.0), AccountSpec::new("a/y", 1.0), AccountSpec::new("b/z", 1.0)];
        let t = TenantTree::from_specs(&specs, "t").unwrap();
        let ids = ["a/x", "a/y", "b/z"].map(|p| t.iter().find(|(_, a)| a.path == p).unwrap().0);
        let mut u = Usage::new(t.len(), Secs(1_000_000_000));
        for (a, g) in ids.iter().zip([3, 1, 2]) {
            u.change(*a, g, SimTime(0));
            u.change(*a, -g, SimTime(100));
        }
        u.decay_to(SimTime(100));
        (t, u, ids)
    }

    #[test]
    fn fair_tree_ranks_users_depth_first_by_level_fairshare() {
        // Fair Tree page: "LF = S / U" per level; users are ranked in the order of a depth-first
        // traversal with siblings sorted by LF, and "FairShare factor = rank / user count".
        // Level 0: a has S = 1/2, U = 400/600 → LF 0.75; b has U = 200/600 → LF 1.5: b first.
        // Inside a: y (U = 100/400 → LF 2) before x (U = 300/400 → LF 0.667).
        let (t, u, [x, y, z]) = tree_and_usage();
        let fs = fair_tree(&t, &u, false);
        assert_eq!((fs[z.idx()], fs[y.idx()], fs[x.idx()]), (1.0, 2.0 / 3.0, 1.0 / 3.0));
        // Slurm's root user (no usage, LF ∞) comes first and counts: ranks 3, 2, 1 of 4
        let fs = fair_tree(&t, &u, true);
        assert_eq!((fs[z.idx()], fs[y.idx()], fs[x.idx()]), (0.75, 0.5, 0.25));
        // Without any usage every LF is ∞: all tie and share the top rank
        let idle = Usage::new(t.len(), Secs(1000));
        let fs = fair_tree(&t, &idle, true);
        assert_eq!((fs[x.idx()], fs[y.idx()], fs[z.idx()]), (1.0, 1.0, 1.0));
    }

    fn facility(slurm: &str) -> Facility {
        let text = format!(
            "name = \"f\"\n[[pool]]\ngpu = \"H100\"\ndomain_gpus = 8\ndomains_per_group = 4\ngroups = 1\n\
             [[account]]\npath = \"a/x\"\nshares = 1\n[[account]]\npath = \"a/y\"\nshares = 1\n\
             [[account]]\npath = \"b/z\"\nshares = 1\n[slurm]\n{slurm}\n"
        );
        Facility::from_toml(&text, "f.toml").unwrap()
    }

    #[test]
    fn multifactor_priority_is_the_floor_of_the_weighted_factors() {
        // Multifactor Priority Plugin: "Job_priority = site_factor + (PriorityWeightAge) *
        // (age_factor) + ... + (PriorityWeightFairshare) * (fair-share_factor) +
        // (PriorityWeightJobSize) * (job_size_factor) + ...", each factor in [0, 1].
        let f = facility(
            "priority_type = \"multifactor\"\nweight_age = 1000\nweight_fairshare = 10000\n\
             weight_job_size = 1000\nweight_partition = 100\nmax_age_s = 1000",
        );
        let (_, u, [x, y, z]) = tree_and_usage();
        let mut p = SlurmPolicy::new(&f);
        let ctx = PriorityCtx { now: SimTime(350), usage: &u, tenants: &f.tenants, max_gang: 32 };
        // the facility's tree has the same paths in the same order
        p.refresh(&ctx);
        let entry = |a: AccountId, gpus: u32| {
            crate::scheduler::JobEntry::for_test(JobSpec::new("j", a, gpus, SimTime(100), Secs(600)))
        };
        // x: 16 GPUs, 2 of 4 nodes, pending with one CPU per node of 32 CPUs (no CPUs= given:
        // the 32 GPUs): size (2/4 + 2/32)/2 = 0.28125 → 281.25; age 250/1000 → 250; Fair Tree
        // with the root user: x ranks 1 of 4 → 2500; partition 1 → 100: ⌊3131.25⌋
        assert_eq!(p.priority(&ctx, &entry(x, 16)), 3131.0);
        // y: 8 GPUs, one node: size (1/4 + 1/32)/2 → 140.625; fs 2/4 → 5000; age 250; partition
        // 100: ⌊5490.625⌋
        assert_eq!(p.priority(&ctx, &entry(y, 8)), 5490.0);
        // z: 1 GPU: size (1/4 + 1/32)/2 = 0.140625 → 140.625; fs 3/4 → 7500: ⌊7990.625⌋
        assert_eq!(p.priority(&ctx, &entry(z, 1)), 7990.0);
        // PriorityFavorSmall: 1 − each share: 1 GPU → ((1 − 1/4) + (1 − 1/32))/2 = 0.859375
        let f = facility("priority_type = \"multifactor\"\nweight_job_size = 1000\nfavor_small = true");
        let p = SlurmPolicy::new(&f);
        assert_eq!(p.priority(&ctx, &entry(z, 1)), 859.0);
        // classic fair-share: 2^(−U/S); z used 1/3 of all with a norm share of 1/2 → 2^(−2/3)
        let f = facility("priority_type = \"multifactor\"\nweight_fairshare = 10000\nfair_share = \"classic\"");
        let mut p = SlurmPolicy::new(&f);
        p.refresh(&ctx);
        assert_eq!(p.priority(&ctx, &entry(z, 1)), (10000.0 * (-2.0f64 / 3.0).exp2()).floor());
        // priority/basic: submission order alone
        let p = SlurmPolicy::new(&facility(""));
        assert_eq!(p.priority(&ctx, &entry(z, 1)), 0.0);
        assert!(!p.dynamic());
    }
}

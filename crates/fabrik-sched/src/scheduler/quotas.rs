//! Quotas: running GPUs per tenant node (its whole subtree), guarantees, limits and whether a
//! guarantee is reclaimed by preemption; the tier a job's quota gives it in the queue.

use super::{JobEntry, Scheduler};
use fabrik_model::{AccountId, SimTime};

impl Scheduler {
    pub(super) fn load_quotas(&mut self) {
        let n = self.tenants.len();
        self.node_running.resize(n, 0);
        self.guarantee = self.tenants.iter().map(|(_, a)| a.quota.guarantee(self.total_gpus)).collect();
        self.any_guarantee = self.guarantee.iter().any(Option::is_some);
        self.limit = self.tenants.iter().map(|(_, a)| a.quota.limit_gpus).collect();
        self.reclaim = self.tenants.iter().map(|(_, a)| a.quota.reclaim_by_preemption).collect();
    }

    /// The account and its ancestors, up to (not including) the root.
    pub(super) fn path_ids(&self, a: AccountId) -> impl Iterator<Item = AccountId> + '_ {
        std::iter::successors(Some(a), |&x| self.tenants.get(x).parent).filter(|x| x.0 != 0)
    }

    pub(super) fn account_change(&mut self, a: AccountId, gpus: i64, now: SimTime) {
        self.usage.change(a, gpus, now);
        let ids: Vec<AccountId> = self.path_ids(a).collect();
        for x in ids {
            let r = &mut self.node_running[x.idx()];
            *r = (*r as i64 + gpus).max(0) as u64;
        }
    }

    /// The guaranteed node under whose guarantee `gpus` more GPUs of account `a` would still fit.
    pub(super) fn within_guarantee(&self, a: AccountId, gpus: u32) -> Option<AccountId> {
        if !self.any_guarantee {
            return None;
        }
        self.path_ids(a)
            .find(|x| self.guarantee[x.idx()].is_some_and(|g| self.node_running[x.idx()] + u64::from(gpus) <= g))
    }

    /// The first node on the path whose limit `gpus` more GPUs would exceed.
    pub(super) fn over_limit(&self, a: AccountId, gpus: u32) -> Option<(AccountId, u64)> {
        self.path_ids(a).find_map(|x| {
            self.limit[x.idx()].filter(|&l| self.node_running[x.idx()] + u64::from(gpus) > l).map(|l| (x, l))
        })
    }

    /// A running job borrows when no guaranteed node on its path is within its guarantee.
    pub(super) fn is_borrower(&self, a: AccountId) -> bool {
        !self.path_ids(a).any(|x| self.guarantee[x.idx()].is_some_and(|g| self.node_running[x.idx()] <= g))
    }

    pub(super) fn tier_of(&self, j: &JobEntry, now: SimTime) -> u8 {
        self.tier_given(j, now, || self.within_guarantee(j.spec.account, j.spec.gpus).is_some())
    }

    /// The tier, with `within` telling whether the job fits under a guarantee on its path (the
    /// recalculation answers it from `guarantee_headroom`, once per account).
    pub(super) fn tier_given(&self, j: &JobEntry, now: SimTime, within: impl FnOnce() -> bool) -> u8 {
        if self.slurm.is_some() {
            // Slurm orders by priority alone: no starvation or guarantee tiers
            0
        } else if j.urgent || now - j.spec.submit >= self.cfg.starvation_after {
            2
        } else if within() {
            1
        } else {
            0
        }
    }

    /// Per account, the most GPUs more that would still fit under a guarantee on its path (the
    /// largest `guarantee − running` of its guaranteed nodes with room), or `None`: the same
    /// answer as `within_guarantee` for every job size, computed once per account.
    pub(super) fn guarantee_headroom(&self) -> Vec<Option<u64>> {
        if !self.any_guarantee {
            return Vec::new();
        }
        (0..self.tenants.len())
            .map(|a| {
                self.path_ids(AccountId(a as u32))
                    .filter_map(|x| self.guarantee[x.idx()].and_then(|g| g.checked_sub(self.node_running[x.idx()])))
                    .max()
            })
            .collect()
    }
}

//! Quotas: running GPUs per tenant node (its whole subtree), guarantees, limits and whether a
//! guarantee is reclaimed by preemption; the tier a job's quota gives it in the queue.
//!
//! [`Quotas`] is the sub-state; its methods take the tenant tree they walk. The scheduler's
//! wrappers below are what the pass's stages call.

use super::{JobEntry, Scheduler};
use fabrik_model::{AccountId, Secs, SimTime, TenantTree};

/// Per tenant node: running GPUs of its subtree, its guarantee and limit in GPUs, whether its
/// guarantee is reclaimed by preemption.
#[derive(Debug, Clone, Default)]
pub(super) struct Quotas {
    running: Vec<u64>,
    guarantee: Vec<Option<u64>>,
    /// Whether any node has a guarantee (skips the tree walk per job when none has).
    any_guarantee: bool,
    limit: Vec<Option<u64>>,
    reclaim: Vec<bool>,
}

/// The account and its ancestors, up to (not including) the root.
fn path(tenants: &TenantTree, a: AccountId) -> impl Iterator<Item = AccountId> + '_ {
    std::iter::successors(Some(a), |&x| tenants.get(x).parent).filter(|x| x.0 != 0)
}

impl Quotas {
    /// Reads the tree's quotas (guarantee fractions of `total_gpus`); running counts are kept.
    pub(super) fn load(&mut self, tenants: &TenantTree, total_gpus: u64) {
        self.running.resize(tenants.len(), 0);
        self.guarantee = tenants.iter().map(|(_, a)| a.quota.guarantee(total_gpus)).collect();
        self.any_guarantee = self.guarantee.iter().any(Option::is_some);
        self.limit = tenants.iter().map(|(_, a)| a.quota.limit_gpus).collect();
        self.reclaim = tenants.iter().map(|(_, a)| a.quota.reclaim_by_preemption).collect();
    }

    /// `gpus` more (or fewer) GPUs run in account `a`'s path.
    fn change(&mut self, tenants: &TenantTree, a: AccountId, gpus: i64) {
        for x in path(tenants, a) {
            let r = &mut self.running[x.idx()];
            *r = (*r as i64 + gpus).max(0) as u64;
        }
    }

    /// The guaranteed node under whose guarantee `gpus` more GPUs of account `a` would still fit.
    fn within_guarantee(&self, tenants: &TenantTree, a: AccountId, gpus: u32) -> Option<AccountId> {
        if !self.any_guarantee {
            return None;
        }
        path(tenants, a).find(|x| self.guarantee[x.idx()].is_some_and(|g| self.running[x.idx()] + u64::from(gpus) <= g))
    }

    /// The first node on the path whose limit `gpus` more GPUs would exceed.
    fn over_limit(&self, tenants: &TenantTree, a: AccountId, gpus: u32) -> Option<(AccountId, u64)> {
        path(tenants, a)
            .find_map(|x| self.limit[x.idx()].filter(|&l| self.running[x.idx()] + u64::from(gpus) > l).map(|l| (x, l)))
    }

    /// The first node on the path whose limit a job of `gpus` GPUs exceeds even alone.
    pub(super) fn never_fits(&self, tenants: &TenantTree, a: AccountId, gpus: u32) -> Option<(AccountId, u64)> {
        path(tenants, a).find_map(|x| self.limit[x.idx()].map(|l| (x, l))).filter(|&(_, l)| u64::from(gpus) > l)
    }

    /// A running job borrows when no guaranteed node on its path is within its guarantee.
    fn is_borrower(&self, tenants: &TenantTree, a: AccountId) -> bool {
        !path(tenants, a).any(|x| self.guarantee[x.idx()].is_some_and(|g| self.running[x.idx()] <= g))
    }

    /// Whether node `x`'s guarantee is taken back by preempting borrowers.
    pub(super) fn reclaims(&self, x: AccountId) -> bool {
        self.reclaim[x.idx()]
    }

    /// Per account, the most GPUs more that would still fit under a guarantee on its path (the
    /// largest `guarantee − running` of its guaranteed nodes with room), or `None`: the same
    /// answer as `within_guarantee` for every job size, computed once per account.
    fn headroom(&self, tenants: &TenantTree) -> Vec<Option<u64>> {
        if !self.any_guarantee {
            return Vec::new();
        }
        (0..tenants.len())
            .map(|a| {
                path(tenants, AccountId(a as u32))
                    .filter_map(|x| self.guarantee[x.idx()].and_then(|g| g.checked_sub(self.running[x.idx()])))
                    .max()
            })
            .collect()
    }
}

impl Scheduler {
    pub(super) fn load_quotas(&mut self) {
        self.quotas.load(&self.tenants, self.total_gpus);
    }

    /// The account and its ancestors, up to (not including) the root.
    pub(super) fn path_ids(&self, a: AccountId) -> impl Iterator<Item = AccountId> + '_ {
        path(&self.tenants, a)
    }

    /// A job of account `a` started (`gpus` > 0) or stopped (< 0): usage and running counts.
    pub(super) fn account_change(&mut self, a: AccountId, gpus: i64, now: SimTime) {
        self.usage.change(a, gpus, now);
        self.quotas.change(&self.tenants, a, gpus);
    }

    pub(super) fn within_guarantee(&self, a: AccountId, gpus: u32) -> Option<AccountId> {
        self.quotas.within_guarantee(&self.tenants, a, gpus)
    }

    pub(super) fn over_limit(&self, a: AccountId, gpus: u32) -> Option<(AccountId, u64)> {
        self.quotas.over_limit(&self.tenants, a, gpus)
    }

    pub(super) fn is_borrower(&self, a: AccountId) -> bool {
        self.quotas.is_borrower(&self.tenants, a)
    }

    pub(super) fn guarantee_headroom(&self) -> Vec<Option<u64>> {
        self.quotas.headroom(&self.tenants)
    }

    pub(super) fn tier_of(&self, j: &JobEntry, now: SimTime) -> u8 {
        self.tier_given(j, now, || self.within_guarantee(j.spec.account, j.spec.gpus).is_some())
    }

    /// The tier, with `within` telling whether the job fits under a guarantee on its path (the
    /// recalculation answers it from `guarantee_headroom`, once per account).
    pub(super) fn tier_given(&self, j: &JobEntry, now: SimTime, within: impl FnOnce() -> bool) -> u8 {
        tier_rule(self.slurm.is_some(), self.cfg.starvation_after, j, now, within)
    }
}

/// The tier rule itself (`Scheduler::tier_given`), for a walk that holds the table mutably.
pub(super) fn tier_rule(
    slurm: bool,
    starvation_after: Secs,
    j: &JobEntry,
    now: SimTime,
    within: impl FnOnce() -> bool,
) -> u8 {
    if slurm {
        // Slurm orders by priority alone: no starvation or guarantee tiers
        0
    } else if j.urgent || now - j.spec.submit >= starvation_after {
        2
    } else if within() {
        1
    } else {
        0
    }
}

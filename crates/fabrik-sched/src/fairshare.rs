//! Decayed usage per account, the input of the fair-share factor.
//!
//! Usage is GPU-seconds, decayed with a half-life (Slurm's PriorityDecayHalfLife, default 7 days).
//! GPU-seconds accrue exactly between changes; the decay is applied at each priority
//! recalculation (every `recalc_interval`, as Slurm's PriorityCalcPeriod), treating the usage of
//! the last interval as accrued at its end.

use fabrik_model::{AccountId, Secs, SimTime, TenantTree};
use serde::{Deserialize, Serialize};

/// Weights and constants of the multifactor priority (Slurm's priority/multifactor plugin):
/// priority = w_age·age + w_fairshare·F + w_size·size + w_qos·qos, each factor in [0, 1].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FairShareConfig {
    pub half_life: Secs,
    pub recalc_interval: Secs,
    /// Age at which the age factor reaches 1 (Slurm's PriorityMaxAge, default 7 days).
    pub max_age: Secs,
    pub w_age: f64,
    pub w_fairshare: f64,
    pub w_size: f64,
    pub w_qos: f64,
}

impl Default for FairShareConfig {
    fn default() -> Self {
        FairShareConfig {
            half_life: Secs(7 * 86_400),
            recalc_interval: Secs(300),
            max_age: Secs(7 * 86_400),
            w_age: 1_000.0,
            w_fairshare: 10_000.0,
            w_size: 1_000.0,
            w_qos: 2_000.0,
        }
    }
}

/// Serialised whole in a snapshot (the factor cache excepted: recomputed at the next decay).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Usage {
    half_life: f64,
    decayed: Vec<f64>,
    accrued: Vec<f64>,
    running_gpus: Vec<u64>,
    last_change: Vec<SimTime>,
    last_decay: SimTime,
    total: f64,
    /// Undecayed GPU-seconds ever charged, for reports.
    raw: Vec<f64>,
    /// The fair-share factor per account as of the last decay (empty: not computed): it
    /// changes only when usage decays or the tenant tree does, so a recalculation over many
    /// pending jobs computes it once per account.
    #[serde(skip)]
    factors: Vec<f64>,
}

impl Usage {
    pub fn new(accounts: usize, half_life: Secs) -> Usage {
        Usage {
            half_life: half_life.0.max(1) as f64,
            decayed: vec![0.0; accounts],
            accrued: vec![0.0; accounts],
            running_gpus: vec![0; accounts],
            last_change: vec![SimTime::ZERO; accounts],
            last_decay: SimTime::ZERO,
            total: 0.0,
            raw: vec![0.0; accounts],
            factors: Vec::new(),
        }
    }

    /// Makes room for accounts added to the tree.
    /// Whether usage read from a file fits a tree of `accounts` and holds sane values.
    pub fn check(&self, accounts: usize) -> Result<(), String> {
        let lens =
            [self.decayed.len(), self.accrued.len(), self.running_gpus.len(), self.last_change.len(), self.raw.len()];
        if lens.iter().any(|&n| n != accounts) {
            return Err(format!("per-account vectors of lengths {lens:?} for {accounts} accounts"));
        }
        let finite = |v: &[f64]| v.iter().all(|x| x.is_finite() && *x >= 0.0);
        let sane = self.half_life.is_finite()
            && self.half_life >= 1.0
            && finite(&self.decayed)
            && finite(&self.accrued)
            && finite(&self.raw)
            && self.total.is_finite()
            && self.total >= 0.0;
        if !sane {
            return Err("half-life and usage must be finite and non-negative".into());
        }
        Ok(())
    }

    /// The same usage on a clock `by` seconds behind (a snapshot moved into the twin's time).
    pub fn shifted_back(&self, by: u64) -> Usage {
        let t = |x: SimTime| SimTime(x.0.saturating_sub(by));
        let mut u = self.clone();
        u.last_decay = t(u.last_decay);
        u.last_change.iter_mut().for_each(|x| *x = t(*x));
        u
    }

    pub fn grow(&mut self, accounts: usize) {
        if accounts > self.decayed.len() {
            self.decayed.resize(accounts, 0.0);
            self.accrued.resize(accounts, 0.0);
            self.running_gpus.resize(accounts, 0);
            self.last_change.resize(accounts, self.last_decay);
            self.raw.resize(accounts, 0.0);
        }
        self.factors.clear();
    }

    fn accrue(&mut self, a: usize, now: SimTime) {
        let gs = self.running_gpus[a] as f64 * (now - self.last_change[a]).0 as f64;
        self.accrued[a] += gs;
        self.raw[a] += gs;
        self.last_change[a] = now;
    }

    /// A job of `gpus` GPUs starts (positive) or stops (negative) being charged to `a`.
    pub fn change(&mut self, a: AccountId, gpus: i64, now: SimTime) {
        self.accrue(a.idx(), now);
        self.running_gpus[a.idx()] = (self.running_gpus[a.idx()] as i64 + gpus).max(0) as u64;
    }

    /// Decays all usage to `now` and folds in what accrued since the last decay.
    pub fn decay_to(&mut self, now: SimTime) {
        let dt = (now - self.last_decay).0 as f64;
        let k = (-dt / self.half_life).exp2();
        self.total = 0.0;
        for a in 0..self.decayed.len() {
            self.accrue(a, now);
            self.decayed[a] = self.decayed[a] * k + self.accrued[a];
            self.accrued[a] = 0.0;
            self.total += self.decayed[a];
        }
        self.last_decay = now;
        self.factors.clear();
    }

    /// The account's share of all decayed usage, in [0, 1].
    pub fn usage_share(&self, a: AccountId) -> f64 {
        if self.total > 0.0 {
            self.decayed[a.idx()] / self.total
        } else {
            0.0
        }
    }

    /// Slurm's classic fair-share factor F = 2^(−U/S), with U the account's share of decayed
    /// usage and S its normalised share of the tree: 1 for an idle account, 0.5 at exactly its
    /// share, towards 0 above it.
    pub fn factor(&self, tenants: &TenantTree, a: AccountId) -> f64 {
        match self.factors.get(a.idx()) {
            Some(&f) if self.factors.len() == tenants.len() => f,
            _ => self.compute_factor(tenants, a),
        }
    }

    /// Computes every account's factor once, until the next decay or tree change (the caller
    /// passes the tree `factor` will be asked about).
    pub fn refresh_factors(&mut self, tenants: &TenantTree) {
        let f: Vec<f64> = (0..tenants.len()).map(|a| self.compute_factor(tenants, AccountId(a as u32))).collect();
        self.factors = f;
    }

    fn compute_factor(&self, tenants: &TenantTree, a: AccountId) -> f64 {
        let s = tenants.get(a).norm_share;
        if s <= 0.0 {
            return 0.0;
        }
        (-self.usage_share(a) / s).exp2()
    }

    /// Undecayed GPU-seconds charged to `a` up to `now` (including running jobs).
    pub fn gpu_seconds(&self, a: AccountId, now: SimTime) -> f64 {
        self.raw[a.idx()] + self.running_gpus[a.idx()] as f64 * (now - self.last_change[a.idx()]).0 as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_halves_after_one_half_life() {
        // Account 1 runs 8 GPUs for 100 s: 800 GPU-s. One half-life later (1000 s) with nothing
        // running, its decayed usage is 400 and it holds all usage.
        let mut u = Usage::new(3, Secs(1000));
        u.change(AccountId(1), 8, SimTime(0));
        u.change(AccountId(1), -8, SimTime(100));
        u.decay_to(SimTime(100));
        assert_eq!(u.decayed[1], 800.0);
        u.decay_to(SimTime(1100));
        assert_eq!(u.decayed[1], 400.0);
        assert_eq!(u.usage_share(AccountId(1)), 1.0);
        assert_eq!(u.gpu_seconds(AccountId(1), SimTime(5000)), 800.0);
    }

    #[test]
    fn fair_share_factor_is_one_half_at_exactly_the_share() {
        // Two leaves with equal shares (0.5 each) and equal usage: F = 2^(-0.5/0.5) = 0.5.
        let tenants = TenantTree::from_specs(
            &[
                fabrik_model::tenants::AccountSpec::new("a/x/p", 1.0),
                fabrik_model::tenants::AccountSpec::new("b/y/q", 1.0),
            ],
            "t",
        )
        .unwrap();
        let p = tenants.resolve("p").unwrap();
        let q = tenants.resolve("q").unwrap();
        let mut u = Usage::new(tenants.len(), Secs(1000));
        assert_eq!(u.factor(&tenants, p), 1.0);
        u.change(p, 4, SimTime(0));
        u.change(q, 4, SimTime(0));
        u.decay_to(SimTime(10));
        assert_eq!(u.factor(&tenants, p), 0.5);
        // Only p uses the machine from now on: after a long time its share tends to 1 → F → 0.25.
        u.change(q, -4, SimTime(10));
        u.decay_to(SimTime(1_000_000));
        assert!((u.factor(&tenants, p) - 0.25).abs() < 1e-6);
    }
}

//! The synthetic workload generator, calibrated to ../shared/reference/workload-statistics.md:
//!
//! - **Arrivals**: a Poisson process whose rate follows a daily cycle (peak at 14:00, trough at
//!   02:00, ±`diurnal_amplitude`) and a weekly one (weekends at `weekend_factor` of weekdays):
//!   "arrivals follow a strong diurnal and weekly cycle". Sampled by thinning.
//! - **Sizes**: powers of two from 1 GPU to 16,384 GPUs; by count most jobs use one GPU or one
//!   node (ITP: 83% single-GPU), while jobs of ≥ 256 GPUs hold ~90% of GPU-time (Kalos: "jobs
//!   ≥ 256 GPUs are few but dominate GPU-time"). Classes larger than a quarter of the largest
//!   gang the facility holds are dropped, so the mix scales down to small facilities.
//! - **Runtimes**: log-normal per size class (σ = 1.5: median minutes to hours, mean several
//!   times the median, "heavy-tailed"), capped at the 14-day maximum walltime; 30% of jobs fail
//!   early, after an exponential time with a 10-minute mean (Seren/Kalos: ~40% of jobs fail,
//!   "many jobs fail early").
//! - **Walltimes**: the runtime a job would have had, times a log-uniform over-estimate factor
//!   in [1.25, 5], rounded up to a whole hour ("users over-estimate requested walltime, often by
//!   several times"); 5% of jobs under-estimate (factor 0.5–1) and are killed at their walltime.
//! - **Tenants**: small jobs spread evenly over the classes; large jobs (≥ 256 GPUs) come mostly
//!   from industry and research. Within a class, projects are picked uniformly.
//! - **QoS**: 10% high, 80% normal, 10% low (low is preemptible); jobs of ≥ 64 GPUs checkpoint
//!   hourly.
//! - **Flexible jobs**: a share `flexible_share` (default 0) of the jobs whose walltime is at
//!   most `flexible_max_walltime_h` (default 24 h: evaluations, fine-tuning, batch inference —
//!   multi-day pre-training runs are not time-shiftable work) gets a deadline of submission +
//!   walltime + a slack drawn uniformly from `flexible_slack_h` (default 6–48 h). Drawn from a
//!   generator of its own, so the rest of the workload is the same with and without them.
//! - **Load**: the arrival rate is set so that offered load (GPU-time demanded per GPU-time
//!   available) equals `offered_load`, estimated from 200,000 draws of the same distributions.

use super::{TraceJob, Workload};
use fabrik_model::{AccountId, Facility, JobSpec, Qos, Secs, SimTime};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp, LogNormal};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyntheticConfig {
    pub days: f64,
    pub offered_load: f64,
    /// (GPUs, share of jobs by count, median runtime in hours).
    pub size_mix: Vec<(u32, f64, f64)>,
    pub runtime_sigma: f64,
    pub max_walltime_h: f64,
    pub early_fail_fraction: f64,
    pub early_fail_mean_min: f64,
    pub diurnal_amplitude: f64,
    pub weekend_factor: f64,
    /// Share of jobs that get a deadline (flexible), and the range of their slack, hours.
    pub flexible_share: f64,
    pub flexible_slack_h: (f64, f64),
    pub flexible_max_walltime_h: f64,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        SyntheticConfig {
            days: 30.0,
            offered_load: 0.85,
            size_mix: vec![
                (1, 0.70, 0.5),
                (2, 0.04, 1.0),
                (4, 0.05, 1.0),
                (8, 0.15, 2.0),
                (16, 0.02, 3.0),
                (32, 0.015, 4.0),
                (64, 0.01, 6.0),
                (128, 0.007, 8.0),
                (256, 0.004, 10.0),
                (512, 0.002, 12.0),
                (1024, 0.001, 16.0),
                (2048, 0.0005, 24.0),
                (4096, 0.000_25, 36.0),
                (8192, 0.000_1, 48.0),
                (16384, 0.000_04, 72.0),
            ],
            runtime_sigma: 1.5,
            max_walltime_h: 14.0 * 24.0,
            early_fail_fraction: 0.30,
            early_fail_mean_min: 10.0,
            diurnal_amplitude: 0.5,
            weekend_factor: 0.6,
            flexible_share: 0.0,
            flexible_slack_h: (6.0, 48.0),
            flexible_max_walltime_h: 24.0,
        }
    }
}

impl SyntheticConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(self.days > 0.0 && self.days <= 3660.0) {
            return Err(format!("days must be in (0, 3660] (ten years), got {:?}", self.days));
        }
        if !(self.offered_load > 0.0 && self.offered_load <= 10.0) {
            return Err(format!("offered load must be in (0, 10], got {}", self.offered_load));
        }
        if !(0.0..1.0).contains(&self.diurnal_amplitude) || !(0.0..=1.0).contains(&self.weekend_factor) {
            return Err("diurnal_amplitude must be in [0, 1) and weekend_factor in [0, 1]".to_string());
        }
        if self.size_mix.is_empty() || self.size_mix.iter().any(|&(g, w, m)| g == 0 || w < 0.0 || m <= 0.0) {
            return Err("size_mix needs entries with gpus ≥ 1, weight ≥ 0 and median > 0".to_string());
        }
        if !(0.0..=1.0).contains(&self.flexible_share) {
            return Err(format!("flexible share must be in [0, 1], got {}", self.flexible_share));
        }
        let (lo, hi) = self.flexible_slack_h;
        if !(lo >= 0.0 && hi >= lo && hi.is_finite()) {
            return Err(format!("flexible slack must be a range 0 ≤ low ≤ high hours, got {lo}–{hi}"));
        }
        Ok(())
    }
}

/// Arrival-rate multiplier at time `t`, relative to the weekly mean.
fn rate_shape(cfg: &SyntheticConfig, t: f64) -> f64 {
    let hour = (t / 3600.0) % 24.0;
    let day = ((t / 86_400.0) as u64) % 7; // day 0 is a Monday
    let daily = 1.0 + cfg.diurnal_amplitude * (std::f64::consts::TAU * (hour - 14.0) / 24.0).cos();
    let weekly = if day >= 5 { cfg.weekend_factor } else { 1.0 };
    let weekly_mean = (5.0 + 2.0 * cfg.weekend_factor) / 7.0;
    daily * weekly / weekly_mean
}

struct Sampler {
    sizes: Vec<(u32, f64, LogNormal<f64>)>,
    total_weight: f64,
    early: Exp<f64>,
    cfg: SyntheticConfig,
    /// Per class name: cumulative leaf lists for small and large jobs.
    small: Vec<(f64, AccountId)>,
    large: Vec<(f64, AccountId)>,
}

impl Sampler {
    fn new(cfg: &SyntheticConfig, f: &Facility) -> Sampler {
        let max_size = (f.max_gang(None) / 4).max(1);
        let mut sizes: Vec<(u32, f64, LogNormal<f64>)> = cfg
            .size_mix
            .iter()
            .filter(|(g, _, _)| u64::from(*g) <= max_size)
            .map(|&(g, w, m)| (g, w, LogNormal::new((m * 3600.0).ln(), cfg.runtime_sigma).expect("valid log-normal")))
            .collect();
        if sizes.is_empty() {
            sizes.push((1, 1.0, LogNormal::new(1800f64.ln(), cfg.runtime_sigma).expect("valid log-normal")));
        }
        let total_weight = sizes.iter().map(|s| s.1).sum();
        let class_weight = |class: &str, large: bool| -> f64 {
            match (class, large) {
                ("industry", false) | ("sme", false) | ("research", false) => 0.3,
                ("public", false) => 0.1,
                ("industry", true) => 0.45,
                ("research", true) => 0.40,
                ("sme", true) => 0.10,
                ("public", true) => 0.05,
                _ => 0.2,
            }
        };
        let cumulative = |large: bool| {
            let mut v = Vec::new();
            let mut acc = 0.0;
            for (id, a) in f.tenants.leaves() {
                let siblings_in_class = f.tenants.leaves().filter(|(_, b)| b.class() == a.class()).count() as f64;
                acc += class_weight(a.class(), large) / siblings_in_class;
                v.push((acc, id));
            }
            v
        };
        Sampler {
            sizes,
            total_weight,
            early: Exp::new(1.0 / (cfg.early_fail_mean_min * 60.0)).expect("valid exponential"),
            cfg: cfg.clone(),
            small: cumulative(false),
            large: cumulative(true),
        }
    }

    /// (gpus, runtime, walltime) of one job.
    fn job(&self, rng: &mut ChaCha8Rng) -> (u32, u64, u64) {
        let mut x = rng.gen::<f64>() * self.total_weight;
        let mut class = &self.sizes[self.sizes.len() - 1];
        for s in &self.sizes {
            if x < s.1 {
                class = s;
                break;
            }
            x -= s.1;
        }
        let cap = self.cfg.max_walltime_h * 3600.0;
        let intended = class.2.sample(rng).clamp(60.0, cap);
        let factor = if rng.gen::<f64>() < 0.05 {
            rng.gen_range(0.5..1.0)
        } else {
            (rng.gen_range(1.25f64.ln()..5f64.ln())).exp()
        };
        let walltime = ((intended * factor / 3600.0).ceil() * 3600.0).clamp(3600.0, cap);
        let runtime = if rng.gen::<f64>() < self.cfg.early_fail_fraction {
            self.early.sample(rng).clamp(1.0, intended)
        } else {
            intended
        };
        (class.0, runtime.round() as u64, walltime as u64)
    }

    fn account(&self, rng: &mut ChaCha8Rng, gpus: u32) -> AccountId {
        let list = if gpus >= 256 { &self.large } else { &self.small };
        let total = list.last().map_or(0.0, |l| l.0);
        let x = rng.gen::<f64>() * total;
        list.iter().find(|(c, _)| x < *c).or(list.last()).map_or(AccountId(0), |l| l.1)
    }
}

/// Mean GPU-seconds a job demands (run or killed at walltime), by Monte Carlo with its own seed.
fn mean_demand(s: &Sampler) -> f64 {
    let mut rng = ChaCha8Rng::seed_from_u64(0x5EED);
    let n = 200_000;
    let mut sum = 0.0;
    for _ in 0..n {
        let (g, r, w) = s.job(&mut rng);
        sum += f64::from(g) * r.min(w) as f64;
    }
    sum / f64::from(n)
}

/// Generates `cfg.days` of arrivals for facility `f` with the given seed.
pub fn generate(cfg: &SyntheticConfig, f: &Facility, seed: u64) -> Result<Workload, String> {
    cfg.validate()?;
    let s = Sampler::new(cfg, f);
    let rate = cfg.offered_load * f.total_gpus() as f64 / mean_demand(&s); // jobs per second
    let peak = (1.0 + cfg.diurnal_amplitude) / ((5.0 + 2.0 * cfg.weekend_factor) / 7.0);
    let horizon = cfg.days * 86_400.0;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let gaps = Exp::new(rate * peak).map_err(|e| e.to_string())?;
    let mut t = 0.0;
    let mut jobs = Vec::new();
    let mut flex_rng = ChaCha8Rng::seed_from_u64(seed ^ 0xF1E8);
    loop {
        t += gaps.sample(&mut rng);
        if t >= horizon {
            break;
        }
        if rng.gen::<f64>() * peak > rate_shape(cfg, t) {
            continue;
        }
        let (gpus, runtime, walltime) = s.job(&mut rng);
        let account = s.account(&mut rng, gpus);
        let mut spec = JobSpec::new(format!("syn-{}", jobs.len()), account, gpus, SimTime(t as u64), Secs(walltime));
        let q = rng.gen::<f64>();
        spec.qos = if q < 0.1 {
            Qos::High
        } else if q < 0.9 {
            Qos::Normal
        } else {
            Qos::Low
        };
        spec.preemptible = spec.qos == Qos::Low;
        if gpus >= 64 {
            spec.checkpoint_interval = Some(Secs::HOUR);
        }
        let (flexible, slack) = (flex_rng.gen::<f64>(), flex_rng.gen::<f64>());
        if flexible < cfg.flexible_share && walltime as f64 <= cfg.flexible_max_walltime_h * 3600.0 {
            let (lo, hi) = cfg.flexible_slack_h;
            spec.deadline = Some(spec.submit + spec.walltime + Secs(((lo + (hi - lo) * slack) * 3600.0) as u64));
        }
        jobs.push(TraceJob { spec, runtime: Secs(runtime) });
    }
    Ok(Workload {
        source: format!("synthetic: {} days, offered load {:.2}, seed {seed}", cfg.days, cfg.offered_load),
        notes: vec![format!(
            "synthetic arrival rate {:.0} jobs/day (weekly mean) for offered load {:.2}",
            rate * 86_400.0,
            cfg.offered_load
        )],
        jobs,
        clock_origin: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_shape_averages_to_one_over_a_week() {
        let cfg = SyntheticConfig::default();
        let n = 7 * 24 * 60;
        let mean: f64 = (0..n).map(|m| rate_shape(&cfg, m as f64 * 60.0 + 30.0)).sum::<f64>() / n as f64;
        assert!((mean - 1.0).abs() < 1e-3, "{mean}");
        // Monday 14:00 vs Saturday 02:00: (1.5 / 0.8857) vs (0.5 · 0.6 / 0.8857)
        let r = rate_shape(&cfg, 14.0 * 3600.0) / rate_shape(&cfg, 5.0 * 86_400.0 + 2.0 * 3600.0);
        assert!((r - 5.0).abs() < 1e-9, "{r}");
    }

    #[test]
    fn offered_load_matches_the_target_and_seeds_are_reproducible() {
        let f = Facility::preset("ai-factory").unwrap();
        let cfg = SyntheticConfig { days: 28.0, ..SyntheticConfig::default() };
        let w = generate(&cfg, &f, 7).unwrap();
        let demand: f64 =
            w.jobs.iter().map(|j| f64::from(j.spec.gpus) * j.runtime.0.min(j.spec.walltime.0) as f64).sum();
        let load = demand / (f.total_gpus() as f64 * 28.0 * 86_400.0);
        // Heavy tails make one month noisy; the estimate must land near the 0.85 target.
        assert!((0.6..1.1).contains(&load), "offered load {load}");
        assert!(w.jobs.iter().all(|j| j.spec.gpus <= 1024 && j.spec.gpus.is_power_of_two()));
        let single = w.jobs.iter().filter(|j| j.spec.gpus == 1).count() as f64 / w.jobs.len() as f64;
        assert!((0.6..0.8).contains(&single), "{single}");
        assert_eq!(w, generate(&cfg, &f, 7).unwrap());
        assert_ne!(w.jobs[0], generate(&cfg, &f, 8).unwrap().jobs[0]);
    }

    #[test]
    fn walltimes_are_whole_hours_and_some_jobs_underestimate() {
        let f = Facility::preset("small").unwrap();
        let w = generate(&SyntheticConfig { days: 60.0, ..SyntheticConfig::default() }, &f, 1).unwrap();
        assert!(w.jobs.iter().all(|j| j.spec.walltime.0 % 3600 == 0 && j.spec.gpus <= 32));
        let killed = w.jobs.iter().filter(|j| j.runtime > j.spec.walltime).count();
        assert!(killed > 0);
        assert!(generate(&SyntheticConfig { days: -1.0, ..SyntheticConfig::default() }, &f, 1).is_err());
    }

    #[test]
    fn a_flexible_share_adds_deadlines_without_changing_the_rest() {
        let f = Facility::preset("small").unwrap();
        let base = generate(&SyntheticConfig { days: 20.0, ..SyntheticConfig::default() }, &f, 3).unwrap();
        let cfg = SyntheticConfig { days: 20.0, flexible_share: 0.3, ..SyntheticConfig::default() };
        let flex = generate(&cfg, &f, 3).unwrap();
        assert_eq!(base.jobs.len(), flex.jobs.len());
        let mut n = 0;
        for (a, b) in base.jobs.iter().zip(&flex.jobs) {
            assert_eq!((a.spec.submit, a.spec.gpus, a.runtime), (b.spec.submit, b.spec.gpus, b.runtime));
            if let Some(d) = b.spec.deadline {
                n += 1;
                let slack = d.0 - b.spec.submit.0 - b.spec.walltime.0;
                assert!((6 * 3600..=48 * 3600).contains(&slack), "{slack}");
            }
        }
        let short = flex.jobs.iter().filter(|j| j.spec.walltime.0 <= 24 * 3600).count();
        let share = f64::from(n) / short as f64;
        assert!((0.27..0.33).contains(&share), "{share}");
        assert!(flex.jobs.iter().all(|j| j.spec.deadline.is_none() || j.spec.walltime.0 <= 24 * 3600));
        let bad = SyntheticConfig { flexible_share: 1.5, ..SyntheticConfig::default() };
        assert_eq!(generate(&bad, &f, 1).unwrap_err(), "flexible share must be in [0, 1], got 1.5");
    }
}

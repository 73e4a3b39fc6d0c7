//! Start-time forecasts for the queue of a running facility: repeated twin runs forked from a
//! snapshot, each with runtimes drawn from the runtime model (running jobs conditioned on what
//! they have run) and its own failure draws; per queued job, the median (P50) and 90th
//! percentile (P90) of its start over the runs.
//!
//! Runs stop being started once the wall-clock budget is spent (at least one always runs).
//! Each run also draws the arrivals of the next `arrivals_horizon`: per hour, a Poisson number
//! at the model's arrival rate, each a job resampled from the recent history (account, GPUs,
//! walltime) with a runtime from the model — under a priority policy a later submission can
//! overtake a queued job, and a forecast without arrivals starts it too early.

use crate::failure_model::FailureConfig;
use crate::fork::fork_with;
use crate::workload::{TraceJob, Workload};
use crate::Twin;
use fabrik_model::runtime_model::{Completed, RuntimeModel};
use fabrik_model::{Facility, JobSpec, Secs, SimTime};
use fabrik_sched::Snapshot;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Poisson};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct ForecastConfig {
    /// Twin runs at most.
    pub runs: usize,
    pub seed: u64,
    /// Wall time after which no further run is started.
    pub budget: Duration,
    /// Draw node failures in each run (the twin's failure model at its default rate).
    pub failures: bool,
    /// Use the runtimes a snapshot knows (the simulated executor's) instead of sampling them:
    /// for what-ifs on a simulated facility, never for an honest forecast.
    pub known_runtimes: bool,
    /// How far ahead arrivals are drawn (0: none).
    pub arrivals_horizon: Duration,
}

impl Default for ForecastConfig {
    fn default() -> Self {
        ForecastConfig {
            runs: 16,
            seed: 1,
            budget: Duration::from_secs(5),
            failures: true,
            known_runtimes: false,
            arrivals_horizon: Duration::from_secs(24 * 3600),
        }
    }
}

pub use fabrik_sched::{Forecast, JobForecast};

/// Arrivals drawn per run at most (a bound on a forecast's memory and time).
pub const MAX_ARRIVALS: u64 = 100_000;

/// The `q`-quantile of sorted values, nearest rank (the smallest value with at least a share
/// `q` of the values at or below it).
fn nearest_rank(sorted: &[u64], q: f64) -> u64 {
    let k = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[k - 1]
}

/// Arrivals for `horizon_s` after the snapshot (second 0 at its moment `at`, Unix): per hour a
/// Poisson number at the model's rate, each resampled from `history` (its account, if the
/// facility has it as a project, GPUs if they fit, walltime), its runtime from the model.
pub fn arrivals(
    model: &RuntimeModel,
    history: &[Completed],
    facility: &Facility,
    at: u64,
    horizon_s: u64,
    rng: &mut ChaCha8Rng,
) -> Workload {
    let mut jobs = Vec::new();
    let leaf = |path: &str| facility.tenants.iter().find(|(_, a)| a.path == path && a.is_leaf()).map(|(id, _)| id);
    let max_gang = facility.max_gang(None);
    if !history.is_empty() {
        for h in 0..horizon_s.div_ceil(3600) {
            let rate = model.arrival_rate(at + h * 3600);
            let n = if rate > 0.0 { Poisson::new(rate).map_or(0.0, |p| p.sample(rng)) as u64 } else { 0 };
            for _ in 0..n.min(MAX_ARRIVALS.saturating_sub(jobs.len() as u64)) {
                let c = &history[rng.gen_range(0..history.len())];
                let submit = h * 3600 + rng.gen_range(0..3600);
                let u: f64 = rng.gen();
                let Some(account) = leaf(&c.account) else { continue };
                if submit >= horizon_s || c.walltime_s == 0 || u64::from(c.gpus) > max_gang || c.gpus == 0 {
                    continue;
                }
                let spec = JobSpec::new(
                    format!("arrival-{}", jobs.len()),
                    account,
                    c.gpus,
                    SimTime(submit),
                    Secs(c.walltime_s),
                );
                let runtime = model.sample(&c.account, c.walltime_s, 0, u);
                jobs.push(TraceJob { spec, runtime: Secs(runtime) });
            }
        }
    }
    jobs.sort_by_key(|j| j.spec.submit);
    Workload { source: "arrivals drawn from history".into(), notes: vec![], jobs, clock_origin: None }
}

/// Forecasts the snapshot's queue on `facility` (the one it was taken on, with its accounts),
/// with runtimes and arrivals from `model` and `history`.
pub fn forecast(
    snap: &Snapshot,
    facility: &Facility,
    model: &RuntimeModel,
    history: &[Completed],
    cfg: &ForecastConfig,
) -> Result<Forecast, String> {
    let t0 = Instant::now();
    let n = snap.queued.len();
    let mut starts: Vec<Vec<u64>> = vec![Vec::new(); n];
    let mut runs = 0;
    while runs < cfg.runs.max(1) && (runs == 0 || t0.elapsed() < cfg.budget) {
        let seed = cfg.seed.wrapping_add(runs as u64);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let extra = arrivals(model, history, facility, snap.at.0, cfg.arrivals_horizon.as_secs(), &mut rng);
        let extra = (!extra.jobs.is_empty()).then_some(extra);
        let (w, fk) = fork_with(snap, facility, extra.as_ref(), |j, ran| match (cfg.known_runtimes, j.runtime_s) {
            (true, Some(r)) => r,
            _ => {
                let account = snap.accounts.get(j.spec.account.idx().wrapping_sub(1)).map_or("", |a| a.path.as_str());
                model.sample(account, j.spec.walltime.0, ran, rng.gen::<f64>())
            }
        })?;
        let base = w.clock_origin.unwrap_or(0);
        let running = fk.running;
        // the snapshot's policy, settings, power cap and PUE
        let mut tc = crate::fork::base_config(snap, seed);
        tc.keep_job_rows = true;
        if cfg.failures {
            tc.failures = Some(FailureConfig { seed, ..FailureConfig::default() });
        }
        let report = Twin::forked(facility, &w, tc, fk).and_then(|t| t.run(|_| {})).map_err(|e| e.to_string())?;
        for (k, s) in starts.iter_mut().enumerate() {
            if let Some(row) = report.jobs.get(running + k) {
                s.push(row.start_s + base);
            }
        }
        runs += 1;
    }
    let jobs = snap
        .queued
        .iter()
        .zip(starts.iter_mut())
        .map(|(j, s)| {
            s.sort_unstable();
            let (p50, p90) = if s.is_empty() { (0, 0) } else { (nearest_rank(s, 0.5), nearest_rank(s, 0.9)) };
            JobForecast { key: j.key, name: j.spec.name.clone(), p50_start: p50, p90_start: p90 }
        })
        .collect();
    Ok(Forecast { at: snap.at.0, runs, elapsed_ms: t0.elapsed().as_millis() as u64, model_jobs: model.jobs, jobs })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two days of history on tiny (one job an hour for 48 hours, one account): 48/47 per hour;
    /// 48 hours of arrivals have a Poisson count of mean 49.0 (within 4 sd: 21–77), each a
    /// project's job of the history's size, submitted within the horizon, in order.
    #[test]
    fn arrivals_are_drawn_at_the_models_rate_from_history() {
        let f = Facility::preset("tiny").unwrap();
        let path = f.tenants.leaves().next().unwrap().1.path.clone();
        let history: Vec<Completed> = (0..48)
            .map(|k| Completed {
                account: path.clone(),
                gpus: 8,
                submit_unix: k * 3600,
                walltime_s: 3600,
                runtime_s: 1800,
                running: false,
            })
            .collect();
        let model = RuntimeModel::fit(&history);
        assert!((model.arrival_rate(0) - 48.0 / 47.0).abs() < 1e-12);
        let w = arrivals(&model, &history, &f, 1_000_000, 48 * 3600, &mut ChaCha8Rng::seed_from_u64(3));
        let n = w.jobs.len();
        assert!((21..=77).contains(&n), "{n} arrivals");
        assert!(w.jobs.windows(2).all(|p| p[0].spec.submit <= p[1].spec.submit));
        assert!(w.jobs.iter().all(|j| j.spec.gpus == 8 && j.spec.submit.0 < 48 * 3600 && j.runtime.0 == 1800));
        // no history, no arrivals
        assert!(arrivals(&model, &[], &f, 0, 48 * 3600, &mut ChaCha8Rng::seed_from_u64(3)).jobs.is_empty());
    }

    #[test]
    fn nearest_rank_quantiles() {
        let v = [10, 20, 30, 40, 50, 60, 70, 80, 90, 100];
        assert_eq!(super::nearest_rank(&v, 0.5), 50);
        assert_eq!(super::nearest_rank(&v, 0.9), 90);
        assert_eq!(super::nearest_rank(&[7], 0.9), 7);
    }
}

/// The twin as the live body's `TwinService`: forecasts with `config`, what-ifs from
/// `whatif::Request` JSON.
#[derive(Debug, Clone, Default)]
pub struct LiveTwin {
    pub config: ForecastConfig,
}

impl fabrik_sched::TwinService for LiveTwin {
    fn forecast(&self, snap: &Snapshot, facility: &Facility, history: &[Completed]) -> Result<Forecast, String> {
        let f = crate::fork::facility_of(snap, facility)?;
        let model = RuntimeModel::fit(history);
        forecast(snap, &f, &model, history, &self.config)
    }

    fn whatif(&self, snap: &Snapshot, facility: &Facility, request_json: &str) -> Result<String, String> {
        let req: crate::whatif::Request =
            serde_json::from_str(request_json).map_err(|e| format!("invalid request body: {e}"))?;
        let f = crate::fork::facility_of(snap, facility)?;
        let c = req.run(snap, &f, None)?;
        Ok(c.to_json())
    }
}

//! Start-time forecasts for the queue of a running facility: repeated twin runs forked from a
//! snapshot, each with runtimes drawn from the runtime model (running jobs conditioned on what
//! they have run) and its own failure draws; per queued job, the median (P50) and 90th
//! percentile (P90) of its start over the runs.
//!
//! Runs stop being started once the wall-clock budget is spent (at least one always runs). A
//! forecast assumes no further arrivals: under a priority policy a later submission can only
//! delay a queued job, so the P90 is a start the job should not expect to be beaten by much.

use crate::config::TwinConfig;
use crate::failure_model::FailureConfig;
use crate::fork::fork_with;
use crate::Twin;
use fabrik_model::runtime_model::RuntimeModel;
use fabrik_model::Facility;
use fabrik_sched::Snapshot;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
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
}

impl Default for ForecastConfig {
    fn default() -> Self {
        ForecastConfig { runs: 16, seed: 1, budget: Duration::from_secs(5), failures: true, known_runtimes: false }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobForecast {
    /// The body's id (the server's job id).
    pub key: Option<i64>,
    pub name: String,
    /// Start times on the snapshot's clock (Unix seconds live).
    pub p50_start: u64,
    pub p90_start: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Forecast {
    /// The snapshot's moment.
    pub at: u64,
    pub runs: usize,
    pub elapsed_ms: u64,
    /// Completed jobs the runtime model learned from.
    pub model_jobs: usize,
    /// Queued jobs, in the snapshot's order.
    pub jobs: Vec<JobForecast>,
}

/// The `q`-quantile of sorted values, nearest rank (the smallest value with at least a share
/// `q` of the values at or below it).
fn nearest_rank(sorted: &[u64], q: f64) -> u64 {
    let k = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[k - 1]
}

/// Forecasts the snapshot's queue on `facility` (the one it was taken on, with its accounts).
pub fn forecast(
    snap: &Snapshot,
    facility: &Facility,
    model: &RuntimeModel,
    cfg: &ForecastConfig,
) -> Result<Forecast, String> {
    let t0 = Instant::now();
    let n = snap.queued.len();
    let mut starts: Vec<Vec<u64>> = vec![Vec::new(); n];
    let mut runs = 0;
    while runs < cfg.runs.max(1) && (runs == 0 || t0.elapsed() < cfg.budget) {
        let seed = cfg.seed.wrapping_add(runs as u64);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (w, fk) = fork_with(snap, facility, None, |j, ran| match (cfg.known_runtimes, j.runtime_s) {
            (true, Some(r)) => r,
            _ => {
                let account = snap.accounts.get(j.spec.account.idx().wrapping_sub(1)).map_or("", |a| a.path.as_str());
                model.sample(account, j.spec.walltime.0, ran, rng.gen::<f64>())
            }
        })?;
        let base = w.clock_origin.unwrap_or(0);
        let running = fk.running;
        let mut tc = TwinConfig::new(&snap.policy, snap.config.clone(), seed);
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
    #[test]
    fn nearest_rank_quantiles() {
        let v = [10, 20, 30, 40, 50, 60, 70, 80, 90, 100];
        assert_eq!(super::nearest_rank(&v, 0.5), 50);
        assert_eq!(super::nearest_rank(&v, 0.9), 90);
        assert_eq!(super::nearest_rank(&[7], 0.9), 7);
    }
}

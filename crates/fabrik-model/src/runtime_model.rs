//! What history says about runtimes and arrivals, for forecasts.
//!
//! Walltimes over-estimate runtimes (users ask for a safe limit), so a forecast that ran every
//! job to its walltime would start the queue too late. From completed jobs — the store's live,
//! any trace's in the twin — the model keeps, per account, the distribution of runtime ÷
//! walltime as 21 quantiles (0%, 5%, …, 100%), falling back to the account's tenant class, then
//! to the whole facility, when an account has fewer than [`MIN_SAMPLES`] completed jobs; with no
//! history at all a job runs its walltime. It also keeps the mean arrival rate per hour of the
//! week (Monday 00:00 UTC is hour 0), over the weeks the history spans.
//!
//! Sampling is by inverse CDF (linear between quantiles) from a uniform number the caller draws,
//! so the model itself is deterministic. A running job that has already run a share `e` of its
//! walltime is sampled from the part of the distribution above `e`.

use serde::Serialize;
use std::collections::BTreeMap;

/// Completed jobs an account (or class) needs before its own distribution is used.
pub const MIN_SAMPLES: usize = 20;
/// Quantiles kept per distribution: 0%, 5%, …, 100%.
pub const QUANTILES: usize = 21;

/// One completed job, as the model learns from it.
#[derive(Debug, Clone, PartialEq)]
pub struct Completed {
    /// The account's path (`research/open-llm/eval`); its first segment is the class.
    pub account: String,
    pub gpus: u32,
    pub submit_unix: u64,
    pub walltime_s: u64,
    /// How long it ran — or, for a job still running, how long it has run so far (a lower
    /// bound: the model treats it as right-censored).
    pub runtime_s: u64,
    pub running: bool,
}

/// A runtime ÷ walltime distribution.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ratios {
    pub samples: usize,
    /// The 0%, 5%, …, 100% quantiles of runtime ÷ walltime, each in (0, 1].
    pub quantiles: Vec<f64>,
}

impl Ratios {
    /// From observations (ratio, still running): the empirical distribution when every job
    /// ended, else the Kaplan–Meier estimate, whose mass left after the last observation goes
    /// to 1 (no job runs past its walltime).
    fn of_observed(mut obs: Vec<(f64, bool)>) -> Ratios {
        if obs.iter().all(|o| !o.1) {
            return Ratios::of(obs.into_iter().map(|o| o.0).collect());
        }
        // ties: ends before the censored ones (a job seen running at r is at risk at r)
        obs.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let n = obs.len();
        let (mut at_risk, mut surv) = (n as f64, 1.0);
        let mut mass: Vec<(f64, f64)> = Vec::new();
        for (r, running) in obs {
            if !running {
                let m = surv / at_risk;
                surv -= m;
                mass.push((r, m));
            }
            at_risk -= 1.0;
        }
        if surv > 1e-12 {
            mass.push((1.0, surv));
        }
        // quantile k: the smallest ratio whose cumulative mass reaches k/20
        let quantiles = (0..QUANTILES)
            .map(|k| {
                let q = k as f64 / (QUANTILES - 1) as f64;
                let mut cum = 0.0;
                for &(r, m) in &mass {
                    cum += m;
                    if cum >= q - 1e-12 {
                        return r;
                    }
                }
                1.0
            })
            .collect();
        Ratios { samples: n, quantiles }
    }

    fn of(mut r: Vec<f64>) -> Ratios {
        r.sort_by(f64::total_cmp);
        let n = r.len();
        let quantiles = (0..QUANTILES)
            .map(|k| {
                // the nearest-rank quantile, interpolated between ranks
                let pos = k as f64 / (QUANTILES - 1) as f64 * (n - 1) as f64;
                let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
                r[lo] + (r[hi] - r[lo]) * (pos - lo as f64)
            })
            .collect();
        Ratios { samples: n, quantiles }
    }

    /// The ratio at cumulative probability `u` in [0, 1] (inverse CDF, linear between quantiles).
    pub fn at(&self, u: f64) -> f64 {
        let u = u.clamp(0.0, 1.0) * (QUANTILES - 1) as f64;
        let k = (u.floor() as usize).min(QUANTILES - 2);
        let q = &self.quantiles;
        q[k] + (q[k + 1] - q[k]) * (u - k as f64)
    }

    /// The cumulative probability of ratio `x` (the inverse of `at`; 0 below the smallest).
    pub fn cdf(&self, x: f64) -> f64 {
        let q = &self.quantiles;
        if x <= q[0] {
            return 0.0;
        }
        for k in 0..QUANTILES - 1 {
            if x <= q[k + 1] {
                let span = q[k + 1] - q[k];
                let within = if span > 0.0 { (x - q[k]) / span } else { 1.0 };
                return (k as f64 + within) / (QUANTILES - 1) as f64;
            }
        }
        1.0
    }
}

/// Which distribution an account's jobs are sampled from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Account,
    Class,
    Facility,
    /// No history: jobs run their walltime.
    None,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct RuntimeModel {
    pub accounts: BTreeMap<String, Ratios>,
    pub classes: BTreeMap<String, Ratios>,
    pub facility: Option<Ratios>,
    /// Mean submissions per hour, by hour of the week (Monday 00:00 UTC = 0).
    pub arrivals_per_hour: Vec<f64>,
    /// Mean submissions per hour over the whole history, and the weeks it spans: below a week
    /// the hour-of-week profile is mostly empty hours, and the mean is used instead.
    pub mean_arrivals_per_hour: f64,
    pub weeks: f64,
    /// Jobs the model learned from (ended, and running ones as censored).
    pub jobs: usize,
}

/// The hour of the week of a Unix time, Monday 00:00 UTC = 0 (1970-01-01 was a Thursday).
pub fn hour_of_week(unix: u64) -> usize {
    ((unix / 3600 + 3 * 24) % 168) as usize
}

impl RuntimeModel {
    /// Fits the model to completed and running jobs (any order). Jobs without a positive
    /// walltime are skipped; ratios are capped at 1 (a job killed at its walltime ran all of
    /// it). Running jobs count as right-censored: fitting only the ended ones would see the
    /// short jobs first and under-estimate runtimes.
    pub fn fit(history: &[Completed]) -> RuntimeModel {
        let mut by_account: BTreeMap<&str, Vec<(f64, bool)>> = BTreeMap::new();
        let mut by_class: BTreeMap<&str, Vec<(f64, bool)>> = BTreeMap::new();
        let mut all = Vec::new();
        let mut per_how = [0u64; 168];
        let (mut first, mut last) = (u64::MAX, 0);
        for c in history.iter().filter(|c| c.walltime_s > 0) {
            let r = ((c.runtime_s as f64 / c.walltime_s as f64).clamp(1e-6, 1.0), c.running);
            by_account.entry(&c.account).or_default().push(r);
            by_class.entry(class_of(&c.account)).or_default().push(r);
            all.push(r);
            per_how[hour_of_week(c.submit_unix)] += 1;
            first = first.min(c.submit_unix);
            last = last.max(c.submit_unix);
        }
        let keep = |m: BTreeMap<&str, Vec<(f64, bool)>>| -> BTreeMap<String, Ratios> {
            m.into_iter()
                .filter(|(_, v)| v.len() >= MIN_SAMPLES)
                .map(|(k, v)| (k.to_string(), Ratios::of_observed(v)))
                .collect()
        };
        // the weeks the history spans (at least one for the hour-of-week means)
        let span_s = if all.is_empty() { 0 } else { last - first };
        let weeks = (span_s as f64 / (168.0 * 3600.0)).max(1.0);
        let mean_arrivals_per_hour = all.len() as f64 / (span_s as f64 / 3600.0).max(1.0);
        RuntimeModel {
            mean_arrivals_per_hour,
            weeks: span_s as f64 / (168.0 * 3600.0),
            jobs: all.len(),
            facility: (!all.is_empty()).then(|| Ratios::of_observed(all)),
            accounts: keep(by_account),
            classes: keep(by_class),
            arrivals_per_hour: per_how.iter().map(|&n| n as f64 / weeks).collect(),
        }
    }

    /// Expected submissions in the hour starting at `unix`: the hour-of-week mean once the
    /// history spans a week, else the overall mean — and none while it spans less than a day
    /// (a burst of submissions is no rate to extrapolate from).
    pub fn arrival_rate(&self, unix: u64) -> f64 {
        if self.weeks < 1.0 / 7.0 {
            0.0
        } else if self.weeks >= 1.0 {
            self.arrivals_per_hour.get(hour_of_week(unix)).copied().unwrap_or(0.0)
        } else {
            self.mean_arrivals_per_hour
        }
    }

    /// The distribution an account's jobs follow, and at which level it was found.
    pub fn ratios(&self, account: &str) -> (Option<&Ratios>, Level) {
        if let Some(r) = self.accounts.get(account) {
            return (Some(r), Level::Account);
        }
        if let Some(r) = self.classes.get(class_of(account)) {
            return (Some(r), Level::Class);
        }
        match &self.facility {
            Some(r) => (Some(r), Level::Facility),
            None => (None, Level::None),
        }
    }

    /// A runtime for a job of `account` with `walltime_s` that has run `elapsed_s` already,
    /// at uniform draw `u`: sampled from the distribution above what it has run, at least a
    /// second more than that, at most its walltime.
    pub fn sample(&self, account: &str, walltime_s: u64, elapsed_s: u64, u: f64) -> u64 {
        let Some(r) = self.ratios(account).0 else { return walltime_s };
        let w = walltime_s.max(1) as f64;
        let lo = r.cdf(elapsed_s as f64 / w);
        let ratio = r.at(lo + u.clamp(0.0, 1.0) * (1.0 - lo));
        ((ratio * w).round() as u64).clamp(elapsed_s + 1, walltime_s.max(elapsed_s + 1))
    }
}

/// An account path's tenant class: its first segment.
pub fn class_of(path: &str) -> &str {
    path.split('/').next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(account: &str, submit: u64, wall: u64, run: u64) -> Completed {
        Completed {
            account: account.into(),
            gpus: 1,
            submit_unix: submit,
            walltime_s: wall,
            runtime_s: run,
            running: false,
        }
    }

    /// 21 jobs of an account with ratios 0, 0.05, …, 1.0 (runtime k × 180 s of 3,600): its
    /// quantiles are those ratios; sampling at u = 0.5 gives the median 0.5 → 1,800 s, at
    /// u = 0.25 the interpolated 0.25 → 900 s.
    #[test]
    fn an_account_with_enough_history_has_its_own_quantiles() {
        let h: Vec<Completed> = (0..21).map(|k| job("research/a/x", 0, 3600, k * 180)).collect();
        let m = RuntimeModel::fit(&h);
        let (r, level) = m.ratios("research/a/x");
        assert_eq!(level, Level::Account);
        let r = r.unwrap();
        // ratio 0 is stored as the floor 1e-6
        assert!((r.quantiles[0] - 1e-6).abs() < 1e-12);
        for k in 1..21 {
            assert!((r.quantiles[k] - k as f64 * 0.05).abs() < 1e-12, "{k}: {}", r.quantiles[k]);
        }
        assert_eq!(m.sample("research/a/x", 3600, 0, 0.5), 1800);
        assert_eq!(m.sample("research/a/x", 3600, 0, 0.25), 900);
        // a job that has run 2,700 s (75%) samples above it: u = 0.5 → ratio 0.875 → 3,150 s
        assert_eq!(m.sample("research/a/x", 3600, 2700, 0.5), 3150);
        // a job with twice the walltime scales: 7,200 × 0.5
        assert_eq!(m.sample("research/a/x", 7200, 0, 0.5), 3600);
    }

    /// An account with 5 jobs falls back to its class (25 jobs with the 5 of two accounts), and
    /// an unknown class to the facility; no history at all runs the walltime.
    #[test]
    fn few_samples_fall_back_to_the_class_then_the_facility() {
        let mut h: Vec<Completed> = (0..5).map(|_| job("sme/a/x", 0, 1000, 100)).collect();
        h.extend((0..20).map(|_| job("sme/b/y", 0, 1000, 500)));
        let m = RuntimeModel::fit(&h);
        assert_eq!(m.ratios("sme/a/x").1, Level::Class);
        assert_eq!(m.ratios("sme/b/y").1, Level::Account);
        assert_eq!(m.ratios("research/c/z").1, Level::Facility);
        // the class: 5 at 0.1 and 20 at 0.5; its 20% quantile is rank 0.2 × 24 = 4.8 → 0.1 +
        // 0.8 × 0.4 = 0.42
        let class = &m.classes["sme"];
        assert_eq!(class.samples, 25);
        assert!((class.quantiles[4] - 0.42).abs() < 1e-12, "{}", class.quantiles[4]);
        assert_eq!(RuntimeModel::fit(&[]).sample("sme/a/x", 1234, 0, 0.3), 1234);
    }

    /// Two ended jobs at ratios 0.2 and 0.4, two still running at 0.3 and 0.5 (of 1,000 s):
    /// Kaplan–Meier puts 1/4 at 0.2, 3/4 × 1/2 = 0.375 at 0.4 and the remaining 0.375 at the
    /// walltime. Median 0.4; the 70% quantile 1.0. Without the running ones: 0.2 and 0.4 only.
    #[test]
    fn running_jobs_count_as_censored_observations() {
        let mut h = vec![job("a/b", 0, 1000, 200), job("a/b", 0, 1000, 400)];
        for run in [300, 500] {
            h.push(Completed { running: true, ..job("a/b", 0, 1000, run) });
        }
        let m = RuntimeModel::fit(&h);
        let r = m.facility.as_ref().unwrap();
        assert_eq!(r.samples, 4);
        assert!((r.quantiles[5] - 0.2).abs() < 1e-12, "{:?}", r.quantiles); // 25%
        assert!((r.quantiles[10] - 0.4).abs() < 1e-12, "{:?}", r.quantiles); // 50%
        assert!((r.quantiles[14] - 1.0).abs() < 1e-12, "{:?}", r.quantiles); // 70%
        let ended = RuntimeModel::fit(&h[..2]);
        assert!((ended.facility.unwrap().quantiles[20] - 0.4).abs() < 1e-12);
    }

    /// Submissions on two Mondays at 09:xx UTC (hour 9 of the week) and on a Tuesday at 14:00
    /// (hour 38), spanning W ≈ 2.2 weeks: 2/W per hour at hour 9, 1/W at hour 38, 0 elsewhere.
    #[test]
    fn arrivals_are_counted_per_hour_of_the_week() {
        // Monday 2023-11-13 00:00 UTC = 1,699,833,600
        let monday = 1_699_833_600;
        assert_eq!(hour_of_week(monday), 0);
        let week = 7 * 86_400;
        let h = vec![
            job("a/b", monday + 9 * 3600 + 60, 60, 30),
            job("a/b", monday + week + 9 * 3600, 60, 30),
            job("a/b", monday + 2 * week + 38 * 3600, 60, 30),
        ];
        let m = RuntimeModel::fit(&h);
        // span: from Monday 09:01 of week 1 to Tuesday 14:00 of week 3, ~2.2 weeks
        let weeks = (h[2].submit_unix - h[0].submit_unix) as f64 / (168.0 * 3600.0);
        assert!((m.arrivals_per_hour[9] - 2.0 / weeks).abs() < 1e-12);
        assert!((m.arrivals_per_hour[38] - 1.0 / weeks).abs() < 1e-12);
        assert_eq!(m.arrivals_per_hour.iter().filter(|&&x| x > 0.0).count(), 2);
        // over two weeks of history the hour-of-week profile is used; over 30 hours, the mean:
        // 3 jobs in 30 hours → 0.1 per hour, whatever the hour; under a day, none
        assert!((m.arrival_rate(monday + 9 * 3600) - 2.0 / weeks).abs() < 1e-12);
        let days: Vec<Completed> = (0..3).map(|k| job("a/b", monday + k * 15 * 3600, 60, 30)).collect();
        let d = RuntimeModel::fit(&days);
        assert!((d.arrival_rate(monday + 3 * 86_400) - 0.1).abs() < 1e-12, "{}", d.arrival_rate(0));
        let burst: Vec<Completed> = (0..1000).map(|k| job("a/b", monday + k, 60, 30)).collect();
        assert_eq!(RuntimeModel::fit(&burst).arrival_rate(monday), 0.0);
    }
}

//! Time-weighted series and order statistics.

use fabrik_model::SimTime;
use serde::Serialize;

/// A step function of time, integrated into fixed-width buckets: each bucket holds the
/// time-weighted mean of the value over the bucket. At most `MAX_BUCKETS` are kept: a series
/// that would need more doubles its bucket width (merging neighbours), so memory and the work
/// of one `set` stay bounded however long the run (a trace row lasting 10^12 days once made
/// this linear in its duration).
#[derive(Debug, Clone)]
pub struct TimeSeries {
    bucket: u64,
    last_t: u64,
    last_v: f64,
    integral: Vec<f64>,
    total: f64,
    max: f64,
}

pub const MAX_BUCKETS: u64 = 8192;

impl TimeSeries {
    pub fn new(bucket_s: u64) -> TimeSeries {
        TimeSeries { bucket: bucket_s.max(1), last_t: 0, last_v: 0.0, integral: Vec::new(), total: 0.0, max: 0.0 }
    }

    /// The value becomes `v` at time `t` (t never decreases).
    pub fn set(&mut self, t: SimTime, v: f64) {
        let t = t.0.max(self.last_t);
        while t / self.bucket >= MAX_BUCKETS {
            self.coarsen();
        }
        let mut a = self.last_t;
        while a < t {
            let b = ((a / self.bucket + 1) * self.bucket).min(t);
            let i = (a / self.bucket) as usize;
            if self.integral.len() <= i {
                self.integral.resize(i + 1, 0.0);
            }
            self.integral[i] += self.last_v * (b - a) as f64;
            a = b;
        }
        self.total += self.last_v * (t - self.last_t) as f64;
        self.last_t = t;
        self.last_v = v;
        self.max = self.max.max(v);
    }

    fn coarsen(&mut self) {
        self.integral = self.integral.chunks(2).map(|c| c.iter().sum()).collect();
        self.bucket *= 2;
    }

    pub fn bucket_s(&self) -> u64 {
        self.bucket
    }
    /// Bucket means at a width that is a multiple of this series' own (to align series that
    /// coarsened differently).
    pub fn means_at(&self, bucket_s: u64) -> Vec<f64> {
        let k = (bucket_s / self.bucket).max(1) as usize;
        let w = (k as u64 * self.bucket) as f64;
        self.integral.chunks(k).map(|c| c.iter().sum::<f64>() / w).collect()
    }
    /// Bucket means (the last bucket is averaged over its full width).
    pub fn means(&self) -> Vec<f64> {
        self.integral.iter().map(|x| x / self.bucket as f64).collect()
    }
    /// ∫ value dt from 0 to the last change.
    pub fn integral(&self) -> f64 {
        self.total
    }
    /// Time-weighted mean over [from, to), widened to whole buckets.
    pub fn mean_between(&self, from: u64, to: u64) -> f64 {
        let (a, b) = ((from / self.bucket) as usize, (to.div_ceil(self.bucket)).max(from / self.bucket + 1) as usize);
        self.integral.iter().take(b).skip(a).sum::<f64>() / ((b - a) as u64 * self.bucket) as f64
    }
    pub fn max(&self) -> f64 {
        self.max
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub struct Stats {
    pub mean: f64,
    pub median: f64,
    pub p95: f64,
    pub max: f64,
}

impl Stats {
    /// Mean and nearest-rank percentiles; sorts `xs`.
    pub fn of(xs: &mut [f64]) -> Stats {
        if xs.is_empty() {
            return Stats::default();
        }
        xs.sort_by(f64::total_cmp);
        let rank = |p: f64| xs[((p * xs.len() as f64).ceil() as usize).clamp(1, xs.len()) - 1];
        Stats {
            mean: xs.iter().sum::<f64>() / xs.len() as f64,
            median: rank(0.5),
            p95: rank(0.95),
            max: xs[xs.len() - 1],
        }
    }
}

/// Jain's fairness index (Σx)² / (n·Σx²): 1 when all equal, 1/n when one takes everything.
pub fn jain(xs: &[f64]) -> f64 {
    let s: f64 = xs.iter().sum();
    let s2: f64 = xs.iter().map(|x| x * x).sum();
    if xs.is_empty() || s2 == 0.0 {
        1.0
    } else {
        s * s / (xs.len() as f64 * s2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_series_integrates_steps_into_buckets() {
        // 10-s buckets: 4 from 0 to 15, 8 from 15 to 30 → buckets 4, (5·4+5·8)/10 = 6, 8.
        let mut s = TimeSeries::new(10);
        s.set(SimTime(0), 4.0);
        s.set(SimTime(15), 8.0);
        s.set(SimTime(30), 0.0);
        assert_eq!(s.means(), vec![4.0, 6.0, 8.0]);
        // 20-s buckets: (40 + 60) / 20 = 5, then 80 over the last bucket's full width: 4
        assert_eq!(s.means_at(20), vec![5.0, 4.0]);
        assert_eq!(s.integral(), 4.0 * 15.0 + 8.0 * 15.0);
        assert_eq!(s.mean_between(10, 30), (60.0 + 80.0) / 20.0);
        assert_eq!(s.mean_between(12, 12), 6.0);
        assert_eq!(s.max(), 8.0);
    }

    #[test]
    fn a_very_long_series_coarsens_instead_of_growing() {
        // 1 from 0 to 10^12 days in hourly buckets would be 2.4·10^13 buckets; it keeps at most
        // MAX_BUCKETS, widened by doubling, and the integral is exact.
        let mut s = TimeSeries::new(3600);
        s.set(SimTime(0), 1.0);
        let end = 86_400 * 1_000_000_000_000u64;
        s.set(SimTime(end), 0.0);
        assert!(s.means().len() as u64 <= MAX_BUCKETS);
        assert_eq!(s.bucket_s() % 3600, 0);
        assert!((s.bucket_s() / 3600).is_power_of_two());
        assert_eq!(s.integral(), end as f64);
        assert_eq!(s.means()[0], 1.0);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let mut xs: Vec<f64> = (1..=20).map(f64::from).rev().collect();
        let s = Stats::of(&mut xs);
        assert_eq!((s.mean, s.median, s.p95, s.max), (10.5, 10.0, 19.0, 20.0));
    }

    #[test]
    fn jain_index_bounds() {
        assert_eq!(jain(&[1.0, 1.0, 1.0]), 1.0);
        assert_eq!(jain(&[4.0, 0.0, 0.0, 0.0]), 0.25);
        // (1+3)² / (2·(1+9)) = 16/20
        assert_eq!(jain(&[1.0, 3.0]), 0.8);
    }
}

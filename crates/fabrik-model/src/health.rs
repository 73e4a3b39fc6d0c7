//! Health detection from GPU telemetry, shared by the twin (synthetic telemetry) and the live
//! control plane (real telemetry, later). A detector takes samples and returns verdicts.
//!
//! Three signals per NVLink domain, each with a documented rule:
//! - corrected ECC errors per sample: an EWMA (α = `ecc_alpha`) above `ecc_limit`;
//! - XID-like error events: at least `xid_count` within the last `xid_window` samples;
//! - temperature deviation from the domain's baseline: a one-sided CUSUM with reference `temp_k`
//!   and decision interval `temp_h` (Page 1954).
//!
//! A domain is suspect when at least `votes` of the three rules fire: single noisy signals are
//! common on healthy hardware; failing HBM or PCIe parts tend to show several at once.

use crate::ids::DomainId;
use crate::units::SimTime;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub domain: DomainId,
    pub at: SimTime,
    /// Corrected ECC errors since the previous sample.
    pub ecc: f64,
    /// XID-like error events since the previous sample.
    pub xid: u32,
    /// Temperature minus the domain's healthy baseline, °C.
    pub temp_dev_c: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorConfig {
    pub ecc_alpha: f64,
    pub ecc_limit: f64,
    pub xid_count: u32,
    pub xid_window: usize,
    pub temp_k: f64,
    pub temp_h: f64,
    pub votes: u32,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            ecc_alpha: 0.3,
            ecc_limit: 4.0,
            xid_count: 2,
            xid_window: 6,
            temp_k: 1.0,
            temp_h: 8.0,
            votes: 2,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Verdict {
    Healthy,
    Suspect { ecc: bool, xid: bool, temp: bool },
}

/// What the three rules saw last (see [`Detector::evidence`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evidence {
    pub ecc_ewma: f64,
    pub ecc_limit: f64,
    pub xid_events: u32,
    pub xid_count: u32,
    pub xid_window: usize,
    pub temp_cusum: f64,
    pub temp_h: f64,
}

impl std::fmt::Display for Evidence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mark = |fired: bool| if fired { " (fires)" } else { "" };
        write!(
            f,
            "corrected-error EWMA {:.1} vs limit {:.1}{}; {} error events in the last {} samples vs {}{}; temperature CUSUM {:.1} vs {:.1}{}",
            self.ecc_ewma,
            self.ecc_limit,
            mark(self.ecc_ewma > self.ecc_limit),
            self.xid_events,
            self.xid_window,
            self.xid_count,
            mark(self.xid_events >= self.xid_count),
            self.temp_cusum,
            self.temp_h,
            mark(self.temp_cusum > self.temp_h)
        )
    }
}

#[derive(Debug, Clone, Default)]
struct State {
    ecc_ewma: f64,
    xids: VecDeque<u32>,
    cusum: f64,
}

pub struct Detector {
    cfg: DetectorConfig,
    state: Vec<State>,
}

impl Detector {
    pub fn new(domains: usize, cfg: DetectorConfig) -> Detector {
        Detector { cfg, state: vec![State::default(); domains] }
    }

    /// Feeds one sample; returns the domain's verdict after it.
    pub fn observe(&mut self, s: &Sample) -> Verdict {
        let c = &self.cfg;
        let st = &mut self.state[s.domain.idx()];
        st.ecc_ewma = c.ecc_alpha * s.ecc + (1.0 - c.ecc_alpha) * st.ecc_ewma;
        st.xids.push_back(s.xid);
        while st.xids.len() > c.xid_window {
            st.xids.pop_front();
        }
        st.cusum = (st.cusum + s.temp_dev_c - c.temp_k).max(0.0);
        let ecc = st.ecc_ewma > c.ecc_limit;
        let xid = st.xids.iter().sum::<u32>() >= c.xid_count;
        let temp = st.cusum > c.temp_h;
        if u32::from(ecc) + u32::from(xid) + u32::from(temp) >= c.votes {
            Verdict::Suspect { ecc, xid, temp }
        } else {
            Verdict::Healthy
        }
    }

    /// The evidence behind a domain's last verdict: the ECC EWMA, the XID events in the
    /// window and the temperature CUSUM, each beside its limit.
    pub fn evidence(&self, d: DomainId) -> Evidence {
        let (c, st) = (&self.cfg, &self.state[d.idx()]);
        Evidence {
            ecc_ewma: st.ecc_ewma,
            ecc_limit: c.ecc_limit,
            xid_events: st.xids.iter().sum(),
            xid_count: c.xid_count,
            xid_window: c.xid_window,
            temp_cusum: st.cusum,
            temp_h: c.temp_h,
        }
    }

    /// Forgets a domain's history (after a repair).
    pub fn reset(&mut self, d: DomainId) {
        self.state[d.idx()] = State::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(ecc: f64, xid: u32, temp: f64) -> Sample {
        Sample { domain: DomainId(0), at: SimTime(0), ecc, xid, temp_dev_c: temp }
    }

    #[test]
    fn one_noisy_signal_is_not_enough_two_are() {
        let mut d = Detector::new(1, DetectorConfig::default());
        // ECC burst alone: EWMA 0.3·20 = 6 > 4, but one vote of two.
        assert_eq!(d.observe(&sample(20.0, 0, 0.0)), Verdict::Healthy);
        // plus two XIDs within the window: two votes
        assert_eq!(d.observe(&sample(20.0, 2, 0.0)), Verdict::Suspect { ecc: true, xid: true, temp: false });
        d.reset(DomainId(0));
        // temperature drift: CUSUM grows by (4 − 1) per sample: 3, 6, 9 > 8 after three samples
        let v: Vec<Verdict> = (0..3).map(|_| d.observe(&sample(0.0, 1, 4.0))).collect();
        assert_eq!(v[0], Verdict::Healthy);
        // two XIDs in the window (one vote), CUSUM 6 ≤ 8: still healthy
        assert_eq!(v[1], Verdict::Healthy);
        assert_eq!(v[2], Verdict::Suspect { ecc: false, xid: true, temp: true });
        let e = d.evidence(DomainId(0));
        assert_eq!((e.ecc_ewma, e.xid_events, e.temp_cusum), (0.0, 3, 9.0));
        assert_eq!(
            e.to_string(),
            "corrected-error EWMA 0.0 vs limit 4.0; 3 error events in the last 6 samples vs 2 (fires); temperature CUSUM 9.0 vs 8.0 (fires)"
        );
    }
}

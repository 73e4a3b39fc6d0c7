//! Failures and checkpoints of one synchronous job: MTBF from the job's node count, the
//! Young/Daly checkpoint interval, and the effective training time ratio (ETTR) it achieves.
//!
//! Model (first order, stated so it can be checked by hand): the job works τ seconds, then writes
//! a blocking checkpoint of C seconds; failures arrive at rate 1/M; each costs a restart of R
//! seconds plus, on average, half a cycle of lost work. Then
//! ETTR(τ) = τ/(τ+C) · max(0, 1 − ((τ+C)/2 + R)/M).
//!
//! Fault-tolerant training (hot spares, in-memory redundancy) survives a failure without
//! rolling back: each failure costs a stall of S seconds and no work, so
//! ETTR(τ) = τ/(τ+C) · max(0, 1 − S/M), best without checkpoints (1 − S/M).

use crate::inputs::{assumption, Assumption};
use crate::PlanError;
use serde::Serialize;

pub use fabrik_model::reliability::{cold_restart_s, DETECTION_S, FAILURES_PER_1000_NODE_DAYS};

/// Checkpoint bytes per parameter: BF16 weights (2) + FP32 master weights (4) + Adam moments (8);
/// 405B × 14 B ≈ 5.7 TB, matching the ~5 TB Llama 3 405B checkpoint (../shared/reference).
pub const CHECKPOINT_BYTES_PER_PARAM: f64 = 14.0;
/// ~2 TB/s checkpoint write bandwidth (Llama 3 paper; Epoch).
pub const CHECKPOINT_WRITE_BPS: f64 = 2.0e12;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckpointInputs {
    pub gpus: f64,
    pub gpus_per_node: f64,
    pub failures_per_1000_node_days: f64,
    /// Blocking checkpoint time C, s.
    pub checkpoint_s: f64,
    /// Restart overhead R, s (detection + cold restart).
    pub restart_s: f64,
    /// Intervals to evaluate besides the optima, s.
    pub intervals_s: Vec<f64>,
    /// The job's mean time between interruptions, s, when given instead of derived from the
    /// failure rate and its node count.
    pub mtbf_s: Option<f64>,
    /// Fault-tolerant restart: the stall S per failure, s (no rollback); `None`: roll back to
    /// the last checkpoint and restart in R.
    pub fault_tolerant_stall_s: Option<f64>,
    /// Whether C and R were given rather than derived (their assumptions say so).
    #[serde(skip)]
    pub checkpoint_given: bool,
    #[serde(skip)]
    pub restart_given: bool,
}

impl CheckpointInputs {
    /// Defaults for a job of `gpus` GPUs training a model of `params` parameters.
    pub fn defaults(gpus: f64, params: f64) -> CheckpointInputs {
        CheckpointInputs {
            gpus,
            gpus_per_node: 8.0,
            failures_per_1000_node_days: FAILURES_PER_1000_NODE_DAYS,
            checkpoint_s: params * CHECKPOINT_BYTES_PER_PARAM / CHECKPOINT_WRITE_BPS,
            restart_s: DETECTION_S + cold_restart_s(gpus),
            intervals_s: vec![300.0, 900.0, 3600.0],
            mtbf_s: None,
            fault_tolerant_stall_s: None,
            checkpoint_given: false,
            restart_given: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IntervalRow {
    pub label: String,
    pub interval_s: f64,
    pub ettr: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckpointPlan {
    pub inputs: CheckpointInputs,
    pub nodes: f64,
    pub interruptions_per_day: f64,
    pub mtbf_s: f64,
    pub young_s: f64,
    pub daly_s: f64,
    pub rows: Vec<IntervalRow>,
    pub assumptions: Vec<Assumption>,
}

/// ETTR at checkpoint interval `tau` (see the module doc). With free checkpoints (C = 0) the
/// optimum is to checkpoint continuously: τ → 0 loses no work, and ETTR tends to 1 − R/M, the
/// value given for τ = 0 then.
pub fn ettr(tau: f64, c: f64, m: f64, r: f64) -> f64 {
    if tau <= 0.0 {
        return if c == 0.0 { (1.0 - r / m).max(0.0) } else { 0.0 };
    }
    tau / (tau + c) * (1.0 - ((tau + c) / 2.0 + r) / m).max(0.0)
}

pub fn plan(i: &CheckpointInputs) -> Result<CheckpointPlan, PlanError> {
    crate::positive("gpus", i.gpus)?;
    crate::positive("gpus_per_node", i.gpus_per_node)?;
    crate::positive("failures_per_1000_node_days", i.failures_per_1000_node_days)?;
    crate::non_negative("checkpoint_s", i.checkpoint_s)?;
    crate::non_negative("restart_s", i.restart_s)?;
    for &t in &i.intervals_s {
        crate::positive("interval", t)?;
    }
    if let Some(m) = i.mtbf_s {
        crate::positive("mtbf", m)?;
    }
    if let Some(s) = i.fault_tolerant_stall_s {
        crate::non_negative("fault_tolerant_stall_s", s)?;
    }
    let nodes = (i.gpus / i.gpus_per_node).ceil();
    let (per_day, m) = match i.mtbf_s {
        Some(m) => (86_400.0 / m, m),
        None => {
            let per_day = nodes * i.failures_per_1000_node_days / 1000.0;
            (per_day, 86_400.0 / per_day)
        }
    };
    let c = i.checkpoint_s;
    let young = (2.0 * c * m).sqrt();
    let daly = if c < 2.0 * m { young - c } else { m };
    let at = |t: f64| match i.fault_tolerant_stall_s {
        Some(s) if t > 0.0 => t / (t + c) * (1.0 - s / m).max(0.0),
        Some(s) => {
            if c == 0.0 {
                (1.0 - s / m).max(0.0)
            } else {
                0.0
            }
        }
        None => ettr(t, c, m, i.restart_s),
    };
    let mut rows: Vec<IntervalRow> = i
        .intervals_s
        .iter()
        .map(|&t| IntervalRow { label: format!("{:.0} min", t / 60.0), interval_s: t, ettr: at(t) })
        .collect();
    rows.push(IntervalRow { label: "Young".into(), interval_s: young, ettr: at(young) });
    rows.push(IntervalRow { label: "Daly".into(), interval_s: daly, ettr: at(daly) });
    if let Some(s) = i.fault_tolerant_stall_s {
        // its best: no checkpoints for failures; and what rolling back at Daly's interval gives
        rows.push(IntervalRow { label: "none".into(), interval_s: 0.0, ettr: (1.0 - s / m).max(0.0) });
        rows.push(IntervalRow { label: "rollback".into(), interval_s: daly, ettr: ettr(daly, c, m, i.restart_s) });
    }
    Ok(CheckpointPlan {
        inputs: i.clone(),
        nodes,
        interruptions_per_day: per_day,
        mtbf_s: m,
        young_s: young,
        daly_s: daly,
        rows,
        assumptions: vec![
            match i.mtbf_s {
                Some(m) => assumption("job MTBF", format!("{:.2} h", m / 3600.0), "given (--mtbf)"),
                None => assumption(
                    "failure rate",
                    format!("{} per 1,000 node-days", i.failures_per_1000_node_days),
                    if i.failures_per_1000_node_days == FAILURES_PER_1000_NODE_DAYS {
                        "Kokolis et al. 2024 (arXiv 2410.21680), RSC-1"
                    } else {
                        "given (--failures-per-1000-node-days)"
                    },
                ),
            },
            assumption(
                "checkpoint time C",
                format!("{:.1} s", c),
                if i.checkpoint_given {
                    "given (--checkpoint-s)"
                } else {
                    "params x 14 B at 2 TB/s (Llama 3 paper; Epoch)"
                },
            ),
            assumption(
                "restart overhead R",
                format!("{:.0} s", i.restart_s),
                if i.restart_given {
                    "given (--restart-s)"
                } else {
                    "150 s detection (5-min health checks, Kokolis et al.) + cold restart by scale (FT-HSDP, arXiv 2602.00277)"
                },
            ),
            assumption("optimal interval", "Young: sqrt(2CM); Daly: sqrt(2CM) - C", "Young 1974; Daly 2006"),
        ]
        .into_iter()
        .chain(i.fault_tolerant_stall_s.map(|s| {
            assumption(
                "restart mode",
                format!("fault-tolerant: {s:.0} s stall per failure, no work lost"),
                "given (--fault-tolerant)",
            )
        }))
        .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn young_and_daly_for_a_16k_gpu_job() {
        // 16,384 GPUs = 2,048 nodes × 6.5/1000 = 13.312 interruptions/day; M = 86,400/13.312 s.
        // C = 100 s → Young = sqrt(2·100·M), Daly = Young − 100.
        let mut i = CheckpointInputs::defaults(16_384.0, 405e9);
        i.checkpoint_s = 100.0;
        i.restart_s = 600.0;
        let p = plan(&i).unwrap();
        assert_eq!(p.nodes, 2048.0);
        assert!((p.interruptions_per_day - 13.312).abs() < 1e-9);
        let m = 86_400.0 / 13.312;
        assert!((p.mtbf_s - m).abs() < 1e-9);
        assert!((p.young_s - (200.0 * m).sqrt()).abs() < 1e-9);
        assert!((p.daly_s - ((200.0 * m).sqrt() - 100.0)).abs() < 1e-9);
        // ETTR at 15 min: 900/1000 · (1 − (500 + 600)/M)
        let e15 = p.rows.iter().find(|r| r.label == "15 min").unwrap().ettr;
        assert!((e15 - 0.9 * (1.0 - 1100.0 / m)).abs() < 1e-12);
        // the optimum beats the fixed intervals
        let best = p.rows.iter().map(|r| r.ettr).fold(0.0, f64::max);
        assert!(p.rows.iter().find(|r| r.label == "Daly").unwrap().ettr >= best - 1e-3);
    }

    #[test]
    fn free_checkpoints_give_the_no_checkpoint_cost_limit() {
        // C = 0: Young = Daly = 0 (checkpoint continuously) and ETTR = 1 − R/M; R = 350 s,
        // M = 86,400 / 13.312 s for 16,384 GPUs.
        let mut i = CheckpointInputs::defaults(16_384.0, 405e9);
        i.checkpoint_s = 0.0;
        let p = plan(&i).unwrap();
        let m = 86_400.0 / 13.312;
        assert_eq!((p.young_s, p.daly_s), (0.0, 0.0));
        for label in ["Young", "Daly"] {
            let e = p.rows.iter().find(|r| r.label == label).unwrap().ettr;
            assert!((e - (1.0 - 350.0 / m)).abs() < 1e-12, "{label}: {e}");
        }
        // and it bounds every interval's ETTR from above
        assert!(p.rows.iter().all(|r| r.ettr <= 1.0 - 350.0 / m + 1e-12));
    }

    #[test]
    fn a_given_mtbf_intervals_and_overrides_are_used_and_labelled() {
        // M = 2 h = 7,200 s, C = 50 s: Young = sqrt(2·50·7,200) = sqrt(720,000); 12 interruptions/day.
        let mut i = CheckpointInputs::defaults(1024.0, 7e9);
        i.mtbf_s = Some(7200.0);
        i.checkpoint_s = 50.0;
        i.checkpoint_given = true;
        i.restart_s = 100.0;
        i.restart_given = true;
        i.intervals_s = vec![600.0, 7200.0];
        let p = plan(&i).unwrap();
        assert_eq!((p.mtbf_s, p.interruptions_per_day), (7200.0, 12.0));
        assert!((p.young_s - 720_000f64.sqrt()).abs() < 1e-9);
        let labels: Vec<&str> = p.rows.iter().map(|r| r.label.as_str()).collect();
        assert_eq!(labels, ["10 min", "120 min", "Young", "Daly"]);
        // 10 min: 600/650 · (1 − (325 + 100)/7,200)
        assert!((p.rows[0].ettr - 600.0 / 650.0 * (1.0 - 425.0 / 7200.0)).abs() < 1e-12);
        let source = |what: &str| p.assumptions.iter().find(|a| a.name == what).unwrap().source.clone();
        assert_eq!(source("job MTBF"), "given (--mtbf)");
        assert_eq!(source("checkpoint time C"), "given (--checkpoint-s)");
        assert_eq!(source("restart overhead R"), "given (--restart-s)");
        assert!(plan(&CheckpointInputs { mtbf_s: Some(0.0), ..i }).is_err());
    }

    #[test]
    fn fault_tolerant_restart_loses_only_its_stall() {
        // M = 2 h = 7,200 s, C = 50 s, stall S = 72 s: at 10 min 600/650 · (1 − 72/7,200) =
        // 600/650 · 0.99; without checkpoints 0.99; rolling back at Daly's interval
        // (sqrt(720,000) − 50) with R = 100 s gives the module's first formula.
        let mut i = CheckpointInputs::defaults(1024.0, 7e9);
        (i.mtbf_s, i.checkpoint_s, i.restart_s) = (Some(7200.0), 50.0, 100.0);
        i.intervals_s = vec![600.0];
        i.fault_tolerant_stall_s = Some(72.0);
        let p = plan(&i).unwrap();
        let row = |l: &str| p.rows.iter().find(|r| r.label == l).unwrap().clone();
        assert!((row("10 min").ettr - 600.0 / 650.0 * 0.99).abs() < 1e-12);
        assert!((row("none").ettr - 0.99).abs() < 1e-12);
        let daly = 720_000f64.sqrt() - 50.0;
        let rollback = daly / (daly + 50.0) * (1.0 - ((daly + 50.0) / 2.0 + 100.0) / 7200.0);
        assert!((row("rollback").ettr - rollback).abs() < 1e-12);
        assert!(row("none").ettr > row("rollback").ettr);
        assert!(p.assumptions.iter().any(|a| a.name == "restart mode"));
        assert!(plan(&CheckpointInputs { fault_tolerant_stall_s: Some(-1.0), ..i }).is_err());
    }

    #[test]
    fn defaults_derive_checkpoint_and_restart_from_size() {
        let i = CheckpointInputs::defaults(98_304.0, 405e9);
        // 405e9 × 14 B / 2e12 B/s = 2.835 s; restart 150 + 900 s
        assert!((i.checkpoint_s - 2.835).abs() < 1e-9);
        assert_eq!(i.restart_s, 1050.0);
        assert_eq!(cold_restart_s(19_192.0), 250.0);
        assert_eq!(cold_restart_s(1024.0), 200.0);
        assert!(plan(&CheckpointInputs { gpus: 0.0, ..i }).is_err());
    }
}

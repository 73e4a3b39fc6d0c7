//! What a twin run is given: the policy and scheduler settings, restart and checkpoint costs,
//! the failure model, and the energy setting. Recorded verbatim in the report.

pub use crate::energy::{AwareConfig, EnergyConfig, Objective};
pub use crate::failure_model::{FailureConfig, PredictiveConfig};
use fabrik_sched::SchedConfig;
use serde::Serialize;

/// What to run: a facility, a workload and a policy.
#[derive(Debug, Clone, Serialize)]
pub struct TwinConfig {
    pub policy: String,
    pub sched: SchedConfig,
    /// Recorded in the report; the twin itself draws no random numbers.
    pub seed: u64,
    /// Time a preempted job, or one moved off a drained node, spends reloading before it
    /// computes again (restart overhead; 5–20 min after failures at RSC, Kokolis et al. 2024 —
    /// we take the low end for planned stops).
    pub restart_overhead_s: u64,
    /// Time a job interrupted by a node failure is out before it computes again, seconds;
    /// `None`: the published model — detection (`reliability::DETECTION_S`) plus a cold
    /// restart that grows with the job's size (`reliability::cold_restart_s`).
    pub failure_restart_s: Option<u64>,
    /// Fault-tolerant training (hot spares, in-memory redundancy): after a node failure a job
    /// stalls this long, seconds, and keeps all its work instead of rolling back to its last
    /// checkpoint; `None`: it rolls back and pays `failure_restart`.
    pub fault_tolerant_stall_s: Option<u64>,
    /// A preempted job keeps all its work (it saves its state when told to stop, as
    /// Tiresias' simulator assumes); otherwise it keeps the work up to its last checkpoint.
    pub lossless_preemption: bool,
    /// Random node failures, when modelled.
    pub failures: Option<FailureConfig>,
    /// The root causes of node failures, random or replayed: their shares, repair times and
    /// which announce themselves in telemetry (`fabrik_model::reliability::ROOT_CAUSE_PRESETS`).
    pub root_causes: fabrik_model::reliability::RootCauses,
    /// Failures replayed from a trace (in addition to any random ones).
    pub failure_trace: Vec<crate::failures::FailureEvent>,
    /// How often jobs checkpoint.
    pub checkpoint: CheckpointPolicy,
    /// Seconds a job stops computing to write one checkpoint (0: asynchronous checkpoints).
    pub checkpoint_write_s: u64,
    pub energy: EnergyConfig,
    /// Keep one row per job in the report (`Report::jobs`, for `jobs_csv`). A year of a large
    /// facility has millions of jobs: without the rows the report needs a few hundred MB less.
    #[serde(skip)]
    pub keep_job_rows: bool,
}

impl TwinConfig {
    /// The restart a `gpus`-GPU job pays after a node failure interrupted it, seconds.
    pub fn failure_restart(&self, gpus: f64) -> u64 {
        if let Some(s) = self.fault_tolerant_stall_s {
            return s;
        }
        self.failure_restart_s.unwrap_or_else(|| {
            (fabrik_model::reliability::DETECTION_S + fabrik_model::reliability::cold_restart_s(gpus)) as u64
        })
    }

    pub fn new(policy: &str, sched: SchedConfig, seed: u64) -> TwinConfig {
        TwinConfig {
            policy: policy.to_string(),
            sched,
            seed,
            restart_overhead_s: 300,
            failure_restart_s: None,
            fault_tolerant_stall_s: None,
            lossless_preemption: false,
            failures: None,
            root_causes: fabrik_model::reliability::RootCauses::ft_hsdp(),
            failure_trace: Vec::new(),
            checkpoint: CheckpointPolicy::AsSubmitted,
            checkpoint_write_s: 0,
            energy: EnergyConfig::default(),
            keep_job_rows: true,
        }
    }
}

/// Named settings that set a run up the way a published simulator runs its experiments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// Tiresias (Gu et al., NSDI '19) as its simulator runs `dlas-gpu` (SymbioticLab/Tiresias,
    /// simulator/jobs.py and run_sim.py): discretised 2D-LAS with three queues split at 3,250
    /// and 7,200 attained GPU-seconds, no starvation fix (`solve_starvation = 0`), lossless
    /// preemption without restart cost; every job preemptible (the caller marks the workload).
    Tiresias,
}

impl std::str::FromStr for Preset {
    type Err = String;
    fn from_str(s: &str) -> Result<Preset, String> {
        match s {
            "tiresias" => Ok(Preset::Tiresias),
            other => Err(format!("unknown preset '{other}' (known: tiresias)")),
        }
    }
}

impl Preset {
    pub fn name(self) -> &'static str {
        match self {
            Preset::Tiresias => "tiresias",
        }
    }

    /// The policy the preset runs.
    pub fn policy(self) -> &'static str {
        match self {
            Preset::Tiresias => "las",
        }
    }

    /// Sets `cfg` up as the preset says (its policy included).
    pub fn apply(self, cfg: &mut TwinConfig) {
        match self {
            Preset::Tiresias => {
                cfg.policy = self.policy().to_string();
                cfg.sched.las_thresholds_gpu_hours = vec![3250.0 / 3600.0, 7200.0 / 3600.0];
                cfg.sched.starvation_after = fabrik_model::Secs(u64::MAX);
                cfg.sched.preempt_exempt = fabrik_model::Secs(0);
                cfg.sched.preempt_max_unsaved = fabrik_model::Secs(u64::MAX);
                cfg.restart_overhead_s = 0;
                cfg.lossless_preemption = true;
            }
        }
    }
}

/// Where a job's checkpoint interval comes from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckpointPolicy {
    /// The interval in the job's spec (none: it loses its whole run when stopped).
    AsSubmitted,
    /// Every job checkpoints at this interval, seconds.
    Every(u64),
    /// Daly's optimum √(2·C·M) − C for the job's write time C and its MTBF M (its nodes × the
    /// failure rate); at least one minute.
    YoungDaly,
}

/// Daly's interval √(2·C·M) − C, at least a minute, for a job of `gpus` GPUs on nodes of
/// `per_node` GPUs failing `rate` times per 1,000 node-days, writing a checkpoint in `cost_s`.
pub fn young_daly_s(gpus: u32, per_node: u32, rate: f64, cost_s: u64) -> u64 {
    let nodes = (f64::from(gpus) / f64::from(per_node.max(1))).ceil().max(1.0);
    let mtbf = 86_400.0 / (nodes * rate / 1000.0).max(1e-12);
    let c = cost_s as f64;
    ((2.0 * c * mtbf).sqrt() - c).max(60.0) as u64
}

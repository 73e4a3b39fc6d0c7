//! The report's types: what a run reports (serialised as JSON, summarised as text and HTML).

use crate::config::TwinConfig;
use crate::failure_model::Maintenance;
use crate::joblog::RestartCause;
use crate::metrics::Stats;
use crate::workload::WorkloadStats;
use fabrik_model::FacilitySummary;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub facility: FacilitySummary,
    pub workload: WorkloadInfo,
    pub config: TwinConfig,
    pub summary: Summary,
    pub accounts: Vec<AccountRow>,
    pub classes: Vec<AccountRow>,
    pub size_classes: Vec<SizeRow>,
    pub reliability: Vec<ReliabilityRow>,
    pub failure_causes: Vec<CauseRow>,
    /// Interruptions of running jobs by failures: when, which job, node and cause — the first
    /// `engine::MAX_TIMELINE` of the run (`summary.interruptions` counts them all).
    pub interruptions: Vec<InterruptionRow>,
    /// Predictive maintenance, when modelled.
    pub maintenance: Option<MaintenanceReport>,
    pub energy: EnergySummary,
    pub wait_histogram: Vec<Bin>,
    pub timeseries: Series,
    #[serde(skip)]
    pub jobs: Vec<JobRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WorkloadInfo {
    pub source: String,
    pub notes: Vec<String>,
    pub stats: WorkloadStats,
    /// Where the workload's clock is a calendar's (sacct, a snapshot): its second 0, and when
    /// the last job ended, in UTC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_utc: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_utc: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub jobs: u64,
    pub completed: u64,
    pub killed_at_walltime: u64,
    pub events: u64,
    pub scheduling_passes: u64,
    /// From the first submission to the last end.
    pub makespan_s: u64,
    pub gpu_hours: f64,
    /// Busy GPU-time / (GPUs × makespan).
    pub utilisation: f64,
    /// The same over the arrival window [first, last submission], the steady state.
    pub utilisation_arrival_window: f64,
    pub mean_queue_length: f64,
    pub max_queue_length: f64,
    pub wait_s: Stats,
    pub jct_s: Stats,
    pub slowdown: Stats,
    pub bounded_slowdown: Stats,
    /// Jain's index over accounts with jobs of (share of GPU-hours used / entitled share).
    pub jain_index: f64,
    pub preemptions: u64,
    /// Over completed jobs preempted at least once: how often each was.
    pub preemptions_per_preempted_job: Stats,
    /// GPU-hours of work lost to preemption (done since the last checkpoint).
    pub lost_gpu_hours: f64,
    /// GPU-hours completed jobs spent restarting (after preemptions, failures and drains).
    pub restart_overhead_gpu_hours: f64,
    /// Every restart by its cause: how many, what each cost, the GPU-hours they took.
    pub restarts: Restarts,
    /// Longest time-to-guarantee over the classes (see `classes`).
    pub max_time_to_guarantee_s: f64,
    /// Node failures (when modelled) and the job interruptions they caused.
    pub failures: u64,
    pub interruptions: u64,
    pub interruptions_per_day: f64,
    /// GPU-hours of work lost to failures (done since the last checkpoint).
    pub failure_lost_gpu_hours: f64,
    /// Effective training time ratio per job: its run time / (end − first start).
    pub ettr: Stats,
    /// Useful GPU-seconds / GPU-seconds held, per job.
    pub goodput: Stats,
    /// Failed or drained domains replaced at once by a spare of their group.
    pub spare_swaps: u64,
    /// The facility's GPU time over the makespan by what it went to.
    pub gpu_time: GpuTime,
}

/// GPU-hours over the makespan by state; they sum to GPUs × makespan. Busy GPUs are
/// productive (computing work that was kept), computing work later lost (to a preemption or a
/// failure, redone), restarting, or writing blocking checkpoints.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GpuTime {
    pub productive_gpu_hours: f64,
    pub lost_work_gpu_hours: f64,
    pub restarting_gpu_hours: f64,
    pub checkpointing_gpu_hours: f64,
    /// In service and not allocated.
    pub idle_gpu_hours: f64,
    /// Failed, drained, under repair or held as spares.
    pub out_of_service_gpu_hours: f64,
    /// Productive GPU time / GPU time in service: the facility's goodput.
    pub goodput: f64,
}

/// Restarts by cause (`--restart-overhead-s` after a preemption or a drain; after a failure
/// `--failure-restart-s`, by default detection plus a cold restart growing with job size).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Restarts {
    pub after_preemption: RestartStat,
    pub after_failure: RestartStat,
    pub after_drain: RestartStat,
}

/// Restarts of one cause over all runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RestartStat {
    pub restarts: u64,
    /// Mean cost of one restart, seconds (what the run was to spend restarting).
    pub mean_s: f64,
    /// GPU-hours spent restarting (a run stopped during its restart pays only part of it).
    pub gpu_hours: f64,
    #[serde(skip)]
    total_s: u64,
}

impl Restarts {
    fn stat(&mut self, c: RestartCause) -> &mut RestartStat {
        match c {
            RestartCause::Preemption => &mut self.after_preemption,
            RestartCause::Failure => &mut self.after_failure,
            RestartCause::Drain => &mut self.after_drain,
        }
    }

    /// A run starts with a restart of `seconds`.
    pub(crate) fn started(&mut self, c: RestartCause, seconds: u64) {
        let st = self.stat(c);
        st.restarts += 1;
        st.total_s += seconds;
        st.mean_s = st.total_s as f64 / st.restarts as f64;
    }

    /// A run ended having spent these GPU-seconds restarting.
    pub(crate) fn paid(&mut self, paid: Option<(RestartCause, f64)>) {
        if let Some((c, gpu_s)) = paid {
            self.stat(c).gpu_hours += gpu_s / 3600.0;
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ReliabilityRow {
    pub gpus: String,
    pub jobs: u64,
    pub interruptions: u64,
    /// Hours the jobs of this class ran.
    pub run_hours: f64,
    /// Observed mean time between interruptions of a running job, hours.
    pub mtbf_hours: Option<f64>,
    pub mean_ettr: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct MaintenanceReport {
    #[serde(flatten)]
    pub counts: Maintenance,
    /// True drains / all drains.
    pub precision: f64,
    /// Failures avoided / failures that had precursors.
    pub recall_predictable: f64,
    /// Failures avoided / all node failures.
    pub recall_all: f64,
}

/// Energy, emissions and cost of the run (from the first submission to the last end).
#[derive(Debug, Clone, Serialize)]
pub struct EnergySummary {
    /// Facility energy ÷ IT energy over the run.
    pub effective_pue: f64,
    pub pue_model: fabrik_model::energy::PueModel,
    pub temperature_source: String,
    /// The cap's source and its lowest and highest hour, MW.
    pub cap_source: String,
    pub cap_min_mw: Option<f64>,
    pub cap_max_mw: Option<f64>,
    pub zone: String,
    pub gco2_per_kwh: f64,
    /// "annual mean", "synthetic hourly profile" or the series' file.
    pub intensity_source: String,
    pub price_eur_per_mwh: f64,
    pub price_source: String,
    pub renewables_source: String,
    /// The ledger's sums over the run: IT energy (GPUs with their hosts, network and storage),
    /// facility energy, renewables used on site, battery flows, renewable surplus not used, grid
    /// draw, location-based emissions (grid energy × the hour's intensity), cost (× the hour's
    /// price), and the highest facility power.
    #[serde(flatten)]
    pub totals: crate::energy::HourRow,
    pub mean_facility_mw: f64,
    pub peak_grid_mw: f64,
    /// Jobs' own IT energy (their GPUs while held) and the emissions and cost it carries; the
    /// rest is idle draw and network/storage.
    pub jobs: crate::energy::Share,
    /// GPU-hours idle while the power cap held work back, and their share of all GPU-hours.
    pub cap_lost_gpu_hours: f64,
    pub cap_lost_share: f64,
    /// Jobs that ran power-limited at least once.
    pub power_limited_jobs: u64,
    pub flexible: FlexibleSummary,
    /// Per account: IT energy of its jobs and the emissions and cost it carries.
    pub accounts: Vec<AccountEnergy>,
    /// The ledger hour by hour from time 0.
    #[serde(skip)]
    pub hours: Vec<crate::energy::HourRow>,
}

/// Flexible jobs (with a deadline) and what the energy-aware modifier did with them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FlexibleSummary {
    pub jobs: u64,
    pub deferred_jobs: u64,
    /// GPU-hours that GPUs claimed by deferred jobs stood idle (the price of their guarantee).
    pub claimed_idle_gpu_hours: f64,
    pub mean_wait_s: f64,
    /// The other completed jobs (no deadline: never held by the modifier), their mean wait and
    /// mean bounded slowdown: what the modifier must not make worse.
    pub inflexible_jobs: u64,
    pub inflexible_mean_wait_s: f64,
    pub inflexible_bsld_mean: f64,
    pub deadlines_met: u64,
    pub deadlines_missed: u64,
    #[serde(flatten)]
    pub share: crate::energy::Share,
}

#[derive(Debug, Clone, Serialize)]
pub struct AccountEnergy {
    pub account: String,
    #[serde(flatten)]
    pub share: crate::energy::Share,
}

#[derive(Debug, Clone, Serialize)]
pub struct CauseRow {
    pub cause: String,
    pub failures: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct AccountRow {
    pub account: String,
    pub jobs: u64,
    pub gpu_hours: f64,
    pub entitled_share: f64,
    pub used_share: f64,
    /// used / entitled
    pub ratio: f64,
    pub mean_wait_s: f64,
    pub p95_wait_s: f64,
    /// Jobs submitted while within a guarantee of their subtree, and how long they waited.
    pub guaranteed_jobs: u64,
    pub time_to_guarantee_mean_s: f64,
    pub time_to_guarantee_max_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SizeRow {
    pub gpus: String,
    pub jobs: u64,
    pub gpu_hours: f64,
    pub mean_wait_s: f64,
    pub p95_wait_s: f64,
    pub max_wait_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Bin {
    pub wait: String,
    pub jobs: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Series {
    pub bucket_s: u64,
    /// Busy GPUs / all GPUs, per bucket.
    pub utilisation: Vec<f64>,
    pub queue_length: Vec<f64>,
    /// GPUs out of service (failed, in repair), per bucket.
    pub down_gpus: Vec<f64>,
    /// Facility power (IT × PUE), MW, per bucket.
    pub facility_mw: Vec<f64>,
    /// Grid draw (facility less renewables and battery), MW, per bucket.
    pub grid_mw: Vec<f64>,
    /// The facility cap, MW, lowest hour per bucket (empty without a cap).
    pub cap_mw: Vec<f64>,
    /// Carbon intensity, gCO2/kWh, mean per bucket.
    pub gco2_per_kwh: Vec<f64>,
}

/// One job's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct JobRow {
    /// Its id in the run (the brain's: submission order from 0).
    pub job_id: u32,
    pub name: String,
    pub account: String,
    pub gpus: u32,
    /// The GPU type it asked for (`any` when none).
    pub gpu_type: String,
    /// How it ended: `completed`, or `timeout` (killed at its walltime).
    pub state: &'static str,
    pub submit_s: u64,
    pub start_s: u64,
    pub end_s: u64,
    /// The same three times on the calendar, where the workload's clock is one (sacct
    /// replays, snapshots); empty otherwise.
    pub submit_utc: String,
    pub start_utc: String,
    pub end_utc: String,
    pub wait_s: u64,
    pub jct_s: u64,
    pub bounded_slowdown: f64,
    pub killed_at_walltime: bool,
    pub preemptions: u32,
    /// Failures that interrupted it, and when (seconds, `;`-separated).
    pub interruptions: u32,
    pub interrupted_at_s: String,
    /// Its IT energy, the facility energy, grid emissions and cost that carries, its lowest
    /// power limit.
    pub it_kwh: f64,
    pub facility_kwh: f64,
    pub emissions_kg: f64,
    pub cost_eur: f64,
    pub power_fraction: f64,
    /// Deadline (flexible jobs), and whether it ended by then.
    pub deadline_s: Option<u64>,
    pub deadline_met: Option<bool>,
    pub deferrals: u32,
}

/// One interruption of a running job by a failure, in the order they happened.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InterruptionRow {
    pub at_s: u64,
    pub job: String,
    /// The failed node (domain index, as in a failure trace; for a leaf switch, the node the
    /// failure was drawn or traced at).
    pub node: u32,
    pub cause: String,
}

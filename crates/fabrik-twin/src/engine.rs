//! The discrete-event engine: a virtual clock and an event queue ordered by
//! (time, class, sequence number). At one instant, job ends are handled before arrivals (GPUs
//! freed at t are usable by a job submitted at t), then one scheduling pass runs.

use crate::metrics::TimeSeries;
use crate::report::{self, Report};
use crate::workload::Workload;
use fabrik_model::reliability::ROOT_CAUSES;
use fabrik_model::{Facility, JobId, Secs, SimTime};
use fabrik_sched::{SchedConfig, Scheduler};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp, LogNormal, Normal, Poisson};
use serde::Serialize;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum TwinError {
    #[error(transparent)]
    Sched(#[from] fabrik_sched::SchedError),
    #[error("workload {workload}: job '{job}' (#{index}) asks for {gpus} GPUs; facility '{facility}' holds at most {max} in one pool of its type")]
    TooLarge { workload: String, job: String, index: usize, gpus: u32, facility: String, max: u64 },
    #[error("workload {workload}: job '{job}' (#{index}) asks for {gpus} GPUs; with {spares} spare node(s) held per leaf group, facility '{facility}' keeps at most {max} in service in one pool of its type")]
    TooLargeWithSpares {
        workload: String,
        job: String,
        index: usize,
        gpus: u32,
        spares: u32,
        facility: String,
        max: u64,
    },
    #[error("workload {workload}: job '{job}' (#{index}) has a {what} of {secs} s; the twin accepts at most {max} s (5 years) per job and a workload spanning at most 20 years")]
    TooLong { workload: String, job: String, index: usize, what: &'static str, secs: u64, max: u64 },
    #[error("workload {0} has no jobs")]
    Empty(String),
    #[error("{0} jobs can never start; the first: {1}")]
    Stuck(u64, String),
}

/// The longest walltime or runtime of one job the twin accepts: 5 years.
pub const MAX_JOB_S: u64 = 5 * 366 * 86_400;
/// The longest span of submissions: 20 years.
pub const MAX_SPAN_S: u64 = 20 * 366 * 86_400;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// A run ends; the number is the job's run epoch, so an end of a preempted run is ignored.
    End(JobId, u32),
    Arrival(u32),
    Wakeup,
    /// A domain fails with a root cause (index into `ROOT_CAUSES`) for a repair time (0: draw
    /// one from the model).
    Fail(u32, u8, u64),
    /// A failure announced by precursor telemetry; it does not happen if the node was drained.
    PredictedFail(u32, u8),
    Repair(u32),
    NextFailure,
    Telemetry,
    /// An hour begins: hourly caps, renewables, the battery and the modifier's signal change.
    Hour,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Event {
    time: SimTime,
    seq: u64,
    kind: Kind,
}

/// What to run: a facility, a workload and a policy.
#[derive(Debug, Clone, Serialize)]
pub struct TwinConfig {
    pub policy: String,
    pub sched: SchedConfig,
    /// Recorded in the report; the twin itself draws no random numbers.
    pub seed: u64,
    /// Time a preempted job spends reloading before it computes again (restart overhead;
    /// 5–20 min after failures at RSC, Kokolis et al. 2024 — we take the low end for planned
    /// preemptions).
    pub restart_overhead_s: u64,
    /// Random node failures, when modelled.
    pub failures: Option<FailureConfig>,
    /// Failures replayed from a trace (in addition to any random ones).
    pub failure_trace: Vec<crate::failures::FailureEvent>,
    /// How often jobs checkpoint.
    pub checkpoint: CheckpointPolicy,
    /// Seconds a job stops computing to write one checkpoint (0: asynchronous checkpoints).
    pub checkpoint_write_s: u64,
    pub energy: EnergyConfig,
}

pub use crate::energy::{AwareConfig, EnergyConfig, Objective};

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

/// Wall time to do `work` seconds when every `tau` seconds of work cost `cost` more.
fn wall_for(work: u64, tau: u64, cost: u64) -> u64 {
    if tau == 0 || cost == 0 {
        return work;
    }
    work + (work.saturating_sub(1) / tau) * cost
}

/// Random node failures: a Poisson process per failing unit (an HGX node, an NVL72 compute tray)
/// at the published rate, root causes in their published shares, each cause keeping the node out
/// of service for a log-normal time around its typical repair (see `fabrik_model::reliability`).
#[derive(Debug, Clone, Serialize)]
pub struct FailureConfig {
    /// Failures per 1,000 node-days (Kokolis et al. 2024, RSC-1: 6.5).
    pub per_1000_node_days: f64,
    /// Share of nodes that are "lemons" and fail `lemon_factor` times as often (Kokolis et al.
    /// 2024 found a few dozen repeat offenders among ~2,000 nodes; we assume 1% at 10×).
    pub lemon_fraction: f64,
    pub lemon_factor: f64,
    /// Spread (σ of the log) of repair times around each cause's typical value.
    pub repair_sigma: f64,
    /// Leaf-switch failures per 1,000 switch-days; each takes its whole leaf group down for
    /// `switch_repair_s`. An assumption (the reference has no switch-level rate): 1 and 4 h.
    pub switch_per_1000_days: f64,
    pub switch_repair_s: f64,
    /// Hardware failures (HBM, PCIe, GPU, silent data corruption) show precursor telemetry —
    /// rising corrected-ECC counts, XID events, temperature drift — for `lead_time_s` before
    /// they happen, with this probability (an assumption; the reference gives no figure).
    pub predictable_share: f64,
    pub lead_time_s: u64,
    /// Run the detector and drain suspect nodes.
    pub predictive: Option<PredictiveConfig>,
    /// Spare domains per leaf group, kept out of service; one is swapped in when a domain of its
    /// group fails, and a repaired domain becomes a spare again.
    pub spares_per_group: u32,
    pub seed: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PredictiveConfig {
    pub detector: fabrik_model::health::DetectorConfig,
    /// Seconds between telemetry samples of every node.
    pub interval_s: u64,
    /// How long a drained node that was healthy is out for inspection.
    pub inspection_s: u64,
}

impl Default for PredictiveConfig {
    fn default() -> Self {
        PredictiveConfig { detector: Default::default(), interval_s: 3600, inspection_s: 14_400 }
    }
}

/// Causes whose failures may announce themselves in telemetry.
const PREDICTABLE: [usize; 4] = [0, 1, 3, 8];

#[derive(Debug, Clone, Copy)]
struct Pending {
    onset: SimTime,
    at: SimTime,
    cause: u8,
}

/// Outcomes of predictive maintenance.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Maintenance {
    pub telemetry_samples: u64,
    pub drains: u64,
    pub true_drains: u64,
    pub false_drains: u64,
    /// Failures that had precursor telemetry.
    pub predictable_failures: u64,
    pub failures_avoided: u64,
    pub jobs_moved: u64,
    /// Work the moved jobs would have lost, plus the failure restart they would have paid beyond
    /// a planned one: Σ GPUs × (half the unsaved run + detection + cold restart − planned
    /// restart), GPU-hours. An estimate; run once without `predictive` for the measured effect.
    pub gpu_hours_saved_estimate: f64,
    /// Capacity taken out by drains of healthy nodes: GPUs × inspection time, GPU-hours.
    pub false_drain_gpu_hours: f64,
}

/// The cause index of a leaf-switch failure (after the node-level `ROOT_CAUSES`).
pub const SWITCH_CAUSE: usize = ROOT_CAUSES.len();

impl Default for FailureConfig {
    fn default() -> Self {
        FailureConfig {
            per_1000_node_days: fabrik_model::reliability::FAILURES_PER_1000_NODE_DAYS,
            lemon_fraction: 0.01,
            lemon_factor: 10.0,
            repair_sigma: 0.5,
            switch_per_1000_days: 1.0,
            switch_repair_s: 14_400.0,
            predictable_share: 0.7,
            lead_time_s: 86_400,
            predictive: None,
            spares_per_group: 0,
            seed: 7,
        }
    }
}

impl TwinConfig {
    pub fn new(policy: &str, sched: SchedConfig, seed: u64) -> TwinConfig {
        TwinConfig {
            policy: policy.to_string(),
            sched,
            seed,
            restart_overhead_s: 300,
            failures: None,
            failure_trace: Vec::new(),
            checkpoint: CheckpointPolicy::AsSubmitted,
            checkpoint_write_s: 0,
            energy: EnergyConfig::default(),
        }
    }
}

/// The failure process's state.
struct Failures {
    rng: ChaCha8Rng,
    /// Cumulative failure weight per domain (nodes in it × lemon factor), for sampling.
    cumulative: Vec<f64>,
    /// Node failures per second over the whole facility.
    rate: f64,
    /// Leaf-switch failures per second over the whole facility.
    switch_rate: f64,
    groups: u32,
    cfg: FailureConfig,
    /// Telemetry noise has its own generator, so failures are the same with and without it.
    telemetry_rng: ChaCha8Rng,
    pending: Vec<Option<Pending>>,
    detector: Option<fabrik_model::health::Detector>,
    maintenance: Maintenance,
    /// Spare domains held per group.
    spares: Vec<Vec<u32>>,
    spare_swaps: u64,
}

/// Why a run stopped before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Preempted,
    Failure,
    /// Its node was drained: it checkpointed and moves.
    Drain,
}

/// What happened to each job beyond what the scheduler records.
#[derive(Debug, Clone, Default)]
pub(crate) struct JobLog {
    pub first_start: Option<SimTime>,
    /// Work still to do, s.
    pub remaining: u64,
    pub run_start: SimTime,
    pub run_overhead: u64,
    pub epoch: u32,
    /// Overhead to pay when it next starts (restart after a preemption or a failure).
    pub next_overhead: u64,
    pub interruptions: u32,
    pub fail_lost_gpu_s: f64,
    /// Checkpoint interval (0: none) and blocking write time of this job's runs.
    pub ckpt_interval: u64,
    pub ckpt_cost: u64,
    pub killed: bool,
    /// GPU-seconds held over all runs.
    pub held_gpu_s: f64,
    pub lost_gpu_s: f64,
    pub overhead_gpu_s: f64,
    /// Relative speed of the current run (below 1 when power-limited) and its mean IT draw over
    /// the run, W; `saving_w` is how far that mean is below the scheduler's full-run estimate.
    pub speed: f64,
    pub watts: f64,
    pub saving_w: f64,
    /// Lowest power fraction over its runs.
    pub min_power_fraction: f64,
    /// Runs: start, end, IT watts.
    pub runs: Vec<(SimTime, SimTime, f64)>,
}

/// Progress, reported to an optional callback every few thousand events.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub now: SimTime,
    pub jobs_done: u64,
    pub jobs_total: u64,
}

pub struct Twin<'a> {
    facility: &'a Facility,
    workload: &'a Workload,
    sched: Scheduler,
    cfg: TwinConfig,
    events: BinaryHeap<Reverse<Event>>,
    seq: u64,
    next_arrival: usize,
    log: Vec<JobLog>,
    preempted: Vec<JobId>,
    failures: Option<Failures>,
    fail_count: u64,
    fail_by_cause: Vec<u64>,
    down: TimeSeries,
    ledger: crate::energy::Ledger,
    /// Watts running jobs draw below the scheduler's estimate while restarting or checkpointing.
    phase_saving_w: f64,
    /// Idle GPUs while the power cap held work back.
    cap_lost: TimeSeries,
    /// GPUs claimed by deferred jobs and left idle.
    claim_idle: TimeSeries,
    hourly: bool,
    busy: TimeSeries,
    queue: TimeSeries,
    events_handled: u64,
    passes: u64,
    done: u64,
    wakeup_pushed: Option<SimTime>,
    /// Scheduler ids of jobs start after the advance reservations' pseudo-jobs.
    offset: usize,
}

impl Failures {
    fn new(f: &Facility, cfg: FailureConfig) -> Failures {
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let mut cumulative = Vec::with_capacity(f.domains.len());
        let mut acc = 0.0;
        for (d, dom) in f.domains.iter().enumerate() {
            let gpu = f.gpu(f.pools[dom.pool.idx()].gpu_type);
            let nodes = f64::from(f.domain_gpus(fabrik_model::DomainId(d as u32)))
                / f64::from(fabrik_model::reliability::gpus_per_node(&gpu.name));
            let lemon = if rng.gen::<f64>() < cfg.lemon_fraction { cfg.lemon_factor } else { 1.0 };
            acc += nodes.max(1.0) * lemon;
            cumulative.push(acc);
        }
        let rate = acc * cfg.per_1000_node_days / 1000.0 / 86_400.0;
        let groups = f.groups.len() as u32;
        let switch_rate = f64::from(groups) * cfg.switch_per_1000_days / 1000.0 / 86_400.0;
        let detector =
            cfg.predictive.as_ref().map(|p| fabrik_model::health::Detector::new(f.domains.len(), p.detector.clone()));
        Failures {
            rng,
            cumulative,
            rate,
            switch_rate,
            groups,
            telemetry_rng: ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x7E1E),
            pending: vec![None; f.domains.len()],
            detector,
            maintenance: Maintenance::default(),
            spares: vec![Vec::new(); f.groups.len()],
            spare_swaps: 0,
            cfg,
        }
    }
}

impl<'a> Twin<'a> {
    pub fn new(facility: &'a Facility, workload: &'a Workload, cfg: TwinConfig) -> Result<Twin<'a>, TwinError> {
        if workload.jobs.is_empty() {
            return Err(TwinError::Empty(workload.source.clone()));
        }
        for (index, j) in workload.jobs.iter().enumerate() {
            // A run's horizon (events, the hourly ledger, the failure process) follows its
            // jobs: absurd durations are input errors, not a reason to run for hours.
            for (what, secs, max) in [
                ("walltime", j.spec.walltime.0, MAX_JOB_S),
                ("runtime", j.runtime.0, MAX_JOB_S),
                ("submit time", j.spec.submit.0, MAX_SPAN_S),
                ("earliest start", j.spec.earliest_start.map_or(0, |t| t.0), MAX_SPAN_S),
                ("deadline", j.spec.deadline.map_or(0, |t| t.0), MAX_SPAN_S),
                ("checkpoint interval", j.spec.checkpoint_interval.map_or(0, |t| t.0), MAX_JOB_S),
            ] {
                if secs > max {
                    return Err(TwinError::TooLong {
                        workload: workload.source.clone(),
                        job: j.spec.name.clone(),
                        index,
                        what,
                        secs,
                        max,
                    });
                }
            }
            let max = facility.max_gang(j.spec.gpu_type);
            if u64::from(j.spec.gpus) > max {
                return Err(TwinError::TooLarge {
                    workload: workload.source.clone(),
                    job: j.spec.name.clone(),
                    index,
                    gpus: j.spec.gpus,
                    facility: facility.name.clone(),
                    max,
                });
            }
        }
        if cfg.policy == "slurm" && (cfg.energy.cap_mw.is_some() || cfg.energy.aware.is_some()) {
            return Err(fabrik_sched::SchedError::Invalid(
                "the slurm policy models Slurm, which has no power cap or energy-aware scheduling: \
                 compare it with a fabrik policy under the cap instead"
                    .into(),
            )
            .into());
        }
        let mut sched = Scheduler::for_facility(facility, &cfg.policy, cfg.sched.clone(), SimTime::ZERO)?;
        let offset = facility.reservations.len();
        let span_h = (workload.jobs.last().map_or(0, |j| j.spec.submit.0) / 3600 + 1) as usize;
        let cap_w = cfg
            .energy
            .cap_mw
            .as_ref()
            .map(|c| fabrik_model::grid::Hourly { values: c.values.iter().map(|mw| mw * 1e6).collect() });
        sched.set_power_cap_hourly(cap_w, cfg.energy.pue_hourly(span_h + 24 * 400));
        if let (Some(signal), Some(a)) = (cfg.energy.aware_signal(), cfg.energy.aware) {
            sched.set_energy_aware(Some(a.modifier(signal)));
        }
        let failures = cfg.failures.clone().map(|fc| Failures::new(facility, fc));
        let ledger = crate::energy::Ledger::new(&cfg.energy);
        let hourly = cfg.energy.needs_hourly_ticks();
        let span = workload.jobs.last().map_or(0, |j| j.spec.submit.0);
        let bucket = 3600 * (span / (60 * 86_400) + 1);
        Ok(Twin {
            facility,
            workload,
            sched,
            cfg,
            events: BinaryHeap::new(),
            seq: 0,
            next_arrival: 0,
            log: workload
                .jobs
                .iter()
                .map(|j| JobLog { remaining: j.runtime.0, speed: 1.0, min_power_fraction: 1.0, ..JobLog::default() })
                .collect(),
            preempted: Vec::new(),
            failures,
            fail_count: 0,
            fail_by_cause: vec![0; ROOT_CAUSES.len() + 1],
            down: TimeSeries::new(bucket),
            ledger,
            phase_saving_w: 0.0,
            cap_lost: TimeSeries::new(bucket),
            claim_idle: TimeSeries::new(bucket),
            hourly,
            busy: TimeSeries::new(bucket),
            queue: TimeSeries::new(bucket),
            events_handled: 0,
            passes: 0,
            done: 0,
            wakeup_pushed: None,
            offset,
        })
    }

    fn push(&mut self, time: SimTime, kind: Kind) {
        self.seq += 1;
        self.events.push(Reverse(Event { time, seq: self.seq, kind }));
    }

    fn push_next_arrival(&mut self) {
        if let Some(j) = self.workload.jobs.get(self.next_arrival) {
            let idx = self.next_arrival as u32;
            self.next_arrival += 1;
            self.push(j.spec.submit, Kind::Arrival(idx));
        }
    }

    fn handle(&mut self, ev: Event) -> Result<(), TwinError> {
        self.events_handled += 1;
        match ev.kind {
            Kind::End(id, epoch) => {
                let i = id.idx() - self.offset;
                if epoch != self.log[i].epoch {
                    return Ok(());
                }
                let gpus = f64::from(self.workload.jobs[i].spec.gpus);
                let l = &mut self.log[i];
                let ran = (ev.time - l.run_start).0;
                l.held_gpu_s += gpus * ran as f64;
                l.overhead_gpu_s += gpus * ran.min(l.run_overhead) as f64;
                l.runs.push((l.run_start, ev.time, l.watts));
                self.phase_saving_w -= std::mem::take(&mut l.saving_w);
                self.sched.finish(id, ev.time)?;
                self.done += 1;
            }
            Kind::Arrival(i) => {
                let id = self.sched.submit(self.workload.jobs[i as usize].spec.clone(), ev.time)?;
                debug_assert_eq!(id.idx(), i as usize + self.offset, "the twin submits in arrival order");
                self.push_next_arrival();
            }
            Kind::Wakeup => {}
            Kind::Hour => {
                // tick while anything can still happen (an empty queue with nothing running
                // waits for wake-ups, which the scheduler sets itself)
                if self.done < self.workload.jobs.len() as u64
                    && (!self.events.is_empty() || self.sched.running_len() > 0)
                {
                    self.push(ev.time + Secs(3600), Kind::Hour);
                }
            }
            Kind::NextFailure => self.next_failure(ev.time),
            Kind::Fail(d, cause, repair) => self.fail(d, cause, repair, ev.time)?,
            Kind::PredictedFail(d, cause) => {
                let f = self.failures.as_mut().expect("predicted failures need the failure model");
                if f.pending[d as usize].is_some_and(|p| p.at == ev.time) {
                    f.pending[d as usize] = None;
                    f.maintenance.predictable_failures += 1;
                    self.fail(d, cause, 0, ev.time)?;
                } else {
                    // drained before it failed: avoided (counted at the drain)
                    f.maintenance.predictable_failures += 1;
                }
            }
            Kind::Telemetry => self.telemetry(ev.time)?,
            Kind::Repair(d) => {
                if let Some(det) = self.failures.as_mut().and_then(|f| f.detector.as_mut()) {
                    det.reset(fabrik_model::DomainId(d));
                }
                let g = self.facility.domains[d as usize].group.idx();
                match self.failures.as_mut() {
                    Some(f) if (f.spares[g].len() as u32) < f.cfg.spares_per_group => f.spares[g].push(d),
                    _ => self.sched.repair_domain(fabrik_model::DomainId(d))?,
                }
                self.down.set(ev.time, self.sched.cluster().down_gpus() as f64);
            }
        }
        Ok(())
    }

    /// Draws the next failure of the facility (superposed Poisson processes of all nodes).
    fn next_failure(&mut self, now: SimTime) {
        if self.done >= self.workload.jobs.len() as u64 {
            return; // everything has ended: stop the process so the run can finish
        }
        let Some(f) = self.failures.as_mut() else { return };
        let gap = Exp::new(f.rate + f.switch_rate).map_or(f64::INFINITY, |e| e.sample(&mut f.rng));
        if f.rng.gen::<f64>() * (f.rate + f.switch_rate) < f.switch_rate {
            let g = f.rng.gen_range(0..f.groups.max(1));
            let repair = f.cfg.switch_repair_s.max(1.0) as u64;
            if gap.is_finite() {
                let at = now + Secs(gap.ceil() as u64);
                let first = self.facility.groups[g as usize].first_domain;
                self.push(at, Kind::Fail(first, SWITCH_CAUSE as u8, repair));
                self.push(at, Kind::NextFailure);
            }
            return;
        }
        let x = f.rng.gen::<f64>() * f.cumulative.last().copied().unwrap_or(0.0);
        let d = f.cumulative.partition_point(|&c| c <= x).min(f.cumulative.len() - 1) as u32;
        let u = f.rng.gen::<f64>();
        let mut acc = 0.0;
        let mut cause = ROOT_CAUSES.len() - 1;
        for (k, c) in ROOT_CAUSES.iter().enumerate() {
            acc += c.1;
            if u < acc {
                cause = k;
                break;
            }
        }
        if gap.is_finite() {
            // The process runs `lead_time_s` ahead of the failures it draws, so a precursor can
            // start before its failure.
            let onset = now + Secs(gap.ceil() as u64);
            let at = onset + Secs(f.cfg.lead_time_s);
            let predictable = PREDICTABLE.contains(&cause) && f.rng.gen::<f64>() < f.cfg.predictable_share;
            if predictable {
                f.pending[d as usize] = Some(Pending { onset, at, cause: cause as u8 });
                self.push(at, Kind::PredictedFail(d, cause as u8));
            } else {
                self.push(at, Kind::Fail(d, cause as u8, 0));
            }
            self.push(onset, Kind::NextFailure);
        }
    }

    /// One telemetry sample of every node in service; the detector's suspects are drained.
    fn telemetry(&mut self, now: SimTime) -> Result<(), TwinError> {
        if self.done >= self.workload.jobs.len() as u64 {
            return Ok(());
        }
        let Some(f) = self.failures.as_mut() else { return Ok(()) };
        let Some(p) = f.cfg.predictive.clone() else { return Ok(()) };
        let mut suspects = Vec::new();
        let noise = Normal::new(0.0, 1.5).expect("valid normal");
        for d in 0..self.facility.domains.len() {
            let dom = fabrik_model::DomainId(d as u32);
            if self.sched.cluster().is_down(dom) {
                continue;
            }
            // healthy: ~0.5 corrected ECC errors and 1% chance of an XID per sample; a degrading
            // part ramps to ~12.5 errors, 41% XIDs and +5 °C as its failure approaches
            let x = match f.pending[d] {
                Some(pf) if now >= pf.onset => {
                    ((now - pf.onset).0 as f64 / ((pf.at - pf.onset).0.max(1)) as f64).min(1.0)
                }
                _ => 0.0,
            };
            let r = &mut f.telemetry_rng;
            let ecc = Poisson::new(0.5 + 12.0 * x).map_or(0.0, |p| p.sample(r));
            let xid = u32::from(r.gen::<f64>() < 0.01 + 0.4 * x);
            let temp = 5.0 * x + noise.sample(r);
            let sample = fabrik_model::health::Sample { domain: dom, at: now, ecc, xid, temp_dev_c: temp };
            f.maintenance.telemetry_samples += 1;
            if let Some(fabrik_model::health::Verdict::Suspect { .. }) =
                f.detector.as_mut().map(|det| det.observe(&sample))
            {
                suspects.push(d as u32);
            }
        }
        for d in suspects {
            self.drain(d, now, &p)?;
        }
        self.push(now + Secs(p.interval_s.max(1)), Kind::Telemetry);
        Ok(())
    }

    /// Takes a suspect node out of service; its jobs checkpoint and move.
    fn drain(&mut self, d: u32, now: SimTime, p: &PredictiveConfig) -> Result<(), TwinError> {
        let dom = fabrik_model::DomainId(d);
        let f = self.failures.as_mut().expect("drains need the failure model");
        let true_positive = f.pending[d as usize].filter(|pf| now >= pf.onset && now < pf.at);
        f.pending[d as usize] = None;
        f.maintenance.drains += 1;
        let gpus = f64::from(self.facility.domain_gpus(dom));
        let repair = match true_positive {
            Some(pf) => {
                f.maintenance.true_drains += 1;
                f.maintenance.failures_avoided += 1;
                ROOT_CAUSES[pf.cause as usize].2 as u64
            }
            None => {
                f.maintenance.false_drains += 1;
                f.maintenance.false_drain_gpu_hours += gpus * p.inspection_s as f64 / 3600.0;
                p.inspection_s
            }
        };
        self.sched.fail_domain(dom, now)?;
        self.swap_in_spare(d)?;
        let mut moved = Vec::new();
        self.sched.drain_interrupted(&mut moved);
        for &id in &moved {
            if true_positive.is_some() {
                let i = id.idx() - self.offset;
                let l = &self.log[i];
                let g = f64::from(self.workload.jobs[i].spec.gpus);
                let unsaved =
                    if l.ckpt_interval > 0 { l.ckpt_interval as f64 / 2.0 } else { (now - l.run_start).0 as f64 / 2.0 };
                let failure_restart =
                    fabrik_model::reliability::DETECTION_S + fabrik_model::reliability::cold_restart_s(g);
                let saved = g * (unsaved + failure_restart - self.cfg.restart_overhead_s as f64).max(0.0) / 3600.0;
                if let Some(f) = self.failures.as_mut() {
                    f.maintenance.gpu_hours_saved_estimate += saved;
                }
            }
            self.stopped(id, now, Stop::Drain);
        }
        if let Some(f) = self.failures.as_mut() {
            f.maintenance.jobs_moved += moved.len() as u64;
        }
        self.push(now + Secs(repair.max(1)), Kind::Repair(d));
        self.down.set(now, self.sched.cluster().down_gpus() as f64);
        Ok(())
    }

    /// A spare of the failed domain's group, if any, takes its place at once.
    fn swap_in_spare(&mut self, d: u32) -> Result<(), TwinError> {
        let g = self.facility.domains[d as usize].group.idx();
        let spare = self.failures.as_mut().and_then(|f| f.spares[g].pop());
        if let Some(sp) = spare {
            self.sched.repair_domain(fabrik_model::DomainId(sp))?;
            if let Some(f) = self.failures.as_mut() {
                f.spare_swaps += 1;
            }
        }
        Ok(())
    }

    fn fail(&mut self, d: u32, cause: u8, given_repair: u64, now: SimTime) -> Result<(), TwinError> {
        let dom = fabrik_model::DomainId(d);
        if self.sched.cluster().is_down(dom) {
            return Ok(());
        }
        self.fail_count += 1;
        self.fail_by_cause[cause as usize] += 1;
        if cause as usize == SWITCH_CAUSE {
            // a leaf switch: every domain of the group goes down together
            let g = &self.facility.groups[self.facility.domains[d as usize].group.idx()];
            let repair = given_repair.max(1);
            for dd in g.domain_ids() {
                if self.sched.cluster().is_down(dd) {
                    continue;
                }
                self.sched.fail_domain(dd, now)?;
                self.push(now + Secs(repair), Kind::Repair(dd.0));
            }
            let mut hit = Vec::new();
            self.sched.drain_interrupted(&mut hit);
            for id in hit {
                self.stopped(id, now, Stop::Failure);
            }
            self.down.set(now, self.sched.cluster().down_gpus() as f64);
            return Ok(());
        }
        let typical = ROOT_CAUSES[cause as usize].2;
        let repair = match self.failures.as_mut() {
            Some(f) if given_repair == 0 => {
                LogNormal::new(typical.ln(), f.cfg.repair_sigma).map_or(typical, |l| l.sample(&mut f.rng))
            }
            _ => given_repair as f64,
        };
        self.sched.fail_domain(dom, now)?;
        self.swap_in_spare(d)?;
        let mut hit = Vec::new();
        self.sched.drain_interrupted(&mut hit);
        for id in hit {
            self.stopped(id, now, Stop::Failure);
        }
        self.push(now + Secs(repair.ceil() as u64), Kind::Repair(d));
        self.down.set(now, self.sched.cluster().down_gpus() as f64);
        Ok(())
    }

    /// A run stopped early — preempted, or interrupted by a failure: the work since the last
    /// checkpoint is lost, the job is requeued (the scheduler already did) and pays a restart
    /// overhead when it runs again (the configured one after a preemption; detection plus a cold
    /// restart that grows with the job's size after a failure).
    fn stopped(&mut self, id: JobId, now: SimTime, why: Stop) {
        let i = id.idx() - self.offset;
        let spec = &self.workload.jobs[i].spec;
        let gpus = f64::from(spec.gpus);
        let l = &mut self.log[i];
        l.epoch += 1;
        let ran = (now - l.run_start).0;
        l.runs.push((l.run_start, now, l.watts));
        self.phase_saving_w -= std::mem::take(&mut l.saving_w);
        // work done at the run's speed (power-limited runs compute slower)
        let useful = (ran.saturating_sub(l.run_overhead) as f64 * l.speed) as u64;
        // completed (work + write) cycles are saved; the partial cycle is lost
        let cycles = if l.ckpt_interval > 0 { useful / (l.ckpt_interval + l.ckpt_cost) } else { 0 };
        let saved = if why == Stop::Drain {
            // a drained node's jobs write a checkpoint before they move: all work done is kept
            useful - cycles * l.ckpt_cost
        } else {
            cycles * l.ckpt_interval
        }
        .min(l.remaining);
        l.remaining -= saved;
        l.held_gpu_s += gpus * ran as f64;
        let lost = gpus * (useful - saved.min(useful)) as f64;
        l.overhead_gpu_s += gpus * ran.min(l.run_overhead) as f64;
        if why == Stop::Failure {
            l.fail_lost_gpu_s += lost;
            l.interruptions += 1;
            l.next_overhead =
                (fabrik_model::reliability::DETECTION_S + fabrik_model::reliability::cold_restart_s(gpus)) as u64;
        } else {
            l.lost_gpu_s += lost;
            l.next_overhead = self.cfg.restart_overhead_s;
        }
    }

    /// The checkpoint interval a job runs with, seconds (0: none).
    fn checkpoint_interval(&self, spec: &fabrik_model::JobSpec) -> u64 {
        match self.cfg.checkpoint {
            CheckpointPolicy::AsSubmitted => spec.checkpoint_interval.map_or(0, |s| s.0),
            CheckpointPolicy::Every(s) => s,
            CheckpointPolicy::YoungDaly => {
                let rate = self
                    .cfg
                    .failures
                    .as_ref()
                    .map_or(fabrik_model::reliability::FAILURES_PER_1000_NODE_DAYS, |f| f.per_1000_node_days);
                let per_node =
                    spec.gpu_type.map_or(8, |t| fabrik_model::reliability::gpus_per_node(&self.facility.gpu(t).name));
                young_daly_s(spec.gpus, per_node, rate, self.cfg.checkpoint_write_s)
            }
        }
    }

    /// Runs until every job has ended; returns the report.
    pub fn run(mut self, mut progress: impl FnMut(Progress)) -> Result<Report, TwinError> {
        self.push_next_arrival();
        let spares = self.failures.as_ref().map_or(0, |f| f.cfg.spares_per_group);
        if spares > 0 {
            for g in 0..self.facility.groups.len() {
                let grp = &self.facility.groups[g];
                let n = spares.min(grp.domains.saturating_sub(1));
                for d in (grp.first_domain + grp.domains - n)..(grp.first_domain + grp.domains) {
                    self.sched.fail_domain(fabrik_model::DomainId(d), SimTime::ZERO)?;
                    self.failures.as_mut().expect("spares need the failure model").spares[g].push(d);
                }
            }
            self.down.set(SimTime::ZERO, self.sched.cluster().down_gpus() as f64);
            // a gang larger than what stays in service would wait forever
            for (index, j) in self.workload.jobs.iter().enumerate() {
                let max = self.sched.cluster().max_gang_in_service(j.spec.gpu_type);
                if u64::from(j.spec.gpus) > max {
                    return Err(TwinError::TooLargeWithSpares {
                        workload: self.workload.source.clone(),
                        job: j.spec.name.clone(),
                        index,
                        gpus: j.spec.gpus,
                        spares,
                        facility: self.facility.name.clone(),
                        max,
                    });
                }
            }
        }
        if self.hourly {
            self.push(SimTime::ZERO, Kind::Hour);
        }
        if let Some(f) = &self.failures {
            let telemetry = f.cfg.predictive.is_some();
            self.push(SimTime::ZERO, Kind::NextFailure);
            if telemetry {
                self.push(SimTime::ZERO, Kind::Telemetry);
            }
        }
        for k in 0..self.cfg.failure_trace.len() {
            let e = &self.cfg.failure_trace[k];
            let kind = Kind::Fail(e.domain.0, e.cause, e.repair.0.max(1));
            self.push(e.at, kind);
        }
        let mut started = Vec::new();
        let total = self.workload.jobs.len() as u64;
        while let Some(Reverse(ev)) = self.events.pop() {
            let now = ev.time;
            if self.done < total {
                // hour ticks may outlive the last job by an hour: the run's energy ends with it
                self.ledger.advance(&self.cfg.energy, now);
            }
            self.handle(ev)?;
            while self.events.peek().is_some_and(|Reverse(e)| e.time == now) {
                let Reverse(ev) = self.events.pop().expect("peeked");
                self.handle(ev)?;
            }
            if self.hourly {
                let w = self.ledger.green_headroom_it_w(&self.cfg.energy, now);
                self.sched.set_green_headroom_w(w);
            }
            self.sched.schedule(now, &mut started);
            self.passes += 1;
            self.sched.drain_preempted(&mut self.preempted);
            for k in 0..self.preempted.len() {
                let id = self.preempted[k];
                self.stopped(id, now, Stop::Preempted);
            }
            for &id in &started {
                let tj = &self.workload.jobs[id.idx() - self.offset];
                let tau = self.checkpoint_interval(&tj.spec);
                let l = &mut self.log[id.idx() - self.offset];
                l.ckpt_interval = tau;
                l.ckpt_cost = if tau > 0 { self.cfg.checkpoint_write_s } else { 0 };
                l.first_start.get_or_insert(now);
                l.run_start = now;
                l.run_overhead = std::mem::take(&mut l.next_overhead);
                l.epoch += 1;
                let entry = self.sched.job(id);
                let fraction = entry.power_fraction;
                l.speed = fabrik_model::energy::speed_at_power(fraction).max(1e-3);
                l.min_power_fraction = l.min_power_fraction.min(fraction);
                let (busy, idle) = entry.parts.first().map_or((0.0, 0.0), |&(d, _)| {
                    let g = self.facility.gpu(self.facility.pools[self.facility.domains[d.idx()].pool.idx()].gpu_type);
                    (g.average_it_power_w(1.0), g.average_it_power_w(0.0))
                });
                let gpus = f64::from(tj.spec.gpus);
                let full = gpus * (idle + fraction * (busy - idle));
                let work = wall_for(l.remaining, l.ckpt_interval, l.ckpt_cost);
                let need = (work as f64 / l.speed).ceil() as u64 + l.run_overhead;
                // Its power profile: computing at `full`; restarting and writing blocking
                // checkpoints near idle (H100 ~100 W while checkpointing, Morrison et al. 2025:
                // we take the idle draw). The scheduler admits at `full`; the ledger books the
                // run's mean.
                let low_s = l.run_overhead + (work - l.remaining.min(work));
                let low_frac = if need > 0 { (low_s as f64 / need as f64).min(1.0) } else { 0.0 };
                l.watts = full - (full - gpus * idle) * low_frac;
                l.saving_w = full - l.watts;
                self.phase_saving_w += l.saving_w;
                // the brain's walltime: a policy may round it (slurm: whole minutes)
                let walltime = self.sched.job(id).spec.walltime.0;
                l.killed = need > walltime;
                let (end, epoch) = (now + Secs(need.min(walltime)), l.epoch);
                self.push(end, Kind::End(id, epoch));
            }
            if let Some(w) = self.sched.next_wakeup().filter(|&w| w > now) {
                if self.wakeup_pushed != Some(w) {
                    self.wakeup_pushed = Some(w);
                    self.push(w, Kind::Wakeup);
                }
            }
            self.busy.set(now, self.sched.busy_gpus() as f64);
            self.ledger.set_it_w(self.sched.it_power_w() - self.phase_saving_w);
            let claimed = self.sched.claimed_idle_gpus();
            let free = self.sched.cluster().free_gpus().saturating_sub(claimed);
            self.cap_lost.set(now, self.sched.power_blocked_gpus().min(free) as f64);
            self.claim_idle.set(now, claimed as f64);
            self.queue.set(now, (self.sched.pending().len() + self.sched.deferred_len()) as f64);
            if self.events_handled.is_multiple_of(8192) {
                progress(Progress { now, jobs_done: self.done, jobs_total: total });
            }
        }
        if self.done < total {
            let stuck = self.sched.pending().iter().find(|j| !self.sched.is_reservation(**j)).copied();
            let why = stuck.and_then(|j| self.sched.explain(j).ok()).map(|e| e.to_string()).unwrap_or_default();
            return Err(TwinError::Stuck(total - self.done, why));
        }
        let end = self.sched.jobs().iter().skip(self.offset).filter_map(|j| j.end).max().unwrap_or_default();
        self.busy.set(end, 0.0);
        self.cap_lost.set(end, 0.0);
        self.claim_idle.set(end, 0.0);
        self.ledger.advance(&self.cfg.energy, end);
        self.down.set(end, 0.0);
        self.queue.set(end, 0.0);
        progress(Progress { now: end, jobs_done: self.done, jobs_total: total });
        Ok(report::build(report::Inputs {
            facility: self.facility,
            workload: self.workload,
            sched: &self.sched,
            cfg: &self.cfg,
            log: &self.log,
            busy: &self.busy,
            queue: &self.queue,
            events: self.events_handled,
            passes: self.passes,
            offset: self.offset,
            failures: (self.failures.is_some() || !self.cfg.failure_trace.is_empty())
                .then(|| (self.fail_count, self.fail_by_cause.clone())),
            down: &self.down,
            maintenance: self.failures.as_ref().filter(|f| f.cfg.predictive.is_some()).map(|f| f.maintenance.clone()),
            spare_swaps: self.failures.as_ref().map_or(0, |f| f.spare_swaps),
            ledger: &self.ledger,
            cap_lost: &self.cap_lost,
            claim_idle: &self.claim_idle,
        }))
    }
}

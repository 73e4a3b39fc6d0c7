//! The discrete-event engine: a virtual clock and an event queue ordered by
//! (time, class, sequence number). At one instant, job ends are handled before arrivals (GPUs
//! freed at t are usable by a job submitted at t), then one scheduling pass runs.

use crate::config::{young_daly_s, CheckpointPolicy, PredictiveConfig, TwinConfig};
use crate::failure_model::{switch_cause, Drawn, Failures, Interruption};
use crate::joblog::{JobLog, RestartCause};
use crate::metrics::TimeSeries;
use crate::report::{self, Report};
use crate::workload::Workload;
use fabrik_model::{Facility, JobId, Secs, SimTime};
use fabrik_sched::Scheduler;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use thiserror::Error;

/// A job asks for a GPU type the facility has none of.
#[derive(Debug)]
pub struct MissingGpu {
    pub workload: String,
    pub job: String,
    pub index: usize,
    pub gpu_type: String,
    pub facility: String,
    /// The types it has.
    pub has: String,
}

#[derive(Debug, Error)]
pub enum TwinError {
    #[error(transparent)]
    Sched(#[from] fabrik_sched::SchedError),
    #[error("workload {workload}: job '{job}' (#{index}) asks for {gpus} GPUs; facility '{facility}' holds at most {max} in one pool of its type; --skip-unfit drops such jobs")]
    TooLarge { workload: String, job: String, index: usize, gpus: u32, facility: String, max: u64 },
    #[error("workload {}: job '{}' (#{}) asks for {} GPUs; facility '{}' has none (it has {}); --skip-unfit drops such jobs", .0.workload, .0.job, .0.index, .0.gpu_type, .0.facility, .0.has)]
    NoSuchGpu(Box<MissingGpu>),
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
    #[error("{unfinished} job(s) unfinished {years} years after the last submission, the twin's horizon; the first, '{job}', was interrupted {interruptions} times by failures and preempted {preemptions} times (a job that needs more uninterrupted time than its nodes' mean time between failures, without checkpoints, rarely finishes: see `fabrik plan checkpoint`); now: {why}")]
    Horizon { unfinished: u64, years: u64, job: String, interruptions: u32, preemptions: u32, why: String },
    #[error("workload {0} has no jobs")]
    Empty(String),
    #[error("{0} jobs can never start; the first: {1}")]
    Stuck(u64, String),
}

/// How long after the last submission a run may go on: twice the longest job, 10 years. Past
/// it the run stops with an error naming the first unfinished job, so a job that keeps failing
/// cannot make a run (and its hourly energy ledger) grow without bound.
pub const HORIZON_AFTER_LAST_SUBMIT_S: u64 = 2 * MAX_JOB_S;

/// Interruptions listed in a report's timeline (the count is always complete).
pub const MAX_TIMELINE: usize = 100_000;

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
    /// A domain fails with a root cause (index into the run's `RootCauses`; one past the last: a leaf switch) for a repair time (0: draw
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

/// Wall time to do `work` seconds when every `tau` seconds of work cost `cost` more.
fn wall_for(work: u64, tau: u64, cost: u64) -> u64 {
    if tau == 0 || cost == 0 {
        return work;
    }
    work + (work.saturating_sub(1) / tau) * cost
}

/// Why a run stopped before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Preempted,
    Failure,
    /// Its node was drained: it checkpointed and moves.
    Drain,
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
    log: JobLog,
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
    /// Restarts by cause: how many, their configured cost and the GPU-hours they took.
    restarts: crate::report::Restarts,
    /// Every interruption by a failure, in time order.
    interruptions: Vec<Interruption>,
    passes: u64,
    done: u64,
    wakeup_pushed: Option<SimTime>,
    /// Started from a snapshot: its running and queued jobs are the workload's first.
    fork: Option<crate::fork::Fork>,
}

impl<'a> Twin<'a> {
    pub fn new(facility: &'a Facility, workload: &'a Workload, cfg: TwinConfig) -> Result<Twin<'a>, TwinError> {
        Twin::build(facility, workload, cfg, None)
    }

    /// A twin that starts from a running brain's snapshot (see `fork`); `workload` is the
    /// fork's. A policy other than the snapshot's computes the queue's priorities anew.
    pub fn forked(
        facility: &'a Facility,
        workload: &'a Workload,
        cfg: TwinConfig,
        mut fork: crate::fork::Fork,
    ) -> Result<Twin<'a>, TwinError> {
        if fork.snapshot.policy != cfg.policy {
            fork.snapshot.policy = cfg.policy.clone();
            fork.snapshot.last_recalc = None;
        }
        Twin::build(facility, workload, cfg, Some(fork))
    }

    fn build(
        facility: &'a Facility,
        workload: &'a Workload,
        cfg: TwinConfig,
        fork: Option<crate::fork::Fork>,
    ) -> Result<Twin<'a>, TwinError> {
        if workload.jobs.is_empty() {
            return Err(TwinError::Empty(workload.source.clone()));
        }
        // the largest gang of any type, then of each type (once: a year has 2.6 M jobs)
        let max_any = facility.max_gang(None);
        let max_of: Vec<u64> =
            (0..facility.catalog.len()).map(|t| facility.max_gang(Some(fabrik_model::GpuTypeId(t as u32)))).collect();
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
            let max = j.spec.gpu_type.map_or(max_any, |t| max_of.get(t.idx()).copied().unwrap_or(0));
            if let (Some(t), 0) = (j.spec.gpu_type, max) {
                return Err(TwinError::NoSuchGpu(Box::new(MissingGpu {
                    workload: workload.source.clone(),
                    job: j.spec.name.clone(),
                    index,
                    gpu_type: facility.gpu(t).name.clone(),
                    facility: facility.name.clone(),
                    has: facility.gpu_types_present().join(", "),
                })));
            }
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
        // the brain weighs a victim's restart at what this body charges for it
        let mut sched_cfg = cfg.sched.clone();
        sched_cfg.restart_cost = Secs(cfg.restart_overhead_s);
        let mut sched = match &fork {
            Some(f) => Scheduler::restore(facility, &f.snapshot, sched_cfg)?.0,
            None => Scheduler::for_facility(facility, &cfg.policy, sched_cfg, SimTime::ZERO)?,
        };
        sched.set_clock_origin(workload.clock_origin.unwrap_or(0));
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
        let failures = cfg.failures.clone().map(|fc| Failures::new(facility, fc, cfg.root_causes.clone()));
        let causes = cfg.root_causes.causes.len();
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
            log: JobLog::with_capacity(workload.jobs.len()),
            preempted: Vec::new(),
            failures,
            fail_count: 0,
            fail_by_cause: vec![0; causes + 1],
            down: TimeSeries::new(bucket),
            ledger,
            phase_saving_w: 0.0,
            cap_lost: TimeSeries::new(bucket),
            claim_idle: TimeSeries::new(bucket),
            hourly,
            busy: TimeSeries::new(bucket),
            queue: TimeSeries::new(bucket),
            events_handled: 0,
            restarts: Default::default(),
            interruptions: Vec::new(),
            passes: 0,
            done: 0,
            wakeup_pushed: None,
            fork,
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
                let i = id.idx();
                // an end of a run that was stopped (the job may have ended since)
                if self.log.live.get(i).map(|l| l.epoch) != Some(epoch) {
                    return Ok(());
                }
                let gpus = f64::from(self.workload.jobs[i].spec.gpus);
                // a run killed at its walltime wrote at most what a whole run would
                let ckpt_s = self.log.live[i].run_ckpt_s;
                let paid = self.log.end_run(i, ev.time, gpus, ckpt_s);
                self.phase_saving_w -= std::mem::take(&mut self.log.live[i].saving_w);
                self.restarts.paid(paid);
                self.sched.finish(id, ev.time)?;
                // the record keeps what the report needs; the brain forgets the job
                let entry = self.sched.retire(id)?;
                self.log.ended(i, ev.time, &entry);
                self.done += 1;
            }
            Kind::Arrival(i) => {
                let mut spec = self.workload.jobs[i as usize].spec.clone();
                // the brain judges a victim's unsaved work by the interval this body checkpoints at
                let tau = self.checkpoint_interval(&spec);
                spec.checkpoint_interval = (tau > 0).then_some(Secs(tau));
                let id = self.sched.submit(spec, ev.time)?;
                let at = self.log.arrive(self.workload.jobs[i as usize].runtime.0);
                debug_assert_eq!((id.idx(), at), (i as usize, i as usize), "the twin submits in arrival order");
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

    /// Draws the next failure of the facility and schedules it.
    fn next_failure(&mut self, now: SimTime) {
        if self.done >= self.workload.jobs.len() as u64 {
            return; // everything has ended: stop the process so the run can finish
        }
        let Some(f) = self.failures.as_mut() else { return };
        match f.draw(now, self.facility) {
            Some(Drawn::Switch { at, first, repair_s }) => {
                let switch = switch_cause(&f.causes) as u8;
                self.push(at, Kind::Fail(first, switch, repair_s));
                self.push(at, Kind::NextFailure);
            }
            Some(Drawn::Node { onset, at, domain, cause, predictable }) => {
                let kind = if predictable { Kind::PredictedFail(domain, cause) } else { Kind::Fail(domain, cause, 0) };
                self.push(at, kind);
                self.push(onset, Kind::NextFailure);
            }
            None => {}
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
        for d in 0..self.facility.domains.len() {
            if self.sched.cluster().is_down(fabrik_model::DomainId(d as u32)) {
                continue;
            }
            let Some(sample) = f.sample(d, now) else { continue };
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
                self.cfg.root_causes.causes[pf.cause as usize].repair_s as u64
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
                let i = id.idx();
                let l = &self.log.live[i];
                let g = f64::from(self.workload.jobs[i].spec.gpus);
                let unsaved =
                    if l.ckpt_interval > 0 { l.ckpt_interval as f64 / 2.0 } else { (now - l.run_start).0 as f64 / 2.0 };
                let failure_restart = self.cfg.failure_restart(g) as f64;
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
        if cause as usize == switch_cause(&self.cfg.root_causes) {
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
                self.interrupted(id, now, d, cause);
            }
            self.down.set(now, self.sched.cluster().down_gpus() as f64);
            return Ok(());
        }
        let repair = match self.failures.as_mut() {
            Some(f) if given_repair == 0 => f.repair_s(cause),
            _ => given_repair as f64,
        };
        self.sched.fail_domain(dom, now)?;
        self.swap_in_spare(d)?;
        let mut hit = Vec::new();
        self.sched.drain_interrupted(&mut hit);
        for id in hit {
            self.interrupted(id, now, d, cause);
        }
        self.push(now + Secs(repair.ceil() as u64), Kind::Repair(d));
        self.down.set(now, self.sched.cluster().down_gpus() as f64);
        Ok(())
    }

    /// A failure of node `node` interrupted a running job: it is recorded for the timeline (the
    /// first `MAX_TIMELINE` of the run: the report stays bounded when a job keeps failing).
    fn interrupted(&mut self, id: JobId, now: SimTime, node: u32, cause: u8) {
        if self.interruptions.len() < MAX_TIMELINE {
            self.interruptions.push(Interruption { at: now, job: id, node, cause });
        }
        self.stopped(id, now, Stop::Failure);
    }

    /// A run stopped early — preempted, or interrupted by a failure: the work since the last
    /// checkpoint is lost, the job is requeued (the scheduler already did) and pays a restart
    /// overhead when it runs again (the configured one after a preemption; detection plus a cold
    /// restart that grows with the job's size after a failure).
    fn stopped(&mut self, id: JobId, now: SimTime, why: Stop) {
        let i = id.idx();
        let spec = &self.workload.jobs[i].spec;
        let gpus = f64::from(spec.gpus);
        let l = &self.log.live[i];
        let ran = (now - l.run_start).0;
        // work done at the run's speed (power-limited runs compute slower)
        let useful = (ran.saturating_sub(l.run_overhead) as f64 * l.speed) as u64;
        // completed (work + write) cycles are saved; the partial cycle is lost
        let cycles = if l.ckpt_interval > 0 { useful / (l.ckpt_interval + l.ckpt_cost) } else { 0 };
        let paid = self.log.end_run(i, now, gpus, cycles * l.ckpt_cost);
        let (l, r) = (&mut self.log.live[i], &mut self.log.records[i]);
        l.epoch += 1;
        self.phase_saving_w -= std::mem::take(&mut l.saving_w);
        self.restarts.paid(paid);
        let keeps_all = match why {
            Stop::Drain => true,
            Stop::Preempted => self.cfg.lossless_preemption,
            Stop::Failure => self.cfg.fault_tolerant_stall_s.is_some(),
        };
        let saved = if keeps_all {
            // a drained node's jobs write a checkpoint before they move (when preemption is
            // lossless, a preempted job saves its state; fault-tolerant training survives a
            // failure without rolling back): all work done is kept
            useful - cycles * l.ckpt_cost
        } else {
            cycles * l.ckpt_interval
        }
        .min(l.remaining);
        l.remaining -= saved;
        // what it computed and will compute again (its checkpoint writes were writes, not work)
        let lost = gpus * useful.saturating_sub(cycles * l.ckpt_cost).saturating_sub(saved) as f64;
        let (cause, overhead) = match why {
            Stop::Failure => (RestartCause::Failure, self.cfg.failure_restart(gpus)),
            Stop::Preempted => (RestartCause::Preemption, self.cfg.restart_overhead_s),
            Stop::Drain => (RestartCause::Drain, self.cfg.restart_overhead_s),
        };
        if why == Stop::Failure {
            r.fail_lost_gpu_s += lost;
            r.interruptions += 1;
        } else {
            r.lost_gpu_s += lost;
        }
        l.next_overhead = overhead;
        l.next_cause = Some(cause);
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

    /// Runs until every job has ended; returns the report. Each turn: the events of one
    /// instant, one scheduling pass, the runs it started, and the time series.
    pub fn run(mut self, mut progress: impl FnMut(Progress)) -> Result<Report, TwinError> {
        self.hold_spares()?;
        self.seed_events();
        let mut started = Vec::new();
        let total = self.workload.jobs.len() as u64;
        let last_submit = self.workload.jobs.last().map_or(SimTime::ZERO, |j| j.spec.submit);
        let horizon = last_submit + Secs(HORIZON_AFTER_LAST_SUBMIT_S);
        while let Some(Reverse(ev)) = self.events.pop() {
            let now = ev.time;
            if now > horizon {
                return Err(self.beyond_horizon(total));
            }
            self.instant(ev)?;
            self.pass(now, &mut started);
            self.record(now);
            if self.events_handled.is_multiple_of(8192) {
                progress(Progress { now, jobs_done: self.done, jobs_total: total });
            }
        }
        if self.done < total {
            let stuck = self.sched.pending().first().copied();
            let why = stuck.and_then(|j| self.sched.explain(j).ok()).map(|e| e.to_string()).unwrap_or_default();
            return Err(TwinError::Stuck(total - self.done, why));
        }
        let end = self.log.records.iter().filter_map(|r| r.end).max().unwrap_or_default();
        progress(Progress { now: end, jobs_done: self.done, jobs_total: total });
        Ok(self.report(end))
    }

    /// The error for a run that passed its horizon, naming the first unfinished job.
    fn beyond_horizon(&self, total: u64) -> TwinError {
        // ended jobs were retired: the brain's first job is the first unfinished one
        let Some((first, e)) = self.sched.jobs().next() else {
            return TwinError::Stuck(total - self.done, String::new());
        };
        TwinError::Horizon {
            unfinished: total - self.done,
            years: HORIZON_AFTER_LAST_SUBMIT_S / (366 * 86_400),
            job: e.spec.name.clone(),
            interruptions: self.log.records[first.idx()].interruptions,
            preemptions: e.preemptions,
            why: self.sched.explain(first).map(|x| x.to_string()).unwrap_or_default(),
        }
    }

    /// The events of one instant: `first` and every other event at its time.
    fn instant(&mut self, first: Event) -> Result<(), TwinError> {
        let now = first.time;
        if self.done < self.workload.jobs.len() as u64 {
            // hour ticks may outlive the last job by an hour: the run's energy ends with it
            self.ledger.advance(&self.cfg.energy, now);
        }
        self.handle(first)?;
        while self.events.peek().is_some_and(|Reverse(e)| e.time == now) {
            let Reverse(ev) = self.events.pop().expect("peeked");
            self.handle(ev)?;
        }
        Ok(())
    }

    /// One scheduling pass at `now` and what follows from it: preempted runs stop, started
    /// runs begin, the next wake-up is queued.
    fn pass(&mut self, now: SimTime, started: &mut Vec<JobId>) {
        if self.hourly {
            let w = self.ledger.green_headroom_it_w(&self.cfg.energy, now);
            self.sched.set_green_headroom_w(w);
        }
        self.sched.schedule(now, started);
        self.passes += 1;
        self.sched.drain_preempted(&mut self.preempted);
        for k in 0..self.preempted.len() {
            let id = self.preempted[k];
            self.stopped(id, now, Stop::Preempted);
        }
        for &id in started.iter() {
            self.begin_run(id, now);
        }
        if let Some(w) = self.sched.next_wakeup().filter(|&w| w > now) {
            if self.wakeup_pushed != Some(w) {
                self.wakeup_pushed = Some(w);
                self.push(w, Kind::Wakeup);
            }
        }
    }

    /// Takes the spare domains of every group out of service before the run (when the failure
    /// model holds spares); a gang larger than what stays in service would wait forever.
    fn hold_spares(&mut self) -> Result<(), TwinError> {
        let spares = self.failures.as_ref().map_or(0, |f| f.cfg.spares_per_group);
        if spares == 0 {
            return Ok(());
        }
        for g in 0..self.facility.groups.len() {
            let grp = &self.facility.groups[g];
            let n = spares.min(grp.domains.saturating_sub(1));
            for d in (grp.first_domain + grp.domains - n)..(grp.first_domain + grp.domains) {
                self.sched.fail_domain(fabrik_model::DomainId(d), SimTime::ZERO)?;
                self.failures.as_mut().expect("spares need the failure model").spares[g].push(d);
            }
        }
        self.down.set(SimTime::ZERO, self.sched.cluster().down_gpus() as f64);
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
        Ok(())
    }

    /// The first arrival, the hour ticks, the failure process and telemetry, and the failure
    /// trace.
    fn seed_events(&mut self) {
        // a forked run begins at the snapshot's moment (its hour ticks at the next full hour)
        let (t0, first_hour) = match self.fork.take() {
            Some(f) => {
                self.continue_from(&f);
                (f.at, SimTime(f.at.0.div_ceil(3600) * 3600))
            }
            None => (SimTime::ZERO, SimTime::ZERO),
        };
        self.push_next_arrival();
        if self.hourly {
            self.push(first_hour, Kind::Hour);
        }
        if let Some(f) = &self.failures {
            let telemetry = f.cfg.predictive.is_some();
            self.push(t0, Kind::NextFailure);
            if telemetry {
                self.push(t0, Kind::Telemetry);
            }
        }
        for k in 0..self.cfg.failure_trace.len() {
            let e = &self.cfg.failure_trace[k];
            let kind = Kind::Fail(e.domain.0, e.cause, e.repair.0.max(1));
            self.push(e.at + Secs(t0.0), kind);
        }
    }

    /// The state a snapshot gave: the restored brain's running jobs (ids `0..running`) run on
    /// from their start with what is left of their runtime, its queued jobs have arrived, and a
    /// pass runs at the snapshot's moment.
    fn continue_from(&mut self, f: &crate::fork::Fork) {
        for k in 0..f.running + f.queued {
            let runtime = self.workload.jobs[k].runtime.0;
            self.log.arrive(runtime);
            if k < f.running {
                let start = f.snapshot.running[k].start.unwrap_or(f.at);
                // at least a second left: a run the snapshot caught ending ends at once
                self.log.live[k].remaining = runtime.saturating_sub((f.at - start).0).max(1);
                self.begin_run_from(JobId(k as u32), f.at, start);
            }
        }
        self.next_arrival = f.running + f.queued;
        self.push(f.at, Kind::Wakeup);
    }

    /// A run of a job the pass started: its checkpointing, restart overhead, speed and power
    /// profile, and its end (or its kill at the brain's walltime).
    fn begin_run(&mut self, id: JobId, now: SimTime) {
        self.begin_run_from(id, now, now);
    }

    /// A run the twin takes over at `now` that began at `started` (a snapshot's running job:
    /// its walltime counts from then).
    fn begin_run_from(&mut self, id: JobId, now: SimTime, started: SimTime) {
        let tj = &self.workload.jobs[id.idx()];
        // the interval it was submitted to the brain with (see the arrival)
        let tau = self.sched.job(id).spec.checkpoint_interval.map_or(0, |s| s.0);
        let (l, r) = (&mut self.log.live[id.idx()], &mut self.log.records[id.idx()]);
        l.ckpt_interval = tau;
        l.ckpt_cost = if tau > 0 { self.cfg.checkpoint_write_s } else { 0 };
        r.first_start.get_or_insert(started);
        l.run_start = now;
        l.run_overhead = std::mem::take(&mut l.next_overhead);
        l.run_cause = l.next_cause.take();
        if let Some(c) = l.run_cause {
            self.restarts.started(c, l.run_overhead);
        }
        l.epoch += 1;
        let entry = self.sched.job(id);
        let fraction = entry.power_fraction;
        l.speed = fabrik_model::energy::speed_at_power(fraction).max(1e-3);
        r.min_power_fraction = r.min_power_fraction.min(fraction);
        let (busy, idle) = entry.parts().first().map_or((0.0, 0.0), |&(d, _)| {
            let g = self.facility.gpu(self.facility.pools[self.facility.domains[d.idx()].pool.idx()].gpu_type);
            (g.average_it_power_w(1.0), g.average_it_power_w(0.0))
        });
        let gpus = f64::from(tj.spec.gpus);
        let full = gpus * (idle + fraction * (busy - idle));
        let work = wall_for(l.remaining, l.ckpt_interval, l.ckpt_cost);
        let need = (work as f64 / l.speed).ceil() as u64 + l.run_overhead;
        // Its power profile: computing at `full`; restarting and writing blocking checkpoints
        // near idle (H100 ~100 W while checkpointing, Morrison et al. 2025: we take the idle
        // draw). The scheduler admits at `full`; the ledger books the run's mean.
        l.run_ckpt_s = work - l.remaining.min(work);
        let low_s = l.run_overhead + l.run_ckpt_s;
        let low_frac = if need > 0 { (low_s as f64 / need as f64).min(1.0) } else { 0.0 };
        l.watts = full - (full - gpus * idle) * low_frac;
        l.saving_w = full - l.watts;
        self.phase_saving_w += l.saving_w;
        // the brain's walltime: a policy may round it (slurm: whole minutes)
        let walltime = self.sched.job(id).spec.walltime.0.saturating_sub((now - started).0).max(1);
        r.killed = need > walltime;
        let (end, epoch) = (now + Secs(need.min(walltime)), l.epoch);
        self.push(end, Kind::End(id, epoch));
    }

    /// The time series after a turn: busy GPUs, IT power, GPUs idle under the cap or claimed,
    /// the queue.
    fn record(&mut self, now: SimTime) {
        self.busy.set(now, self.sched.busy_gpus() as f64);
        self.ledger.set_it_w(self.sched.it_power_w() - self.phase_saving_w);
        let claimed = self.sched.claimed_idle_gpus();
        let free = self.sched.cluster().free_gpus().saturating_sub(claimed);
        self.cap_lost.set(now, self.sched.power_blocked_gpus().min(free) as f64);
        self.claim_idle.set(now, claimed as f64);
        self.queue.set(now, (self.sched.pending().len() + self.sched.deferred_len()) as f64);
    }

    /// Closes the series at the last end and builds the report.
    fn report(mut self, end: SimTime) -> Report {
        self.busy.set(end, 0.0);
        self.cap_lost.set(end, 0.0);
        self.claim_idle.set(end, 0.0);
        self.ledger.advance(&self.cfg.energy, end);
        self.down.set(end, 0.0);
        self.queue.set(end, 0.0);
        report::build(report::Inputs {
            restarts: &self.restarts,
            interruptions: &self.interruptions,
            facility: self.facility,
            workload: self.workload,
            cfg: &self.cfg,
            log: &self.log,
            busy: &self.busy,
            queue: &self.queue,
            events: self.events_handled,
            passes: self.passes,
            failures: (self.failures.is_some() || !self.cfg.failure_trace.is_empty())
                .then(|| report::FailureCounts { total: self.fail_count, by_cause: self.fail_by_cause.clone() }),
            down: &self.down,
            maintenance: self.failures.as_ref().filter(|f| f.cfg.predictive.is_some()).map(|f| f.maintenance.clone()),
            spare_swaps: self.failures.as_ref().map_or(0, |f| f.spare_swaps),
            ledger: &self.ledger,
            cap_lost: &self.cap_lost,
            claim_idle: &self.claim_idle,
        })
    }
}

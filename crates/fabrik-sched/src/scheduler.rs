//! The scheduler: jobs, the pending queue, and the scheduling pass — the brain both bodies
//! share. The caller delivers events (`submit`, `finish`, `cancel`, `fail_domain`, …) and
//! carries out the starts a pass returns; nothing here does I/O or reads a clock.
//!
//! By concern, each in its own module (sub-states in brackets, each with its own small API):
//! - `pass`: the pass — advance windows first, then a driver over `consider(job) → Verdict` and
//!   its stages in order (eligibility, energy deferral, power cap, inside a reservation, account
//!   limit, placement with EASY backfill); read its header first;
//! - `queue`: the pending order (tier, priority, submit, id), `enqueue`, the recalculation;
//! - `job`: a job's entry (spec, state as an enum carrying its data, priority, tier, reason);
//! - `quotas` (`Quotas`): running GPUs per tenant node, guarantees, limits, the quota's tier;
//! - `advance` (`AdvanceState`, `Window`): advance reservations, ids of their own (`ResvId`);
//! - `easy` (`EasyHold`): the head's reservation at the shadow time and the budgets backfill
//!   respects;
//! - `preempt`: guarantee reclaim and priority preemption;
//! - `energy` (`Deferrals`; the power budget is `PowerState`): the power cap's admission and the
//!   energy-aware modifier's deferrals and claims;
//! - `views`: accessors and `explain`;
//! - `slurm_pass` (`SlurmState`): the `slurm` policy's own main and backfill scheduler.
//!
//! This module holds the state, construction and the event API.
//!
//! The head's reservation is kept across passes while the same job stays the blocked head and
//! no job started ahead of it: ends only bring the shadow time closer, and backfilled jobs were
//! admitted against the kept per-domain budgets, so the kept shadow time remains a guarantee.

mod advance;
mod easy;
mod energy;
mod job;
mod pass;
mod preempt;
mod queue;
mod quotas;
mod slurm_pass;
pub mod snapshot;
mod table;
mod views;

pub use advance::{ResvId, Window};
pub use job::{Holder, JobEntry, JobState, Outcome, Reservation};
pub use table::IdTable;

use advance::AdvanceState;

use crate::cluster::{Cluster, Parts};
use crate::explain::Reason;
use crate::fairshare::{FairShareConfig, Usage};
use crate::policy::{self, Policy, PriorityCtx};
use crate::power::{EnergyAware, PowerLimits, PowerState};
use crate::SchedError;
use fabrik_model::{DomainId, Facility, JobId, JobSpec, Secs, SimTime, TenantTree};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedConfig {
    /// How many queued jobs after the head one pass considers for backfilling.
    pub backfill_depth: usize,
    pub fair_share: FairShareConfig,
    /// A job pending this long moves to the top tier, oldest first, and so becomes the head
    /// that EASY backfilling reserves for: large gangs start within this plus the longest
    /// running walltime, under every policy.
    pub starvation_after: Secs,
    /// `las` queue thresholds in attained GPU-hours (Tiresias' discretised 2D-LAS).
    pub las_thresholds_gpu_hours: Vec<f64>,
    /// Under a preemptive policy (`las`), a job is not preempted before it has run this long
    /// since its last (re)start (Slurm's `PreemptExemptTime`): without it, a job that just
    /// restarted, with nothing unsaved, is the cheapest victim again.
    pub preempt_exempt: Secs,
    /// Under a preemptive policy, a job is preempted only if it loses less than this much of
    /// its run (time since its last checkpoint or start): with the defaults a job without
    /// checkpoints is never thrown away to reorder the queue (it is exempt until it has run
    /// as long as it would then lose). Guarantee reclaim ignores both limits
    /// (it takes back what an account is entitled to).
    pub preempt_max_unsaved: Secs,
    /// What restarting a preempted job costs, seconds of its GPUs (the twin sets it to its
    /// restart overhead): part of a victim's cost with its unsaved work.
    pub restart_cost: Secs,
    /// How far each QoS may be power-limited when the facility cap binds.
    pub power_limits: PowerLimits,
}

/// The default `preempt_exempt`, seconds.
pub const PREEMPT_EXEMPT_S: u64 = 1800;

impl Default for SchedConfig {
    fn default() -> Self {
        // Slurm's bf_max_job_test default is 500; 100 keeps a pass cheap at 100,000-GPU scale.
        SchedConfig {
            backfill_depth: 100,
            fair_share: FairShareConfig::default(),
            starvation_after: Secs(86_400),
            las_thresholds_gpu_hours: vec![1.0, 10.0, 100.0],
            preempt_exempt: Secs(PREEMPT_EXEMPT_S),
            preempt_max_unsaved: Secs(PREEMPT_EXEMPT_S),
            restart_cost: Secs(300),
            power_limits: PowerLimits::default(),
        }
    }
}

/// A holder of GPUs that `reserve` released while looking for the shadow time.
#[derive(Debug, Clone, Copy)]
enum Freed {
    Job(JobId),
    Window(usize),
}

/// A job's progress as a dependency sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DepState {
    Waiting,
    Started,
    EndedOk,
    EndedNotOk,
}

impl DepState {
    fn ended(self) -> bool {
        matches!(self, DepState::EndedOk | DepState::EndedNotOk)
    }
}

pub struct Scheduler {
    tenants: TenantTree,
    max_gang: u64,
    cluster: Cluster,
    jobs: table::JobTable,
    pending: Vec<JobId>,
    running: BTreeSet<(SimTime, JobId)>,
    policy: Box<dyn Policy>,
    usage: Usage,
    cfg: SchedConfig,
    dirty: bool,
    last_recalc: Option<SimTime>,
    pass: u64,
    wakeup: Option<SimTime>,
    /// The EASY hold: the head's reservation and the per-domain budgets backfill respects.
    easy: easy::EasyHold,
    blocked_head: Option<JobId>,
    scratch: Parts,
    /// What `reserve` released to find the shadow time, in order (restored after).
    released: Vec<Freed>,
    busy_gpus: u64,
    quotas: quotas::Quotas,
    total_gpus: u64,
    preempted: Vec<JobId>,
    interrupted: Vec<JobId>,
    /// Domains cordoned by `cordon_domain`: out of service for new work while the jobs on them
    /// run to their end (or are moved off by the caller).
    cordoned: BTreeSet<DomainId>,
    /// Jobs the body reported as ended unsuccessfully (failed, timed out), for dependencies.
    not_ok: BTreeSet<JobId>,
    power: PowerState,
    energy_aware: Option<EnergyAware>,
    /// The energy-aware modifier's deferred jobs and their claims.
    deferrals: energy::Deferrals,
    requeue: Vec<JobId>,
    advance: Vec<AdvanceState>,
    /// The `slurm` policy's own pass state (main and backfill scheduler); `None` otherwise.
    slurm: Option<Box<slurm_pass::SlurmState>>,
}

impl Scheduler {
    pub fn new(facility: &Facility, policy: Box<dyn Policy>, cfg: SchedConfig) -> Scheduler {
        Scheduler {
            tenants: facility.tenants.clone(),
            max_gang: facility.max_gang(None),
            cluster: Cluster::new(facility),
            jobs: table::JobTable::default(),
            pending: Vec::new(),
            running: BTreeSet::new(),
            usage: Usage::new(facility.tenants.len(), cfg.fair_share.half_life),
            policy,
            cfg,
            dirty: false,
            last_recalc: None,
            pass: 0,
            wakeup: None,
            easy: easy::EasyHold::new(facility.domains.len()),
            blocked_head: None,
            scratch: Parts::new(),
            released: Vec::new(),
            busy_gpus: 0,
            quotas: quotas::Quotas::default(),
            total_gpus: facility.total_gpus(),
            preempted: Vec::new(),
            interrupted: Vec::new(),
            cordoned: BTreeSet::new(),
            not_ok: BTreeSet::new(),
            power: PowerState {
                pool_w: facility
                    .pools
                    .iter()
                    .map(|p| {
                        let g = facility.gpu(p.gpu_type);
                        (g.average_it_power_w(1.0), g.average_it_power_w(0.0))
                    })
                    .collect(),
                pool_types: facility.pools.iter().map(|p| p.gpu_type).collect(),
                overhead_w: facility.total_gpus() as f64 * fabrik_model::energy::NETWORK_STORAGE_W_PER_GPU,
                saved_w: 0.0,
                cap_w: None,
                pue: fabrik_model::grid::Hourly::constant(1.0),
                budget_w: None,
                blocked_gpus: 0,
                green_headroom_w: 0.0,
                claimed_idle_gpus: 0,
            },
            energy_aware: None,
            deferrals: energy::Deferrals::default(),
            requeue: Vec::new(),
            advance: Vec::new(),
            slurm: None,
        }
        .with_quotas()
    }

    fn with_quotas(mut self) -> Scheduler {
        self.load_quotas();
        self
    }

    /// A domain (node or rack) failed or is drained: every job holding GPUs on it stops and is
    /// requeued (see `drain_interrupted`), and the domain takes no work until `repair_domain`.
    pub fn fail_domain(&mut self, d: DomainId, now: SimTime) -> Result<(), SchedError> {
        if d.idx() >= self.cluster.domain_count() {
            return Err(SchedError::Invalid(format!("no domain {}", d.0)));
        }
        // a cordoned domain is down for new work but may still hold jobs: they stop here too
        if self.cluster.is_down(d) && !self.cordoned.remove(&d) {
            return Ok(());
        }
        for id in self.jobs_on(d) {
            self.back_interrupted(id, now);
            self.interrupted.push(id);
        }
        let broken: Vec<JobId> =
            self.deferrals.claims.iter().filter(|c| c.parts.iter().any(|p| p.0 == d)).map(|c| c.job).collect();
        for id in broken {
            // its GPUs are gone: back into the queue in the top tier (it is not deferred again)
            self.deferrals.claims.retain(|c| c.job != id);
            self.requeue_urgent(id, now);
        }
        self.cluster.set_down(d, true);
        for r in self.advance.iter_mut() {
            if let Some(inner) = r.inner_mut() {
                inner.set_down(d, true);
            }
        }
        // capacity shrank: a kept reservation may no longer hold
        self.easy.reservation = None;
        self.dirty = true;
        Ok(())
    }

    /// Cordons a domain, as Slurm's DRAIN does: it takes no new work at once, while the jobs
    /// on it keep their GPUs until they end, are requeued (`requeue`) or the domain fails.
    /// Once no job holds it, it counts as out of service like a failed one; `repair_domain`
    /// returns it. The live control plane cordons a suspect node while its jobs checkpoint.
    pub fn cordon_domain(&mut self, d: DomainId) -> Result<(), SchedError> {
        if d.idx() >= self.cluster.domain_count() {
            return Err(SchedError::Invalid(format!("no domain {}", d.0)));
        }
        if self.cluster.is_down(d) {
            return Ok(());
        }
        // its free GPUs leave service now; those its jobs hold never come back to the free
        // lists (`Cluster::release` skips a domain out of service)
        self.cluster.set_down(d, true);
        for r in self.advance.iter_mut() {
            if let Some(inner) = r.inner_mut() {
                inner.set_down(d, true);
            }
        }
        if !self.jobs_on(d).is_empty() {
            self.cordoned.insert(d);
        }
        self.easy.reservation = None;
        self.dirty = true;
        Ok(())
    }

    /// Running jobs holding GPUs on domain `d`.
    pub fn jobs_on(&self, d: DomainId) -> Vec<JobId> {
        self.running
            .iter()
            .map(|&(_, id)| id)
            .filter(|id| self.jobs[id.idx()].parts().iter().any(|p| p.0 == d))
            .collect()
    }

    /// Whether `d` is cordoned with jobs still on it.
    pub fn is_cordoned(&self, d: DomainId) -> bool {
        self.cordoned.contains(&d) && !self.jobs_on(d).is_empty()
    }

    /// A running job stopped by the body (it checkpointed and left a cordoned node) goes back
    /// to the queue as an interrupted one, usage charged for the time it ran.
    pub fn requeue(&mut self, id: JobId, now: SimTime) -> Result<(), SchedError> {
        let job = self.jobs.get(id.idx()).ok_or(SchedError::UnknownJob(id))?;
        if !job.state.is_running() {
            return Err(SchedError::NotRunning(id));
        }
        self.back_interrupted(id, now);
        self.forget_cordons();
        self.easy.reservation = None;
        self.dirty = true;
        Ok(())
    }

    /// A running job stopped by its node (failed, drained) goes back to the queue as
    /// interrupted, with its priority recomputed.
    fn back_interrupted(&mut self, id: JobId, now: SimTime) {
        let pass = self.pass;
        let j = self.stop_to_pending(id, now);
        j.interruptions += 1;
        j.why = Reason::Interrupted { at: now };
        j.why_pass = pass;
        let p = self.policy.priority(&self.ctx(now), &self.jobs[id.idx()]);
        self.jobs[id.idx()].priority = p;
        self.enqueue(id);
    }

    /// Cordoned domains no job holds any more are plain out-of-service ones.
    fn forget_cordons(&mut self) {
        if self.cordoned.is_empty() {
            return;
        }
        let held: BTreeSet<DomainId> =
            self.running.iter().flat_map(|&(_, id)| self.jobs[id.idx()].parts().iter().map(|p| p.0)).collect();
        self.cordoned.retain(|d| held.contains(d));
    }

    /// A failed or drained domain is back in service with all its GPUs free.
    pub fn repair_domain(&mut self, d: DomainId) -> Result<(), SchedError> {
        if d.idx() >= self.cluster.domain_count() {
            return Err(SchedError::Invalid(format!("no domain {}", d.0)));
        }
        self.forget_cordons();
        if self.cordoned.contains(&d) {
            return Err(SchedError::Invalid(format!("domain {} still holds jobs (cordoned)", d.0)));
        }
        // a domain held by an active reservation returns to the reservation
        let held = self.advance.iter().any(|r| r.open_parts().is_some_and(|parts| parts.iter().any(|p| p.0 == d)));
        if held {
            for r in self.advance.iter_mut() {
                if let Some(inner) = r.inner_mut() {
                    inner.set_down(d, false);
                }
            }
            self.cluster.set_up_allocated(d);
        } else {
            self.cluster.set_down(d, false);
        }
        self.dirty = true;
        Ok(())
    }

    /// Jobs interrupted by failures since the last call; they are back in the queue.
    pub fn drain_interrupted(&mut self, out: &mut Vec<JobId>) {
        out.clear();
        out.append(&mut self.interrupted);
    }

    /// Jobs preempted by passes since the last call: their GPUs are free again and they are
    /// back in the queue. The caller stops them (and accounts for the lost work).
    pub fn drain_preempted(&mut self, out: &mut Vec<JobId>) {
        out.clear();
        out.append(&mut self.preempted);
    }

    /// The one way both bodies build the brain for a facility: the policy by name, then the
    /// facility's advance reservations (their windows are offsets from `origin`, the run's
    /// start in the twin, the store's epoch live), so a setting honoured in the twin is
    /// honoured live.
    pub fn for_facility(
        facility: &Facility,
        policy: &str,
        cfg: SchedConfig,
        origin: SimTime,
    ) -> Result<Scheduler, SchedError> {
        let mut s = Scheduler::with_policy(facility, policy, cfg)?;
        if s.slurm.is_some() && !facility.reservations.is_empty() {
            return Err(SchedError::Invalid(format!(
                "facility {}: the slurm policy does not model fabrik's advance reservations ({} configured)",
                facility.name,
                facility.reservations.len()
            )));
        }
        for r in &facility.reservations {
            let shifted = fabrik_model::facility::AdvanceReservation {
                start: SimTime(origin.0.saturating_add(r.start.0)),
                end: SimTime(origin.0.saturating_add(r.end.0)),
                ..r.clone()
            };
            s.add_reservation(&shifted)?;
        }
        Ok(s)
    }

    /// A start the pass decided could not be carried out by the body (its record was refused
    /// by the store, the executor could not launch it, or Slurm never started it): the job goes
    /// back to the queue — no preemption counted, usage only for the time it held its GPUs.
    pub fn unstart(&mut self, id: JobId, now: SimTime) -> Result<(), SchedError> {
        let job = self.jobs.get(id.idx()).ok_or(SchedError::UnknownJob(id))?;
        if !job.state.is_running() {
            return Err(SchedError::NotRunning(id));
        }
        let pass = self.pass;
        let j = self.stop_to_pending(id, now);
        j.why = Reason::StartUndone { at: now };
        j.why_pass = pass;
        let p = self.policy.priority(&self.ctx(now), &self.jobs[id.idx()]);
        self.jobs[id.idx()].priority = p;
        self.enqueue(id);
        self.easy.reservation = None;
        self.dirty = true;
        Ok(())
    }

    /// Builds a scheduler with a policy chosen by name.
    pub fn with_policy(facility: &Facility, name: &str, mut cfg: SchedConfig) -> Result<Scheduler, SchedError> {
        if name == "slurm" {
            // Slurm's own PriorityDecayHalfLife, PriorityCalcPeriod and PriorityMaxAge
            let sl = &facility.slurm;
            cfg.fair_share.half_life = Secs(sl.decay_half_life_s);
            cfg.fair_share.recalc_interval = Secs(sl.calc_period_s.max(1));
            cfg.fair_share.max_age = Secs(sl.max_age_s);
            cfg.backfill_depth = sl.bf_max_job_test as usize;
            let p = Box::new(crate::slurm_priority::SlurmPolicy::new(facility));
            let mut s = Scheduler::new(facility, p, cfg);
            s.slurm = Some(Box::new(slurm_pass::SlurmState::new(facility)));
            return Ok(s);
        }
        let p = policy::by_name(name, &cfg)?;
        Ok(Scheduler::new(facility, p, cfg))
    }

    /// Accepts a job into the queue. Rejects what could never run.
    pub fn submit(&mut self, mut spec: JobSpec, now: SimTime) -> Result<JobId, SchedError> {
        if let Some(sl) = &self.slurm {
            sl.admit(&mut spec)?;
        }
        self.validate(&spec)?;
        let mut entry = JobEntry::new(spec, self.pass);
        entry.priority = self.policy.priority(&self.ctx(now), &entry);
        entry.guaranteed_demand = self.within_guarantee(entry.spec.account, entry.spec.gpus).is_some();
        entry.tier = self.tier_of(&entry, now);
        let id = self.jobs.push(entry);
        self.enqueue(id);
        self.dirty = true;
        Ok(id)
    }

    /// Rejects what could never run.
    fn validate(&self, spec: &JobSpec) -> Result<(), SchedError> {
        if spec.gpus == 0 {
            return Err(SchedError::Invalid(format!("job '{}': gpus must be at least 1", spec.name)));
        }
        if spec.walltime.0 == 0 {
            return Err(SchedError::Invalid(format!("job '{}': walltime must be positive", spec.name)));
        }
        if spec.account.idx() >= self.tenants.len() || !self.tenants.get(spec.account).is_leaf() {
            return Err(SchedError::Invalid(format!(
                "job '{}': account is not a project of the tenant tree",
                spec.name
            )));
        }
        if let Some((node, limit)) = self.quotas.never_fits(&self.tenants, spec.account, spec.gpus) {
            return Err(SchedError::Invalid(format!(
                "job '{}' asks for {} GPUs, more than account {}'s limit of {limit}",
                spec.name,
                spec.gpus,
                self.tenants.get(node).path
            )));
        }
        if let Some(budget) = &self.power.budget_w {
            let p = &self.power;
            let idle: f64 = (0..p.pool_w.len())
                .map(|i| self.cluster.pool_total(fabrik_model::PoolId(i as u32)) as f64 * p.pool_w[i].1)
                .sum::<f64>()
                + p.overhead_w;
            let need = p.delta_w(spec.gpus, spec.gpu_type) * self.cfg.power_limits.min_fraction(spec.qos);
            let best = budget.max;
            if idle + need > best {
                return Err(SchedError::Invalid(format!(
                    "job '{}' can never start under the power cap: {:.3} MW idle + {:.3} MW for its GPUs > {:.3} MW of IT power in the best hour",
                    spec.name,
                    idle / 1e6,
                    need / 1e6,
                    best / 1e6
                )));
            }
        }
        // An empty pool always places a gang no larger than itself (whole domains in one group,
        // or spanning groups), so the pool size is the only limit that makes a job impossible.
        if u64::from(spec.gpus) > self.cluster.max_gang(spec.gpu_type) {
            return Err(SchedError::TooLarge { job: spec.name.clone(), gpus: spec.gpus });
        }
        Ok(())
    }

    fn ctx(&self, now: SimTime) -> PriorityCtx<'_> {
        PriorityCtx { now, usage: &self.usage, tenants: &self.tenants, max_gang: self.max_gang }
    }

    /// Restores a job that is already running on known GPUs — after a control-plane restart, or
    /// to mirror work started elsewhere. Refuses an allocation that is not free.
    pub fn adopt(&mut self, mut spec: JobSpec, parts: &[(DomainId, u32)], start: SimTime) -> Result<JobId, SchedError> {
        if self.slurm.is_some() {
            spec.walltime = slurm_pass::whole_minutes(spec.walltime);
        }
        self.validate(&spec)?;
        let total: u32 = parts.iter().map(|p| p.1).sum();
        if total != spec.gpus {
            return Err(SchedError::Invalid(format!(
                "job '{}': allocation holds {total} GPUs, the job asks for {}",
                spec.name, spec.gpus
            )));
        }
        for &(d, n) in parts {
            if d.idx() >= self.cluster.domain_count() || n > self.cluster.domain_free(d) {
                return Err(SchedError::Invalid(format!(
                    "job '{}': GPUs on domain {} are not free (or no such domain)",
                    spec.name, d.0
                )));
            }
        }
        self.cluster.allocate(parts);
        let id = self.jobs.next_id();
        self.running.insert((start + spec.walltime, id));
        self.busy_gpus += u64::from(spec.gpus);
        self.account_change(spec.account, i64::from(spec.gpus), start);
        let mut entry = JobEntry::new(spec, self.pass);
        entry.state = JobState::Running { start, parts: parts.to_vec() };
        self.jobs.push(entry);
        self.easy.reservation = None;
        self.dirty = true;
        Ok(id)
    }

    /// Replaces the tenant tree with one that extends it (accounts added at the end, shares
    /// possibly changed); existing account ids must keep their paths.
    pub fn update_tenants(&mut self, tenants: TenantTree) -> Result<(), SchedError> {
        for (id, a) in self.tenants.iter() {
            if id.idx() >= tenants.len() || tenants.get(id).path != a.path {
                return Err(SchedError::Invalid(format!("tenant tree update moves account '{}'", a.path)));
            }
        }
        self.usage.grow(tenants.len());
        self.tenants = tenants;
        self.usage.refresh_factors(&self.tenants);
        self.load_quotas();
        self.dirty = true;
        Ok(())
    }

    /// A running job ended (completed, failed or killed at its walltime).
    pub fn finish(&mut self, id: JobId, now: SimTime) -> Result<(), SchedError> {
        self.end_running(id, now, Outcome::Finished)
    }

    /// A job that ended failed or timed out (the body knows; `afterok` waits on success and
    /// `afternotok` on this). Cancelled jobs count as not ok by themselves.
    pub fn finish_not_ok(&mut self, id: JobId, now: SimTime) -> Result<(), SchedError> {
        self.end_running(id, now, Outcome::Finished)?;
        self.not_ok.insert(id);
        Ok(())
    }

    /// Where a job a dependency names stands: waiting, started, ended ok, ended not ok. A job
    /// retired from the table has ended.
    pub(crate) fn dep_state(&self, id: JobId) -> DepState {
        match self.jobs.get(id.idx()).map(|j| &j.state) {
            Some(JobState::Pending | JobState::Deferred { .. }) => DepState::Waiting,
            Some(JobState::Running { .. }) => DepState::Started,
            Some(JobState::Ended { outcome: Outcome::Cancelled, .. }) => DepState::EndedNotOk,
            _ if self.not_ok.contains(&id) => DepState::EndedNotOk,
            _ => DepState::EndedOk,
        }
    }

    /// Whether a job's dependencies let it start now: `None` if they do, else why not.
    pub(crate) fn dependency_wait(&self, id: JobId) -> Option<Reason> {
        let spec = &self.jobs[id.idx()].spec;
        for d in &spec.after {
            let Some(on) = d.job else {
                return Some(Reason::DependencyNeverSatisfied { kind: d.kind, on: d.on.clone() });
            };
            let st = self.dep_state(on);
            let (ok, never) = match d.kind {
                fabrik_model::DepKind::After => (st != DepState::Waiting, false),
                fabrik_model::DepKind::AfterAny => (st.ended(), false),
                fabrik_model::DepKind::AfterOk => (st == DepState::EndedOk, st == DepState::EndedNotOk),
                fabrik_model::DepKind::AfterNotOk => (st == DepState::EndedNotOk, st == DepState::EndedOk),
            };
            if never {
                return Some(Reason::DependencyNeverSatisfied { kind: d.kind, on: d.on.clone() });
            }
            if !ok {
                return Some(Reason::Dependency { kind: d.kind, on: d.on.clone() });
            }
        }
        if let Some((key, limit)) = &spec.throttle {
            let running = self
                .running
                .iter()
                .filter(|&&(_, j)| self.jobs[j.idx()].spec.throttle.as_ref().is_some_and(|t| &t.0 == key))
                .count();
            if running >= *limit as usize {
                return Some(Reason::ArrayThrottle { limit: *limit });
            }
        }
        let key = spec.singleton.as_ref()?;
        // an earlier job with the same key, waiting or running, comes first
        let before = self
            .running
            .iter()
            .map(|&(_, j)| j)
            .chain(self.pending.iter().copied())
            .filter(|&j| j < id && self.jobs[j.idx()].spec.singleton.as_ref() == Some(key))
            .min()?;
        Some(Reason::Singleton { on: self.jobs[before.idx()].spec.name.clone() })
    }

    fn end_running(&mut self, id: JobId, now: SimTime, outcome: Outcome) -> Result<(), SchedError> {
        let job = self.jobs.get(id.idx()).ok_or(SchedError::UnknownJob(id))?;
        if !job.state.is_running() {
            return Err(SchedError::NotRunning(id));
        }
        let start = self.stop_running(id, now);
        self.jobs[id.idx()].state = JobState::Ended { start: Some(start), end: now, outcome };
        self.dirty = true;
        Ok(())
    }

    /// A running job stops and is pending again (preempted, interrupted, its start undone); the
    /// caller counts why and puts it back in the queue.
    fn stop_to_pending(&mut self, id: JobId, now: SimTime) -> &mut JobEntry {
        self.stop_running(id, now);
        let j = &mut self.jobs[id.idx()];
        j.state = JobState::Pending;
        j.inside = None;
        j
    }

    /// Releases a running job's GPUs and stops charging it; the caller sets its new state (the
    /// job is left `Running` with no parts). Returns the run's start.
    fn stop_running(&mut self, id: JobId, now: SimTime) -> SimTime {
        let job = &mut self.jobs[id.idx()];
        let JobState::Running { start, parts } = &mut job.state else { unreachable!("callers check the state") };
        let (start, parts) = (*start, std::mem::take(parts));
        self.running.remove(&(start + job.spec.walltime, id));
        let job = &self.jobs[id.idx()];
        if job.inside.is_none() {
            self.power.saved_w = (self.power.saved_w - self.saving_w_of(job, &parts)).max(0.0);
        }
        match job.inside.and_then(|k| self.advance[k as usize].inner_mut()) {
            Some(inner) => inner.release(&parts),
            None => self.cluster.release(&parts),
        }
        let job = &mut self.jobs[id.idx()];
        job.attained += f64::from(job.spec.gpus) * (now - start).0 as f64;
        self.busy_gpus -= u64::from(job.spec.gpus);
        let (account, gpus) = (job.spec.account, job.spec.gpus);
        self.account_change(account, -i64::from(gpus), now);
        start
    }

    /// Removes a pending job, or ends a running one.
    pub fn cancel(&mut self, id: JobId, now: SimTime) -> Result<(), SchedError> {
        match self.jobs.get(id.idx()).map(|j| &j.state) {
            None => Err(SchedError::UnknownJob(id)),
            Some(JobState::Running { .. }) => self.end_running(id, now, Outcome::Cancelled),
            Some(JobState::Ended { .. }) => Err(SchedError::NotRunning(id)),
            Some(&JobState::Deferred { until }) => {
                self.deferrals.claims.retain(|c| c.job != id);
                self.deferrals.queued.remove(&(until, id));
                self.withdraw(id, now);
                Ok(())
            }
            Some(JobState::Pending) => {
                self.pending.retain(|&p| p != id);
                self.withdraw(id, now);
                Ok(())
            }
        }
    }

    /// Takes an ended job out of the brain and hands back its entry: a body that keeps its own
    /// record of ended jobs (the twin) retires each one as it ends, so the brain's memory
    /// follows the jobs alive. A retired id is unknown afterwards (`job` panics on it, the
    /// event API answers `UnknownJob`); its usage stays charged.
    pub fn retire(&mut self, id: JobId) -> Result<JobEntry, SchedError> {
        match self.jobs.get(id.idx()) {
            None => Err(SchedError::UnknownJob(id)),
            Some(j) if !j.state.is_ended() => Err(SchedError::NotEnded(id)),
            Some(_) => self.jobs.retire(id.idx()).ok_or(SchedError::UnknownJob(id)),
        }
    }

    fn withdraw(&mut self, id: JobId, now: SimTime) {
        self.jobs[id.idx()].state = JobState::Ended { start: None, end: now, outcome: Outcome::Cancelled };
        self.dirty = true;
    }

    fn set_why(&mut self, id: JobId, why: Reason) {
        let j = &mut self.jobs[id.idx()];
        j.why = why;
        j.why_pass = self.pass;
    }

    /// Starts `id` on the placement in `self.scratch`.
    fn start(&mut self, id: JobId, now: SimTime, started: &mut Vec<JobId>) {
        self.cluster.allocate(&self.scratch);
        self.power.saved_w += self.saving_w_of(&self.jobs[id.idx()], &self.scratch);
        let job = &mut self.jobs[id.idx()];
        job.state = JobState::Running { start: now, parts: self.scratch.clone() };
        self.running.insert((now + job.spec.walltime, id));
        self.busy_gpus += u64::from(job.spec.gpus);
        let (account, gpus) = (job.spec.account, job.spec.gpus);
        self.account_change(account, i64::from(gpus), now);
        started.push(id);
    }
}

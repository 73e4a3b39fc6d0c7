//! The scheduler: jobs, the pending queue, and the scheduling pass.
//!
//! One pass, at time `now`:
//! 1. Recompute priorities if the policy is dynamic and the recalculation interval has passed.
//! 2. Walk the queue in priority order. Start every job that fits until the first that does not
//!    (the head).
//! 3. Without backfill: stop (head-of-line blocking).
//! 4. With EASY backfill: reserve GPUs for the head at the earliest time running jobs' walltimes
//!    guarantee them (the shadow time), then start later jobs (up to the backfill depth) only
//!    where they cannot delay that reservation: either they end before the shadow time, or they
//!    use GPUs the reservation does not need.
//!
//! The reservation is kept across passes while the same job stays the blocked head and no job
//! started ahead of it: ends only bring the shadow time closer, and backfilled jobs were admitted
//! against the kept per-domain budgets, so the kept shadow time remains a guarantee. This avoids
//! recomputing the shadow time (which replays running jobs' ends) on every event while a large
//! gang waits.
//!
//! The caller delivers events (`submit`, `finish`, `cancel`) and carries out the returned starts.

mod slurm_pass;

use crate::cluster::{Cluster, Parts};
use crate::explain::{Explanation, Reason};
use crate::fairshare::{FairShareConfig, Usage};
use crate::policy::{self, Policy, PriorityCtx};
use crate::power::{EnergyAware, PowerLimits, PowerState};
use crate::SchedError;
use fabrik_model::facility::AdvanceReservation;
use fabrik_model::{AccountId, DomainId, Facility, JobId, JobSpec, Secs, SimTime, TenantTree};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
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
    /// How far each QoS may be power-limited when the facility cap binds.
    pub power_limits: PowerLimits,
}

impl Default for SchedConfig {
    fn default() -> Self {
        // Slurm's bf_max_job_test default is 500; 100 keeps a pass cheap at 100,000-GPU scale.
        SchedConfig {
            backfill_depth: 100,
            fair_share: FairShareConfig::default(),
            starvation_after: Secs(86_400),
            las_thresholds_gpu_hours: vec![1.0, 10.0, 100.0],
            power_limits: PowerLimits::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Pending,
    Running,
    Ended,
}

#[derive(Debug, Clone)]
pub struct JobEntry {
    pub spec: JobSpec,
    pub state: JobState,
    pub parts: Parts,
    pub start: Option<SimTime>,
    pub end: Option<SimTime>,
    pub priority: f64,
    /// GPU-seconds received in earlier runs (runs ended by preemption).
    pub attained: f64,
    pub preemptions: u32,
    /// Times a failure of a node it ran on interrupted it.
    pub interruptions: u32,
    /// Whether the job was within a guarantee of its account's subtree when submitted: its wait
    /// is the time-to-guarantee.
    pub guaranteed_demand: bool,
    /// Ordering tier: 3 advance reservation, 2 starving, 1 within a guarantee, 0 other.
    tier: u8,
    /// This entry is the advance reservation with this index (not a job).
    pub reservation: Option<u32>,
    /// The job runs inside the advance reservation with this index.
    pub inside: Option<u32>,
    /// Its GPUs' power limit in this run, as a fraction of their training draw above idle.
    pub power_fraction: f64,
    /// A flexible job held back by the energy-aware modifier until then.
    pub deferred_until: Option<SimTime>,
    /// How often the modifier held it back.
    pub deferrals: u32,
    /// Released from a queue-mode deferral: top tier.
    pub urgent: bool,
    why: Reason,
    why_pass: u64,
}

impl JobEntry {
    fn new(spec: JobSpec, pass: u64) -> JobEntry {
        JobEntry {
            spec,
            state: JobState::Pending,
            parts: Parts::new(),
            start: None,
            end: None,
            priority: 0.0,
            attained: 0.0,
            preemptions: 0,
            interruptions: 0,
            guaranteed_demand: false,
            tier: 0,
            reservation: None,
            inside: None,
            power_fraction: 1.0,
            deferred_until: None,
            deferrals: 0,
            urgent: false,
            why: Reason::NotYetConsidered,
            why_pass: pass,
        }
    }

    /// A pending entry for a spec, for tests of priority functions.
    #[cfg(test)]
    pub(crate) fn for_test(spec: JobSpec) -> JobEntry {
        JobEntry::new(spec, 0)
    }

    /// Why it is where it is, as the last pass that looked at it decided.
    pub fn why(&self) -> &Reason {
        &self.why
    }

    /// GPU-seconds received so far, including the current run.
    pub fn attained_at(&self, now: SimTime) -> f64 {
        let current = match (self.state, self.start) {
            (JobState::Running, Some(s)) => f64::from(self.spec.gpus) * (now - s).0 as f64,
            _ => 0.0,
        };
        self.attained + current
    }

    /// GPU-seconds of the current run not yet saved by a checkpoint.
    pub fn unsaved_at(&self, now: SimTime) -> f64 {
        let Some(start) = self.start.filter(|_| self.state == JobState::Running) else { return 0.0 };
        let ran = (now - start).0;
        let since = match self.spec.checkpoint_interval {
            Some(i) if i.0 > 0 => ran % i.0,
            _ => ran,
        };
        f64::from(self.spec.gpus) * since as f64
    }
}

/// The head's reservation in the last pass.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Reservation {
    pub job: JobId,
    pub start_at: SimTime,
}

struct Hold {
    domain: DomainId,
    /// GPUs on this domain that jobs running past the shadow time may still take.
    budget: u32,
    held: u32,
}

pub struct Scheduler {
    tenants: TenantTree,
    max_gang: u64,
    cluster: Cluster,
    jobs: Vec<JobEntry>,
    pending: Vec<JobId>,
    running: BTreeSet<(SimTime, JobId)>,
    policy: Box<dyn Policy>,
    usage: Usage,
    cfg: SchedConfig,
    dirty: bool,
    last_recalc: Option<SimTime>,
    pass: u64,
    wakeup: Option<SimTime>,
    reservation: Option<Reservation>,
    blocked_head: Option<JobId>,
    holds: Vec<Hold>,
    holds_applied: bool,
    held_total: u64,
    hold_slot: Vec<u32>,
    scratch: Parts,
    released: Vec<JobId>,
    busy_gpus: u64,
    /// Running GPUs per tenant node (its whole subtree).
    node_running: Vec<u64>,
    guarantee: Vec<Option<u64>>,
    /// Whether any node has a guarantee (skips the tree walk per job when none has).
    any_guarantee: bool,
    limit: Vec<Option<u64>>,
    reclaim: Vec<bool>,
    total_gpus: u64,
    preempted: Vec<JobId>,
    interrupted: Vec<JobId>,
    power: PowerState,
    energy_aware: Option<EnergyAware>,
    /// GPUs claimed by deferred flexible jobs: hidden from every other job during a pass.
    claims: Vec<Claim>,
    claims_applied: bool,
    /// Claims by start time with the IT watts their hidden GPUs add at or after it (suffix sums):
    /// a job that ends before a claim starts does not share its power.
    claim_w: Vec<(SimTime, f64)>,
    /// Queue-mode deferrals by planned start. Deferred jobs (of either mode) leave `pending`, so
    /// a pass does not walk over them; they return when released.
    deferred: BTreeSet<(SimTime, JobId)>,
    requeue: Vec<JobId>,
    advance: Vec<AdvanceState>,
    /// The `slurm` policy's own pass state (main and backfill scheduler); `None` otherwise.
    slurm: Option<Box<slurm_pass::SlurmState>>,
}

/// A deferred flexible job's GPUs, chosen when it could have started: no other job may take
/// them, so it starts on them when its deferral ends.
struct Claim {
    job: JobId,
    /// When the job starts on them.
    at: SimTime,
    parts: Parts,
    /// GPUs hidden per part while applied (fewer where a short job borrowed some).
    hidden: Vec<u32>,
    applied: bool,
}

/// An advance reservation: its pseudo-job holds the GPUs from `start` to `end`; the jobs of its
/// account's subtree are placed in `inner`, a cluster in which only those GPUs exist.
struct AdvanceState {
    job: JobId,
    account: AccountId,
    start: SimTime,
    end: SimTime,
    group: Option<fabrik_model::GroupId>,
    inner: Option<Cluster>,
}

impl Scheduler {
    pub fn new(facility: &Facility, policy: Box<dyn Policy>, cfg: SchedConfig) -> Scheduler {
        Scheduler {
            tenants: facility.tenants.clone(),
            max_gang: facility.max_gang(None),
            cluster: Cluster::new(facility),
            jobs: Vec::new(),
            pending: Vec::new(),
            running: BTreeSet::new(),
            usage: Usage::new(facility.tenants.len(), cfg.fair_share.half_life),
            policy,
            cfg,
            dirty: false,
            last_recalc: None,
            pass: 0,
            wakeup: None,
            reservation: None,
            blocked_head: None,
            holds: Vec::new(),
            holds_applied: false,
            held_total: 0,
            hold_slot: vec![u32::MAX; facility.domains.len()],
            scratch: Parts::new(),
            released: Vec::new(),
            busy_gpus: 0,
            node_running: Vec::new(),
            guarantee: Vec::new(),
            any_guarantee: false,
            limit: Vec::new(),
            reclaim: Vec::new(),
            total_gpus: facility.total_gpus(),
            preempted: Vec::new(),
            interrupted: Vec::new(),
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
            claims: Vec::new(),
            claims_applied: false,
            claim_w: Vec::new(),
            deferred: BTreeSet::new(),
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

    fn load_quotas(&mut self) {
        let n = self.tenants.len();
        self.node_running.resize(n, 0);
        self.guarantee = self.tenants.iter().map(|(_, a)| a.quota.guarantee(self.total_gpus)).collect();
        self.any_guarantee = self.guarantee.iter().any(Option::is_some);
        self.limit = self.tenants.iter().map(|(_, a)| a.quota.limit_gpus).collect();
        self.reclaim = self.tenants.iter().map(|(_, a)| a.quota.reclaim_by_preemption).collect();
    }

    /// The account and its ancestors, up to (not including) the root.
    fn path_ids(&self, a: AccountId) -> impl Iterator<Item = AccountId> + '_ {
        std::iter::successors(Some(a), |&x| self.tenants.get(x).parent).filter(|x| x.0 != 0)
    }

    fn account_change(&mut self, a: AccountId, gpus: i64, now: SimTime) {
        self.usage.change(a, gpus, now);
        let ids: Vec<AccountId> = self.path_ids(a).collect();
        for x in ids {
            let r = &mut self.node_running[x.idx()];
            *r = (*r as i64 + gpus).max(0) as u64;
        }
    }

    /// The guaranteed node under whose guarantee `gpus` more GPUs of account `a` would still fit.
    fn within_guarantee(&self, a: AccountId, gpus: u32) -> Option<AccountId> {
        if !self.any_guarantee {
            return None;
        }
        self.path_ids(a)
            .find(|x| self.guarantee[x.idx()].is_some_and(|g| self.node_running[x.idx()] + u64::from(gpus) <= g))
    }

    /// The first node on the path whose limit `gpus` more GPUs would exceed.
    fn over_limit(&self, a: AccountId, gpus: u32) -> Option<(AccountId, u64)> {
        self.path_ids(a).find_map(|x| {
            self.limit[x.idx()].filter(|&l| self.node_running[x.idx()] + u64::from(gpus) > l).map(|l| (x, l))
        })
    }

    /// A running job borrows when no guaranteed node on its path is within its guarantee.
    fn is_borrower(&self, a: AccountId) -> bool {
        !self.path_ids(a).any(|x| self.guarantee[x.idx()].is_some_and(|g| self.node_running[x.idx()] <= g))
    }

    fn tier_of(&self, j: &JobEntry, now: SimTime) -> u8 {
        if self.slurm.is_some() {
            // Slurm orders by priority alone: no starvation or guarantee tiers
            0
        } else if j.urgent || now - j.spec.submit >= self.cfg.starvation_after {
            2
        } else if self.within_guarantee(j.spec.account, j.spec.gpus).is_some() {
            1
        } else {
            0
        }
    }

    /// Adds an advance reservation. Add reservations before any job: their pseudo-jobs take the
    /// first job ids, and `is_reservation` tells them apart.
    pub fn add_reservation(&mut self, r: &AdvanceReservation, now: SimTime) -> Result<JobId, SchedError> {
        if u64::from(r.gpus) > self.cluster.max_gang(r.gpu_type) || r.gpus == 0 {
            return Err(SchedError::TooLarge { job: format!("reservation {}", r.name), gpus: r.gpus });
        }
        if r.end <= r.start || r.account.idx() >= self.tenants.len() {
            return Err(SchedError::Invalid(format!("reservation {}: empty window or unknown account", r.name)));
        }
        let id = JobId(self.jobs.len() as u32);
        let mut spec = JobSpec::new(format!("reservation {}", r.name), r.account, r.gpus, now, r.end - r.start);
        spec.gpu_type = r.gpu_type;
        let mut entry = JobEntry::new(spec, self.pass);
        entry.tier = 3;
        entry.reservation = Some(self.advance.len() as u32);
        entry.why = Reason::WaitingForEarliestStart { at: r.start };
        self.jobs.push(entry);
        self.advance.push(AdvanceState {
            job: id,
            account: r.account,
            start: r.start,
            end: r.end,
            group: r.group,
            inner: None,
        });
        let pos = self.pending.partition_point(|&o| self.queue_cmp(o, id) == Ordering::Less);
        self.pending.insert(pos, id);
        self.dirty = true;
        Ok(id)
    }

    /// Places job `id` into `scratch`: anywhere, or in its reservation's leaf group.
    fn find_for(&mut self, id: JobId) -> Result<(), crate::NoFit> {
        let j = &self.jobs[id.idx()];
        let (gpus, gpu_type) = (j.spec.gpus, j.spec.gpu_type);
        match j.reservation.and_then(|k| self.advance[k as usize].group) {
            Some(g) => self.cluster.find_in_leaf_group(gpus, g, &mut self.scratch),
            None => self.cluster.find(gpus, gpu_type, &mut self.scratch),
        }
    }

    pub fn is_reservation(&self, id: JobId) -> bool {
        self.jobs.get(id.idx()).is_some_and(|j| j.reservation.is_some())
    }

    /// The active reservation `gpus` GPUs of account `a` for `walltime` from `now` can run in.
    fn member_of(&self, a: AccountId, now: SimTime, walltime: Secs) -> Option<usize> {
        self.advance.iter().position(|r| {
            r.inner.is_some() && now >= r.start && now + walltime <= r.end && self.in_subtree(a, r.account)
        })
    }

    /// Ends reservations whose window has passed: free GPUs go back to the facility; jobs still
    /// inside keep theirs, now held in the facility's own state.
    fn end_reservations(&mut self, now: SimTime) {
        for k in 0..self.advance.len() {
            if self.advance[k].end > now {
                continue;
            }
            let jid = self.advance[k].job;
            match self.jobs[jid.idx()].state {
                JobState::Running => {
                    let inner = self.advance[k].inner.take().expect("active reservation has its cluster");
                    let parts: Parts = self.jobs[jid.idx()]
                        .parts
                        .iter()
                        .map(|&(d, _)| (d, inner.domain_free(d)))
                        .filter(|p| p.1 > 0)
                        .collect();
                    self.cluster.release(&parts);
                    let start = self.jobs[jid.idx()].start.expect("running");
                    self.running.remove(&(start + self.jobs[jid.idx()].spec.walltime, jid));
                    for j in self.jobs.iter_mut().filter(|j| j.inside == Some(k as u32)) {
                        j.inside = None;
                    }
                }
                JobState::Pending => self.pending.retain(|&p| p != jid),
                JobState::Ended => continue,
            }
            let e = &mut self.jobs[jid.idx()];
            e.state = JobState::Ended;
            e.end = Some(now);
            self.reservation = None;
            self.dirty = true;
        }
    }

    /// Starts the reservation's pseudo-job on the placement in `scratch`: its GPUs leave the
    /// facility's pool for the account's jobs until `end`. Not a job: no usage, not busy.
    fn start_reservation(&mut self, id: JobId, now: SimTime) {
        let k = self.jobs[id.idx()].reservation.expect("a reservation") as usize;
        self.cluster.allocate(&self.scratch);
        let end = self.advance[k].end;
        let job = &mut self.jobs[id.idx()];
        job.parts.clear();
        job.parts.extend_from_slice(&self.scratch);
        job.state = JobState::Running;
        job.start = Some(now);
        job.spec.walltime = end - now;
        self.running.insert((end, id));
        self.advance[k].inner = Some(self.cluster.restricted_to(&self.scratch));
    }

    /// Starts `id` inside reservation `k` on the placement in `scratch`.
    fn start_inside(&mut self, id: JobId, k: usize, now: SimTime, started: &mut Vec<JobId>) {
        self.advance[k].inner.as_mut().expect("active").allocate(&self.scratch);
        let job = &mut self.jobs[id.idx()];
        job.parts.clear();
        job.parts.extend_from_slice(&self.scratch);
        job.deferred_until = None;
        // inside a reservation its GPUs already count as allocated: no power change to track
        job.power_fraction = 1.0;
        let job = &mut self.jobs[id.idx()];
        job.state = JobState::Running;
        job.start = Some(now);
        job.inside = Some(k as u32);
        self.running.insert((now + job.spec.walltime, id));
        self.busy_gpus += u64::from(job.spec.gpus);
        let (account, gpus) = (job.spec.account, job.spec.gpus);
        self.account_change(account, i64::from(gpus), now);
        started.push(id);
    }

    /// Caps facility power (the grid connection) at a constant `cap_w` with a constant PUE; see
    /// `set_power_cap_hourly`.
    pub fn set_power_cap(&mut self, cap_w: Option<f64>, pue: f64) {
        let h = fabrik_model::grid::Hourly::constant;
        self.set_power_cap_hourly(cap_w.map(h), h(pue.max(1.0)));
    }

    /// Caps facility power per hour (the grid connection, possibly time-varying) with an hourly
    /// PUE: a job starts only if IT power with it stays within cap ÷ PUE in every hour until its
    /// walltime ends; a job whose QoS allows a power limit may start limited to fit. A lower cap
    /// stops no running job; it only holds back new ones.
    pub fn set_power_cap_hourly(&mut self, cap_w: Option<fabrik_model::grid::Hourly>, pue: fabrik_model::grid::Hourly) {
        self.power.set_cap(cap_w, pue);
        self.dirty = true;
    }

    /// Turns the energy-aware modifier on (or off with `None`).
    pub fn set_energy_aware(&mut self, m: Option<EnergyAware>) {
        self.energy_aware = m;
        self.dirty = true;
    }

    /// Watts that on-site renewables and the battery can supply now beyond the load: deferred
    /// flexible jobs that fit in it start at once.
    pub fn set_green_headroom_w(&mut self, w: f64) {
        let w = w.max(0.0);
        if w > self.power.green_headroom_w && self.energy_aware.is_some() {
            self.dirty = true;
        }
        self.power.green_headroom_w = w;
    }

    /// GPUs of the jobs the power cap held back in the last pass.
    pub fn power_blocked_gpus(&self) -> u64 {
        self.power.blocked_gpus
    }

    /// IT power now, W: allocated GPUs at their training draw (less what power limits save),
    /// free GPUs and GPUs out of service at idle draw (a node awaiting repair stays powered; this
    /// also keeps the cap safe when it returns), plus network and storage. (GPUs held by an
    /// advance reservation count as allocated.)
    pub fn it_power_w(&self) -> f64 {
        let c = &self.cluster;
        let p = &self.power;
        (0..c.pool_count())
            .map(|i| {
                let pid = fabrik_model::PoolId(i as u32);
                let busy = c.pool_busy(pid) as f64;
                busy * p.pool_w[i].0 + (c.pool_total(pid) as f64 - busy) * p.pool_w[i].1
            })
            .sum::<f64>()
            + p.overhead_w
            - p.saved_w
    }

    /// Facility power at `now`: IT power × that hour's PUE, W.
    pub fn facility_power_w(&self, now: SimTime) -> f64 {
        self.it_power_w() * self.power.pue_at(now)
    }

    /// Watts a running job saves by its power limit.
    fn saving_w(&self, j: &JobEntry) -> f64 {
        let Some(&(d, _)) = j.parts.first() else { return 0.0 };
        let (busy, idle) = self.power.pool_w[self.cluster.domain_pool(d).idx()];
        f64::from(j.spec.gpus) * (1.0 - j.power_fraction) * (busy - idle)
    }

    /// The power fraction `id` may start with under the cap now (1: full power), or why not.
    fn power_admission(&self, id: JobId, now: SimTime) -> Result<f64, Reason> {
        let Some(budget) = &self.power.budget_w else { return Ok(1.0) };
        let spec = &self.jobs[id.idx()].spec;
        let allowed = budget.min_between(now, now + spec.walltime);
        let need = self.power.delta_w(spec.gpus, spec.gpu_type);
        let it_now = self.it_power_w() - self.claims_w_from(now + spec.walltime);
        let room = allowed - it_now;
        if need <= room {
            return Ok(1.0);
        }
        let f_min = self.cfg.power_limits.min_fraction(spec.qos);
        if need > 0.0 && f_min < 1.0 && room >= f_min * need {
            return Ok(room / need);
        }
        let pue = self.power.pue_at(now);
        let cap = self.power.cap_w.as_ref().map_or(0.0, |c| c.min_between(now, now + spec.walltime));
        Err(Reason::PowerCap { cap_mw: cap / 1e6, now_mw: it_now * pue / 1e6, need_mw: need * f_min * pue / 1e6 })
    }

    /// A domain (node or rack) failed or is drained: every job holding GPUs on it stops and is
    /// requeued (see `drain_interrupted`), and the domain takes no work until `repair_domain`.
    pub fn fail_domain(&mut self, d: DomainId, now: SimTime) -> Result<(), SchedError> {
        if d.idx() >= self.hold_slot.len() {
            return Err(SchedError::Invalid(format!("no domain {}", d.0)));
        }
        if self.cluster.is_down(d) {
            return Ok(());
        }
        let hit: Vec<JobId> = self
            .running
            .iter()
            .map(|&(_, id)| id)
            .filter(|id| {
                let j = &self.jobs[id.idx()];
                j.reservation.is_none() && j.parts.iter().any(|p| p.0 == d)
            })
            .collect();
        for id in hit {
            let pass = self.pass;
            let j = self.stop_to_pending(id, now);
            j.interruptions += 1;
            j.why = Reason::Interrupted { at: now };
            j.why_pass = pass;
            let p = self.policy.priority(&self.ctx(now), &self.jobs[id.idx()]);
            self.jobs[id.idx()].priority = p;
            let pos = self.pending.partition_point(|&o| self.queue_cmp(o, id) == Ordering::Less);
            self.pending.insert(pos, id);
            self.interrupted.push(id);
        }
        let broken: Vec<JobId> =
            self.claims.iter().filter(|c| c.parts.iter().any(|p| p.0 == d)).map(|c| c.job).collect();
        for id in broken {
            // its GPUs are gone: back into the queue in the top tier (it is not deferred again)
            self.claims.retain(|c| c.job != id);
            self.requeue_urgent(id, now);
        }
        self.cluster.set_down(d, true);
        for r in self.advance.iter_mut() {
            if let Some(inner) = r.inner.as_mut() {
                inner.set_down(d, true);
            }
        }
        // capacity shrank: a kept reservation may no longer hold
        self.reservation = None;
        self.dirty = true;
        Ok(())
    }

    /// A failed or drained domain is back in service with all its GPUs free.
    pub fn repair_domain(&mut self, d: DomainId) -> Result<(), SchedError> {
        if d.idx() >= self.hold_slot.len() {
            return Err(SchedError::Invalid(format!("no domain {}", d.0)));
        }
        // a domain held by an active reservation returns to the reservation
        let held =
            self.advance.iter().any(|r| r.inner.is_some() && self.jobs[r.job.idx()].parts.iter().any(|p| p.0 == d));
        if held {
            for r in self.advance.iter_mut() {
                if let Some(inner) = r.inner.as_mut() {
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
        // Advance reservations first: their pseudo-jobs take the first ids.
        for r in &facility.reservations {
            let shifted = fabrik_model::facility::AdvanceReservation {
                start: SimTime(origin.0.saturating_add(r.start.0)),
                end: SimTime(origin.0.saturating_add(r.end.0)),
                ..r.clone()
            };
            s.add_reservation(&shifted, origin)?;
        }
        Ok(s)
    }

    /// A start the pass decided could not be carried out by the body (its record was refused
    /// by the store, the executor could not launch it, or Slurm never started it): the job goes
    /// back to the queue — no preemption counted, usage only for the time it held its GPUs.
    pub fn unstart(&mut self, id: JobId, now: SimTime) -> Result<(), SchedError> {
        let job = self.jobs.get(id.idx()).ok_or(SchedError::UnknownJob(id))?;
        if job.state != JobState::Running {
            return Err(SchedError::NotRunning(id));
        }
        let pass = self.pass;
        let j = self.stop_to_pending(id, now);
        j.why = Reason::StartUndone { at: now };
        j.why_pass = pass;
        let pos = self.pending.partition_point(|&o| self.queue_cmp(o, id) == Ordering::Less);
        self.pending.insert(pos, id);
        self.reservation = None;
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

    pub fn policy_name(&self) -> &'static str {
        self.policy.name()
    }
    pub fn job(&self, id: JobId) -> &JobEntry {
        &self.jobs[id.idx()]
    }
    pub fn jobs(&self) -> &[JobEntry] {
        &self.jobs
    }
    pub fn pending(&self) -> &[JobId] {
        &self.pending
    }
    /// Flexible jobs held back by the energy-aware modifier (out of `pending` until released).
    pub fn deferred_len(&self) -> usize {
        self.deferred.len() + self.claims.len()
    }
    pub fn running_len(&self) -> usize {
        self.running.len()
    }
    pub fn busy_gpus(&self) -> u64 {
        self.busy_gpus
    }
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }
    pub fn usage(&self) -> &Usage {
        &self.usage
    }
    pub fn tenants(&self) -> &TenantTree {
        &self.tenants
    }
    pub fn reservation(&self) -> Option<Reservation> {
        self.reservation
    }
    /// The next time at which a pass could start something without any other event (a pending
    /// job's earliest start).
    pub fn next_wakeup(&self) -> Option<SimTime> {
        self.wakeup
    }

    /// Accepts a job into the queue. Rejects what could never run.
    pub fn submit(&mut self, mut spec: JobSpec, now: SimTime) -> Result<JobId, SchedError> {
        if let Some(sl) = &self.slurm {
            sl.admit(&mut spec)?;
        }
        self.validate(&spec)?;
        let id = JobId(self.jobs.len() as u32);
        let mut entry = JobEntry::new(spec, self.pass);
        entry.priority = self.policy.priority(&self.ctx(now), &entry);
        entry.guaranteed_demand = self.within_guarantee(entry.spec.account, entry.spec.gpus).is_some();
        entry.tier = self.tier_of(&entry, now);
        self.jobs.push(entry);
        let pos = self.pending.partition_point(|&o| self.queue_cmp(o, id) == Ordering::Less);
        self.pending.insert(pos, id);
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
        if let Some((node, limit)) = self
            .path_ids(spec.account)
            .find_map(|x| self.limit[x.idx()].map(|l| (x, l)))
            .filter(|&(_, l)| u64::from(spec.gpus) > l)
        {
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

    /// Queue order: higher priority first, then earlier submission, then lower id.
    fn queue_cmp(&self, a: JobId, b: JobId) -> Ordering {
        let (ja, jb) = (&self.jobs[a.idx()], &self.jobs[b.idx()]);
        jb.tier
            .cmp(&ja.tier)
            .then(jb.priority.total_cmp(&ja.priority))
            .then(ja.spec.submit.cmp(&jb.spec.submit))
            .then(a.cmp(&b))
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
            if d.idx() >= self.hold_slot.len() || n > self.cluster.domain_free(d) {
                return Err(SchedError::Invalid(format!(
                    "job '{}': GPUs on domain {} are not free (or no such domain)",
                    spec.name, d.0
                )));
            }
        }
        self.cluster.allocate(parts);
        let id = JobId(self.jobs.len() as u32);
        self.running.insert((start + spec.walltime, id));
        self.busy_gpus += u64::from(spec.gpus);
        self.account_change(spec.account, i64::from(spec.gpus), start);
        let mut entry = JobEntry::new(spec, self.pass);
        entry.state = JobState::Running;
        entry.parts = parts.to_vec();
        entry.start = Some(start);
        self.jobs.push(entry);
        self.reservation = None;
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
        self.load_quotas();
        self.dirty = true;
        Ok(())
    }

    /// A running job ended (completed, failed or killed at its walltime).
    pub fn finish(&mut self, id: JobId, now: SimTime) -> Result<(), SchedError> {
        let job = self.jobs.get(id.idx()).ok_or(SchedError::UnknownJob(id))?;
        if job.state != JobState::Running {
            return Err(SchedError::NotRunning(id));
        }
        self.stop_running(id, now);
        let job = &mut self.jobs[id.idx()];
        job.state = JobState::Ended;
        job.end = Some(now);
        self.dirty = true;
        Ok(())
    }

    /// A running job stops and is pending again (preempted, interrupted, its start undone); the
    /// caller counts why and puts it back in the queue.
    fn stop_to_pending(&mut self, id: JobId, now: SimTime) -> &mut JobEntry {
        self.stop_running(id, now);
        let j = &mut self.jobs[id.idx()];
        j.state = JobState::Pending;
        j.start = None;
        j.inside = None;
        j.parts.clear();
        j
    }

    /// Releases a running job's GPUs and stops charging it; the caller sets its new state.
    fn stop_running(&mut self, id: JobId, now: SimTime) {
        let job = &self.jobs[id.idx()];
        let start = job.start.expect("running job has a start");
        self.running.remove(&(start + job.spec.walltime, id));
        if job.inside.is_none() {
            self.power.saved_w = (self.power.saved_w - self.saving_w(job)).max(0.0);
        }
        match job.inside.and_then(|k| self.advance[k as usize].inner.as_mut()) {
            Some(inner) => inner.release(&job.parts),
            None => self.cluster.release(&job.parts),
        }
        let job = &mut self.jobs[id.idx()];
        job.attained += f64::from(job.spec.gpus) * (now - start).0 as f64;
        self.busy_gpus -= u64::from(job.spec.gpus);
        let (account, gpus) = (job.spec.account, job.spec.gpus);
        self.account_change(account, -i64::from(gpus), now);
    }

    fn in_subtree(&self, a: AccountId, node: AccountId) -> bool {
        self.path_ids(a).any(|x| x == node)
    }

    /// A blocked job may take GPUs by preemption: to reclaim its subtree's guarantee from
    /// borrowers (where configured), or, under a preemptive policy, from lower-priority jobs.
    fn try_preemption(&mut self, id: JobId, now: SimTime, started: &mut Vec<JobId>) -> bool {
        let (account, gpus) = (self.jobs[id.idx()].spec.account, self.jobs[id.idx()].spec.gpus);
        if let Some(node) = self.within_guarantee(account, gpus).filter(|n| self.reclaim[n.idx()]) {
            let victim =
                move |s: &Scheduler, r: &JobEntry| !s.in_subtree(r.spec.account, node) && s.is_borrower(r.spec.account);
            let key = move |_: &Scheduler, r: &JobEntry| (r.unsaved_at(now), f64::from(r.spec.gpus));
            if self.start_by_preempting(id, now, &victim, &key, started) {
                return true;
            }
        }
        if self.policy.preempts_lower_priority() {
            let p = self.policy.priority(&self.ctx(now), &self.jobs[id.idx()]);
            let victim = move |s: &Scheduler, r: &JobEntry| s.policy.priority(&s.ctx(now), r) < p;
            let key = move |s: &Scheduler, r: &JobEntry| (s.policy.priority(&s.ctx(now), r), r.unsaved_at(now));
            return self.start_by_preempting(id, now, &victim, &key, started);
        }
        false
    }

    /// Preempts a running job: frees its GPUs and requeues it (after the pass).
    fn preempt(&mut self, id: JobId, now: SimTime) {
        let job = self.stop_to_pending(id, now);
        job.preemptions += 1;
        self.preempted.push(id);
        self.requeue.push(id);
        self.reservation = None;
    }

    /// Tries to start `id` by preempting running jobs `victim` accepts, cheapest first (`key`):
    /// victims are released one by one until the gang fits; if it never does, nothing changes.
    fn start_by_preempting(
        &mut self,
        id: JobId,
        now: SimTime,
        victim: &dyn Fn(&Scheduler, &JobEntry) -> bool,
        key: &dyn Fn(&Scheduler, &JobEntry) -> (f64, f64),
        started: &mut Vec<JobId>,
    ) -> bool {
        let (gpus, gpu_type) = (self.jobs[id.idx()].spec.gpus, self.jobs[id.idx()].spec.gpu_type);
        let mut cands: Vec<((f64, f64), JobId)> = self
            .running
            .iter()
            .map(|&(_, r)| r)
            .filter(|&r| {
                let j = &self.jobs[r.idx()];
                // a job started at this instant has done nothing yet and is not a victim
                j.spec.preemptible
                    && j.start != Some(now)
                    && j.inside.is_none()
                    && j.reservation.is_none()
                    && victim(self, j)
            })
            .map(|r| (key(self, &self.jobs[r.idx()]), r))
            .collect();
        if cands.is_empty() {
            return false;
        }
        cands.sort_by(|a, b| a.0 .0.total_cmp(&b.0 .0).then(a.0 .1.total_cmp(&b.0 .1)).then(a.1.cmp(&b.1)));
        let mut taken = Vec::new();
        let mut fits = false;
        for &(_, r) in &cands {
            self.cluster.release(&self.jobs[r.idx()].parts);
            taken.push(r);
            if self.cluster.may_fit(gpus, gpu_type) && self.find_for(id).is_ok() {
                fits = true;
                break;
            }
        }
        for &r in &taken {
            self.cluster.allocate(&self.jobs[r.idx()].parts);
        }
        if !fits {
            return false;
        }
        for &r in &taken {
            self.preempt(r, now);
        }
        self.cluster.find(gpus, gpu_type, &mut self.scratch).expect("fits once the victims are gone");
        self.start(id, now, started);
        true
    }

    /// Removes a pending job, or ends a running one.
    pub fn cancel(&mut self, id: JobId, now: SimTime) -> Result<(), SchedError> {
        match self.jobs.get(id.idx()).map(|j| j.state) {
            None => Err(SchedError::UnknownJob(id)),
            Some(JobState::Running) => self.finish(id, now),
            Some(JobState::Ended) => Err(SchedError::NotRunning(id)),
            Some(JobState::Pending) => {
                self.pending.retain(|&p| p != id);
                self.claims.retain(|c| c.job != id);
                if let Some(t) = self.jobs[id.idx()].deferred_until {
                    self.deferred.remove(&(t, id));
                }
                let job = &mut self.jobs[id.idx()];
                job.state = JobState::Ended;
                job.end = Some(now);
                self.dirty = true;
                Ok(())
            }
        }
    }

    fn recalc_if_due(&mut self, now: SimTime) {
        if self.last_recalc.is_some_and(|t| now < t + self.cfg.fair_share.recalc_interval) {
            return;
        }
        self.last_recalc = Some(now);
        self.usage.decay_to(now);
        self.policy.refresh(&PriorityCtx { now, usage: &self.usage, tenants: &self.tenants, max_gang: self.max_gang });
        let dynamic = self.policy.dynamic();
        for i in 0..self.pending.len() {
            let id = self.pending[i];
            if self.jobs[id.idx()].reservation.is_some() {
                continue;
            }
            let tier = self.tier_of(&self.jobs[id.idx()], now);
            let ctx = PriorityCtx { now, usage: &self.usage, tenants: &self.tenants, max_gang: self.max_gang };
            let p =
                if dynamic { self.policy.priority(&ctx, &self.jobs[id.idx()]) } else { self.jobs[id.idx()].priority };
            let j = &mut self.jobs[id.idx()];
            j.priority = p;
            j.tier = tier;
        }
        // Sort compact keys rather than chasing job entries in every comparison; the order is
        // `queue_cmp`'s: tier, then priority (higher first), then submission, then id.
        let mut keys: Vec<(u8, f64, SimTime, JobId)> = self
            .pending
            .iter()
            .map(|&id| {
                let j = &self.jobs[id.idx()];
                (j.tier, j.priority, j.spec.submit, id)
            })
            .collect();
        keys.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(b.1.total_cmp(&a.1)).then(a.2.cmp(&b.2)).then(a.3.cmp(&b.3)));
        self.pending.clear();
        self.pending.extend(keys.into_iter().map(|k| k.3));
        self.dirty = true;
    }

    /// Runs one scheduling pass at `now`; fills `started` with the jobs it started.
    pub fn schedule(&mut self, now: SimTime, started: &mut Vec<JobId>) {
        started.clear();
        self.recalc_if_due(now);
        if self.slurm.is_some() {
            self.schedule_slurm(now, started);
            return;
        }
        self.end_reservations(now);
        if self.wakeup.is_some_and(|w| w <= now) {
            self.dirty = true;
        }
        if !self.dirty {
            return;
        }
        self.dirty = false;
        self.pass += 1;
        self.power.blocked_gpus = 0;
        self.apply_claims();
        self.start_due_claims(now, started);
        self.release_due_deferrals(now);
        // reservation boundaries are wake-ups: windows open and close without other events
        self.wakeup = self
            .advance
            .iter()
            .filter(|r| self.jobs[r.job.idx()].state != JobState::Ended)
            .map(|r| if r.start > now { r.start } else { r.end })
            .filter(|&t| t > now)
            .min();
        if let Some(t) = self.next_deferral_end().filter(|&t| t > now) {
            self.wakeup = Some(self.wakeup.map_or(t, |w| w.min(t)));
        }
        let cached = self.reservation.take();
        let mut started_ahead = false;
        self.blocked_head = None;
        let backfill = self.policy.backfill();
        let mut depth_left = self.cfg.backfill_depth;
        let mut kept = 0;
        let mut i = 0;
        let n = self.pending.len();
        while i < n {
            if !self.claims_applied {
                // the last job borrowed claimed GPUs: hide them again (holds go on top)
                self.unapply_holds();
                self.apply_claims();
            }
            let id = self.pending[i];
            let spec = &self.jobs[id.idx()].spec;
            let (gpus, gpu_type, walltime) = (spec.gpus, spec.gpu_type, spec.walltime);
            if let Some(at) = spec.earliest_start.filter(|&t| t > now) {
                self.wakeup = Some(self.wakeup.map_or(at, |w| w.min(at)));
                self.set_why(id, Reason::WaitingForEarliestStart { at });
                self.pending[kept] = id;
                kept += 1;
                i += 1;
                continue;
            }
            if self.jobs[id.idx()].reservation.is_some() {
                if self.reservation.is_some() {
                    // another reservation is the head this pass
                    self.pending[kept] = id;
                    kept += 1;
                    i += 1;
                    continue;
                }
                let k = self.jobs[id.idx()].reservation.expect("checked") as usize;
                let start = self.advance[k].start;
                if now >= start && self.find_for(id).is_ok() {
                    self.start_reservation(id, now);
                    started_ahead = true;
                    i += 1;
                    continue;
                }
                // Not open yet, or its GPUs are still busy: it is the head, and nothing may start
                // that would still hold its GPUs when the window opens.
                let start_at = match cached {
                    Some(r) if r.job == id && r.start_at > now && !started_ahead => r.start_at,
                    _ => self.reserve(id, now).max(start),
                };
                self.blocked_head = Some(id);
                self.reservation = Some(Reservation { job: id, start_at });
                self.set_why(id, Reason::WaitingForEarliestStart { at: start_at });
                self.pending[kept] = id;
                kept += 1;
                i += 1;
                continue;
            }
            if let Some(until) = self.deferral(id, now) {
                // held back: it leaves the queue until released (see `release_due_deferrals`,
                // `start_due_claims`)
                self.wakeup = Some(self.wakeup.map_or(until, |w| w.min(until)));
                i += 1;
                continue;
            }
            match self.power_admission(id, now) {
                Ok(f) => self.jobs[id.idx()].power_fraction = f,
                Err(why) => {
                    self.set_why(id, why);
                    self.power.blocked_gpus += u64::from(gpus);
                    if self.power.budget_w.as_ref().is_some_and(|b| b.series.values.len() > 1) {
                        // an hourly cap may rise at the next hour
                        let next = SimTime((now.0 / 3600 + 1) * 3600);
                        self.wakeup = Some(self.wakeup.map_or(next, |w| w.min(next)));
                    }
                    self.pending[kept] = id;
                    kept += 1;
                    i += 1;
                    continue;
                }
            }
            let spec = &self.jobs[id.idx()].spec;
            if let Some(k) = self.member_of(spec.account, now, walltime) {
                let inner = self.advance[k].inner.as_mut().expect("active");
                if inner.find(gpus, gpu_type, &mut self.scratch).is_ok() {
                    self.start_inside(id, k, now, started);
                    i += 1;
                    continue;
                }
            }
            if let Some((node, limit)) = self.over_limit(spec.account, gpus) {
                let account = self.tenants.get(node).path.clone();
                self.set_why(id, Reason::AccountAtLimit { account, limit });
                self.pending[kept] = id;
                kept += 1;
                i += 1;
                continue;
            }
            // a job that does not fit otherwise may borrow the GPUs of claims that start after
            // its walltime ends
            if self.claims_applied && !self.claims.is_empty() && !self.cluster.may_fit(gpus, gpu_type) {
                self.unapply_holds();
                self.lend_from(now + walltime);
            }
            let mut placed = false;
            match self.reservation {
                None => match self.cluster.find(gpus, gpu_type, &mut self.scratch) {
                    Ok(()) => {
                        placed = true;
                        started_ahead = true;
                    }
                    Err(no_fit) => {
                        if self.try_preemption(id, now, started) {
                            started_ahead = true;
                            i += 1;
                            continue;
                        }
                        self.blocked_head = Some(id);
                        if !backfill {
                            self.set_why(id, Reason::Resources { no_fit });
                            break;
                        }
                        let start_at = match cached {
                            Some(r) if r.job == id && r.start_at > now && !started_ahead => r.start_at,
                            _ => self.reserve(id, now),
                        };
                        self.reservation = Some(Reservation { job: id, start_at });
                        self.set_why(id, Reason::HoldsReservation { start_at });
                    }
                },
                Some(resv) => {
                    if depth_left == 0 {
                        break;
                    }
                    depth_left -= 1;
                    let short = now + walltime <= resv.start_at;
                    // Holds go on lazily: most passes have no candidate that could fit at all.
                    if !self.holds_applied && !self.cluster.may_fit(gpus, gpu_type) {
                        let no_fit = self.cluster.find(gpus, gpu_type, &mut self.scratch).err();
                        if let Some(no_fit) = no_fit {
                            self.set_why(id, Reason::Resources { no_fit });
                        }
                        self.pending[kept] = id;
                        kept += 1;
                        i += 1;
                        continue;
                    }
                    self.apply_holds();
                    match self.cluster.find(gpus, gpu_type, &mut self.scratch) {
                        Ok(()) => {
                            if !short {
                                self.charge_budgets();
                            }
                            placed = true;
                        }
                        Err(held_no_fit) if short => {
                            // A short job may use held GPUs: it ends before the head starts.
                            self.unapply_holds();
                            match self.cluster.find(gpus, gpu_type, &mut self.scratch) {
                                Ok(()) => placed = true,
                                Err(_) => self.set_why(id, Reason::Resources { no_fit: held_no_fit }),
                            }
                        }
                        Err(held_no_fit) => {
                            // A long job would fit only on GPUs the head needs: it waits for it.
                            let why = if self.cluster.free_for(gpu_type) + self.held_total >= u64::from(gpus) {
                                Reason::BehindReservation { holder: resv.job, start_at: resv.start_at }
                            } else {
                                Reason::Resources { no_fit: held_no_fit }
                            };
                            self.set_why(id, why);
                        }
                    }
                }
            }
            if placed {
                self.start(id, now, started);
            } else {
                self.pending[kept] = id;
                kept += 1;
            }
            i += 1;
        }
        self.pending.copy_within(i..n, kept);
        self.pending.truncate(kept + (n - i));
        let requeue = std::mem::take(&mut self.requeue);
        for id in requeue {
            let p = self.policy.priority(&self.ctx(now), &self.jobs[id.idx()]);
            let tier = self.tier_of(&self.jobs[id.idx()], now);
            let j = &mut self.jobs[id.idx()];
            j.priority = p;
            j.tier = tier;
            j.why = Reason::Preempted { at: now };
            j.why_pass = self.pass;
            let pos = self.pending.partition_point(|&o| self.queue_cmp(o, id) == Ordering::Less);
            self.pending.insert(pos, id);
            self.dirty = true;
        }
        self.unapply_holds();
        self.apply_claims();
        self.power.claimed_idle_gpus = self.claims.iter().flat_map(|c| c.hidden.iter()).map(|&h| u64::from(h)).sum();
        self.unapply_claims();
        if self.reservation.is_none() {
            self.holds.clear();
        }
    }

    /// Hides claimed GPUs from the pass, earliest claim first. A job may borrow only the GPUs of
    /// claims that start after its walltime ends, so a claimed GPU is free again when its claim
    /// starts.
    fn apply_claims(&mut self) {
        if self.claims_applied {
            return;
        }
        self.claims_applied = true;
        for c in self.claims.iter_mut().filter(|c| !c.applied) {
            c.applied = true;
            c.hidden.clear();
            for &(d, n) in &c.parts {
                let h = n.min(self.cluster.domain_free(d));
                if h > 0 {
                    self.cluster.allocate(&[(d, h)]);
                }
                c.hidden.push(h);
            }
        }
        self.rebuild_claim_w();
    }

    /// IT watts (above idle) of the GPUs hidden for claims that start at or after `t`.
    fn claims_w_from(&self, t: SimTime) -> f64 {
        if !self.claims_applied {
            return 0.0;
        }
        let k = self.claim_w.partition_point(|x| x.0 < t);
        self.claim_w.get(k).map_or(0.0, |x| x.1)
    }

    fn rebuild_claim_w(&mut self) {
        let mut v: Vec<(SimTime, f64)> = self
            .claims
            .iter()
            .map(|c| {
                let w = c
                    .parts
                    .iter()
                    .zip(&c.hidden)
                    .map(|(&(d, _), &h)| {
                        let (busy, idle) = self.power.pool_w[self.cluster.domain_pool(d).idx()];
                        f64::from(h) * (busy - idle)
                    })
                    .sum::<f64>();
                (c.at, w)
            })
            .collect();
        v.sort_by_key(|x| x.0);
        for k in (0..v.len().saturating_sub(1)).rev() {
            v[k].1 += v[k + 1].1;
        }
        self.claim_w = v;
    }

    fn unapply_claims(&mut self) {
        self.claims_applied = false;
        for c in self.claims.iter_mut().filter(|c| c.applied) {
            c.applied = false;
            for (&(d, _), &h) in c.parts.iter().zip(&c.hidden) {
                if h > 0 {
                    self.cluster.release(&[(d, h)]);
                }
            }
        }
    }

    /// Lends the GPUs of claims starting at or after `t` (until the next job is considered).
    fn lend_from(&mut self, t: SimTime) {
        for c in self.claims.iter_mut().filter(|c| c.applied && c.at >= t) {
            c.applied = false;
            self.claims_applied = false;
            for (&(d, _), &h) in c.parts.iter().zip(&c.hidden) {
                if h > 0 {
                    self.cluster.release(&[(d, h)]);
                }
            }
        }
    }

    /// Claimed GPUs nobody borrowed in the last pass: held idle for deferred jobs.
    pub fn claimed_idle_gpus(&self) -> u64 {
        self.power.claimed_idle_gpus
    }

    /// Releases queue-mode deferrals whose hour has come (or whose power the green headroom
    /// covers now) as urgent work: the top tier, so the first of them holds the EASY reservation.
    fn release_due_deferrals(&mut self, now: SimTime) {
        let mut released: Vec<JobId> = Vec::new();
        while let Some(&(at, id)) = self.deferred.first().filter(|d| d.0 <= now) {
            self.deferred.remove(&(at, id));
            released.push(id);
        }
        if self.power.green_headroom_w > 0.0 {
            let early: Vec<(SimTime, JobId)> = self.deferred.iter().copied().collect();
            for (at, id) in early {
                let spec = &self.jobs[id.idx()].spec;
                let need = self.power.delta_w(spec.gpus, spec.gpu_type);
                if need <= self.power.green_headroom_w {
                    self.power.green_headroom_w -= need;
                    self.deferred.remove(&(at, id));
                    released.push(id);
                }
            }
        }
        for id in released {
            if self.jobs[id.idx()].state != JobState::Pending || self.jobs[id.idx()].deferred_until.is_none() {
                continue; // cancelled while deferred
            }
            self.requeue_urgent(id, now);
        }
    }

    /// Puts a deferred job back into the queue in the top tier (it gave up its earlier start).
    fn requeue_urgent(&mut self, id: JobId, now: SimTime) {
        let p = self.policy.priority(&self.ctx(now), &self.jobs[id.idx()]);
        let j = &mut self.jobs[id.idx()];
        j.deferred_until = None;
        j.urgent = true;
        j.tier = 2;
        j.priority = p;
        let pos = self.pending.partition_point(|&o| self.queue_cmp(o, id) == Ordering::Less);
        self.pending.insert(pos, id);
        self.reservation = None;
        self.dirty = true;
    }

    /// The earliest planned start of a deferred job, for wake-ups.
    fn next_deferral_end(&self) -> Option<SimTime> {
        let q = self.deferred.first().map(|d| d.0);
        let c = self.claims.first().map(|c| c.at);
        q.into_iter().chain(c).min()
    }

    /// Starts deferred jobs whose hour has come, or whose power the green headroom covers now,
    /// on their claimed GPUs: they were admitted when they deferred (the head's budgets and the
    /// cap's later window were checked then), so neither the queue order nor a reservation can
    /// hold them back. Called with claims applied, before the queue walk.
    fn start_due_claims(&mut self, now: SimTime, started: &mut Vec<JobId>) {
        if self.claims.is_empty() {
            return;
        }
        let mut due = Vec::new();
        let mut k = 0;
        while k < self.claims.len() {
            let c = &self.claims[k];
            let spec = &self.jobs[c.job.idx()].spec;
            let need = self.power.delta_w(spec.gpus, spec.gpu_type);
            let green = need <= self.power.green_headroom_w;
            if c.at <= now || green {
                if c.at > now {
                    self.power.green_headroom_w -= need;
                }
                let c = self.claims.remove(k);
                for (&(d, _), &h) in c.parts.iter().zip(&c.hidden) {
                    if h > 0 {
                        self.cluster.release(&[(d, h)]);
                    }
                }
                due.push(c);
            } else {
                k += 1;
            }
        }
        if due.is_empty() {
            return;
        }
        self.rebuild_claim_w();
        due.sort_by_key(|c| c.job);
        for c in due {
            if c.parts.iter().any(|&(d, n)| self.cluster.domain_free(d) < n) {
                // a borrower overran its walltime (a live job still shutting down): the job
                // goes back into the queue in the top tier instead
                self.requeue_urgent(c.job, now);
                continue;
            }
            self.jobs[c.job.idx()].deferred_until = None;
            self.jobs[c.job.idx()].power_fraction = 1.0;
            self.scratch.clear();
            self.scratch.extend_from_slice(&c.parts);
            self.start(c.job, now, started);
        }
        // capacity changed under a kept head reservation
        self.reservation = None;
    }

    /// The energy-aware modifier's decision for `id` at `now`: the time it is held back until, or
    /// `None` to consider it now. Only flexible jobs (with a deadline) are ever held, each at most
    /// once, and only when it could start now: it then claims the GPUs it would have taken, which
    /// no other job may use, and starts on them when its deferral ends (no later than
    /// `deadline − walltime − guard`). One whose power fits in the green headroom (renewables,
    /// battery) is brought forward.
    fn deferral(&mut self, id: JobId, now: SimTime) -> Option<SimTime> {
        let m = self.energy_aware.as_ref()?;
        let j = &self.jobs[id.idx()];
        let deadline = j.spec.deadline?;
        let (gpus, gpu_type, walltime) = (j.spec.gpus, j.spec.gpu_type, j.spec.walltime);
        let need = self.power.delta_w(gpus, gpu_type);
        if j.deferrals > 0 {
            return None;
        }
        let (until, here, then) = m.defer(now, walltime, deadline)?;
        let mode = m.mode;
        if need <= self.power.green_headroom_w {
            self.power.green_headroom_w -= need;
            return None;
        }
        // it must fit now, beside the head's reservation, and under the cap of its later window
        if self.reservation.is_some() {
            self.apply_holds();
        }
        if !self.cluster.may_fit(gpus, gpu_type) || self.cluster.find(gpus, gpu_type, &mut self.scratch).is_err() {
            return None;
        }
        if let Some(b) = &self.power.budget_w {
            if self.it_power_w() - self.claims_w_from(until + walltime) + need > b.min_between(until, until + walltime)
            {
                return None;
            }
        }
        let j = &mut self.jobs[id.idx()];
        j.deferrals += 1;
        j.deferred_until = Some(until);
        j.why = Reason::Deferred { until, signal_now: here, signal_then: then };
        j.why_pass = self.pass;
        if mode == crate::power::DeferMode::Queue {
            self.unapply_holds();
            self.deferred.insert((until, id));
            return Some(until);
        }
        if self.reservation.is_some_and(|r| until + walltime > r.start_at) {
            self.charge_budgets();
        }
        self.unapply_holds();
        let parts = self.scratch.clone();
        self.cluster.allocate(&parts);
        let hidden = parts.iter().map(|p| p.1).collect();
        // kept in start order: earlier claims are hidden first, so GPUs lent against later
        // claims never come out of an earlier one
        let pos = self.claims.partition_point(|c| c.at <= until);
        self.claims.insert(pos, Claim { job: id, at: until, parts, hidden, applied: true });
        self.rebuild_claim_w();
        Some(until)
    }

    fn set_why(&mut self, id: JobId, why: Reason) {
        let j = &mut self.jobs[id.idx()];
        j.why = why;
        j.why_pass = self.pass;
    }

    /// Starts `id` on the placement in `self.scratch`.
    fn start(&mut self, id: JobId, now: SimTime, started: &mut Vec<JobId>) {
        self.cluster.allocate(&self.scratch);
        let job = &mut self.jobs[id.idx()];
        job.parts.clear();
        job.parts.extend_from_slice(&self.scratch);
        job.deferred_until = None;
        self.power.saved_w += self.saving_w(&self.jobs[id.idx()]);
        let job = &mut self.jobs[id.idx()];
        job.state = JobState::Running;
        job.start = Some(now);
        self.running.insert((now + job.spec.walltime, id));
        self.busy_gpus += u64::from(job.spec.gpus);
        let (account, gpus) = (job.spec.account, job.spec.gpus);
        self.account_change(account, i64::from(gpus), now);
        started.push(id);
    }

    /// Finds the head's shadow time by releasing running jobs in walltime order on the real
    /// allocation state until the head fits, records per-domain budgets for the GPUs it would
    /// take, and restores the state.
    fn reserve(&mut self, head: JobId, now: SimTime) -> SimTime {
        let (gpus, gpu_type) = (self.jobs[head.idx()].spec.gpus, self.jobs[head.idx()].spec.gpu_type);
        self.released.clear();
        self.holds.clear();
        if self.cluster.may_fit(gpus, gpu_type) && self.find_for(head).is_ok() {
            // It fits already (an advance reservation whose window has not opened): hold these.
            for &(d, n) in &self.scratch {
                self.hold_slot[d.idx()] = self.holds.len() as u32;
                self.holds.push(Hold { domain: d, budget: self.cluster.domain_free(d) - n, held: 0 });
            }
            return now;
        }
        let mut start_at = SimTime::MAX;
        let group = self.jobs[head.idx()].reservation.and_then(|k| self.advance[k as usize].group);
        let mut it = self.running.iter().peekable();
        while let Some(&(end, id)) = it.next() {
            if self.jobs[id.idx()].inside.is_none() {
                self.cluster.release(&self.jobs[id.idx()].parts);
                self.released.push(id);
            }
            if it.peek().is_some_and(|&&(e, _)| e == end) {
                continue;
            }
            let fits = self.cluster.may_fit(gpus, gpu_type)
                && match group {
                    Some(g) => self.cluster.find_in_leaf_group(gpus, g, &mut self.scratch).is_ok(),
                    None => self.cluster.find(gpus, gpu_type, &mut self.scratch).is_ok(),
                };
            if fits {
                start_at = end.max(now);
                for &(d, n) in &self.scratch {
                    self.hold_slot[d.idx()] = self.holds.len() as u32;
                    self.holds.push(Hold { domain: d, budget: self.cluster.domain_free(d) - n, held: 0 });
                }
                break;
            }
        }
        for &id in &self.released {
            self.cluster.allocate(&self.jobs[id.idx()].parts);
        }
        start_at
    }

    /// Takes away, on each reserved domain, the free GPUs beyond what long jobs may use.
    /// Idempotent.
    fn apply_holds(&mut self) {
        if self.holds_applied {
            return;
        }
        self.holds_applied = true;
        for h in &mut self.holds {
            let free = self.cluster.domain_free(h.domain);
            h.held = free.saturating_sub(h.budget);
            self.held_total += u64::from(h.held);
            if h.held > 0 {
                self.cluster.allocate(&[(h.domain, h.held)]);
            }
        }
    }

    fn unapply_holds(&mut self) {
        self.holds_applied = false;
        self.held_total = 0;
        for h in &mut self.holds {
            if h.held > 0 {
                self.cluster.release(&[(h.domain, h.held)]);
                h.held = 0;
            }
        }
    }

    /// A long job placed on reserved domains uses up their budget.
    fn charge_budgets(&mut self) {
        for &(d, n) in &self.scratch {
            let slot = self.hold_slot[d.idx()];
            if let Some(h) = self.holds.get_mut(slot as usize).filter(|h| h.domain == d) {
                h.budget -= n.min(h.budget);
            }
        }
    }

    /// Why is `id` where it is?
    pub fn explain(&self, id: JobId) -> Result<Explanation, SchedError> {
        let job = self.jobs.get(id.idx()).ok_or(SchedError::UnknownJob(id))?;
        let mut reasons = Vec::new();
        let mut position = None;
        let state = match job.state {
            JobState::Running => {
                let since = job.start.expect("running job has a start");
                reasons.push(Reason::Running { since, killed_at: since + job.spec.walltime });
                "running"
            }
            JobState::Ended => {
                reasons.push(Reason::Ended { at: job.end.expect("ended job has an end") });
                "ended"
            }
            JobState::Pending => {
                let pos = self.pending.iter().position(|&p| p == id);
                position = pos;
                if pos.is_none() || job.why_pass == self.pass {
                    // Deferred (out of the queue until released), considered in the last pass,
                    // or submitted since.
                    reasons.push(job.why.clone());
                } else if let (Some(head), false) = (self.blocked_head, self.policy.backfill()) {
                    reasons.push(Reason::BehindQueueHead { head });
                } else {
                    reasons.push(Reason::BeyondBackfillDepth {
                        position: pos.unwrap_or(0),
                        depth: self.cfg.backfill_depth,
                    });
                }
                let a = job.spec.account;
                let (u, s) = (self.usage.usage_share(a), self.tenants.get(a).norm_share);
                if u > s {
                    reasons.push(Reason::AccountOverShare {
                        account: self.tenants.get(a).path.clone(),
                        usage_share: u,
                        entitled_share: s,
                    });
                }
                "pending"
            }
        };
        Ok(Explanation { job: id, state, position, priority: job.priority, reasons })
    }

    /// Walltime left for a running job, for callers that enforce it.
    pub fn walltime_end(&self, id: JobId) -> Option<SimTime> {
        let j = &self.jobs[id.idx()];
        j.start.map(|s| s + j.spec.walltime)
    }

    pub fn config(&self) -> &SchedConfig {
        &self.cfg
    }
}

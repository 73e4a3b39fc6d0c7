//! The engine: the one thread that owns the scheduler, the store and the executor. API handlers
//! send it commands; it answers them and, between commands, runs the control loop: collect exits,
//! enforce walltimes, run a scheduling pass, start what the pass decided. Policy lives in
//! `fabrik-sched`; the engine only delivers events and carries out decisions.
//!
//! By concern:
//! - this module: the engine's state, the command loop (`run`, `handle`) and the control loop
//!   (`tick`: exits, walltimes, node changes, the pass, starts — commit first, act second);
//! - [`requests`]: request types, their bounds and validation, durable submission;
//! - [`auth`]: who may see a job and administer accounts and tokens;
//! - [`views`]: job lists, `why`, accounts, the facility, the dashboard and metrics;
//! - [`recovery`]: rebuilding from the store and reconciling with the executor after a restart;
//! - [`devices`]: GPU device numbers for placements.
//!
//! Between API and store a job is one type, `store::JobRecord`.

use crate::executor::{Executor, Exit, Launch, StartError};
use crate::metrics::Metrics;
use crate::store::{Allocation, Identity, JobRecord, JobStatus, Role, Store, TokenInfo};
use fabrik_model::{DomainId, Facility, JobId, JobSpec, Qos, Secs, SimTime, TenantTree};
use fabrik_sched::{SchedConfig, Scheduler};

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod auth;
mod devices;
mod forecaster;
mod health;
mod recovery;
mod requests;
mod views;

use devices::Devices;
pub use health::{HealthConfig, NodeHealth, TelemetryBatch, TelemetryView};
pub use recovery::{CrashPoint, Faults};
pub use requests::*;
pub use views::*;

/// A what-if's inputs: the snapshot, its facility and the twin.
pub type WhatifInput = (Box<fabrik_sched::Snapshot>, Box<Facility>, Arc<dyn fabrik_sched::TwinService>);

/// What `scontrol hold|release|requeue` does to a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Hold,
    Release,
    Requeue,
}

pub enum Cmd {
    Submit(Identity, Box<SubmitRequest>, Reply<JobRecord>),
    List(Identity, ListFilter, Reply<(Vec<JobRecord>, Option<i64>)>),
    Show(Identity, i64, Reply<JobRecord>),
    Cancel(Identity, i64, Reply<JobRecord>),
    /// Hold a pending job, release a held one, or requeue a running one (`Control`).
    Control(Identity, i64, Control, Reply<JobRecord>),
    Why(Identity, i64, Reply<WhyView>),
    OpenLog(Identity, i64, String, Reply<Option<std::fs::File>>),
    Accounts(Identity, Reply<Vec<AccountView>>),
    AddAccount(Identity, String, f64, Reply<AccountView>),
    CreateToken(Identity, NewToken, Reply<String>),
    Tokens(Identity, Reply<Vec<TokenInfo>>),
    RevokeToken(Identity, i64, Reply<TokenInfo>),
    Facility(Identity, Reply<FacilityView>),
    /// Drain (reason) or resume (`None`) a node, by name or domain index.
    Drain(Identity, String, Option<String>, Reply<NodeView>),
    Dashboard(Identity, Reply<DashboardView>),
    /// The brain's state as the twin's input (admins).
    Snapshot(Identity, Reply<Box<fabrik_sched::Snapshot>>),
    /// What a what-if starts from (admins): the snapshot, the facility it was taken on and the
    /// twin that runs it.
    WhatifInput(Identity, Reply<WhatifInput>),
    /// The last start-time forecast of the pending jobs the caller may see (one job's, or all).
    Forecast(Identity, Option<i64>, Reply<ForecastView>),
    /// A telemetry poll's readings, or why there are none.
    Telemetry(Result<TelemetryBatch, String>),
    /// Every node with its state, reason, jobs and health (admins see all; others too: node
    /// states are not secret, job ids of other tenants are left out).
    Nodes(Identity, Reply<NodesView>),
    /// Bring the gauges up to date (before `/metrics` renders them).
    RefreshMetrics(Reply<()>),
    Shutdown,
}

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub policy: String,
    pub sched: SchedConfig,
    /// Virtual seconds per wall second (the simulated executor's time acceleration).
    pub time_scale: f64,
    pub tick: Duration,
    /// Seconds between SIGTERM and SIGKILL at walltime or cancel.
    pub kill_grace_s: u64,
    /// Facility power cap (MW), PUE and grid zone for live energy accounting.
    pub power_cap_mw: Option<f64>,
    pub pue: f64,
    pub zone: String,
    /// The energy-aware modifier for flexible jobs, its signal indexed by Unix hour.
    pub energy_aware: Option<fabrik_sched::EnergyAware>,
    /// How often the queue's start times are forecast in the background (`None`: never).
    pub forecast_interval: Option<Duration>,
    /// The twin that forecasts and answers what-ifs (handed in by the binary; `None`: neither).
    pub twin: Option<Arc<dyn fabrik_sched::TwinService>>,
    /// Live predictive maintenance from telemetry (`None`: no telemetry input).
    pub health: Option<HealthConfig>,
    pub faults: Faults,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            policy: "fair-share".into(),
            sched: SchedConfig::default(),
            time_scale: 1.0,
            tick: Duration::from_millis(200),
            kill_grace_s: 10,
            power_cap_mw: None,
            pue: 1.25,
            zone: "DE".into(),
            energy_aware: None,
            forecast_interval: Some(Duration::from_secs(60)),
            twin: None,
            health: None,
            faults: Faults::default(),
        }
    }
}

/// Wall-clock time in Unix seconds, optionally accelerated from the moment the engine started.
struct Clock {
    origin: Instant,
    origin_unix: u64,
    scale: f64,
}

impl Clock {
    fn new(scale: f64) -> Clock {
        let unix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Clock { origin: Instant::now(), origin_unix: unix, scale }
    }
    fn now(&self) -> SimTime {
        SimTime(self.origin_unix + (self.origin.elapsed().as_secs_f64() * self.scale) as u64)
    }
}

/// What a job sent SIGTERM becomes when it exits.
enum Ending {
    /// It ends in this state (cancelled, timed out).
    As(JobStatus),
    /// It goes back to the queue with this reason (moved off a drained node, requeued).
    Requeue(String),
}

struct Term {
    ending: Ending,
    kill_at: SimTime,
    killed: bool,
}

pub struct Engine {
    store: Store,
    facility: Facility,
    sched: Scheduler,
    exec: Box<dyn Executor>,
    cfg: EngineConfig,
    clock: Clock,
    metrics: Arc<Metrics>,
    jobs: BTreeMap<i64, JobRecord>,
    /// The store's epoch: advance reservation windows count from it.
    epoch: SimTime,
    to_sched: HashMap<i64, JobId>,
    from_sched: Vec<i64>,
    running: BTreeSet<i64>,
    terminating: HashMap<i64, Term>,
    devices: Devices,
    /// Jobs whose new state the store has not taken yet: written again every tick, and until
    /// then the engine starts nothing new.
    unsaved: BTreeSet<i64>,
    history: VecDeque<Sample>,
    last_sample: u64,
    started: Vec<JobId>,
    forecaster: Option<forecaster::Forecaster>,
    /// Live predictive maintenance (with a telemetry input).
    health: Option<health::Health>,
    /// Why each domain out of service is out (failure, operator drain, health detector).
    down_reason: HashMap<DomainId, String>,
    /// The last node events (out of service, back), newest last, for the dashboard.
    node_events: VecDeque<NodeEvent>,
}

/// The share tree of the store's accounts (paths and shares), with the quotas (guarantees,
/// limits, reclaim) the facility file gives those paths — so they hold live as in the twin.
fn tree_from(accounts: &[(String, f64)], quotas: &TenantTree) -> Result<TenantTree, String> {
    TenantTree::with_quotas_of(accounts, quotas, "accounts table").map_err(|e| e.to_string())
}

impl Engine {
    /// Opens the store, seeds accounts from the facility's tenant tree on first start, rebuilds
    /// the scheduler from the stored jobs and reconciles jobs that were starting or running.
    pub fn open(
        mut store: Store,
        mut facility: Facility,
        exec: Box<dyn Executor>,
        cfg: EngineConfig,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Engine> {
        if store.accounts()?.is_empty() {
            for (_, a) in facility.tenants.iter().skip(1) {
                store.add_account(&a.path, a.shares)?;
            }
        }
        store.use_fault_counter(cfg.faults.store_write_failures.clone());
        facility.tenants = tree_from(&store.accounts()?, &facility.tenants).map_err(anyhow::Error::msg)?;
        let clock = Clock::new(cfg.time_scale);
        let epoch = store.epoch(clock.now().0)?;
        let mut sched = Scheduler::for_facility(&facility, &cfg.policy, cfg.sched.clone(), SimTime(epoch))?;
        if fabrik_model::grid::find(&cfg.zone).is_none() {
            anyhow::bail!("unknown grid zone '{}'", cfg.zone);
        }
        if !(cfg.pue.is_finite() && cfg.pue >= 1.0) {
            anyhow::bail!("PUE must be at least 1, got {}", cfg.pue);
        }
        sched.set_power_cap(cfg.power_cap_mw.map(|c| c * 1e6), cfg.pue);
        sched.set_energy_aware(cfg.energy_aware.clone());
        let devices = Devices::new(&facility);
        let forecaster = match (&cfg.forecast_interval, &cfg.twin) {
            (Some(_), Some(twin)) => Some(forecaster::Forecaster::start(facility.clone(), twin.clone())),
            _ => None,
        };
        let mut e = Engine {
            store,
            facility,
            sched,
            exec,
            cfg,
            clock,
            metrics,
            jobs: BTreeMap::new(),
            epoch: SimTime(epoch),
            to_sched: HashMap::new(),
            from_sched: Vec::new(),
            running: BTreeSet::new(),
            terminating: HashMap::new(),
            devices,
            unsaved: BTreeSet::new(),
            history: VecDeque::new(),
            last_sample: 0,
            started: Vec::new(),
            forecaster,
            health: None,
            down_reason: HashMap::new(),
            node_events: VecDeque::new(),
        };
        if let Some(h) = e.cfg.health.clone() {
            e.health = Some(health::Health::new(h, e.facility.domains.len()));
        }
        e.recover()?;
        Ok(e)
    }

    fn map(&mut self, id: i64, jid: JobId) {
        self.to_sched.insert(id, jid);
        if self.from_sched.len() <= jid.idx() {
            self.from_sched.resize(jid.idx() + 1, 0);
        }
        self.from_sched[jid.idx()] = id;
    }

    fn enqueue(&mut self, rec: &mut JobRecord, changed: &mut Vec<i64>) {
        let r = self.spec(rec).and_then(|s| self.sched.submit(s, SimTime(rec.submit_time)).map_err(|e| e.to_string()));
        match r {
            Ok(jid) => self.map(rec.id, jid),
            Err(e) => {
                finish_record(
                    &self.metrics,
                    rec,
                    JobStatus::Failed,
                    self.clock.now(),
                    None,
                    Some(format!("cannot be scheduled: {e}")),
                );
                changed.push(rec.id);
            }
        }
    }

    fn spec(&self, rec: &JobRecord) -> Result<JobSpec, String> {
        let account = self.facility.tenants.resolve(&rec.account)?;
        let mut s = JobSpec::new(rec.id.to_string(), account, rec.gpus, SimTime(rec.submit_time), Secs(rec.walltime_s));
        if let Some(t) = &rec.gpu_type {
            s.gpu_type = Some(self.facility.gpu_type_id(t).ok_or(format!("unknown GPU type '{t}'"))?);
        }
        s.qos = rec.qos.parse::<Qos>()?;
        s.preemptible = rec.preemptible;
        s.checkpoint_interval = rec.checkpoint_interval_s.map(Secs);
        s.earliest_start = rec.earliest_start.map(SimTime);
        s.deadline = rec.deadline.map(SimTime);
        if let (Some(a), Some(limit)) = (rec.array_job_id, rec.array_limit) {
            s.throttle = Some((format!("array {a}"), limit));
        }
        if let Some(text) = &rec.dependency {
            let d = fabrik_model::DependencySpec::parse(text)?;
            if d.singleton {
                s.singleton = Some(format!("{}@{}", rec.name, rec.account));
            }
            for (kind, on) in d.on {
                let id: i64 = on.parse().map_err(|_| format!("dependency: '{on}' is not a job id"))?;
                // a job that ended is resolved here: met (left out) or never (no brain id)
                let ended = self.jobs.get(&id).map(|j| j.state).filter(|st| st.is_final());
                let job = match ended {
                    Some(st) => {
                        let ok = st == JobStatus::Completed;
                        let met = match kind {
                            fabrik_model::DepKind::After | fabrik_model::DepKind::AfterAny => true,
                            fabrik_model::DepKind::AfterOk => ok,
                            fabrik_model::DepKind::AfterNotOk => !ok,
                        };
                        if met {
                            continue;
                        }
                        None
                    }
                    None => Some(*self.to_sched.get(&id).ok_or(format!("dependency: job {id} is not known"))?),
                };
                s.after.push(fabrik_model::Dependency { kind, on, job });
            }
        }
        Ok(s)
    }

    /// Runs until a `Shutdown` command arrives or every sender is gone.
    pub fn run(mut self, rx: mpsc::Receiver<Cmd>) {
        let mut last_tick = Instant::now();
        loop {
            let timeout = self.cfg.tick.saturating_sub(last_tick.elapsed());
            let first = match rx.recv_timeout(timeout) {
                Ok(c) => Some(c),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            let mut cmds: Vec<Cmd> = first.into_iter().collect();
            while cmds.len() < 4096 {
                match rx.try_recv() {
                    Ok(c) => cmds.push(c),
                    Err(_) => break,
                }
            }
            let mut stop = false;
            let mut submits = Vec::new();
            for c in cmds {
                match c {
                    Cmd::Submit(who, req, reply) => submits.push((who, req, reply)),
                    Cmd::Shutdown => stop = true,
                    other => self.handle(other),
                }
            }
            let submitted = !submits.is_empty();
            if submitted {
                self.submit_batch(submits);
            }
            if stop {
                break;
            }
            if submitted || last_tick.elapsed() >= self.cfg.tick {
                self.tick();
                last_tick = Instant::now();
            }
        }
        tracing::info!("engine stopped; running jobs keep running and are re-adopted at the next start");
    }

    fn handle(&mut self, c: Cmd) {
        match c {
            Cmd::List(who, f, reply) => {
                let _ = reply.send(self.list(&who, &f));
            }
            Cmd::Show(who, id, reply) => {
                let _ = reply.send(self.visible(&who, id).cloned());
            }
            Cmd::Cancel(who, id, reply) => {
                let _ = reply.send(self.cancel(&who, id));
            }
            Cmd::Control(who, id, c, reply) => {
                let _ = reply.send(self.control(&who, id, c));
            }
            Cmd::Why(who, id, reply) => {
                let _ = reply.send(self.why(&who, id));
            }
            Cmd::OpenLog(who, id, stream, reply) => {
                let r = self.visible(&who, id).and_then(|j| {
                    if stream != "stdout" && stream != "stderr" {
                        return Err(ApiErr::BadRequest(format!("stream: '{stream}' is not stdout or stderr")));
                    }
                    self.exec
                        .open_log(id, &j.account, &stream)
                        .ok_or_else(|| ApiErr::NotFound(format!("the {} executor keeps no logs", self.exec.name())))?
                        .map_err(|e| ApiErr::Forbidden(format!("log of job {id}: {e}")))
                });
                let _ = reply.send(r);
            }
            Cmd::Accounts(who, reply) => {
                let _ = reply.send(Ok(self.accounts(&who)));
            }
            Cmd::AddAccount(who, path, shares, reply) => {
                let _ = reply.send(self.add_account(&who, &path, shares));
            }
            Cmd::CreateToken(who, t, reply) => {
                let _ = reply.send(self.create_token(&who, t));
            }
            Cmd::Tokens(who, reply) => {
                let _ = reply.send(self.tokens(&who));
            }
            Cmd::RevokeToken(who, id, reply) => {
                let _ = reply.send(self.revoke_token(&who, id));
            }
            Cmd::Facility(_, reply) => {
                let _ = reply.send(Ok(self.facility_view()));
            }
            Cmd::Drain(who, node, reason, reply) => {
                let _ = reply.send(self.drain(&who, &node, reason));
            }
            Cmd::Dashboard(who, reply) => {
                let _ = reply.send(Ok(self.dashboard(&who)));
            }
            Cmd::Snapshot(who, reply) => {
                let _ = reply.send(self.snapshot(&who));
            }
            Cmd::WhatifInput(who, reply) => {
                let input = self.snapshot(&who).and_then(|s| match &self.cfg.twin {
                    Some(t) => Ok((s, Box::new(self.facility.clone()), t.clone())),
                    None => {
                        Err(ApiErr::Conflict("what-ifs need the twin, which this server was started without".into()))
                    }
                });
                let _ = reply.send(input);
            }
            Cmd::Forecast(who, job, reply) => {
                let _ = reply.send(self.forecast_view(&who, job));
            }
            Cmd::Telemetry(r) => self.on_telemetry(r),
            Cmd::Nodes(who, reply) => {
                let _ = reply.send(Ok(self.nodes_view(&who)));
            }
            Cmd::RefreshMetrics(reply) => {
                self.update_metrics();
                let _ = reply.send(Ok(()));
            }
            Cmd::Submit(..) | Cmd::Shutdown => unreachable!("handled by the loop"),
        }
    }

    fn cancel(&mut self, who: &Identity, id: i64) -> Result<JobRecord, ApiErr> {
        let state = self.visible(who, id)?.state;
        let now = self.clock.now();
        match state {
            JobStatus::Pending | JobStatus::Held => {
                if let Some(&jid) = self.to_sched.get(&id).filter(|_| state == JobStatus::Pending) {
                    self.sched.cancel(jid, now).map_err(|e| ApiErr::Internal(e.to_string()))?;
                }
                let rec = self.jobs.get_mut(&id).expect("visible");
                finish_record(
                    &self.metrics,
                    rec,
                    JobStatus::Cancelled,
                    now,
                    None,
                    Some(format!("cancelled by {}", who.name)),
                );
                let rec = rec.clone();
                self.store.update_jobs([&rec]).map_err(|e| ApiErr::Internal(format!("store: {e}")))?;
                Ok(rec)
            }
            JobStatus::Running | JobStatus::Starting => {
                if !self.terminating.contains_key(&id) {
                    self.terminate(id, Ending::As(JobStatus::Cancelled), now);
                }
                let rec = self.jobs.get_mut(&id).expect("visible");
                rec.reason = Some(format!("cancelling (requested by {})", who.name));
                Ok(rec.clone())
            }
            s => Err(ApiErr::Conflict(format!("job {id} has already ended ({})", s.as_str()))),
        }
    }

    /// Hold, release or requeue a job (its owner, a manager of its account, or an admin).
    fn control(&mut self, who: &Identity, id: i64, c: Control) -> Result<JobRecord, ApiErr> {
        let state = self.visible(who, id)?.state;
        let now = self.clock.now();
        match (c, state) {
            (Control::Hold, JobStatus::Pending) => {
                let dependents: Vec<i64> = self
                    .jobs
                    .values()
                    .filter(|j| j.state == JobStatus::Pending)
                    .filter(|j| {
                        j.dependency
                            .as_deref()
                            .and_then(|d| fabrik_model::DependencySpec::parse(d).ok())
                            .is_some_and(|d| d.on.iter().any(|(_, on)| on.parse::<i64>().ok() == Some(id)))
                    })
                    .map(|j| j.id)
                    .collect();
                if !dependents.is_empty() {
                    return Err(ApiErr::Conflict(format!(
                        "job {id} has dependent jobs ({dependents:?}); holding it would leave them waiting on a job outside the queue"
                    )));
                }
                if let Some(jid) = self.to_sched.remove(&id) {
                    self.sched.cancel(jid, now).map_err(|e| ApiErr::Internal(e.to_string()))?;
                }
                let rec = self.jobs.get_mut(&id).expect("visible");
                rec.state = JobStatus::Held;
                rec.reason = Some(format!("held by {}", who.name));
            }
            (Control::Release, JobStatus::Held) => {
                let mut rec = self.jobs.remove(&id).expect("visible");
                rec.state = JobStatus::Pending;
                rec.reason = Some(format!("released by {}", who.name));
                let mut changed = Vec::new();
                self.enqueue(&mut rec, &mut changed);
                self.jobs.insert(id, rec);
            }
            (Control::Requeue, JobStatus::Running) => {
                if self.terminating.contains_key(&id) {
                    return Err(ApiErr::Conflict(format!("job {id} is already ending")));
                }
                // as a job moved off a drained node: SIGTERM (its checkpoint signal), back in
                // the queue when it exits
                let why = format!("requeued by {} at {}", who.name, now.unix_utc());
                self.terminate(id, Ending::Requeue(why.clone()), now);
                let rec = self.jobs.get_mut(&id).expect("visible");
                rec.reason = Some(format!("{why} (checkpoint signal sent; back in the queue when it exits)"));
                return Ok(rec.clone());
            }
            (c, s) => {
                let want = match c {
                    Control::Hold => "pending",
                    Control::Release => "held",
                    Control::Requeue => "running",
                };
                return Err(ApiErr::Conflict(
                    format!("job {id} is {}; only a {want} job can be {c:?}d", s.as_str()).to_lowercase(),
                ));
            }
        }
        let rec = self.jobs[&id].clone();
        self.store.update_jobs([&rec]).map_err(|e| ApiErr::Internal(format!("store: {e}")))?;
        Ok(rec)
    }

    /// One turn of the control loop.
    fn tick(&mut self) {
        let now = self.clock.now();
        let mut changed: Vec<i64> = std::mem::take(&mut self.unsaved).into_iter().collect();
        for (id, exit) in self.exec.poll(now) {
            if self.ended(id, exit, now) {
                changed.push(id);
            }
        }
        if !changed.is_empty() {
            self.crash_point(CrashPoint::BeforeEndCommit);
        }
        for (id, reason) in self.exec.taken_back() {
            if let Some(&jid) = self.to_sched.get(&id) {
                let _ = self.sched.unstart(jid, now);
            }
            self.requeue_record(id, format!("not started: {reason}; back in the queue"));
            changed.push(id);
        }
        self.health_returns(now);
        for (d, down) in self.exec.node_changes(now) {
            match down {
                // fabrik's own drain, seen back from the executor: its jobs are moving already
                Some(_) if self.sched.is_cordoned(d) => {}
                Some(reason) => self.take_out(d, &reason, now, &mut changed),
                None => {
                    let _ = self.sched.repair_domain(d);
                    self.down_reason.remove(&d);
                    self.node_event(d, "back in service".into());
                    tracing::info!(domain = d.0, "node back in service");
                }
            }
        }
        // Walltime: SIGTERM at the limit, SIGKILL after the grace period.
        let over: Vec<i64> = self
            .running
            .iter()
            .filter(|id| !self.terminating.contains_key(id))
            .filter(|id| self.jobs[id].start_time.is_some_and(|s| s.saturating_add(self.jobs[id].walltime_s) <= now.0))
            .copied()
            .collect();
        for id in over {
            self.terminate(id, Ending::As(JobStatus::Timeout), now);
        }
        for (&id, t) in self.terminating.iter_mut() {
            if !t.killed && t.kill_at <= now {
                self.exec.signal(id, true);
                t.killed = true;
            }
        }
        // Record what happened before deciding anything new: a job whose end (or requeue) the
        // store has not taken must not have its GPUs handed to another job's process.
        self.save(&mut changed);
        if !self.unsaved.is_empty() {
            self.sample(now);
            return;
        }
        let t0 = Instant::now();
        let mut started = std::mem::take(&mut self.started);
        self.sched.schedule(now, &mut started);
        self.metrics.pass_seconds.observe(t0.elapsed().as_secs_f64());
        let mut preempted = Vec::new();
        self.sched.drain_preempted(&mut preempted);
        for jid in preempted {
            // Jobs here checkpoint on their own, if at all: preemption kills and requeues.
            let id = self.from_sched[jid.idx()];
            self.exec.forget(id);
            self.requeue_record(id, format!("preempted at {} and requeued", now.unix_utc()));
            changed.push(id);
            tracing::info!(job = id, "preempted and requeued");
        }
        // Preempted jobs are requeued in the store before anything takes their GPUs.
        self.save(&mut changed);
        if !started.is_empty() {
            if self.unsaved.is_empty() {
                self.start_jobs(&started, now);
            } else {
                for &jid in &started {
                    let _ = self.sched.unstart(jid, now);
                }
            }
        }
        self.started = started;
        self.sample(now);
        self.offer_forecast(now);
    }

    /// Every forecast interval, while jobs wait: a snapshot and the recent history to the
    /// forecast thread (it never blocks the loop).
    fn offer_forecast(&mut self, now: SimTime) {
        let (Some(every), Some(f)) = (self.cfg.forecast_interval, &self.forecaster) else { return };
        if !f.due(every) || self.sched.pending().len() + self.sched.deferred_len() == 0 {
            return;
        }
        let snap = Box::new(self.brain_snapshot(false));
        let history: Vec<fabrik_model::runtime_model::Completed> = self
            .jobs
            .values()
            .rev()
            .filter_map(|j| {
                // ended jobs, and running ones as censored (they have run at least this long)
                let (s, e, running) = match j.state {
                    JobStatus::Completed | JobStatus::Timeout | JobStatus::Failed => {
                        (j.start_time?, j.end_time?, false)
                    }
                    JobStatus::Running => (j.start_time?, now.0, true),
                    _ => return None,
                };
                Some(fabrik_model::runtime_model::Completed {
                    account: j.account.clone(),
                    gpus: j.gpus,
                    submit_unix: j.submit_time,
                    walltime_s: j.walltime_s,
                    runtime_s: e.saturating_sub(s),
                    running,
                })
            })
            .take(forecaster::MAX_HISTORY)
            .collect();
        if let Some(f) = &mut self.forecaster {
            f.offer(snap, history);
        }
    }

    /// A domain leaves service: its jobs stop and go back to the queue.
    fn take_out(&mut self, d: DomainId, reason: &str, now: SimTime, changed: &mut Vec<i64>) {
        if self.sched.fail_domain(d, now).is_err() {
            return;
        }
        // the first cause stays (fabrik's drain seen back from Slurm is no new cause)
        if let std::collections::hash_map::Entry::Vacant(e) = self.down_reason.entry(d) {
            e.insert(reason.to_string());
            self.node_event(d, format!("out of service: {reason}"));
        }
        let mut hit = Vec::new();
        self.sched.drain_interrupted(&mut hit);
        tracing::warn!(domain = d.0, jobs = hit.len(), "out of service: {reason}");
        for jid in hit {
            let id = self.from_sched[jid.idx()];
            self.exec.forget(id);
            self.requeue_record(id, format!("{reason} at {}; requeued", now.unix_utc()));
            changed.push(id);
        }
    }

    fn drain(&mut self, who: &Identity, node: &str, reason: Option<String>) -> Result<NodeView, ApiErr> {
        if who.role != Role::Admin {
            return Err(ApiErr::Forbidden("only admins drain and resume nodes".into()));
        }
        let names = &self.facility.node_names;
        let d = names
            .iter()
            .position(|n| n == node)
            .or_else(|| node.parse::<usize>().ok().filter(|&i| i < self.facility.domains.len()))
            .or_else(|| fabrik_model::telemetry::domain_of(&self.facility, node).map(|d| d.idx()))
            .ok_or_else(|| ApiErr::NotFound(format!("node '{node}' not found")))?;
        let dom = DomainId(d as u32);
        let name = fabrik_model::telemetry::hostname_of(&self.facility, dom);
        let now = self.clock.now();
        match &reason {
            Some(r) => {
                if r.trim().is_empty() || r.len() > 200 {
                    return Err(ApiErr::BadRequest("reason: must be 1 to 200 characters".into()));
                }
                self.exec.drain(dom, r, false).map_err(|e| ApiErr::Internal(format!("draining {name}: {e}")))?;
                let mut changed = Vec::new();
                self.take_out(dom, &format!("drained by {}: {r}", who.name), now, &mut changed);
                self.save(&mut changed);
            }
            None => {
                if self.sched.is_cordoned(dom) {
                    return Err(ApiErr::Conflict(format!(
                        "{name}: its jobs are still moving off (checkpoint signal sent); resume it once they left"
                    )));
                }
                self.exec.drain(dom, "", true).map_err(|e| ApiErr::Internal(format!("resuming {name}: {e}")))?;
                let _ = self.sched.repair_domain(dom);
                self.down_reason.remove(&dom);
                self.node_event(dom, format!("resumed by {}", who.name));
                if let Some(h) = self.health.as_mut() {
                    h.returned(dom);
                }
            }
        }
        Ok(NodeView { node: name, domain: d as u32, in_service: reason.is_none() })
    }

    /// SIGTERM now, SIGKILL after the grace period; `ending` says what the job becomes when it
    /// exits.
    fn terminate(&mut self, id: i64, ending: Ending, now: SimTime) {
        self.exec.signal(id, false);
        self.terminating.insert(id, Term { ending, kill_at: now + Secs(self.cfg.kill_grace_s), killed: false });
    }

    /// Records a node event for the dashboard (the last 100 are kept).
    fn node_event(&mut self, d: DomainId, what: String) {
        let node = fabrik_model::telemetry::hostname_of(&self.facility, d);
        self.node_events.push_back(NodeEvent { at: self.clock.now().0, node, what });
        if self.node_events.len() > 100 {
            self.node_events.pop_front();
        }
    }

    /// Writes the records of `changed` jobs; those the store refuses stay unsaved (written
    /// again next tick, and nothing new starts meanwhile).
    fn save(&mut self, changed: &mut Vec<i64>) {
        if changed.is_empty() {
            return;
        }
        changed.sort_unstable();
        changed.dedup();
        let recs: Vec<&JobRecord> = changed.iter().filter_map(|id| self.jobs.get(id)).collect();
        let r = self.store.update_jobs(recs);
        self.metrics.store_result("recording job states", &r);
        if r.is_err() {
            self.unsaved.extend(changed.iter().copied());
        }
        changed.clear();
    }

    /// Commit first, act second: starts are committed as `starting` before any process is
    /// spawned; if the store refuses, nothing is spawned and the jobs go back to the queue. A
    /// crash in between leaves jobs "starting", which recovery resolves from the executor's
    /// traces (a process found by its name in /proc is re-adopted, never started twice).
    fn start_jobs(&mut self, started: &[JobId], now: SimTime) {
        let ids: Vec<i64> = started.iter().map(|j| self.from_sched[j.idx()]).collect();
        for (&jid, &id) in started.iter().zip(&ids) {
            let parts = self.sched.job(jid).parts().to_vec();
            let devices = self.devices.assign(&parts);
            let rec = self.jobs.get_mut(&id).expect("scheduled job is known");
            rec.state = JobStatus::Starting;
            rec.start_time = Some(now.0);
            rec.allocation = Some(Allocation { parts: parts.iter().map(|&(d, n)| (d.0, n)).collect(), devices });
        }
        let recs: Vec<&JobRecord> = ids.iter().map(|id| &self.jobs[id]).collect();
        let r = self.store.update_jobs(recs);
        self.metrics.store_result("recording job starts", &r);
        if r.is_err() {
            for (&jid, &id) in started.iter().zip(&ids) {
                let _ = self.sched.unstart(jid, now);
                let rec = self.jobs.get_mut(&id).expect("known");
                let devs = rec.allocation.take().map(|a| a.devices).unwrap_or_default();
                rec.state = JobStatus::Pending;
                rec.start_time = None;
                self.devices.release(&devs);
            }
            return;
        }
        self.crash_point(CrashPoint::AfterStartingCommit);
        for (&jid, &id) in started.iter().zip(&ids) {
            let rec = &self.jobs[&id];
            let devices = rec.allocation.as_ref().map(|a| a.devices.clone()).unwrap_or_default();
            let fraction = self.sched.job(self.to_sched[&id]).power_fraction;
            let res = self.exec.start(&launch(rec, &devices, now, fraction));
            if let Err(StartError::Unavailable(m)) = &res {
                tracing::warn!(job = id, error = %m, "executor unavailable; the job stays queued");
                let _ = self.sched.unstart(jid, now);
                self.requeue_record(id, format!("not started: {m}"));
                continue;
            }
            let rec = self.jobs.get_mut(&id).expect("known");
            match res {
                Ok(pid) => {
                    rec.state = JobStatus::Running;
                    rec.pid = pid;
                    self.metrics.queue_wait_seconds.observe(now.0.saturating_sub(rec.submit_time) as f64);
                    self.running.insert(id);
                    tracing::info!(job = id, pid = ?pid, "started");
                }
                Err(e) => {
                    tracing::warn!(job = id, error = %e, "start failed");
                    finish_record(&self.metrics, rec, JobStatus::Failed, now, None, Some(format!("start failed: {e}")));
                    let devs = rec.allocation.as_ref().map(|a| a.devices.clone()).unwrap_or_default();
                    let _ = self.sched.finish_not_ok(jid, now);
                    self.devices.release(&devs);
                }
            }
        }
        self.crash_point(CrashPoint::AfterSpawn);
        // A refused write here loses only the pids: the jobs stay "starting" in the store, and
        // recovery finds their processes by name.
        let mut changed = ids;
        self.save(&mut changed);
    }

    /// A job's process ended: every job ends exactly once, here.
    fn ended(&mut self, id: i64, exit: Exit, now: SimTime) -> bool {
        if !self.running.remove(&id) {
            return false;
        }
        let term = self.terminating.remove(&id).map(|t| t.ending);
        if let Some(Ending::Requeue(why)) = term {
            // moved off a drained node: back to the queue (its checkpoint, if it wrote one, is
            // the job's own to resume from)
            if let Some(&jid) = self.to_sched.get(&id) {
                let _ = self.sched.requeue(jid, now);
            }
            self.requeue_record(id, why);
            tracing::info!(job = id, "moved: back in the queue");
            return true;
        }
        let term = match term {
            Some(Ending::As(s)) => Some(s),
            _ => None,
        };
        let (status, reason) = status_of(exit, term);
        if let Some(&jid) = self.to_sched.get(&id) {
            if self.sched.job(jid).state.is_running() {
                // dependencies tell success (afterok) from the rest (afternotok)
                let _ = if status == JobStatus::Completed {
                    self.sched.finish(jid, now)
                } else {
                    self.sched.finish_not_ok(jid, now)
                };
            }
        }
        let rec = self.jobs.get_mut(&id).expect("running job is known");
        finish_record(&self.metrics, rec, status, now, Some(exit), reason);
        let devs = rec.allocation.as_ref().map(|a| a.devices.clone()).unwrap_or_default();
        self.devices.release(&devs);
        tracing::info!(job = id, state = status.as_str(), "ended");
        true
    }
}

fn launch<'a>(rec: &'a JobRecord, devices: &'a [u32], now: SimTime, power_fraction: f64) -> Launch<'a> {
    Launch {
        id: rec.id,
        parts: rec.allocation.as_ref().map_or(&[], |a| &a.parts),
        account: &rec.account,
        command: &rec.command,
        devices,
        simulated_runtime_s: rec.simulated_runtime_s,
        array: rec.array_job_id.zip(rec.array_task_id),
        walltime_s: rec.walltime_s,
        now,
        power_fraction,
    }
}

fn status_of(exit: Exit, term: Option<JobStatus>) -> (JobStatus, Option<String>) {
    match (term, exit) {
        (Some(JobStatus::Timeout), _) => (JobStatus::Timeout, Some("killed at its walltime".into())),
        (Some(JobStatus::Cancelled), _) => (JobStatus::Cancelled, Some("cancelled".into())),
        (_, Exit::Code(0)) => (JobStatus::Completed, None),
        (_, Exit::Code(c)) => (JobStatus::Failed, Some(format!("exit code {c}"))),
        (_, Exit::Signal(s)) => (JobStatus::Failed, Some(format!("killed by signal {s}"))),
        (_, Exit::Lost) => (JobStatus::Failed, Some("lost: the process ended without an exit code".into())),
    }
}

/// A job ends (every end passes here once): its record, and the end counted by state.
fn finish_record(
    metrics: &Metrics,
    rec: &mut JobRecord,
    status: JobStatus,
    now: SimTime,
    exit: Option<Exit>,
    reason: Option<String>,
) {
    metrics.ended.get_or_create(&crate::metrics::StateLabel { state: status.as_str().to_string() }).inc();
    rec.state = status;
    rec.end_time = Some(now.0);
    match exit {
        Some(Exit::Code(c)) => rec.exit_code = Some(c),
        Some(Exit::Signal(s)) => rec.signal = Some(s),
        _ => {}
    }
    if reason.is_some() {
        rec.reason = reason;
    }
}

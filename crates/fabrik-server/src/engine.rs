//! The engine: the one thread that owns the scheduler, the store and the executor. API handlers
//! send it commands; it answers them and, between commands, runs the control loop: collect exits,
//! enforce walltimes, run a scheduling pass, start what the pass decided. Policy lives in
//! `fabrik-sched`; this file only delivers events and carries out decisions.

use crate::executor::{Executor, Exit, Found, Launch, StartError};
use crate::metrics::Metrics;
use crate::store::{Allocation, Identity, JobRecord, JobStatus, Role, Store, TokenInfo};
use fabrik_model::tenants::AccountSpec;
use fabrik_model::units::parse_duration;
use fabrik_model::{DomainId, Facility, JobId, JobSpec, Qos, Secs, SimTime, TenantTree};
use fabrik_sched::{JobState, SchedConfig, Scheduler};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// An error an API caller can act on; mapped to a 4xx/5xx status.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum ApiErr {
    BadRequest(String),
    Forbidden(String),
    NotFound(String),
    Conflict(String),
    Internal(String),
}

pub type Reply<T> = oneshot::Sender<Result<T, ApiErr>>;

/// A duration as seconds or as text with a unit (`90s`, `45m`, `2h`, `1.5d`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Dur {
    Secs(u64),
    Text(String),
}

impl Dur {
    fn secs(&self, field: &str) -> Result<u64, ApiErr> {
        match self {
            Dur::Secs(s) => Ok(*s),
            Dur::Text(t) => parse_duration(t).map_err(|e| ApiErr::BadRequest(format!("{field}: {e}"))),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    pub name: Option<String>,
    pub command: Vec<String>,
    pub gpus: u32,
    pub walltime: Dur,
    pub account: Option<String>,
    pub gpu_type: Option<String>,
    pub qos: Option<String>,
    pub preemptible: Option<bool>,
    pub checkpoint_interval: Option<Dur>,
    /// Unix seconds.
    pub earliest_start: Option<u64>,
    pub deadline: Option<u64>,
    /// For the simulated executor: how long the job runs.
    pub simulated_runtime: Option<Dur>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListFilter {
    pub state: Option<String>,
    pub account: Option<String>,
    pub limit: Option<usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WhyView {
    pub job: i64,
    pub state: JobStatus,
    pub reasons: Vec<String>,
    pub detail: Option<fabrik_sched::Explanation>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AccountView {
    pub account: String,
    pub leaf: bool,
    pub shares: f64,
    pub entitled_share: f64,
    /// Share of decayed usage (the fair-share input).
    pub usage_share: f64,
    pub gpu_hours: f64,
    pub running_gpus: u64,
    pub pending_jobs: u64,
    /// IT energy of its jobs so far (GPUs with their host share at training draw, the shared
    /// power model), and the emissions and cost at the zone's annual means and the PUE.
    pub it_kwh: f64,
    pub emissions_kg: f64,
    pub cost_eur: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupView {
    pub group: u32,
    pub hall: String,
    pub gpu_type: String,
    pub gpus: u32,
    pub busy: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct FacilityView {
    pub name: String,
    pub executor: String,
    pub gpus: u64,
    pub busy_gpus: u64,
    pub pending_jobs: u64,
    pub running_jobs: u64,
    pub it_power_w: f64,
    /// IT power × PUE, and the cap on it (the grid connection), W.
    pub facility_power_w: f64,
    pub power_cap_w: Option<f64>,
    pub groups: Vec<GroupView>,
    pub now: u64,
    /// What operators and tenants must know about this server (e.g. single-user mode).
    pub announcement: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeView {
    pub node: String,
    pub domain: u32,
    pub in_service: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub t: u64,
    /// Busy GPUs per tenant class, by class name.
    pub by_class: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DashboardView {
    pub facility: FacilityView,
    pub queue: Vec<(JobRecord, String)>,
    pub running: Vec<JobRecord>,
    pub accounts: Vec<AccountView>,
    pub class_shares: BTreeMap<String, f64>,
    pub history: Vec<Sample>,
}

pub enum Cmd {
    Submit(Identity, Box<SubmitRequest>, Reply<JobRecord>),
    List(Identity, ListFilter, Reply<Vec<JobRecord>>),
    Show(Identity, i64, Reply<JobRecord>),
    Cancel(Identity, i64, Reply<JobRecord>),
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
    Shutdown,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    pub name: String,
    pub account: Option<String>,
    pub role: Role,
    /// Seconds from now after which the token is refused (none: it lasts until revoked).
    pub expires_in: Option<u64>,
}

/// Bounds on what a submission may ask for. A year is longer than any allocation a facility
/// grants (Slurm sites cap walltimes at days); the point is that no value can overflow the
/// arithmetic or the store.
pub const MAX_WALLTIME_S: u64 = 366 * 86_400;
/// Earliest starts and deadlines lie at most this far ahead.
pub const MAX_AHEAD_S: u64 = 10 * 366 * 86_400;

/// Where a test makes the engine die as a SIGKILL would (no further write, no clean-up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// Starts are committed as `starting`; nothing is spawned yet.
    AfterStartingCommit,
    /// Processes are spawned; their pids are not recorded.
    AfterSpawn,
    /// An exit was observed; its end is not recorded.
    BeforeEndCommit,
}

/// Test hooks for crash-safety tests; inert by default.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// While above zero, each store write fails (and takes one off).
    pub store_write_failures: Arc<std::sync::atomic::AtomicU32>,
    pub crash_at: Option<CrashPoint>,
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

struct Term {
    status: JobStatus,
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
    to_sched: HashMap<i64, JobId>,
    from_sched: Vec<i64>,
    running: BTreeSet<i64>,
    terminating: HashMap<i64, Term>,
    devices: Vec<Vec<bool>>,
    /// First device number of each domain: numbers are unique across domains of any size.
    device_base: Vec<u32>,
    /// Jobs whose new state the store has not taken yet: written again every tick, and until
    /// then the engine starts nothing new.
    unsaved: BTreeSet<i64>,
    history: VecDeque<Sample>,
    last_sample: u64,
    started: Vec<JobId>,
}

/// The share tree of the store's accounts (paths and shares), with the quotas (guarantees,
/// limits, reclaim) the facility file gives those paths — so they hold live as in the twin.
fn tree_from(accounts: &[(String, f64)], quotas: &TenantTree) -> Result<TenantTree, String> {
    let specs: Vec<AccountSpec> = accounts
        .iter()
        .map(|(p, s)| {
            let mut a = AccountSpec::new(p.clone(), *s);
            if let Some((_, q)) = quotas.iter().find(|(_, q)| &q.path == p) {
                a.quota = q.quota.clone();
            }
            a
        })
        .collect();
    TenantTree::from_specs(&specs, "accounts table").map_err(|e| e.to_string())
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
        let devices: Vec<Vec<bool>> = (0..facility.domains.len())
            .map(|d| vec![true; facility.domain_gpus(DomainId(d as u32)) as usize])
            .collect();
        let device_base = devices
            .iter()
            .scan(0u32, |next, d| {
                let base = *next;
                *next += d.len() as u32;
                Some(base)
            })
            .collect();
        let mut e = Engine {
            store,
            facility,
            sched,
            exec,
            cfg,
            clock,
            metrics,
            jobs: BTreeMap::new(),
            to_sched: HashMap::new(),
            from_sched: Vec::new(),
            running: BTreeSet::new(),
            terminating: HashMap::new(),
            devices,
            device_base,
            unsaved: BTreeSet::new(),
            history: VecDeque::new(),
            last_sample: 0,
            started: Vec::new(),
        };
        e.recover()?;
        Ok(e)
    }

    fn recover(&mut self) -> anyhow::Result<()> {
        let now = self.clock.now();
        let mut changed = Vec::new();
        for mut rec in self.store.load_jobs()? {
            match rec.state {
                JobStatus::Pending => self.enqueue(&mut rec, &mut changed),
                JobStatus::Starting | JobStatus::Running => {
                    let start = SimTime(rec.start_time.unwrap_or(now.0));
                    let found = {
                        let l = launch(&rec, &[], now, 1.0);
                        self.exec.find(rec.id, rec.pid, start, &l)
                    };
                    match found {
                        Found::Alive(pid) => {
                            rec.pid = pid.or(rec.pid);
                            let parts: Vec<(DomainId, u32)> = rec
                                .allocation
                                .as_ref()
                                .map(|a| a.parts.iter().map(|&(d, n)| (DomainId(d), n)).collect())
                                .unwrap_or_default();
                            let adopted = self
                                .spec(&rec)
                                .and_then(|s| self.sched.adopt(s, &parts, start).map_err(|e| e.to_string()));
                            match adopted {
                                Ok(jid) => {
                                    self.map(rec.id, jid);
                                    if let Some(a) = &rec.allocation {
                                        self.take_devices(&a.devices);
                                    }
                                    rec.state = JobStatus::Running;
                                    self.running.insert(rec.id);
                                    tracing::info!(job = rec.id, pid = ?rec.pid, "re-adopted running job");
                                }
                                Err(e) => {
                                    self.exec.signal(rec.id, true);
                                    finish_record(
                                        &mut rec,
                                        JobStatus::Failed,
                                        now,
                                        None,
                                        Some(format!("could not re-adopt: {e}")),
                                    );
                                }
                            }
                        }
                        Found::Exited(exit) => {
                            let (status, reason) = status_of(exit, None);
                            finish_record(
                                &mut rec,
                                status,
                                now,
                                Some(exit),
                                reason.or(Some("ended while the control plane was down".into())),
                            );
                        }
                        Found::NotStarted => {
                            rec.state = JobStatus::Pending;
                            rec.start_time = None;
                            rec.allocation = None;
                            self.enqueue(&mut rec, &mut changed);
                        }
                    }
                    changed.push(rec.id);
                }
                _ => {}
            }
            self.jobs.insert(rec.id, rec);
        }
        let recs: Vec<&JobRecord> = changed.iter().filter_map(|id| self.jobs.get(id)).collect();
        self.store.update_jobs(recs)?;
        Ok(())
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
        Ok(s)
    }

    fn take_devices(&mut self, devs: &[u32]) {
        for &d in devs {
            let (dom, i) = self.device_slot(d);
            if let Some(x) = self.devices.get_mut(dom).and_then(|v| v.get_mut(i)) {
                *x = false;
            }
        }
    }

    fn device_slot(&self, global: u32) -> (usize, usize) {
        let dom = self.device_base.partition_point(|&b| b <= global).saturating_sub(1);
        (dom, (global - self.device_base.get(dom).copied().unwrap_or(0)) as usize)
    }

    /// Device numbers for a placement: the lowest free GPUs of each domain. Numbers are the
    /// domain's first device number + index, so on a one-node host they are the local GPU
    /// indices, and domains of different sizes never share a number.
    fn assign_devices(&mut self, parts: &[(DomainId, u32)]) -> Vec<u32> {
        let mut out = Vec::new();
        for &(d, n) in parts {
            let base = self.device_base[d.idx()];
            let slots = &mut self.devices[d.idx()];
            let mut left = n;
            for (i, free) in slots.iter_mut().enumerate() {
                if left == 0 {
                    break;
                }
                if *free {
                    *free = false;
                    out.push(base + i as u32);
                    left -= 1;
                }
            }
        }
        out
    }

    fn release_devices(&mut self, devs: &[u32]) {
        for &d in devs {
            let (dom, i) = self.device_slot(d);
            if let Some(x) = self.devices.get_mut(dom).and_then(|v| v.get_mut(i)) {
                *x = true;
            }
        }
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

    fn visible(&self, who: &Identity, id: i64) -> Result<&JobRecord, ApiErr> {
        match self.jobs.get(&id) {
            Some(j) if who.covers(&j.account) => Ok(j),
            _ => Err(ApiErr::NotFound(format!("job {id} not found"))),
        }
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
            Cmd::Submit(..) | Cmd::Shutdown => unreachable!("handled by the loop"),
        }
    }

    fn validate(&self, who: &Identity, req: &SubmitRequest, now: SimTime) -> Result<JobRecord, ApiErr> {
        let bad = |m: String| Err(ApiErr::BadRequest(m));
        if req.command.is_empty() || req.command[0].is_empty() {
            return bad("command: must not be empty".into());
        }
        if req.command.iter().any(|a| a.contains('\0')) {
            return bad("command: arguments must not contain NUL bytes".into());
        }
        for (field, v) in
            [("name", &req.name), ("account", &req.account), ("gpu_type", &req.gpu_type), ("qos", &req.qos)]
        {
            if v.as_ref().is_some_and(|v| v.trim().is_empty()) {
                return bad(format!("{field}: must not be empty (leave it out for the default)"));
            }
        }
        let account_name = match (&req.account, &who.account) {
            (Some(a), _) => a.clone(),
            (None, Some(a)) => a.clone(),
            (None, None) => return bad("account: required for tokens not bound to a project".into()),
        };
        let account =
            self.facility.tenants.resolve(&account_name).map_err(|e| ApiErr::BadRequest(format!("account: {e}")))?;
        let path = self.facility.tenants.get(account).path.clone();
        if !who.covers(&path) {
            return Err(ApiErr::Forbidden(format!("token '{}' may not submit to account '{path}'", who.name)));
        }
        self.exec.admits(&path).map_err(|e| ApiErr::BadRequest(format!("account: {e}")))?;
        if req.gpus == 0 {
            return bad("gpus: must be at least 1".into());
        }
        let gpu_type = match &req.gpu_type {
            Some(t) => Some(
                self.facility
                    .gpu_type_id(t)
                    .ok_or_else(|| ApiErr::BadRequest(format!("gpu_type: unknown GPU type '{t}'")))?,
            ),
            None => None,
        };
        let max = self.facility.max_gang(gpu_type);
        if u64::from(req.gpus) > max {
            return bad(format!("gpus: {} is more than the facility holds in one pool ({max})", req.gpus));
        }
        let walltime = req.walltime.secs("walltime")?;
        if walltime == 0 || walltime > MAX_WALLTIME_S {
            return bad(format!("walltime: {walltime} s is not between 1 s and {MAX_WALLTIME_S} s (366 days)"));
        }
        let bounded = |d: &Option<Dur>, field: &str| -> Result<Option<u64>, ApiErr> {
            match d.as_ref().map(|d| d.secs(field)).transpose()? {
                Some(v) if v == 0 || v > MAX_WALLTIME_S => Err(ApiErr::BadRequest(format!(
                    "{field}: {v} s is not between 1 s and {MAX_WALLTIME_S} s (366 days)"
                ))),
                v => Ok(v),
            }
        };
        let checkpoint_interval_s = bounded(&req.checkpoint_interval, "checkpoint_interval")?;
        let simulated_runtime_s = bounded(&req.simulated_runtime, "simulated_runtime")?;
        for (field, t) in [("earliest_start", req.earliest_start), ("deadline", req.deadline)] {
            if t.is_some_and(|t| t > now.0.saturating_add(MAX_AHEAD_S)) {
                return bad(format!("{field}: {} is more than 10 years ahead (Unix seconds expected)", t.unwrap_or(0)));
            }
        }
        let qos = req.qos.clone().unwrap_or_else(|| "normal".into());
        qos.parse::<Qos>().map_err(|e| ApiErr::BadRequest(format!("qos: {e}")))?;
        let name = req.name.clone().unwrap_or_else(|| req.command[0].rsplit('/').next().unwrap_or("job").to_string());
        if name.len() > 200 {
            return bad("name: longer than 200 characters".into());
        }
        Ok(JobRecord {
            id: 0,
            name,
            account: path,
            gpus: req.gpus,
            gpu_type: req.gpu_type.as_ref().map(|_| self.facility.gpu(gpu_type.expect("checked")).name.clone()),
            walltime_s: walltime,
            qos,
            preemptible: req.preemptible.unwrap_or(false),
            checkpoint_interval_s,
            earliest_start: req.earliest_start,
            deadline: req.deadline,
            command: req.command.clone(),
            simulated_runtime_s,
            submitter: who.name.clone(),
            state: JobStatus::Pending,
            submit_time: now.0,
            start_time: None,
            end_time: None,
            exit_code: None,
            signal: None,
            pid: None,
            allocation: None,
            reason: None,
        })
    }

    /// Validates, commits in one transaction (durable before anyone is answered), then queues.
    fn submit_batch(&mut self, batch: Vec<(Identity, Box<SubmitRequest>, Reply<JobRecord>)>) {
        let now = self.clock.now();
        let mut ok: Vec<(JobRecord, Reply<JobRecord>)> = Vec::new();
        for (who, req, reply) in batch {
            match self.validate(&who, &req, now) {
                Ok(rec) => ok.push((rec, reply)),
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            }
        }
        if ok.is_empty() {
            return;
        }
        let recs: Vec<JobRecord> = ok.iter().map(|(r, _)| r.clone()).collect();
        match self.store.insert_jobs(&recs) {
            Ok(ids) => {
                let mut changed = Vec::new();
                for ((mut rec, reply), id) in ok.into_iter().zip(ids) {
                    rec.id = id;
                    self.enqueue(&mut rec, &mut changed);
                    self.metrics.submissions.inc();
                    let _ = reply.send(Ok(rec.clone()));
                    self.jobs.insert(id, rec);
                }
                if !changed.is_empty() {
                    let recs: Vec<&JobRecord> = changed.iter().filter_map(|id| self.jobs.get(id)).collect();
                    if let Err(e) = self.store.update_jobs(recs) {
                        tracing::error!(error = %e, "recording unschedulable jobs");
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "store refused submissions");
                for (_, reply) in ok {
                    let _ = reply.send(Err(ApiErr::Internal(format!("store: {e}"))));
                }
            }
        }
    }

    fn list(&self, who: &Identity, f: &ListFilter) -> Result<Vec<JobRecord>, ApiErr> {
        let state = match &f.state {
            Some(s) if s == "active" => None,
            Some(s) => {
                Some(JobStatus::parse(s).ok_or_else(|| ApiErr::BadRequest(format!("state: unknown state '{s}'")))?)
            }
            None => None,
        };
        let active_only = f.state.as_deref() == Some("active");
        let limit = f.limit.unwrap_or(1000).min(100_000);
        Ok(self
            .jobs
            .values()
            .rev()
            .filter(|j| who.covers(&j.account))
            .filter(|j| state.is_none_or(|s| j.state == s))
            .filter(|j| !active_only || !j.state.is_final())
            .filter(|j| f.account.as_ref().is_none_or(|a| &j.account == a || j.account.starts_with(&format!("{a}/"))))
            .take(limit)
            .cloned()
            .collect())
    }

    fn cancel(&mut self, who: &Identity, id: i64) -> Result<JobRecord, ApiErr> {
        let state = self.visible(who, id)?.state;
        let now = self.clock.now();
        match state {
            JobStatus::Pending => {
                if let Some(&jid) = self.to_sched.get(&id) {
                    self.sched.cancel(jid, now).map_err(|e| ApiErr::Internal(e.to_string()))?;
                }
                let rec = self.jobs.get_mut(&id).expect("visible");
                finish_record(rec, JobStatus::Cancelled, now, None, Some(format!("cancelled by {}", who.name)));
                let rec = rec.clone();
                self.store.update_jobs([&rec]).map_err(|e| ApiErr::Internal(format!("store: {e}")))?;
                Ok(rec)
            }
            JobStatus::Running | JobStatus::Starting => {
                if !self.terminating.contains_key(&id) {
                    self.exec.signal(id, false);
                    self.terminating.insert(
                        id,
                        Term {
                            status: JobStatus::Cancelled,
                            kill_at: now + Secs(self.cfg.kill_grace_s),
                            killed: false,
                        },
                    );
                }
                let rec = self.jobs.get_mut(&id).expect("visible");
                rec.reason = Some(format!("cancelling (requested by {})", who.name));
                Ok(rec.clone())
            }
            s => Err(ApiErr::Conflict(format!("job {id} has already ended ({})", s.as_str()))),
        }
    }

    fn why(&self, who: &Identity, id: i64) -> Result<WhyView, ApiErr> {
        let rec = self.visible(who, id)?;
        let detail =
            self.to_sched.get(&id).filter(|_| !rec.state.is_final()).and_then(|&jid| self.sched.explain(jid).ok());
        let mut reasons: Vec<String> = match &detail {
            Some(d) => d.reasons.iter().map(|r| r.describe(&|t: SimTime| t.unix_utc())).collect(),
            None => vec![format!("{}", rec.state.as_str())],
        };
        if let Some(r) = &rec.reason {
            reasons.push(r.clone());
        }
        Ok(WhyView { job: id, state: rec.state, reasons, detail })
    }

    fn accounts(&self, who: &Identity) -> Vec<AccountView> {
        let now = self.clock.now();
        let mut pending: HashMap<&str, u64> = HashMap::new();
        for j in self.jobs.values().filter(|j| j.state == JobStatus::Pending) {
            *pending.entry(j.account.as_str()).or_default() += 1;
        }
        let mut running: HashMap<&str, u64> = HashMap::new();
        for id in &self.running {
            let j = &self.jobs[id];
            *running.entry(j.account.as_str()).or_default() += u64::from(j.gpus);
        }
        // IT kWh per leaf account, from the jobs' runs so far
        let mut kwh: HashMap<&str, f64> = HashMap::new();
        for j in self.jobs.values() {
            let (Some(start), Some(alloc)) = (j.start_time, j.allocation.as_ref()) else { continue };
            let Some(&(d, _)) = alloc.parts.first() else { continue };
            let end = j.end_time.unwrap_or(now.0).max(start);
            let f = &self.facility;
            let w = f.gpu(f.pools[f.domains[d as usize].pool.idx()].gpu_type).average_it_power_w(1.0);
            *kwh.entry(j.account.as_str()).or_default() += f64::from(j.gpus) * w * (end - start) as f64 / 3.6e6;
        }
        let zone = fabrik_model::grid::find(&self.cfg.zone).expect("checked at start");
        let (pue, g, price) = (self.cfg.pue, zone.gco2_per_kwh, zone.price_eur_per_mwh);
        let t = &self.facility.tenants;
        let usage = self.sched.usage();
        t.iter()
            .skip(1)
            .filter(|(_, a)| {
                who.covers(&a.path)
                    || who.account.as_ref().is_some_and(|mine| mine.starts_with(&format!("{}/", a.path)))
            })
            .map(|(_, a)| {
                let within = |k: &str| k == a.path || k.starts_with(&format!("{}/", a.path));
                let sub = |m: &HashMap<&str, u64>| -> u64 { m.iter().filter(|(k, _)| within(k)).map(|(_, v)| v).sum() };
                let it_kwh: f64 = kwh.iter().filter(|(k, _)| within(k)).map(|(_, v)| v).sum();
                let leaves: Vec<_> = t
                    .leaves()
                    .filter(|(_, l)| l.path == a.path || l.path.starts_with(&format!("{}/", a.path)))
                    .collect();
                AccountView {
                    account: a.path.clone(),
                    leaf: a.is_leaf(),
                    shares: a.shares,
                    entitled_share: a.norm_share,
                    usage_share: leaves.iter().map(|(l, _)| usage.usage_share(*l)).sum(),
                    gpu_hours: leaves.iter().map(|(l, _)| usage.gpu_seconds(*l, now)).sum::<f64>() / 3600.0,
                    running_gpus: sub(&running),
                    pending_jobs: sub(&pending),
                    it_kwh,
                    emissions_kg: it_kwh * pue * g / 1000.0,
                    cost_eur: it_kwh * pue * price / 1000.0,
                }
            })
            .collect()
    }

    fn add_account(&mut self, who: &Identity, path: &str, shares: f64) -> Result<AccountView, ApiErr> {
        if who.role != Role::Admin {
            return Err(ApiErr::Forbidden("only admins create accounts".into()));
        }
        if !(shares.is_finite() && shares > 0.0) {
            return Err(ApiErr::BadRequest("shares: must be a positive number".into()));
        }
        let mut accounts = self.store.accounts().map_err(|e| ApiErr::Internal(e.to_string()))?;
        match accounts.iter_mut().find(|(p, _)| p == path) {
            Some(a) => a.1 = shares,
            None => accounts.push((path.trim_matches('/').to_string(), shares)),
        }
        let tree = tree_from(&accounts, &self.facility.tenants).map_err(ApiErr::BadRequest)?;
        self.sched.update_tenants(tree.clone()).map_err(|e| ApiErr::BadRequest(e.to_string()))?;
        self.store.add_account(path.trim_matches('/'), shares).map_err(|e| ApiErr::Internal(e.to_string()))?;
        self.facility.tenants = tree;
        self.accounts(who)
            .into_iter()
            .find(|a| a.account == path.trim_matches('/'))
            .ok_or_else(|| ApiErr::Internal("account vanished".into()))
    }

    fn create_token(&mut self, who: &Identity, t: NewToken) -> Result<String, ApiErr> {
        let NewToken { name, account, role, expires_in } = t;
        if name.trim().is_empty() || name.len() > 200 {
            return Err(ApiErr::BadRequest("name: must be 1 to 200 characters".into()));
        }
        if expires_in.is_some_and(|e| e == 0 || e > MAX_AHEAD_S) {
            return Err(ApiErr::BadRequest(format!("expires_in: must be between 1 s and {MAX_AHEAD_S} s")));
        }
        let allowed = match who.role {
            Role::Admin => true,
            Role::Manager => role != Role::Admin && account.as_ref().is_some_and(|a| who.covers(a)),
            Role::User => false,
        };
        if !allowed {
            return Err(ApiErr::Forbidden(format!("token '{}' may not create this token", who.name)));
        }
        match (&account, role) {
            (None, Role::Admin) => {}
            (None, _) => return Err(ApiErr::BadRequest("account: required for user and manager tokens".into())),
            (Some(a), _) => {
                let id = self.facility.tenants.iter().find(|(_, x)| &x.path == a).map(|(id, _)| id);
                match id {
                    None => return Err(ApiErr::BadRequest(format!("account: unknown account '{a}'"))),
                    Some(id) if role == Role::User && !self.facility.tenants.get(id).is_leaf() => {
                        return Err(ApiErr::BadRequest(format!(
                            "account: user tokens bind to a project; '{a}' has sub-accounts"
                        )))
                    }
                    _ => {}
                }
            }
        }
        let now = self.clock.now().0;
        self.store
            .create_token_expiring(&name, account.as_deref(), role, now, expires_in.map(|e| now.saturating_add(e)))
            .map_err(|e| ApiErr::Internal(e.to_string()))
    }

    /// Tokens an identity may manage: admins all, managers those bound inside their subtree.
    fn manages(who: &Identity, t: &TokenInfo) -> bool {
        match who.role {
            Role::Admin => true,
            Role::Manager => t.account.as_ref().is_some_and(|a| who.covers(a)),
            Role::User => false,
        }
    }

    fn tokens(&self, who: &Identity) -> Result<Vec<TokenInfo>, ApiErr> {
        if who.role == Role::User {
            return Err(ApiErr::Forbidden("user tokens cannot list tokens".into()));
        }
        let all = self.store.tokens().map_err(|e| ApiErr::Internal(e.to_string()))?;
        Ok(all.into_iter().filter(|t| Self::manages(who, t)).collect())
    }

    fn revoke_token(&mut self, who: &Identity, id: i64) -> Result<TokenInfo, ApiErr> {
        let all = self.store.tokens().map_err(|e| ApiErr::Internal(e.to_string()))?;
        let mut t = all
            .into_iter()
            .find(|t| t.id == id && Self::manages(who, t))
            .ok_or_else(|| ApiErr::NotFound(format!("token {id} not found")))?;
        self.store.revoke_token(id).map_err(|e| ApiErr::Internal(format!("store: {e}")))?;
        t.revoked = true;
        tracing::info!(token = id, by = %who.name, "token revoked");
        Ok(t)
    }

    fn facility_view(&self) -> FacilityView {
        let c = self.sched.cluster();
        let f = &self.facility;
        let groups: Vec<GroupView> = f
            .groups
            .iter()
            .enumerate()
            .map(|(i, g)| {
                let total = f.group_gpus(fabrik_model::GroupId(i as u32));
                GroupView {
                    group: i as u32,
                    hall: f.halls[g.hall.idx()].clone(),
                    gpu_type: f.gpu(f.pools[g.pool.idx()].gpu_type).name.clone(),
                    gpus: total,
                    busy: total - c.group_free(fabrik_model::GroupId(i as u32)),
                }
            })
            .collect();
        let it_power_w = self.sched.it_power_w();
        FacilityView {
            name: f.name.clone(),
            executor: self.exec.name().to_string(),
            gpus: c.total_gpus(),
            busy_gpus: self.sched.busy_gpus(),
            pending_jobs: self.sched.pending().len() as u64,
            running_jobs: self.running.len() as u64,
            it_power_w,
            facility_power_w: self.sched.facility_power_w(self.clock.now()),
            power_cap_w: self.cfg.power_cap_mw.map(|c| c * 1e6),
            groups,
            now: self.clock.now().0,
            announcement: self.exec.announcement(),
        }
    }

    fn dashboard(&self, who: &Identity) -> DashboardView {
        let queue = self
            .sched
            .pending()
            .iter()
            .take(200)
            .filter_map(|jid| self.jobs.get(&self.from_sched[jid.idx()]))
            .filter(|j| who.covers(&j.account))
            .map(|j| (j.clone(), self.why(who, j.id).map(|w| w.reasons.join("; ")).unwrap_or_default()))
            .collect();
        let running = self
            .running
            .iter()
            .rev()
            .take(200)
            .map(|id| &self.jobs[id])
            .filter(|j| who.covers(&j.account))
            .cloned()
            .collect();
        let mut class_shares = BTreeMap::new();
        for (_, a) in self.facility.tenants.leaves() {
            *class_shares.entry(a.class().to_string()).or_insert(0.0) += a.norm_share;
        }
        DashboardView {
            facility: self.facility_view(),
            queue,
            running,
            accounts: self.accounts(who),
            class_shares,
            history: self.history.iter().cloned().collect(),
        }
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
        for (d, down) in self.exec.node_changes(now) {
            match down {
                Some(reason) => self.take_out(d, &reason, now, &mut changed),
                None => {
                    let _ = self.sched.repair_domain(d);
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
            self.exec.signal(id, false);
            self.terminating.insert(
                id,
                Term { status: JobStatus::Timeout, kill_at: now + Secs(self.cfg.kill_grace_s), killed: false },
            );
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
            self.update_metrics();
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
        self.update_metrics();
    }

    /// A started job is back in the queue (preempted, its node failed, never started): its
    /// record says so and its devices are free.
    fn requeue_record(&mut self, id: i64, reason: String) {
        self.running.remove(&id);
        self.terminating.remove(&id);
        let Some(rec) = self.jobs.get_mut(&id) else { return };
        let devs = rec.allocation.take().map(|a| a.devices).unwrap_or_default();
        rec.state = JobStatus::Pending;
        rec.start_time = None;
        rec.pid = None;
        rec.reason = Some(reason);
        self.release_devices(&devs);
    }

    /// A domain leaves service: its jobs stop and go back to the queue.
    fn take_out(&mut self, d: DomainId, reason: &str, now: SimTime, changed: &mut Vec<i64>) {
        if self.sched.fail_domain(d, now).is_err() {
            return;
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
            .ok_or_else(|| ApiErr::NotFound(format!("node '{node}' not found")))?;
        let name = names.get(d).cloned().unwrap_or_else(|| d.to_string());
        let dom = DomainId(d as u32);
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
                self.exec.drain(dom, "", true).map_err(|e| ApiErr::Internal(format!("resuming {name}: {e}")))?;
                let _ = self.sched.repair_domain(dom);
            }
        }
        Ok(NodeView { node: name, domain: d as u32, in_service: reason.is_none() })
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

    fn crash_point(&self, p: CrashPoint) {
        if self.cfg.faults.crash_at == Some(p) {
            // Dies like a SIGKILL would: no write, no clean-up after this point. (A panic in
            // this thread drops the store connection, which rolls back nothing committed.)
            panic!("injected crash at {p:?}");
        }
    }

    /// Commit first, act second: starts are committed as `starting` before any process is
    /// spawned; if the store refuses, nothing is spawned and the jobs go back to the queue. A
    /// crash in between leaves jobs "starting", which recovery resolves from the executor's
    /// traces (a process found by its name in /proc is re-adopted, never started twice).
    fn start_jobs(&mut self, started: &[JobId], now: SimTime) {
        let ids: Vec<i64> = started.iter().map(|j| self.from_sched[j.idx()]).collect();
        for (&jid, &id) in started.iter().zip(&ids) {
            let parts = self.sched.job(jid).parts.clone();
            let devices = self.assign_devices(&parts);
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
                self.release_devices(&devs);
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
                    self.running.insert(id);
                    tracing::info!(job = id, pid = ?pid, "started");
                }
                Err(e) => {
                    tracing::warn!(job = id, error = %e, "start failed");
                    finish_record(rec, JobStatus::Failed, now, None, Some(format!("start failed: {e}")));
                    let devs = rec.allocation.as_ref().map(|a| a.devices.clone()).unwrap_or_default();
                    let _ = self.sched.finish(jid, now);
                    self.release_devices(&devs);
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
        let term = self.terminating.remove(&id).map(|t| t.status);
        if let Some(&jid) = self.to_sched.get(&id) {
            if self.sched.job(jid).state == JobState::Running {
                let _ = self.sched.finish(jid, now);
            }
        }
        let (status, reason) = status_of(exit, term);
        let rec = self.jobs.get_mut(&id).expect("running job is known");
        finish_record(rec, status, now, Some(exit), reason);
        let devs = rec.allocation.as_ref().map(|a| a.devices.clone()).unwrap_or_default();
        self.release_devices(&devs);
        tracing::info!(job = id, state = status.as_str(), "ended");
        true
    }

    fn sample(&mut self, now: SimTime) {
        if now.0 < self.last_sample + 60 && !self.history.is_empty() {
            return;
        }
        self.last_sample = now.0;
        let mut by_class: BTreeMap<String, u64> = BTreeMap::new();
        for id in &self.running {
            let j = &self.jobs[id];
            *by_class.entry(j.account.split('/').next().unwrap_or("").to_string()).or_default() += u64::from(j.gpus);
        }
        self.history.push_back(Sample { t: now.0, by_class });
        if self.history.len() > 720 {
            self.history.pop_front();
        }
    }

    fn update_metrics(&self) {
        let m = &self.metrics;
        let mut counts: HashMap<JobStatus, i64> = HashMap::new();
        for j in self.jobs.values() {
            *counts.entry(j.state).or_default() += 1;
        }
        for s in JobStatus::ALL {
            m.jobs
                .get_or_create(&crate::metrics::StateLabel { state: s.as_str().to_string() })
                .set(counts.get(&s).copied().unwrap_or(0));
        }
        let busy = self.sched.busy_gpus() as i64;
        m.gpus.get_or_create(&crate::metrics::StateLabel { state: "allocated".into() }).set(busy);
        m.gpus
            .get_or_create(&crate::metrics::StateLabel { state: "free".into() })
            .set(self.sched.cluster().total_gpus() as i64 - busy);
        let mut q: BTreeMap<&str, i64> = BTreeMap::new();
        for jid in self.sched.pending() {
            *q.entry(self.jobs[&self.from_sched[jid.idx()]].account.as_str()).or_default() += 1;
        }
        for (_, a) in self.facility.tenants.leaves() {
            m.queue
                .get_or_create(&crate::metrics::AccountLabel { account: a.path.clone() })
                .set(q.get(a.path.as_str()).copied().unwrap_or(0));
        }
        m.it_power_w.set(self.facility_view().it_power_w);
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

fn finish_record(rec: &mut JobRecord, status: JobStatus, now: SimTime, exit: Option<Exit>, reason: Option<String>) {
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

//! Views: what the API shows of the engine's state — job lists, why a job waits, accounts
//! with their usage and energy, the facility, the dashboard and its history, and the metrics.

use super::requests::{ApiErr, ListFilter};
use super::Engine;
use crate::store::{Identity, JobRecord, JobStatus};
use fabrik_model::SimTime;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

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

/// A node left or came back into service.
#[derive(Debug, Clone, Serialize)]
pub struct NodeEvent {
    pub at: u64,
    pub node: String,
    pub what: String,
}

/// One node (domain) of the facility, as `fabrik nodes` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct NodeRow {
    pub node: String,
    pub domain: u32,
    pub group: u32,
    pub hall: String,
    pub gpu_type: String,
    pub gpus: u32,
    pub busy: u32,
    /// in service, draining (cordoned, its jobs moving off), or out (failed, drained).
    pub state: String,
    pub reason: Option<String>,
    /// Jobs on it (those the caller may see).
    pub jobs: Vec<i64>,
    /// The health detector's view, with a telemetry input.
    pub health: Option<super::NodeHealth>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodesView {
    pub telemetry: Option<super::TelemetryView>,
    pub nodes: Vec<NodeRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub t: u64,
    /// Busy GPUs per tenant class, by class name.
    pub by_class: BTreeMap<String, u64>,
    /// Facility power (IT × PUE) and the cap then, W.
    pub facility_w: f64,
    pub cap_w: Option<f64>,
    /// GPUs out of service, and GPUs the queue asks for.
    pub down_gpus: u64,
    pub pending_gpus: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DashboardView {
    pub facility: FacilityView,
    pub queue: Vec<(JobRecord, String)>,
    pub running: Vec<JobRecord>,
    pub accounts: Vec<AccountView>,
    pub class_shares: BTreeMap<String, f64>,
    pub history: Vec<Sample>,
    /// The last forecast's P50 and P90 start (Unix seconds) per queued job shown.
    pub forecast: BTreeMap<i64, (u64, u64)>,
    /// Nodes out of service, draining or suspected by the health detector (at most 200), and
    /// the telemetry input's state.
    pub problem_nodes: Vec<NodeRow>,
    pub telemetry: Option<super::TelemetryView>,
    /// Who is looking: an admin sees every tenant, others their own account's jobs.
    pub viewer: Identity,
    /// Domains out of service per leaf group (for the map).
    pub group_down: Vec<u32>,
    /// Recent failures, drains and returns, newest first (at most 20).
    pub node_events: Vec<NodeEvent>,
}

impl Engine {
    /// A page of jobs, newest first, and the cursor of the next page when this one is full.
    pub(super) fn list(&self, who: &Identity, f: &ListFilter) -> Result<(Vec<JobRecord>, Option<i64>), ApiErr> {
        let state = match &f.state {
            Some(s) if s == "active" => None,
            Some(s) => {
                Some(JobStatus::parse(s).ok_or_else(|| ApiErr::BadRequest(format!("state: unknown state '{s}'")))?)
            }
            None => None,
        };
        let active_only = f.state.as_deref() == Some("active");
        let limit = f.limit.unwrap_or(1000).clamp(1, 100_000);
        let page: Vec<JobRecord> = self
            .jobs
            .range(..f.before.unwrap_or(i64::MAX))
            .rev()
            .map(|(_, j)| j)
            .filter(|j| who.covers(&j.account))
            .filter(|j| state.is_none_or(|s| j.state == s))
            .filter(|j| !active_only || !j.state.is_final())
            .filter(|j| f.account.as_ref().is_none_or(|a| &j.account == a || j.account.starts_with(&format!("{a}/"))))
            .take(limit)
            .cloned()
            .collect();
        let next = (page.len() == limit).then(|| page.last().map(|j| j.id)).flatten();
        Ok((page, next))
    }

    pub(super) fn why(&self, who: &Identity, id: i64) -> Result<WhyView, ApiErr> {
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

    pub(super) fn accounts(&self, who: &Identity) -> Vec<AccountView> {
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

    pub(super) fn facility_view(&self) -> FacilityView {
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

    pub(super) fn nodes_view(&self, who: &Identity) -> NodesView {
        let f = &self.facility;
        let c = self.sched.cluster();
        let nodes = (0..f.domains.len())
            .map(|i| {
                let d = fabrik_model::DomainId(i as u32);
                let dom = &f.domains[i];
                let g = &f.groups[dom.group.idx()];
                let state = if self.sched.is_cordoned(d) {
                    "draining"
                } else if c.is_down(d) {
                    "out"
                } else {
                    "in service"
                };
                let jobs = self
                    .sched
                    .jobs_on(d)
                    .into_iter()
                    .map(|j| self.from_sched[j.idx()])
                    .filter(|id| self.visible(who, *id).is_ok())
                    .collect();
                NodeRow {
                    node: fabrik_model::telemetry::hostname_of(f, d),
                    domain: d.0,
                    group: dom.group.0,
                    hall: f.halls[g.hall.idx()].clone(),
                    gpu_type: f.gpu(f.pools[dom.pool.idx()].gpu_type).name.clone(),
                    gpus: f.domain_gpus(d),
                    busy: if c.is_down(d) { 0 } else { f.domain_gpus(d) - c.domain_free(d) },
                    state: state.into(),
                    reason: self.down_reason.get(&d).cloned().filter(|_| state != "in service"),
                    jobs,
                    health: self.health.as_ref().map(|h| h.nodes[i].clone()),
                }
            })
            .collect();
        NodesView { telemetry: self.telemetry_view(who), nodes }
    }

    pub(super) fn dashboard(&self, who: &Identity) -> DashboardView {
        let queue: Vec<(JobRecord, String)> = self
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
        let fc = self.forecaster.as_ref().and_then(|f| f.latest());
        let forecast = fc
            .map(|fc| {
                let shown: std::collections::BTreeSet<i64> = queue.iter().map(|(j, _)| j.id).collect();
                fc.jobs
                    .iter()
                    .filter_map(|j| j.key.filter(|k| shown.contains(k)).map(|k| (k, (j.p50_start, j.p90_start))))
                    .collect()
            })
            .unwrap_or_default();
        let nodes = self.nodes_view(who);
        let problem_nodes = nodes
            .nodes
            .into_iter()
            .filter(|n| n.state != "in service" || n.health.as_ref().is_some_and(|h| h.suspect))
            .take(200)
            .collect();
        let c = self.sched.cluster();
        let mut group_down = vec![0u32; self.facility.groups.len()];
        for (d, dom) in self.facility.domains.iter().enumerate() {
            if c.is_down(fabrik_model::DomainId(d as u32)) {
                group_down[dom.group.idx()] += 1;
            }
        }
        DashboardView {
            node_events: self.node_events.iter().rev().take(20).cloned().collect(),
            viewer: who.clone(),
            group_down,
            problem_nodes,
            telemetry: nodes.telemetry,
            facility: self.facility_view(),
            forecast,
            queue,
            running,
            accounts: self.accounts(who),
            class_shares,
            // the stored minutes, and now
            history: self
                .history
                .iter()
                .cloned()
                .chain(std::iter::once(self.current_sample(self.clock.now())))
                .collect(),
        }
    }

    pub(super) fn sample(&mut self, now: SimTime) {
        if now.0 < self.last_sample + 60 && !self.history.is_empty() {
            return;
        }
        self.last_sample = now.0;
        let s = self.current_sample(now);
        self.history.push_back(s);
        if self.history.len() > 720 {
            self.history.pop_front();
        }
    }

    /// The facility now, as one point of the dashboard's history.
    fn current_sample(&self, now: SimTime) -> Sample {
        let mut by_class: BTreeMap<String, u64> = BTreeMap::new();
        for id in &self.running {
            let j = &self.jobs[id];
            *by_class.entry(j.account.split('/').next().unwrap_or("").to_string()).or_default() += u64::from(j.gpus);
        }
        let pending_gpus = self.sched.pending().iter().map(|j| u64::from(self.sched.job(*j).spec.gpus)).sum();
        Sample {
            t: now.0,
            by_class,
            facility_w: self.sched.facility_power_w(now),
            cap_w: self.cfg.power_cap_mw.map(|c| c * 1e6),
            down_gpus: self.sched.cluster().down_gpus(),
            pending_gpus,
        }
    }

    pub(super) fn update_metrics(&self) {
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
        let fv = self.facility_view();
        m.it_power_w.set(fv.it_power_w);
        m.facility_power_w.set(fv.facility_power_w);
        m.power_cap_w.set(fv.power_cap_w.unwrap_or(0.0));
        let mut gpus: BTreeMap<&str, i64> = BTreeMap::new();
        for id in &self.running {
            let j = &self.jobs[id];
            *gpus.entry(j.account.as_str()).or_default() += i64::from(j.gpus);
        }
        for (_, a) in self.facility.tenants.leaves() {
            m.account_gpus
                .get_or_create(&crate::metrics::AccountLabel { account: a.path.clone() })
                .set(gpus.get(a.path.as_str()).copied().unwrap_or(0));
        }
    }
}

impl Engine {
    /// The brain's state now, with the server's job ids as keys, the simulated executor's
    /// runtimes where jobs have them, and the power cap and PUE in force (admins only: it shows
    /// every tenant's jobs).
    pub(super) fn snapshot(&self, who: &Identity) -> Result<Box<fabrik_sched::Snapshot>, ApiErr> {
        if who.role != crate::store::Role::Admin {
            return Err(ApiErr::Forbidden("only admins take snapshots".into()));
        }
        Ok(Box::new(self.brain_snapshot(true)))
    }

    /// The brain's state now with the server's job ids, the power cap and PUE in force, and
    /// (`runtimes`) the simulated executor's runtimes — a forecast must not see those.
    pub(super) fn brain_snapshot(&self, runtimes: bool) -> fabrik_sched::Snapshot {
        let key = |id: fabrik_model::JobId| self.from_sched.get(id.idx()).copied();
        let runtime = |id: fabrik_model::JobId| {
            key(id).and_then(|k| self.jobs.get(&k)).and_then(|r| r.simulated_runtime_s).filter(|_| runtimes)
        };
        let mut s = self.sched.snapshot(&self.facility, self.clock.now(), self.epoch, key, runtime);
        s.power_cap_mw = self.cfg.power_cap_mw;
        s.pue = Some(self.cfg.pue);
        s
    }
}

/// A pending job's forecast start, as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct JobForecastView {
    pub id: i64,
    pub name: String,
    pub account: String,
    /// Unix seconds.
    pub p50_start: u64,
    pub p90_start: u64,
    /// Why it waits now.
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ForecastView {
    /// When the forecast's snapshot was taken (Unix seconds), its twin runs and their wall time.
    pub at: u64,
    pub runs: usize,
    pub elapsed_ms: u64,
    /// Completed jobs the runtime model learned from.
    pub model_jobs: usize,
    pub jobs: Vec<JobForecastView>,
}

impl Engine {
    /// The last forecast, for the pending jobs `who` may see (or only `job`).
    pub(super) fn forecast_view(&self, who: &Identity, job: Option<i64>) -> Result<ForecastView, ApiErr> {
        if let Some(id) = job {
            self.visible(who, id)?;
        }
        let none =
            || ApiErr::NotFound("no forecast yet: one is made within the forecast interval while jobs wait".into());
        let fc = self.forecaster.as_ref().and_then(|f| f.latest()).ok_or_else(none)?;
        let jobs: Vec<JobForecastView> = fc
            .jobs
            .iter()
            .filter_map(|j| {
                let id = j.key?;
                let rec = self.jobs.get(&id)?;
                let wanted =
                    job.is_none_or(|k| k == id) && rec.state == JobStatus::Pending && self.visible(who, id).is_ok();
                wanted.then(|| JobForecastView {
                    id,
                    name: rec.name.clone(),
                    account: rec.account.clone(),
                    p50_start: j.p50_start,
                    p90_start: j.p90_start,
                    reason: self.why(who, id).ok().and_then(|w| w.reasons.into_iter().next()),
                })
            })
            .collect();
        if let (Some(id), true) = (job, jobs.is_empty()) {
            return Err(ApiErr::NotFound(format!(
                "no forecast for job {id}: it is not pending, or it was submitted after the last forecast"
            )));
        }
        Ok(ForecastView { at: fc.at, runs: fc.runs, elapsed_ms: fc.elapsed_ms, model_jobs: fc.model_jobs, jobs })
    }
}

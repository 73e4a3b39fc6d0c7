//! The brain's state as data: what a body needs to continue scheduling where another left off.
//! `fabrik serve` exports it (`GET /v1/snapshot`) and the twin continues from it (`fabrik
//! simulate --from`): the live twin forks the running facility.
//!
//! A snapshot holds the facility's stamp (name, domains, GPUs: the body must load the same
//! facility), the account tree's paths and shares in id order (job specs name accounts by id),
//! the domains out of service, the fair-share usage, when priorities were last recalculated,
//! the running jobs with start and placement, and the queue — pending and deferred jobs with
//! their priority, tier, attained service and deferral count, in submission order. Restoring
//! renumbers jobs (running first, then queued, each in the snapshot's order) and keeps the
//! queue's order (a snapshot without a recalculation on record — one whose policy a body
//! changed — computes priorities anew): the restored brain makes the decisions the exporting one would make next
//! (tested) — placements included, since the free lists' order breaks placement ties and is
//! carried too, and a job the modifier deferred in claim mode with its claim (tested). The EASY
//! reservation is recomputed at the next pass; jobs
//! running inside an advance reservation come back as ordinary running jobs; the `slurm`
//! policy's backfill-cycle clock starts afresh. The body sets the power cap and the modifier.

use super::{JobState, Scheduler};
use crate::fairshare::Usage;
use crate::{SchedConfig, SchedError};
use fabrik_model::{DomainId, Facility, JobId, JobSpec, SimTime};
use serde::{Deserialize, Serialize};

/// The format's version; a reader refuses any other.
pub const SNAPSHOT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FacilityStamp {
    pub name: String,
    pub domains: usize,
    pub gpus: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapAccount {
    pub path: String,
    pub shares: f64,
}

/// A job as the snapshot holds it. `key` is the body's own id for it (the server's job id).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapJob {
    #[serde(default)]
    pub key: Option<i64>,
    pub spec: JobSpec,
    /// Running: when it started and where (domain, GPUs); deferred in claim mode: the GPUs it
    /// claimed.
    #[serde(default)]
    pub start: Option<SimTime>,
    #[serde(default)]
    pub parts: Vec<(u32, u32)>,
    /// Queued: its priority and tier as of the last recalculation.
    #[serde(default)]
    pub priority: f64,
    #[serde(default)]
    pub tier: u8,
    /// Deferred by the energy-aware modifier until then.
    #[serde(default)]
    pub deferred_until: Option<SimTime>,
    #[serde(default)]
    pub attained_gpu_s: f64,
    #[serde(default)]
    pub deferrals: u32,
    #[serde(default)]
    pub preemptions: u32,
    /// How long it will run, where the body knows (the simulated executor's runtimes).
    #[serde(default)]
    pub runtime_s: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    pub version: u32,
    /// When it was taken (the body's clock: Unix seconds live).
    pub at: SimTime,
    pub policy: String,
    /// The brain's settings (a body continuing from the snapshot restores with them).
    #[serde(default)]
    pub config: SchedConfig,
    pub facility: FacilityStamp,
    /// The account tree below the root, in id order.
    pub accounts: Vec<SnapAccount>,
    /// The origin the facility's advance reservation offsets count from.
    pub origin: SimTime,
    pub last_recalc: Option<SimTime>,
    pub out_of_service: Vec<u32>,
    /// The free lists' order (`Cluster::list_order`): domains, then groups.
    pub domain_order: Vec<u32>,
    pub group_order: Vec<u32>,
    pub usage: Usage,
    pub running: Vec<SnapJob>,
    pub queued: Vec<SnapJob>,
    /// What the body had set, for a body continuing from it: the facility power cap (MW) and
    /// the PUE. The brain's `snapshot` leaves them empty.
    #[serde(default)]
    pub power_cap_mw: Option<f64>,
    #[serde(default)]
    pub pue: Option<f64>,
}

/// A queued job's forecast start: P50 and P90 over a forecast's twin runs, on the snapshot's
/// clock (Unix seconds live).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobForecast {
    /// The body's id (the server's job id).
    pub key: Option<i64>,
    pub name: String,
    pub p50_start: u64,
    pub p90_start: u64,
}

/// Start-time forecasts of a snapshot's queue, as data between the bodies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Forecast {
    /// The snapshot's moment.
    pub at: u64,
    pub runs: usize,
    pub elapsed_ms: u64,
    /// Jobs (ended, and running ones as censored) the runtime model learned from.
    pub model_jobs: usize,
    /// Queued jobs, in the snapshot's order.
    pub jobs: Vec<JobForecast>,
}

/// Where the live body meets the twin: the server hands its state over as data and takes the
/// results back through this trait; the twin implements it and the binary composes the two, so
/// neither body imports the other.
pub trait TwinService: Send + Sync + std::fmt::Debug {
    /// Start-time forecasts of the snapshot's queue, learning runtimes and arrivals from
    /// `history` (ended and running jobs).
    fn forecast(
        &self,
        snap: &Snapshot,
        facility: &Facility,
        history: &[fabrik_model::runtime_model::Completed],
    ) -> Result<Forecast, String>;
    /// A what-if asked for as JSON (the twin's request format), answered as JSON; `Err` is the
    /// caller's mistake or an alternative's failure, in words.
    fn whatif(&self, snap: &Snapshot, facility: &Facility, request_json: &str) -> Result<String, String>;
}

impl Snapshot {
    /// The facility's stamp.
    pub fn stamp(f: &Facility) -> FacilityStamp {
        FacilityStamp { name: f.name.clone(), domains: f.domains.len(), gpus: f.total_gpus() }
    }
}

impl Scheduler {
    /// The brain's state at `now`; `key` gives the body's id of a job (or `None`), `runtime`
    /// how long a running or queued job will run where the body knows.
    pub fn snapshot(
        &self,
        facility: &Facility,
        now: SimTime,
        origin: SimTime,
        key: impl Fn(JobId) -> Option<i64>,
        runtime: impl Fn(JobId) -> Option<u64>,
    ) -> Snapshot {
        let mut running = Vec::new();
        let mut queued = Vec::new();
        for (id, j) in self.jobs() {
            let mut s = SnapJob {
                key: key(id),
                spec: j.spec.clone(),
                start: None,
                parts: Vec::new(),
                priority: j.priority,
                tier: j.tier,
                deferred_until: None,
                attained_gpu_s: j.attained,
                deferrals: j.deferrals,
                preemptions: j.preemptions,
                runtime_s: runtime(id),
            };
            match &j.state {
                JobState::Running { start, parts } => {
                    s.start = Some(*start);
                    s.parts = parts.iter().map(|&(d, n)| (d.0, n)).collect();
                    running.push(s);
                }
                JobState::Deferred { until } => {
                    s.deferred_until = Some(*until);
                    if let Some(c) = self.deferrals.claims.iter().find(|c| c.job == id) {
                        s.parts = c.parts.iter().map(|&(d, n)| (d.0, n)).collect();
                    }
                    queued.push(s);
                }
                JobState::Pending => queued.push(s),
                JobState::Ended { .. } => {}
            }
        }
        let (domain_order, group_order) = self.cluster().list_order();
        Snapshot {
            version: SNAPSHOT_VERSION,
            at: now,
            policy: self.policy_name().to_string(),
            config: self.config().clone(),
            facility: Snapshot::stamp(facility),
            accounts: self
                .tenants()
                .iter()
                .skip(1)
                .map(|(_, a)| SnapAccount { path: a.path.clone(), shares: a.shares })
                .collect(),
            origin,
            last_recalc: self.last_recalc,
            out_of_service: (0..self.cluster().domain_count() as u32)
                .filter(|&d| self.cluster().is_down(DomainId(d)))
                // a cordoned node's jobs are still on it: in service for the fork until they leave
                .filter(|&d| !self.is_cordoned(DomainId(d)))
                .collect(),
            domain_order,
            group_order,
            usage: self.usage().clone(),
            running,
            queued,
            power_cap_mw: None,
            pue: None,
        }
    }

    /// The brain a snapshot describes, for `facility` (whose tenant tree must be the
    /// snapshot's: same paths in the same order) under `cfg`. Returns it with the new id of
    /// every snapshot job: running ones first, then queued ones, in the snapshot's order.
    pub fn restore(
        facility: &Facility,
        snap: &Snapshot,
        cfg: SchedConfig,
    ) -> Result<(Scheduler, Vec<JobId>), SchedError> {
        let bad = |m: String| SchedError::Invalid(format!("snapshot: {m}"));
        if snap.version != SNAPSHOT_VERSION {
            return Err(bad(format!("version {} (this fabrik reads {SNAPSHOT_VERSION})", snap.version)));
        }
        let stamp = Snapshot::stamp(facility);
        if stamp != snap.facility {
            return Err(bad(format!(
                "taken on facility '{}' ({} domains, {} GPUs), not '{}' ({} domains, {} GPUs)",
                snap.facility.name, snap.facility.domains, snap.facility.gpus, stamp.name, stamp.domains, stamp.gpus
            )));
        }
        let paths: Vec<&str> = facility.tenants.iter().skip(1).map(|(_, a)| a.path.as_str()).collect();
        let theirs: Vec<&str> = snap.accounts.iter().map(|a| a.path.as_str()).collect();
        if paths != theirs {
            return Err(bad("its accounts are not the facility's tenant tree (paths in id order)".into()));
        }
        snap.usage.check(facility.tenants.len()).map_err(|e| bad(format!("usage: {e}")))?;
        let mut s = Scheduler::for_facility(facility, &snap.policy, cfg, snap.origin)?;
        for &d in &snap.out_of_service {
            if d as usize >= facility.domains.len() {
                return Err(bad(format!("out_of_service: no domain {d}")));
            }
            s.fail_domain(DomainId(d), snap.at)?;
        }
        let mut ids = Vec::with_capacity(snap.running.len() + snap.queued.len());
        for (k, j) in snap.running.iter().enumerate() {
            let start = j.start.ok_or_else(|| bad(format!("running[{k}] ('{}'): no start", j.spec.name)))?;
            if start > snap.at {
                return Err(bad(format!("running[{k}] ('{}'): starts after the snapshot", j.spec.name)));
            }
            let parts: Vec<(DomainId, u32)> = j.parts.iter().map(|&(d, n)| (DomainId(d), n)).collect();
            let id = s.adopt(j.spec.clone(), &parts, start).map_err(|e| bad(format!("running[{k}]: {e}")))?;
            let e = &mut s.jobs[id.idx()];
            (e.attained, e.deferrals, e.preemptions) = (j.attained_gpu_s, j.deferrals, j.preemptions);
            ids.push(id);
        }
        for (k, j) in snap.queued.iter().enumerate() {
            if !j.priority.is_finite() || j.tier > 2 {
                return Err(bad(format!("queued[{k}] ('{}'): priority or tier out of range", j.spec.name)));
            }
            let id = s.submit(j.spec.clone(), snap.at).map_err(|e| bad(format!("queued[{k}]: {e}")))?;
            let e = &mut s.jobs[id.idx()];
            if snap.last_recalc.is_some() {
                // as recalculated then; without a recalculation on record, as submitted now
                (e.priority, e.tier) = (j.priority, j.tier);
            }
            (e.attained, e.deferrals, e.preemptions) = (j.attained_gpu_s, j.deferrals, j.preemptions);
            if let Some(until) = j.deferred_until {
                e.state = JobState::Deferred { until };
                s.pending.retain(|&p| p != id);
                if j.parts.is_empty() {
                    s.deferrals.queued.insert((until, id));
                } else {
                    // claim mode: its claim comes back (claims are hidden only during a pass)
                    let parts: Vec<(DomainId, u32)> = j.parts.iter().map(|&(d, n)| (DomainId(d), n)).collect();
                    let fits = parts.iter().all(|&(d, _)| d.idx() < facility.domains.len());
                    if !fits || parts.iter().map(|p| p.1).sum::<u32>() != j.spec.gpus {
                        return Err(bad(format!("queued[{k}] ('{}'): its claim does not hold its GPUs", j.spec.name)));
                    }
                    let pos = s.deferrals.claims.partition_point(|c| c.at <= until);
                    let claim = super::energy::Claim { job: id, at: until, parts, hidden: Vec::new(), applied: false };
                    s.deferrals.claims.insert(pos, claim);
                }
            }
            ids.push(id);
        }
        // the queue in the snapshot's order of keys (priorities as recalculated then)
        let mut pending = std::mem::take(&mut s.pending);
        pending.sort_by(|&a, &b| s.queue_cmp(a, b));
        s.pending = pending;
        s.cluster.set_list_order(&snap.domain_order, &snap.group_order).map_err(bad)?;
        s.usage = snap.usage.clone();
        s.usage.grow(facility.tenants.len());
        s.last_recalc = snap.last_recalc;
        s.dirty = true;
        Ok((s, ids))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fabrik_model::{AccountId, Secs};
    use std::collections::BTreeMap;

    /// Steps a brain in 50-s steps from `from` to `to`: runs that reached their runtime end
    /// (runtime = half the walltime, by name), `arrivals` are submitted at their time, then a
    /// pass. Returns the names started at each step.
    fn drive(s: &mut Scheduler, from: u64, to: u64, arrivals: &[JobSpec]) -> Vec<(u64, Vec<String>)> {
        let mut log = Vec::new();
        let mut started = Vec::new();
        for t in (from..=to).step_by(50) {
            let now = SimTime(t);
            let ending: Vec<JobId> = s
                .jobs()
                .filter_map(|(id, j)| match &j.state {
                    JobState::Running { start, .. } if start.0 + j.spec.walltime.0 / 2 <= t => Some(id),
                    _ => None,
                })
                .collect();
            for id in ending {
                s.finish(id, now).unwrap();
            }
            for a in arrivals.iter().filter(|a| a.submit == now) {
                s.submit(a.clone(), now).unwrap();
            }
            s.schedule(now, &mut started);
            let names: Vec<String> = started.iter().map(|&id| s.job(id).spec.name.clone()).collect();
            if !names.is_empty() {
                log.push((t, names));
            }
        }
        log
    }

    fn jobs(leaves: &[AccountId], n: u64, first: u64) -> Vec<JobSpec> {
        (0..n)
            .map(|i| {
                let k = first + i;
                let gpus = [1, 8, 16, 4, 32, 2, 24][(k % 7) as usize];
                let mut j = JobSpec::new(
                    format!("j{k}"),
                    leaves[(k * 5 % leaves.len() as u64) as usize],
                    gpus,
                    SimTime(k * 50),
                    Secs(600 + 300 * (k % 9)),
                );
                j.qos = [fabrik_model::Qos::Normal, fabrik_model::Qos::High, fabrik_model::Qos::Low][(k % 3) as usize];
                j
            })
            .collect()
    }

    /// small (128 GPUs), fair-share, one node out: 60 jobs over 3,000 s, snapshot at 3,000 s
    /// (jobs running, queued, usage accrued), through JSON into a new brain; both continue with
    /// the same 30 later arrivals and make the same starts at the same times, and end with the
    /// same queue.
    #[test]
    fn a_restored_brain_makes_the_decisions_the_original_makes_next() {
        for policy in ["fair-share", "fifo-backfill", "las"] {
            let f = Facility::preset("small").unwrap();
            let leaves: Vec<AccountId> = f.tenants.leaves().map(|(id, _)| id).collect();
            let mut a = Scheduler::for_facility(&f, policy, SchedConfig::default(), SimTime(0)).unwrap();
            a.fail_domain(DomainId(5), SimTime(0)).unwrap();
            drive(&mut a, 0, 3000, &jobs(&leaves, 60, 0));
            let snap = a.snapshot(&f, SimTime(3000), SimTime(0), |id| Some(i64::from(id.0) + 100), |_| None);
            assert!(!snap.running.is_empty() && !snap.queued.is_empty(), "{policy}: a scenario with a queue");
            assert_eq!(snap.out_of_service, vec![5]);
            let text = serde_json::to_string(&snap).unwrap();
            let back: Snapshot = serde_json::from_str(&text).unwrap();
            let (mut b, ids) = Scheduler::restore(&f, &back, SchedConfig::default()).unwrap();
            assert_eq!(ids.len(), snap.running.len() + snap.queued.len());
            let names =
                |s: &Scheduler| -> Vec<String> { s.pending().iter().map(|&id| s.job(id).spec.name.clone()).collect() };
            assert_eq!(names(&a), names(&b), "{policy}: the queue's order");
            let later = jobs(&leaves, 30, 61);
            let la = drive(&mut a, 3050, 30_000, &later);
            let lb = drive(&mut b, 3050, 30_000, &later);
            assert!(la.len() > 10, "{policy}: starts after the snapshot");
            assert_eq!(la, lb, "{policy}");
            assert_eq!(names(&a), names(&b));
            let usage = |s: &Scheduler| -> BTreeMap<u32, u64> {
                leaves.iter().map(|&l| (l.0, s.usage().gpu_seconds(l, SimTime(30_000)) as u64)).collect()
            };
            assert_eq!(usage(&a), usage(&b), "{policy}");
        }
    }

    /// tiny (two 8-GPU nodes), fifo-backfill, the modifier in claim mode with hour 1 cleaner:
    /// the flexible job F is deferred to 3,600 s and claims 8 GPUs; A takes the other node; B
    /// (ends by 1,850 s) borrows F's claimed GPUs, C (would end after 3,600 s) may not and waits.
    /// A snapshot at 100 s restored (F deferred with its claim) makes the same starts as the
    /// original: F on its claim at 3,600 s, C after A.
    #[test]
    fn a_claim_comes_back_with_the_deferred_job() {
        let f = Facility::preset("tiny").unwrap();
        let leaf = f.tenants.leaves().next().unwrap().0;
        let modifier = || {
            let sig = fabrik_model::grid::Hourly { values: vec![400.0, 100.0] };
            crate::EnergyAware::new(sig, 48, 0.05, Secs(0), crate::DeferMode::Claim)
        };
        let mut a = Scheduler::for_facility(&f, "fifo-backfill", SchedConfig::default(), SimTime(0)).unwrap();
        a.set_energy_aware(Some(modifier()));
        let mut flex = JobSpec::new("F", leaf, 8, SimTime(0), Secs(3600));
        flex.deadline = Some(SimTime(6 * 3600));
        let arrivals = vec![
            flex,
            JobSpec::new("A", leaf, 8, SimTime(0), Secs(7200)),
            JobSpec::new("B", leaf, 8, SimTime(50), Secs(1800)),
            JobSpec::new("C", leaf, 8, SimTime(100), Secs(3600)),
        ];
        let before = drive(&mut a, 0, 100, &arrivals);
        assert_eq!(before, vec![(0, vec!["A".to_string()]), (50, vec!["B".to_string()])]);
        let snap = a.snapshot(&f, SimTime(100), SimTime(0), |_| None, |_| None);
        let fs = snap.queued.iter().find(|j| j.spec.name == "F").unwrap();
        assert_eq!((fs.deferred_until, fs.parts.iter().map(|p| p.1).sum::<u32>()), (Some(SimTime(3600)), 8));
        let back: Snapshot = serde_json::from_str(&serde_json::to_string(&snap).unwrap()).unwrap();
        let (mut b, _) = Scheduler::restore(&f, &back, SchedConfig::default()).unwrap();
        b.set_energy_aware(Some(modifier()));
        let la = drive(&mut a, 150, 20_000, &[]);
        let lb = drive(&mut b, 150, 20_000, &[]);
        assert_eq!(la, lb);
        // F starts on its claim at its hour; C when A ends (3,600 s: half its walltime)
        assert_eq!(la, vec![(3600, vec!["F".to_string(), "C".to_string()])]);
    }

    #[test]
    fn a_snapshot_of_another_facility_or_version_is_refused_with_the_reason() {
        let f = Facility::preset("small").unwrap();
        let s = Scheduler::for_facility(&f, "fair-share", SchedConfig::default(), SimTime(0)).unwrap();
        let snap = s.snapshot(&f, SimTime(0), SimTime(0), |_| None, |_| None);
        let tiny = Facility::preset("tiny").unwrap();
        let e = Scheduler::restore(&tiny, &snap, SchedConfig::default()).err().unwrap().to_string();
        assert!(e.contains("taken on facility 'small'"), "{e}");
        let mut v2 = snap.clone();
        v2.version = 2;
        let e = Scheduler::restore(&f, &v2, SchedConfig::default()).err().unwrap().to_string();
        assert!(e.contains("version 2"), "{e}");
        let mut bad = snap.clone();
        bad.out_of_service = vec![999];
        let e = Scheduler::restore(&f, &bad, SchedConfig::default()).err().unwrap().to_string();
        assert!(e.contains("no domain 999"), "{e}");
    }
}

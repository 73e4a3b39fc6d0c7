//! Requests and their validation: what an API caller may send the engine, the bounds on it,
//! and how a submission becomes a durable job record.

use super::Engine;
use crate::store::{Identity, JobRecord, JobStatus, Role};
use fabrik_model::units::parse_duration;
use fabrik_model::{Qos, SimTime};
use serde::{Deserialize, Serialize};
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

/// A point in time as Unix seconds or as text: RFC 3339 (`2026-12-04T18:00:00Z`), a date and
/// time read as UTC, `now`, or `now+2h` (see `fabrik_model::units::parse_time`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum When {
    Unix(u64),
    Text(String),
}

impl When {
    pub(super) fn unix(&self, field: &str, now: SimTime) -> Result<u64, ApiErr> {
        match self {
            When::Unix(s) => Ok(*s),
            When::Text(t) => {
                fabrik_model::units::parse_time(t, now.0).map_err(|e| ApiErr::BadRequest(format!("{field}: {e}")))
            }
        }
    }
}

/// A duration as seconds or as text: `90s`, `45m`, `1h 30m`, `1.5d`, Slurm's `2-12:00:00`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Dur {
    Secs(u64),
    Text(String),
}

impl Dur {
    pub(super) fn secs(&self, field: &str) -> Result<u64, ApiErr> {
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
    /// Unix seconds, or a time as text (see `When`).
    pub earliest_start: Option<When>,
    pub deadline: Option<When>,
    /// For the simulated executor: how long the job runs.
    pub simulated_runtime: Option<Dur>,
    /// sbatch's `--dependency`: `afterok:ID[:ID]`, `afterany:ID`, `after:ID`,
    /// `afternotok:ID`, `singleton`, comma-separated, on jobs the submitter may see.
    pub dependency: Option<String>,
    /// sbatch's `--array`: task indices and a throttle, `0-99%8`, `1,3,5-7`, `0-15:4`. Every
    /// task is a job of its own (FABRIK_ARRAY_TASK_ID / SLURM_ARRAY_TASK_ID in its
    /// environment); the answer is the first task, whose id is the array's.
    pub array: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListFilter {
    pub state: Option<String>,
    pub account: Option<String>,
    /// At most this many jobs (default 1,000, at most 100,000), newest first.
    pub limit: Option<usize>,
    /// The cursor: only jobs with a smaller id (the `next` of the previous page).
    pub before: Option<i64>,
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

impl Engine {
    pub(super) fn validate(&self, who: &Identity, req: &SubmitRequest, now: SimTime) -> Result<JobRecord, ApiErr> {
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
        if let (Some(t), 0) = (&req.gpu_type, max) {
            return bad(format!(
                "gpu_type: the facility has no {t} GPUs (it has {})",
                self.facility.gpu_types_present().join(", ")
            ));
        }
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
        let earliest_start = req.earliest_start.as_ref().map(|w| w.unix("earliest_start", now)).transpose()?;
        let deadline = req.deadline.as_ref().map(|w| w.unix("deadline", now)).transpose()?;
        for (field, t) in [("earliest_start", earliest_start), ("deadline", deadline)] {
            if t.is_some_and(|t| t > now.0.saturating_add(MAX_AHEAD_S)) {
                return bad(format!(
                    "{field}: {} is more than 10 years ahead (Unix seconds or a date expected)",
                    t.unwrap_or(0)
                ));
            }
        }
        let qos = req.qos.clone().unwrap_or_else(|| "normal".into());
        qos.parse::<Qos>().map_err(|e| ApiErr::BadRequest(format!("qos: {e}")))?;
        let name = req.name.clone().unwrap_or_else(|| req.command[0].rsplit('/').next().unwrap_or("job").to_string());
        if name.len() > 200 {
            return bad("name: longer than 200 characters".into());
        }
        let dependency = match req.dependency.as_deref().map(str::trim).filter(|d| !d.is_empty()) {
            None => None,
            Some(text) => {
                let d = fabrik_model::DependencySpec::parse(text).map_err(ApiErr::BadRequest)?;
                for (_, on) in &d.on {
                    let id: i64 =
                        on.parse().map_err(|_| ApiErr::BadRequest(format!("dependency: '{on}' is not a job id")))?;
                    let target = self
                        .visible(who, id)
                        .map_err(|_| ApiErr::BadRequest(format!("dependency: job {id} not found")))?;
                    if target.state == JobStatus::Held {
                        return bad(format!("dependency: job {id} is held; release it first"));
                    }
                }
                Some(d.to_text())
            }
        };
        Ok(JobRecord {
            dependency,
            id: 0,
            name,
            account: path,
            gpus: req.gpus,
            gpu_type: req.gpu_type.as_ref().map(|_| self.facility.gpu(gpu_type.expect("checked")).name.clone()),
            walltime_s: walltime,
            qos,
            preemptible: req.preemptible.unwrap_or(false),
            checkpoint_interval_s,
            earliest_start,
            deadline,
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
            array_job_id: None,
            array_task_id: None,
            array_limit: None,
        })
    }

    /// Validates, commits in one transaction (durable before anyone is answered), then queues.
    pub(super) fn submit_batch(&mut self, batch: Vec<(Identity, Box<SubmitRequest>, Reply<JobRecord>)>) {
        let now = self.clock.now();
        // each request's records (one job, or an array's tasks) and its reply
        let mut ok: Vec<(Vec<JobRecord>, Reply<JobRecord>)> = Vec::new();
        for (g, (who, req, reply)) in batch.into_iter().enumerate() {
            let expanded = self.validate(&who, &req, now).and_then(|rec| match req.array.as_deref() {
                None => Ok(vec![rec]),
                Some(text) => {
                    let a = fabrik_model::ArraySpec::parse(text).map_err(ApiErr::BadRequest)?;
                    Ok(a.tasks
                        .iter()
                        .map(|&t| JobRecord {
                            array_job_id: Some(-(g as i64) - 1),
                            array_task_id: Some(t),
                            array_limit: a.limit,
                            ..rec.clone()
                        })
                        .collect())
                }
            });
            match expanded {
                Ok(recs) => ok.push((recs, reply)),
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            }
        }
        if ok.is_empty() {
            return;
        }
        let recs: Vec<JobRecord> = ok.iter().flat_map(|(r, _)| r.iter().cloned()).collect();
        match self.store.insert_jobs(&recs) {
            Ok(ids) => {
                let mut changed = Vec::new();
                let mut ids = ids.into_iter();
                for (recs, reply) in ok {
                    let mut answer = None;
                    let mut array_id = None;
                    for mut rec in recs {
                        rec.id = ids.next().expect("an id per record");
                        if rec.array_task_id.is_some() {
                            rec.array_job_id = Some(*array_id.get_or_insert(rec.id));
                        }
                        self.enqueue(&mut rec, &mut changed);
                        self.metrics.submissions.inc();
                        answer.get_or_insert_with(|| rec.clone());
                        self.jobs.insert(rec.id, rec);
                    }
                    if let Some(a) = answer {
                        let _ = reply.send(Ok(a));
                    }
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
}

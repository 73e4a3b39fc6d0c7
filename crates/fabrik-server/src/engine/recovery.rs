//! Recovery after a restart or crash: the stored jobs rebuild the scheduler, and jobs that
//! were starting or running are reconciled with the executor (re-adopted, ended or queued
//! again, never started twice); plus the crash points the crash-safety tests inject.

use super::{finish_record, launch, status_of, Engine};
use crate::executor::Found;
use crate::store::{JobRecord, JobStatus};
use fabrik_model::{DomainId, SimTime};
use std::sync::Arc;

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

impl Engine {
    pub(super) fn recover(&mut self) -> anyhow::Result<()> {
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
                                        self.devices.take(&a.devices);
                                    }
                                    rec.state = JobStatus::Running;
                                    self.running.insert(rec.id);
                                    tracing::info!(job = rec.id, pid = ?rec.pid, "re-adopted running job");
                                }
                                Err(e) => {
                                    self.exec.signal(rec.id, true);
                                    finish_record(
                                        &self.metrics,
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
                                &self.metrics,
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

    /// A started job is back in the queue (preempted, its node failed, never started): its
    /// record says so and its devices are free.
    pub(super) fn requeue_record(&mut self, id: i64, reason: String) {
        self.running.remove(&id);
        self.terminating.remove(&id);
        let Some(rec) = self.jobs.get_mut(&id) else { return };
        let devs = rec.allocation.take().map(|a| a.devices).unwrap_or_default();
        rec.state = JobStatus::Pending;
        rec.start_time = None;
        rec.pid = None;
        rec.reason = Some(reason);
        self.devices.release(&devs);
    }

    pub(super) fn crash_point(&self, p: CrashPoint) {
        if self.cfg.faults.crash_at == Some(p) {
            // Dies like a SIGKILL would: no write, no clean-up after this point. (A panic in
            // this thread drops the store connection, which rolls back nothing committed.)
            panic!("injected crash at {p:?}");
        }
    }
}

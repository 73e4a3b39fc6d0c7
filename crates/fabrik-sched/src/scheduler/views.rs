//! Read-only views of the brain: accessors, why a job waits (`explain`), and walltime ends.

use super::{JobEntry, JobState, Reservation, SchedConfig, Scheduler};
use crate::cluster::Cluster;
use crate::explain::{Explanation, Reason};
use crate::fairshare::Usage;
use crate::SchedError;
use fabrik_model::{JobId, SimTime, TenantTree};

impl Scheduler {
    pub fn policy_name(&self) -> &'static str {
        self.policy.name()
    }

    pub fn job(&self, id: JobId) -> &JobEntry {
        &self.jobs[id.idx()]
    }

    /// The jobs in the table, in id order: all submitted but those retired.
    pub fn jobs(&self) -> impl Iterator<Item = (JobId, &JobEntry)> {
        self.jobs.iter()
    }

    pub fn pending(&self) -> &[JobId] {
        &self.pending
    }

    /// Flexible jobs held back by the energy-aware modifier (out of `pending` until released).
    pub fn deferred_len(&self) -> usize {
        self.deferrals.queued.len() + self.deferrals.claims.len()
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
        self.easy.reservation
    }

    /// The next time at which a pass could start something without any other event (a pending
    /// job's earliest start).
    pub fn next_wakeup(&self) -> Option<SimTime> {
        self.wakeup
    }

    /// Why is `id` where it is?
    pub fn explain(&self, id: JobId) -> Result<Explanation, SchedError> {
        let job = self.jobs.get(id.idx()).ok_or(SchedError::UnknownJob(id))?;
        let mut reasons = Vec::new();
        let mut position = None;
        let state = match job.state {
            JobState::Running { start, .. } => {
                reasons.push(Reason::Running { since: start, killed_at: start + job.spec.walltime });
                "running"
            }
            JobState::Ended { end, .. } => {
                reasons.push(Reason::Ended { at: end });
                "ended"
            }
            JobState::Pending | JobState::Deferred { .. } => {
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
        match j.state {
            JobState::Running { start, .. } => Some(start + j.spec.walltime),
            _ => None,
        }
    }

    pub fn config(&self) -> &SchedConfig {
        &self.cfg
    }
}

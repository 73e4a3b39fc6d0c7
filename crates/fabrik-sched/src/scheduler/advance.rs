//! Advance reservations: a window of GPUs for an account's subtree, held by a pseudo-job that
//! waits at the head of the queue for its window (nothing may start that would still hold its
//! GPUs then), and, while open, a cluster of its own in which only that subtree's jobs run.

use super::{AdvanceState, JobEntry, JobState, Outcome, Scheduler};
use crate::cluster::Parts;
use crate::explain::Reason;
use crate::SchedError;
use fabrik_model::facility::AdvanceReservation;
use fabrik_model::{AccountId, JobId, JobSpec, Secs, SimTime};
use std::cmp::Ordering;

impl Scheduler {
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
    pub(super) fn find_for(&mut self, id: JobId) -> Result<(), crate::NoFit> {
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
    pub(super) fn member_of(&self, a: AccountId, now: SimTime, walltime: Secs) -> Option<usize> {
        self.advance.iter().position(|r| {
            r.inner.is_some() && now >= r.start && now + walltime <= r.end && self.in_subtree(a, r.account)
        })
    }

    /// Ends reservations whose window has passed: free GPUs go back to the facility; jobs still
    /// inside keep theirs, now held in the facility's own state.
    pub(super) fn end_reservations(&mut self, now: SimTime) {
        for k in 0..self.advance.len() {
            if self.advance[k].end > now {
                continue;
            }
            let jid = self.advance[k].job;
            let start = match &self.jobs[jid.idx()].state {
                JobState::Running { start, parts } => {
                    let inner = self.advance[k].inner.take().expect("active reservation has its cluster");
                    let free: Parts =
                        parts.iter().map(|&(d, _)| (d, inner.domain_free(d))).filter(|p| p.1 > 0).collect();
                    let start = *start;
                    self.cluster.release(&free);
                    self.running.remove(&(start + self.jobs[jid.idx()].spec.walltime, jid));
                    for j in self.jobs.iter_mut().filter(|j| j.inside == Some(k as u32)) {
                        j.inside = None;
                    }
                    Some(start)
                }
                JobState::Pending | JobState::Deferred { .. } => {
                    self.pending.retain(|&p| p != jid);
                    None
                }
                JobState::Ended { .. } => continue,
            };
            self.jobs[jid.idx()].state = JobState::Ended { start, end: now, outcome: Outcome::Closed };
            self.reservation = None;
            self.dirty = true;
        }
    }

    /// Starts the reservation's pseudo-job on the placement in `scratch`: its GPUs leave the
    /// facility's pool for the account's jobs until `end`. Not a job: no usage, not busy.
    pub(super) fn start_reservation(&mut self, id: JobId, now: SimTime) {
        let k = self.jobs[id.idx()].reservation.expect("a reservation") as usize;
        self.cluster.allocate(&self.scratch);
        let end = self.advance[k].end;
        let job = &mut self.jobs[id.idx()];
        job.state = JobState::Running { start: now, parts: self.scratch.clone() };
        job.spec.walltime = end - now;
        self.running.insert((end, id));
        self.advance[k].inner = Some(self.cluster.restricted_to(&self.scratch));
    }

    /// Starts `id` inside reservation `k` on the placement in `scratch`.
    pub(super) fn start_inside(&mut self, id: JobId, k: usize, now: SimTime, started: &mut Vec<JobId>) {
        self.advance[k].inner.as_mut().expect("active").allocate(&self.scratch);
        let job = &mut self.jobs[id.idx()];
        job.state = JobState::Running { start: now, parts: self.scratch.clone() };
        // inside a reservation its GPUs already count as allocated: no power change to track
        job.power_fraction = 1.0;
        job.inside = Some(k as u32);
        self.running.insert((now + job.spec.walltime, id));
        self.busy_gpus += u64::from(job.spec.gpus);
        let (account, gpus) = (job.spec.account, job.spec.gpus);
        self.account_change(account, i64::from(gpus), now);
        started.push(id);
    }
}

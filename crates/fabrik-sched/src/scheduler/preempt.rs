//! Preemption: a blocked job may reclaim its subtree's guarantee from borrowers (where the
//! quota says so), or, under a preemptive policy, take GPUs from lower-priority jobs; victims
//! are released cheapest first until the gang fits, and requeued after the pass.

use super::{JobEntry, Scheduler};
use fabrik_model::{AccountId, JobId, SimTime};

impl Scheduler {
    pub(super) fn in_subtree(&self, a: AccountId, node: AccountId) -> bool {
        self.path_ids(a).any(|x| x == node)
    }

    /// A blocked job may take GPUs by preemption: to reclaim its subtree's guarantee from
    /// borrowers (where configured), or, under a preemptive policy, from lower-priority jobs.
    pub(super) fn try_preemption(&mut self, id: JobId, now: SimTime) -> bool {
        let (account, gpus) = (self.jobs[id.idx()].spec.account, self.jobs[id.idx()].spec.gpus);
        if let Some(node) = self.within_guarantee(account, gpus).filter(|&n| self.quotas.reclaims(n)) {
            let victim =
                move |s: &Scheduler, r: &JobEntry| !s.in_subtree(r.spec.account, node) && s.is_borrower(r.spec.account);
            let key = move |_: &Scheduler, r: &JobEntry| (r.unsaved_at(now), f64::from(r.spec.gpus));
            if self.start_by_preempting(id, now, &victim, &key) {
                return true;
            }
        }
        if self.policy.preempts_lower_priority() {
            let p = self.policy.priority(&self.ctx(now), &self.jobs[id.idx()]);
            let victim = move |s: &Scheduler, r: &JobEntry| s.policy.priority(&s.ctx(now), r) < p;
            let key = move |s: &Scheduler, r: &JobEntry| (s.policy.priority(&s.ctx(now), r), r.unsaved_at(now));
            return self.start_by_preempting(id, now, &victim, &key);
        }
        false
    }

    /// Preempts a running job: frees its GPUs and requeues it (after the pass).
    pub(super) fn preempt(&mut self, id: JobId, now: SimTime) {
        let job = self.stop_to_pending(id, now);
        job.preemptions += 1;
        self.preempted.push(id);
        self.requeue.push(id);
        self.easy.reservation = None;
    }

    /// Makes room for `id` by preempting running jobs `victim` accepts, cheapest first (`key`):
    /// victims are released one by one until the gang fits, and its placement is left in
    /// `scratch` for the pass to start it; if it never fits, nothing changes.
    pub(super) fn start_by_preempting(
        &mut self,
        id: JobId,
        now: SimTime,
        victim: &dyn Fn(&Scheduler, &JobEntry) -> bool,
        key: &dyn Fn(&Scheduler, &JobEntry) -> (f64, f64),
    ) -> bool {
        let (gpus, gpu_type) = (self.jobs[id.idx()].spec.gpus, self.jobs[id.idx()].spec.gpu_type);
        let mut cands: Vec<((f64, f64), JobId)> = self
            .running
            .iter()
            .map(|&(_, r)| r)
            .filter(|&r| {
                let j = &self.jobs[r.idx()];
                // a job started at this instant has done nothing yet and is not a victim
                j.spec.preemptible && j.start() != Some(now) && j.inside.is_none() && victim(self, j)
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
            self.cluster.release(self.jobs[r.idx()].parts());
            taken.push(r);
            if self.cluster.may_fit(gpus, gpu_type) && self.cluster.find(gpus, gpu_type, &mut self.scratch).is_ok() {
                fits = true;
                break;
            }
        }
        for &r in &taken {
            self.cluster.allocate(self.jobs[r.idx()].parts());
        }
        if !fits {
            return false;
        }
        for &r in &taken {
            self.preempt(r, now);
        }
        self.cluster.find(gpus, gpu_type, &mut self.scratch).expect("fits once the victims are gone");
        true
    }
}

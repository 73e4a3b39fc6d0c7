//! Preemption: a blocked job may reclaim its subtree's guarantee from borrowers (where the
//! quota says so), or, under a preemptive policy, take GPUs from lower-priority jobs; victims
//! are released cheapest first until the gang fits, and requeued after the pass.

use super::{JobEntry, Scheduler};
use fabrik_model::{AccountId, JobId, SimTime};
use std::cmp::Ordering;

/// A victim's cost: lower goes first. Guarantee reclaim: (unsaved GPU-seconds plus the
/// restart's, GPUs); preemptive policies: (priority, unsaved plus restart GPU-seconds).
type Key = (f64, f64);

/// A candidate victim, ordered by its key (in `f64::total_cmp`'s order), then by id.
#[derive(Debug, Clone, Copy)]
struct Victim(Key, JobId);

impl Ord for Victim {
    fn cmp(&self, o: &Self) -> Ordering {
        self.0 .0.total_cmp(&o.0 .0).then(self.0 .1.total_cmp(&o.0 .1)).then(self.1.cmp(&o.1))
    }
}
impl PartialOrd for Victim {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl PartialEq for Victim {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Victim {}

impl Scheduler {
    pub(super) fn in_subtree(&self, a: AccountId, node: AccountId) -> bool {
        self.path_ids(a).any(|x| x == node)
    }

    /// A blocked job may take GPUs by preemption: to reclaim its subtree's guarantee from
    /// borrowers (where configured), or, under a preemptive policy, from lower-priority jobs.
    pub(super) fn try_preemption(&mut self, id: JobId, now: SimTime) -> bool {
        let (account, gpus) = (self.jobs[id.idx()].spec.account, self.jobs[id.idx()].spec.gpus);
        if let Some(node) = self.within_guarantee(account, gpus).filter(|&n| self.quotas.reclaims(n)) {
            let victim = move |s: &Scheduler, r: &JobEntry, _: Key| {
                !s.in_subtree(r.spec.account, node) && s.is_borrower(r.spec.account)
            };
            let restart = self.cfg.restart_cost.0 as f64;
            let key = move |_: &Scheduler, r: &JobEntry| (r.preemption_cost_at(now, restart), f64::from(r.spec.gpus));
            if self.start_by_preempting(id, now, &victim, &key) {
                return true;
            }
        }
        if self.policy.preempts_lower_priority() {
            let p = self.policy.priority(&self.ctx(now), &self.jobs[id.idx()]);
            let restart = self.cfg.restart_cost.0 as f64;
            let (exempt, max_unsaved) = (self.cfg.preempt_exempt, self.cfg.preempt_max_unsaved.0 as f64);
            // the key's first part is the victim's priority; one within its exempt time, or
            // whose preemption would lose too much of its run, is no victim
            let victim = move |_: &Scheduler, r: &JobEntry, k: Key| {
                k.0 < p
                    && r.start().is_some_and(|s| now >= s + exempt)
                    && r.unsaved_at(now) < max_unsaved * f64::from(r.spec.gpus)
            };
            let key = move |s: &Scheduler, r: &JobEntry| {
                (s.policy.priority(&s.ctx(now), r), r.preemption_cost_at(now, restart))
            };
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
        victim: &dyn Fn(&Scheduler, &JobEntry, Key) -> bool,
        key: &dyn Fn(&Scheduler, &JobEntry) -> Key,
    ) -> bool {
        let (gpus, gpu_type) = (self.jobs[id.idx()].spec.gpus, self.jobs[id.idx()].spec.gpu_type);
        let cands: Vec<std::cmp::Reverse<Victim>> = self
            .running
            .iter()
            .filter_map(|&(_, r)| {
                let j = &self.jobs[r.idx()];
                // a job started at this instant has done nothing yet and is not a victim
                if !j.spec.preemptible || j.start().is_none_or(|s| s == now) || j.inside.is_some() {
                    return None;
                }
                let k = key(self, j);
                victim(self, j, k).then_some(std::cmp::Reverse(Victim(k, r)))
            })
            .collect();
        if cands.is_empty() {
            return false;
        }
        // cheapest first, taken lazily from a heap: usually a few victims suffice
        let mut heap = std::collections::BinaryHeap::from(cands);
        let mut taken = Vec::new();
        let mut fits = false;
        while let Some(std::cmp::Reverse(Victim(_, r))) = heap.pop() {
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

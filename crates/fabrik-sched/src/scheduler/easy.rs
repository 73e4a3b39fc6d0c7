//! The EASY hold: when the queue head cannot start, its GPUs are reserved at the shadow time
//! (the earliest time running jobs' walltimes guarantee them), and later jobs are backfilled only
//! where they cannot delay it — per-domain budgets of GPUs that jobs running past the shadow
//! time may still take.

use super::{Hold, Scheduler};
use fabrik_model::{JobId, SimTime};

impl Scheduler {
    /// Finds the head's shadow time by releasing running jobs in walltime order on the real
    /// allocation state until the head fits, records per-domain budgets for the GPUs it would
    /// take, and restores the state.
    pub(super) fn reserve(&mut self, head: JobId, now: SimTime) -> SimTime {
        let (gpus, gpu_type) = (self.jobs[head.idx()].spec.gpus, self.jobs[head.idx()].spec.gpu_type);
        self.released.clear();
        self.holds.clear();
        if self.cluster.may_fit(gpus, gpu_type) && self.find_for(head).is_ok() {
            // It fits already (an advance reservation whose window has not opened): hold these.
            for &(d, n) in &self.scratch {
                self.hold_slot[d.idx()] = self.holds.len() as u32;
                self.holds.push(Hold { domain: d, budget: self.cluster.domain_free(d) - n, held: 0 });
            }
            return now;
        }
        let mut start_at = SimTime::MAX;
        let group = self.jobs[head.idx()].reservation.and_then(|k| self.advance[k as usize].group);
        let mut it = self.running.iter().peekable();
        while let Some(&(end, id)) = it.next() {
            if self.jobs[id.idx()].inside.is_none() {
                self.cluster.release(self.jobs[id.idx()].parts());
                self.released.push(id);
            }
            if it.peek().is_some_and(|&&(e, _)| e == end) {
                continue;
            }
            let fits = self.cluster.may_fit(gpus, gpu_type)
                && match group {
                    Some(g) => self.cluster.find_in_leaf_group(gpus, g, &mut self.scratch).is_ok(),
                    None => self.cluster.find(gpus, gpu_type, &mut self.scratch).is_ok(),
                };
            if fits {
                start_at = end.max(now);
                for &(d, n) in &self.scratch {
                    self.hold_slot[d.idx()] = self.holds.len() as u32;
                    self.holds.push(Hold { domain: d, budget: self.cluster.domain_free(d) - n, held: 0 });
                }
                break;
            }
        }
        for &id in &self.released {
            self.cluster.allocate(self.jobs[id.idx()].parts());
        }
        start_at
    }

    /// Takes away, on each reserved domain, the free GPUs beyond what long jobs may use.
    /// Idempotent.
    pub(super) fn apply_holds(&mut self) {
        if self.holds_applied {
            return;
        }
        self.holds_applied = true;
        for h in &mut self.holds {
            let free = self.cluster.domain_free(h.domain);
            h.held = free.saturating_sub(h.budget);
            self.held_total += u64::from(h.held);
            if h.held > 0 {
                self.cluster.allocate(&[(h.domain, h.held)]);
            }
        }
    }

    pub(super) fn unapply_holds(&mut self) {
        self.holds_applied = false;
        self.held_total = 0;
        for h in &mut self.holds {
            if h.held > 0 {
                self.cluster.release(&[(h.domain, h.held)]);
                h.held = 0;
            }
        }
    }

    /// A long job placed on reserved domains uses up their budget.
    pub(super) fn charge_budgets(&mut self) {
        for &(d, n) in &self.scratch {
            let slot = self.hold_slot[d.idx()];
            if let Some(h) = self.holds.get_mut(slot as usize).filter(|h| h.domain == d) {
                h.budget -= n.min(h.budget);
            }
        }
    }
}

//! The EASY hold: when the queue head cannot start, its GPUs are reserved at the shadow time
//! (the earliest time running jobs' walltimes guarantee them), and later jobs are backfilled only
//! where they cannot delay it — per-domain budgets of GPUs that jobs running past the shadow
//! time may still take.

use super::{Freed, Reservation, Scheduler};
use crate::cluster::Cluster;
use fabrik_model::{DomainId, GpuTypeId, GroupId, SimTime};

struct Hold {
    domain: DomainId,
    /// GPUs on this domain that jobs running past the shadow time may still take.
    budget: u32,
    held: u32,
}

/// The EASY hold's sub-state: the head's reservation (kept across passes while it stands) and
/// the per-domain holds on the GPUs it will take, applied to the allocation state while long
/// backfill candidates are placed.
pub(super) struct EasyHold {
    /// The head's reservation in the last pass.
    pub(super) reservation: Option<Reservation>,
    holds: Vec<Hold>,
    /// Whether the holds are taken out of the allocation state now.
    pub(super) applied: bool,
    /// GPUs the applied holds take.
    pub(super) held_total: u64,
    /// Per domain, its index in `holds` (valid only where `holds` names the domain).
    slot: Vec<u32>,
}

impl EasyHold {
    pub(super) fn new(domains: usize) -> EasyHold {
        EasyHold { reservation: None, holds: Vec::new(), applied: false, held_total: 0, slot: vec![u32::MAX; domains] }
    }

    /// Holds the GPUs of `parts` on `cluster`, where jobs running past the shadow time may
    /// still take the GPUs the head does not need.
    fn hold(&mut self, parts: &[(DomainId, u32)], cluster: &Cluster) {
        for &(d, n) in parts {
            self.slot[d.idx()] = self.holds.len() as u32;
            self.holds.push(Hold { domain: d, budget: cluster.domain_free(d) - n, held: 0 });
        }
    }

    /// Drops the holds (no head holds a reservation).
    pub(super) fn clear(&mut self) {
        self.holds.clear();
    }

    /// Takes away, on each reserved domain, the free GPUs beyond what long jobs may use.
    /// Idempotent.
    pub(super) fn apply(&mut self, cluster: &mut Cluster) {
        if self.applied {
            return;
        }
        self.applied = true;
        for h in &mut self.holds {
            let free = cluster.domain_free(h.domain);
            h.held = free.saturating_sub(h.budget);
            self.held_total += u64::from(h.held);
            if h.held > 0 {
                cluster.allocate(&[(h.domain, h.held)]);
            }
        }
    }

    /// Gives the held GPUs back to the allocation state.
    pub(super) fn unapply(&mut self, cluster: &mut Cluster) {
        self.applied = false;
        self.held_total = 0;
        for h in &mut self.holds {
            if h.held > 0 {
                cluster.release(&[(h.domain, h.held)]);
                h.held = 0;
            }
        }
    }

    /// Whether a long job placed on `parts` (found among all free GPUs, holds not applied)
    /// leaves the head what it needs: on every reserved domain it takes no more than the budget.
    fn within_budgets(&self, parts: &[(DomainId, u32)]) -> bool {
        parts.iter().all(|&(d, n)| {
            let slot = self.slot[d.idx()];
            self.holds.get(slot as usize).filter(|h| h.domain == d).is_none_or(|h| n <= h.budget)
        })
    }

    /// A long job placed on `parts` uses up the budgets of reserved domains.
    fn charge(&mut self, parts: &[(DomainId, u32)]) {
        for &(d, n) in parts {
            let slot = self.slot[d.idx()];
            if let Some(h) = self.holds.get_mut(slot as usize).filter(|h| h.domain == d) {
                h.budget -= n.min(h.budget);
            }
        }
    }
}

impl Scheduler {
    /// Finds the head's shadow time (the head asks for `gpus` of `gpu_type`, inside leaf group
    /// `group` if given) by releasing running jobs and open advance reservations in end order on
    /// the real allocation state until the head fits, records per-domain budgets for the GPUs
    /// it would take, and restores the state. At equal ends a reservation goes first.
    pub(super) fn reserve(
        &mut self,
        gpus: u32,
        gpu_type: Option<GpuTypeId>,
        group: Option<GroupId>,
        now: SimTime,
    ) -> SimTime {
        self.released.clear();
        self.easy.clear();
        let find = |s: &mut Scheduler| match group {
            Some(g) => s.cluster.find_in_leaf_group(gpus, g, &mut s.scratch).is_ok(),
            None => s.cluster.find(gpus, gpu_type, &mut s.scratch).is_ok(),
        };
        if self.cluster.may_fit(gpus, gpu_type) && find(self) {
            // It fits already (an advance reservation whose window has not opened): hold these.
            self.easy.hold(&self.scratch, &self.cluster);
            return now;
        }
        let mut start_at = SimTime::MAX;
        let windows = self.open_window_ends();
        let mut released_windows = 0;
        let running = std::mem::take(&mut self.running);
        let mut it = running.iter().peekable();
        loop {
            // the next end: a window's, if it ends no later than the next job
            let end = match (windows.get(released_windows), it.peek()) {
                (Some(&(we, k)), next) if next.is_none_or(|&&(je, _)| we <= je) => {
                    if let Some(parts) = self.advance[k].open_parts() {
                        self.cluster.release(parts);
                    }
                    released_windows += 1;
                    self.released.push(Freed::Window(k));
                    we
                }
                (_, Some(&&(end, id))) => {
                    it.next();
                    if self.jobs[id.idx()].inside.is_none() {
                        self.cluster.release(self.jobs[id.idx()].parts());
                        self.released.push(Freed::Job(id));
                    }
                    end
                }
                _ => break,
            };
            let next_end = match (windows.get(released_windows), it.peek()) {
                (Some(&(we, _)), Some(&&(je, _))) => Some(we.min(je)),
                (Some(&(we, _)), None) => Some(we),
                (None, Some(&&(je, _))) => Some(je),
                (None, None) => None,
            };
            if next_end == Some(end) {
                continue;
            }
            let fits = self.cluster.may_fit(gpus, gpu_type) && find(self);
            if fits {
                start_at = end.max(now);
                self.easy.hold(&self.scratch, &self.cluster);
                break;
            }
        }
        self.running = running;
        for &f in &self.released {
            match f {
                Freed::Job(id) => self.cluster.allocate(self.jobs[id.idx()].parts()),
                Freed::Window(k) => {
                    if let Some(parts) = self.advance[k].open_parts() {
                        self.cluster.allocate(parts);
                    }
                }
            }
        }
        start_at
    }

    pub(super) fn apply_holds(&mut self) {
        self.easy.apply(&mut self.cluster);
    }

    pub(super) fn unapply_holds(&mut self) {
        self.easy.unapply(&mut self.cluster);
    }

    /// Whether a gang could fit at all with the holds applied (without applying them).
    pub(super) fn may_fit_held(&mut self, gpus: u32, gpu_type: Option<GpuTypeId>) -> bool {
        let holds = self.easy.holds.iter().map(|h| (h.domain, h.budget));
        self.cluster.may_fit_capped(gpus, gpu_type, holds)
    }

    /// Whether the long job placed in `scratch` leaves the head's GPUs alone.
    pub(super) fn within_budgets(&self) -> bool {
        self.easy.within_budgets(&self.scratch)
    }

    /// A long job placed (in `scratch`) on reserved domains uses up their budget.
    pub(super) fn charge_budgets(&mut self) {
        self.easy.charge(&self.scratch);
    }
}

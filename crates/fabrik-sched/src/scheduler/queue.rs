//! The queue: pending jobs in order — tier first (2 starving or released urgent, 1 within a
//! guarantee, 0 other), then priority (descending), submit time, id — and the periodic
//! recalculation of priorities and tiers that re-sorts it.

use super::Scheduler;
use crate::policy::PriorityCtx;
use fabrik_model::{JobId, SimTime};
use std::cmp::Ordering;

impl Scheduler {
    /// Queue order: tier, then priority (higher first), earlier submission, lower id.
    pub(super) fn queue_cmp(&self, a: JobId, b: JobId) -> Ordering {
        let key = |id: JobId| {
            let j = &self.jobs[id.idx()];
            queue_key(j.tier, j.priority, j.spec.submit, id)
        };
        key(a).cmp(&key(b))
    }

    /// Puts a pending job into the queue at its place.
    pub(super) fn enqueue(&mut self, id: JobId) {
        let pos = self.pending.partition_point(|&o| self.queue_cmp(o, id) == Ordering::Less);
        self.pending.insert(pos, id);
    }

    pub(super) fn recalc_if_due(&mut self, now: SimTime) {
        if self.last_recalc.is_some_and(|t| now < t + self.cfg.fair_share.recalc_interval) {
            return;
        }
        self.last_recalc = Some(now);
        self.usage.decay_to(now);
        self.usage.refresh_factors(&self.tenants);
        self.policy.refresh(&PriorityCtx { now, usage: &self.usage, tenants: &self.tenants, max_gang: self.max_gang });
        let dynamic = self.policy.dynamic();
        // One walk over the queue computes each job's tier and priority and its sort key (the
        // entries are large: touching each once matters at 100,000 pending). A job is within a
        // guarantee when its GPUs fit the largest headroom on its path, known per account.
        let room = self.guarantee_headroom();
        let mut keys: Vec<(u8, u64, u64, u32)> = Vec::with_capacity(self.pending.len());
        let ctx = PriorityCtx { now, usage: &self.usage, tenants: &self.tenants, max_gang: self.max_gang };
        for &id in &self.pending {
            let j = &self.jobs[id.idx()];
            let room_a = room.get(j.spec.account.idx()).copied().flatten();
            let tier = self.tier_given(j, now, || room_a.is_some_and(|r| u64::from(j.spec.gpus) <= r));
            let p = if dynamic { self.policy.priority(&ctx, j) } else { j.priority };
            let j = &mut self.jobs[id.idx()];
            j.priority = p;
            j.tier = tier;
            keys.push(queue_key(j.tier, j.priority, j.spec.submit, id));
        }
        // static priorities mostly keep their order: an O(n) check spares the sort
        if !keys.is_sorted() {
            keys.sort_unstable();
        }
        self.pending.clear();
        self.pending.extend(keys.into_iter().map(|k| JobId(k.3)));
        self.dirty = true;
    }
}

/// The queue's order as an integer key sorted ascending: tier (higher first), priority (higher
/// first, in `f64::total_cmp`'s order), submission, id. `queue_cmp` and the recalculation's sort
/// both use it.
pub(super) fn queue_key(tier: u8, priority: f64, submit: SimTime, id: JobId) -> (u8, u64, u64, u32) {
    let bits = priority.to_bits();
    // total_cmp: flip all bits of negatives, the sign bit of the others; then invert for
    // descending priority
    let total = if bits >> 63 == 1 { !bits } else { bits | (1 << 63) };
    (u8::MAX - tier, !total, submit.0, id.0)
}

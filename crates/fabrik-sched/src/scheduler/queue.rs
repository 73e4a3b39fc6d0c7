//! The queue: pending jobs in order — tier first (2 starving or urgent — a claim whose GPUs failed —, 1 within a
//! guarantee, 0 other), then priority (descending), submit time, id — and the periodic
//! recalculation of priorities and tiers that re-sorts it.

use super::quotas::tier_rule;
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

    /// The key of a pending job as its entry has it.
    fn key_of(&self, id: JobId) -> (u8, u64, u64, u32) {
        let j = &self.jobs[id.idx()];
        queue_key(j.tier, j.priority, j.spec.submit, id)
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
        // Dynamic priorities reorder the queue anyway: walk it in id order, which reads the
        // entries front to back instead of at random (memory latency was most of the cost).
        let room = self.guarantee_headroom();
        let ctx = PriorityCtx { now, usage: &self.usage, tenants: &self.tenants, max_gang: self.max_gang };
        let mut order = std::mem::take(&mut self.pending);
        if dynamic {
            let set = IdSet::of(&order, self.jobs.base(), self.jobs.next_id().idx());
            let old = std::mem::replace(&mut order, set.ids());
            // Where id order is submission order (the twin submits in arrival order), a job's
            // position stands for (submit, id) and its key fits in 128 bits, which sort faster
            // than tuples; built in the same walk.
            let mut packed: Vec<u128> = Vec::with_capacity(order.len());
            let mut submit_ordered = true;
            let mut last_submit = SimTime::ZERO;
            let (slurm, starve, policy) = (self.slurm.is_some(), self.cfg.starvation_after, &*self.policy);
            for (i, &id) in order.iter().enumerate() {
                let j = &mut self.jobs[id.idx()];
                let room_a = room.get(j.spec.account.idx()).copied().flatten();
                j.tier = tier_rule(slurm, starve, j, now, || room_a.is_some_and(|r| u64::from(j.spec.gpus) <= r));
                j.priority = policy.priority(&ctx, j);
                submit_ordered &= j.spec.submit >= last_submit;
                last_submit = j.spec.submit;
                packed.push(packed_key(j.tier, j.priority, i as u32));
            }
            if !submit_ordered {
                order = in_key_order(order.iter().map(|&id| self.key_of(id)).collect());
            } else {
                let keyed = if barely_moved(&old, |id| packed[set.rank(id)]) {
                    // in the queue's old order: a queue that barely moved is a few sorted runs,
                    // which the stable sort finds and merges
                    let mut keyed: Vec<u128> = old.iter().map(|&id| packed[set.rank(id)]).collect();
                    if !keyed.is_sorted() {
                        keyed.sort();
                    }
                    keyed
                } else {
                    // reordered throughout (the first recalculation after a long gap, shifted
                    // fair-share factors): gathering the keys in the old order would cost a
                    // random read per job and find no runs; the keys are unique, so sorting
                    // them as they are gives the same order
                    packed.sort_unstable();
                    packed
                };
                order = keyed.iter().map(|&k| order[(k & u128::from(u32::MAX)) as usize]).collect();
            }
        } else {
            // static priorities: only tiers move, and the order mostly stands
            let mut keys = Vec::with_capacity(order.len());
            for &id in &order {
                let j = &self.jobs[id.idx()];
                let room_a = room.get(j.spec.account.idx()).copied().flatten();
                let tier = self.tier_given(j, now, || room_a.is_some_and(|r| u64::from(j.spec.gpus) <= r));
                self.jobs[id.idx()].tier = tier;
                keys.push(self.key_of(id));
            }
            order = in_key_order(keys);
        }
        self.pending = order;
        self.dirty = true;
    }
}

/// Whether the new keys, read in the queue's old order, look mostly sorted: at most one descent
/// among 65 evenly spaced samples. Only chooses how to sort (both ways give the same order).
fn barely_moved(old: &[JobId], key: impl Fn(JobId) -> u128) -> bool {
    const SAMPLES: usize = 64;
    if old.len() <= 4 * SAMPLES {
        return true;
    }
    let step = (old.len() - 1) / SAMPLES;
    let keys: Vec<u128> = (0..=SAMPLES).map(|k| key(old[k * step])).collect();
    keys.windows(2).filter(|w| w[0] > w[1]).count() <= 1
}

/// A set of job ids as a bitset over a span of ids: in id order, and each one's rank in it.
struct IdSet {
    base: usize,
    bits: Vec<u64>,
    /// Members in the words before each word.
    before: Vec<u32>,
}

impl IdSet {
    /// `ids` (no id twice, all in `base..end`).
    fn of(ids: &[JobId], base: usize, end: usize) -> IdSet {
        let mut bits = vec![0u64; (end - base).div_ceil(64)];
        for id in ids {
            let k = id.idx() - base;
            bits[k / 64] |= 1 << (k % 64);
        }
        let mut before = Vec::with_capacity(bits.len());
        let mut n = 0;
        for w in &bits {
            before.push(n);
            n += w.count_ones();
        }
        IdSet { base, bits, before }
    }

    fn ids(&self) -> Vec<JobId> {
        let mut out = Vec::with_capacity(self.before.last().map_or(0, |&n| n as usize + 64));
        for (w, &word) in self.bits.iter().enumerate() {
            let mut b = word;
            while b != 0 {
                out.push(JobId((self.base + w * 64 + b.trailing_zeros() as usize) as u32));
                b &= b - 1;
            }
        }
        out
    }

    /// The position of a member in id order.
    fn rank(&self, id: JobId) -> usize {
        let k = id.idx() - self.base;
        (self.before[k / 64] + (self.bits[k / 64] & ((1u64 << (k % 64)) - 1)).count_ones()) as usize
    }
}

/// The queue's order as an integer key sorted ascending: tier (higher first), priority (higher
/// first, in `f64::total_cmp`'s order), submission, id. `queue_cmp` and the recalculation's sort
/// both use it.
pub(super) fn queue_key(tier: u8, priority: f64, submit: SimTime, id: JobId) -> (u8, u64, u64, u32) {
    (u8::MAX - tier, descending(priority), submit.0, id.0)
}

/// The ids of `keys` in their order. The keys are unique, so the stable sort (which finds the
/// sorted runs of a queue that barely moved) orders as an unstable one would.
fn in_key_order(mut keys: Vec<(u8, u64, u64, u32)>) -> Vec<JobId> {
    if !keys.is_sorted() {
        keys.sort();
    }
    keys.iter().map(|k| JobId(k.3)).collect()
}

/// `queue_key` with a position that stands for (submission, id), in 128 bits.
fn packed_key(tier: u8, priority: f64, position: u32) -> u128 {
    u128::from(u8::MAX - tier) << 96 | u128::from(descending(priority)) << 32 | u128::from(position)
}

/// Priority as an integer sorting higher priorities first, in `f64::total_cmp`'s order.
fn descending(priority: f64) -> u64 {
    let bits = priority.to_bits();
    // total_cmp: flip all bits of negatives, the sign bit of the others; then invert
    !(if bits >> 63 == 1 { !bits } else { bits | (1 << 63) })
}

#[cfg(test)]
mod tests {
    use crate::{SchedConfig, Scheduler};
    use fabrik_model::{AccountId, Facility, JobId, JobSpec, Secs, SimTime};

    /// An id set over a span that starts past 0 and crosses words: members in id order, each
    /// one's rank its position among them.
    #[test]
    fn an_id_set_lists_its_members_in_id_order_and_ranks_them() {
        let ids: Vec<JobId> = [205u32, 70, 133, 71, 64, 199].into_iter().map(JobId).collect();
        let set = super::IdSet::of(&ids, 60, 210);
        let sorted: Vec<u32> = set.ids().iter().map(|id| id.0).collect();
        assert_eq!(sorted, vec![64, 70, 71, 133, 199, 205]);
        let ranks: Vec<usize> = ids.iter().map(|&id| set.rank(id)).collect();
        assert_eq!(ranks, vec![5, 1, 3, 2, 0, 4]);
    }

    /// After a recalculation the queue is in key order whichever way the keys were sorted:
    /// packed (ids in submission order) or as tuples (a job submitted with an earlier time
    /// than the one before it).
    /// Mostly sorted: at most one descent among the samples; a queue shorter than 256 always
    /// takes the gathering path.
    #[test]
    fn a_queue_barely_moved_when_its_sampled_keys_are_sorted() {
        let ids: Vec<JobId> = (0..1000).map(JobId).collect();
        let key = |f: fn(u32) -> u128| move |id: JobId| f(id.0);
        assert!(super::barely_moved(&ids, key(u128::from)));
        // one job jumped to the front: one descent among the samples
        assert!(super::barely_moved(&ids, key(|i| if i == 500 { 0 } else { u128::from(i) + 1 })));
        assert!(!super::barely_moved(&ids, key(|i| u128::from(1000 - i))));
        // two accounts interleaved, one now behind the other: every other sample descends
        assert!(!super::barely_moved(&ids, key(|i| u128::from(i % 2) << 32 | u128::from(i))));
        assert!(super::barely_moved(&ids[..200], key(|i| u128::from(1000 - i))));
    }

    #[test]
    fn the_recalculated_queue_is_in_key_order_on_both_sorting_paths() {
        // 40 jobs: the keys are gathered in the old order; 600: one account's jobs fall behind
        // throughout, and the keys are sorted as they are
        for (shuffled, n) in [(false, 40u64), (true, 40), (false, 600)] {
            let f = Facility::preset("tiny").unwrap();
            let leaves: Vec<AccountId> = f.tenants.leaves().map(|(id, _)| id).collect();
            let mut s = Scheduler::with_policy(&f, "fair-share", SchedConfig::default()).unwrap();
            let mut started = Vec::new();
            // the facility full for a day, so every later job waits
            s.submit(JobSpec::new("big", leaves[0], 16, SimTime(0), Secs(86_400)), SimTime(0)).unwrap();
            s.schedule(SimTime(0), &mut started);
            for i in 0..n {
                let submit = if shuffled && i == 20 { 3 } else { 10 + i };
                let spec = JobSpec::new(
                    format!("j{i}"),
                    leaves[i as usize % leaves.len()],
                    1 + (i % 4) as u32 * 3,
                    SimTime(submit),
                    Secs(3600),
                );
                s.submit(spec, SimTime(10 + i)).unwrap();
            }
            s.finish(JobId(0), SimTime(5_000)).unwrap();
            // usage of leaves[0] now lowers its jobs' priority at the recalculation
            s.schedule(SimTime(5_000), &mut started);
            let key = |id: &JobId| {
                let j = s.job(*id);
                super::queue_key(j.tier, j.priority, j.spec.submit, *id)
            };
            let keys: Vec<_> = s.pending().iter().map(key).collect();
            assert!(keys.is_sorted(), "shuffled={shuffled}: {keys:?}");
            assert_eq!(s.pending().len() + started.len(), n as usize);
            // the order is not the submission order: priorities moved jobs
            assert!(!s.pending().is_sorted(), "shuffled={shuffled}");
        }
    }
}

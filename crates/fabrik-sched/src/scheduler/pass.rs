//! The scheduling pass: a short driver over the pending queue in order, asking
//! [`Scheduler::consider`] for a [`Verdict`] on each job. Before the jobs, waiting advance
//! reservations open when their window has come, and until then the first of them holds the
//! head (`advance_windows`). `consider` runs the stages below in this order; the first that
//! decides ends it:
//!
//! 1. [`eligibility`](Scheduler::eligibility) — a job whose dependencies (after, afterany,
//!    afterok, afternotok, singleton) do not let it start yet, or before its earliest start,
//!    waits without blocking others;
//! 2. [`energy_deferral`](Scheduler::energy_deferral) — the energy-aware modifier may hold a
//!    flexible job back (it leaves the queue until released);
//! 3. [`power_cap`](Scheduler::power_cap) — under the power cap a job starts only if the hourly
//!    budget holds until its walltime ends (possibly power-limited);
//! 4. [`inside_reservation`](Scheduler::inside_reservation) — a job of a reservation's subtree
//!    starts on the reservation's GPUs when they fit it;
//! 5. [`account_limit`](Scheduler::account_limit) — a job over its subtree's GPU limit waits;
//! 6. [`placement`](Scheduler::placement) — the first job that does not fit becomes the head:
//!    it may preempt (guarantee reclaim, preemptive policies); without backfill the pass stops
//!    there; with EASY backfill the head's GPUs are held at the shadow time and later jobs (up
//!    to the backfill depth) start only where they cannot delay it.
//!
//! Around the walk: priorities are recomputed when due, advance reservations whose window
//! passed close, due claims start and due deferrals return; after it, jobs preempted in the pass
//! are requeued and claimed GPUs are counted. The `slurm` policy has its own pass
//! (`slurm_pass`). Explanations (why a job waits) are set as typed [`Reason`]s.

use super::{Holder, Reservation, Scheduler};
use crate::explain::Reason;
use fabrik_model::{JobId, SimTime};

/// What the pass does with one pending job.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Verdict {
    /// Start it on the placement in `scratch`, where the stage found it.
    Start(Site),
    /// It stays in the queue, for this reason (`None`: the reason it had stands).
    Keep(Option<Reason>),
    /// It leaves the queue without starting (deferred), or already started (by preemption).
    Leave,
    /// It stays, with this reason, and the pass walks no further.
    Stop(Option<Reason>),
}

/// Where a started job runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Site {
    /// On the facility's free GPUs.
    Facility,
    /// Inside the open advance reservation with this index.
    Inside(usize),
}

/// State of one pass across the jobs it walks.
pub(super) struct Pass {
    now: SimTime,
    /// The head's reservation of the previous pass, reused while it still holds.
    cached: Option<Reservation>,
    /// A job started ahead of the head in this pass (so a cached reservation is stale).
    started_ahead: bool,
    backfill: bool,
    depth_left: usize,
}

impl Scheduler {
    /// Runs one scheduling pass at `now`; fills `started` with the jobs it started.
    pub fn schedule(&mut self, now: SimTime, started: &mut Vec<JobId>) {
        started.clear();
        self.recalc_if_due(now);
        if let Some(mut st) = self.slurm.take() {
            // the slurm policy's own pass works on its state beside the scheduler's
            self.schedule_slurm(&mut st, now, started);
            self.slurm = Some(st);
            return;
        }
        self.end_reservations(now);
        if self.wakeup.is_some_and(|w| w <= now) {
            self.dirty = true;
        }
        if !self.dirty {
            return;
        }
        self.dirty = false;
        self.pass += 1;
        self.power.blocked_gpus = 0;
        self.apply_claims();
        self.start_due_claims(now, started);
        self.release_due_deferrals(now);
        self.wakeup = self.window_and_deferral_wakeup(now);
        let mut pass = Pass {
            now,
            cached: self.easy.reservation.take(),
            started_ahead: false,
            backfill: self.policy.backfill(),
            depth_left: self.cfg.backfill_depth,
        };
        self.blocked_head = None;
        self.advance_windows(now, pass.cached, &mut pass.started_ahead);
        let (mut i, mut kept, n) = (0, 0, self.pending.len());
        while i < n {
            if !self.deferrals.applied {
                // the last job borrowed claimed GPUs: hide them again (holds go on top)
                self.unapply_holds();
                self.apply_claims();
            }
            let id = self.pending[i];
            match self.consider(id, &mut pass) {
                Verdict::Start(Site::Facility) => self.start(id, now, started),
                Verdict::Start(Site::Inside(k)) if self.start_inside(id, k, now, started) => {}
                Verdict::Leave => {}
                Verdict::Start(Site::Inside(_)) => {
                    self.pending[kept] = id;
                    kept += 1;
                }
                Verdict::Keep(why) => {
                    if let Some(why) = why {
                        self.set_why(id, why);
                    }
                    self.pending[kept] = id;
                    kept += 1;
                }
                Verdict::Stop(why) => {
                    if let Some(why) = why {
                        self.set_why(id, why);
                    }
                    break;
                }
            }
            i += 1;
        }
        self.pending.copy_within(i..n, kept);
        self.pending.truncate(kept + (n - i));
        self.wake_for_after(now, started);
        self.requeue_preempted(now);
        self.unapply_holds();
        self.apply_claims();
        self.power.claimed_idle_gpus =
            self.deferrals.claims.iter().flat_map(|c| c.hidden.iter()).map(|&h| u64::from(h)).sum();
        self.unapply_claims();
        if self.easy.reservation.is_none() {
            self.easy.clear();
        }
    }

    /// The verdict on one pending job: the stages in order (see the module documentation).
    fn consider(&mut self, id: JobId, pass: &mut Pass) -> Verdict {
        if let Some(v) = self.eligibility(id, pass.now) {
            return v;
        }
        if let Some(v) = self.energy_deferral(id, pass.now) {
            return v;
        }
        if let Some(v) = self.power_cap(id, pass.now) {
            return v;
        }
        if let Some(v) = self.inside_reservation(id, pass.now) {
            return v;
        }
        if let Some(v) = self.account_limit(id) {
            return v;
        }
        self.placement(id, pass)
    }

    /// Reservation boundaries and deferral ends are wake-ups: windows open and close, and
    /// deferred jobs return, without other events.
    fn window_and_deferral_wakeup(&self, now: SimTime) -> Option<SimTime> {
        let w = self.window_wakeups(now);
        match self.next_deferral_end().filter(|&t| t > now) {
            Some(t) => Some(w.map_or(t, |w| w.min(t))),
            None => w,
        }
    }

    /// A job waiting `after` one that started in this pass may start in the next: one second
    /// on (the pass walked past it before its target started).
    pub(super) fn wake_for_after(&mut self, now: SimTime, started: &[JobId]) {
        if started.is_empty() {
            return;
        }
        let waiting = self.pending.iter().any(|&p| {
            self.jobs[p.idx()]
                .spec
                .after
                .iter()
                .any(|d| d.kind == fabrik_model::DepKind::After && d.job.is_some_and(|j| started.contains(&j)))
        });
        if waiting {
            self.dirty = true;
            self.wake_at(now + fabrik_model::Secs(1));
        }
    }

    fn wake_at(&mut self, t: SimTime) {
        self.wakeup = Some(self.wakeup.map_or(t, |w| w.min(t)));
    }

    /// Stage 1: a job whose earliest start lies ahead waits for it.
    fn eligibility(&mut self, id: JobId, now: SimTime) -> Option<Verdict> {
        // a job waiting for another leaves the way free (Slurm: reason Dependency); the other
        // job's start or end makes the next pass look again
        if let Some(why) = self.dependency_wait(id) {
            return Some(Verdict::Keep(Some(why)));
        }
        let at = self.jobs[id.idx()].spec.earliest_start.filter(|&t| t > now)?;
        self.wake_at(at);
        Some(Verdict::Keep(Some(Reason::WaitingForEarliestStart { at })))
    }

    /// Stage 2: the energy-aware modifier holds a flexible job back until a cleaner or cheaper
    /// hour: it leaves the queue until released (see `release_due_deferrals`,
    /// `start_due_claims`).
    fn energy_deferral(&mut self, id: JobId, now: SimTime) -> Option<Verdict> {
        let until = self.deferral(id, now)?;
        self.wake_at(until);
        Some(Verdict::Leave)
    }

    /// Stage 3: under the power cap, the power fraction the job may start with, or it waits.
    fn power_cap(&mut self, id: JobId, now: SimTime) -> Option<Verdict> {
        match self.power_admission(id, now) {
            Ok(f) => {
                self.jobs[id.idx()].power_fraction = f;
                None
            }
            Err(why) => {
                self.power.blocked_gpus += u64::from(self.jobs[id.idx()].spec.gpus);
                if self.power.budget_w.as_ref().is_some_and(|b| b.series.values.len() > 1) {
                    // an hourly cap may rise at the next hour
                    self.wake_at(SimTime((now.0 / 3600 + 1) * 3600));
                }
                Some(Verdict::Keep(Some(why)))
            }
        }
    }

    /// Stage 4: a job of an open reservation's subtree that fits its GPUs starts inside it.
    fn inside_reservation(&mut self, id: JobId, now: SimTime) -> Option<Verdict> {
        let spec = &self.jobs[id.idx()].spec;
        let (gpus, gpu_type) = (spec.gpus, spec.gpu_type);
        let k = self.member_of(spec.account, now, spec.walltime)?;
        let inner = self.advance[k].inner_mut()?;
        inner.find(gpus, gpu_type, &mut self.scratch).is_ok().then_some(Verdict::Start(Site::Inside(k)))
    }

    /// Stage 5: a job that would take its subtree over a GPU limit waits (it does not block).
    fn account_limit(&mut self, id: JobId) -> Option<Verdict> {
        let spec = &self.jobs[id.idx()].spec;
        let (node, limit) = self.over_limit(spec.account, spec.gpus)?;
        let account = self.tenants.get(node).path.clone();
        Some(Verdict::Keep(Some(Reason::AccountAtLimit { account, limit })))
    }

    /// Stage 6: where the job runs now, if anywhere. Before the head: wherever it fits (or by
    /// preemption). The first that does not fit is the head: without backfill the pass stops;
    /// with EASY backfill its GPUs are held at the shadow time. After the head (up to the
    /// backfill depth): a job ending by the shadow time may use held GPUs; a longer one only
    /// GPUs the head does not need.
    fn placement(&mut self, id: JobId, pass: &mut Pass) -> Verdict {
        let now = pass.now;
        let spec = &self.jobs[id.idx()].spec;
        let (gpus, gpu_type, walltime) = (spec.gpus, spec.gpu_type, spec.walltime);
        // a job that does not fit otherwise may borrow the GPUs of claims that start after its
        // walltime ends
        if self.deferrals.applied && !self.deferrals.claims.is_empty() && !self.cluster.may_fit(gpus, gpu_type) {
            self.unapply_holds();
            self.lend_from(now + walltime);
        }
        let Some(resv) = self.easy.reservation else {
            return match self.cluster.find(gpus, gpu_type, &mut self.scratch) {
                Ok(()) => {
                    pass.started_ahead = true;
                    Verdict::Start(Site::Facility)
                }
                Err(no_fit) => {
                    if self.try_preemption(id, now) {
                        pass.started_ahead = true;
                        return Verdict::Start(Site::Facility);
                    }
                    self.blocked_head = Some(id);
                    if !pass.backfill {
                        return Verdict::Stop(Some(Reason::Resources { no_fit }));
                    }
                    let start_at = match pass.cached {
                        Some(r) if r.holder == Holder::Job(id) && r.start_at > now && !pass.started_ahead => r.start_at,
                        _ => self.reserve(gpus, gpu_type, None, now),
                    };
                    if start_at == SimTime::MAX {
                        // it does not fit even when every running job has ended (domains out
                        // of service): no reservation to hold; the next job may be the head
                        self.blocked_head = None;
                        self.easy.clear();
                        return Verdict::Keep(Some(Reason::Resources { no_fit }));
                    }
                    self.easy.reservation = Some(Reservation { holder: Holder::Job(id), start_at });
                    Verdict::Keep(Some(Reason::HoldsReservation { start_at }))
                }
            };
        };
        if pass.depth_left == 0 {
            return Verdict::Stop(None);
        }
        pass.depth_left -= 1;
        let short = now + walltime <= resv.start_at;
        // Holds go on lazily: most candidates are placed among all free GPUs first — a short
        // job may use any of them, a long one as long as it stays within the reserved domains'
        // budgets — and taking the held GPUs out of the allocation state (and putting them back)
        // costs a relink per reserved domain.
        if !self.easy.applied {
            match self.cluster.find(gpus, gpu_type, &mut self.scratch) {
                Err(no_fit) => return Verdict::Keep(Some(Reason::Resources { no_fit })),
                Ok(()) if short => return Verdict::Start(Site::Facility),
                Ok(()) if self.within_budgets() => {
                    self.charge_budgets();
                    return Verdict::Start(Site::Facility);
                }
                // it fits only on GPUs the head needs (it fits, so enough are free)
                Ok(()) if !self.may_fit_held(gpus, gpu_type) => return Verdict::Keep(Some(self.behind(resv))),
                Ok(()) => {}
            }
        }
        self.apply_holds();
        match self.cluster.find(gpus, gpu_type, &mut self.scratch) {
            Ok(()) => {
                if !short {
                    self.charge_budgets();
                }
                Verdict::Start(Site::Facility)
            }
            Err(held_no_fit) if short => {
                // A short job may use held GPUs: it ends before the head starts.
                self.unapply_holds();
                match self.cluster.find(gpus, gpu_type, &mut self.scratch) {
                    Ok(()) => Verdict::Start(Site::Facility),
                    Err(_) => Verdict::Keep(Some(Reason::Resources { no_fit: held_no_fit })),
                }
            }
            Err(held_no_fit) => {
                // A long job would fit only on GPUs the head needs: it waits for it.
                let why = if self.cluster.free_for(gpu_type) + self.easy.held_total >= u64::from(gpus) {
                    self.behind(resv)
                } else {
                    Reason::Resources { no_fit: held_no_fit }
                };
                Verdict::Keep(Some(why))
            }
        }
    }

    /// Jobs preempted in this pass go back to the queue, after it, in order.
    fn requeue_preempted(&mut self, now: SimTime) {
        let requeue = std::mem::take(&mut self.requeue);
        for id in requeue {
            let p = self.policy.priority(&self.ctx(now), &self.jobs[id.idx()]);
            let tier = self.tier_of(&self.jobs[id.idx()], now);
            let j = &mut self.jobs[id.idx()];
            j.priority = p;
            j.tier = tier;
            j.why = Reason::Preempted { at: now };
            j.why_pass = self.pass;
            self.enqueue(id);
            self.dirty = true;
        }
    }
}

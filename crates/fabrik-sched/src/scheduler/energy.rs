//! Power and the energy-aware modifier: the facility power cap (hourly budget, power limits per
//! QoS, admission of a job under the cap), and the modifier's deferrals of flexible jobs —
//! queue mode (the job leaves the queue until its planned hour, then returns to its place) and claim
//! mode (its GPUs are claimed and hidden from every other job until it starts on them).

use super::{JobEntry, JobState, Scheduler};
use crate::cluster::Parts;
use crate::explain::Reason;
use crate::power::EnergyAware;
use fabrik_model::{DomainId, JobId, SimTime};
use std::collections::BTreeSet;

/// The energy-aware modifier's sub-state: flexible jobs it holds back, in either mode.
#[derive(Default)]
pub(super) struct Deferrals {
    /// Claim mode: GPUs claimed by deferred jobs, hidden from every other job during a pass.
    pub(super) claims: Vec<Claim>,
    /// Whether the claims are taken out of the allocation state now.
    pub(super) applied: bool,
    /// Claims by start time with the IT watts their hidden GPUs add at or after it (suffix
    /// sums): a job that ends before a claim starts does not share its power.
    pub(super) claim_w: Vec<(SimTime, f64)>,
    /// Queue mode: deferrals by planned start. Deferred jobs (of either mode) leave `pending`,
    /// so a pass does not walk over them; they return when released.
    pub(super) queued: BTreeSet<(SimTime, JobId)>,
}

/// A deferred flexible job's GPUs, chosen when it could have started: no other job may take
/// them, so it starts on them when its deferral ends.
pub(super) struct Claim {
    pub(super) job: JobId,
    /// When the job starts on them.
    pub(super) at: SimTime,
    pub(super) parts: Parts,
    /// GPUs hidden per part while applied (fewer where a short job borrowed some).
    pub(super) hidden: Vec<u32>,
    pub(super) applied: bool,
}

impl Scheduler {
    /// Caps facility power (the grid connection) at a constant `cap_w` with a constant PUE; see
    /// `set_power_cap_hourly`.
    pub fn set_power_cap(&mut self, cap_w: Option<f64>, pue: f64) {
        let h = fabrik_model::grid::Hourly::constant;
        self.set_power_cap_hourly(cap_w.map(h), h(pue.max(1.0)));
    }

    /// Caps facility power per hour (the grid connection, possibly time-varying) with an hourly
    /// PUE: a job starts only if IT power with it stays within cap ÷ PUE in every hour until its
    /// walltime ends; a job whose QoS allows a power limit may start limited to fit. A lower cap
    /// stops no running job; it only holds back new ones.
    pub fn set_power_cap_hourly(&mut self, cap_w: Option<fabrik_model::grid::Hourly>, pue: fabrik_model::grid::Hourly) {
        self.power.set_cap(cap_w, pue);
        self.dirty = true;
    }

    /// Turns the energy-aware modifier on (or off with `None`).
    pub fn set_energy_aware(&mut self, m: Option<EnergyAware>) {
        self.energy_aware = m;
        self.dirty = true;
    }

    /// Watts that on-site renewables and the battery can supply now beyond the load: deferred
    /// flexible jobs that fit in it start at once.
    pub fn set_green_headroom_w(&mut self, w: f64) {
        let w = w.max(0.0);
        if w > self.power.green_headroom_w && self.energy_aware.is_some() {
            self.dirty = true;
        }
        self.power.green_headroom_w = w;
    }

    /// GPUs of the jobs the power cap held back in the last pass.
    pub fn power_blocked_gpus(&self) -> u64 {
        self.power.blocked_gpus
    }

    /// IT power now, W: allocated GPUs at their training draw (less what power limits save),
    /// free GPUs and GPUs out of service at idle draw (a node awaiting repair stays powered; this
    /// also keeps the cap safe when it returns), plus network and storage. (GPUs held by an
    /// advance reservation count as allocated.)
    pub fn it_power_w(&self) -> f64 {
        let c = &self.cluster;
        let p = &self.power;
        (0..c.pool_count())
            .map(|i| {
                let pid = fabrik_model::PoolId(i as u32);
                let busy = c.pool_busy(pid) as f64;
                busy * p.pool_w[i].0 + (c.pool_total(pid) as f64 - busy) * p.pool_w[i].1
            })
            .sum::<f64>()
            + p.overhead_w
            - p.saved_w
    }

    /// Facility power at `now`: IT power × that hour's PUE, W.
    pub fn facility_power_w(&self, now: SimTime) -> f64 {
        self.it_power_w() * self.power.pue_at(now)
    }

    /// Watts a job saves by its power limit when it runs on `parts`.
    pub(super) fn saving_w_of(&self, j: &JobEntry, parts: &[(DomainId, u32)]) -> f64 {
        let Some(&(d, _)) = parts.first() else { return 0.0 };
        let (busy, idle) = self.power.pool_w[self.cluster.domain_pool(d).idx()];
        f64::from(j.spec.gpus) * (1.0 - j.power_fraction) * (busy - idle)
    }

    /// The power fraction `id` may start with under the cap now (1: full power), or why not.
    pub(super) fn power_admission(&self, id: JobId, now: SimTime) -> Result<f64, Reason> {
        let Some(budget) = &self.power.budget_w else { return Ok(1.0) };
        let spec = &self.jobs[id.idx()].spec;
        let allowed = budget.min_between(now, now + spec.walltime);
        let need = self.power.delta_w(spec.gpus, spec.gpu_type);
        let it_now = self.it_power_w() - self.claims_w_from(now + spec.walltime);
        let room = allowed - it_now;
        if need <= room {
            return Ok(1.0);
        }
        let f_min = self.cfg.power_limits.min_fraction(spec.qos);
        if need > 0.0 && f_min < 1.0 && room >= f_min * need {
            return Ok(room / need);
        }
        let pue = self.power.pue_at(now);
        let cap = self.power.cap_w.as_ref().map_or(0.0, |c| c.min_between(now, now + spec.walltime));
        Err(Reason::PowerCap { cap_mw: cap / 1e6, now_mw: it_now * pue / 1e6, need_mw: need * f_min * pue / 1e6 })
    }

    /// Hides claimed GPUs from the pass, earliest claim first. A job may borrow only the GPUs of
    /// claims that start after its walltime ends, so a claimed GPU is free again when its claim
    /// starts.
    pub(super) fn apply_claims(&mut self) {
        if self.deferrals.applied {
            return;
        }
        self.deferrals.applied = true;
        for c in self.deferrals.claims.iter_mut().filter(|c| !c.applied) {
            c.applied = true;
            c.hidden.clear();
            for &(d, n) in &c.parts {
                let h = n.min(self.cluster.domain_free(d));
                if h > 0 {
                    self.cluster.allocate(&[(d, h)]);
                }
                c.hidden.push(h);
            }
        }
        self.rebuild_claim_w();
    }

    /// IT watts (above idle) of the GPUs hidden for claims that start at or after `t`.
    pub(super) fn claims_w_from(&self, t: SimTime) -> f64 {
        if !self.deferrals.applied {
            return 0.0;
        }
        let k = self.deferrals.claim_w.partition_point(|x| x.0 < t);
        self.deferrals.claim_w.get(k).map_or(0.0, |x| x.1)
    }

    pub(super) fn rebuild_claim_w(&mut self) {
        let mut v: Vec<(SimTime, f64)> = self
            .deferrals
            .claims
            .iter()
            .map(|c| {
                let w = c
                    .parts
                    .iter()
                    .zip(&c.hidden)
                    .map(|(&(d, _), &h)| {
                        let (busy, idle) = self.power.pool_w[self.cluster.domain_pool(d).idx()];
                        f64::from(h) * (busy - idle)
                    })
                    .sum::<f64>();
                (c.at, w)
            })
            .collect();
        v.sort_by_key(|x| x.0);
        for k in (0..v.len().saturating_sub(1)).rev() {
            v[k].1 += v[k + 1].1;
        }
        self.deferrals.claim_w = v;
    }

    pub(super) fn unapply_claims(&mut self) {
        self.deferrals.applied = false;
        for c in self.deferrals.claims.iter_mut().filter(|c| c.applied) {
            c.applied = false;
            for (&(d, _), &h) in c.parts.iter().zip(&c.hidden) {
                if h > 0 {
                    self.cluster.release(&[(d, h)]);
                }
            }
        }
    }

    /// Lends the GPUs of claims starting at or after `t` (until the next job is considered).
    pub(super) fn lend_from(&mut self, t: SimTime) {
        for c in self.deferrals.claims.iter_mut().filter(|c| c.applied && c.at >= t) {
            c.applied = false;
            self.deferrals.applied = false;
            for (&(d, _), &h) in c.parts.iter().zip(&c.hidden) {
                if h > 0 {
                    self.cluster.release(&[(d, h)]);
                }
            }
        }
    }

    /// Claimed GPUs nobody borrowed in the last pass: held idle for deferred jobs.
    pub fn claimed_idle_gpus(&self) -> u64 {
        self.power.claimed_idle_gpus
    }

    /// Releases queue-mode deferrals whose hour has come (or whose power the green headroom
    /// covers now) back into the queue at their own tier and place.
    pub(super) fn release_due_deferrals(&mut self, now: SimTime) {
        let mut released: Vec<JobId> = Vec::new();
        while let Some(&(at, id)) = self.deferrals.queued.first().filter(|d| d.0 <= now) {
            self.deferrals.queued.remove(&(at, id));
            released.push(id);
        }
        if self.power.green_headroom_w > 0.0 {
            let early: Vec<(SimTime, JobId)> = self.deferrals.queued.iter().copied().collect();
            for (at, id) in early {
                let spec = &self.jobs[id.idx()].spec;
                let need = self.power.delta_w(spec.gpus, spec.gpu_type);
                if need <= self.power.green_headroom_w {
                    self.power.green_headroom_w -= need;
                    self.deferrals.queued.remove(&(at, id));
                    released.push(id);
                }
            }
        }
        for id in released {
            if self.jobs[id.idx()].deferred_until().is_none() {
                continue; // cancelled while deferred
            }
            self.requeue_released(id, now);
        }
    }

    /// Puts a queue-mode deferral whose hour has come back into the queue at its own tier and
    /// priority (its submit time keeps its place among equals): taking the top tier and the EASY
    /// reservation would make inflexible jobs behind it wait for the greener hour it chose.
    fn requeue_released(&mut self, id: JobId, now: SimTime) {
        let p = self.policy.priority(&self.ctx(now), &self.jobs[id.idx()]);
        let tier = self.tier_of(&self.jobs[id.idx()], now);
        let j = &mut self.jobs[id.idx()];
        j.state = JobState::Pending;
        j.tier = tier;
        j.priority = p;
        self.enqueue(id);
        self.dirty = true;
    }

    /// Puts a deferred job back into the queue in the top tier (it gave up its earlier start).
    pub(super) fn requeue_urgent(&mut self, id: JobId, now: SimTime) {
        let p = self.policy.priority(&self.ctx(now), &self.jobs[id.idx()]);
        let j = &mut self.jobs[id.idx()];
        j.state = JobState::Pending;
        j.urgent = true;
        j.tier = 2;
        j.priority = p;
        self.enqueue(id);
        self.easy.reservation = None;
        self.dirty = true;
    }

    /// The earliest planned start of a deferred job, for wake-ups.
    pub(super) fn next_deferral_end(&self) -> Option<SimTime> {
        let q = self.deferrals.queued.first().map(|d| d.0);
        let c = self.deferrals.claims.first().map(|c| c.at);
        q.into_iter().chain(c).min()
    }

    /// Starts deferred jobs whose hour has come, or whose power the green headroom covers now,
    /// on their claimed GPUs: they were admitted when they deferred (the head's budgets and the
    /// cap's later window were checked then), so neither the queue order nor a reservation can
    /// hold them back. Called with claims applied, before the queue walk.
    pub(super) fn start_due_claims(&mut self, now: SimTime, started: &mut Vec<JobId>) {
        if self.deferrals.claims.is_empty() {
            return;
        }
        let mut due = Vec::new();
        let mut k = 0;
        while k < self.deferrals.claims.len() {
            let c = &self.deferrals.claims[k];
            let spec = &self.jobs[c.job.idx()].spec;
            let need = self.power.delta_w(spec.gpus, spec.gpu_type);
            let green = need <= self.power.green_headroom_w;
            if c.at <= now || green {
                if c.at > now {
                    self.power.green_headroom_w -= need;
                }
                let c = self.deferrals.claims.remove(k);
                for (&(d, _), &h) in c.parts.iter().zip(&c.hidden) {
                    if h > 0 {
                        self.cluster.release(&[(d, h)]);
                    }
                }
                due.push(c);
            } else {
                k += 1;
            }
        }
        if due.is_empty() {
            return;
        }
        self.rebuild_claim_w();
        due.sort_by_key(|c| c.job);
        for c in due {
            if c.parts.iter().any(|&(d, n)| self.cluster.domain_free(d) < n) {
                // a borrower overran its walltime (a live job still shutting down): the job
                // goes back into the queue in the top tier instead
                self.requeue_urgent(c.job, now);
                continue;
            }
            self.jobs[c.job.idx()].power_fraction = 1.0;
            self.scratch.clear();
            self.scratch.extend_from_slice(&c.parts);
            self.start(c.job, now, started);
        }
        // capacity changed under a kept head reservation
        self.easy.reservation = None;
    }

    /// The energy-aware modifier's decision for `id` at `now`: the time it is held back until, or
    /// `None` to consider it now. Only flexible jobs (with a deadline) are ever held, each at most
    /// once, and only when it could start now: it then claims the GPUs it would have taken, which
    /// no other job may use, and starts on them when its deferral ends (no later than
    /// `deadline − walltime − guard`). One whose power fits in the green headroom (renewables,
    /// battery) is brought forward.
    pub(super) fn deferral(&mut self, id: JobId, now: SimTime) -> Option<SimTime> {
        let m = self.energy_aware.as_ref()?;
        let j = &self.jobs[id.idx()];
        let deadline = j.spec.deadline?;
        let (gpus, gpu_type, walltime) = (j.spec.gpus, j.spec.gpu_type, j.spec.walltime);
        let need = self.power.delta_w(gpus, gpu_type);
        if j.deferrals > 0 {
            return None;
        }
        let (until, here, then) = m.defer(now, walltime, deadline)?;
        let (mode, headroom) = (m.mode, m.headroom);
        if need <= self.power.green_headroom_w {
            self.power.green_headroom_w -= need;
            return None;
        }
        // it must fit now, beside the head's reservation, and under the cap of its later window
        // with the modifier's headroom left for the work that arrives meanwhile
        if self.easy.reservation.is_some() {
            self.apply_holds();
        }
        if !self.cluster.may_fit(gpus, gpu_type) || self.cluster.find(gpus, gpu_type, &mut self.scratch).is_err() {
            return None;
        }
        if let Some(b) = &self.power.budget_w {
            // queue mode: the power of jobs already deferred into an overlapping window
            let queued: f64 = self
                .deferrals
                .queued
                .iter()
                .map(|&(u, q)| (u, &self.jobs[q.idx()].spec))
                .filter(|(u, qs)| *u < until + walltime && until < *u + qs.walltime)
                .map(|(_, qs)| self.power.delta_w(qs.gpus, qs.gpu_type))
                .sum();
            if self.it_power_w() - self.claims_w_from(until + walltime) + queued + need
                > b.min_between(until, until + walltime) * (1.0 - headroom)
            {
                return None;
            }
        }
        let j = &mut self.jobs[id.idx()];
        j.deferrals += 1;
        j.state = JobState::Deferred { until };
        j.why = Reason::Deferred { until, signal_now: here, signal_then: then };
        j.why_pass = self.pass;
        if mode == crate::power::DeferMode::Queue {
            self.unapply_holds();
            self.deferrals.queued.insert((until, id));
            return Some(until);
        }
        if self.easy.reservation.is_some_and(|r| until + walltime > r.start_at) {
            self.charge_budgets();
        }
        self.unapply_holds();
        let parts = self.scratch.clone();
        self.cluster.allocate(&parts);
        let hidden = parts.iter().map(|p| p.1).collect();
        // kept in start order: earlier claims are hidden first, so GPUs lent against later
        // claims never come out of an earlier one
        let pos = self.deferrals.claims.partition_point(|c| c.at <= until);
        self.deferrals.claims.insert(pos, Claim { job: id, at: until, parts, hidden, applied: true });
        self.rebuild_claim_w();
        Some(until)
    }
}

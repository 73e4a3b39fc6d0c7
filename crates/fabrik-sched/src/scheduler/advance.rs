//! Advance reservations: a window of GPUs for an account's subtree. Reservations live in an id
//! space of their own ([`ResvId`]), apart from jobs. Before its window opens a reservation holds
//! the head of the queue (the pass considers waiting windows before any job, in the order they
//! were added: nothing may start that would still hold their GPUs when the window opens); while
//! open it is a cluster of its own in which only that subtree's jobs run.

use super::{Holder, Reservation, Scheduler};
use crate::cluster::{Cluster, Parts};
use crate::explain::Reason;
use crate::SchedError;
use fabrik_model::facility::AdvanceReservation;
use fabrik_model::{AccountId, GpuTypeId, GroupId, JobId, Secs, SimTime};
use serde::Serialize;

/// An advance reservation's id: the order in which it was added, from 0 (not a job id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ResvId(pub u32);

impl ResvId {
    pub fn idx(self) -> usize {
        self.0 as usize
    }
}

/// Where an advance reservation is in its life.
#[derive(Debug, Clone)]
pub enum Window {
    /// Its window has not opened (or its GPUs were not free yet when it did).
    Waiting,
    /// Holding `parts` since `start`: the subtree's jobs are placed in `inner`, a cluster in
    /// which only those GPUs exist.
    Open { start: SimTime, parts: Parts, inner: Box<Cluster> },
    /// The window passed; `start` is when it opened, if it did.
    Closed { start: Option<SimTime>, end: SimTime },
}

pub(super) struct AdvanceState {
    pub(super) name: String,
    pub(super) account: AccountId,
    pub(super) gpus: u32,
    pub(super) gpu_type: Option<GpuTypeId>,
    pub(super) start: SimTime,
    pub(super) end: SimTime,
    pub(super) group: Option<GroupId>,
    pub(super) window: Window,
}

impl AdvanceState {
    pub(super) fn inner_mut(&mut self) -> Option<&mut Cluster> {
        match &mut self.window {
            Window::Open { inner, .. } => Some(inner),
            _ => None,
        }
    }
    pub(super) fn open_parts(&self) -> Option<&Parts> {
        match &self.window {
            Window::Open { parts, .. } => Some(parts),
            _ => None,
        }
    }
}

impl Scheduler {
    /// Adds an advance reservation; its window's offsets are absolute times here.
    pub fn add_reservation(&mut self, r: &AdvanceReservation) -> Result<ResvId, SchedError> {
        if u64::from(r.gpus) > self.cluster.max_gang(r.gpu_type) || r.gpus == 0 {
            return Err(SchedError::TooLarge { job: format!("reservation {}", r.name), gpus: r.gpus });
        }
        if r.end <= r.start || r.account.idx() >= self.tenants.len() {
            return Err(SchedError::Invalid(format!("reservation {}: empty window or unknown account", r.name)));
        }
        let id = ResvId(self.advance.len() as u32);
        self.advance.push(AdvanceState {
            name: r.name.clone(),
            account: r.account,
            gpus: r.gpus,
            gpu_type: r.gpu_type,
            start: r.start,
            end: r.end,
            group: r.group,
            window: Window::Waiting,
        });
        self.dirty = true;
        Ok(id)
    }

    /// The state of advance reservation `id`.
    pub fn window(&self, id: ResvId) -> Option<&Window> {
        self.advance.get(id.idx()).map(|a| &a.window)
    }

    /// Places reservation `k`'s GPUs into `scratch`: anywhere, or in its leaf group.
    fn find_window(&mut self, k: usize) -> Result<(), crate::NoFit> {
        let a = &self.advance[k];
        match a.group {
            Some(g) => self.cluster.find_in_leaf_group(a.gpus, g, &mut self.scratch),
            None => self.cluster.find(a.gpus, a.gpu_type, &mut self.scratch),
        }
    }

    /// The pass's first stage: each waiting window in order opens when its time has come and
    /// its GPUs are free; until then the first of them is the head, holding its GPUs at
    /// `max(start, shadow time)` (one head per pass; later windows wait behind it).
    pub(super) fn advance_windows(&mut self, now: SimTime, cached: Option<Reservation>, started_ahead: &mut bool) {
        for k in 0..self.advance.len() {
            if !matches!(self.advance[k].window, Window::Waiting) || self.easy.reservation.is_some() {
                continue;
            }
            let start = self.advance[k].start;
            if now >= start && self.find_window(k).is_ok() {
                *started_ahead = true;
                self.open_window(k, now);
                continue;
            }
            let holder = Holder::Window(ResvId(k as u32));
            let start_at = match cached {
                Some(r) if r.holder == holder && r.start_at > now && !*started_ahead => r.start_at,
                _ => {
                    let a = &self.advance[k];
                    self.reserve(a.gpus, a.gpu_type, a.group, now).max(start)
                }
            };
            self.blocked_head = None;
            self.easy.reservation = Some(Reservation { holder, start_at });
        }
    }

    /// The next window boundary after `now`: a window opens at its start and closes at its end.
    pub(super) fn window_wakeups(&self, now: SimTime) -> Option<SimTime> {
        self.advance
            .iter()
            .filter(|r| !matches!(r.window, Window::Closed { .. }))
            .map(|r| if r.start > now { r.start } else { r.end })
            .filter(|&t| t > now)
            .min()
    }

    /// Open windows by end, for the head's shadow time: their GPUs return at their end.
    pub(super) fn open_window_ends(&self) -> Vec<(SimTime, usize)> {
        let mut v: Vec<(SimTime, usize)> = (0..self.advance.len())
            .filter(|&k| matches!(self.advance[k].window, Window::Open { .. }))
            .map(|k| (self.advance[k].end, k))
            .collect();
        v.sort_unstable();
        v
    }

    /// The reason a job waits behind the head that holds the reservation.
    pub(super) fn behind(&self, r: Reservation) -> Reason {
        match r.holder {
            Holder::Job(holder) => Reason::BehindReservation { holder, start_at: r.start_at },
            Holder::Window(k) => Reason::BehindAdvanceReservation {
                reservation: self.advance[k.idx()].name.clone(),
                start_at: r.start_at,
            },
        }
    }

    /// The active reservation `gpus` GPUs of account `a` for `walltime` from `now` can run in.
    pub(super) fn member_of(&self, a: AccountId, now: SimTime, walltime: Secs) -> Option<usize> {
        self.advance.iter().position(|r| {
            matches!(r.window, Window::Open { .. })
                && now >= r.start
                && now + walltime <= r.end
                && self.in_subtree(a, r.account)
        })
    }

    /// Ends reservations whose window has passed: free GPUs go back to the facility; jobs still
    /// inside keep theirs, now held in the facility's own state.
    pub(super) fn end_reservations(&mut self, now: SimTime) {
        for k in 0..self.advance.len() {
            if self.advance[k].end > now || matches!(self.advance[k].window, Window::Closed { .. }) {
                continue;
            }
            let window = std::mem::replace(&mut self.advance[k].window, Window::Closed { start: None, end: now });
            if let Window::Open { start, parts, inner } = window {
                let free: Parts = parts.iter().map(|&(d, _)| (d, inner.domain_free(d))).filter(|p| p.1 > 0).collect();
                self.cluster.release(&free);
                for j in self.jobs.iter_mut().filter(|j| j.inside == Some(k as u32)) {
                    j.inside = None;
                }
                self.advance[k].window = Window::Closed { start: Some(start), end: now };
            }
            self.easy.reservation = None;
            self.dirty = true;
        }
    }

    /// Opens window `k` on the placement in `scratch`: its GPUs leave the facility's pool for
    /// the account's jobs until its end. Not a job: no usage, not busy.
    fn open_window(&mut self, k: usize, now: SimTime) {
        self.cluster.allocate(&self.scratch);
        let inner = Box::new(self.cluster.restricted_to(&self.scratch));
        self.advance[k].window = Window::Open { start: now, parts: self.scratch.clone(), inner };
    }

    /// Starts `id` inside reservation `k` on the placement in `scratch` (found by the
    /// `inside_reservation` stage in the window's own cluster). False if the window is not open
    /// (the job then stays in the queue).
    pub(super) fn start_inside(&mut self, id: JobId, k: usize, now: SimTime, started: &mut Vec<JobId>) -> bool {
        let Some(inner) = self.advance[k].inner_mut() else { return false };
        inner.allocate(&self.scratch);
        let job = &mut self.jobs[id.idx()];
        job.state = super::JobState::Running { start: now, parts: self.scratch.clone() };
        // inside a reservation its GPUs already count as allocated: no power change to track
        job.power_fraction = 1.0;
        job.inside = Some(k as u32);
        self.running.insert((now + job.spec.walltime, id));
        self.busy_gpus += u64::from(job.spec.gpus);
        let (account, gpus) = (job.spec.account, job.spec.gpus);
        self.account_change(account, i64::from(gpus), now);
        started.push(id);
        true
    }
}

//! A job as the brain keeps it: its spec, state and placement, priority and tier, and what
//! happened to it (preemptions, interruptions, deferrals, the last reason it waits).

use crate::cluster::Parts;
use crate::explain::Reason;
use fabrik_model::{JobId, JobSpec, SimTime};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Pending,
    Running,
    Ended,
}

#[derive(Debug, Clone)]
pub struct JobEntry {
    pub spec: JobSpec,
    pub state: JobState,
    pub parts: Parts,
    pub start: Option<SimTime>,
    pub end: Option<SimTime>,
    pub priority: f64,
    /// GPU-seconds received in earlier runs (runs ended by preemption).
    pub attained: f64,
    pub preemptions: u32,
    /// Times a failure of a node it ran on interrupted it.
    pub interruptions: u32,
    /// Whether the job was within a guarantee of its account's subtree when submitted: its wait
    /// is the time-to-guarantee.
    pub guaranteed_demand: bool,
    /// Ordering tier: 3 advance reservation, 2 starving, 1 within a guarantee, 0 other.
    pub(super) tier: u8,
    /// This entry is the advance reservation with this index (not a job).
    pub reservation: Option<u32>,
    /// The job runs inside the advance reservation with this index.
    pub inside: Option<u32>,
    /// Its GPUs' power limit in this run, as a fraction of their training draw above idle.
    pub power_fraction: f64,
    /// A flexible job held back by the energy-aware modifier until then.
    pub deferred_until: Option<SimTime>,
    /// How often the modifier held it back.
    pub deferrals: u32,
    /// Released from a queue-mode deferral: top tier.
    pub urgent: bool,
    pub(super) why: Reason,
    pub(super) why_pass: u64,
}

impl JobEntry {
    pub(super) fn new(spec: JobSpec, pass: u64) -> JobEntry {
        JobEntry {
            spec,
            state: JobState::Pending,
            parts: Parts::new(),
            start: None,
            end: None,
            priority: 0.0,
            attained: 0.0,
            preemptions: 0,
            interruptions: 0,
            guaranteed_demand: false,
            tier: 0,
            reservation: None,
            inside: None,
            power_fraction: 1.0,
            deferred_until: None,
            deferrals: 0,
            urgent: false,
            why: Reason::NotYetConsidered,
            why_pass: pass,
        }
    }

    /// A pending entry for a spec, for tests of priority functions.
    #[cfg(test)]
    pub(crate) fn for_test(spec: JobSpec) -> JobEntry {
        JobEntry::new(spec, 0)
    }

    /// Why it is where it is, as the last pass that looked at it decided.
    pub fn why(&self) -> &Reason {
        &self.why
    }

    /// GPU-seconds received so far, including the current run.
    pub fn attained_at(&self, now: SimTime) -> f64 {
        let current = match (self.state, self.start) {
            (JobState::Running, Some(s)) => f64::from(self.spec.gpus) * (now - s).0 as f64,
            _ => 0.0,
        };
        self.attained + current
    }

    /// GPU-seconds of the current run not yet saved by a checkpoint.
    pub fn unsaved_at(&self, now: SimTime) -> f64 {
        let Some(start) = self.start.filter(|_| self.state == JobState::Running) else { return 0.0 };
        let ran = (now - start).0;
        let since = match self.spec.checkpoint_interval {
            Some(i) if i.0 > 0 => ran % i.0,
            _ => ran,
        };
        f64::from(self.spec.gpus) * since as f64
    }
}

/// The head's reservation in the last pass.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Reservation {
    pub job: JobId,
    pub start_at: SimTime,
}

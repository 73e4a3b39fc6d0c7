//! A job as the brain keeps it: its spec, state and placement, priority and tier, and what
//! happened to it (preemptions, interruptions, deferrals, the last reason it waits).

use crate::cluster::Parts;
use crate::explain::Reason;
use fabrik_model::{JobId, JobSpec, SimTime};
use serde::Serialize;

/// Where a job is in its life; each state carries what holds only in it.
#[derive(Debug, Clone, PartialEq)]
pub enum JobState {
    /// In the queue.
    Pending,
    /// A flexible job the energy-aware modifier holds back until `until` (out of the queue, or
    /// holding a claim on GPUs that free up by then).
    Deferred { until: SimTime },
    /// Running since `start` on `parts`.
    Running { start: SimTime, parts: Parts },
    /// Gone: `start` of its last run if it ran.
    Ended { start: Option<SimTime>, end: SimTime, outcome: Outcome },
}

/// How a job left the brain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It ran and stopped: completed, failed or killed at its walltime (the body knows which).
    Finished,
    /// Withdrawn before or while running.
    Cancelled,
}

impl JobState {
    /// Pending or deferred: waiting to run.
    pub fn is_waiting(&self) -> bool {
        matches!(self, JobState::Pending | JobState::Deferred { .. })
    }
    pub fn is_running(&self) -> bool {
        matches!(self, JobState::Running { .. })
    }
    pub fn is_ended(&self) -> bool {
        matches!(self, JobState::Ended { .. })
    }
    /// The state's name, as views print it.
    pub fn name(&self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Deferred { .. } => "deferred",
            JobState::Running { .. } => "running",
            JobState::Ended { .. } => "ended",
        }
    }
}

/// The fields the queue's recalculation reads and writes for every pending job lie together
/// (`repr(C)`: the spec's account, GPUs, submission and QoS sit at its end, and the priority,
/// tier and urgency right after it): at 100,000 pending the walk is bound by memory latency,
/// and Rust's own layout spread them over four cache lines.
#[derive(Debug, Clone)]
#[repr(C)]
pub struct JobEntry {
    pub spec: JobSpec,
    pub priority: f64,
    /// Ordering tier: 2 starving, 1 within a guarantee, 0 other.
    pub(super) tier: u8,
    /// Released from a queue-mode deferral: top tier.
    pub urgent: bool,
    /// Whether the job was within a guarantee of its account's subtree when submitted: its wait
    /// is the time-to-guarantee.
    pub guaranteed_demand: bool,
    pub state: JobState,
    /// GPU-seconds received in earlier runs (runs ended by preemption).
    pub attained: f64,
    /// Its GPUs' power limit in this run, as a fraction of their training draw above idle.
    pub power_fraction: f64,
    pub(super) why_pass: u64,
    pub(super) why: Reason,
    /// The job runs inside the advance reservation with this index.
    pub inside: Option<u32>,
    pub preemptions: u32,
    /// Times a failure of a node it ran on interrupted it.
    pub interruptions: u32,
    /// How often the modifier held it back.
    pub deferrals: u32,
}

impl JobEntry {
    pub(super) fn new(spec: JobSpec, pass: u64) -> JobEntry {
        JobEntry {
            spec,
            state: JobState::Pending,
            priority: 0.0,
            attained: 0.0,
            preemptions: 0,
            interruptions: 0,
            guaranteed_demand: false,
            tier: 0,
            inside: None,
            power_fraction: 1.0,
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

    /// Start of the current run, or of the last one of an ended job.
    pub fn start(&self) -> Option<SimTime> {
        match self.state {
            JobState::Running { start, .. } => Some(start),
            JobState::Ended { start, .. } => start,
            _ => None,
        }
    }

    /// When it ended.
    pub fn end(&self) -> Option<SimTime> {
        match self.state {
            JobState::Ended { end, .. } => Some(end),
            _ => None,
        }
    }

    /// The GPUs it holds per domain (none unless running).
    pub fn parts(&self) -> &[(fabrik_model::DomainId, u32)] {
        match &self.state {
            JobState::Running { parts, .. } => parts,
            _ => &[],
        }
    }

    /// Until when the energy-aware modifier holds it back.
    pub fn deferred_until(&self) -> Option<SimTime> {
        match self.state {
            JobState::Deferred { until } => Some(until),
            _ => None,
        }
    }

    /// GPU-seconds received so far, including the current run.
    pub fn attained_at(&self, now: SimTime) -> f64 {
        let current = match self.state {
            JobState::Running { start, .. } => f64::from(self.spec.gpus) * (now - start).0 as f64,
            _ => 0.0,
        };
        self.attained + current
    }

    /// GPU-seconds of the current run not yet saved by a checkpoint.
    pub fn unsaved_at(&self, now: SimTime) -> f64 {
        let JobState::Running { start, .. } = self.state else { return 0.0 };
        let ran = (now - start).0;
        let since = match self.spec.checkpoint_interval {
            Some(i) if i.0 > 0 => ran % i.0,
            _ => ran,
        };
        f64::from(self.spec.gpus) * since as f64
    }

    /// GPU-seconds a preemption now would cost: the unsaved work and a restart of `restart_s`.
    pub fn preemption_cost_at(&self, now: SimTime, restart_s: f64) -> f64 {
        self.unsaved_at(now) + f64::from(self.spec.gpus) * restart_s
    }
}

/// The head's reservation in the last pass.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Reservation {
    pub holder: Holder,
    pub start_at: SimTime,
}

/// Who holds the EASY reservation: the blocked queue head, or an advance reservation waiting
/// for its window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Holder {
    Job(JobId),
    Window(super::ResvId),
}

//! fabrik-sched: the sans-IO scheduling brain.
//!
//! **Architecture Invariant:** nothing here reads a clock, spawns a thread, touches a file or a
//! socket, or draws a random number. Time comes in as `now`; events come in as method calls
//! ([`Scheduler::submit`], [`Scheduler::finish`], [`Scheduler::cancel`]); decisions go out as the
//! list of started jobs from [`Scheduler::schedule`]. The digital twin and the live control plane
//! differ only in who calls these and who carries out the starts.

pub mod cluster;
pub mod explain;
pub mod fairshare;
pub mod policy;
pub mod power;
pub mod scheduler;
pub mod slurm_priority;

pub use cluster::{Cluster, NoFit, Parts};
pub use explain::{Explanation, Reason};
pub use fairshare::{FairShareConfig, Usage};
pub use policy::{Policy, POLICIES};
pub use power::{DeferMode, EnergyAware, PowerLimits};
pub use scheduler::snapshot::{Forecast, JobForecast, SnapJob, Snapshot, TwinService, SNAPSHOT_VERSION};
pub use scheduler::{
    Holder, IdTable, JobEntry, JobState, Outcome, Reservation, ResvId, SchedConfig, Scheduler, Window,
};

use fabrik_model::JobId;
use thiserror::Error;

#[derive(Debug, Error, PartialEq)]
pub enum SchedError {
    #[error("unknown policy '{0}' (known: {1})")]
    UnknownPolicy(String, String),
    #[error("job '{job}' asks for {gpus} GPUs, more than any pool of its GPU type holds")]
    TooLarge { job: String, gpus: u32 },
    #[error("{0}")]
    Invalid(String),
    #[error("unknown job {}", .0 .0)]
    UnknownJob(JobId),
    #[error("job {} is not running", .0 .0)]
    NotRunning(JobId),
    #[error("job {} has not ended", .0 .0)]
    NotEnded(JobId),
}

#[cfg(test)]
mod tests;

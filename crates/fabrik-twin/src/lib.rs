//! fabrik-twin: the digital twin. A discrete-event engine in virtual time drives the same
//! scheduling core as the live control plane, over synthetic or trace workloads, and reports
//! what happened.
//!
//! **Architecture Invariant:** identical inputs and seed give a byte-identical JSON report: the
//! event queue orders by (time, sequence number), all randomness comes from seeded ChaCha
//! generators in the workload sources, and reports iterate ordered collections only.

pub mod compare;
pub mod config;
pub mod energy;
pub mod engine;
pub mod failure_model;
pub mod failures;
pub mod forecast;
pub mod fork;
pub mod html;
mod joblog;
pub mod metrics;
pub mod report;
pub mod telemetry;
pub mod whatif;
pub mod workload;

pub use config::TwinConfig;
pub use engine::{Progress, Twin, TwinError};
pub use report::Report;
pub use workload::{TraceJob, Workload, WorkloadError};

use fabrik_model::Facility;

/// Runs a workload on a facility under a policy without progress reporting.
pub fn simulate(facility: &Facility, workload: &Workload, cfg: TwinConfig) -> Result<Report, TwinError> {
    Twin::new(facility, workload, cfg)?.run(|_| {})
}

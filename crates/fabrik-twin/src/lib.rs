//! fabrik-twin: the digital twin. A discrete-event engine in virtual time drives the same
//! scheduling core as the live control plane, over synthetic or trace workloads, and reports
//! what happened.
//!
//! **Architecture Invariant:** identical inputs and seed give a byte-identical JSON report: the
//! event queue orders by (time, sequence number), all randomness comes from seeded ChaCha
//! generators in the workload sources, and reports iterate ordered collections only.

pub mod compare;
pub mod energy;
pub mod engine;
pub mod failures;
pub mod html;
pub mod metrics;
pub mod report;
pub mod workload;

pub use engine::{Progress, Twin, TwinConfig, TwinError};
pub use report::Report;
pub use workload::{TraceJob, Workload, WorkloadError};

use fabrik_model::Facility;

/// Runs a workload on a facility under a policy without progress reporting.
pub fn simulate(facility: &Facility, workload: &Workload, cfg: TwinConfig) -> Result<Report, TwinError> {
    Twin::new(facility, workload, cfg)?.run(|_| {})
}

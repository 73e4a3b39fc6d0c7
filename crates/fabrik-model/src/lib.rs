//! fabrik-model: the nouns of fabrik — units, the GPU catalog, facility topology, the tenant share
//! tree and job specifications — and parsing of the files that describe them. No I/O: callers
//! hand in file contents and a name for error messages.

pub mod energy;
pub mod error;
pub mod facility;
pub mod gpu;
pub mod grid;
pub mod health;
pub mod ids;
pub mod job;
pub mod reliability;
pub mod runtime_model;
pub mod slurm;
pub mod slurm_sched;
pub mod telemetry;
pub mod tenants;
pub mod units;
pub mod users;

pub use error::ModelError;
pub use facility::{Facility, FacilitySummary, PRESETS};
pub use gpu::GpuType;
pub use ids::{AccountId, DomainId, GpuTypeId, GroupId, HallId, JobId, PoolId};
pub use job::{ArraySpec, DepKind, Dependency, DependencySpec, JobSpec, Qos};
pub use tenants::{Account, TenantTree};
pub use units::{Joules, Secs, SimTime, Watts};

//! Job specifications as the scheduler sees them. The actual runtime of a job is not part of the
//! spec: only the twin knows it in advance.

use crate::ids::{AccountId, GpuTypeId};
use crate::units::{Secs, SimTime};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Quality-of-service class: the priority tier a job was submitted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Qos {
    High,
    #[default]
    Normal,
    Low,
}

impl Qos {
    /// The QoS priority factor in [0, 1] used by the multifactor priority.
    pub fn factor(self) -> f64 {
        match self {
            Qos::High => 1.0,
            Qos::Normal => 0.5,
            Qos::Low => 0.0,
        }
    }
    pub const ALL: [Qos; 3] = [Qos::High, Qos::Normal, Qos::Low];
}

impl fmt::Display for Qos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Qos::High => "high",
            Qos::Normal => "normal",
            Qos::Low => "low",
        })
    }
}

impl FromStr for Qos {
    type Err = String;
    fn from_str(s: &str) -> Result<Qos, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "high" => Ok(Qos::High),
            "normal" | "" => Ok(Qos::Normal),
            "low" => Ok(Qos::Low),
            other => Err(format!("unknown QoS '{other}' (expected high, normal or low)")),
        }
    }
}

/// What a tenant asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    /// The external name (trace job id, user-chosen name).
    pub name: String,
    pub account: AccountId,
    /// A gang: all of these GPUs start together or none do.
    pub gpus: u32,
    pub gpu_type: Option<GpuTypeId>,
    pub submit: SimTime,
    /// The user's runtime estimate; the job is killed when it runs this long.
    pub walltime: Secs,
    pub qos: Qos,
    pub preemptible: bool,
    pub checkpoint_interval: Option<Secs>,
    pub earliest_start: Option<SimTime>,
    pub deadline: Option<SimTime>,
}

impl JobSpec {
    /// A plain job: normal QoS, not preemptible, no checkpoints or time constraints.
    pub fn new(name: impl Into<String>, account: AccountId, gpus: u32, submit: SimTime, walltime: Secs) -> JobSpec {
        JobSpec {
            name: name.into(),
            account,
            gpus,
            gpu_type: None,
            submit,
            walltime,
            qos: Qos::Normal,
            preemptible: false,
            checkpoint_interval: None,
            earliest_start: None,
            deadline: None,
        }
    }
}

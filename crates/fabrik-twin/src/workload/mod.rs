//! Workload sources: the synthetic generator and trace readers. Each yields [`TraceJob`]s: a job
//! spec plus the runtime only the twin knows.

pub mod fabrik_csv;
pub mod itp;
pub mod sacct;
pub mod swf;
pub mod synthetic;
pub mod traces;

use fabrik_model::{AccountId, JobSpec, Secs, TenantTree};
use serde::Serialize;
use thiserror::Error;

#[derive(Debug, Clone, PartialEq)]
pub struct TraceJob {
    pub spec: JobSpec,
    /// How long the job runs if it is not killed at its walltime.
    pub runtime: Secs,
}

/// A workload ready to replay: jobs sorted by submission time.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    /// Where it came from, for the report (`synthetic seed 1`, `itp:cluster04.csv`).
    pub source: String,
    /// Assumptions a reader of the report must know (e.g. walltimes the trace does not record).
    pub notes: Vec<String>,
    pub jobs: Vec<TraceJob>,
    /// The Unix time of the workload's second 0, where the source records wall-clock times
    /// (sacct): a policy that rounds absolute times (Slurm's backfill) rounds as the cluster did.
    pub clock_origin: Option<u64>,
}

/// Which jobs of a replayed trace may be preempted. Traces rarely record it (ITP, Philly, Helios,
/// PAI and SWF do not; sacct has the QoS): readers mark such jobs non-preemptible, under which
/// a preemptive policy (`las`) cannot preempt at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Preemptible {
    /// As the reader set it (sacct: low QoS; the synthetic workload: low QoS; others: none).
    AsRecorded,
    All,
    None,
}

impl Workload {
    /// Its jobs as completed history for the runtime model: account path, submission (on the
    /// workload's clock, plus its Unix origin where known), walltime and runtime (capped at the
    /// walltime: a job runs no longer).
    pub fn completed(&self, tenants: &fabrik_model::TenantTree) -> Vec<fabrik_model::runtime_model::Completed> {
        let origin = self.clock_origin.unwrap_or(0);
        self.jobs
            .iter()
            .filter(|j| j.spec.account.idx() < tenants.len())
            .map(|j| fabrik_model::runtime_model::Completed {
                account: tenants.get(j.spec.account).path.clone(),
                gpus: j.spec.gpus,
                submit_unix: origin + j.spec.submit.0,
                walltime_s: j.spec.walltime.0,
                runtime_s: j.runtime.0.min(j.spec.walltime.0),
                running: false,
            })
            .collect()
    }
}

impl std::str::FromStr for Preemptible {
    type Err = String;
    fn from_str(s: &str) -> Result<Preemptible, String> {
        match s {
            "as-recorded" => Ok(Preemptible::AsRecorded),
            "all" => Ok(Preemptible::All),
            "none" => Ok(Preemptible::None),
            other => Err(format!("'{other}' is not all, none or as-recorded")),
        }
    }
}

impl Workload {
    /// Drops the jobs facility `f` can never run — more GPUs than its largest pool of their
    /// type holds, or a GPU type it lacks — and notes how many (a replay of another cluster's
    /// trace need not abort on one oversized job). Returns the number dropped.
    pub fn skip_unfit(&mut self, f: &fabrik_model::Facility) -> usize {
        let max_any = f.max_gang(None);
        let max_of: Vec<u64> =
            (0..f.catalog.len()).map(|t| f.max_gang(Some(fabrik_model::GpuTypeId(t as u32)))).collect();
        let before = self.jobs.len();
        let (mut big, mut typed) = (0usize, 0usize);
        self.jobs.retain(|j| {
            let max = j.spec.gpu_type.map_or(max_any, |t| max_of.get(t.idx()).copied().unwrap_or(0));
            let keep = u64::from(j.spec.gpus) <= max;
            if !keep {
                if max == 0 {
                    typed += 1;
                } else {
                    big += 1;
                }
            }
            keep
        });
        let dropped = before - self.jobs.len();
        if dropped > 0 {
            self.notes.push(format!(
                "{dropped} jobs skipped (--skip-unfit): {big} larger than facility {}'s largest pool of their type ({max_any} GPUs of any type), {typed} of a GPU type it lacks",
                f.name
            ));
        }
        dropped
    }

    /// Marks every job preemptible or none (noting it for the report), or leaves them as read.
    pub fn set_preemptible(&mut self, p: Preemptible) {
        let value = match p {
            Preemptible::AsRecorded => return,
            Preemptible::All => true,
            Preemptible::None => false,
        };
        for j in &mut self.jobs {
            j.spec.preemptible = value;
        }
        self.notes.push(format!(
            "every job marked {}preemptible (--preemptible or a preset)",
            if value { "" } else { "non-" }
        ));
    }

    pub fn sort(&mut self) {
        self.jobs.sort_by_key(|j| j.spec.submit);
    }
    pub fn stats(&self) -> WorkloadStats {
        let gpu_hours: f64 = self.jobs.iter().map(|j| f64::from(j.spec.gpus) * j.runtime.hours()).sum();
        WorkloadStats {
            jobs: self.jobs.len() as u64,
            gpu_hours,
            max_gpus: self.jobs.iter().map(|j| j.spec.gpus).max().unwrap_or(0),
            last_submit_s: self.jobs.iter().map(|j| j.spec.submit.0).max().unwrap_or(0),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkloadStats {
    pub jobs: u64,
    pub gpu_hours: f64,
    pub max_gpus: u32,
    pub last_submit_s: u64,
}

#[derive(Debug, Error)]
pub enum WorkloadError {
    #[error("{origin}: line {line}: {msg}")]
    Line { origin: String, line: u64, msg: String },
    #[error("{origin}: {msg}")]
    File { origin: String, msg: String },
}

/// A tenant tree of owners as trace readers find them: each `(parent, leaf)` pair becomes the
/// node `parent` with the leaf `parent/leaf` below it, all with equal shares (Slurm's default
/// `Fairshare=1`).
pub fn owner_tree<'a>(
    owners: impl Iterator<Item = (&'a str, &'a str)>,
    origin: &str,
) -> Result<TenantTree, WorkloadError> {
    let mut paths: Vec<String> = Vec::new();
    for (parent, leaf) in owners {
        for p in [parent.to_string(), format!("{parent}/{leaf}")] {
            if !paths.contains(&p) {
                paths.push(p);
            }
        }
    }
    paths.sort();
    let specs: Vec<fabrik_model::tenants::AccountSpec> =
        paths.into_iter().map(|p| fabrik_model::tenants::AccountSpec::new(p, 1.0)).collect();
    TenantTree::from_specs(&specs, origin)
        .map_err(|e| WorkloadError::File { origin: origin.into(), msg: e.to_string() })
}

/// The note for jobs whose walltime the trace does not give.
pub fn walltime_note(n: u64, what: &str) -> String {
    format!("{n} jobs without {what}: walltime taken as 2 × the run, rounded up to an hour")
}

/// Traces without tenants: a job is charged to a leaf chosen by a hash of its id, in proportion
/// to the leaves' shares, so the replay is deterministic and every account sees demand.
pub fn account_by_hash(tenants: &TenantTree, key: &str) -> AccountId {
    // FNV-1a: stable across platforms and Rust versions, unlike the std hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let x = (h >> 11) as f64 / (1u64 << 53) as f64;
    let mut acc = 0.0;
    let mut last = AccountId(0);
    for (id, a) in tenants.leaves() {
        acc += a.norm_share;
        last = id;
        if x < acc {
            return id;
        }
    }
    last
}

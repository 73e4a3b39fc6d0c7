//! Scheduling policies. A policy is a priority function plus a backfill mode; the pass itself
//! (head, reservation, backfill) is shared by all of them in [`crate::Scheduler`].

use crate::fairshare::{FairShareConfig, Usage};

use crate::scheduler::JobEntry;
use crate::SchedError;
use fabrik_model::{SimTime, TenantTree};

/// What a priority function may look at.
pub struct PriorityCtx<'a> {
    pub now: SimTime,
    pub usage: &'a Usage,
    pub tenants: &'a TenantTree,
    /// The largest gang the facility can hold, to normalise the job-size factor.
    pub max_gang: u64,
}

pub trait Policy: Send + Sync {
    fn name(&self) -> &'static str;
    /// Whether later jobs may start ahead of a blocked head (EASY backfilling) or the head blocks
    /// the queue.
    fn backfill(&self) -> bool;
    /// Higher runs first; equal priorities run in submission order.
    fn priority(&self, ctx: &PriorityCtx<'_>, job: &JobEntry) -> f64;
    /// Whether priorities depend on time and usage, and so are recomputed periodically.
    fn dynamic(&self) -> bool {
        false
    }
    /// Called at each priority recalculation, before the priorities: a policy may precompute
    /// what all jobs share (the `slurm` policy's Fair Tree ranking).
    fn refresh(&mut self, _ctx: &PriorityCtx<'_>) {}
    /// Whether a blocked job may preempt running preemptible jobs of lower priority.
    fn preempts_lower_priority(&self) -> bool {
        false
    }
}

/// Strict first-come-first-served: the head of the queue blocks everything behind it.
pub struct Fifo;
/// FIFO with EASY backfilling on requested walltimes.
pub struct FifoBackfill;
/// Multifactor priority with EASY backfilling.
pub struct FairShare(pub FairShareConfig);

impl Policy for Fifo {
    fn name(&self) -> &'static str {
        "fifo"
    }
    fn backfill(&self) -> bool {
        false
    }
    fn priority(&self, _: &PriorityCtx<'_>, _: &JobEntry) -> f64 {
        0.0
    }
}

impl Policy for FifoBackfill {
    fn name(&self) -> &'static str {
        "fifo-backfill"
    }
    fn backfill(&self) -> bool {
        true
    }
    fn priority(&self, _: &PriorityCtx<'_>, _: &JobEntry) -> f64 {
        0.0
    }
}

impl Policy for FairShare {
    fn name(&self) -> &'static str {
        "fair-share"
    }
    fn backfill(&self) -> bool {
        true
    }
    fn dynamic(&self) -> bool {
        true
    }
    fn priority(&self, ctx: &PriorityCtx<'_>, job: &JobEntry) -> f64 {
        let c = &self.0;
        let s = &job.spec;
        let age = (ctx.now - s.submit).0 as f64 / c.max_age.0.max(1) as f64;
        let size = f64::from(s.gpus) / ctx.max_gang.max(1) as f64;
        c.w_age * age.min(1.0)
            + c.w_fairshare * ctx.usage.factor(ctx.tenants, s.account)
            + c.w_size * size.min(1.0)
            + c.w_qos * s.qos.factor()
    }
}

/// Discretised least-attained-service (Tiresias, NSDI '19): jobs sit in queues by the GPU-time
/// they have received (thresholds in GPU-seconds); lower queues first, FIFO within a queue; a
/// blocked job preempts running preemptible jobs of later queues. Needs no runtime estimates
/// for ordering (walltimes still bound backfilling).
pub struct Las {
    pub thresholds_gpu_s: Vec<f64>,
}

impl Las {
    pub fn queue(&self, attained_gpu_s: f64) -> usize {
        self.thresholds_gpu_s.iter().filter(|&&t| attained_gpu_s >= t).count()
    }
}

impl Policy for Las {
    fn name(&self) -> &'static str {
        "las"
    }
    fn backfill(&self) -> bool {
        true
    }
    /// Static in the queue: a pending job's attained service does not grow, and every path
    /// back into the queue (preemption, interruption, an undone start) computes its priority
    /// anew. Running jobs' priorities, which do grow, are computed when victims are chosen.
    fn dynamic(&self) -> bool {
        false
    }
    fn preempts_lower_priority(&self) -> bool {
        true
    }
    fn priority(&self, ctx: &PriorityCtx<'_>, job: &JobEntry) -> f64 {
        -(self.queue(job.attained_at(ctx.now)) as f64)
    }
}

/// The policies selectable by name, with a one-line description each.
pub const POLICIES: &[(&str, &str)] = &[
    ("fifo", "strict first-come-first-served; the queue head blocks all later jobs (baseline)"),
    ("fifo-backfill", "FIFO with EASY backfilling: later jobs may start if they cannot delay the head's reservation"),
    ("fair-share", "multifactor priority (age, decayed usage vs share tree, job size, QoS) with EASY backfilling"),
    ("las", "least attained service (Tiresias): queues by GPU-time received; preempts jobs that received more"),
    ("slurm", "Slurm 22.05's own scheduling: priority/basic or multifactor, main + backfill scheduler, cons_tres node choice (the facility's [slurm] settings)"),
];

pub fn by_name(name: &str, cfg: &crate::SchedConfig) -> Result<Box<dyn Policy>, SchedError> {
    match name {
        "fifo" => Ok(Box::new(Fifo)),
        "fifo-backfill" => Ok(Box::new(FifoBackfill)),
        "fair-share" => Ok(Box::new(FairShare(cfg.fair_share.clone()))),
        "las" => {
            let t = &cfg.las_thresholds_gpu_hours;
            if t.iter().any(|x| !x.is_finite() || *x < 0.0) || t.windows(2).any(|w| w[0] >= w[1]) {
                return Err(SchedError::Invalid("las_thresholds_gpu_hours must be increasing and non-negative".into()));
            }
            Ok(Box::new(Las { thresholds_gpu_s: t.iter().map(|h| h * 3600.0).collect() }))
        }
        "slurm" => {
            Err(SchedError::Invalid("the slurm policy is built from a facility (Scheduler::with_policy)".into()))
        }
        other => Err(SchedError::UnknownPolicy(
            other.to_string(),
            POLICIES.iter().map(|p| p.0).collect::<Vec<_>>().join(", "),
        )),
    }
}

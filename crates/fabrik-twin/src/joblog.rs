//! What happened to each job in the twin beyond what the scheduler records: its runs, the work
//! left, what was lost and spent restarting. The engine writes it; the report reads it.

use fabrik_model::SimTime;

/// One run of a job: from its start to its end or stop, at a mean IT draw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Run {
    pub start: SimTime,
    pub end: SimTime,
    /// Mean IT power over the run, W.
    pub it_w: f64,
}

/// What happened to each job beyond what the scheduler records.
#[derive(Debug, Clone, Default)]
pub(crate) struct JobLog {
    pub first_start: Option<SimTime>,
    /// Work still to do, s.
    pub remaining: u64,
    pub run_start: SimTime,
    pub run_overhead: u64,
    pub epoch: u32,
    /// Overhead to pay when it next starts (restart after a preemption or a failure).
    pub next_overhead: u64,
    pub interruptions: u32,
    pub fail_lost_gpu_s: f64,
    /// Checkpoint interval (0: none) and blocking write time of this job's runs.
    pub ckpt_interval: u64,
    pub ckpt_cost: u64,
    pub killed: bool,
    /// GPU-seconds held over all runs.
    pub held_gpu_s: f64,
    pub lost_gpu_s: f64,
    pub overhead_gpu_s: f64,
    /// Relative speed of the current run (below 1 when power-limited) and its mean IT draw over
    /// the run, W; `saving_w` is how far that mean is below the scheduler's full-run estimate.
    pub speed: f64,
    pub watts: f64,
    pub saving_w: f64,
    /// Lowest power fraction over its runs.
    pub min_power_fraction: f64,
    /// Why the next run starts with a restart, and why the current one did.
    pub next_cause: Option<RestartCause>,
    pub run_cause: Option<RestartCause>,
    pub runs: Vec<Run>,
}

/// What a run's restart overhead follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RestartCause {
    Preemption,
    Failure,
    Drain,
}

impl JobLog {
    /// Ends the current run of a `gpus`-GPU job at `end`: counts the GPU-seconds it held and
    /// spent restarting; returns the latter with their cause (none for a first run). Most jobs
    /// run once: the list grows one run at a time (a `Vec`'s first push reserves four, which a
    /// year of 2.6 M jobs pays for in memory).
    pub fn end_run(&mut self, end: SimTime, gpus: f64) -> Option<(RestartCause, f64)> {
        let ran = (end - self.run_start).0;
        self.held_gpu_s += gpus * ran as f64;
        let overhead = gpus * ran.min(self.run_overhead) as f64;
        self.overhead_gpu_s += overhead;
        self.runs.reserve_exact(1);
        self.runs.push(Run { start: self.run_start, end, it_w: self.watts });
        self.run_cause.take().map(|c| (c, overhead))
    }
}

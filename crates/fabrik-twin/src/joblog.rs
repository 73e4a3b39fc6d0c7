//! What happened to each job in the twin beyond what the scheduler records. The engine writes
//! it; the report reads it. Two parts, so that memory follows the jobs alive, not every job of
//! the run (a year of the 100,096-GPU preset is 2.6 M jobs):
//! - `JobRecord`, one per job for the whole run: what the report reads (its waits, GPU-seconds
//!   held and lost, interruptions, what the brain counted), compact;
//! - `Live`, one per job from its arrival to its end, in an `IdTable`: the run in progress (work
//!   left, the run's start, epoch, speed and draw, the restart it pays next).
//!
//! Each run (start, end, mean IT draw) goes to one list for the whole run, linked per job: the
//! report attributes a job's energy run by run once the hourly ledger is complete.

use fabrik_model::{Secs, SimTime};
use fabrik_sched::{IdTable, JobEntry};

/// One run of a job: from its start to its end or stop, at a mean IT draw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Run {
    pub start: SimTime,
    pub end: SimTime,
    /// Mean IT power over the run, W.
    pub it_w: f64,
    /// The job's previous run (`NO_RUN`: this is its first).
    prev: u32,
}

/// No run (yet).
const NO_RUN: u32 = u32::MAX;

/// What the report reads of one job.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct JobRecord {
    pub first_start: Option<SimTime>,
    /// When it ended (set once, at its last run's end).
    pub end: Option<SimTime>,
    /// GPU-seconds held over all runs, lost to preemptions and to failures, and spent
    /// restarting.
    pub held_gpu_s: f64,
    pub lost_gpu_s: f64,
    pub fail_lost_gpu_s: f64,
    pub overhead_gpu_s: f64,
    /// GPU-seconds spent writing blocking checkpoints.
    pub ckpt_gpu_s: f64,
    /// Lowest power fraction over its runs.
    pub min_power_fraction: f64,
    /// The brain's walltime (a policy may round it: slurm to whole minutes).
    pub walltime: Secs,
    pub interruptions: u32,
    /// What the brain counted: preemptions and the modifier's deferrals.
    pub preemptions: u32,
    pub deferrals: u32,
    /// Its last run was killed at the walltime.
    pub killed: bool,
    /// Within a guarantee when submitted: its wait is a time-to-guarantee.
    pub guaranteed_demand: bool,
    last_run: u32,
}

impl Default for JobRecord {
    fn default() -> Self {
        JobRecord {
            first_start: None,
            end: None,
            held_gpu_s: 0.0,
            lost_gpu_s: 0.0,
            fail_lost_gpu_s: 0.0,
            overhead_gpu_s: 0.0,
            ckpt_gpu_s: 0.0,
            min_power_fraction: 1.0,
            walltime: Secs(0),
            interruptions: 0,
            preemptions: 0,
            deferrals: 0,
            killed: false,
            guaranteed_demand: false,
            last_run: NO_RUN,
        }
    }
}

/// The run state of a job from its arrival to its end.
#[derive(Debug, Clone, Default)]
pub(crate) struct Live {
    /// Work still to do, s.
    pub remaining: u64,
    pub run_start: SimTime,
    pub run_overhead: u64,
    /// Counts runs started and stopped: an end event of an earlier run carries an old one.
    pub epoch: u32,
    /// Overhead to pay when it next starts (restart after a preemption or a failure).
    pub next_overhead: u64,
    /// Checkpoint interval (0: none) and blocking write time of this job's runs.
    pub ckpt_interval: u64,
    pub ckpt_cost: u64,
    /// Seconds of blocking checkpoint writes the current run makes if it runs to its end.
    pub run_ckpt_s: u64,
    /// Relative speed of the current run (below 1 when power-limited) and its mean IT draw over
    /// the run, W; `saving_w` is how far that mean is below the scheduler's full-run estimate.
    pub speed: f64,
    pub watts: f64,
    pub saving_w: f64,
    /// Why the next run starts with a restart, and why the current one did.
    pub next_cause: Option<RestartCause>,
    pub run_cause: Option<RestartCause>,
}

/// What a run's restart overhead follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RestartCause {
    Preemption,
    Failure,
    Drain,
}

/// Every job's record, the live jobs' run state and every run.
#[derive(Debug, Default)]
pub(crate) struct JobLog {
    pub records: Vec<JobRecord>,
    pub live: IdTable<Live>,
    runs: Vec<Run>,
}

impl JobLog {
    /// Room for `n` jobs' records (the twin knows its workload).
    pub fn with_capacity(n: usize) -> JobLog {
        JobLog { records: Vec::with_capacity(n), live: IdTable::default(), runs: Vec::with_capacity(n) }
    }

    /// A job arrives with `work` seconds to do; returns its index.
    pub fn arrive(&mut self, work: u64) -> usize {
        self.records.push(JobRecord::default());
        self.live.push(Live { remaining: work, speed: 1.0, ..Live::default() });
        self.records.len() - 1
    }

    /// Ends the current run of job `idx` (`gpus` GPUs) at `end`, after `ckpt_s` seconds of
    /// checkpoint writes: counts the GPU-seconds it held, spent restarting and writing
    /// checkpoints; returns the restart's with its cause (none for a first run).
    pub fn end_run(&mut self, idx: usize, end: SimTime, gpus: f64, ckpt_s: u64) -> Option<(RestartCause, f64)> {
        let l = &mut self.live[idx];
        let r = &mut self.records[idx];
        let ran = (end - l.run_start).0;
        r.held_gpu_s += gpus * ran as f64;
        let restarting = ran.min(l.run_overhead);
        let overhead = gpus * restarting as f64;
        r.overhead_gpu_s += overhead;
        r.ckpt_gpu_s += gpus * ckpt_s.min(ran - restarting) as f64;
        self.runs.push(Run { start: l.run_start, end, it_w: l.watts, prev: r.last_run });
        r.last_run = (self.runs.len() - 1) as u32;
        l.run_cause.take().map(|c| (c, overhead))
    }

    /// Job `idx` ended for good: what the brain counted goes to its record (the brain's entry,
    /// retired, is `e`) and its run state is dropped.
    pub fn ended(&mut self, idx: usize, end: SimTime, e: &JobEntry) {
        let r = &mut self.records[idx];
        r.end = Some(end);
        r.walltime = e.spec.walltime;
        r.preemptions = e.preemptions;
        r.deferrals = e.deferrals;
        r.guaranteed_demand = e.guaranteed_demand;
        self.live.retire(idx);
    }

    /// Job `idx`'s runs in the order they ran (into `out`, cleared first).
    pub fn runs_of(&self, idx: usize, out: &mut Vec<Run>) {
        out.clear();
        let mut k = self.records[idx].last_run;
        while k != NO_RUN {
            let r = self.runs[k as usize];
            out.push(r);
            k = r.prev;
        }
        out.reverse();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fabrik_model::{Facility, JobSpec};
    use fabrik_sched::{SchedConfig, Scheduler};

    #[test]
    fn runs_are_listed_per_job_in_order_and_the_live_state_goes_at_the_end() {
        let mut log = JobLog::with_capacity(2);
        assert_eq!((log.arrive(100), log.arrive(50)), (0, 1));
        // job 0 runs 0-10 (restarting after nothing), job 1 runs 5-55, job 0 runs again 20-110
        // after a preemption with 30 s of restart overhead
        log.live[0].watts = 700.0;
        assert_eq!(log.end_run(0, SimTime(10), 8.0, 0), None);
        log.live[1].run_start = SimTime(5);
        log.live[1].watts = 100.0;
        log.end_run(1, SimTime(55), 1.0, 0);
        let l = &mut log.live[0];
        (l.run_start, l.run_overhead, l.run_cause, l.watts) = (SimTime(20), 30, Some(RestartCause::Preemption), 650.0);
        // 8 GPUs × 30 s restarting; 10 s of checkpoint writes
        assert_eq!(log.end_run(0, SimTime(110), 8.0, 10), Some((RestartCause::Preemption, 240.0)));
        let mut runs = Vec::new();
        log.runs_of(0, &mut runs);
        let spans: Vec<_> = runs.iter().map(|r| (r.start.0, r.end.0, r.it_w)).collect();
        assert_eq!(spans, vec![(0, 10, 700.0), (20, 110, 650.0)]);
        log.runs_of(1, &mut runs);
        assert_eq!(runs.iter().map(|r| (r.start.0, r.end.0)).collect::<Vec<_>>(), vec![(5, 55)]);
        // 8 × (10 + 90) held, 240 restarting
        let r = &log.records[0];
        assert_eq!((r.held_gpu_s, r.overhead_gpu_s, r.ckpt_gpu_s), (800.0, 240.0, 80.0));
        // the brain's entry of a job that ended: its walltime and counts go to the record
        let f = Facility::from_shorthand("1x8:8").unwrap();
        let mut s = Scheduler::for_facility(&f, "fifo", SchedConfig::default(), SimTime(0)).unwrap();
        let account = f.tenants.leaves().next().unwrap().0;
        let id = s.submit(JobSpec::new("a", account, 8, SimTime(0), Secs(600)), SimTime(0)).unwrap();
        let mut started = Vec::new();
        s.schedule(SimTime(0), &mut started);
        s.finish(id, SimTime(110)).unwrap();
        log.ended(0, SimTime(110), &s.retire(id).unwrap());
        assert!(log.live.get(0).is_none() && log.live.get(1).is_some());
        let r = &log.records[0];
        assert_eq!((r.end, r.preemptions, r.walltime), (Some(SimTime(110)), 0, Secs(600)));
    }
}

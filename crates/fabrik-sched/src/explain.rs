//! "Why is job J pending?" answered as data.

use crate::cluster::NoFit;
use fabrik_model::{JobId, SimTime};
use serde::Serialize;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reason {
    /// Submitted since the last scheduling pass.
    NotYetConsidered,
    Running {
        since: SimTime,
        killed_at: SimTime,
    },
    Ended {
        at: SimTime,
    },
    WaitingForEarliestStart {
        at: SimTime,
    },
    /// It waits for another job (Slurm's reason `Dependency`).
    Dependency {
        #[serde(rename = "type")]
        kind: fabrik_model::DepKind,
        on: String,
    },
    /// A job it depends on ended so that it can never start (`DependencyNeverSatisfied`); it
    /// stays pending until cancelled, as in Slurm.
    DependencyNeverSatisfied {
        #[serde(rename = "type")]
        kind: fabrik_model::DepKind,
        on: String,
    },
    /// A job array's throttle: `limit` of its tasks run already (Slurm's JobArrayTaskLimit).
    ArrayThrottle {
        limit: u32,
    },
    /// `singleton`: an earlier job of the same name and account is still waiting or running.
    Singleton {
        on: String,
    },
    /// The GPUs it needs are not free.
    Resources {
        no_fit: NoFit,
    },
    /// It is the queue head and holds the reservation: it starts at `start_at` at the latest
    /// (running jobs' walltimes bound that time).
    HoldsReservation {
        start_at: SimTime,
    },
    /// It would fit now, but would delay the head's reservation.
    BehindReservation {
        holder: JobId,
        start_at: SimTime,
    },
    /// It would fit now, but would still hold GPUs when an advance reservation's window opens.
    BehindAdvanceReservation {
        reservation: String,
        start_at: SimTime,
    },
    /// Strict FIFO: it waits behind the blocked queue head.
    BehindQueueHead {
        head: JobId,
    },
    /// The last pass stopped looking before reaching it (bounded backfill depth).
    BeyondBackfillDepth {
        position: usize,
        depth: usize,
    },
    /// Its account (or an ancestor) would exceed its GPU limit.
    AccountAtLimit {
        account: String,
        limit: u64,
    },
    /// It was preempted and requeued.
    Preempted {
        at: SimTime,
    },
    /// A node it ran on failed; it was requeued.
    Interrupted {
        at: SimTime,
    },
    /// It was chosen to start but the body could not carry that out (the store refused the
    /// record, the executor could not launch it); it went back to the queue.
    StartUndone {
        at: SimTime,
    },
    /// Starting it would take facility power over the cap.
    PowerCap {
        cap_mw: f64,
        now_mw: f64,
        need_mw: f64,
    },
    /// A flexible job the energy-aware modifier holds back to a cleaner or cheaper hour.
    Deferred {
        until: SimTime,
        signal_now: f64,
        signal_then: f64,
    },
    /// Its account has used more than its entitled share recently (lowers its priority).
    AccountOverShare {
        account: String,
        usage_share: f64,
        entitled_share: f64,
    },
}

impl Reason {
    /// The reason as a sentence, with times written by `time` (the twin shows virtual days, the
    /// live control plane calendar time).
    pub fn describe(&self, time: &dyn Fn(SimTime) -> String) -> String {
        struct D<'a>(&'a Reason, &'a dyn Fn(SimTime) -> String);
        impl fmt::Display for D<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.write(f, self.1)
            }
        }
        D(self, time).to_string()
    }
}

/// Power in MW, or in kW below 1 MW (small test facilities).
fn power(mw: f64) -> String {
    if mw.abs() < 1.0 {
        format!("{:.1} kW", mw * 1000.0)
    } else {
        format!("{mw:.2} MW")
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f, &|t: SimTime| t.to_string())
    }
}

impl Reason {
    fn write(&self, f: &mut fmt::Formatter<'_>, time: &dyn Fn(SimTime) -> String) -> fmt::Result {
        let t = time;
        match self {
            Reason::NotYetConsidered => write!(f, "submitted since the last scheduling pass"),
            Reason::Running { since, killed_at } => {
                write!(f, "running since {}; walltime ends at {}", t(*since), t(*killed_at))
            }
            Reason::Ended { at } => write!(f, "ended at {}", t(*at)),
            Reason::WaitingForEarliestStart { at } => {
                write!(f, "waiting for its earliest start at {}", t(*at))
            }
            Reason::Dependency { kind, on } => {
                let what = match kind {
                    fabrik_model::DepKind::After => "to start",
                    fabrik_model::DepKind::AfterAny => "to end",
                    fabrik_model::DepKind::AfterOk => "to complete successfully",
                    fabrik_model::DepKind::AfterNotOk => "to fail",
                };
                write!(f, "dependency: waits for job {on} {what} ({})", kind.name())
            }
            Reason::DependencyNeverSatisfied { kind, on } => {
                write!(f, "dependency never satisfied: job {on} ended otherwise ({}); cancel it", kind.name())
            }
            Reason::ArrayThrottle { limit } => write!(f, "job array: {limit} of its tasks run already (%{limit})"),
            Reason::Singleton { on } => write!(f, "singleton: job {on} of the same name and account comes first"),
            Reason::Resources { no_fit } => match no_fit {
                NoFit::NotEnoughFree { free, need } => write!(f, "needs {need} GPUs, {free} free"),
                NoFit::NoDomain { need } => write!(f, "no NVLink domain with {need} free GPUs"),
                NoFit::NoGroup { need } => write!(f, "no leaf group with {need} free GPUs"),
                NoFit::NoWholeDomains { need_domains, free_domains } => {
                    write!(f, "needs {need_domains} whole free NVLink domains, {free_domains} free")
                }
                NoFit::TooLarge { need } => {
                    write!(f, "{need} GPUs is more than any pool of its type holds")
                }
                NoFit::OutOfService { need, in_service } => {
                    write!(f, "cannot run now: needs {need} GPUs, only {in_service} in service (nodes out of service)")
                }
            },
            Reason::HoldsReservation { start_at } => {
                write!(f, "queue head; GPUs reserved, starts by {}", t(*start_at))
            }
            Reason::BehindReservation { holder, start_at } => {
                write!(f, "behind the reservation of job {} (starting by {})", holder.0, t(*start_at))
            }
            Reason::BehindAdvanceReservation { reservation, start_at } => {
                write!(f, "would overlap advance reservation {reservation} (its GPUs held from {})", t(*start_at))
            }
            Reason::AccountAtLimit { account, limit } => write!(f, "account {account} is at its limit of {limit} GPUs"),
            Reason::Preempted { at } => write!(f, "preempted at {} and requeued", t(*at)),
            Reason::PowerCap { cap_mw, now_mw, need_mw } => write!(
                f,
                "facility power cap {}: {} drawn, the job adds {}",
                power(*cap_mw),
                power(*now_mw),
                power(*need_mw)
            ),
            Reason::Deferred { until, signal_now, signal_then } => write!(
                f,
                "flexible: deferred to {} when the energy signal averages {signal_then:.0} over its run (now {signal_now:.0})",
                t(*until)
            ),
            Reason::Interrupted { at } => write!(f, "a node it ran on failed at {}; requeued", t(*at)),
            Reason::StartUndone { at } => write!(f, "its start at {} could not be carried out; requeued", t(*at)),
            Reason::BehindQueueHead { head } => {
                write!(f, "behind the blocked queue head, job {}", head.0)
            }
            Reason::BeyondBackfillDepth { position, depth } => {
                write!(f, "queue position {position} is beyond the backfill depth {depth}")
            }
            Reason::AccountOverShare { account, usage_share, entitled_share } => write!(
                f,
                "account {account} over its share ({:.1}% of recent usage vs {:.1}% entitled)",
                usage_share * 100.0,
                entitled_share * 100.0
            ),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    pub job: JobId,
    pub state: &'static str,
    /// 0-based position in the pending queue.
    pub position: Option<usize>,
    pub priority: f64,
    pub reasons: Vec<Reason>,
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "job {} {}", self.job.0, self.state)?;
        if let Some(p) = self.position {
            write!(f, " at queue position {p}, priority {:.1}", self.priority)?;
        }
        for r in &self.reasons {
            write!(f, "\n  - {r}")?;
        }
        Ok(())
    }
}

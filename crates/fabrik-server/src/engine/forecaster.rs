//! Start-time forecasts beside the engine: every `forecast_interval` the engine hands a
//! snapshot and the recent jobs to this thread (never waiting: a snapshot arriving while the
//! last forecast still runs is dropped), which asks the twin (a `TwinService` the binary hands
//! in) and publishes the result. The control loop and the API only ever read
//! the last published forecast. So that forecasts never take more than a fifth of a core from
//! the engine and the API, a forecast that took T starts the next no sooner than 4·T later, and
//! the thread runs at the lowest scheduling priority (nice 19): on a busy host the engine and
//! the API threads go first.

use fabrik_model::runtime_model::Completed;
use fabrik_model::Facility;
use fabrik_sched::{Forecast, TwinService};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Completed jobs (the most recent) the runtime model learns from.
pub const MAX_HISTORY: usize = 10_000;

pub struct Forecaster {
    tx: SyncSender<(Box<fabrik_sched::Snapshot>, Vec<Completed>)>,
    latest: Arc<Mutex<Option<Arc<Forecast>>>>,
    last: Option<Instant>,
    /// How long the last forecast took, milliseconds.
    took_ms: Arc<AtomicU64>,
}

/// The share of the time a forecast may keep a core busy: at most one in `DUTY` parts.
const DUTY: u32 = 5;

impl Forecaster {
    pub fn start(facility: Facility, twin: Arc<dyn TwinService>) -> Forecaster {
        let (tx, rx) = mpsc::sync_channel::<(Box<fabrik_sched::Snapshot>, Vec<Completed>)>(1);
        let latest: Arc<Mutex<Option<Arc<Forecast>>>> = Arc::new(Mutex::new(None));
        let out = latest.clone();
        let took_ms = Arc::new(AtomicU64::new(0));
        let took = took_ms.clone();
        std::thread::Builder::new()
            .name("fabrik-forecast".into())
            .spawn(move || {
                lower_priority();
                for (snap, history) in rx {
                    let t0 = Instant::now();
                    match twin.forecast(&snap, &facility, &history) {
                        Ok(fc) => {
                            tracing::debug!(runs = fc.runs, ms = fc.elapsed_ms, jobs = fc.jobs.len(), "forecast");
                            if let Ok(mut l) = out.lock() {
                                *l = Some(Arc::new(fc));
                            }
                        }
                        Err(e) => tracing::warn!("forecast failed: {e}"),
                    }
                    took.store(t0.elapsed().as_millis() as u64, Ordering::Relaxed);
                }
            })
            .expect("spawning the forecast thread");
        Forecaster { tx, latest, last: None, took_ms }
    }

    /// Whether a forecast is due: `every` since the last, and at least (DUTY − 1) times as long
    /// as the last one took.
    pub fn due(&self, every: Duration) -> bool {
        let rest = Duration::from_millis(self.took_ms.load(Ordering::Relaxed)) * DUTY;
        self.last.is_none_or(|t| t.elapsed() >= every.max(rest))
    }

    /// Hands a snapshot over unless a forecast is still running.
    pub fn offer(&mut self, snap: Box<fabrik_sched::Snapshot>, history: Vec<Completed>) {
        self.last = Some(Instant::now());
        match self.tx.try_send((snap, history)) {
            Ok(()) | Err(TrySendError::Full(_)) => {}
            Err(TrySendError::Disconnected(_)) => tracing::warn!("the forecast thread has stopped"),
        }
    }

    pub fn latest(&self) -> Option<Arc<Forecast>> {
        self.latest.lock().ok().and_then(|l| l.clone())
    }
}

/// Lowers the calling thread's scheduling priority to nice 19 (Linux: `setpriority` with
/// `PRIO_PROCESS` and id 0 acts on the calling thread). Best effort: a failure leaves it as is.
#[allow(unsafe_code, reason = "setpriority on the calling thread: an FFI call without memory-safety preconditions")]
fn lower_priority() {
    // SAFETY: setpriority takes plain integers and touches no memory of ours.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) };
    if rc != 0 {
        tracing::debug!("the forecast thread keeps its priority: {}", std::io::Error::last_os_error());
    }
}

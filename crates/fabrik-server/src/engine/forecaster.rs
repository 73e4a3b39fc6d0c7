//! Start-time forecasts beside the engine: every `forecast_interval` the engine hands a
//! snapshot and the recent completed jobs to this thread (never waiting: a snapshot arriving
//! while the last forecast still runs is dropped), which fits the runtime model, runs the twin
//! within the forecast's time budget and publishes the result. The control loop and the API only
//! ever read the last published forecast.

use fabrik_model::runtime_model::{Completed, RuntimeModel};
use fabrik_model::Facility;
use fabrik_twin::forecast::{forecast, Forecast, ForecastConfig};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Completed jobs (the most recent) the runtime model learns from.
pub const MAX_HISTORY: usize = 10_000;

pub struct Forecaster {
    tx: SyncSender<(Box<fabrik_sched::Snapshot>, Vec<Completed>)>,
    latest: Arc<Mutex<Option<Arc<Forecast>>>>,
    pub(super) last: Option<Instant>,
}

impl Forecaster {
    pub fn start(facility: Facility, cfg: ForecastConfig) -> Forecaster {
        let (tx, rx) = mpsc::sync_channel::<(Box<fabrik_sched::Snapshot>, Vec<Completed>)>(1);
        let latest: Arc<Mutex<Option<Arc<Forecast>>>> = Arc::new(Mutex::new(None));
        let out = latest.clone();
        std::thread::Builder::new()
            .name("fabrik-forecast".into())
            .spawn(move || {
                for (snap, history) in rx {
                    let model = RuntimeModel::fit(&history);
                    // the facility with the snapshot's accounts, as the brain has them
                    let mut f = facility.clone();
                    let accounts: Vec<(String, f64)> =
                        snap.accounts.iter().map(|a| (a.path.clone(), a.shares)).collect();
                    match fabrik_model::TenantTree::with_quotas_of(&accounts, &facility.tenants, "snapshot accounts") {
                        Ok(t) => f.tenants = t,
                        Err(e) => {
                            tracing::warn!("forecast skipped: {e}");
                            continue;
                        }
                    }
                    match forecast(&snap, &f, &model, &history, &cfg) {
                        Ok(fc) => {
                            tracing::debug!(runs = fc.runs, ms = fc.elapsed_ms, jobs = fc.jobs.len(), "forecast");
                            if let Ok(mut l) = out.lock() {
                                *l = Some(Arc::new(fc));
                            }
                        }
                        Err(e) => tracing::warn!("forecast failed: {e}"),
                    }
                }
            })
            .expect("spawning the forecast thread");
        Forecaster { tx, latest, last: None }
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

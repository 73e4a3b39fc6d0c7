//! fabrik-server: the live control plane. An axum REST API in front of one engine thread that
//! owns the scheduler (`fabrik-sched`, driven by wall-clock time), the SQLite store and an
//! executor.
//!
//! **Architecture Invariant:** no policy logic here. The engine delivers events to the
//! scheduler and carries out its decisions, exactly as the twin does in virtual time.

pub mod api;
pub mod dashboard;
pub mod engine;
pub mod executor;
pub mod metrics;
pub mod openapi;
pub mod store;

use anyhow::Context;
use engine::{Cmd, Engine, EngineConfig};
use executor::{Executor, LocalExecutor, SimulatedExecutor};
use fabrik_model::Facility;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex, RwLock};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutorKind {
    Local,
    Simulated,
}

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub data_dir: PathBuf,
    pub bind: SocketAddr,
    pub executor: ExecutorKind,
    /// For `simulated`: the facility. For `local` the facility is this host (one NVLink domain
    /// of the GPUs NVML finds, or `virtual_gpus`).
    pub facility: Option<Facility>,
    pub virtual_gpus: u32,
    pub engine: EngineConfig,
}

pub fn db_path(data_dir: &Path) -> PathBuf {
    data_dir.join("fabrik.db")
}

/// Opens the store in `data_dir`, creating it if needed.
pub fn open_store(data_dir: &Path) -> anyhow::Result<store::Store> {
    std::fs::create_dir_all(data_dir).with_context(|| format!("creating data directory {}", data_dir.display()))?;
    store::Store::open(&db_path(data_dir)).with_context(|| format!("opening {}", db_path(data_dir).display()))
}

/// A started control plane: its address, and a handle to stop it.
pub struct Running {
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<()>,
    engine: Option<std::thread::JoinHandle<()>>,
    tx: mpsc::Sender<Cmd>,
}

impl Running {
    /// Graceful shutdown: stop accepting requests, finish those in flight, stop the engine.
    /// Running jobs keep running; the next start re-adopts them.
    pub async fn stop(mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        let _ = (&mut self.server).await;
        let _ = self.tx.send(Cmd::Shutdown);
        if let Some(e) = self.engine.take() {
            let _ = tokio::task::spawn_blocking(move || e.join()).await;
        }
    }

    /// Waits until the server ends (after a shutdown signal).
    pub async fn wait(self) {
        let _ = self.server.await;
    }
}

/// Starts the control plane and returns once it listens.
pub async fn start(cfg: ServeConfig) -> anyhow::Result<Running> {
    let store = open_store(&cfg.data_dir)?;
    let (facility, exec): (Facility, Box<dyn Executor>) = match cfg.executor {
        ExecutorKind::Local => {
            let (n, how) = executor::discover_gpus(cfg.virtual_gpus);
            tracing::info!("{how}");
            let mut f = Facility::from_shorthand(&format!("1x{n}:1")).context("host facility")?;
            f.name = "local host".into();
            if let Some(given) = &cfg.facility {
                f.tenants = given.tenants.clone();
            }
            (f, Box::new(LocalExecutor::new(&cfg.data_dir).context("job directory")?))
        }
        ExecutorKind::Simulated => {
            let f = cfg.facility.clone().context("the simulated executor needs a facility")?;
            (f, Box::new(SimulatedExecutor::default()))
        }
    };
    let metrics = Arc::new(metrics::Metrics::new());
    let engine = Engine::open(store, facility, exec, cfg.engine.clone(), metrics.clone())?;
    let (tx, rx) = mpsc::channel();
    let engine = std::thread::Builder::new().name("fabrik-engine".into()).spawn(move || engine.run(rx))?;
    let state = Arc::new(api::AppState {
        engine: Mutex::new(tx.clone()),
        metrics,
        tokens: Mutex::new(open_store(&cfg.data_dir)?),
        cache: RwLock::new(Default::default()),
    });
    let listener = tokio::net::TcpListener::bind(cfg.bind).await.with_context(|| format!("binding {}", cfg.bind))?;
    let addr = listener.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let app = api::router(state);
    let server = tokio::spawn(async move {
        let shutdown = async move {
            tokio::select! {
                _ = stop_rx => {}
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate() => {}
            }
        };
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
            tracing::error!(error = %e, "server error");
        }
    });
    tracing::info!(%addr, data_dir = %cfg.data_dir.display(), "fabrik serve listening");
    Ok(Running { addr, shutdown: Some(stop_tx), server, engine: Some(engine), tx })
}

async fn terminate() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending::<()>().await,
    }
}

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
pub mod exposition;
pub mod metrics;
pub mod openapi;
pub mod slurm;
pub mod store;
pub mod telemetry;
#[doc(hidden)]
pub mod test_support;

use anyhow::Context;
use engine::{Cmd, Engine, EngineConfig};
use executor::{Executor, Isolation, LocalConfig, LocalExecutor, SimulatedExecutor};
use fabrik_model::Facility;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutorKind {
    Local,
    Simulated,
    /// Jobs run on a Slurm cluster; the facility is what Slurm reports.
    Slurm,
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
    /// For `local`: where job directories live (default: the data directory's path with
    /// `-jobs` appended), whether every job runs as the server's own user (`--single-user`),
    /// and which of the server's environment variables jobs get.
    pub spool_dir: Option<PathBuf>,
    pub single_user: bool,
    pub job_env: Vec<String>,
    /// Whether `/metrics` needs a token (any role).
    pub metrics_token: bool,
    pub limits: api::Limits,
    /// For `slurm`: seconds a dispatched job may stay pending in Slurm, and the partition.
    pub slurm_start_grace_s: u64,
    pub slurm_partition: Option<String>,
    /// Telemetry for live predictive maintenance (with `engine.health`; the default health
    /// configuration when that is unset).
    pub telemetry: Option<telemetry::TelemetrySource>,
    pub engine: EngineConfig,
}

impl ServeConfig {
    /// A configuration with defaults around the given parts (tests and embedding).
    pub fn new(data_dir: PathBuf, executor: ExecutorKind, facility: Option<Facility>) -> ServeConfig {
        ServeConfig {
            data_dir,
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            executor,
            facility,
            virtual_gpus: 8,
            spool_dir: None,
            single_user: false,
            job_env: Vec::new(),
            metrics_token: false,
            limits: api::Limits::default(),
            slurm_start_grace_s: 30,
            slurm_partition: None,
            telemetry: None,
            engine: EngineConfig::default(),
        }
    }
}

/// The spool default: `DATA_DIR-jobs` beside the data directory, which stays private.
pub fn default_spool(data_dir: &Path) -> PathBuf {
    let mut s = data_dir.as_os_str().to_owned();
    if s.to_string_lossy().ends_with('/') && s.len() > 1 {
        s = std::ffi::OsString::from(s.to_string_lossy().trim_end_matches('/'));
    }
    s.push("-jobs");
    PathBuf::from(s)
}

pub fn db_path(data_dir: &Path) -> PathBuf {
    data_dir.join("fabrik.db")
}

/// Opens the store in `data_dir`, creating it if needed. The directory is private to the
/// server (0700) and the database file 0600, whatever they were before.
pub fn open_store(data_dir: &Path) -> anyhow::Result<store::Store> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(data_dir).with_context(|| format!("creating data directory {}", data_dir.display()))?;
    std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("making {} private (0700)", data_dir.display()))?;
    let db = db_path(data_dir);
    let s = store::Store::open(&db).with_context(|| format!("opening {}", db.display()))?;
    for f in [db.clone(), data_dir.join("fabrik.db-wal"), data_dir.join("fabrik.db-shm")] {
        if f.exists() {
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("making {} private (0600)", f.display()))?;
        }
    }
    Ok(s)
}

/// A started control plane: its address, and a handle to stop it.
pub struct Running {
    pub addr: SocketAddr,
    announcement: Option<String>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<()>,
    engine: Option<std::thread::JoinHandle<()>>,
    tx: mpsc::Sender<Cmd>,
}

impl Running {
    /// What operators must know about this server (e.g. single-user mode).
    pub fn announcement(&self) -> Option<&str> {
        self.announcement.as_deref()
    }

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
                overlay(&mut f, given)?;
            }
            let isolation = if cfg.single_user { Isolation::SingleUser } else { Isolation::Mapped(f.run_as.clone()) };
            let local = LocalConfig {
                data_dir: cfg.data_dir.clone(),
                spool_dir: cfg.spool_dir.clone().unwrap_or_else(|| default_spool(&cfg.data_dir)),
                isolation,
                env_allow: cfg.job_env.clone(),
            };
            (f, Box::new(LocalExecutor::new(local).map_err(anyhow::Error::msg)?))
        }
        ExecutorKind::Simulated => {
            let f = cfg.facility.clone().context("the simulated executor needs a facility")?;
            (f, Box::new(SimulatedExecutor::default()))
        }
        ExecutorKind::Slurm => {
            let mut f = slurm::discover("slurm").map_err(|e| anyhow::anyhow!("reading the cluster from Slurm: {e}"))?;
            tracing::info!(
                "Slurm reports {} GPUs in {} nodes, {} leaf groups",
                f.total_gpus(),
                f.domains.len(),
                f.groups.len()
            );
            if let Some(given) = &cfg.facility {
                overlay(&mut f, given)?;
            }
            let isolation = if cfg.single_user { Isolation::SingleUser } else { Isolation::Mapped(f.run_as.clone()) };
            let sc = slurm::SlurmConfig {
                data_dir: cfg.data_dir.clone(),
                spool_dir: cfg.spool_dir.clone().unwrap_or_else(|| default_spool(&cfg.data_dir)),
                isolation,
                start_grace_s: cfg.slurm_start_grace_s,
                partition: cfg.slurm_partition.clone(),
                node_poll_s: 2,
                kill_grace_s: cfg.engine.kill_grace_s,
            };
            let exec = slurm::SlurmExecutor::new(sc, &f).map_err(anyhow::Error::msg)?;
            (f, Box::new(exec))
        }
    };
    let metrics = Arc::new(metrics::Metrics::new());
    let announcement = exec.announcement();
    if let Some(a) = &announcement {
        tracing::warn!("{a}");
    }
    let mut ecfg = cfg.engine.clone();
    if cfg.telemetry.is_some() && ecfg.health.is_none() {
        ecfg.health = Some(engine::HealthConfig::default());
    }
    if let (Some(t), Some(h)) = (&cfg.telemetry, ecfg.health.as_mut()) {
        // a sample older than three polls is stale
        h.stale_s = h.stale_s.max(3 * t.interval.as_secs().max(1));
    }
    let engine = Engine::open(store, facility, exec, ecfg, metrics.clone())?;
    let (tx, rx) = mpsc::channel();
    let engine = std::thread::Builder::new().name("fabrik-engine".into()).spawn(move || engine.run(rx))?;
    if let Some(src) = cfg.telemetry.clone() {
        tracing::info!(prometheus = %src.prometheus, every_s = src.interval.as_secs_f64(), "telemetry input");
        let ttx = tx.clone();
        std::thread::Builder::new().name("fabrik-telemetry".into()).spawn(move || telemetry::run(src, ttx))?;
    }
    let state = Arc::new(api::AppState {
        engine: Mutex::new(tx.clone()),
        metrics,
        tokens: Mutex::new(open_store(&cfg.data_dir)?),
        metrics_token: cfg.metrics_token,
        announcement,
        log_reads: Arc::new(tokio::sync::Semaphore::new(cfg.limits.concurrent_log_reads)),
        limits: cfg.limits.clone(),
    });
    let listener = tokio::net::TcpListener::bind(cfg.bind).await.with_context(|| format!("binding {}", cfg.bind))?;
    let addr = listener.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let limits = cfg.limits.clone();
    let state_announcement = state.announcement.clone();
    let app = api::router(state);
    let server = tokio::spawn(async move {
        let shutdown = async move {
            tokio::select! {
                _ = stop_rx => {}
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate() => {}
            }
        };
        api::serve(listener, app, limits, shutdown).await;
    });
    tracing::info!(%addr, data_dir = %cfg.data_dir.display(), "fabrik serve listening");
    Ok(Running { addr, announcement: state_announcement, shutdown: Some(stop_tx), server, engine: Some(engine), tx })
}

/// The topology is the executor's (this host, the Slurm cluster); every other setting of the
/// facility file holds live as in the twin: tenants, the user map, advance reservations (checked
/// against that topology).
fn overlay(f: &mut Facility, given: &Facility) -> anyhow::Result<()> {
    f.tenants = given.tenants.clone();
    f.run_as = given.run_as.clone();
    for r in &given.reservations {
        let ty = r.gpu_type.map(|t| given.gpu(t).name.clone());
        let local_ty = match &ty {
            Some(t) => Some(f.gpu_type_id(t).with_context(|| format!("reservation {}: no {t} GPUs here", r.name))?),
            None => None,
        };
        let fits = u64::from(r.gpus) <= f.max_gang(local_ty) && r.group.is_none_or(|g| g.idx() < f.groups.len());
        if !fits {
            anyhow::bail!(
                "reservation {}: {} GPUs{} do not fit here ({} GPUs)",
                r.name,
                r.gpus,
                r.group.map_or(String::new(), |g| format!(" in leaf group {}", g.0)),
                f.total_gpus()
            );
        }
        f.reservations.push(fabrik_model::facility::AdvanceReservation { gpu_type: local_ty, ..r.clone() });
    }
    Ok(())
}

async fn terminate() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending::<()>().await,
    }
}

//! `fabrik serve` and `fabrik admin`.

use crate::load_facility;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use fabrik_server::engine::EngineConfig;
use fabrik_server::store::Role;
use fabrik_server::{ExecutorKind, ServeConfig};
use std::path::PathBuf;
use std::time::Duration;

fn default_data_dir() -> PathBuf {
    std::env::var_os("FABRIK_DATA_DIR").map_or_else(|| PathBuf::from("fabrik-data"), PathBuf::from)
}

#[derive(Args)]
pub struct ServeArgs {
    /// Where the database and job logs live (default $FABRIK_DATA_DIR or ./fabrik-data).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address and port the API listens on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    bind: std::net::SocketAddr,
    /// local (processes on this host), slurm (jobs on the Slurm cluster this host submits to;
    /// the facility is what Slurm reports) or simulated (timed waits on a virtual facility).
    #[arg(long, default_value = "local")]
    executor: String,
    /// For the simulated executor: the facility (preset, file or shorthand). For local: the
    /// facility is this host, and the file gives the tenant tree, the account → Unix user map
    /// ([[run_as]]) and advance reservations.
    #[arg(long)]
    facility: Option<String>,
    /// Local executor, server not root: run every job as this server's own Unix user. Such jobs
    /// can reach the server's data; announced in the log and on the dashboard.
    #[arg(long)]
    single_user: bool,
    /// Local executor: where job directories live (default: DATA_DIR-jobs).
    #[arg(long)]
    spool_dir: Option<PathBuf>,
    /// Local executor: a variable of the server's environment handed on to jobs (repeatable;
    /// FABRIK_* are refused). Jobs otherwise see only the documented set.
    #[arg(long = "job-env", value_name = "NAME")]
    job_env: Vec<String>,
    /// Require a token (any role) for /metrics.
    #[arg(long)]
    metrics_token: bool,
    /// Slurm executor: seconds a dispatched job may stay pending in Slurm before it is taken
    /// back and requeued in fabrik.
    #[arg(long, default_value_t = 30)]
    slurm_start_grace_s: u64,
    /// Slurm executor: the partition jobs are submitted to (default: Slurm's default).
    #[arg(long)]
    slurm_partition: Option<String>,
    /// Most open HTTP connections; one more is closed at once.
    #[arg(long, default_value_t = 1024)]
    max_connections: usize,
    /// Virtual GPUs of this host when NVML finds none (local executor).
    #[arg(long, default_value_t = 8)]
    gpus: u32,
    /// Scheduling policy (fabrik policies lists them).
    #[arg(long, default_value = "fair-share")]
    policy: String,
    /// Virtual seconds per wall second (demonstrations with the simulated executor).
    #[arg(long, default_value_t = 1.0)]
    time_scale: f64,
    /// Control-loop period in milliseconds.
    #[arg(long, default_value_t = 200)]
    tick_ms: u64,
    /// Seconds between SIGTERM and SIGKILL at walltime or cancel.
    #[arg(long, default_value_t = 10)]
    kill_grace_s: u64,
    /// How often the pending jobs' start times are forecast in the background (a duration:
    /// 30s, 5m …; off to never).
    #[arg(long, default_value = "60s")]
    forecast_interval: String,
    /// Twin runs per forecast, at most.
    #[arg(long, default_value_t = 16)]
    forecast_runs: usize,
    /// Wall time after which a forecast starts no further twin run (a duration).
    #[arg(long, default_value = "2s")]
    forecast_budget: String,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
    /// Facility power cap in MW (the grid connection): jobs start only while facility power
    /// stays under it, power-limited where their QoS allows.
    #[arg(long)]
    power_cap_mw: Option<f64>,
    /// PUE for facility power and energy accounting.
    #[arg(long, default_value_t = 1.25)]
    pue: f64,
    /// Grid zone for live emissions and cost accounting (annual means): EU, DE, FR, SE, PL, US.
    #[arg(long, default_value = "DE")]
    zone: String,
    /// Carbon- or price-aware modifier for jobs with a deadline: off, carbon, price or both,
    /// on the zone's synthetic hourly profiles aligned to this year's calendar.
    #[arg(long, default_value = "off")]
    energy_aware: String,
    /// queue (released as urgent work at its hour) or claim (its GPUs are kept for it).
    #[arg(long, default_value = "queue")]
    aware_mode: String,
    /// GPU telemetry for live predictive maintenance: prometheus=URL, a Prometheus server
    /// scraping dcgm-exporter (see README, "Predictive maintenance live").
    #[arg(long, value_name = "prometheus=URL")]
    telemetry: Option<String>,
    /// How often telemetry is read (a duration).
    #[arg(long, default_value = "15s")]
    telemetry_interval: String,
    /// Timeout of one telemetry request (a duration).
    #[arg(long, default_value = "5s")]
    telemetry_timeout: String,
    /// The label that names a series' node.
    #[arg(long, default_value = "Hostname")]
    telemetry_host_label: String,
    /// The health detector's thresholds and votes: a TOML file with any of ecc_alpha,
    /// ecc_limit, xid_count, xid_window, temp_k, temp_h, votes (defaults as in the twin).
    #[arg(long)]
    health_config: Option<PathBuf>,
    /// Largest share of the nodes the detector may have drained at once (at least one node).
    #[arg(long, default_value_t = 0.05)]
    drain_cap: f64,
    /// Only report (log, fabrik nodes, metrics) what the detector would drain.
    #[arg(long)]
    health_dry_run: bool,
    /// A node the detector drained returns after this long (a duration; default: when an
    /// operator resumes it).
    #[arg(long)]
    health_repair: Option<String>,
}

/// The telemetry input and the detector's settings from the flags.
fn health_settings(
    a: &ServeArgs,
) -> Result<(Option<fabrik_server::telemetry::TelemetrySource>, Option<fabrik_server::engine::HealthConfig>)> {
    let Some(spec) = &a.telemetry else {
        if a.health_config.is_some() || a.health_dry_run || a.health_repair.is_some() {
            bail!("--health-config, --health-dry-run and --health-repair need --telemetry");
        }
        return Ok((None, None));
    };
    let mut src = fabrik_server::telemetry::TelemetrySource::parse(spec).map_err(anyhow::Error::msg)?;
    let d = |flag: &str, v: &str| fabrik_model::units::parse_duration(v).map_err(|e| anyhow::anyhow!("{flag}: {e}"));
    src.interval = Duration::from_secs(d("--telemetry-interval", &a.telemetry_interval)?.max(1));
    src.timeout = Duration::from_secs(d("--telemetry-timeout", &a.telemetry_timeout)?.max(1));
    src.host_label = a.telemetry_host_label.clone();
    if !(a.drain_cap.is_finite() && (0.0..=1.0).contains(&a.drain_cap)) {
        bail!("--drain-cap must be a share in [0, 1], got {}", a.drain_cap);
    }
    let mut h = fabrik_server::engine::HealthConfig {
        max_drain_share: a.drain_cap,
        dry_run: a.health_dry_run,
        ..Default::default()
    };
    if let Some(r) = &a.health_repair {
        h.repair_s = Some(d("--health-repair", r)?);
    }
    if let Some(p) = &a.health_config {
        let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        h.detector = toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
        let c = &h.detector;
        if !(c.ecc_alpha > 0.0 && c.ecc_alpha <= 1.0)
            || c.xid_window == 0
            || c.xid_window > 10_000
            || c.votes == 0
            || c.votes > 3
        {
            bail!("{}: ecc_alpha must be in (0, 1], xid_window in 1..=10000, votes in 1..=3", p.display());
        }
    }
    Ok((Some(src), Some(h)))
}

fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The modifier for the live clock: the zone's synthetic profiles, hour 0 at 1 January 00:00
/// UTC of the current year.
fn live_modifier(a: &ServeArgs, now_unix: u64) -> Result<Option<fabrik_sched::EnergyAware>> {
    let zone = fabrik_model::grid::find(&a.zone).with_context(|| format!("unknown grid zone '{}'", a.zone))?;
    let Some(objective) = crate::energy::objective(&a.energy_aware)? else { return Ok(None) };
    let mode = crate::energy::defer_mode(&a.aware_mode)?;
    let year = &fabrik_model::SimTime(now_unix).unix_utc()[..4];
    let jan1 = fabrik_model::units::parse_datetime(&format!("{year}-01-01 00:00:00")).context("calendar")?;
    // the twin's signal for a year of the zone's synthetic profiles
    let e = fabrik_twin::config::EnergyConfig {
        intensity: Some(fabrik_model::grid::synthetic_intensity(zone, 8760)),
        price: Some(fabrik_model::energy::synthetic_price(zone, 8760)),
        aware: Some(fabrik_twin::config::AwareConfig { objective, mode, ..Default::default() }),
        ..Default::default()
    };
    let (signal, aw) = (e.aware_signal().expect("modifier on"), e.aware.expect("modifier on"));
    Ok(Some(aw.modifier(signal.aligned_to_unix(jan1))))
}

#[derive(Subcommand)]
pub enum AdminCmd {
    /// Create the data directory, seed the accounts and print the first admin token.
    Init {
        /// The data directory (default $FABRIK_DATA_DIR or ./fabrik-data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Facility whose tenant tree seeds the accounts (default: the built-in tree).
        #[arg(long)]
        facility: Option<String>,
    },
    /// Tokens (stored hashed; printed once).
    Token {
        #[command(subcommand)]
        cmd: TokenCmd,
    },
    /// Accounts of the share tree.
    Account {
        #[command(subcommand)]
        cmd: AccountCmd,
    },
}

#[derive(Subcommand)]
pub enum TokenCmd {
    /// Tokens (never their secrets): id, name, role, account, created, expiry, revoked.
    List {
        /// The data directory (default $FABRIK_DATA_DIR or ./fabrik-data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Print (or write) JSON instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by id; a running server refuses it from the next request on.
    Revoke {
        /// The token id (fabrik admin token list).
        id: i64,
        /// The data directory (default $FABRIK_DATA_DIR or ./fabrik-data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Create a token and print it once (it is stored hashed).
    Create {
        /// Refuse the token after this long (e.g. 90d, 12h).
        #[arg(long)]
        expires_in: Option<String>,
        /// A name for it.
        #[arg(long)]
        name: String,
        /// admin, manager or user.
        #[arg(long)]
        role: String,
        /// The account (a project for users, any node for managers).
        #[arg(long)]
        account: Option<String>,
        /// The data directory (default $FABRIK_DATA_DIR or ./fabrik-data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
pub enum AccountCmd {
    /// Add an account or change its shares (takes effect at the next `fabrik serve` start;
    /// use POST /v1/accounts on a running server).
    Add {
        /// The account's path in the share tree (research/uni-x/nlp).
        path: String,
        /// Its shares relative to its siblings.
        #[arg(long, default_value_t = 1.0)]
        shares: f64,
        /// The data directory (default $FABRIK_DATA_DIR or ./fabrik-data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Accounts with their shares.
    List {
        /// The data directory (default $FABRIK_DATA_DIR or ./fabrik-data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

pub fn serve(a: &ServeArgs) -> Result<()> {
    // colour only on a terminal: redirected logs stay plain text
    let sub = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        );
    if a.log_json {
        sub.json().init();
    } else {
        sub.init();
    }
    let executor = match a.executor.as_str() {
        "local" => ExecutorKind::Local,
        "simulated" => ExecutorKind::Simulated,
        "slurm" => ExecutorKind::Slurm,
        other => bail!("unknown executor '{other}' (expected local, slurm or simulated)"),
    };
    if !(a.time_scale.is_finite() && a.time_scale > 0.0) {
        bail!("--time-scale must be positive");
    }
    if a.time_scale != 1.0 && executor != ExecutorKind::Simulated {
        bail!("--time-scale applies to the simulated executor only");
    }
    let facility = match (&a.facility, executor) {
        (Some(f), _) => Some(load_facility(f)?),
        (None, ExecutorKind::Simulated) => Some(load_facility("eu-gigafactory")?),
        (None, ExecutorKind::Local | ExecutorKind::Slurm) => None,
    };
    crate::check_policy(&a.policy)?;
    let data_dir = a.data_dir.clone().unwrap_or_else(default_data_dir);
    if a.max_connections == 0 {
        bail!("--max-connections must be at least 1");
    }
    if a.single_user && executor == ExecutorKind::Simulated {
        bail!("--single-user applies to the local and slurm executors");
    }
    let (telemetry, health) = health_settings(a)?;
    let cfg = ServeConfig {
        telemetry,
        data_dir: data_dir.clone(),
        bind: a.bind,
        executor,
        facility,
        virtual_gpus: a.gpus,
        spool_dir: a.spool_dir.clone(),
        single_user: a.single_user,
        job_env: a.job_env.clone(),
        metrics_token: a.metrics_token,
        limits: fabrik_server::api::Limits { max_connections: a.max_connections, ..Default::default() },
        slurm_start_grace_s: a.slurm_start_grace_s,
        slurm_partition: a.slurm_partition.clone(),
        engine: EngineConfig {
            policy: a.policy.clone(),
            time_scale: a.time_scale,
            tick: Duration::from_millis(a.tick_ms.max(1)),
            kill_grace_s: a.kill_grace_s,
            power_cap_mw: a.power_cap_mw,
            pue: a.pue,
            zone: a.zone.clone(),
            energy_aware: live_modifier(a, now_unix())?,
            forecast_interval: match a.forecast_interval.as_str() {
                "off" => None,
                d => Some(Duration::from_secs(
                    fabrik_model::units::parse_duration(d)
                        .map_err(|e| anyhow::anyhow!("--forecast-interval: {e} (or off)"))?
                        .max(1),
                )),
            },
            // the twin forecasts and answers what-ifs; the binary composes the two bodies
            twin: Some(std::sync::Arc::new(fabrik_twin::forecast::LiveTwin {
                config: fabrik_twin::forecast::ForecastConfig {
                    runs: a.forecast_runs.clamp(1, 1000),
                    budget: Duration::from_secs(
                        fabrik_model::units::parse_duration(&a.forecast_budget)
                            .map_err(|e| anyhow::anyhow!("--forecast-budget: {e}"))?,
                    ),
                    ..Default::default()
                },
            })),
            health,
            ..EngineConfig::default()
        },
    };
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        if !fabrik_server::open_store(&data_dir)?.has_admin()? {
            eprintln!("no admin token yet: run `fabrik admin init --data-dir {}`", data_dir.display());
        }
        let running = fabrik_server::start(cfg).await?;
        eprintln!(
            "fabrik serve listening on http://{} (dashboard: http://{}/?token=TOKEN)",
            running.addr, running.addr
        );
        if let Some(a) = running.announcement() {
            eprintln!("WARNING: {a}");
        }
        running.wait().await;
        Ok(())
    })
}

pub fn admin(cmd: &AdminCmd) -> Result<()> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    match cmd {
        AdminCmd::Init { data_dir, facility } => {
            let dir = data_dir.clone().unwrap_or_else(default_data_dir);
            let store = fabrik_server::open_store(&dir)?;
            if store.has_admin()? {
                bail!("{} already has an admin token; create more with `fabrik admin token create`", dir.display());
            }
            if store.accounts()?.is_empty() {
                let f = load_facility(facility.as_deref().unwrap_or("tiny"))?;
                for (_, a) in f.tenants.iter().skip(1) {
                    store.add_account(&a.path, a.shares)?;
                }
            }
            let token = store.create_token("admin", None, Role::Admin, now)?;
            eprintln!("initialised {}; the admin token (shown once):", dir.display());
            println!("{token}");
        }
        AdminCmd::Token { cmd: TokenCmd::List { data_dir, json } } => {
            let store = fabrik_server::open_store(&data_dir.clone().unwrap_or_else(default_data_dir))?;
            let tokens = store.tokens()?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&tokens)?);
            } else {
                println!(
                    "{:>4}  {:<20} {:<8} {:<32} {:<20} {:<20} state",
                    "id", "name", "role", "account", "created", "expires"
                );
                for t in tokens {
                    let state = if t.revoked {
                        "revoked"
                    } else if t.expires.is_some_and(|e| e <= now) {
                        "expired"
                    } else {
                        "active"
                    };
                    println!(
                        "{:>4}  {:<20} {:<8} {:<32} {:<20} {:<20} {state}",
                        t.id,
                        t.name,
                        t.role.as_str(),
                        t.account.as_deref().unwrap_or("(all)"),
                        fabrik_model::SimTime(t.created).unix_utc(),
                        t.expires.map_or("never".into(), |e| fabrik_model::SimTime(e).unix_utc()),
                    );
                }
            }
        }
        AdminCmd::Token { cmd: TokenCmd::Revoke { id, data_dir } } => {
            let store = fabrik_server::open_store(&data_dir.clone().unwrap_or_else(default_data_dir))?;
            if !store.revoke_token(*id)? {
                bail!("no token with id {id} (see `fabrik admin token list`)");
            }
            eprintln!("token {id} revoked");
        }
        AdminCmd::Token { cmd: TokenCmd::Create { name, role, account, data_dir, expires_in } } => {
            let dir = data_dir.clone().unwrap_or_else(default_data_dir);
            let store = fabrik_server::open_store(&dir)?;
            let role = Role::parse(role).with_context(|| format!("unknown role '{role}' (admin, manager, user)"))?;
            match (role, account) {
                (Role::Admin, _) => {}
                (_, None) => bail!("--account is required for {} tokens", role.as_str()),
                (_, Some(a)) => {
                    if !store.accounts()?.iter().any(|(p, _)| p == a) {
                        bail!("unknown account '{a}' (see `fabrik admin account list`)");
                    }
                }
            }
            let expires = match expires_in {
                Some(e) => {
                    let secs =
                        fabrik_model::units::parse_duration(e).map_err(|m| anyhow::anyhow!("--expires-in: {m}"))?;
                    if secs == 0 || secs > fabrik_server::engine::MAX_AHEAD_S {
                        bail!("--expires-in: must be between 1 s and 10 years");
                    }
                    Some(now + secs)
                }
                None => None,
            };
            println!("{}", store.create_token_expiring(name, account.as_deref(), role, now, expires)?);
        }
        AdminCmd::Account { cmd: AccountCmd::Add { path, shares, data_dir } } => {
            if !(shares.is_finite() && *shares > 0.0) {
                bail!("--shares must be positive");
            }
            let store = fabrik_server::open_store(&data_dir.clone().unwrap_or_else(default_data_dir))?;
            store.add_account(path.trim_matches('/'), *shares)?;
            eprintln!("account {path} has {shares} shares (a running server picks it up at its next start)");
        }
        AdminCmd::Account { cmd: AccountCmd::List { data_dir } } => {
            let store = fabrik_server::open_store(&data_dir.clone().unwrap_or_else(default_data_dir))?;
            for (p, s) in store.accounts()? {
                println!("{p:<40} {s}");
            }
        }
    }
    Ok(())
}

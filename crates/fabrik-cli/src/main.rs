//! The `fabrik` command: argv, terminal output and progress. Logic lives in the library crates.

mod bench;
mod bench_detector;
mod bench_forecast;
mod bench_serve;
mod client;
mod energy;
mod parquet_out;
mod plan;
mod script;
mod serve;
mod telemetry;
mod whatif;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use fabrik_model::{Facility, PRESETS};
use fabrik_sched::{SchedConfig, POLICIES};
use fabrik_twin::workload::{fabrik_csv, itp, synthetic, traces, Workload};
use fabrik_twin::{Report, Twin, TwinConfig};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "fabrik",
    version,
    about = "Operating software of an AI gigafactory: digital twin, scheduler, planner"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant, reason = "parsed once at startup; boxing the simulate flags buys nothing")]
enum Cmd {
    /// Run the digital twin: a facility, a workload and a policy in virtual time.
    Simulate(SimArgs),
    /// Run several policies and/or facilities on one workload and compare them in one table.
    Compare(CompareArgs),
    /// Facilities: presets, files and shorthands.
    Facility {
        #[command(subcommand)]
        cmd: FacilityCmd,
    },
    /// List the scheduling policies.
    Policies,
    /// The planner: training runs and facilities in numbers.
    Plan {
        #[command(subcommand)]
        cmd: plan::PlanCmd,
    },
    /// Run the live control plane: REST API, store, executor, metrics, dashboard.
    Serve(serve::ServeArgs),
    /// Bootstrap and administer a control plane's data directory.
    Admin {
        #[command(subcommand)]
        cmd: serve::AdminCmd,
    },
    #[command(flatten)]
    Client(client::ClientCmd),
    /// Benchmark the twin on the reference scenarios and print wall time and events/s.
    Bench(bench::BenchArgs),
    /// GPU telemetry for tests and demonstrations (a synthetic dcgm-exporter).
    Telemetry {
        #[command(subcommand)]
        cmd: telemetry::TelemetryCmd,
    },
}

#[derive(Subcommand)]
enum FacilityCmd {
    /// GPUs per type, nodes, domains, groups and nameplate IT power.
    Show {
        /// A preset, a TOML file, or a shorthand such as 80x8:20 (80 nodes × 8 GPUs, 20 per leaf).
        facility: String,
        /// Print JSON instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// List the built-in presets.
    List,
    /// A Slurm cluster's own configuration as a facility file: nodes → NVLink domains, leaf
    /// switches → leaf groups, GPU types from Gres; partitions noted.
    Import {
        /// The cluster's slurm.conf.
        slurm_conf: PathBuf,
        /// topology.conf (SwitchName=… Nodes=…): leaf switches become leaf groups.
        #[arg(long)]
        topology: Option<PathBuf>,
        /// gres.conf: GPU types for nodes whose Gres in slurm.conf has none.
        #[arg(long)]
        gres: Option<PathBuf>,
        /// The catalog GPU of nodes whose Gres names no type (default H100, said in the file).
        #[arg(long)]
        gpu_type: Option<String>,
        /// The QOS table for the slurm policy: `sacctmgr -P show qos format=Name,Priority,MaxWall`.
        #[arg(long)]
        qos: Option<PathBuf>,
        /// The association tree (accounts, users, Fairshare) as the facility's tenants:
        /// `sacctmgr -P show assoc format=Account,User,ParentName,Fairshare`.
        #[arg(long)]
        assoc: Option<PathBuf>,
        /// The facility's name (default: ClusterName).
        #[arg(long)]
        name: Option<String>,
        /// Where to write the facility file (default: standard output).
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

#[derive(Args)]
pub struct SimArgs {
    /// A preset, a facility TOML file, or a shorthand NxG:M[@TYPE].
    #[arg(long, default_value = "eu-gigafactory")]
    facility: String,
    #[command(flatten)]
    w: WorkloadArgs,
    /// Continue from a snapshot of `fabrik serve` (`fabrik snapshot > state.json`, or the
    /// server's URL: its snapshot is fetched with $FABRIK_TOKEN, admins): its running jobs,
    /// queue, usage and nodes out of service, on the facility it was taken on (pass that as
    /// --facility). No arrivals unless --append gives some.
    #[arg(long, value_name = "FILE|URL")]
    from: Option<String>,
    /// With --from: a workload (as --workload) whose second 0 is the snapshot's moment.
    #[arg(long, value_name = "WORKLOAD", requires = "from")]
    append: Option<String>,
    /// With --from: the snapshot's jobs without a known runtime run for one drawn (with
    /// --seed) from the runtime model fitted on this workload's jobs (as --workload), instead
    /// of their walltime.
    #[arg(long, value_name = "WORKLOAD", requires = "from")]
    runtimes_from: Option<String>,
    /// fifo, fifo-backfill, fair-share, las or slurm (see `fabrik policies`) [default: fair-share,
    /// the preset's, or the snapshot's].
    #[arg(long)]
    policy: Option<String>,
    /// Set the run up as a published simulator runs it: tiresias (las with Tiresias' queue
    /// thresholds of 3,250 and 7,200 GPU-seconds, no starvation tier, lossless preemption
    /// without restart cost, every job preemptible unless --preemptible says otherwise).
    #[arg(long, value_name = "tiresias")]
    preset: Option<fabrik_twin::config::Preset>,
    /// How many queued jobs after the head a pass considers for backfilling.
    #[arg(long)]
    backfill_depth: Option<usize>,
    /// Scheduler settings as TOML (backfill_depth, [fair_share] weights and half-life).
    #[arg(long)]
    sched_config: Option<PathBuf>,
    /// Seconds a preempted job (or one moved off a drained node) spends restarting before it
    /// computes again.
    #[arg(long, default_value_t = 300)]
    restart_overhead_s: u64,
    /// Restart after a node failure interrupted a job: a duration (90s, 10m …), or auto —
    /// detection (150 s) plus a cold restart that grows with the job's size (200 s up to 16k
    /// GPUs, 900 s at 98k).
    #[arg(long, default_value = "auto")]
    failure_restart_s: String,
    /// Fault-tolerant training (hot spares, in-memory redundancy): after a node failure a job
    /// stalls this long (90s, 2m …) and keeps all its work instead of rolling back to its last
    /// checkpoint (replaces --failure-restart-s).
    #[arg(long, value_name = "STALL")]
    fault_tolerant: Option<String>,
    /// Model random node failures (published rate and root causes; see README).
    #[arg(long)]
    failures: bool,
    /// Failures per 1,000 node-days for --failures (default 6.5, Kokolis et al. 2024).
    #[arg(long)]
    failure_rate: Option<f64>,
    /// With --failures: watch synthetic telemetry with the health detector and drain suspects.
    #[arg(long)]
    predictive: bool,
    /// With --predictive: how far ahead of its failure a failing part shows (a duration).
    #[arg(long, default_value = "24h")]
    precursor_lead: String,
    /// With --predictive: precursor strength (1: the default, deliberately strong one).
    #[arg(long, default_value_t = 1.0)]
    precursor_strength: f64,
    /// With --predictive: healthy telemetry noise scale (1: the default).
    #[arg(long, default_value_t = 1.0)]
    telemetry_noise: f64,
    /// With --predictive: share of telemetry samples lost.
    #[arg(long, default_value_t = 0.0)]
    telemetry_missing: f64,
    /// With --predictive: share of samples in which a node's counters reset.
    #[arg(long, default_value_t = 0.0)]
    counter_resets: f64,
    /// With --failures: spare nodes (domains) per leaf group, swapped in when one fails.
    #[arg(long, default_value_t = 0)]
    spares: u32,
    /// Replay failures from a CSV: time,node,component[,repair].
    #[arg(long)]
    failure_trace: Option<PathBuf>,
    /// Root causes of node failures (shares, repair times, which show precursors): ft-hsdp
    /// (32k H100, the default), llama3 (Llama 3 405B, 16k H100), or a TOML file of [[cause]]
    /// tables (name, class, share, repair).
    #[arg(long, default_value = "ft-hsdp")]
    root_causes: String,
    /// Checkpoint interval of every job: as-submitted, young-daly, or seconds (90m, 1h …).
    #[arg(long, default_value = "as-submitted")]
    checkpoint_interval: String,
    /// Seconds a checkpoint blocks the job (0: asynchronous).
    #[arg(long, default_value_t = 0)]
    checkpoint_write_s: u64,
    #[command(flatten)]
    energy: energy::EnergyArgs,
    /// Write the hourly energy ledger (IT, facility, renewables, battery, grid, tCO2, EUR) here.
    #[arg(long)]
    energy_csv: Option<PathBuf>,
    /// Write the per-job rows as Parquet here (the columns of --jobs-csv).
    #[arg(long)]
    jobs_parquet: Option<PathBuf>,
    /// Write the hourly energy ledger as Parquet here (the columns of --energy-csv).
    #[arg(long)]
    energy_parquet: Option<PathBuf>,
    /// Write the JSON report here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write a self-contained HTML report here.
    #[arg(long)]
    html: Option<PathBuf>,
    /// Write per-job outcomes (wait, JCT, bounded slowdown) as CSV here.
    #[arg(long)]
    jobs_csv: Option<PathBuf>,
    /// No progress bar and no summary on stdout.
    #[arg(long, short)]
    quiet: bool,
}

/// Rust ignores SIGPIPE, so `fabrik queue | head` would fail with a broken-pipe error;
/// restore the default so the command simply stops, as Unix tools do.
#[allow(unsafe_code, reason = "resetting a signal disposition at startup, before any thread exists")]
fn default_sigpipe() {
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: single-threaded at this point; SIG_DFL installs no Rust handler.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
}

/// Where the jobs come from.
#[derive(Args, Clone)]
pub struct WorkloadArgs {
    /// synthetic, itp:PATH (Microsoft ITP CSV), csv:PATH (fabrik CSV job format), philly:PATH
    /// (cluster_job_log JSON), helios:PATH / acme:PATH (CSV), pai:JOBS.csv,TASKS.csv (PAI 2020),
    /// sacct:PATH (`sacct -a -X -P` output, see README), swf:PATH[#K] (Standard Workload Format;
    /// K processors per GPU, else the trace's machine scaled onto the facility).
    #[arg(long, default_value = "synthetic")]
    workload: String,
    /// Time zone of sacct's local date-times: an IANA name (Europe/Berlin), UTC, or an offset
    /// such as +01:00.
    #[arg(long, default_value = "UTC")]
    tz: String,
    /// Days of synthetic arrivals (default 30); for traces, only jobs submitted in the first N days.
    #[arg(long)]
    days: Option<f64>,
    /// Offered load of the synthetic workload (GPU-time demanded / available).
    #[arg(long, default_value_t = 0.85)]
    load: f64,
    /// Seed of the random draws (same seed, same run).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Share of synthetic jobs of walltime ≤ 24 h that are flexible: a deadline of walltime +
    /// 6–48 h of slack.
    #[arg(long, default_value_t = 0.0)]
    flexible_share: f64,
    /// Which jobs may be preempted: as-recorded (traces that do not record it: none; sacct and
    /// synthetic: low QoS), all or none. `las` preempts only preemptible jobs.
    #[arg(long, value_name = "all|none|as-recorded")]
    preemptible: Option<fabrik_twin::workload::Preemptible>,
    /// Drop (and count in the report's notes) jobs the facility can never run — more GPUs than
    /// its largest pool of their type, or a GPU type it lacks — instead of stopping on the first.
    #[arg(long)]
    skip_unfit: bool,
}

impl WorkloadArgs {
    /// The workload, and the tenant tree it brings (sacct and SWF: their accounts and users),
    /// which then replaces the facility's.
    pub fn load(&self, facility: &Facility) -> Result<(Workload, Option<fabrik_model::TenantTree>)> {
        if self.flexible_share != 0.0 && self.workload != "synthetic" {
            bail!("--flexible-share applies to the synthetic workload (traces carry their own deadlines)");
        }
        let tz = time_zone(&self.tz)?;
        let (mut w, tenants) =
            load_workload_with(&self.workload, facility, self.days, self.load, self.seed, self.flexible_share, &tz)?;
        w.set_preemptible(self.preemptible.unwrap_or(fabrik_twin::workload::Preemptible::AsRecorded));
        if self.skip_unfit {
            w.skip_unfit(facility);
        }
        Ok((w, tenants))
    }
}

fn check_policy(name: &str) -> Result<()> {
    if POLICIES.iter().any(|p| p.0 == name) {
        return Ok(());
    }
    let names: Vec<&str> = POLICIES.iter().map(|p| p.0).collect();
    bail!("unknown policy '{name}' (known: {})", names.join(", "))
}

#[derive(Args)]
pub struct CompareArgs {
    /// Policies to compare.
    #[arg(long, value_delimiter = ',', default_value = "fifo,fifo-backfill,fair-share,las")]
    policies: Vec<String>,
    /// Facilities to compare (presets, files or shorthands); the workload is built for the first.
    #[arg(long, value_delimiter = ',', default_value = "ai-factory")]
    facilities: Vec<String>,
    #[command(flatten)]
    w: WorkloadArgs,
    /// Scheduler settings (backfill depth, fair-share weights …) from a TOML file.
    #[arg(long)]
    sched_config: Option<PathBuf>,
    /// Energy settings for every run; `--energy-aware off,carbon` runs each variant.
    #[command(flatten)]
    energy: energy::EnergyArgs,
    /// Write the JSON report here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write a self-contained HTML report here.
    #[arg(long)]
    html: Option<PathBuf>,
}

/// The workload charged to facility `f`'s own tenant tree, by account path (`None`: `f` has the
/// tree it was loaded on). A path `f`'s tree lacks is an error naming it.
fn on_tenants_of(
    w: &fabrik_twin::Workload,
    loaded_on: &fabrik_model::TenantTree,
    f: &fabrik_model::Facility,
) -> Result<Option<fabrik_twin::Workload>> {
    let same = loaded_on.len() == f.tenants.len()
        && loaded_on.iter().zip(f.tenants.iter()).all(|((_, a), (_, b))| a.path == b.path);
    if same {
        return Ok(None);
    }
    let mut map = std::collections::HashMap::new();
    let mut out = w.clone();
    for j in &mut out.jobs {
        let path = &loaded_on.get(j.spec.account).path;
        let id = match map.get(&j.spec.account) {
            Some(&id) => id,
            None => {
                let id = f.tenants.resolve(path).map_err(|e| {
                    anyhow::anyhow!(
                        "facility {}: the workload's account '{path}' is not in its tenant tree ({e})",
                        f.name
                    )
                })?;
                map.insert(j.spec.account, id);
                id
            }
        };
        j.spec.account = id;
    }
    Ok(Some(out))
}

fn compare(a: &CompareArgs) -> Result<()> {
    for p in &a.policies {
        check_policy(p)?;
    }
    let mut facilities = a.facilities.iter().map(|f| load_facility(f)).collect::<Result<Vec<_>>>()?;
    let Some(first) = facilities.first() else { bail!("--facilities is empty") };
    let (workload, tenants) = a.w.load(first)?;
    if let Some(t) = tenants {
        facilities[0].tenants = t;
    }
    let first = &facilities[0];
    let mut sched = sched_config(a.sched_config.as_deref(), None)?;
    let variants = a.energy.modifier().split(',').map(|v| a.energy.with_modifier(v)).collect::<Vec<_>>();
    let energies =
        variants.iter().map(|v| v.configure(a.w.days.unwrap_or(30.0), &mut sched)).collect::<Result<Vec<_>>>()?;
    let mut rows = Vec::new();
    let mut notes = workload.notes.clone();
    for f in &facilities {
        // each facility with its own tenant tree (the workload's jobs keep their account
        // paths); one that lacks the workload's accounts runs with the first's tree, and the
        // notes say so
        let mut f = f.clone();
        let own = match on_tenants_of(&workload, &first.tenants, &f) {
            Ok(w) => w,
            Err(e) => {
                notes.push(format!("{e:#}: it runs with the tenant tree of {}", first.name));
                f.tenants = first.tenants.clone();
                None
            }
        };
        let f = &f;
        let workload = own.as_ref().unwrap_or(&workload);
        for p in &a.policies {
            for e in &energies {
                let t = std::time::Instant::now();
                let mut cfg = TwinConfig::new(p, sched.clone(), a.w.seed);
                cfg.energy = e.clone();
                let r = fabrik_twin::simulate(f, workload, cfg).with_context(|| format!("{p} on {}", f.name))?;
                eprintln!("{p} on {}: {:.2} s", f.name, t.elapsed().as_secs_f64());
                rows.push(fabrik_twin::compare::Row::of(&r));
            }
        }
    }
    let c = fabrik_twin::compare::Comparison { workload: workload.source.clone(), notes, rows };
    if let Some(p) = &a.json {
        std::fs::write(p, c.to_json()).with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(p) = &a.html {
        std::fs::write(p, c.html()).with_context(|| format!("writing {}", p.display()))?;
    }
    print!("{}", c.table());
    Ok(())
}

fn main() -> ExitCode {
    default_sigpipe();
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Simulate(a) => simulate(&a),
        Cmd::Compare(a) => compare(&a),
        Cmd::Facility { cmd: FacilityCmd::Show { facility, json } } => facility_show(&facility, json),
        Cmd::Facility {
            cmd: FacilityCmd::Import { slurm_conf, topology, gres, gpu_type, qos, assoc, name, output },
        } => {
            let files = ImportFiles {
                topology: topology.as_deref(),
                gres: gres.as_deref(),
                qos: qos.as_deref(),
                assoc: assoc.as_deref(),
            };
            facility_import(&slurm_conf, files, gpu_type.as_deref(), name, output)
        }
        Cmd::Facility { cmd: FacilityCmd::List } => {
            for (name, desc) in PRESETS {
                println!("{name:<16} {desc}");
            }
            Ok(())
        }
        Cmd::Policies => {
            for (name, desc) in POLICIES {
                println!("{name:<14} {desc}");
            }
            Ok(())
        }
        Cmd::Bench(a) => bench::run(&a),
        Cmd::Plan { cmd } => plan::run(&cmd),
        Cmd::Serve(a) => serve::serve(&a),
        Cmd::Admin { cmd } => serve::admin(&cmd),
        Cmd::Client(c) => client::run(&c),
        Cmd::Telemetry { cmd } => telemetry::run(&cmd),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The files `facility import` reads besides slurm.conf.
struct ImportFiles<'a> {
    topology: Option<&'a Path>,
    gres: Option<&'a Path>,
    qos: Option<&'a Path>,
    assoc: Option<&'a Path>,
}

fn facility_import(
    conf: &Path,
    ImportFiles { topology, gres, qos, assoc }: ImportFiles<'_>,
    gpu_type: Option<&str>,
    name: Option<String>,
    output: Option<PathBuf>,
) -> Result<()> {
    let read = |p: &Path| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()));
    if let Some(t) = gpu_type {
        if fabrik_model::gpu::builtin_catalog().iter().all(|g| !g.name.eq_ignore_ascii_case(t)) {
            bail!("--gpu-type: '{t}' is not a catalog GPU");
        }
    }
    let (text, origin) = (read(conf)?, conf.display().to_string());
    let gres_text = gres.map(read).transpose()?;
    let gres_origin = gres.map(|p| p.display().to_string()).unwrap_or_default();
    let mut c =
        fabrik_model::slurm::SlurmConf::parse(&text, &origin, gres_text.as_deref().map(|g| (g, gres_origin.as_str())))?;
    if let Some(q) = qos {
        c.sched.qos = fabrik_model::slurm_sched::parse_sacctmgr_qos(&read(q)?, &q.display().to_string())?;
    }
    let topo_text = topology.map(read).transpose()?;
    let topo_origin = topology.map(|p| p.display().to_string()).unwrap_or_default();
    let name = name.or(c.cluster.clone()).unwrap_or_else(|| "slurm".into());
    let (mut file, mut notes) =
        c.to_facility(&name, topo_text.as_deref().map(|t| (t, topo_origin.as_str())), gpu_type)?;
    if let Some(a) = assoc {
        let (accounts, more) = fabrik_model::slurm_sched::parse_sacctmgr_assoc(&read(a)?, &a.display().to_string())?;
        notes.push(format!("tenants: {} accounts and users from {}", accounts.len(), a.display()));
        notes.extend(more);
        file.account = accounts;
        // the tree holds Slurm's root user itself
        if let Some(sl) = file.slurm.as_mut() {
            sl.root_user_association = false;
        }
    }
    // the written file must be one fabrik reads back
    let body = toml::to_string(&file).context("writing the facility file")?;
    let f = Facility::from_toml(&body, "the imported facility")?;
    let mut out = format!("# Imported by `fabrik facility import` from {origin}\n");
    for n in &notes {
        out.push_str(&format!("# {n}\n"));
    }
    out.push_str(&body);
    match output {
        Some(p) => {
            std::fs::write(&p, out).with_context(|| format!("writing {}", p.display()))?;
            eprintln!(
                "wrote {}: {} GPUs in {} nodes, {} leaf groups",
                p.display(),
                f.total_gpus(),
                f.domains.len(),
                f.groups.len()
            );
        }
        None => print!("{out}"),
    }
    Ok(())
}

pub fn load_facility(spec: &str) -> Result<Facility> {
    let path = Path::new(spec);
    if path.is_file() {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading facility file {spec}"))?;
        return Ok(Facility::from_toml(&text, spec)?);
    }
    if let Some(f) = Facility::preset(spec) {
        return Ok(f);
    }
    if spec.contains('x') && spec.contains(':') && !spec.ends_with(".toml") {
        return Ok(Facility::from_shorthand(spec)?);
    }
    let names: Vec<&str> = PRESETS.iter().map(|p| p.0).collect();
    Err(fabrik_model::ModelError::UnknownFacility(spec.to_string(), names.join(", ")).into())
}

fn open(path: &str) -> Result<std::fs::File> {
    std::fs::File::open(path).with_context(|| format!("cannot open workload file {path}"))
}

pub fn load_workload(spec: &str, facility: &Facility, days: Option<f64>, load: f64, seed: u64) -> Result<Workload> {
    Ok(load_workload_with(spec, facility, days, load, seed, 0.0, &jiff::tz::TimeZone::UTC)?.0)
}

/// `--tz`: an IANA name from the system's time zone database, UTC, or a fixed offset (+01:00).
fn time_zone(s: &str) -> Result<jiff::tz::TimeZone> {
    if s.eq_ignore_ascii_case("utc") {
        return Ok(jiff::tz::TimeZone::UTC);
    }
    if let Some(sign @ ('+' | '-')) = s.chars().next() {
        let (h, m) = s[1..].split_once(':').unwrap_or((&s[1..], "0"));
        let (h, m): (i32, i32) = (
            h.parse().with_context(|| format!("--tz: '{s}' is not an offset like +01:00"))?,
            m.parse().with_context(|| format!("--tz: '{s}' is not an offset like +01:00"))?,
        );
        if h > 25 || m > 59 {
            bail!("--tz: '{s}' is out of range");
        }
        let secs = (h * 3600 + m * 60) * if sign == '-' { -1 } else { 1 };
        let off = jiff::tz::Offset::from_seconds(secs).map_err(|e| anyhow::anyhow!("--tz: {e}"))?;
        return Ok(jiff::tz::TimeZone::fixed(off));
    }
    jiff::tz::TimeZone::get(s).map_err(|e| anyhow::anyhow!("--tz: unknown time zone '{s}' ({e})"))
}

fn load_workload_with(
    spec: &str,
    facility: &Facility,
    days: Option<f64>,
    load: f64,
    seed: u64,
    flexible_share: f64,
    tz: &jiff::tz::TimeZone,
) -> Result<(Workload, Option<fabrik_model::TenantTree>)> {
    let mut tenants = None;
    let mut w = if spec == "synthetic" {
        let cfg = synthetic::SyntheticConfig {
            days: days.unwrap_or(30.0),
            offered_load: load,
            flexible_share,
            ..Default::default()
        };
        synthetic::generate(&cfg, facility, seed).map_err(anyhow::Error::msg).context("synthetic workload")?
    } else if let Some(p) = spec.strip_prefix("itp:") {
        itp::read(open(p)?, p, &facility.tenants)?
    } else if let Some(p) = spec.strip_prefix("csv:") {
        fabrik_csv::read(open(p)?, p, facility)?
    } else if let Some(p) = spec.strip_prefix("philly:") {
        traces::read_philly(std::io::BufReader::new(open(p)?), p, &facility.tenants)?
    } else if let Some(p) = spec.strip_prefix("helios:").or(spec.strip_prefix("acme:")) {
        traces::read_helios(open(p)?, p, &facility.tenants)?
    } else if let Some(p) = spec.strip_prefix("pai:") {
        let (jobs, tasks) =
            p.split_once(',').context("pai: takes JOBS.csv,TASKS.csv (pai_job_table and pai_task_table)")?;
        traces::read_pai(open(jobs)?, jobs, open(tasks)?, tasks, &facility.tenants)?
    } else if let Some(p) = spec.strip_prefix("sacct:") {
        let (w, t) = fabrik_twin::workload::sacct::read_with(open(p)?, p, tz, Some(&facility.tenants))?;
        tenants = Some(t);
        w
    } else if let Some(rest) = spec.strip_prefix("swf:") {
        let (p, k) = match rest.rsplit_once('#') {
            Some((p, k)) => {
                let k: u64 = k
                    .parse()
                    .ok()
                    .filter(|&k| k > 0)
                    .with_context(|| format!("swf:{rest}: '#{k}' is not a number of processors per GPU"))?;
                (p, Some(k))
            }
            None => (rest, None),
        };
        let (w, t) = fabrik_twin::workload::swf::read(open(p)?, p, facility.total_gpus(), k)?;
        tenants = Some(t);
        w
    } else {
        bail!("unknown workload '{spec}' (expected synthetic, itp:PATH, csv:PATH, philly:PATH, helios:PATH, acme:PATH, pai:JOBS,TASKS, sacct:PATH or swf:PATH[#K])");
    };
    if spec != "synthetic" {
        if let Some(d) = days {
            if !(d > 0.0 && d <= 7320.0) {
                bail!("--days must be in (0, 7320] (the twin replays at most 20 years), got {d:?}");
            }
            let limit = (d * 86_400.0) as u64;
            w.jobs.retain(|j| j.spec.submit.0 < limit);
            w.notes.push(format!("only jobs submitted in the first {d} days"));
        }
    }
    Ok((w, tenants))
}

pub fn sched_config(path: Option<&Path>, depth: Option<usize>) -> Result<SchedConfig> {
    let mut cfg = match path {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            toml::from_str(&text).with_context(|| format!("{}", p.display()))?
        }
        None => SchedConfig::default(),
    };
    if let Some(d) = depth {
        cfg.backfill_depth = d;
    }
    Ok(cfg)
}

fn simulate(a: &SimArgs) -> Result<()> {
    let policy = match (a.preset, a.policy.as_deref()) {
        (Some(p), Some(other)) if other != p.policy() => {
            bail!("--preset {} runs the {} policy, not --policy {other}", p.name(), p.policy())
        }
        (Some(p), _) => p.policy(),
        (None, Some(p)) => p,
        (None, None) => "fair-share",
    };
    let snapshot = match a.from.as_deref() {
        Some(u) if u.starts_with("http://") || u.starts_with("https://") => Some(client::snapshot_from(u)?),
        Some(p) => Some(read_snapshot(Path::new(p))?),
        None => None,
    };
    let policy = match (&snapshot, a.policy.is_none() && a.preset.is_none()) {
        (Some(s), true) => s.policy.clone(),
        _ => policy.to_string(),
    };
    let policy = policy.as_str();
    check_policy(policy)?;
    let facility = load_facility(&a.facility)?;
    if let Some(snap) = snapshot {
        return simulate_from(a, policy, facility, snap);
    }
    let (mut workload, tenants) = a.w.load(&facility)?;
    if a.preset == Some(fabrik_twin::config::Preset::Tiresias) && a.w.preemptible.is_none() {
        workload.set_preemptible(fabrik_twin::workload::Preemptible::All);
    }
    let mut facility = facility;
    if let Some(t) = tenants {
        facility.tenants = t;
    }
    let cfg = twin_config(a, policy, &facility)?;
    let twin = Twin::new(&facility, &workload, cfg)?;
    run_twin(twin, workload.jobs.len(), a)
}

/// A snapshot file (`fabrik snapshot`), its errors naming the file, line and column.
fn read_snapshot(path: &Path) -> Result<fabrik_sched::Snapshot> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read snapshot {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("snapshot {}", path.display()))
}

/// `simulate --from`: the twin forked from a snapshot, with the accounts it names (and the
/// facility file's quotas on their paths), the power cap in force unless --power-cap-mw says
/// otherwise, and --append's arrivals after it.
fn simulate_from(a: &SimArgs, policy: &str, facility: Facility, snap: fabrik_sched::Snapshot) -> Result<()> {
    if a.w.workload != "synthetic" {
        bail!("with --from, arrivals come from --append (the snapshot's jobs are the workload)");
    }
    let facility = fabrik_twin::fork::facility_of(&snap, &facility).map_err(anyhow::Error::msg)?;
    let appended = match &a.append {
        Some(spec) => {
            let w = WorkloadArgs { workload: spec.clone(), ..a.w.clone() };
            Some(w.load(&facility)?.0)
        }
        None => None,
    };
    let (workload, fork) = match &a.runtimes_from {
        Some(spec) => {
            let w = WorkloadArgs { workload: spec.clone(), ..a.w.clone() };
            let (hist, _) = w.load(&facility)?;
            let model = fabrik_model::runtime_model::RuntimeModel::fit(&hist.completed(&facility.tenants));
            let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(a.w.seed);
            fabrik_twin::fork::fork_with(&snap, &facility, appended.as_ref(), |j, ran| {
                j.runtime_s.unwrap_or_else(|| {
                    let account = facility.tenants.get(j.spec.account).path.as_str();
                    model.sample(account, j.spec.walltime.0, ran, rand::Rng::gen::<f64>(&mut rng))
                })
            })
        }
        None => fabrik_twin::fork::fork(&snap, &facility, appended.as_ref()),
    }
    .map_err(anyhow::Error::msg)?;
    let mut cfg = twin_config(a, policy, &facility)?;
    if let (Some(mw), false) = (snap.power_cap_mw, a.energy.has_power_cap()) {
        cfg.energy.cap_mw = Some(fabrik_model::grid::Hourly::constant(mw));
        cfg.energy.cap_source = format!("{mw} MW (the snapshot's)");
    }
    let twin = Twin::forked(&facility, &workload, cfg, fork)?;
    run_twin(twin, workload.jobs.len(), a)
}

/// The twin's configuration from the flags.
fn twin_config(a: &SimArgs, policy: &str, facility: &Facility) -> Result<TwinConfig> {
    let mut cfg = TwinConfig::new(policy, sched_config(a.sched_config.as_deref(), a.backfill_depth)?, a.w.seed);
    cfg.restart_overhead_s = a.restart_overhead_s;
    if let Some(p) = a.preset {
        // after the flags it overrides (restart overhead, scheduler settings)
        p.apply(&mut cfg);
    }
    cfg.failure_restart_s = match a.failure_restart_s.as_str() {
        "auto" => None,
        other => Some(
            fabrik_model::units::parse_duration(other)
                .map_err(|e| anyhow::anyhow!("--failure-restart-s: {e} (or auto)"))?,
        ),
    };
    if let Some(s) = &a.fault_tolerant {
        if a.failure_restart_s != "auto" {
            bail!("--fault-tolerant sets the restart after a failure: leave out --failure-restart-s");
        }
        cfg.fault_tolerant_stall_s =
            Some(fabrik_model::units::parse_duration(s).map_err(|e| anyhow::anyhow!("--fault-tolerant: {e}"))?);
    }
    // per-job rows only for the CSV that prints them
    cfg.keep_job_rows = a.jobs_csv.is_some() || a.jobs_parquet.is_some();
    if a.predictive && !(a.failures || a.failure_rate.is_some()) {
        bail!("--predictive needs --failures (or --failure-rate)");
    }
    if a.failures || a.failure_rate.is_some() {
        let mut fc = fabrik_twin::config::FailureConfig { seed: a.w.seed, ..Default::default() };
        if let Some(r) = a.failure_rate {
            // 1,000 per 1,000 node-days is a failure per node per day, 150 times the published
            // rate; beyond, the run would be nothing but failures.
            if !(0.0..=1000.0).contains(&r) {
                bail!("--failure-rate must be in [0, 1000] failures per 1,000 node-days, got {r:?}");
            }
            fc.per_1000_node_days = r;
        }
        if a.predictive {
            let difficulty = fabrik_twin::telemetry::Difficulty {
                strength: a.precursor_strength,
                noise: a.telemetry_noise,
                missing: a.telemetry_missing,
                resets: a.counter_resets,
            };
            difficulty.validate().map_err(anyhow::Error::msg)?;
            fc.lead_time_s = fabrik_model::units::parse_duration(&a.precursor_lead)
                .map_err(|e| anyhow::anyhow!("--precursor-lead: {e}"))?
                .max(1);
            fc.predictive = Some(fabrik_twin::config::PredictiveConfig { difficulty, ..Default::default() });
        }
        fc.spares_per_group = a.spares;
        cfg.failures = Some(fc);
    }
    cfg.checkpoint_write_s = a.checkpoint_write_s;
    cfg.energy = a.energy.configure(a.w.days.unwrap_or(30.0), &mut cfg.sched)?;
    cfg.checkpoint = match a.checkpoint_interval.as_str() {
        "as-submitted" => fabrik_twin::config::CheckpointPolicy::AsSubmitted,
        "young-daly" => fabrik_twin::config::CheckpointPolicy::YoungDaly,
        other => fabrik_twin::config::CheckpointPolicy::Every(
            fabrik_model::units::parse_duration(other)
                .map_err(|e| anyhow::anyhow!("--checkpoint-interval: {e} (or as-submitted, young-daly)"))?,
        ),
    };
    cfg.root_causes = match fabrik_model::reliability::RootCauses::preset(&a.root_causes) {
        Some(m) => m,
        None if Path::new(&a.root_causes).is_file() => {
            let text = std::fs::read_to_string(&a.root_causes)
                .with_context(|| format!("reading root-cause file {}", a.root_causes))?;
            fabrik_model::reliability::RootCauses::from_toml(&text, &a.root_causes)?
        }
        None => bail!(
            "--root-causes: '{}' is neither a preset ({}) nor a file",
            a.root_causes,
            fabrik_model::reliability::ROOT_CAUSE_PRESETS.iter().map(|p| p.0).collect::<Vec<_>>().join(", ")
        ),
    };
    if let Some(p) = &a.failure_trace {
        let file = std::fs::File::open(p).with_context(|| format!("cannot open failure trace {}", p.display()))?;
        cfg.failure_trace =
            fabrik_twin::failures::read_trace(file, &p.display().to_string(), facility, &cfg.root_causes)?;
    }
    Ok(cfg)
}

/// Runs the twin with a progress bar and writes the outputs.
fn run_twin(twin: Twin<'_>, jobs: usize, a: &SimArgs) -> Result<()> {
    let bar = if a.quiet { ProgressBar::hidden() } else { ProgressBar::new(jobs as u64) };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} jobs done, virtual time {msg}",
        )
        .expect("valid template"),
    );
    let report = twin.run(|p| {
        bar.set_position(p.jobs_done);
        bar.set_message(p.now.to_string());
    })?;
    bar.finish_and_clear();
    write_outputs(&report, a)?;
    if !a.quiet {
        print!("{}", report.summary_text());
    }
    Ok(())
}

fn write_outputs(report: &Report, a: &SimArgs) -> Result<()> {
    let write = |p: &PathBuf, text: String| std::fs::write(p, text).with_context(|| format!("writing {}", p.display()));
    if let Some(p) = &a.json {
        write(p, report.to_json())?;
    }
    if let Some(p) = &a.html {
        write(p, fabrik_twin::html::render(report))?;
    }
    if let Some(p) = &a.jobs_csv {
        write(p, report.jobs_csv())?;
    }
    if let Some(p) = &a.energy_csv {
        write(p, report.energy_csv())?;
    }
    let bytes = |p: &PathBuf, b: Vec<u8>| std::fs::write(p, b).with_context(|| format!("writing {}", p.display()));
    if let Some(p) = &a.jobs_parquet {
        bytes(p, parquet_out::jobs(&report.jobs)?)?;
    }
    if let Some(p) = &a.energy_parquet {
        bytes(p, parquet_out::hours(&report.energy.hours)?)?;
    }
    Ok(())
}

fn facility_show(spec: &str, json: bool) -> Result<()> {
    let f = load_facility(spec)?;
    let s = f.summary();
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    println!("facility {}", s.name);
    println!("  GPUs {}, NVLink domains {}, leaf groups {}, halls {}", s.gpus, s.domains, s.groups, s.halls);
    println!("  nameplate IT power {:.2} MW; tenant accounts {}", s.nameplate_it_power_mw, s.accounts);
    println!(
        "  {:<8} {:>8} {:>8} {:>12} {:>12} {:>10}",
        "type", "GPUs", "domains", "GPUs/domain", "BF16 PFLOP/s", "IT MW"
    );
    for t in &s.by_type {
        println!(
            "  {:<8} {:>8} {:>8} {:>12} {:>12.0} {:>10.2}",
            t.gpu_type, t.gpus, t.domains, t.domain_gpus, t.bf16_pflops, t.it_power_mw
        );
    }
    Ok(())
}

#[cfg(test)]
mod help_tests {
    /// Every command and every flag says what it does (`fabrik … --help`).
    #[test]
    fn every_command_and_flag_has_help_text() {
        use clap::CommandFactory;
        fn walk(c: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in c.get_arguments() {
                let id = a.get_id().as_str();
                if ["help", "version"].contains(&id) || a.is_hide_set() {
                    continue;
                }
                if a.get_help().is_none() && a.get_long_help().is_none() {
                    missing.push(format!("{path} --{id}"));
                }
            }
            for s in c.get_subcommands() {
                let p = format!("{path} {}", s.get_name());
                if s.get_about().is_none() && s.get_long_about().is_none() && s.get_name() != "help" {
                    missing.push(p.clone());
                }
                walk(s, &p, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "fabrik", &mut missing);
        assert!(missing.is_empty(), "without help text:\n{}", missing.join("\n"));
    }
}

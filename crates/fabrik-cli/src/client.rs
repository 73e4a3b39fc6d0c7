//! The CLI client of `fabrik serve`: submit, queue, show, cancel, logs, why, usage, snapshot. The server
//! address and token come from flags, then $FABRIK_SERVER / $FABRIK_TOKEN, then the config file
//! (~/.config/fabrik/client.toml with `server = "..."` and `token = "..."`).

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde::Deserialize;
use serde_json::{json, Value};
use std::path::PathBuf;

#[derive(Args, Clone)]
pub struct Conn {
    /// Server URL (default $FABRIK_SERVER, the config file, or http://127.0.0.1:8080).
    #[arg(long)]
    server: Option<String>,
    /// API token (default $FABRIK_TOKEN or the config file).
    #[arg(long)]
    token: Option<String>,
    /// Print the server's JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
pub enum ClientCmd {
    /// Submit a job: fabrik submit --gpus 8 --walltime 2h -- python train.py
    Submit {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        args: SubmitArgs,
    },
    /// Pending and running jobs (--all for every job).
    Queue {
        #[command(flatten)]
        conn: Conn,
        /// Every job, ended ones too.
        #[arg(long)]
        all: bool,
        /// Only jobs in this state (pending, held, running, completed, failed, cancelled, timeout; any case).
        #[arg(long)]
        state: Option<String>,
        /// Only jobs of this account (a subtree).
        #[arg(long)]
        account: Option<String>,
        /// Forecast start times of the pending jobs (P50 and P90 over the server's twin runs),
        /// instead of the job list.
        #[arg(long)]
        start: bool,
        /// Columns, comma-separated (squeue's -o): id, name, account, user, gpus, gpu_type,
        /// qos, state, submit, start, elapsed, left, walltime, reason.
        #[arg(long, short = 'o', default_value = "id,name,account,gpus,state,submit,elapsed,left,reason")]
        format: String,
    },
    /// A job as JSON: state, times, placement, reason.
    Show {
        #[command(flatten)]
        conn: Conn,
        /// The job id.
        job: i64,
    },
    /// Cancel a job (scancel): a pending one at once, a running one by SIGTERM, then SIGKILL.
    Cancel {
        #[command(flatten)]
        conn: Conn,
        /// The job id.
        job: i64,
    },
    /// Keep a pending job out of scheduling until it is released (scontrol hold).
    Hold {
        #[command(flatten)]
        conn: Conn,
        /// The job id.
        job: i64,
    },
    /// Let a held job be scheduled again (scontrol release).
    Release {
        #[command(flatten)]
        conn: Conn,
        /// The job id.
        job: i64,
    },
    /// Put a running job back in the queue (scontrol requeue): SIGTERM, its checkpoint signal,
    /// and it waits again once it exited.
    Requeue {
        #[command(flatten)]
        conn: Conn,
        /// The job id.
        job: i64,
    },
    /// The job's standard output (or --stderr)
    Logs {
        #[command(flatten)]
        conn: Conn,
        /// The job id.
        job: i64,
        /// The job's standard error instead of its standard output.
        #[arg(long)]
        stderr: bool,
        /// Last N bytes only.
        #[arg(long)]
        tail: Option<u64>,
    },
    /// Why the job is pending (the scheduler's explanation).
    Why {
        #[command(flatten)]
        conn: Conn,
        /// The job id.
        job: i64,
    },
    /// Accounts: entitled share, recent usage, GPU-hours, IT energy and emissions.
    Usage {
        #[command(flatten)]
        conn: Conn,
    },
    /// The scheduler's state (admins) as JSON on standard output: the input of `fabrik simulate
    /// --from`.
    Snapshot {
        #[command(flatten)]
        conn: Conn,
    },
    /// Nodes like sinfo -N: group, hall, GPU type, state (in service, draining, out), why, the
    /// jobs on it, and the health detector's view when the server reads telemetry.
    Nodes {
        #[command(flatten)]
        conn: Conn,
        /// Only nodes out of service or draining, or that the detector suspects.
        #[arg(long)]
        problems: bool,
    },
    /// Take a node out of service (admins): its jobs are requeued; scontrol's DRAIN on Slurm.
    Drain {
        #[command(flatten)]
        conn: Conn,
        /// A node name (or its index).
        node: String,
        /// Why (shown by fabrik nodes and, with Slurm, sinfo -R).
        #[arg(long)]
        reason: String,
    },
    /// Return a drained node to service (admins).
    Resume {
        #[command(flatten)]
        conn: Conn,
        /// A node name (or its index).
        node: String,
    },
    /// What-ifs from the live state (admins): the next days under the facility's current
    /// settings and under each alternative (--policy, --power-cap-mw, --drain, --energy-aware),
    /// side by side; run here in the twin from the server's snapshot.
    Whatif {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        args: crate::whatif::WhatifArgs,
    },
}

#[derive(Args)]
pub struct SubmitArgs {
    /// GPUs, all started together (a gang; default 1).
    #[arg(long, short = 'G')]
    gpus: Option<u32>,
    /// Requested walltime: seconds, 90m, 1h 30m, 1.5d, or Slurm's [D-]HH:MM:SS / MM:SS
    /// (required here or in the script).
    #[arg(long, short = 't')]
    walltime: Option<String>,
    /// The job's name.
    #[arg(long, short = 'J')]
    name: Option<String>,
    /// The account (project) to charge: its path or its last part (default: the token's).
    #[arg(long, short = 'A')]
    account: Option<String>,
    /// GPU type (a name of the facility's catalog).
    #[arg(long)]
    gpu_type: Option<String>,
    /// high, normal or low.
    #[arg(long, short = 'q')]
    qos: Option<String>,
    /// The job may be preempted (and requeued) by higher-priority work.
    #[arg(long)]
    preemptible: bool,
    /// Finish by then (the job becomes flexible): Unix seconds, 2026-12-04T18:00:00Z,
    /// `2026-12-04 18:00` (UTC), or now+2h.
    #[arg(long)]
    deadline: Option<String>,
    /// Start no earlier than then (Slurm's --begin; same forms as --deadline).
    #[arg(long)]
    begin: Option<String>,
    /// Simulated executor: how long the job runs.
    #[arg(long)]
    simulated_runtime: Option<String>,
    /// Wait for other jobs (sbatch's -d): afterok:ID[:ID], afterany:ID, after:ID,
    /// afternotok:ID, singleton; comma-separated.
    #[arg(long, short = 'd')]
    dependency: Option<String>,
    /// A job array (sbatch's -a): task indices and a throttle, 0-99%8, 1,3,5-7, 0-15:4.
    #[arg(long, short = 'a')]
    array: Option<String>,
    /// A batch script and its arguments: its #FABRIK lines (these flags) and #SBATCH lines
    /// (sbatch's common options) at the top set the job's options, flags here win; the script
    /// is sent to run under its #! interpreter.
    #[arg(value_name = "SCRIPT [ARGS]")]
    script: Vec<String>,
    /// Or a command to run: fabrik submit -G 8 -t 2h -- python train.py
    #[arg(last = true)]
    command: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    server: Option<String>,
    token: Option<String>,
}

fn config_file() -> Result<ConfigFile> {
    let path = std::env::var_os("FABRIK_CONFIG")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config/fabrik/client.toml")));
    match path {
        Some(p) if p.is_file() => {
            let text = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
            toml::from_str(&text).with_context(|| format!("{}", p.display()))
        }
        _ => Ok(ConfigFile::default()),
    }
}

struct Client {
    base: String,
    token: String,
    http: reqwest::blocking::Client,
}

impl Client {
    fn new(c: &Conn) -> Result<Client> {
        let file = config_file()?;
        let base = c
            .server
            .clone()
            .or_else(|| std::env::var("FABRIK_SERVER").ok())
            .or(file.server)
            .unwrap_or_else(|| "http://127.0.0.1:8080".into());
        let token = c.token.clone().or_else(|| std::env::var("FABRIK_TOKEN").ok()).or(file.token).context(
            "no API token: pass --token, set FABRIK_TOKEN, or put token = \"...\" in ~/.config/fabrik/client.toml",
        )?;
        Ok(Client { base: base.trim_end_matches('/').to_string(), token, http: reqwest::blocking::Client::new() })
    }

    fn send(&self, req: reqwest::blocking::RequestBuilder) -> Result<reqwest::blocking::Response> {
        let resp =
            req.bearer_auth(&self.token).send().with_context(|| format!("cannot reach the server at {}", self.base))?;
        if !resp.status().is_success() {
            let status = resp.status();
            let body: Value = resp.json().unwrap_or(Value::Null);
            bail!("server answered {status}: {}", body["error"].as_str().unwrap_or("(no message)"));
        }
        Ok(resp)
    }

    fn get(&self, path: &str) -> Result<Value> {
        Ok(self.send(self.http.get(format!("{}{path}", self.base)))?.json()?)
    }

    fn post(&self, path: &str, body: Value) -> Result<Value> {
        Ok(self.send(self.http.post(format!("{}{path}", self.base)).json(&body))?.json()?)
    }
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `queue --format`'s columns: (name, header, width; 0 = the rest of the line).
const COLUMNS: [(&str, &str, usize); 14] = [
    ("id", "JOB", 7),
    ("name", "NAME", 20),
    ("account", "ACCOUNT", 32),
    ("user", "USER", 10),
    ("gpus", "GPUS", 5),
    ("gpu_type", "GPU", 6),
    ("qos", "QOS", 6),
    ("state", "STATE", 9),
    ("submit", "SUBMIT", 19),
    ("start", "START", 19),
    ("elapsed", "ELAPSED", 11),
    ("left", "TIME_LEFT", 11),
    ("walltime", "WALLTIME", 11),
    ("reason", "REASON", 0),
];

fn columns(spec: &str) -> Result<Vec<&'static (&'static str, &'static str, usize)>> {
    spec.split(',')
        .map(|c| c.trim().to_ascii_lowercase())
        .filter(|c| !c.is_empty())
        .map(|c| {
            COLUMNS.iter().find(|k| k.0 == c).ok_or_else(|| {
                anyhow::anyhow!(
                    "--format: unknown column '{c}' (known: {})",
                    COLUMNS.iter().map(|k| k.0).collect::<Vec<_>>().join(", ")
                )
            })
        })
        .collect()
}

/// Seconds as Slurm prints them: [D-]HH:MM:SS.
fn hms(t: u64) -> String {
    let (d, h, m, s) = (t / 86_400, t / 3600 % 24, t / 60 % 60, t % 60);
    if d > 0 {
        format!("{d}-{h:02}:{m:02}:{s:02}")
    } else {
        format!("{h:02}:{m:02}:{s:02}")
    }
}

fn cell(j: &Value, col: &str, now: u64) -> String {
    let time = |k: &str| {
        j[k].as_u64()
            .map_or("-".into(), |t| fabrik_model::SimTime(t).unix_utc().trim_end_matches('Z').replace(' ', "T"))
    };
    let running = j["state"] == "running";
    let start = j["start_time"].as_u64().filter(|_| running);
    let wall = j["walltime_s"].as_u64().unwrap_or(0);
    match col {
        "id" => s(&j["id"]),
        "name" => s(&j["name"]).chars().take(20).collect(),
        "user" => s(&j["submitter"]),
        "gpu_type" => j["gpu_type"].as_str().unwrap_or("any").to_string(),
        "submit" => time("submit_time"),
        "start" => time("start_time"),
        "elapsed" => start.map_or("-".into(), |t| hms(now.saturating_sub(t))),
        "left" => start.map_or("-".into(), |t| hms((t + wall).saturating_sub(now))),
        "walltime" => hms(wall),
        "reason" => j["reason"].as_str().unwrap_or("").to_string(),
        other => s(&j[other]),
    }
}

fn print_jobs(jobs: &[Value], cols: &[&(&str, &str, usize)], now: u64) {
    let line = |cells: Vec<String>| {
        let parts: Vec<String> =
            cols.iter().zip(cells).map(|(c, v)| if c.2 == 0 { v } else { format!("{v:<w$}", w = c.2) }).collect();
        println!("{}", parts.join(" ").trim_end());
    };
    line(cols.iter().map(|c| c.1.to_string()).collect());
    for j in jobs {
        line(cols.iter().map(|c| cell(j, c.0, now)).collect());
    }
}

/// The snapshot of the server at `url` (its base address), with the token from $FABRIK_TOKEN
/// or the config file: `fabrik simulate --from URL`.
pub fn snapshot_from(url: &str) -> Result<fabrik_sched::Snapshot> {
    let conn = Conn { server: Some(url.to_string()), token: None, json: false };
    let c = Client::new(&conn)?;
    serde_json::from_value(c.get("/v1/snapshot")?).with_context(|| format!("the snapshot of {url}"))
}

pub fn run(cmd: &ClientCmd) -> Result<()> {
    let conn = match cmd {
        ClientCmd::Submit { conn, .. }
        | ClientCmd::Queue { conn, .. }
        | ClientCmd::Show { conn, .. }
        | ClientCmd::Cancel { conn, .. }
        | ClientCmd::Hold { conn, .. }
        | ClientCmd::Release { conn, .. }
        | ClientCmd::Requeue { conn, .. }
        | ClientCmd::Logs { conn, .. }
        | ClientCmd::Why { conn, .. }
        | ClientCmd::Usage { conn }
        | ClientCmd::Snapshot { conn }
        | ClientCmd::Whatif { conn, .. }
        | ClientCmd::Nodes { conn, .. }
        | ClientCmd::Drain { conn, .. }
        | ClientCmd::Resume { conn, .. } => conn,
    };
    let c = Client::new(conn)?;
    let out = |v: &Value| println!("{}", serde_json::to_string_pretty(v).expect("JSON"));
    match cmd {
        ClientCmd::Submit { args: a, .. } => {
            let (command, d) = match (a.script.split_first(), a.command.is_empty()) {
                (Some(_), false) => bail!("give a script or a command after --, not both"),
                (None, true) => bail!("nothing to run: give a script, or a command after --"),
                (None, false) => (a.command.clone(), crate::script::Directives::default()),
                (Some((path, args)), true) => {
                    let text = std::fs::read_to_string(path).with_context(|| format!("reading script {path}"))?;
                    let d = crate::script::directives(&text, path)?;
                    for i in &d.ignored {
                        eprintln!("note: {path}: #SBATCH {i} ignored (fabrik schedules GPUs and keeps stdout and stderr itself)");
                    }
                    let name = std::path::Path::new(path)
                        .file_name()
                        .map_or(path.clone(), |n| n.to_string_lossy().to_string());
                    (crate::script::command(&text, &name, args)?, d)
                }
            };
            let pick = |flag: &Option<String>, dir: &Option<String>| flag.clone().or_else(|| dir.clone());
            let walltime = pick(&a.walltime, &d.walltime)
                .context("a walltime is required: --walltime/-t, or #SBATCH --time in the script")?;
            let mut body = json!({
                "command": command,
                "gpus": a.gpus.or(d.gpus).unwrap_or(1),
                "walltime": walltime,
                "preemptible": a.preemptible || d.preemptible
            });
            let name = pick(&a.name, &d.name).or_else(|| {
                a.script
                    .first()
                    .and_then(|p| std::path::Path::new(p).file_name())
                    .map(|n| n.to_string_lossy().to_string())
            });
            for (k, v) in [
                ("name", name),
                ("account", pick(&a.account, &d.account)),
                ("gpu_type", pick(&a.gpu_type, &d.gpu_type)),
                ("qos", pick(&a.qos, &d.qos)),
                ("simulated_runtime", pick(&a.simulated_runtime, &d.simulated_runtime)),
                ("dependency", pick(&a.dependency, &d.dependency)),
                ("array", pick(&a.array, &d.array)),
            ] {
                if let Some(v) = v {
                    body[k] = json!(v);
                }
            }
            // the server reads the times on its own clock
            for (k, v) in [("deadline", &pick(&a.deadline, &d.deadline)), ("earliest_start", &pick(&a.begin, &d.begin))]
            {
                if let Some(v) = v {
                    body[k] = match v.parse::<u64>() {
                        Ok(n) => json!(n),
                        Err(_) => json!(v),
                    };
                }
            }
            let j = c.post("/v1/jobs", body)?;
            if conn.json {
                out(&j);
            } else {
                match j["array_job_id"].as_i64() {
                    Some(aid) => println!("submitted array job {aid} ({}) to {}", s(&j["name"]), s(&j["account"])),
                    None => println!("submitted job {} ({}) to {}", s(&j["id"]), s(&j["name"]), s(&j["account"])),
                }
            }
        }
        ClientCmd::Queue { start: true, .. } => {
            let v = c.get("/v1/forecast")?;
            if conn.json {
                out(&v);
                return Ok(());
            }
            let t = |x: &Value| x.as_u64().map_or("-".into(), |u| fabrik_model::SimTime(u).unix_utc());
            println!(
                "forecast of {} (from {} twin runs, runtimes learned from {} ended and running jobs)",
                t(&v["at"]),
                s(&v["runs"]),
                s(&v["model_jobs"])
            );
            println!(
                "{:>7} {:<20} {:<34} {:<21} {:<21} REASON",
                "JOB", "NAME", "ACCOUNT", "START (P50)", "START (P90)"
            );
            for j in v["jobs"].as_array().into_iter().flatten() {
                println!(
                    "{:>7} {:<20} {:<34} {:<21} {:<21} {}",
                    s(&j["id"]),
                    s(&j["name"]),
                    s(&j["account"]),
                    t(&j["p50_start"]),
                    t(&j["p90_start"]),
                    s(&j["reason"])
                );
            }
        }
        ClientCmd::Queue { all, state, account, format, .. } => {
            let mut q = vec![format!(
                "state={}",
                state.clone().unwrap_or_else(|| if *all { String::new() } else { "active".into() })
            )];
            if let Some(a) = account {
                q.push(format!("account={a}"));
            }
            if *all && state.is_none() {
                q.remove(0);
            }
            let cols = columns(format)?;
            let v = c.get(&format!("/v1/jobs?{}", q.join("&")))?;
            if conn.json {
                out(&v);
            } else {
                // elapsed and time left on the server's clock (a simulated one may run fast)
                let now = c.get("/v1/facility").ok().and_then(|f| f["now"].as_u64()).unwrap_or(0);
                print_jobs(v["jobs"].as_array().map_or(&[][..], |a| a.as_slice()), &cols, now);
            }
        }
        ClientCmd::Show { job, .. } => out(&c.get(&format!("/v1/jobs/{job}"))?),
        ClientCmd::Cancel { job, .. } => {
            let v = c.post(&format!("/v1/jobs/{job}/cancel"), json!({}))?;
            if conn.json {
                out(&v);
            } else {
                println!("job {job}: {} ({})", s(&v["state"]), v["reason"].as_str().unwrap_or(""));
            }
        }
        ClientCmd::Logs { job, stderr, tail, .. } => {
            let mut url = format!("{}/v1/jobs/{job}/logs?stream={}", c.base, if *stderr { "stderr" } else { "stdout" });
            if let Some(t) = tail {
                url.push_str(&format!("&tail={t}"));
            }
            let text = c.send(c.http.get(url))?.text()?;
            print!("{text}");
        }
        ClientCmd::Snapshot { .. } => out(&c.get("/v1/snapshot")?),
        ClientCmd::Whatif { args, .. } => {
            let snap: fabrik_sched::Snapshot =
                serde_json::from_value(c.get("/v1/snapshot")?).context("the server's snapshot")?;
            crate::whatif::run(snap, args, conn.json)?;
        }
        ClientCmd::Why { job, .. } => {
            let v = c.get(&format!("/v1/jobs/{job}/why"))?;
            if conn.json {
                out(&v);
            } else {
                println!("job {job} {}", s(&v["state"]));
                for r in v["reasons"].as_array().into_iter().flatten() {
                    println!("  - {}", s(r));
                }
                // a pending job's forecast, when the server has one
                if let Ok(f) = c.get(&format!("/v1/jobs/{job}/forecast")) {
                    let t = |x: &Value| x.as_u64().map_or("-".into(), |u| fabrik_model::SimTime(u).unix_utc());
                    let j = &f["jobs"][0];
                    println!(
                        "  - forecast start: {} (P50), {} (P90), from {} twin runs at {}",
                        t(&j["p50_start"]),
                        t(&j["p90_start"]),
                        s(&f["runs"]),
                        t(&f["at"])
                    );
                }
            }
        }
        ClientCmd::Hold { job, .. } | ClientCmd::Release { job, .. } | ClientCmd::Requeue { job, .. } => {
            let verb = match cmd {
                ClientCmd::Hold { .. } => "hold",
                ClientCmd::Release { .. } => "release",
                _ => "requeue",
            };
            let v = c.post(&format!("/v1/jobs/{job}/{verb}"), json!({}))?;
            if conn.json {
                out(&v);
            } else {
                println!("job {job} {}: {}", s(&v["state"]), v["reason"].as_str().unwrap_or(""));
            }
        }
        ClientCmd::Nodes { problems, .. } => {
            let v = c.get("/v1/nodes")?;
            if conn.json {
                out(&v);
                return Ok(());
            }
            print_nodes(&v, *problems);
        }
        ClientCmd::Drain { node, reason, .. } => {
            let v = c.post(&format!("/v1/nodes/{node}/drain"), json!({ "reason": reason }))?;
            println!("{} drained", s(&v["node"]));
        }
        ClientCmd::Resume { node, .. } => {
            let v = c.post(&format!("/v1/nodes/{node}/resume"), json!({}))?;
            println!("{} back in service", s(&v["node"]));
        }
        ClientCmd::Usage { .. } => {
            let v = c.get("/v1/accounts")?;
            if conn.json {
                out(&v);
                return Ok(());
            }
            println!(
                "{:<36} {:>9} {:>9} {:>11} {:>8} {:>8} {:>10} {:>9}",
                "ACCOUNT", "ENTITLED", "USAGE", "GPU-HOURS", "RUNNING", "PENDING", "IT KWH", "KG CO2E"
            );
            for a in v["accounts"].as_array().into_iter().flatten() {
                println!(
                    "{:<36} {:>8.1}% {:>8.1}% {:>11.2} {:>8} {:>8} {:>10.2} {:>9.2}",
                    s(&a["account"]),
                    shown(a["entitled_share"].as_f64().unwrap_or(0.0) * 100.0, 1),
                    shown(a["usage_share"].as_f64().unwrap_or(0.0) * 100.0, 1),
                    shown(a["gpu_hours"].as_f64().unwrap_or(0.0), 2),
                    s(&a["running_gpus"]),
                    s(&a["pending_jobs"]),
                    shown(a["it_kwh"].as_f64().unwrap_or(0.0), 2),
                    shown(a["emissions_kg"].as_f64().unwrap_or(0.0), 2)
                );
            }
        }
    }
    Ok(())
}

fn print_nodes(v: &Value, problems: bool) {
    if let Some(t) = v["telemetry"].as_object() {
        let last =
            t.get("last_ok").and_then(Value::as_u64).map_or("never".into(), |u| fabrik_model::SimTime(u).unix_utc());
        println!(
            "telemetry: {}{} (last fresh poll {last}; {} of at most {} nodes drained by the detector{})",
            s(&t["state"]),
            t.get("reason").and_then(Value::as_str).map(|r| format!(": {r}")).unwrap_or_default(),
            s(&t["drained_by_detector"]),
            s(&t["drain_cap"]),
            if t.get("dry_run").and_then(Value::as_bool) == Some(true) { "; dry run" } else { "" }
        );
    }
    println!(
        "{:<14} {:>5} {:<8} {:<8} {:>4} {:>4} {:<10} {:<8} REASON",
        "NODE", "GROUP", "HALL", "GPU", "GPUS", "BUSY", "STATE", "HEALTH"
    );
    for n in v["nodes"].as_array().into_iter().flatten() {
        let h = &n["health"];
        let health = if h.is_null() {
            "-".to_string()
        } else if h["suspect"].as_bool() == Some(true) {
            let sig: Vec<String> = h["signals"].as_array().into_iter().flatten().map(s).collect();
            format!("suspect:{}", sig.join("+"))
        } else {
            "ok".into()
        };
        let state = s(&n["state"]);
        if problems && state == "in service" && !health.starts_with("suspect") {
            continue;
        }
        let jobs: Vec<String> = n["jobs"].as_array().into_iter().flatten().map(s).collect();
        let mut reason = n["reason"].as_str().unwrap_or("").to_string();
        if let Some(held) = h["held_back"].as_str() {
            reason = format!("not drained ({held}): {}", h["evidence"].as_str().unwrap_or(""));
        }
        if !jobs.is_empty() {
            reason = format!("jobs {}{}{reason}", jobs.join(","), if reason.is_empty() { "" } else { "; " });
        }
        println!(
            "{:<14} {:>5} {:<8} {:<8} {:>4} {:>4} {:<10} {:<8} {reason}",
            s(&n["node"]),
            s(&n["group"]),
            s(&n["hall"]),
            s(&n["gpu_type"]),
            s(&n["gpus"]),
            s(&n["busy"]),
            state,
            health
        );
    }
}

/// `x` as printed with `decimals` decimals, without a sign on a zero (decayed usage can be a
/// rounding error below zero: `-0.00` reads as a debt).
fn shown(x: f64, decimals: i32) -> f64 {
    let k = 10f64.powi(decimals);
    (x * k).round() / k + 0.0
}

#[cfg(test)]
mod tests {
    #[test]
    fn queue_columns_show_elapsed_and_time_left_as_slurm_does() {
        let j = serde_json::json!({"id": 7, "name": "train", "state": "running", "submit_time": 1_796_590_000u64,
            "start_time": 1_796_590_100u64, "walltime_s": 90_000, "gpus": 8, "reason": null});
        // started 100 s after submission; now 3,725 s after the start: 01:02:05 elapsed, and
        // 90,000 − 3,725 = 86,275 s = 23:57:55 left
        let now = 1_796_590_100 + 3_725;
        assert_eq!(super::cell(&j, "elapsed", now), "01:02:05");
        assert_eq!(super::cell(&j, "left", now), "23:57:55");
        assert_eq!(super::cell(&j, "walltime", now), "1-01:00:00");
        // date -u -d @1796590000
        assert_eq!(super::cell(&j, "submit", now), "2026-12-06T20:46:40");
        assert_eq!(super::cell(&j, "gpu_type", now), "any");
        assert_eq!(
            super::columns("ID,state, left").unwrap().iter().map(|c| c.0).collect::<Vec<_>>(),
            ["id", "state", "left"]
        );
        assert!(super::columns("id,colour").unwrap_err().to_string().contains("unknown column 'colour'"));
    }

    #[test]
    fn zeros_print_without_a_sign() {
        assert_eq!(format!("{:.2}", super::shown(-0.0001, 2)), "0.00");
        assert_eq!(format!("{:.2}", super::shown(-0.0, 2)), "0.00");
        assert_eq!(format!("{:.1}", super::shown(-0.04, 1)), "0.0");
        assert_eq!(format!("{:.2}", super::shown(-1.236, 2)), "-1.24");
    }
}

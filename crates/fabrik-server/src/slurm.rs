//! The Slurm executor (`fabrik serve --executor slurm`): fabrik's brain decides what starts
//! where; Slurm runs it. It never decides anything itself.
//!
//! - **Inventory**: the facility is what Slurm reports (`sinfo -N`: nodes, `gpu[:TYPE]:N` Gres,
//!   features, state; `scontrol show topology`: leaf switches), built with the same import as
//!   `fabrik facility import`.
//! - **Dispatch**: `sbatch --parsable --no-requeue --nodelist=… --nodes=K --gres=gpu:N --time=…`
//!   with the job named `fabrik-TAG-ID-START` (TAG: this control plane, ID: the job, START: the
//!   attempt's start second), so every attempt can be found again by name — in `squeue`, and in
//!   `sacct` once Slurm has forgotten it. As root the job is submitted for its account's Unix user
//!   (`--uid/--gid`, the `[[run_as]]` map) and Slurm account. Its script and logs live in its spool
//!   directory. A dispatch Slurm does not start within the grace period is cancelled and handed
//!   back (`taken_back`), with Slurm's pending reason.
//! - **Lifecycle**: states from `squeue`, exit codes from `scontrol show job` or `sacct -P`
//!   (Slurm 22.05's JSON outputs get exit codes wrong); cancel and walltime through `scancel`.
//! - **Node health**: nodes Slurm has DOWN, DRAIN or FAIL are reported out of service, and back
//!   when they return; fabrik's own drains are written with `scontrol update … State=DRAIN`. A
//!   job Slurm ends with NODE_FAIL (its node went down under it) is taken back into fabrik's
//!   queue, not failed: the node's failure is not the job's.
//! - **Slurm unreachable**: a failed `sbatch` is `StartError::Unavailable` (the job stays
//!   pending with the reason); polls that fail change nothing.

use crate::executor::{Executor, Exit, Found, Isolation, Launch, Spool, StartError, Users};
use fabrik_model::{DomainId, Facility, SimTime};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

#[derive(Debug, Clone)]
pub struct SlurmConfig {
    pub data_dir: PathBuf,
    /// Job scripts and logs; on a real cluster a file system the nodes share.
    pub spool_dir: PathBuf,
    pub isolation: Isolation,
    /// Seconds a dispatched job may stay pending in Slurm before it is taken back.
    pub start_grace_s: u64,
    pub partition: Option<String>,
    /// Seconds between node-state polls.
    pub node_poll_s: u64,
    /// Seconds between SIGTERM and the kill when fabrik takes a job back (preemption, a node
    /// leaving service).
    pub kill_grace_s: u64,
}

/// Runs a Slurm command; its stdout, or an error naming the command and what it said.
fn run(cmd: &str, args: &[String]) -> Result<String, String> {
    let out = Command::new(cmd).args(args).output().map_err(|e| format!("{cmd}: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!("{cmd} {}: {}", args.first().map_or("", |s| s.as_str()), err.trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn s(x: &str) -> String {
    x.to_string()
}

/// A node as `sinfo -N -h -o '%N|%G|%T|%f|%E'` prints it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeState {
    pub name: String,
    pub gres: String,
    pub state: String,
    pub features: String,
    pub reason: String,
}

impl NodeState {
    /// DOWN, DRAIN(ING/ED), FAIL(ING), NOT_RESPONDING (`*`), MAINT, REBOOT and the like are
    /// out of service.
    pub fn in_service(&self) -> bool {
        let st = self.state.to_ascii_lowercase();
        !["down", "drain", "fail", "maint", "reboot", "unknown", "future", "power"].iter().any(|bad| st.contains(bad))
            && !st.ends_with('*')
    }
}

pub fn parse_sinfo(text: &str) -> Vec<NodeState> {
    let mut out: Vec<NodeState> = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.splitn(5, '|').collect();
        if f.len() < 4 || f[0].trim().is_empty() {
            continue;
        }
        // a node in several partitions is listed once per partition
        if out.iter().any(|n| n.name == f[0].trim()) {
            continue;
        }
        out.push(NodeState {
            name: f[0].trim().into(),
            gres: f[1].trim().into(),
            state: f[2].trim().into(),
            features: f[3].trim().into(),
            reason: f.get(4).map_or("", |r| r.trim()).into(),
        });
    }
    out
}

fn sinfo() -> Result<Vec<NodeState>, String> {
    run("sinfo", &[s("-N"), s("-h"), s("-o"), s("%N|%G|%T|%f|%E")]).map(|t| parse_sinfo(&t))
}

/// The facility Slurm reports: its GPU nodes (as `fabrik facility import` reads slurm.conf) and
/// its leaf switches.
pub fn discover(name: &str) -> Result<Facility, String> {
    let nodes = sinfo()?;
    let mut conf = String::new();
    for n in &nodes {
        conf.push_str(&format!(
            "NodeName={} Gres={} Features={}\n",
            n.name,
            n.gres.replace("(null)", ""),
            n.features.replace("(null)", "")
        ));
    }
    let c = fabrik_model::slurm::SlurmConf::parse(&conf, "sinfo", None).map_err(|e| e.to_string())?;
    let topo = run("scontrol", &[s("show"), s("topology")]).unwrap_or_default();
    let topo = (!topo.trim().is_empty() && !topo.contains("No topology")).then_some(topo);
    let (file, _) =
        c.to_facility(name, topo.as_deref().map(|t| (t, "scontrol show topology")), None).map_err(|e| e.to_string())?;
    Facility::from_file(&file, "slurm").map_err(|e| e.to_string())
}

struct Tracked {
    slurm_id: u32,
    dispatched: SimTime,
    started: bool,
}

pub struct SlurmExecutor {
    cfg: SlurmConfig,
    users: Users,
    spool: Spool,
    tag: String,
    nodes: Vec<String>,
    jobs: HashMap<i64, Tracked>,
    taken_back: Vec<(i64, String)>,
    /// Per domain: the reason it is out of service, as last reported.
    down: Vec<Option<String>>,
    last_node_poll: Option<SimTime>,
    /// Runs fabrik took back: SIGTERM sent, cancelled for good at the instant given.
    dying: Vec<(u32, std::time::Instant)>,
    /// `squeue` at most once a second, however fast the engine ticks: a controller serving a
    /// large site must not be polled in a tight loop.
    last_squeue: Option<std::time::Instant>,
    /// Jobs recovered while Slurm did not answer: by name, resolved at the next poll that it does
    /// (requeueing one Slurm already had would submit it twice).
    unresolved: HashMap<i64, (String, SimTime)>,
}

/// Single quotes for sh.
fn quote(a: &str) -> String {
    format!("'{}'", a.replace('\'', r"'\''"))
}

impl SlurmExecutor {
    pub fn new(cfg: SlurmConfig, facility: &Facility) -> Result<SlurmExecutor, String> {
        if facility.node_names.len() != facility.domains.len() {
            return Err("the Slurm executor needs the facility Slurm reports (node names for every domain)".into());
        }
        let users = Users::new(&cfg.isolation)?;
        let spool = Spool::new(&cfg.spool_dir, &cfg.data_dir)?;
        // the tag tells this control plane's jobs from any other's on the same cluster
        let canon = std::fs::canonicalize(&cfg.data_dir).unwrap_or(cfg.data_dir.clone());
        let tag = crate::store::hash_token(&canon.display().to_string())[..8].to_string();
        let n = facility.domains.len();
        Ok(SlurmExecutor {
            cfg,
            users,
            spool,
            tag,
            nodes: facility.node_names.clone(),
            jobs: HashMap::new(),
            taken_back: Vec::new(),
            down: vec![None; n],
            last_node_poll: None,
            dying: Vec::new(),
            last_squeue: None,
            unresolved: HashMap::new(),
        })
    }

    fn name_of(&self, id: i64, start: SimTime) -> String {
        format!("fabrik-{}-{id}-{}", self.tag, start.0)
    }

    /// (slurm id, state, pending reason) of this control plane's jobs Slurm still lists, by name.
    fn squeue(&self) -> Result<HashMap<String, (u32, String, String)>, String> {
        let text = run("squeue", &[s("-h"), s("-t"), s("all"), s("-o"), s("%A|%j|%T|%r")])?;
        let prefix = format!("fabrik-{}-", self.tag);
        let mut out = HashMap::new();
        for line in text.lines() {
            let f: Vec<&str> = line.splitn(4, '|').collect();
            if f.len() == 4 && f[1].starts_with(&prefix) {
                if let Ok(id) = f[0].trim().parse() {
                    out.insert(f[1].to_string(), (id, f[2].trim().to_string(), f[3].trim().to_string()));
                }
            }
        }
        Ok(out)
    }

    /// A job by name after a restart: (Slurm id, state) from the controller's list, else from
    /// accounting; `None` when Slurm never had it.
    fn by_name(listed: &HashMap<String, (u32, String, String)>, name: &str) -> Option<(u32, String)> {
        if let Some((sid, st, _)) = listed.get(name) {
            return Some((*sid, st.clone()));
        }
        let out = run(
            "sacct",
            &[
                s("-X"),
                s("-n"),
                s("-P"),
                s("-S"),
                s("now-30days"),
                format!("--name={name}"),
                s("--format=JobIDRaw,State"),
            ],
        )
        .ok()?;
        let line = out.lines().next()?;
        let (a, b) = line.split_once('|')?;
        Some((a.parse().ok()?, b.split_whitespace().next()?.to_string()))
    }

    /// The exit of an ended Slurm job: `scontrol show job` while Slurm remembers it, else sacct.
    fn exit_of(slurm_id: u32, state: &str) -> Exit {
        let code = run("scontrol", &[s("show"), s("job"), slurm_id.to_string()])
            .ok()
            .and_then(|t| t.split_whitespace().find_map(|w| w.strip_prefix("ExitCode=")).map(str::to_string))
            .or_else(|| {
                run("sacct", &[s("-X"), s("-n"), s("-P"), s("-j"), slurm_id.to_string(), s("--format=ExitCode")])
                    .ok()
                    .and_then(|t| t.lines().next().map(|l| l.trim().to_string()))
            });
        let parsed = code.as_deref().and_then(|c| {
            let (a, b) = c.split_once(':')?;
            Some((a.parse::<i32>().ok()?, b.parse::<i32>().ok()?))
        });
        match (parsed, state) {
            (Some((_, sig)), _) if sig > 0 => Exit::Signal(sig),
            (Some((code, _)), _) if code > 0 => Exit::Code(code),
            // cancelled, timed out or failed with a zero code: Slurm killed it
            (Some(_), st) if st.starts_with("CANCELLED") || st == "TIMEOUT" || st == "PREEMPTED" => Exit::Signal(15),
            (Some(_), "NODE_FAIL" | "BOOT_FAIL" | "OUT_OF_MEMORY" | "FAILED" | "DEADLINE") => Exit::Code(1),
            (Some((code, _)), _) => Exit::Code(code),
            (None, _) => Exit::Lost,
        }
    }

    fn final_state(st: &str) -> bool {
        ![
            "PENDING",
            "RUNNING",
            "CONFIGURING",
            "COMPLETING",
            "SUSPENDED",
            "REQUEUED",
            "RESIZING",
            "SIGNALING",
            "STAGE_OUT",
        ]
        .contains(&st)
    }

    fn poll_nodes(&mut self, now: SimTime) -> Vec<(DomainId, Option<String>)> {
        if self.last_node_poll.is_some_and(|t| now.0 < t.0 + self.cfg.node_poll_s) {
            return Vec::new();
        }
        self.last_node_poll = Some(now);
        let Ok(states) = sinfo() else { return Vec::new() };
        let mut changes = Vec::new();
        for (d, name) in self.nodes.iter().enumerate() {
            let Some(st) = states.iter().find(|n| &n.name == name) else { continue };
            let now_down = (!st.in_service()).then(|| {
                format!(
                    "Slurm has node {name} {}{}",
                    st.state,
                    if st.reason.is_empty() || st.reason == "none" {
                        String::new()
                    } else {
                        format!(" ({})", st.reason)
                    }
                )
            });
            if now_down.is_some() != self.down[d].is_some() {
                changes.push((DomainId(d as u32), now_down.clone()));
            }
            self.down[d] = now_down;
        }
        changes
    }
}

impl Executor for SlurmExecutor {
    fn name(&self) -> &'static str {
        "slurm"
    }

    fn admits(&self, account: &str) -> Result<(), String> {
        self.users.user_for(account).map(|_| ())
    }

    fn announcement(&self) -> Option<String> {
        self.users.announcement()
    }

    fn start(&mut self, l: &Launch<'_>) -> Result<Option<u32>, StartError> {
        if l.command.is_empty() {
            return Err(StartError::Refused("empty command".into()));
        }
        let u = self.users.user_for(l.account)?.clone();
        let (_, _, dir) = self.spool.prepare(l.id, &u, &self.users)?;
        let nodes: Vec<&str> = l.parts.iter().map(|&(d, _)| self.nodes[d as usize].as_str()).collect();
        let per_node = l.parts.iter().map(|p| p.1).max().unwrap_or(0);
        if l.parts.iter().any(|p| p.1 != per_node) {
            return Err(StartError::Refused("a Slurm job takes the same GPUs on every node".into()));
        }
        let mut script = String::from("#!/bin/sh\n");
        for (k, v) in [
            ("FABRIK_JOB_ID", l.id.to_string()),
            ("FABRIK_ACCOUNT", l.account.to_string()),
            ("FABRIK_GPUS", (per_node as usize * nodes.len()).to_string()),
            ("FABRIK_WALLTIME_S", l.walltime_s.to_string()),
            ("FABRIK_POWER_FRACTION", format!("{:.3}", l.power_fraction)),
            ("FABRIK_JOB_DIR", dir.display().to_string()),
        ]
        .into_iter()
        .chain(crate::executor::array_env(l.array))
        {
            script.push_str(&format!("export {k}={}\n", quote(&v)));
        }
        script.push_str("exec");
        for a in l.command {
            script.push(' ');
            script.push_str(&quote(a));
        }
        script.push('\n');
        let path = dir.join("job.sh");
        std::fs::write(&path, script).map_err(|e| StartError::Refused(format!("writing {}: {e}", path.display())))?;
        if self.users.is_other(&u) {
            std::os::unix::fs::chown(&path, Some(u.uid), Some(u.gid))
                .map_err(|e| StartError::Refused(e.to_string()))?;
        }
        let minutes = l.walltime_s.div_ceil(60).max(1);
        let mut args = vec![
            s("--parsable"),
            s("--no-requeue"),
            format!("--job-name={}", self.name_of(l.id, l.now)),
            format!("--comment=fabrik job {}", l.id),
            format!("--nodelist={}", nodes.join(",")),
            format!("--nodes={}", nodes.len()),
            format!("--gres=gpu:{per_node}"),
            format!("--time={minutes}"),
            format!("--chdir={}", dir.display()),
            format!("--output={}", dir.join("stdout").display()),
            format!("--error={}", dir.join("stderr").display()),
            // the job's environment is Slurm's own plus what the script exports
            s("--export=NONE"),
        ];
        if self.users.is_other(&u) {
            args.push(format!("--uid={}", u.uid));
            args.push(format!("--gid={}", u.gid));
        }
        if let Some(a) = self.users.entry(l.account).and_then(|e| e.slurm_account.clone()) {
            args.push(format!("--account={a}"));
        }
        if let Some(p) = &self.cfg.partition {
            args.push(format!("--partition={p}"));
        }
        args.push(path.display().to_string());
        let out = run("sbatch", &args).map_err(StartError::Unavailable)?;
        let slurm_id: u32 = out
            .trim()
            .split(';')
            .next()
            .and_then(|x| x.parse().ok())
            .ok_or_else(|| StartError::Unavailable(format!("sbatch answered '{}'", out.trim())))?;
        self.jobs.insert(l.id, Tracked { slurm_id, dispatched: l.now, started: false });
        Ok(Some(slurm_id))
    }

    fn poll(&mut self, now: SimTime) -> Vec<(i64, Exit)> {
        let t = std::time::Instant::now();
        self.dying.retain(|&(sid, at)| {
            if at > t {
                return true;
            }
            let _ = run("scancel", &[sid.to_string()]);
            false
        });
        let mut done = Vec::new();
        if (self.jobs.is_empty() && self.unresolved.is_empty())
            || self.last_squeue.is_some_and(|l| t.duration_since(l) < std::time::Duration::from_secs(1))
        {
            return done;
        }
        self.last_squeue = Some(t);
        let Ok(listed) = self.squeue() else { return done };
        for (id, (name, start)) in std::mem::take(&mut self.unresolved) {
            match Self::by_name(&listed, &name) {
                Some((sid, st)) if Self::final_state(&st) => done.push((id, Self::exit_of(sid, &st))),
                Some((sid, st)) => {
                    self.jobs.insert(id, Tracked { slurm_id: sid, dispatched: start, started: st != "PENDING" });
                }
                None => self.taken_back.push((id, "Slurm never received it (found after a restart)".into())),
            }
        }
        let by_id: HashMap<u32, &(u32, String, String)> = listed.values().map(|v| (v.0, v)).collect();
        let mut back = Vec::new();
        let mut node_failed = Vec::new();
        for (&id, t) in self.jobs.iter_mut() {
            match by_id.get(&t.slurm_id) {
                Some((_, st, reason)) if st == "PENDING" => {
                    if !t.started && now.0 >= t.dispatched.0 + self.cfg.start_grace_s {
                        back.push((
                            id,
                            t.slurm_id,
                            format!("Slurm did not start it within {} s ({reason})", self.cfg.start_grace_s),
                        ));
                    }
                }
                Some((_, st, _)) if !Self::final_state(st) => t.started = true,
                // its node failed under it (a node set DOWN kills its jobs): not the job's
                // failure — it goes back to fabrik's queue, as when fabrik takes a node out
                Some((_, st, _)) if st == "NODE_FAIL" => node_failed.push(id),
                Some((_, st, _)) => done.push((id, Self::exit_of(t.slurm_id, st))),
                // Slurm no longer lists it: ask accounting
                None => {
                    let st = run(
                        "sacct",
                        &[s("-X"), s("-n"), s("-P"), s("-j"), t.slurm_id.to_string(), s("--format=State")],
                    )
                    .ok()
                    .and_then(|x| x.lines().next().map(|l| l.split_whitespace().next().unwrap_or("").to_string()));
                    match st.filter(|st| Self::final_state(st)) {
                        Some(st) if st == "NODE_FAIL" => node_failed.push(id),
                        Some(st) => done.push((id, Self::exit_of(t.slurm_id, &st))),
                        None => {}
                    }
                }
            }
        }
        for (id, slurm_id, reason) in back {
            let _ = run("scancel", &[slurm_id.to_string()]);
            self.jobs.remove(&id);
            self.taken_back.push((id, reason));
        }
        for id in node_failed {
            self.jobs.remove(&id);
            self.taken_back.push((id, "its node failed in Slurm (NODE_FAIL)".into()));
        }
        for (id, _) in &done {
            self.jobs.remove(id);
        }
        done.sort_unstable_by_key(|d| d.0);
        done
    }

    fn taken_back(&mut self) -> Vec<(i64, String)> {
        std::mem::take(&mut self.taken_back)
    }

    fn node_changes(&mut self, now: SimTime) -> Vec<(DomainId, Option<String>)> {
        self.poll_nodes(now)
    }

    fn drain(&mut self, d: DomainId, reason: &str, resume: bool) -> Result<(), String> {
        let name = self.nodes.get(d.idx()).ok_or_else(|| format!("no node for domain {}", d.0))?;
        let mut args = vec![s("update"), format!("NodeName={name}")];
        if resume {
            args.push(s("State=RESUME"));
        } else {
            args.push(s("State=DRAIN"));
            args.push(format!("Reason=fabrik: {reason}"));
        }
        run("scontrol", &args).map(|_| ())
    }

    fn signal(&mut self, id: i64, force: bool) {
        if let Some(t) = self.jobs.get(&id) {
            if force {
                let _ = run("scancel", &[t.slurm_id.to_string()]);
            } else {
                term(t.slurm_id);
            }
        }
    }

    /// Preemption as fabrik decides: SIGTERM now (a job may checkpoint), the kill after the
    /// grace period; the job is already back in fabrik's queue.
    fn forget(&mut self, id: i64) {
        if let Some(t) = self.jobs.remove(&id) {
            term(t.slurm_id);
            self.dying
                .push((t.slurm_id, std::time::Instant::now() + std::time::Duration::from_secs(self.cfg.kill_grace_s)));
        }
    }

    fn find(&mut self, id: i64, _pid: Option<u32>, start: SimTime, _l: &Launch<'_>) -> Found {
        let name = self.name_of(id, start);
        let Ok(listed) = self.squeue() else {
            // Slurm unreachable: it may or may not have the job; the first poll that reaches it
            // decides (adopted, ended, or handed back to be started once)
            self.unresolved.insert(id, (name, start));
            return Found::Alive(None);
        };
        match Self::by_name(&listed, &name) {
            Some((sid, st)) if Self::final_state(&st) => Found::Exited(Self::exit_of(sid, &st)),
            Some((sid, st)) => {
                self.jobs.insert(id, Tracked { slurm_id: sid, dispatched: start, started: st != "PENDING" });
                Found::Alive(Some(sid))
            }
            None => Found::NotStarted,
        }
    }

    fn open_log(&self, id: i64, account: &str, stream: &str) -> Option<std::io::Result<Option<std::fs::File>>> {
        let uid = match self.users.user_for(account) {
            Ok(u) => u.uid,
            Err(e) => return Some(Err(std::io::Error::new(std::io::ErrorKind::PermissionDenied, e))),
        };
        Some(self.spool.open_log(id, stream, uid))
    }
}

/// SIGTERM to a job's processes, so that it may checkpoint and exit; a job Slurm has not started
/// yet has none and is cancelled outright. Slurm refuses a signal to a pending job ("Job can not
/// be altered now") and scancel then retries for about 100 s, blocking the control loop; the
/// `--state` filters keep each call to the jobs it applies to (a job that starts between the two
/// calls gets the signal).
fn term(slurm_id: u32) {
    let _ = run("scancel", &[s("--state=PENDING"), slurm_id.to_string()]);
    let _ = run("scancel", &[s("--state=RUNNING"), s("--signal=TERM"), s("--full"), slurm_id.to_string()]);
}

/// Whether a Slurm cluster answers here (`scontrol ping`).
pub fn available() -> bool {
    Command::new("scontrol")
        .arg("ping")
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("UP"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sinfo_lines_and_node_health() {
        let t = "node1|gpu:h100:4|idle|(null)|none\nnode2|gpu:h100:4|drained|(null)|fabrik: bad GPU\nnode1|gpu:h100:4|idle|(null)|none\nnode3|gpu:h100:4|down*|(null)|Not responding\nnode4|gpu:h100:4|mixed|a,b|none\n";
        let n = parse_sinfo(t);
        assert_eq!(n.iter().map(|x| x.name.as_str()).collect::<Vec<_>>(), ["node1", "node2", "node3", "node4"]);
        assert_eq!(n.iter().map(NodeState::in_service).collect::<Vec<_>>(), [true, false, false, true]);
        assert_eq!(n[1].reason, "fabrik: bad GPU");
        assert_eq!(quote("it's"), r"'it'\''s'");
    }
}

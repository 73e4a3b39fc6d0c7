//! Executors carry out the scheduler's decisions. One interface; two bodies:
//! - [`LocalExecutor`] runs each job's command as a process on this host, as the Unix user its
//!   account maps to, in its own process group, with its GPUs in `CUDA_VISIBLE_DEVICES`, output
//!   in per-job log files;
//! - [`SimulatedExecutor`] runs jobs as timed waits, for demonstrations and load tests of a
//!   100,000-GPU facility without hardware.
//!
//! **A tenant's code is untrusted.** A local job runs as its account's Unix user (never as the
//! server's, which is refused unless `--single-user` says so), with an environment built from a
//! documented set plus an allow-list (nothing of the server's leaks, no token), in its own
//! directory under the spool (`SPOOL/ID`, 0700, owned by the job's user; the spool itself 0711,
//! so a job can reach its own directory but not list or open another's). The data directory
//! (the database, the server's own per-job state) is 0700 and unreachable to jobs. Everything
//! the server reads back from a job's directory — its exit code, its logs — is opened without
//! following symlinks, must be a regular file owned by the job's user, and is read with a bound.
//!
//! Each local job runs under a small `sh` wrapper whose `$0` names the job (`fabrik-job-ID`), so
//! a restarted control plane can find it in `/proc` even when it died before recording the pid;
//! when the command ends the wrapper writes its exit code. So recovery tells a job that still
//! runs (re-adopt it), one that ended while the server was down (record its exit code), and one
//! that is gone without a trace (fail it as lost).

use fabrik_model::users::{RunAs, UserMap};
use fabrik_model::SimTime;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use std::collections::HashMap;
use std::ffi::OsString;
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
    /// The process is gone and left no exit code.
    Lost,
}

/// What a restarted control plane finds of a job it had started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    Alive(Option<u32>),
    Exited(Exit),
    /// Never started (no trace), safe to start again.
    NotStarted,
}

/// Why a start did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartError {
    /// This job cannot run as asked (an empty command, no Unix user): it fails.
    Refused(String),
    /// The executor cannot start anything now (Slurm unreachable): the job stays pending.
    Unavailable(String),
}

impl From<String> for StartError {
    fn from(m: String) -> StartError {
        StartError::Refused(m)
    }
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Refused(m) | StartError::Unavailable(m) => f.write_str(m),
        }
    }
}

pub struct Launch<'a> {
    pub id: i64,
    /// The GPUs per domain the scheduler chose: (domain index, GPUs).
    pub parts: &'a [(u32, u32)],
    /// The job's account (full path): decides the Unix user it runs as.
    pub account: &'a str,
    pub command: &'a [String],
    pub devices: &'a [u32],
    pub simulated_runtime_s: Option<u64>,
    /// A job array's (array id, task index).
    pub array: Option<(i64, u32)>,
    pub walltime_s: u64,
    pub now: SimTime,
    /// The power limit the scheduler chose under the facility cap, as a fraction of the GPUs'
    /// training draw above idle (1: none). Handed to the job as FABRIK_POWER_FRACTION; applying
    /// it to the boards (nvidia-smi -pl) needs root and is left to the site's prologue.
    pub power_fraction: f64,
}

pub trait Executor: Send {
    fn name(&self) -> &'static str;
    /// Whether jobs of `account` can run here at all (e.g. it maps to a Unix user); checked at
    /// submission so a job that could never start is refused with the reason.
    fn admits(&self, _account: &str) -> Result<(), String> {
        Ok(())
    }
    /// A warning operators and tenants must see (dashboard, `fabrik serve`), e.g. single-user mode.
    fn announcement(&self) -> Option<String> {
        None
    }
    /// Starts a job; returns its process id (or Slurm job id) where there is one.
    fn start(&mut self, l: &Launch<'_>) -> Result<Option<u32>, StartError>;
    /// Jobs that ended since the last call.
    fn poll(&mut self, now: SimTime) -> Vec<(i64, Exit)>;
    /// Jobs the executor could not start after all (Slurm kept them pending past the grace
    /// period): they go back to the queue with the reason.
    fn taken_back(&mut self) -> Vec<(i64, String)> {
        Vec::new()
    }
    /// Domains that left service (with the reason) or came back (`None`) since the last call.
    fn node_changes(&mut self, _now: SimTime) -> Vec<(fabrik_model::DomainId, Option<String>)> {
        Vec::new()
    }
    /// Drains a domain (or resumes it) in the system that runs the jobs, for fabrik's own drains.
    fn drain(&mut self, _d: fabrik_model::DomainId, _reason: &str, _resume: bool) -> Result<(), String> {
        Ok(())
    }
    /// The job went back to fabrik's queue (preempted, its node failed): stop it and stop
    /// watching this run.
    fn forget(&mut self, id: i64) {
        self.signal(id, true);
    }
    /// SIGTERM (or SIGKILL with `force`) to the job's process group.
    fn signal(&mut self, id: i64, force: bool);
    /// After a restart: what became of a job that was starting or running.
    fn find(&mut self, id: i64, pid: Option<u32>, start: SimTime, l: &Launch<'_>) -> Found;
    /// Opens a job's log (`stdout` or `stderr`) for reading, if this executor keeps logs:
    /// `None` when it keeps none, `Some(Ok(None))` when the job has written nothing yet.
    fn open_log(&self, _id: i64, _account: &str, _stream: &str) -> Option<std::io::Result<Option<std::fs::File>>> {
        None
    }
}

/// A Unix identity a job runs as, resolved on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

/// Resolves a `[[run_as]]` entry on this host: the user must exist and be neither root nor in
/// group root.
pub fn lookup_user(r: &RunAs) -> Result<JobUser, String> {
    let u = nix::unistd::User::from_name(&r.user)
        .map_err(|e| format!("looking up Unix user '{}': {e}", r.user))?
        .ok_or_else(|| format!("account '{}' maps to Unix user '{}', which does not exist here", r.account, r.user))?;
    let gid = match &r.group {
        Some(g) => {
            nix::unistd::Group::from_name(g)
                .map_err(|e| format!("looking up Unix group '{g}': {e}"))?
                .ok_or_else(|| format!("account '{}' maps to Unix group '{g}', which does not exist here", r.account))?
                .gid
        }
        None => u.gid,
    };
    if u.uid.is_root() || gid.as_raw() == 0 {
        return Err(format!("account '{}' maps to uid {} gid {}: jobs never run as root", r.account, u.uid, gid));
    }
    Ok(JobUser { name: r.user.clone(), uid: u.uid.as_raw(), gid: gid.as_raw(), home: u.dir })
}

/// Who local jobs run as.
#[derive(Debug, Clone)]
pub enum Isolation {
    /// Every job runs as the server's own user (`--single-user`): only for a server that is not
    /// root, and announced, because such a job can reach everything the server can.
    SingleUser,
    /// Each job runs as the Unix user its account maps to; the server must be root.
    Mapped(UserMap),
}

#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// The server's private directory (0700); the spool must not lie inside it.
    pub data_dir: PathBuf,
    /// Where job directories live (0711): `SPOOL/ID`, owned by the job's user.
    pub spool_dir: PathBuf,
    pub isolation: Isolation,
    /// Names of the server's environment variables handed on to jobs (besides the documented
    /// set). `FABRIK_*` names are refused: the server's token never reaches a job.
    pub env_allow: Vec<String>,
}

/// The environment every local job gets, besides `env_allow`: see [`LocalExecutor`].
pub const JOB_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "TMPDIR",
    "CUDA_VISIBLE_DEVICES",
    "FABRIK_JOB_ID",
    "FABRIK_ACCOUNT",
    "FABRIK_GPUS",
    "FABRIK_WALLTIME_S",
    "FABRIK_POWER_FRACTION",
    "FABRIK_JOB_DIR",
];

/// What an array task gets besides [`JOB_ENV`], also under Slurm's names so existing scripts
/// run unchanged.
pub const ARRAY_ENV: &[&str] =
    &["FABRIK_ARRAY_JOB_ID", "FABRIK_ARRAY_TASK_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"];

/// The array variables of a task (none for an ordinary job).
pub fn array_env(array: Option<(i64, u32)>) -> Vec<(&'static str, String)> {
    match array {
        None => Vec::new(),
        Some((a, t)) => ARRAY_ENV
            .iter()
            .zip([a.to_string(), t.to_string(), a.to_string(), t.to_string()])
            .map(|(k, v)| (*k, v))
            .collect(),
    }
}

const JOB_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Who jobs run as, resolved on this host: the server's own user in single-user mode, else the
/// Unix user each account maps to. Shared by every executor that runs processes.
pub struct Users {
    /// `None`: single-user mode (jobs run as the server's user).
    mapped: Option<(UserMap, HashMap<String, JobUser>)>,
    me: JobUser,
}

impl Users {
    pub fn new(isolation: &Isolation) -> Result<Users, String> {
        let euid = nix::unistd::geteuid();
        let me_user = nix::unistd::User::from_uid(euid).ok().flatten();
        let me = JobUser {
            name: me_user.as_ref().map_or_else(|| euid.to_string(), |u| u.name.clone()),
            uid: euid.as_raw(),
            gid: nix::unistd::getegid().as_raw(),
            home: me_user.map_or_else(|| PathBuf::from("/"), |u| u.dir),
        };
        let mapped = match (isolation, euid.is_root()) {
            (Isolation::SingleUser, true) => {
                return Err("--single-user as root would run every tenant's job as root: map accounts to Unix users \
                            with [[run_as]] in the facility file (--facility) instead"
                    .into())
            }
            (Isolation::SingleUser, false) => None,
            (Isolation::Mapped(m), true) if m.is_empty() => {
                return Err("fabrik runs each job as its account's Unix user, and the facility file \
                            (--facility) has no [[run_as]] entries: add them (jobs never run as root)"
                    .into())
            }
            (Isolation::Mapped(_), false) => {
                return Err(format!(
                    "fabrik runs each job as its account's Unix user, which needs root; run fabrik serve \
                     as root with [[run_as]] in the facility file, or pass --single-user to run every job as '{}' \
                     (such jobs can reach the server's data)",
                    me.name
                ))
            }
            (Isolation::Mapped(m), true) => {
                let mut resolved = HashMap::new();
                for e in m.entries() {
                    resolved.insert(e.account.clone(), lookup_user(e)?);
                }
                Some((m.clone(), resolved))
            }
        };
        Ok(Users { mapped, me })
    }

    /// The Unix user jobs of `account` run as.
    pub fn user_for(&self, account: &str) -> Result<&JobUser, String> {
        match &self.mapped {
            None => Ok(&self.me),
            Some((map, resolved)) => map
                .resolve(account)
                .and_then(|e| resolved.get(&e.account))
                .ok_or_else(|| format!("account '{account}' maps to no Unix user ([[run_as]] in the facility file)")),
        }
    }

    /// The `[[run_as]]` entry of `account` (its Slurm account, if any).
    pub fn entry(&self, account: &str) -> Option<&RunAs> {
        self.mapped.as_ref().and_then(|(m, _)| m.resolve(account))
    }

    /// Whether a job as `u` needs a change of identity (the server is root and `u` is not it).
    pub fn is_other(&self, u: &JobUser) -> bool {
        u.uid != self.me.uid || u.gid != self.me.gid
    }

    pub fn announcement(&self) -> Option<String> {
        self.mapped.is_none().then(|| {
            format!(
                "single-user mode: every job runs as Unix user '{}', the server's own, and can reach the server's \
                 data and other tenants' jobs; for a shared facility run as root with [[run_as]]",
                self.me.name
            )
        })
    }
}

/// The spool: `SPOOL/ID` per job, 0700 and owned by the job's user, in a 0711 directory that
/// must not lie inside the server's private data directory.
pub struct Spool {
    root: PathBuf,
}

impl Spool {
    pub fn new(spool_dir: &Path, data_dir: &Path) -> Result<Spool, String> {
        let data = std::fs::canonicalize(data_dir).unwrap_or(data_dir.to_path_buf());
        mkdir_mode(spool_dir, 0o711)?;
        let root = std::fs::canonicalize(spool_dir).map_err(|e| format!("{}: {e}", spool_dir.display()))?;
        if root.starts_with(&data) {
            return Err(format!(
                "the spool directory {} must not lie inside the data directory {} (private to the server)",
                root.display(),
                data.display()
            ));
        }
        Ok(Spool { root })
    }

    pub fn dir(&self, id: i64) -> PathBuf {
        self.root.join(id.to_string())
    }

    /// A fresh job directory: whatever a previous run left (a job may have planted symlinks)
    /// is removed; the log files are created before the directory is handed to the job's user.
    pub fn prepare(
        &self,
        id: i64,
        u: &JobUser,
        users: &Users,
    ) -> Result<(std::fs::File, std::fs::File, PathBuf), String> {
        let dir = self.dir(id);
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&dir),
            Ok(_) => std::fs::remove_file(&dir),
            Err(_) => Ok(()),
        }
        .map_err(|e| format!("clearing {}: {e}", dir.display()))?;
        std::fs::DirBuilder::new().mode(0o700).create(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let create = |name: &str| {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(dir.join(name))
                .map_err(|e| format!("creating {}/{name}: {e}", dir.display()))
        };
        let (out, err) = (create("stdout")?, create("stderr")?);
        if users.is_other(u) {
            for f in [&out, &err] {
                std::os::unix::fs::fchown(f, Some(u.uid), Some(u.gid)).map_err(|e| format!("chown log: {e}"))?;
            }
            std::os::unix::fs::chown(&dir, Some(u.uid), Some(u.gid))
                .map_err(|e| format!("chown {}: {e}", dir.display()))?;
        }
        Ok((out, err, dir))
    }

    /// Opens a job's log as an untrusted file of its user.
    pub fn open_log(&self, id: i64, stream: &str, uid: u32) -> std::io::Result<Option<std::fs::File>> {
        open_untrusted(&self.dir(id).join(stream), uid)
    }
}

pub struct LocalExecutor {
    spool: Spool,
    users: Users,
    env: Vec<(String, OsString)>,
    children: HashMap<i64, Child>,
    /// Re-adopted jobs: not our children, watched by pid (and the uid they run as).
    adopted: HashMap<i64, (u32, u32)>,
}

/// The wrapper: $0 names the job (so its identity can be checked in /proc after a restart);
/// when the command ends, its exit code is written (atomically) for a restarted server.
const WRAPPER: &str = r#""$@"
code=$?
echo $code > "$FABRIK_JOB_DIR/.exit.tmp" && mv -f "$FABRIK_JOB_DIR/.exit.tmp" "$FABRIK_JOB_DIR/.exit"
exit $code"#;

fn mkdir_mode(p: &Path, mode: u32) -> Result<(), String> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(p)
        .map_err(|e| format!("creating {}: {e}", p.display()))?;
    // an existing directory keeps its old mode unless told
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("setting the mode of {}: {e}", p.display()))
}

/// Opens a file a job could have tampered with: no symlink is followed, no FIFO blocks us, and
/// it must be a regular file owned by `uid`.
fn open_untrusted(path: &Path, uid: u32) -> std::io::Result<Option<std::fs::File>> {
    let f = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_NONBLOCK).bits())
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
    };
    let m = f.metadata()?;
    if !m.file_type().is_file() || m.uid() != uid {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!("{} is not a regular file of uid {uid}", path.display()),
        ));
    }
    Ok(Some(f))
}

/// A process's state letter, process group and real uid from /proc (`None` once it is gone).
fn proc_info(pid: u32) -> Option<(char, i32, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may hold spaces and parentheses: the fields start after the last ')'
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut f = rest.split_whitespace();
    let state = f.next()?.chars().next()?;
    let _ppid = f.next()?;
    let pgrp: i32 = f.next()?.parse().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let uid = status.lines().find_map(|l| l.strip_prefix("Uid:"))?.split_whitespace().next()?.parse().ok()?;
    Some((state, pgrp, uid))
}

fn alive(pid: u32) -> bool {
    // a zombie has ended; it only waits for a parent that may never reap it
    kill(Pid::from_raw(pid as i32), None).is_ok() && proc_info(pid).is_some_and(|(s, _, _)| s != 'Z')
}

impl LocalExecutor {
    pub fn new(cfg: LocalConfig) -> Result<LocalExecutor, String> {
        let mut env = Vec::new();
        for name in &cfg.env_allow {
            if name.is_empty() || name.contains('=') || name.contains('\0') {
                return Err(format!("--job-env: '{name}' is not a variable name"));
            }
            if name.starts_with("FABRIK_") {
                return Err(format!("--job-env: {name}: FABRIK_* variables are the server's and never reach jobs"));
            }
            if let Some(v) = std::env::var_os(name) {
                env.push((name.clone(), v));
            }
        }
        let users = Users::new(&cfg.isolation)?;
        let spool = Spool::new(&cfg.spool_dir, &cfg.data_dir)?;
        Ok(LocalExecutor { spool, users, env, children: HashMap::new(), adopted: HashMap::new() })
    }

    fn user_for(&self, account: &str) -> Result<&JobUser, String> {
        self.users.user_for(account)
    }

    fn job_dir(&self, id: i64) -> PathBuf {
        self.spool.dir(id)
    }

    /// The exit code the wrapper wrote, read as an untrusted file of the job's user.
    fn exit_file(&self, id: i64, uid: u32) -> Option<i32> {
        let mut f = open_untrusted(&self.job_dir(id).join(".exit"), uid).ok()??;
        let mut buf = [0u8; 16];
        let n = f.read(&mut buf).ok()?;
        std::str::from_utf8(&buf[..n]).ok()?.trim().parse().ok()
    }

    /// Whether `pid` is this job's wrapper: its `$0`, a process-group leader, running as `uid`,
    /// in this job's directory (job ids repeat across servers on one host; directories do not).
    fn is_ours(&self, id: i64, pid: u32, uid: u32) -> bool {
        let marker = format!("fabrik-job-{id}");
        let named = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|c| c.split(|&b| b == 0).any(|a| a == marker.as_bytes()))
            .unwrap_or(false);
        named
            && proc_info(pid).is_some_and(|(s, pg, u)| s != 'Z' && pg == pid as i32 && u == uid)
            && std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == self.job_dir(id))
    }

    /// After a crash between spawning a job and recording its pid: the job's wrapper, found by
    /// its name in /proc.
    fn scan_proc(&self, id: i64, uid: u32) -> Option<u32> {
        std::fs::read_dir("/proc")
            .ok()?
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .find(|&pid| self.is_ours(id, pid, uid))
    }
}

impl Executor for LocalExecutor {
    fn name(&self) -> &'static str {
        "local"
    }

    fn admits(&self, account: &str) -> Result<(), String> {
        self.user_for(account).map(|_| ())
    }

    fn announcement(&self) -> Option<String> {
        self.users.announcement()
    }

    fn start(&mut self, l: &Launch<'_>) -> Result<Option<u32>, StartError> {
        if l.command.is_empty() {
            return Err(StartError::Refused("empty command".into()));
        }
        if let Some(mut old) = self.children.remove(&l.id) {
            // an earlier run of a preempted job: make sure it is gone and reaped
            let _ = killpg(Pid::from_raw(old.id() as i32), Signal::SIGKILL);
            let _ = old.wait();
        }
        let u = self.user_for(l.account)?.clone();
        let (out, err, dir) = self.spool.prepare(l.id, &u, &self.users)?;
        let devices: Vec<String> = l.devices.iter().map(|d| d.to_string()).collect();
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(WRAPPER)
            .arg(format!("fabrik-job-{}", l.id))
            .args(l.command)
            .env_clear()
            .env("PATH", JOB_PATH)
            .env("HOME", &u.home)
            .env("USER", &u.name)
            .env("LOGNAME", &u.name)
            .env("SHELL", "/bin/sh")
            .env("TMPDIR", &dir)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("CUDA_VISIBLE_DEVICES", devices.join(","))
            .env("FABRIK_JOB_ID", l.id.to_string())
            .env("FABRIK_ACCOUNT", l.account)
            .env("FABRIK_GPUS", l.devices.len().to_string())
            .env("FABRIK_WALLTIME_S", l.walltime_s.to_string())
            .env("FABRIK_POWER_FRACTION", format!("{:.3}", l.power_fraction))
            .env("FABRIK_JOB_DIR", &dir)
            .envs(array_env(l.array))
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        if self.users.is_other(&u) {
            // std drops the supplementary groups (setgroups) before setuid when run as root
            cmd.uid(u.uid).gid(u.gid);
        }
        let child = cmd.spawn().map_err(|e| format!("spawning job {}: {e}", l.id))?;
        let pid = child.id();
        self.children.insert(l.id, child);
        Ok(Some(pid))
    }

    fn poll(&mut self, _now: SimTime) -> Vec<(i64, Exit)> {
        let mut done = Vec::new();
        for (&id, child) in self.children.iter_mut() {
            match child.try_wait() {
                Ok(Some(st)) => {
                    done.push((id, st.code().map(Exit::Code).or(st.signal().map(Exit::Signal)).unwrap_or(Exit::Lost)))
                }
                Ok(None) => {}
                Err(_) => done.push((id, Exit::Lost)),
            }
        }
        for (id, _) in &done {
            self.children.remove(id);
        }
        let gone: Vec<(i64, u32)> =
            self.adopted.iter().filter(|(_, &(pid, _))| !alive(pid)).map(|(&id, &(_, uid))| (id, uid)).collect();
        for (id, uid) in gone {
            self.adopted.remove(&id);
            done.push((id, self.exit_file(id, uid).map_or(Exit::Lost, Exit::Code)));
        }
        done.sort_unstable_by_key(|d| d.0);
        done
    }

    fn signal(&mut self, id: i64, force: bool) {
        let pid = match (self.children.get(&id), self.adopted.get(&id)) {
            (Some(c), _) => Some(c.id()),
            // not our child: make sure the pid was not reused by someone else's process
            (None, Some(&(pid, uid))) => self.is_ours(id, pid, uid).then_some(pid),
            _ => None,
        };
        if let Some(pid) = pid {
            let sig = if force { Signal::SIGKILL } else { Signal::SIGTERM };
            // The job leads its own process group (process_group(0)): signal all of it.
            let _ = killpg(Pid::from_raw(pid as i32), sig);
        }
    }

    fn find(&mut self, id: i64, pid: Option<u32>, _start: SimTime, l: &Launch<'_>) -> Found {
        let Ok(uid) = self.user_for(l.account).map(|u| u.uid) else {
            return match pid {
                Some(_) => Found::Exited(Exit::Lost),
                None => Found::NotStarted,
            };
        };
        let live = pid.filter(|&p| self.is_ours(id, p, uid)).or_else(|| self.scan_proc(id, uid));
        if let Some(p) = live {
            self.adopted.insert(id, (p, uid));
            return Found::Alive(Some(p));
        }
        match (self.exit_file(id, uid), pid) {
            (Some(code), _) => Found::Exited(Exit::Code(code)),
            (None, Some(_)) => Found::Exited(Exit::Lost),
            (None, None) => Found::NotStarted,
        }
    }

    fn open_log(&self, id: i64, account: &str, stream: &str) -> Option<std::io::Result<Option<std::fs::File>>> {
        let uid = match self.user_for(account) {
            Ok(u) => u.uid,
            Err(e) => return Some(Err(std::io::Error::new(std::io::ErrorKind::PermissionDenied, e))),
        };
        Some(self.spool.open_log(id, stream, uid))
    }
}

impl LocalExecutor {
    /// The directory of a job (its logs, its working directory).
    pub fn dir_of(&self, id: i64) -> PathBuf {
        self.job_dir(id)
    }
}

/// Jobs are timed waits: a job ends `simulated_runtime_s` after it starts (half its walltime
/// when not given), in the control plane's (possibly accelerated) clock.
#[derive(Default)]
pub struct SimulatedExecutor {
    ends: HashMap<i64, SimTime>,
    signalled: Vec<(i64, Exit)>,
}

fn sim_runtime(l: &Launch<'_>) -> u64 {
    l.simulated_runtime_s.unwrap_or(l.walltime_s / 2)
}

impl Executor for SimulatedExecutor {
    fn name(&self) -> &'static str {
        "simulated"
    }
    fn start(&mut self, l: &Launch<'_>) -> Result<Option<u32>, StartError> {
        self.ends.insert(l.id, l.now + fabrik_model::Secs(sim_runtime(l)));
        Ok(None)
    }
    fn poll(&mut self, now: SimTime) -> Vec<(i64, Exit)> {
        let mut done: Vec<(i64, Exit)> = std::mem::take(&mut self.signalled);
        done.extend(self.ends.iter().filter(|(_, &t)| t <= now).map(|(&id, _)| (id, Exit::Code(0))));
        for (id, _) in &done {
            self.ends.remove(id);
        }
        done.sort_unstable_by_key(|d| d.0);
        done.dedup_by_key(|d| d.0);
        done
    }
    fn signal(&mut self, id: i64, force: bool) {
        if self.ends.remove(&id).is_some() {
            self.signalled.push((id, Exit::Signal(if force { 9 } else { 15 })));
        }
    }
    fn find(&mut self, id: i64, _pid: Option<u32>, start: SimTime, l: &Launch<'_>) -> Found {
        let end = start + fabrik_model::Secs(sim_runtime(l));
        self.ends.insert(id, end);
        Found::Alive(None)
    }
}

/// GPUs on this host: real ones through NVML when the driver library is present, otherwise the
/// configured number of virtual GPUs. Returns (count, how they were found).
pub fn discover_gpus(virtual_gpus: u32) -> (u32, String) {
    match nvml_wrapper::Nvml::init().and_then(|n| n.device_count()) {
        Ok(n) if n > 0 => (n, format!("{n} GPUs found through NVML")),
        Ok(_) => (virtual_gpus, format!("NVML reports no GPUs; using {virtual_gpus} virtual GPUs")),
        Err(e) => (virtual_gpus, format!("NVML unavailable ({e}); using {virtual_gpus} virtual GPUs")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn launch<'a>(id: i64, account: &'a str, cmd: &'a [String], devices: &'a [u32]) -> Launch<'a> {
        Launch {
            id,
            parts: &[],
            account,
            command: cmd,
            devices,
            simulated_runtime_s: None,
            array: None,
            walltime_s: 60,
            now: SimTime(0),
            power_fraction: 1.0,
        }
    }

    fn wait_exit(e: &mut LocalExecutor) -> Vec<(i64, Exit)> {
        let t = Instant::now();
        loop {
            let d = e.poll(SimTime(0));
            if !d.is_empty() || t.elapsed() > Duration::from_secs(10) {
                return d;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn sh(script: &str) -> Vec<String> {
        vec!["sh".into(), "-c".into(), script.into()]
    }

    fn executor(name: &str, env_allow: &[&str]) -> (LocalExecutor, PathBuf) {
        let root = std::env::temp_dir().join(format!("fabrik-exec-{name}-{}", std::process::id()));
        std::fs::remove_dir_all(&root).ok();
        let cfg = LocalConfig {
            data_dir: root.join("data"),
            spool_dir: root.join("spool"),
            isolation: crate::test_support::isolation(["a", "b"]),
            env_allow: env_allow.iter().map(|s| s.to_string()).collect(),
        };
        // the server's data directory, as `fabrik serve` opens it (0700)
        crate::open_store(&cfg.data_dir).unwrap();
        (LocalExecutor::new(cfg).unwrap(), root)
    }

    fn read_log(e: &LocalExecutor, id: i64, account: &str, stream: &str) -> String {
        let mut s = String::new();
        e.open_log(id, account, stream).unwrap().unwrap().unwrap().read_to_string(&mut s).unwrap();
        s
    }

    #[test]
    fn local_jobs_get_their_devices_logs_and_exit_codes() {
        let (mut e, root) = executor("basic", &[]);
        let cmd = sh("echo gpus=$CUDA_VISIBLE_DEVICES; echo oops >&2; exit 3");
        e.start(&launch(7, "a", &cmd, &[2, 5])).unwrap();
        assert_eq!(wait_exit(&mut e), vec![(7, Exit::Code(3))]);
        assert_eq!(read_log(&e, 7, "a", "stdout"), "gpus=2,5\n");
        assert_eq!(read_log(&e, 7, "a", "stderr"), "oops\n");
        let uid = e.user_for("a").unwrap().uid;
        assert_eq!(e.exit_file(7, uid), Some(3));
        // A job that ended leaves its exit code for a restarted control plane.
        assert_eq!(e.find(7, None, SimTime(0), &launch(7, "a", &cmd, &[])), Found::Exited(Exit::Code(3)));
        assert_eq!(e.find(8, None, SimTime(0), &launch(8, "a", &cmd, &[])), Found::NotStarted);
        // SIGTERM reaches the whole group
        let sleeper: Vec<String> = ["sleep", "30"].map(String::from).to_vec();
        e.start(&launch(9, "a", &sleeper, &[])).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        e.signal(9, false);
        assert_eq!(wait_exit(&mut e), vec![(9, Exit::Signal(15))]);
        std::fs::remove_dir_all(&root).ok();
    }

    #[test]
    fn a_job_sees_only_the_documented_environment_and_the_allow_list() {
        // The server's own environment: a token and an operator's variable.
        std::env::set_var("FABRIK_TOKEN", "fbk_secret_of_the_server");
        std::env::set_var("FABRIK_EXEC_TEST_ALLOWED", "yes");
        std::env::set_var("FABRIK_EXEC_TEST_OTHER", "no");
        assert!(matches!(
            LocalExecutor::new(LocalConfig {
                data_dir: std::env::temp_dir(),
                spool_dir: std::env::temp_dir().join("x"),
                isolation: Isolation::SingleUser,
                env_allow: vec!["FABRIK_TOKEN".into()]
            }),
            Err(m) if m.contains("FABRIK_TOKEN: FABRIK_* variables are the server's")
        ));
        std::env::set_var("EXEC_TEST_ALLOWED", "yes");
        std::env::set_var("EXEC_TEST_OTHER", "no");
        let (mut e, root) = executor("env", &["EXEC_TEST_ALLOWED"]);
        e.start(&launch(1, "a", &sh("env | cut -d= -f1 | sort | tr '\\n' ' '"), &[0])).unwrap();
        assert_eq!(wait_exit(&mut e), vec![(1, Exit::Code(0))]);
        let mut names: Vec<&str> = JOB_ENV.to_vec();
        names.extend(["EXEC_TEST_ALLOWED", "PWD"]); // PWD: set by sh itself
        names.sort_unstable();
        let got = read_log(&e, 1, "a", "stdout");
        let got: Vec<&str> = got.split_whitespace().filter(|n| !["OLDPWD"].contains(n)).collect();
        assert_eq!(got, names);
        e.start(&launch(2, "a", &sh("echo $FABRIK_JOB_ID $FABRIK_ACCOUNT $FABRIK_GPUS $TMPDIR $PWD"), &[0, 1]))
            .unwrap();
        wait_exit(&mut e);
        let dir = e.dir_of(2);
        assert_eq!(read_log(&e, 2, "a", "stdout"), format!("2 a 2 {} {}\n", dir.display(), dir.display()));
        std::fs::remove_dir_all(&root).ok();
    }

    #[test]
    fn jobs_run_as_their_accounts_user_in_private_directories() {
        let Some(users) = crate::test_support::tenant_users() else {
            crate::test_support::skip("jobs_run_as_their_accounts_user: needs root to run jobs as other users");
            return;
        };
        let (mut e, root) = executor("users", &[]);
        let data = root.join("data");
        std::fs::write(data.join("fabrik.db"), "secret").unwrap();
        // Tenant b's job writes a log; tenant a's job tries to read it, the database, and to
        // signal the server (pid 1's peer: this test process).
        e.start(&launch(1, "b", &sh("echo b-secret; id -un"), &[])).unwrap();
        assert_eq!(wait_exit(&mut e), vec![(1, Exit::Code(0))]);
        assert_eq!(read_log(&e, 1, "b", "stdout"), format!("b-secret\n{}\n", users[1]));
        let attack = format!(
            "id -un; cat {db} && echo READ-DB; cat $FABRIK_JOB_DIR/../1/stdout && echo READ-B; \
             ls $FABRIK_JOB_DIR/.. && echo LISTED; kill -0 {me} && echo SIGNALLED; exit 0",
            db = data.join("fabrik.db").display(),
            me = std::process::id()
        );
        e.start(&launch(2, "a", &sh(&attack), &[])).unwrap();
        assert_eq!(wait_exit(&mut e), vec![(2, Exit::Code(0))]);
        let out = read_log(&e, 2, "a", "stdout");
        assert_eq!(out, format!("{}\n", users[0]), "the attack got through: {out}");
        let err = read_log(&e, 2, "a", "stderr");
        assert_eq!(
            err.matches("Permission denied").count() + err.matches("Operation not permitted").count(),
            4,
            "{err}"
        );
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&e.spool.root), 0o711);
        assert_eq!(mode(&e.dir_of(2)), 0o700);
        assert_eq!(std::fs::metadata(e.dir_of(2)).unwrap().uid(), e.user_for("a").unwrap().uid);
        // An unmapped account is refused, and said so.
        assert!(e.admits("c").unwrap_err().contains("account 'c' maps to no Unix user"));
        std::fs::remove_dir_all(&root).ok();
    }

    #[test]
    fn files_a_job_plants_are_not_followed() {
        let (mut e, root) = executor("plant", &[]);
        let secret = root.join("data").join("secret");
        std::fs::write(&secret, "server secret").unwrap();
        // The job replaces its log with a symlink to the server's file; a process it left behind
        // replaces its exit file with a FIFO (a naive read would block the server forever).
        let script = format!("rm stdout; ln -s {} stdout; exit 0", secret.display());
        e.start(&launch(3, "a", &sh(&script), &[])).unwrap();
        assert_eq!(wait_exit(&mut e), vec![(3, Exit::Code(0))]);
        let exit = e.dir_of(3).join(".exit");
        std::fs::remove_file(&exit).unwrap();
        assert!(Command::new("mkfifo").arg(&exit).status().unwrap().success());
        let u = e.user_for("a").unwrap().clone();
        std::os::unix::fs::chown(&exit, Some(u.uid), Some(u.gid)).unwrap();
        let opened = e.open_log(3, "a", "stdout").unwrap();
        assert!(opened.is_err(), "a symlinked log was opened");
        let uid = e.user_for("a").unwrap().uid;
        let t = Instant::now();
        assert_eq!(e.exit_file(3, uid), None);
        assert!(t.elapsed() < Duration::from_secs(2));
        // A re-run starts from a fresh directory: the planted link is gone, not truncated through.
        e.start(&launch(3, "a", &sh("echo again"), &[])).unwrap();
        wait_exit(&mut e);
        assert_eq!(read_log(&e, 3, "a", "stdout"), "again\n");
        assert_eq!(std::fs::read_to_string(&secret).unwrap(), "server secret");
        std::fs::remove_dir_all(&root).ok();
    }

    #[test]
    fn recovery_finds_a_job_whose_pid_was_never_recorded() {
        let (mut e, root) = executor("scan", &[]);
        let cmd: Vec<String> = ["sleep", "30"].map(String::from).to_vec();
        let pid = e.start(&launch(11, "a", &cmd, &[])).unwrap().unwrap();
        // A new executor (the restarted server) knows nothing of the pid.
        let (mut again, _) = (
            LocalExecutor::new(LocalConfig {
                data_dir: root.join("data"),
                spool_dir: root.join("spool"),
                isolation: crate::test_support::isolation(["a", "b"]),
                env_allow: vec![],
            })
            .unwrap(),
            (),
        );
        assert_eq!(again.find(11, None, SimTime(0), &launch(11, "a", &cmd, &[])), Found::Alive(Some(pid)));
        again.signal(11, true);
        // the first executor is its parent and reaps it; the second sees it gone (or a zombie)
        assert_eq!(wait_exit(&mut e), vec![(11, Exit::Signal(9))]);
        assert_eq!(wait_exit(&mut again), vec![(11, Exit::Lost)]);
        std::fs::remove_dir_all(&root).ok();
    }

    #[test]
    fn simulated_jobs_end_after_their_runtime() {
        let mut e = SimulatedExecutor::default();
        let cmd = vec!["x".to_string()];
        let mut l = launch(1, "a", &cmd, &[]);
        l.simulated_runtime_s = Some(10);
        e.start(&l).unwrap();
        e.start(&launch(2, "a", &cmd, &[])).unwrap(); // half of 60 s
        assert!(e.poll(SimTime(9)).is_empty());
        assert_eq!(e.poll(SimTime(10)), vec![(1, Exit::Code(0))]);
        e.signal(2, false);
        assert_eq!(e.poll(SimTime(11)), vec![(2, Exit::Signal(15))]);
    }

    #[test]
    fn without_nvml_the_virtual_gpu_count_is_used() {
        let (n, how) = discover_gpus(4);
        // This machine has no NVIDIA driver; on one that has, NVML's count wins.
        if how.contains("NVML unavailable") || how.contains("no GPUs") {
            assert_eq!(n, 4);
        } else {
            assert!(n > 0);
        }
    }
}

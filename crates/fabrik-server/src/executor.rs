//! Executors carry out the scheduler's decisions. One interface; two bodies:
//! - [`LocalExecutor`] runs each job's command as a process on this host, in its own process
//!   group, with its GPUs in `CUDA_VISIBLE_DEVICES`, output in per-job log files;
//! - [`SimulatedExecutor`] runs jobs as timed waits, for demonstrations and load tests of a
//!   100,000-GPU facility without hardware.
//!
//! Each local job runs under a small `sh` wrapper that records its pid and, when the command
//! ends, its exit code, in the job's directory. So a restarted control plane can tell a job that
//! still runs (re-adopt it), one that ended while it was down (record its exit code), and one
//! that is gone without a trace (fail it as lost).

use fabrik_model::SimTime;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use std::collections::HashMap;
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

pub struct Launch<'a> {
    pub id: i64,
    pub command: &'a [String],
    pub devices: &'a [u32],
    pub simulated_runtime_s: Option<u64>,
    pub walltime_s: u64,
    pub now: SimTime,
    /// The power limit the scheduler chose under the facility cap, as a fraction of the GPUs'
    /// training draw above idle (1: none). Handed to the job as FABRIK_POWER_FRACTION; applying
    /// it to the boards (nvidia-smi -pl) needs root and is left to the site's prologue.
    pub power_fraction: f64,
}

pub trait Executor: Send {
    fn name(&self) -> &'static str;
    /// Starts a job; returns its process id where there is one.
    fn start(&mut self, l: &Launch<'_>) -> Result<Option<u32>, String>;
    /// Jobs that ended since the last call.
    fn poll(&mut self, now: SimTime) -> Vec<(i64, Exit)>;
    /// SIGTERM (or SIGKILL with `force`) to the job's process group.
    fn signal(&mut self, id: i64, force: bool);
    /// After a restart: what became of a job that was starting or running.
    fn find(&mut self, id: i64, pid: Option<u32>, start: SimTime, l: &Launch<'_>) -> Found;
    /// Where the job's output goes, if anywhere.
    fn log_path(&self, id: i64, stream: &str) -> Option<PathBuf>;
}

pub struct LocalExecutor {
    jobs_dir: PathBuf,
    children: HashMap<i64, Child>,
    /// Re-adopted jobs: not our children, watched by pid.
    adopted: HashMap<i64, u32>,
}

/// The wrapper: $0 names the job (so its identity can be checked in /proc after a restart),
/// the pid is written before the command runs, the exit code after it ends (atomically).
const WRAPPER: &str = r#"echo $$ > "$FABRIK_JOB_DIR/pid"
"$@"
code=$?
echo $code > "$FABRIK_JOB_DIR/exit.tmp" && mv "$FABRIK_JOB_DIR/exit.tmp" "$FABRIK_JOB_DIR/exit"
exit $code"#;

impl LocalExecutor {
    pub fn new(data_dir: &Path) -> std::io::Result<LocalExecutor> {
        let jobs_dir = data_dir.join("jobs");
        std::fs::create_dir_all(&jobs_dir)?;
        Ok(LocalExecutor { jobs_dir, children: HashMap::new(), adopted: HashMap::new() })
    }

    fn dir(&self, id: i64) -> PathBuf {
        self.jobs_dir.join(id.to_string())
    }

    fn exit_file(&self, id: i64) -> Option<i32> {
        std::fs::read_to_string(self.dir(id).join("exit")).ok()?.trim().parse().ok()
    }

    fn is_ours(id: i64, pid: u32) -> bool {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|c| String::from_utf8_lossy(&c).split('\0').any(|a| a == format!("fabrik-job-{id}")))
            .unwrap_or(false)
    }
}

impl Executor for LocalExecutor {
    fn name(&self) -> &'static str {
        "local"
    }

    fn start(&mut self, l: &Launch<'_>) -> Result<Option<u32>, String> {
        if l.command.is_empty() {
            return Err("empty command".into());
        }
        if let Some(mut old) = self.children.remove(&l.id) {
            // an earlier run of a preempted job: make sure it is gone and reaped
            let _ = old.kill();
            let _ = old.wait();
        }
        let dir = self.dir(l.id);
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let _ = std::fs::remove_file(dir.join("exit"));
        let out = std::fs::File::create(dir.join("stdout")).map_err(|e| e.to_string())?;
        let err = std::fs::File::create(dir.join("stderr")).map_err(|e| e.to_string())?;
        let devices: Vec<String> = l.devices.iter().map(|d| d.to_string()).collect();
        let child = Command::new("sh")
            .arg("-c")
            .arg(WRAPPER)
            .arg(format!("fabrik-job-{}", l.id))
            .args(l.command)
            .env("CUDA_VISIBLE_DEVICES", devices.join(","))
            .env("FABRIK_JOB_ID", l.id.to_string())
            .env("FABRIK_POWER_FRACTION", format!("{:.3}", l.power_fraction))
            .env("FABRIK_JOB_DIR", &dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("spawning job {}: {e}", l.id))?;
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
        let gone: Vec<i64> = self
            .adopted
            .iter()
            .filter(|(_, &pid)| kill(Pid::from_raw(pid as i32), None).is_err())
            .map(|(&id, _)| id)
            .collect();
        for id in gone {
            self.adopted.remove(&id);
            done.push((id, self.exit_file(id).map_or(Exit::Lost, Exit::Code)));
        }
        done.sort_unstable_by_key(|d| d.0);
        done
    }

    fn signal(&mut self, id: i64, force: bool) {
        let pid = self.children.get(&id).map(|c| c.id()).or(self.adopted.get(&id).copied());
        if let Some(pid) = pid {
            let sig = if force { Signal::SIGKILL } else { Signal::SIGTERM };
            // The job leads its own process group (process_group(0)): signal all of it.
            let _ = killpg(Pid::from_raw(pid as i32), sig);
        }
    }

    fn find(&mut self, id: i64, pid: Option<u32>, _start: SimTime, _l: &Launch<'_>) -> Found {
        let pid = pid.or_else(|| std::fs::read_to_string(self.dir(id).join("pid")).ok()?.trim().parse().ok());
        if let Some(p) = pid {
            if kill(Pid::from_raw(p as i32), None).is_ok() && Self::is_ours(id, p) {
                self.adopted.insert(id, p);
                return Found::Alive(Some(p));
            }
        }
        match (self.exit_file(id), pid) {
            (Some(code), _) => Found::Exited(Exit::Code(code)),
            (None, Some(_)) => Found::Exited(Exit::Lost),
            (None, None) => Found::NotStarted,
        }
    }

    fn log_path(&self, id: i64, stream: &str) -> Option<PathBuf> {
        Some(self.dir(id).join(stream))
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
    fn start(&mut self, l: &Launch<'_>) -> Result<Option<u32>, String> {
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
    fn log_path(&self, _id: i64, _stream: &str) -> Option<PathBuf> {
        None
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

    fn launch<'a>(id: i64, cmd: &'a [String], devices: &'a [u32]) -> Launch<'a> {
        Launch {
            id,
            command: cmd,
            devices,
            simulated_runtime_s: None,
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

    #[test]
    fn local_jobs_get_their_devices_logs_and_exit_codes() {
        let dir = std::env::temp_dir().join(format!("fabrik-exec-{}", std::process::id()));
        let mut e = LocalExecutor::new(&dir).unwrap();
        let cmd: Vec<String> =
            ["sh", "-c", "echo gpus=$CUDA_VISIBLE_DEVICES; echo oops >&2; exit 3"].map(String::from).to_vec();
        e.start(&launch(7, &cmd, &[2, 5])).unwrap();
        assert_eq!(wait_exit(&mut e), vec![(7, Exit::Code(3))]);
        assert_eq!(std::fs::read_to_string(e.log_path(7, "stdout").unwrap()).unwrap(), "gpus=2,5\n");
        assert_eq!(std::fs::read_to_string(e.log_path(7, "stderr").unwrap()).unwrap(), "oops\n");
        assert_eq!(e.exit_file(7), Some(3));
        // A job that ended leaves its exit code for a restarted control plane.
        assert_eq!(e.find(7, None, SimTime(0), &launch(7, &cmd, &[])), Found::Exited(Exit::Code(3)));
        assert_eq!(e.find(8, None, SimTime(0), &launch(8, &cmd, &[])), Found::NotStarted);
        // SIGTERM reaches the whole group
        let sleeper: Vec<String> = ["sleep", "30"].map(String::from).to_vec();
        e.start(&launch(9, &sleeper, &[])).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        e.signal(9, false);
        assert_eq!(wait_exit(&mut e), vec![(9, Exit::Signal(15))]);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn simulated_jobs_end_after_their_runtime() {
        let mut e = SimulatedExecutor::default();
        let cmd = vec!["x".to_string()];
        let mut l = launch(1, &cmd, &[]);
        l.simulated_runtime_s = Some(10);
        e.start(&l).unwrap();
        e.start(&launch(2, &cmd, &[])).unwrap(); // half of 60 s
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

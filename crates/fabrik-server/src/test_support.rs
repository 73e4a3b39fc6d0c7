//! Helpers for this workspace's tests of the live control plane (not part of the API).
//!
//! Local jobs never run as the server's user unless it is an ordinary user in `--single-user`
//! mode, so tests need real Unix users when they run as root (as CI does): [`tenant_users`]
//! creates two (`fabrik-ta`, `fabrik-tb`) with `useradd` if they are missing. Where that cannot
//! be done the caller gets `None` and a printed notice — and under `CI=true` a failure, since a
//! skipped isolation test proves nothing.

use crate::executor::Isolation;
use fabrik_model::users::{RunAsSpec, UserMap};

pub const USERS: [&str; 2] = ["fabrik-ta", "fabrik-tb"];

fn exists(name: &str) -> bool {
    nix::unistd::User::from_name(name).ok().flatten().is_some()
}

/// Prints why a test is skipped; fails it under `CI=true`.
pub fn skip(why: &str) {
    let msg = format!("SKIPPED: {why}");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg} (CI=true: a skipped test is a failure)");
    }
    eprintln!("{msg}");
}

/// The two tenant users, when this process is root (created if needed); `None` otherwise.
pub fn tenant_users() -> Option<[&'static str; 2]> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    for u in USERS {
        if !exists(u) {
            let out = std::process::Command::new("useradd")
                .args(["--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", u])
                .output();
            // another test binary may have created it meanwhile
            if !exists(u) {
                skip(&format!("cannot create Unix user {u}: {out:?}"));
                return None;
            }
        }
    }
    Some(USERS)
}

/// How a test server isolates jobs: as root, accounts under `accounts[0]` run as `fabrik-ta`
/// and under `accounts[1]` as `fabrik-tb`; as an ordinary user, single-user mode.
pub fn isolation(accounts: [&str; 2]) -> Isolation {
    match tenant_users() {
        Some(users) => Isolation::Mapped(user_map(&[(accounts[0], users[0]), (accounts[1], users[1])])),
        None => Isolation::SingleUser,
    }
}

/// A map of (account subtree, Unix user) pairs.
pub fn user_map(pairs: &[(&str, &str)]) -> UserMap {
    let specs: Vec<RunAsSpec> = pairs
        .iter()
        .map(|(a, u)| RunAsSpec { account: a.to_string(), user: u.to_string(), group: None, slurm_account: None })
        .collect();
    UserMap::from_specs(&specs, "test", |_| true).expect("valid test map")
}

/// The `[[run_as]]` lines of a facility file mapping `accounts[i]` to `USERS[i % 2]` (for
/// tests of `fabrik serve`); `None` when this process is not root.
pub fn run_as_toml(accounts: &[&str]) -> Option<String> {
    let users = tenant_users()?;
    Some(
        accounts
            .iter()
            .enumerate()
            .map(|(i, a)| format!("[[run_as]]\naccount = \"{a}\"\nuser = \"{}\"\n", users[i % 2]))
            .collect(),
    )
}

/// A Prometheus server (Debian's `prometheus`) on a free loopback port, scraping `target`
/// (`host:port`) every second, killed when dropped.
pub struct Prometheus {
    child: std::process::Child,
    pub port: u16,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// Starts Prometheus for `target` with its files under `dir` and waits until it answers with
/// the target's `DCGM_FI_DEV_GPU_TEMP` series. `None` (with [`skip`]'s notice, a failure under
/// `CI=true`) when no `prometheus` binary is installed.
pub fn prometheus(dir: &std::path::Path, target: &str) -> Option<Prometheus> {
    let Some(bin) =
        ["/usr/bin/prometheus", "/usr/local/bin/prometheus"].into_iter().find(|p| std::path::Path::new(p).exists())
    else {
        skip("prometheus is not installed (Debian package prometheus; .ci/run installs it)");
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
    let cfg = dir.join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: dcgm\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .expect("writing prometheus.yml");
    let log = std::fs::File::create(dir.join("prometheus.log")).expect("prometheus.log");
    let child = std::process::Command::new(bin)
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("starting prometheus");
    let p = Prometheus { child, port };
    let url = format!("{}/api/v1/query?query=DCGM_FI_DEV_GPU_TEMP", p.url());
    let t = std::time::Instant::now();
    loop {
        let ok = reqwest::blocking::get(&url)
            .ok()
            .and_then(|r| r.json::<serde_json::Value>().ok())
            .is_some_and(|v| v["data"]["result"].as_array().is_some_and(|a| !a.is_empty()));
        if ok {
            return Some(p);
        }
        assert!(t.elapsed() < std::time::Duration::from_secs(40), "Prometheus did not scrape {target} within 40 s");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

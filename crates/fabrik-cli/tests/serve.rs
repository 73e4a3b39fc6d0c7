//! `fabrik serve` as a process: crash recovery after SIGKILL, the CLI client, and the dashboard
//! in headless Chromium.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_fabrik");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fabrik-serve-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `dir` holds the test's files; the server's (private) data directory is `dir/data`.
fn data(dir: &Path) -> PathBuf {
    dir.join("data")
}

fn admin_init(dir: &Path) -> String {
    let o = Command::new(BIN).args(["admin", "init", "--data-dir"]).arg(data(dir)).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

/// How the local executor runs jobs here: as root, the built-in tree's four classes map to the
/// two test users (a facility file with [[run_as]]); as an ordinary user, `--single-user`.
fn isolation(dir: &Path) -> Vec<String> {
    match fabrik_server::test_support::run_as_toml(&["research", "sme", "industry", "public"]) {
        Some(run_as) => {
            let f = dir.join("facility.toml");
            let pool = "[[pool]]\ngpu = \"H100\"\ndomain_gpus = 8\ndomains_per_group = 2\ngroups = 1\n";
            std::fs::write(&f, format!("name = \"test\"\n{pool}{run_as}")).unwrap();
            vec!["--facility".into(), f.display().to_string()]
        }
        None => vec!["--single-user".into()],
    }
}

/// A file every job user may append to (a job's own directory is wiped when it starts again).
fn shared_file(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, "").unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666)).unwrap();
}

fn serve(dir: &Path, port: u16, extra: &[&str]) -> Child {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("serve.log")).unwrap();
    let local = !extra.contains(&"simulated");
    let child = Command::new(BIN)
        .args(["serve", "--data-dir"])
        .arg(data(dir))
        .args(if local { isolation(dir) } else { vec![] })
        .args(["--bind", &format!("127.0.0.1:{port}"), "--tick-ms", "50", "--kill-grace-s", "1"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let t = Instant::now();
    while reqwest::blocking::get(format!("http://127.0.0.1:{port}/healthz")).is_err() {
        assert!(t.elapsed() < Duration::from_secs(20), "server did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

fn api(port: u16, token: &str, method: &str, path: &str, body: Option<Value>) -> Value {
    let c = reqwest::blocking::Client::new();
    let url = format!("http://127.0.0.1:{port}{path}");
    let r = if method == "POST" { c.post(url).json(&body.unwrap_or(json!({}))) } else { c.get(url) };
    r.bearer_auth(token).send().unwrap().json().unwrap()
}

#[test]
fn sigkill_mid_run_then_restart_ends_every_job_exactly_once() {
    let dir = temp_dir("crash");
    let token = admin_init(&dir);
    let port = free_port();
    let mut server = serve(&dir, port, &["--gpus", "4"]);
    let markers = dir.join("markers");
    shared_file(&markers);
    let script = format!("echo $FABRIK_JOB_ID >> {}; sleep 1.5", markers.display());
    let mut ids = Vec::new();
    for _ in 0..10 {
        let v = api(
            port,
            &token,
            "POST",
            "/v1/jobs",
            Some(json!({"command": ["sh", "-c", script], "gpus": 1, "walltime": 60, "account": "eval"})),
        );
        ids.push(v["id"].as_i64().unwrap_or_else(|| panic!("{v}")));
    }
    std::thread::sleep(Duration::from_millis(800));
    let running = api(port, &token, "GET", "/v1/jobs?state=running", None)["jobs"].as_array().unwrap().len();
    assert_eq!(running, 4, "four 1-GPU jobs run on 4 GPUs before the crash");
    server.kill().unwrap(); // SIGKILL
    server.wait().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut server = serve(&dir, port, &["--gpus", "4"]);
    let t = Instant::now();
    let jobs = loop {
        let v = api(port, &token, "GET", "/v1/jobs", None);
        let jobs = v["jobs"].as_array().unwrap().clone();
        if jobs.iter().all(|j| ["completed", "failed", "cancelled", "timeout"].contains(&j["state"].as_str().unwrap()))
        {
            break jobs;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "jobs did not finish: {v}");
        std::thread::sleep(Duration::from_millis(100));
    };
    server.kill().unwrap();
    server.wait().unwrap();
    assert_eq!(jobs.len(), 10, "no accepted job is lost");
    for j in &jobs {
        assert_eq!(j["state"], "completed", "{j}");
    }
    // every job's command ran exactly once
    let mut seen: Vec<i64> =
        std::fs::read_to_string(&markers).unwrap().lines().map(|l| l.trim().parse().unwrap()).collect();
    seen.sort_unstable();
    assert_eq!(seen, ids);
    let log = std::fs::read_to_string(dir.join("serve.log")).unwrap();
    assert!(log.contains("re-adopted running job"), "the restart re-adopted the jobs still running");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cli_client_submits_queues_and_explains() {
    let dir = temp_dir("cli");
    let token = admin_init(&dir);
    let port = free_port();
    let mut server = serve(&dir, port, &["--gpus", "2"]);
    let run = |args: &[&str]| {
        let o = Command::new(BIN)
            .args(args)
            .env("FABRIK_SERVER", format!("http://127.0.0.1:{port}"))
            .env("FABRIK_TOKEN", &token)
            .env("FABRIK_CONFIG", "/nonexistent")
            .output()
            .unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).to_string(),
            String::from_utf8_lossy(&o.stderr).to_string(),
        )
    };
    let (ok, out, err) =
        run(&["submit", "--gpus", "2", "--walltime", "1m", "--account", "eval", "--name", "hold", "--", "sleep", "3"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "submitted job 1 (hold) to research/open-llm/eval");
    let (ok, _, _) =
        run(&["submit", "--gpus", "2", "--walltime", "1m", "--account", "eval", "--name", "next", "--", "echo", "hi"]);
    assert!(ok);
    std::thread::sleep(Duration::from_millis(400));
    let (_, out, _) = run(&["queue"]);
    assert!(
        out.contains("hold") && out.contains("running") && out.contains("next") && out.contains("pending"),
        "{out}"
    );
    // squeue-like columns: the running job has an elapsed time and time left, the pending not
    let (ok, out, err) = run(&["queue", "-o", "id,state,elapsed,left"]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("JOB") && lines[0].ends_with("TIME_LEFT"), "{out}");
    let row = |id: &str| lines.iter().find(|l| l.split_whitespace().next() == Some(id)).unwrap().to_string();
    let one: Vec<String> = row("1").split_whitespace().map(String::from).collect();
    assert_eq!(one[1], "running");
    // on the same clock, elapsed + time left = the 1-minute walltime
    let secs = |t: &str| t.split(':').fold(0u64, |a, x| a * 60 + x.parse::<u64>().unwrap());
    assert!(one[2].starts_with("00:00:0"), "{out}");
    assert_eq!(secs(&one[2]) + secs(&one[3]), 60, "{out}");
    assert_eq!(row("2").split_whitespace().skip(1).collect::<Vec<_>>(), ["pending", "-", "-"]);
    let (ok, _, err) = run(&["queue", "--format", "id,colour"]);
    assert!(!ok && err.contains("unknown column 'colour'"), "{err}");
    let (_, out, _) = run(&["why", "2"]);
    assert!(out.contains("queue head; GPUs reserved"), "{out}");
    let (_, out, _) = run(&["show", "2", "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["name"], "next");
    let (_, out, _) = run(&["usage"]);
    assert!(out.contains("research/open-llm/eval"), "{out}");
    let (ok, _, err) = run(&["show", "99"]);
    assert!(!ok && err.contains("404") && err.contains("job 99 not found"), "{err}");
    // hold and release the pending job, requeue the running one (scontrol's verbs)
    let (ok, out, err) = run(&["hold", "2"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "job 2 held: held by admin");
    let (_, out, _) = run(&["queue"]);
    assert!(out.contains("held"), "{out}");
    let (ok, out, _) = run(&["release", "2"]);
    assert!(ok && out.starts_with("job 2 pending: released by admin"), "{out}");
    let (ok, out, err) = run(&["requeue", "1"]);
    assert!(ok && out.starts_with("job 1 running: requeued by admin at "), "{out}{err}");
    let (ok, _, err) = run(&["requeue", "2"]);
    assert!(!ok && err.contains("409") && err.contains("only a running job can be requeued"), "{err}");
    // nodes as sinfo -N shows them: the host is node0
    let (ok, out, err) = run(&["nodes"]);
    assert!(ok, "{err}");
    assert!(out.lines().nth(1).is_some_and(|l| l.starts_with("node0") && l.contains("in service")), "{out}");
    let (ok, _, err) = run(&["cancel", "1"]);
    assert!(ok, "{err}");
    let t = Instant::now();
    loop {
        let (_, out, _) = run(&["logs", "2"]);
        if out == "hi\n" {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "job 2 never ran");
        std::thread::sleep(Duration::from_millis(100));
    }
    // a batch script with #SBATCH lines, an array of two tasks; its arguments follow it
    let script = dir.join("job.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\n#SBATCH --job-name=scripted\n#SBATCH --time=1:00 --gres=gpu:1 -A eval\n#SBATCH --output=x.out --array=0-1\necho \"$0 $1 task $SLURM_ARRAY_TASK_ID\"\n",
    )
    .unwrap();
    let (ok, out, err) = run(&["submit", script.to_str().unwrap(), "hello"]);
    assert!(ok, "{err}");
    assert!(err.contains("#SBATCH --output=x.out ignored"), "{err}");
    let first: i64 = out
        .strip_prefix("submitted array job ")
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert!(out.trim().ends_with("(scripted) to research/open-llm/eval"), "{out}");
    for (k, id) in [first, first + 1].iter().enumerate() {
        let t = Instant::now();
        loop {
            let (_, out, _) = run(&["logs", &id.to_string()]);
            if out == format!("job.sh hello task {k}\n") {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(20), "task {k}: {out:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let (ok, _, err) = run(&["submit", "--", "true"]);
    assert!(!ok && err.contains("a walltime is required"), "{err}");
    // drain and resume the host
    let (ok, out, err) = run(&["drain", "node0", "--reason", "fan replaced"]);
    assert!(ok && out.trim() == "node0 drained", "{out}{err}");
    let (_, out, _) = run(&["nodes", "--problems"]);
    assert!(out.contains("node0") && out.contains(" out ") && out.contains("drained by admin: fan replaced"), "{out}");
    let (ok, out, _) = run(&["resume", "node0"]);
    assert!(ok && out.trim() == "node0 back in service", "{out}");
    let (_, out, _) = run(&["nodes", "--problems"]);
    assert_eq!(out.lines().count(), 1, "only the header: {out}");
    let o = Command::new(BIN)
        .args(["queue"])
        .env("FABRIK_SERVER", "http://127.0.0.1:1")
        .env("FABRIK_TOKEN", "x")
        .env("FABRIK_CONFIG", "/nonexistent")
        .output()
        .unwrap();
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("cannot reach the server"));
    server.kill().unwrap();
    server.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

fn chromium() -> Option<String> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find(|b| Command::new(b).arg("--version").output().is_ok_and(|o| o.status.success()))
        .map(|b| b.to_string())
}

#[test]
fn dashboard_shows_live_data_in_headless_chromium() {
    let Some(browser) = chromium() else {
        assert!(std::env::var_os("CI").is_none(), "CI must provide chromium (.ci/run installs it)");
        eprintln!("SKIPPED: no chromium on this machine (.ci/run installs Debian's chromium package)");
        return;
    };
    let dir = temp_dir("dash");
    let token = admin_init(&dir);
    let port = free_port();
    let mut server =
        serve(&dir, port, &["--executor", "simulated", "--facility", "small", "--forecast-interval", "1s"]);
    // a node drained and resumed before any job: the dashboard lists both events
    api(port, &token, "POST", "/v1/nodes/node15/drain", Some(json!({"reason": "fan replaced"})));
    api(port, &token, "POST", "/v1/nodes/node15/resume", None);
    let first = api(
        port,
        &token,
        "POST",
        "/v1/jobs",
        Some(
            json!({"name": "visible-job-1", "command": ["train"], "gpus": 64, "walltime": "2h", "simulated_runtime": "1h", "account": "eval"}),
        ),
    );
    api(
        port,
        &token,
        "POST",
        "/v1/jobs",
        Some(
            json!({"name": "waiting-giant", "command": ["train"], "gpus": 128, "walltime": "2h", "account": "pretrain"}),
        ),
    );
    std::thread::sleep(Duration::from_millis(500));
    // without history the giant is forecast to start when the first job's 2 h walltime is up
    let started = api(port, &token, "GET", &format!("/v1/jobs/{}", first["id"]), None)["start_time"].as_u64().unwrap();
    let forecast = fabrik_model::SimTime(started + 7200).unix_utc()[..16].to_string();
    let profile = dir.join("chromium-profile");
    let o = Command::new(&browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--virtual-time-budget=5000", "--dump-dom"])
        .arg(format!("http://127.0.0.1:{port}/?token={token}"))
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&o.stdout).to_string();
    // the same page as a picture
    let shot = dir.join("dashboard.png");
    let o = Command::new(&browser)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--hide-scrollbars"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--virtual-time-budget=5000", "--window-size=1000,2400"])
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("http://127.0.0.1:{port}/?token={token}"))
        .output()
        .unwrap();
    assert!(shot.exists(), "no screenshot: {}", String::from_utf8_lossy(&o.stderr));
    server.kill().unwrap();
    server.wait().unwrap();
    // what the picture shows: the map's fully busy leaf groups (two of the four: 64 of 128 GPUs)
    // in the chart blue, and the orange line of the 128 GPUs the queue asks for
    let decoder = png::Decoder::new(std::fs::File::open(&shot).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let px = match info.color_type {
        png::ColorType::Rgba => 4,
        png::ColorType::Rgb => 3,
        other => panic!("screenshot colour type {other:?}"),
    };
    let count = |rgb: [u8; 3]| buf[..info.buffer_size()].chunks(px).filter(|p| p[..3] == rgb).count();
    let (blue, orange, white) = (count([42, 111, 219]), count([217, 130, 43]), count([255, 255, 255]));
    // a 14 × 14 square per busy leaf group: at least 2 × 196 pixels of the exact blue
    assert!(blue >= 2 * 196, "busy leaf groups not drawn: {blue} blue pixels");
    assert!(orange >= 40, "the pending-GPU line is not drawn: {orange} orange pixels");
    assert!(white > buf.len() / px / 2, "mostly page background");
    assert!(dom.contains("64 of 128 GPUs busy"), "facility overview missing: {dom}");
    // the map is labelled by hall and GPU type with a legend; charts have time axes
    assert!(
        dom.contains("hall-1 · H100 (4 leaf groups)") && dom.contains("nodes out of service</span>"),
        "map labels: {dom}"
    );
    assert!(dom.contains("Facility power against the cap") && dom.contains("time (UTC)"), "charts: {dom}");
    // the demand chart's scale reaches the waiting giant's 128 GPUs
    assert!(dom.contains(">128 GPUs</text>"), "pending GPU demand: {dom}");
    assert!(dom.contains("view: admin (admin, every tenant)"), "viewer: {dom}");
    assert!(
        dom.contains("<td>node15</td><td>out of service: drained by admin: fan replaced</td>")
            && dom.contains("<td>node15</td><td>resumed by admin</td>"),
        "recent node events: {dom}"
    );
    // queue by class and size: the 128-GPU job of research is in the 65–512 column
    assert!(
        dom.contains("<tr><td>research</td><td>0</td><td>0</td><td>1</td><td>0</td><td>128</td></tr>"),
        "queue by class: {dom}"
    );
    assert!(dom.contains("visible-job-1"), "running job missing");
    assert!(
        dom.contains("waiting-giant") && dom.contains("queue head; GPUs reserved"),
        "queue with why-pending missing"
    );
    assert!(dom.contains("research/open-llm/eval"), "accounts missing");
    // (the P90 may be later: a forecast run can draw a node failure)
    assert!(dom.contains(&format!("{forecast} / ")), "forecast start {forecast} missing: {dom}");
    if std::env::var_os("FABRIK_KEEP_SCREENSHOT").is_some() {
        let _ = std::fs::copy(&shot, std::env::temp_dir().join("fabrik-dashboard.png"));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `fabrik serve` (as `user` when given) until it exits or prints `until` on stderr.
fn serve_output(user: Option<&str>, args: &[&str], until: &str) -> String {
    let mut cmd = match user {
        Some(u) => {
            let mut c = Command::new("runuser");
            c.args(["-u", u, "--", BIN]);
            c
        }
        None => Command::new(BIN),
    };
    // a group of its own: runuser forks, and killing runuser alone left the server running
    use std::os::unix::process::CommandExt;
    cmd.process_group(0);
    let mut child = cmd.arg("serve").args(args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let mut err = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::Read;
        let mut buf = [0u8; 4096];
        while let Ok(n) = err.read(&mut buf) {
            if n == 0 || tx.send(String::from_utf8_lossy(&buf[..n]).to_string()).is_err() {
                break;
            }
        }
    });
    let mut out = String::new();
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(20) && !out.contains(until) {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(s) => out.push_str(&s),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if child.try_wait().unwrap().is_some() {
                    // the server is gone: read until its stderr closes (the reader thread may
                    // lag behind the exit under load; taking only what it has sent so far lost
                    // the last message once)
                    let end = Instant::now() + Duration::from_secs(5);
                    while let Ok(s) = rx.recv_timeout(end.saturating_duration_since(Instant::now())) {
                        out.push_str(&s);
                    }
                    break;
                }
            }
            Err(_) => break,
        }
    }
    let group = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
    let _ = child.wait();
    out
}

#[test]
fn the_local_executor_never_runs_jobs_as_the_server_unless_told() {
    let Some(users) = fabrik_server::test_support::tenant_users() else {
        fabrik_server::test_support::skip("needs root to run `fabrik serve` as root and as another user");
        return;
    };
    let dir = temp_dir("who");
    let d = data(&dir).display().to_string();
    let port = free_port().to_string();
    let bind = format!("127.0.0.1:{port}");
    let base = ["--data-dir", d.as_str(), "--bind", bind.as_str()];
    // root without a map, and root with --single-user: refused, with the reason
    let out = serve_output(None, &base, "listening");
    assert!(out.contains("the facility file (--facility) has no [[run_as]] entries"), "{out}");
    let out = serve_output(None, &[&base[..], &["--single-user"]].concat(), "listening");
    assert!(out.contains("--single-user as root would run every tenant's job as root"), "{out}");
    // an ordinary user: refused without --single-user; with it, announced
    let own = dir.join("own");
    std::fs::create_dir_all(&own).unwrap();
    let u = nix::unistd::User::from_name(users[0]).unwrap().unwrap();
    nix::unistd::chown(&own, Some(u.uid), Some(u.gid)).unwrap();
    let od = own.join("data").display().to_string();
    let base = ["--data-dir", od.as_str(), "--bind", bind.as_str()];
    let out = serve_output(Some(users[0]), &base, "listening");
    assert!(out.contains("which needs root") && out.contains("pass --single-user"), "{out}");
    // wait for the whole sentence: stopping at "WARNING" raced the rest of the line
    let warning = "WARNING: single-user mode: every job runs as Unix user 'fabrik-ta'";
    let out = serve_output(Some(users[0]), &[&base[..], &["--single-user"]].concat(), warning);
    assert!(out.contains(warning), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn admin_tokens_are_listed_expire_and_are_revoked() {
    let dir = temp_dir("tok");
    admin_init(&dir);
    let d = data(&dir).display().to_string();
    let run = |args: &[&str]| {
        let o = Command::new(BIN).args(["admin", "token"]).args(args).args(["--data-dir", &d]).output().unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).to_string(),
            String::from_utf8_lossy(&o.stderr).to_string(),
        )
    };
    let (ok, tok, err) = run(&[
        "create",
        "--name",
        "ci",
        "--role",
        "user",
        "--account",
        "research/open-llm/eval",
        "--expires-in",
        "30d",
    ]);
    assert!(ok && tok.starts_with("fbk_"), "{err}");
    let (_, out, _) = run(&["list", "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    let ci = v.as_array().unwrap().iter().find(|t| t["name"] == "ci").unwrap().clone();
    let created = ci["created"].as_u64().unwrap();
    assert_eq!(ci["expires"].as_u64().unwrap() - created, 30 * 86_400);
    assert!(!out.contains(tok.trim()), "the secret is never listed");
    let id = ci["id"].as_i64().unwrap().to_string();
    let (ok, _, _) = run(&["revoke", &id]);
    assert!(ok);
    let (_, out, _) = run(&["list"]);
    assert!(out.lines().any(|l| l.contains(" ci ") && l.ends_with("revoked")), "{out}");
    let (ok, _, err) = run(&["revoke", "999"]);
    assert!(!ok && err.contains("no token with id 999"), "{err}");
    let (ok, _, err) = run(&["create", "--name", "x", "--role", "admin", "--expires-in", "0"]);
    assert!(!ok && err.contains("--expires-in: must be between 1 s and 10 years"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn whatif_and_queue_start_against_a_live_server() {
    // small (128 GPUs), simulated executor: a 128-GPU job runs, two more wait. `fabrik whatif`
    // compares the baseline with fifo on the queue as it stands (no arrivals), `queue --start`
    // lists the forecast, and a bad --drain is a clear error.
    let dir = temp_dir("whatif");
    let token = admin_init(&dir);
    let port = free_port();
    let mut server =
        serve(&dir, port, &["--executor", "simulated", "--facility", "small", "--forecast-interval", "1s"]);
    for gpus in [128, 64, 64] {
        api(
            port,
            &token,
            "POST",
            "/v1/jobs",
            Some(json!({"command": ["x"], "gpus": gpus, "walltime": "1h", "account": "eval"})),
        );
    }
    // a forecast interval after the last submission, both queued jobs are in the forecast
    std::thread::sleep(Duration::from_millis(1300));
    let url = format!("http://127.0.0.1:{port}");
    let run =
        |args: &[&str]| Command::new(BIN).args(args).args(["--server", &url, "--token", &token]).output().unwrap();
    let o = run(&["whatif", "--days", "0", "--policy", "fifo"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(text.contains("baseline (fair-share)") && text.contains("policy=fifo (fifo)"), "{text}");
    let o = run(&["whatif", "--days", "0", "--drain", "g99"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--drain g99: the facility has 4 leaf groups"));
    // the twin continues from the server itself
    let o = Command::new(BIN)
        .args(["simulate", "-q", "--from", &url, "--facility", "small", "--json", "/dev/stdout"])
        .env("FABRIK_TOKEN", &token)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["summary"]["completed"], 3, "{}", report["summary"]);
    let o = run(&["queue", "--start"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(text.contains("START (P50)") && text.lines().count() >= 4, "{text}");
    server.kill().unwrap();
    server.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

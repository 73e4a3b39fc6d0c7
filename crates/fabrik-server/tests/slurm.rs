//! `fabrik serve --executor slurm` against a real Slurm cluster (`.ci/slurm.sh start`: three
//! nodes of four GPUs, node1–2 under leaf1, node3 under leaf2). Skipped with a notice where no
//! cluster answers; a failure under `CI=true`. The tests share one cluster, so they take turns.

mod common;
use common::*;
use fabrik_server::engine::{CrashPoint, Faults};
use fabrik_server::{test_support, ExecutorKind};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::process::Command;
use std::time::{Duration, Instant};

/// Each test runs on its own runtime; this lock makes them take turns on the one cluster.
static CLUSTER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn cluster() -> Option<tokio::sync::MutexGuard<'static, ()>> {
    if !fabrik_server::slurm::available() {
        test_support::skip("no Slurm cluster answers `scontrol ping` (start one with .ci/slurm.sh start)");
        return None;
    }
    Some(CLUSTER.lock().await)
}

fn sh(cmd: &str, args: &[&str]) -> String {
    let o = Command::new(cmd).args(args).output().unwrap();
    String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr)
}

async fn slurm_srv(name: &str, faults: Faults) -> Srv {
    start_cfg(name, |c| {
        c.executor = ExecutorKind::Slurm;
        c.slurm_start_grace_s = 8;
        c.engine.faults = faults;
    })
    .await
}

async fn log(s: &Srv, id: i64, token: &str) -> String {
    let url = format!("{}/v1/jobs/{id}/logs", s.base);
    s.http.get(url).bearer_auth(token).send().await.unwrap().text().await.unwrap()
}

fn nodes_of(_s: &Srv, v: &Value) -> Vec<String> {
    v["allocation"]["parts"].as_array().unwrap().iter().map(|p| format!("node{}", p[0].as_u64().unwrap() + 1)).collect()
}

/// Slurm's own record of a job: (NodeList, JobState).
fn scontrol(slurm_id: i64) -> (String, String) {
    let t = sh("scontrol", &["show", "job", &slurm_id.to_string()]);
    let get = |k: &str| t.split_whitespace().find_map(|w| w.strip_prefix(k)).unwrap_or("").to_string();
    (get("NodeList="), get("JobState="))
}

/// Slurm jobs (any state, accounting included) of this control plane (its tag: a hash of its
/// data directory) named for this fabrik job.
fn attempts(s: &Srv, id: i64) -> usize {
    let dir = std::fs::canonicalize(&s.dir).unwrap();
    let tag = &fabrik_server::store::hash_token(&dir.display().to_string())[..8];
    let prefix = format!("fabrik-{tag}-{id}-");
    // the controller's list and accounting (which may lag it), by Slurm job id
    let mut ids = std::collections::BTreeSet::new();
    let listed = sh("squeue", &["-h", "-t", "all", "-o", "%A|%j"]);
    let acct = sh("sacct", &["-X", "-n", "-P", "-a", "-S", "now-1hours", "--format=JobIDRaw,JobName"]);
    for l in listed.lines().chain(acct.lines()) {
        if let Some((sid, name)) = l.split_once('|') {
            if name.trim().starts_with(&prefix) {
                ids.insert(sid.trim().to_string());
            }
        }
    }
    ids.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_run_where_fabrik_placed_them_as_their_users_with_exit_codes_logs_cancel_and_walltime() {
    let Some(_c) = cluster().await else { return };
    let s = slurm_srv("slurm-run", Faults::default()).await;
    // the facility is what Slurm reports: 3 nodes × 4 H100, two leaf groups
    let (_, f) = s.req("GET", "/v1/facility", &s.admin, None).await;
    assert_eq!(
        (f["gpus"].as_u64(), f["groups"].as_array().unwrap().len(), f["executor"].as_str()),
        (Some(12), 2, Some("slurm"))
    );
    let script = "echo $CUDA_VISIBLE_DEVICES $SLURMD_NODENAME $(id -un) $FABRIK_JOB_ID";
    let a = s.submit(&s.alice, json!({"command": ["sh", "-c", script], "gpus": 2, "walltime": "10m"})).await;
    let v = s.wait_state(a, &s.alice, "completed").await;
    let nodes = nodes_of(&s, &v);
    let (list, state) = scontrol(v["pid"].as_i64().unwrap());
    assert_eq!((list.as_str(), state.as_str()), (nodes[0].as_str(), "COMPLETED"));
    let users = test_support::tenant_users();
    let who = users.map_or_else(|| sh("id", &["-un"]).trim().to_string(), |u| u[0].to_string());
    let devices: Vec<String> =
        v["allocation"]["devices"].as_array().unwrap().iter().map(|d| (d.as_u64().unwrap() % 4).to_string()).collect();
    assert_eq!(log(&s, a, &s.alice).await, format!("{} {} {who} {a}\n", devices.join(","), nodes[0]));
    // bob's job as bob's user; an exit code
    let b = s.submit(&s.bob, json!({"command": ["sh", "-c", "id -un; exit 7"], "gpus": 1, "walltime": 60})).await;
    let v = s.wait_state(b, &s.bob, "failed").await;
    assert_eq!(v["exit_code"], 7, "{v}");
    if let Some(u) = users {
        assert_eq!(log(&s, b, &s.bob).await, format!("{}\n", u[1]));
    }
    // a gang over two nodes of one leaf group
    let g = s
        .submit(&s.alice, json!({"command": ["sh", "-c", "echo $SLURM_JOB_NUM_NODES"], "gpus": 8, "walltime": 60}))
        .await;
    let v = s.wait_state(g, &s.alice, "completed").await;
    let (list, _) = scontrol(v["pid"].as_i64().unwrap());
    assert!(list == "node[1-2]" || list == "node[2-3]", "{list}");
    assert_eq!(log(&s, g, &s.alice).await, "2\n");
    // cancel, and fabrik's own walltime
    let c = s.submit(&s.alice, json!({"command": ["sleep", "300"], "gpus": 1, "walltime": 600})).await;
    s.wait_state(c, &s.alice, "running").await;
    let (st, _) = s.req("POST", &format!("/v1/jobs/{c}/cancel"), &s.alice, None).await;
    assert_eq!(st, StatusCode::OK);
    s.wait_state(c, &s.alice, "cancelled").await;
    let w = s.submit(&s.alice, json!({"command": ["sleep", "300"], "gpus": 1, "walltime": 4})).await;
    s.wait_state(w, &s.alice, "timeout").await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_health_flows_both_ways() {
    let Some(_c) = cluster().await else { return };
    let s = slurm_srv("slurm-nodes", Faults::default()).await;
    // a 4-GPU job fills one node; the admin takes that node DOWN in Slurm
    let j = s.submit(&s.alice, json!({"command": ["sleep", "300"], "gpus": 4, "walltime": 600})).await;
    let v = s.wait_state(j, &s.alice, "running").await;
    let node = nodes_of(&s, &v)[0].clone();
    sh("scontrol", &["update", &format!("NodeName={node}"), "State=DOWN", "Reason=fabrik-test"]);
    // fabrik requeues it and starts it on another node
    let t = Instant::now();
    let v = loop {
        let (_, v) = s.req("GET", &format!("/v1/jobs/{j}"), &s.alice, None).await;
        if v["state"] == "running" && nodes_of(&s, &v)[0] != node {
            break v;
        }
        assert!(t.elapsed() < Duration::from_secs(40), "not moved off {node}: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (_, why) = s.req("GET", &format!("/v1/jobs/{j}/why"), &s.alice, None).await;
    assert!(why.to_string().contains(&format!("Slurm has node {node} down")), "{why} {v}");
    sh("scontrol", &["update", &format!("NodeName={node}"), "State=RESUME"]);
    // fabrik's drain shows in sinfo, with its reason; resume brings it back
    let (st, v) = s.req("POST", "/v1/nodes/node3/drain", &s.admin, Some(json!({"reason": "GPU 2 ECC errors"}))).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let info = sh("sinfo", &["-h", "-N", "-n", "node3", "-o", "%T|%E"]);
    assert!(info.starts_with("drain") && info.contains("fabrik: GPU 2 ECC errors"), "{info}");
    let (st, _) = s.req("POST", "/v1/nodes/node3/drain", &s.alice, Some(json!({"reason": "x"}))).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = s.req("POST", "/v1/nodes/node3/resume", &s.admin, None).await;
    assert_eq!(st, StatusCode::OK);
    assert!(sh("sinfo", &["-h", "-N", "-n", "node3", "-o", "%T"]).trim() != "drained");
    let (st, _) = s.req("POST", &format!("/v1/jobs/{j}/cancel"), &s.alice, None).await;
    assert_eq!(st, StatusCode::OK);
    s.wait_state(j, &s.alice, "cancelled").await;
    s.stop().await;
}

async fn crash_and_count(name: &str, point: CrashPoint) {
    let s = slurm_srv(name, Faults { crash_at: Some(point), ..Faults::default() }).await;
    let id = s.submit(&s.alice, json!({"command": ["sleep", "2"], "gpus": 1, "walltime": 60})).await;
    let t = Instant::now();
    while s.req("GET", "/v1/jobs", &s.alice, None).await.0 != StatusCode::SERVICE_UNAVAILABLE {
        assert!(t.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let s = s.restart(|c| c.engine.faults = Faults::default()).await;
    s.wait_state(id, &s.alice, "completed").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(attempts(&s, id), 1, "{point:?}: job {id} must reach Slurm exactly once");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_before_or_after_sbatch_submits_no_job_twice() {
    let Some(_c) = cluster().await else { return };
    crash_and_count("slurm-crash-before", CrashPoint::AfterStartingCommit).await;
    crash_and_count("slurm-crash-after", CrashPoint::AfterSpawn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_slurmctld_down_jobs_wait_with_a_reason_and_run_when_it_is_back() {
    let Some(_c) = cluster().await else { return };
    let pidfile = "/run/fabrik-ci-slurm/slurmctld.pid";
    let Ok(pid) = std::fs::read_to_string(pidfile) else {
        test_support::skip("slurmctld was not started by .ci/slurm.sh: not stopping someone else's controller");
        return;
    };
    let s = slurm_srv("slurm-ctld", Faults::default()).await;
    sh("kill", &[pid.trim()]);
    let t = Instant::now();
    while fabrik_server::slurm::available() {
        assert!(t.elapsed() < Duration::from_secs(20), "slurmctld did not stop");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let id = s.submit(&s.alice, json!({"command": ["true"], "gpus": 1, "walltime": 60})).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (st, v) = s.req("GET", &format!("/v1/jobs/{id}/why"), &s.alice, None).await;
    assert_eq!(st, StatusCode::OK, "the API keeps answering");
    assert!(v.to_string().contains("not started: sbatch"), "{v}");
    assert_eq!(s.req("GET", &format!("/v1/jobs/{id}"), &s.alice, None).await.1["state"], "pending");
    // back (it recovers its state from StateSaveLocation)
    let o = Command::new("slurmctld").output().unwrap();
    assert!(o.status.success(), "{o:?}");
    let t = Instant::now();
    while !fabrik_server::slurm::available() {
        assert!(t.elapsed() < Duration::from_secs(30), "slurmctld did not come back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    s.wait_state(id, &s.alice, "completed").await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guarantee_preempts_a_borrower_on_slurm_with_term_then_requeue() {
    let Some(_c) = cluster().await else { return };
    // research is guaranteed 8 GPUs and takes them back from borrowers (a facility setting
    // that must hold live as in the twin)
    let run_as = test_support::tenant_users().map_or(String::new(), |[a, b]| {
        format!("[[run_as]]\naccount = \"research\"\nuser = \"{a}\"\n[[run_as]]\naccount = \"sme\"\nuser = \"{b}\"\n")
    });
    let text = format!(
        "name = \"t\"\n[[pool]]\ngpu = \"H100\"\ndomain_gpus = 4\ndomains_per_group = 3\ngroups = 1\n\
         [[account]]\npath = \"research\"\nshares = 50\nguarantee_gpus = 8\nreclaim_by_preemption = true\n\
         [[account]]\npath = \"research/open-llm/eval\"\nshares = 1\n\
         [[account]]\npath = \"sme\"\nshares = 50\n[[account]]\npath = \"sme/startup-a/llm\"\nshares = 1\n{run_as}"
    );
    let f = fabrik_model::Facility::from_toml(&text, "t.toml").unwrap();
    let s = start_cfg("slurm-preempt", |c| {
        c.executor = ExecutorKind::Slurm;
        c.facility = Some(f);
        c.engine.kill_grace_s = 2;
    })
    .await;
    let b = s.submit(&s.bob, json!({"command": ["sh", "-c", "trap 'echo got TERM; exit 0' TERM; sleep 300 & wait"], "gpus": 12, "walltime": 600, "preemptible": true})).await;
    let v = s.wait_state(b, &s.bob, "running").await;
    let first = v["pid"].as_i64().unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let a = s.submit(&s.alice, json!({"command": ["sh", "-c", "echo ran"], "gpus": 8, "walltime": 60})).await;
    s.wait_state(a, &s.alice, "completed").await;
    let (_, why) = s.req("GET", &format!("/v1/jobs/{b}"), &s.bob, None).await;
    assert!(why["reason"].as_str().unwrap_or("").contains("preempted"), "{why}");
    // the borrower's first run got SIGTERM (its trap exits 0: COMPLETED) or was cancelled after
    // the grace period
    let t = Instant::now();
    loop {
        let (_, st) = scontrol(first);
        if st == "CANCELLED" || st == "COMPLETED" {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "first run of {b} still {st}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // and it runs again once the GPUs are free: back in fabrik's queue, not Slurm's
    let v = s.wait_state(b, &s.bob, "running").await;
    assert_ne!(v["pid"].as_i64().unwrap(), first, "a new Slurm job for the new run");
    let (st, _) = s.req("POST", &format!("/v1/jobs/{b}/cancel"), &s.bob, None).await;
    assert_eq!(st, StatusCode::OK);
    s.wait_state(b, &s.bob, "cancelled").await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatch_slurm_does_not_start_is_taken_back_with_slurms_reason() {
    let Some(_c) = cluster().await else { return };
    // GPUs fabrik does not know about are busy: a job submitted to Slurm directly holds one
    // GPU of every node, so a 4-GPU dispatch cannot start anywhere
    let dir = std::env::temp_dir();
    let foreign: Vec<String> = (1..=3)
        .map(|n| {
            sh(
                "sbatch",
                &[
                    "--parsable",
                    &format!("--nodelist=node{n}"),
                    "--gres=gpu:1",
                    "--time=5",
                    "-o",
                    "/dev/null",
                    &format!("--chdir={}", dir.display()),
                    "--wrap",
                    "sleep 120",
                ],
            )
            .trim()
            .to_string()
        })
        .collect();
    let s = slurm_srv("slurm-takeback", Faults::default()).await;
    let j = s.submit(&s.alice, json!({"command": ["true"], "gpus": 4, "walltime": 60})).await;
    // a cancel while Slurm still holds the dispatch pending ends it at once: Slurm refuses
    // signals to pending jobs and scancel would retry for a minute and more, stalling the loop
    let k = s.submit(&s.alice, json!({"command": ["true"], "gpus": 4, "walltime": 60})).await;
    let v = s.wait_state(k, &s.alice, "running").await;
    let sid = v["pid"].as_i64().unwrap();
    assert_eq!(scontrol(sid).1, "PENDING", "{v}");
    let t = Instant::now();
    let (st, _) = s.req("POST", &format!("/v1/jobs/{k}/cancel"), &s.alice, None).await;
    assert_eq!(st, StatusCode::OK);
    s.wait_state(k, &s.alice, "cancelled").await;
    assert!(t.elapsed() < Duration::from_secs(5), "cancel took {:?}", t.elapsed());
    assert_eq!(scontrol(sid).1, "CANCELLED");
    let t = Instant::now();
    let why = loop {
        let (_, why) = s.req("GET", &format!("/v1/jobs/{j}/why"), &s.alice, None).await;
        if why.to_string().contains("Slurm did not start it within 8 s") {
            break why;
        }
        assert!(t.elapsed() < Duration::from_secs(40), "never taken back: {why}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert!(why.to_string().contains("Resources"), "Slurm's pending reason: {why}");
    for f in &foreign {
        sh("scancel", &[f]);
    }
    s.wait_state(j, &s.alice, "completed").await;
    s.stop().await;
}

/// The synthetic dcgm-exporter of the twin for the cluster's own nodes (their Slurm names),
/// served on a loopback port and stepped every second; node `sick` fails from `after_s` on.
async fn cluster_exporter(sick: &str, after_s: f64) -> (u16, tokio::task::JoinHandle<()>) {
    use fabrik_twin::telemetry::{Difficulty, Exporter, Injected};
    let f = fabrik_server::slurm::discover("slurm").unwrap();
    let d = fabrik_model::telemetry::domain_of(&f, sick).unwrap();
    let e = std::sync::Arc::new(std::sync::Mutex::new(Exporter::new(
        &f,
        vec![Injected { domain: d, start_s: after_s, ramp_s: 0.0 }],
        Difficulty::default(),
        3,
    )));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let ticker = e.clone();
    let render = std::sync::Arc::new(move || e.lock().unwrap().render());
    let task = tokio::spawn(async move {
        let step = tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            loop {
                every.tick().await;
                ticker.lock().unwrap().step(1.0);
            }
        });
        let _ = fabrik_server::exposition::serve_text(listener, render).await;
        step.abort();
    });
    (port, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_the_health_detector_drains_is_drained_in_slurm_with_its_reason() {
    let Some(_c) = cluster().await else { return };
    let dir = std::env::temp_dir().join(format!("fabrik-slurm-telemetry-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (ep, exporter) = cluster_exporter("node2", 6.0).await;
    let target = format!("127.0.0.1:{ep}");
    let d2 = dir.clone();
    let Some(prom) = tokio::task::spawn_blocking(move || test_support::prometheus(&d2, &target)).await.unwrap() else {
        exporter.abort();
        return;
    };
    let mut src = fabrik_server::telemetry::TelemetrySource::parse(&format!("prometheus={}", prom.url())).unwrap();
    src.interval = Duration::from_secs(1);
    let s = start_cfg("slurm-telemetry", |c| {
        c.executor = ExecutorKind::Slurm;
        c.slurm_start_grace_s = 8;
        c.telemetry = Some(src);
    })
    .await;
    let t = Instant::now();
    let node2 = loop {
        let (_, v) = s.req("GET", "/v1/nodes", &s.admin, None).await;
        let n = v["nodes"].as_array().unwrap().iter().find(|n| n["node"] == "node2").unwrap().clone();
        if n["state"] != "in service" {
            break n;
        }
        assert!(t.elapsed() < Duration::from_secs(40), "node2 not drained: {v}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(node2["reason"].as_str().unwrap().starts_with("health detector: suspect on"), "{node2}");
    // Slurm shows it drained with fabrik's reason (the rules that fired); the others are not
    let info = sh("sinfo", &["-h", "-N", "-n", "node2", "-o", "%T|%E"]);
    assert!(info.starts_with("drain") && info.contains("fabrik: fabrik health: "), "{info}");
    for other in ["node1", "node3"] {
        let st = sh("sinfo", &["-h", "-N", "-n", other, "-o", "%T"]);
        assert!(!st.starts_with("drain"), "{other}: {st}");
    }
    // Slurm's report of the drain (its node poll runs every 2 s) is fabrik's own drain seen
    // back: the reason stays the detector's evidence
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, v) = s.req("GET", "/v1/nodes", &s.admin, None).await;
    let n = v["nodes"].as_array().unwrap().iter().find(|n| n["node"] == "node2").unwrap();
    assert_eq!(n["reason"], node2["reason"], "{n}");
    let (st, _) = s.req("POST", "/v1/nodes/node2/resume", &s.admin, None).await;
    assert_eq!(st, StatusCode::OK);
    assert!(!sh("sinfo", &["-h", "-N", "-n", "node2", "-o", "%T"]).starts_with("drain"));
    exporter.abort();
    s.stop().await;
    // the node must not be drained again by this server: it is stopped; make sure Slurm agrees
    sh("scontrol", &["update", "NodeName=node2", "State=RESUME"]);
    drop(prom);
}

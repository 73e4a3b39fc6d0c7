//! Live predictive maintenance end to end: `fabrik telemetry serve` (a synthetic dcgm-exporter)
//! scraped by a real Prometheus server (Debian's `prometheus`), read by `fabrik serve
//! --telemetry`. Without a `prometheus` binary the tests print a notice and skip (and fail
//! under CI=true; `fabrik_server::test_support::prometheus`).

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_fabrik");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fabrik-telemetry-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A child process killed when the test ends, however it ends.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) -> Duration {
    let t = Instant::now();
    while !ok() {
        assert!(t.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    t.elapsed()
}

fn exporter(dir: &Path, port: u16, args: &[&str]) -> Proc {
    let log = std::fs::File::create(dir.join(format!("exporter-{port}.log"))).unwrap();
    let c = Command::new(BIN)
        .args(["telemetry", "serve", "--facility", "small", "--listen", &format!("127.0.0.1:{port}"), "--step", "1s"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    wait_for("exporter up", Duration::from_secs(20), || {
        reqwest::blocking::get(format!("http://127.0.0.1:{port}/metrics")).is_ok_and(|r| r.status().is_success())
    });
    Proc(c)
}

struct Server {
    _p: Proc,
    port: u16,
    token: String,
}

impl Server {
    fn start(dir: &Path, name: &str, prom: u16, extra: &[&str]) -> Server {
        let data = dir.join(name);
        let o = Command::new(BIN).args(["admin", "init", "--data-dir"]).arg(&data).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let token = String::from_utf8(o.stdout).unwrap().trim().to_string();
        let port = free_port();
        let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
        let c = Command::new(BIN)
            .args(["serve", "--executor", "simulated", "--facility", "small", "--data-dir"])
            .arg(&data)
            .args(["--bind", &format!("127.0.0.1:{port}"), "--tick-ms", "50", "--kill-grace-s", "1"])
            .args(["--telemetry", &format!("prometheus=http://127.0.0.1:{prom}"), "--telemetry-interval", "1s"])
            .args(["--forecast-interval", "off"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let p = Proc(c);
        wait_for("server up", Duration::from_secs(20), || {
            reqwest::blocking::get(format!("http://127.0.0.1:{port}/healthz")).is_ok()
        });
        Server { _p: p, port, token }
    }

    fn get(&self, path: &str) -> Value {
        let r = reqwest::blocking::Client::new()
            .get(format!("http://127.0.0.1:{}{path}", self.port))
            .bearer_auth(&self.token)
            .send()
            .unwrap();
        if path == "/metrics" || path == "/healthz" {
            Value::String(r.text().unwrap())
        } else {
            r.json().unwrap()
        }
    }

    fn submit(&self, n: usize) -> Vec<i64> {
        let c = reqwest::blocking::Client::new();
        (0..n)
            .map(|_| {
                let v: Value = c
                    .post(format!("http://127.0.0.1:{}/v1/jobs", self.port))
                    .bearer_auth(&self.token)
                    .json(&json!({"command": ["train"], "gpus": 8, "walltime": "2h", "account": "eval", "simulated_runtime": "1h"}))
                    .send()
                    .unwrap()
                    .json()
                    .unwrap();
                v["id"].as_i64().unwrap_or_else(|| panic!("{v}"))
            })
            .collect()
    }

    fn nodes(&self) -> Value {
        self.get("/v1/nodes")
    }
}

fn states(nodes: &Value) -> Vec<String> {
    nodes["nodes"].as_array().unwrap().iter().map(|n| n["state"].as_str().unwrap().to_string()).collect()
}

fn out_of_service(nodes: &Value) -> usize {
    states(nodes).iter().filter(|s| *s != "in service").count()
}

#[test]
fn a_precursor_drains_its_node_moves_its_job_and_stale_or_missing_telemetry_decides_nothing() {
    let dir = temp_dir("loop");
    // small: 16 nodes × 8 GPUs; node3's GPU 0 starts failing 15 s after the exporter starts
    let ep = free_port();
    let mut exp = Some(exporter(&dir, ep, &["--precursor", "node3@15s"]));
    let injected_at = Instant::now() + Duration::from_secs(15);
    let Some(prom) = fabrik_server::test_support::prometheus(&dir, &format!("127.0.0.1:{ep}")) else { return };
    let pp = prom.port;
    let mut prom = Some(prom);
    // a drained node comes back by itself 20 s after its drain
    let s = Server::start(&dir, "serve", pp, &["--health-repair", "20s"]);
    // 15 jobs of 8 GPUs fill nodes 0–14; node 15 stays free for the job that will move
    let ids = s.submit(15);
    wait_for("15 jobs running", Duration::from_secs(10), || {
        s.get("/v1/jobs?state=running")["jobs"].as_array().is_some_and(|a| a.len() == 15)
    });
    let on3 = s.nodes()["nodes"][3]["jobs"].as_array().unwrap().clone();
    assert_eq!(on3.len(), 1, "one job on node3");
    let moved = on3[0].as_i64().unwrap();
    assert!(ids.contains(&moved));
    // nothing is drained on healthy noise before the precursor starts
    wait_for("telemetry ok", Duration::from_secs(20), || s.nodes()["telemetry"]["state"] == "ok");
    while Instant::now() < injected_at {
        assert_eq!(out_of_service(&s.nodes()), 0, "a healthy node was drained: {}", s.nodes());
        std::thread::sleep(Duration::from_millis(300));
    }
    // full strength at once: the ECC EWMA passes its limit after 2 samples and the temperature
    // CUSUM (+4 per sample) after 3; with a scrape and a poll each second and Prometheus'
    // own lag, within 15 s
    let took = wait_for("node3 drained", Duration::from_secs(30), || s.nodes()["nodes"][3]["state"] != "in service");
    eprintln!("node3 drained {:.1} s after its precursor started", took.as_secs_f64());
    assert!(took <= Duration::from_secs(15), "drained only after {took:?}");
    let n = s.nodes();
    let node3 = &n["nodes"][3];
    let reason = node3["reason"].as_str().unwrap();
    assert!(reason.starts_with("health detector: suspect on "), "{reason}");
    assert!(reason.contains("(fires)"), "the evidence names the rule that fired: {reason}");
    assert_eq!(node3["health"]["suspect"], true);
    assert!(node3["health"]["drained_at"].is_u64());
    assert_eq!(out_of_service(&n), 1, "only node3 leaves service: {n}");
    // its job got the checkpoint signal, went back to the queue and runs again on node 15
    wait_for("the moved job runs on node15", Duration::from_secs(20), || {
        s.get(&format!("/v1/jobs/{moved}"))["allocation"]["parts"][0][0] == 15
    });
    let j = s.get(&format!("/v1/jobs/{moved}"));
    assert_eq!(j["state"], "running", "{j}");
    assert!(j["reason"].as_str().unwrap().starts_with("moved off node3 at "), "{j}");
    // the dashboard lists it with the evidence
    let dash = s.get("/v1/dashboard");
    let shown = dash["problem_nodes"].as_array().unwrap();
    assert_eq!(shown.len(), 1, "{dash}");
    assert_eq!((shown[0]["node"].as_str(), shown[0]["reason"].as_str()), (Some("node3"), Some(reason)));
    assert_eq!(dash["telemetry"]["drained_by_detector"], 1);
    let m = s.get("/metrics");
    let m = m.as_str().unwrap();
    assert!(m.contains("fabrik_health_drains_total{signal=\"ecc\"} 1"), "{m}");
    assert!(m.contains("fabrik_telemetry_up 1"));
    // the exporter dies: Prometheus still answers with its last values, which are stale
    drop(exp.take());
    wait_for("degraded on stale samples", Duration::from_secs(20), || s.nodes()["telemetry"]["state"] == "degraded");
    let t = s.nodes()["telemetry"].clone();
    assert!(t["reason"].as_str().unwrap().starts_with("no fresh telemetry"), "{t}");
    assert!(s.get("/healthz").as_str().unwrap().starts_with("ok; telemetry degraded"));
    // Prometheus stops too: degraded, unreachable; still only node3 out
    drop(prom.take());
    wait_for("degraded, unreachable", Duration::from_secs(20), || {
        s.nodes()["telemetry"]["reason"].as_str().is_some_and(|r| r.contains("unreachable"))
    });
    assert_eq!(out_of_service(&s.nodes()), 1);
    assert!(s.get("/metrics").as_str().unwrap().contains("fabrik_telemetry_up 0"));
    // its repair time is up: node3 returns by itself (while telemetry is down: a return is no
    // decision on telemetry), with its detector history forgotten
    let drained_at = s.nodes()["nodes"][3]["health"]["drained_at"].as_u64().unwrap();
    wait_for("node3 back after its repair time", Duration::from_secs(40), || out_of_service(&s.nodes()) == 0);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    assert!(now >= drained_at + 20, "back at {now}, drained at {drained_at}");
    let n = s.nodes();
    assert_eq!(n["nodes"][3]["health"]["suspect"], false, "its detector history is forgotten");
    assert!(s.get("/metrics").as_str().unwrap().contains("fabrik_health_returns_total 1"));
}

#[test]
fn health_flags_are_checked() {
    let dir = temp_dir("flags");
    let bad = dir.join("detector.toml");
    std::fs::write(&bad, "ecc_limit = 4.0\nvotes = 7\n").unwrap();
    let run = |args: &[&str]| {
        let o = Command::new(BIN)
            .args(["serve", "--executor", "simulated", "--facility", "small", "--data-dir"])
            .arg(dir.join("d"))
            .args(args)
            .output()
            .unwrap();
        assert!(!o.status.success(), "{args:?} was accepted");
        String::from_utf8_lossy(&o.stderr).to_string()
    };
    let e = run(&["--telemetry", "prometheus=http://127.0.0.1:9", "--health-config", bad.to_str().unwrap()]);
    assert!(e.contains("detector.toml") && e.contains("votes in 1..=3"), "{e}");
    std::fs::write(&bad, "ecc_limt = 4.0\n").unwrap();
    let e = run(&["--telemetry", "prometheus=http://127.0.0.1:9", "--health-config", bad.to_str().unwrap()]);
    assert!(e.contains("detector.toml") && e.contains("ecc_limt"), "{e}");
    let e = run(&["--health-dry-run"]);
    assert!(e.contains("need --telemetry"), "{e}");
    let e = run(&["--telemetry", "http://127.0.0.1:9090"]);
    assert!(e.contains("prometheus=URL"), "{e}");
    let e = run(&["--telemetry", "prometheus=http://127.0.0.1:9", "--drain-cap", "1.5"]);
    assert!(e.contains("--drain-cap"), "{e}");
}

#[test]
fn the_drain_cap_holds_when_every_node_looks_bad_and_a_dry_run_drains_nothing() {
    let dir = temp_dir("cap");
    let ep = free_port();
    // a bad exporter: every node's GPU 0 looks like it is failing, from 5 s on
    let _exp = exporter(&dir, ep, &["--precursor", "all@5s"]);
    let Some(prom) = fabrik_server::test_support::prometheus(&dir, &format!("127.0.0.1:{ep}")) else { return };
    let pp = prom.port;
    // 16 nodes at most 25% drained: 4; the second server only reports
    let capped = Server::start(&dir, "capped", pp, &["--drain-cap", "0.25"]);
    let dry = Server::start(&dir, "dry", pp, &["--health-dry-run"]);
    wait_for("every node suspect on the capped server", Duration::from_secs(40), || {
        capped.nodes()["nodes"].as_array().unwrap().iter().all(|n| n["health"]["suspect"] == true)
    });
    wait_for("the dry run sees every node suspect", Duration::from_secs(20), || {
        dry.nodes()["nodes"].as_array().unwrap().iter().all(|n| n["health"]["suspect"] == true)
    });
    // a few more polls: the cap still holds
    std::thread::sleep(Duration::from_secs(4));
    let n = capped.nodes();
    assert_eq!(out_of_service(&n), 4, "{n}");
    assert_eq!(
        (n["telemetry"]["drained_by_detector"].as_u64(), n["telemetry"]["drain_cap"].as_u64()),
        (Some(4), Some(4))
    );
    // every node left in service that the detector suspects right now is held back by the cap
    // (a node's verdict may flap back to healthy for a poll that saw no new increments)
    let in_service: Vec<&Value> =
        n["nodes"].as_array().unwrap().iter().filter(|x| x["state"] == "in service").collect();
    assert_eq!(in_service.len(), 12);
    let suspects: Vec<&Value> = in_service.iter().copied().filter(|x| x["health"]["suspect"] == true).collect();
    assert!(!suspects.is_empty(), "{n}");
    for x in &suspects {
        let h = x["health"]["held_back"].as_str().unwrap_or("");
        assert!(h.starts_with("drain cap: 4 of 16"), "{x}");
    }
    // each of the 12 held back at least once (again if its verdict flapped back to healthy)
    let m = capped.get("/metrics");
    let line = m
        .as_str()
        .unwrap()
        .lines()
        .find(|l| l.starts_with("fabrik_health_drains_held_back_total{state=\"cap\"}"))
        .unwrap();
    assert!(line.rsplit(' ').next().unwrap().parse::<u64>().unwrap() >= 12, "{line}");
    let d = dry.nodes();
    assert_eq!(out_of_service(&d), 0, "{d}");
    let suspects: Vec<&Value> =
        d["nodes"].as_array().unwrap().iter().filter(|x| x["health"]["suspect"] == true).collect();
    assert!(!suspects.is_empty(), "{d}");
    assert!(suspects.iter().all(|x| x["health"]["held_back"] == "dry run"), "{d}");
    assert_eq!(d["telemetry"]["dry_run"], true);
}

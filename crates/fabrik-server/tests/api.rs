//! The control plane end to end on a loopback port with the local executor: real processes,
//! exit codes, logs, cancel, walltime kill, tenants kept apart, and bad requests.

mod common;
use common::*;
use fabrik_server::engine::EngineConfig;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_commands_run_with_exit_codes_logs_cancel_and_walltime() {
    let s = start("run", 4).await;
    let ok = s.submit(&s.alice, json!({"command": ["sh", "-c", "echo out $CUDA_VISIBLE_DEVICES $FABRIK_POWER_FRACTION; echo err >&2"], "gpus": 2, "walltime": "1m"})).await;
    let bad = s.submit(&s.alice, json!({"command": ["sh", "-c", "exit 7"], "gpus": 1, "walltime": 60})).await;
    let v = s.wait_state(ok, &s.alice, "completed").await;
    assert_eq!(v["exit_code"], 0);
    let v = s.wait_state(bad, &s.alice, "failed").await;
    assert_eq!(v["exit_code"], 7);
    assert_eq!(v["reason"], "exit code 7");
    let (st, out) = s.req("GET", &format!("/v1/jobs/{ok}/logs"), &s.alice, None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(out, Value::String("out 0,1 1.000\n".into()));
    let (_, err) = s.req("GET", &format!("/v1/jobs/{ok}/logs?stream=stderr"), &s.alice, None).await;
    assert_eq!(err, Value::String("err\n".into()));
    // cancel a running job: SIGTERM to its process group
    let long = s.submit(&s.alice, json!({"command": ["sleep", "30"], "gpus": 1, "walltime": "1h"})).await;
    s.wait_state(long, &s.alice, "running").await;
    let (st, _) = s.req("POST", &format!("/v1/jobs/{long}/cancel"), &s.alice, None).await;
    assert_eq!(st, StatusCode::OK);
    let v = s.wait_state(long, &s.alice, "cancelled").await;
    assert_eq!(v["signal"], 15);
    let (st, _) = s.req("POST", &format!("/v1/jobs/{long}/cancel"), &s.alice, None).await;
    assert_eq!(st, StatusCode::CONFLICT);
    // walltime: killed after 1 s, SIGKILL 1 s later if it ignores SIGTERM
    let stubborn =
        s.submit(&s.alice, json!({"command": ["sh", "-c", "trap '' TERM; sleep 30"], "gpus": 1, "walltime": 1})).await;
    let v = s.wait_state(stubborn, &s.alice, "timeout").await;
    assert_eq!(v["reason"], "killed at its walltime");
    // a pending job explains itself and cancels cleanly
    let big = s.submit(&s.alice, json!({"command": ["sleep", "5"], "gpus": 4, "walltime": 10})).await;
    let blocked = s.submit(&s.alice, json!({"command": ["true"], "gpus": 4, "walltime": 10})).await;
    s.wait_state(big, &s.alice, "running").await;
    let (_, why) = s.req("GET", &format!("/v1/jobs/{blocked}/why"), &s.alice, None).await;
    assert!(why["reasons"][0].as_str().unwrap().starts_with("queue head; GPUs reserved"), "{why}");
    let (_, v) = s.req("POST", &format!("/v1/jobs/{blocked}/cancel"), &s.alice, None).await;
    assert_eq!(v["state"], "cancelled");
    let (_, m) = s.req("GET", "/metrics", &s.alice, None).await;
    let m = m.as_str().unwrap().to_string();
    for family in [
        "fabrik_jobs{state=\"completed\"} 1",
        "fabrik_gpus{state=\"allocated\"}",
        "fabrik_queue_length{",
        "fabrik_scheduling_pass_seconds_count",
        "fabrik_api_request_seconds_count",
        "fabrik_it_power_watts",
        // ends as counters, by state: exit 7, the walltime kill, the two cancels
        "fabrik_jobs_ended_total{state=\"failed\"} 1",
        "fabrik_jobs_ended_total{state=\"timeout\"} 1",
        "fabrik_jobs_ended_total{state=\"cancelled\"} 2",
        "fabrik_queue_wait_seconds_count",
        "fabrik_account_gpus{account=\"research/open-llm/eval\"}",
        "fabrik_facility_power_watts",
        "fabrik_power_cap_watts 0",
        "fabrik_build_info{version=\"0.1.0\"} 1",
    ] {
        assert!(m.contains(family), "metrics lack {family}");
    }
    // live energy accounting with the shared power model: every run of alice's account at
    // 969 W per GPU (H100 at 76% of 1,275 W with its host share), PUE 1.25, 384 gCO2/kWh (DE)
    s.wait_state(big, &s.alice, "completed").await;
    let (_, jobs) = s.req("GET", "/v1/jobs?account=research/open-llm/eval", &s.alice, None).await;
    let expect: f64 = jobs["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["start_time"].is_u64())
        .map(|j| {
            let secs = j["end_time"].as_u64().unwrap() - j["start_time"].as_u64().unwrap();
            j["gpus"].as_f64().unwrap() * 969.0 * secs as f64 / 3.6e6
        })
        .sum();
    assert!(expect > 0.0, "{jobs}");
    let (_, acc) = s.req("GET", "/v1/accounts", &s.alice, None).await;
    let eval = acc["accounts"].as_array().unwrap().iter().find(|a| a["account"] == "research/open-llm/eval").unwrap();
    assert!((eval["it_kwh"].as_f64().unwrap() - expect).abs() < 1e-9, "{eval} vs {expect}");
    assert!((eval["emissions_kg"].as_f64().unwrap() - expect * 1.25 * 0.384).abs() < 1e-9);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_cannot_see_or_touch_each_others_jobs() {
    let s = start("tenants", 4).await;
    let a = s.submit(&s.alice, json!({"command": ["sleep", "3"], "gpus": 1, "walltime": 60})).await;
    let b = s.submit(&s.bob, json!({"command": ["true"], "gpus": 1, "walltime": 60})).await;
    for (method, path) in [
        ("GET", format!("/v1/jobs/{a}")),
        ("POST", format!("/v1/jobs/{a}/cancel")),
        ("GET", format!("/v1/jobs/{a}/logs")),
        ("GET", format!("/v1/jobs/{a}/why")),
    ] {
        let (st, v) = s.req(method, &path, &s.bob, None).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{method} {path}: {v}");
        assert_eq!(v["error"], format!("job {a} not found"));
    }
    let (_, list) = s.req("GET", "/v1/jobs", &s.bob, None).await;
    let ids: Vec<i64> = list["jobs"].as_array().unwrap().iter().map(|j| j["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, vec![b]);
    let (st, v) = s
        .req(
            "POST",
            "/v1/jobs",
            &s.bob,
            Some(json!({"command": ["true"], "gpus": 1, "walltime": 60, "account": "research/open-llm/eval"})),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    // the manager of research/open-llm sees alice's job, not bob's; the admin sees both
    let (_, list) = s.req("GET", "/v1/jobs", &s.carol, None).await;
    assert_eq!(list["jobs"].as_array().unwrap().len(), 1);
    let (st, _) = s.req("GET", &format!("/v1/jobs/{b}"), &s.carol, None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (_, list) = s.req("GET", "/v1/jobs", &s.admin, None).await;
    assert_eq!(list["jobs"].as_array().unwrap().len(), 2);
    // accounts: bob sees his path, not research
    let (_, acc) = s.req("GET", "/v1/accounts", &s.bob, None).await;
    let names: Vec<&str> = acc["accounts"].as_array().unwrap().iter().map(|a| a["account"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["sme", "sme/startup-a", "sme/startup-a/llm"]);
    // tokens: users cannot mint; managers only inside their subtree; admins anywhere
    let (st, _) = s
        .req("POST", "/v1/tokens", &s.bob, Some(json!({"name": "x", "role": "user", "account": "sme/startup-a/llm"})))
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = s
        .req("POST", "/v1/tokens", &s.carol, Some(json!({"name": "x", "role": "user", "account": "sme/startup-a/llm"})))
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, v) = s
        .req(
            "POST",
            "/v1/tokens",
            &s.carol,
            Some(json!({"name": "dave", "role": "user", "account": "research/open-llm/pretrain"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let dave = v["token"].as_str().unwrap().to_string();
    let (_, me) = s.req("GET", "/v1/whoami", &dave, None).await;
    assert_eq!(me["account"], "research/open-llm/pretrain");
    // admins create accounts; the new project takes jobs at once
    let (st, v) =
        s.req("POST", "/v1/accounts", &s.admin, Some(json!({"path": "public/new-agency/pilot", "shares": 2}))).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (st, _) = s.req("POST", "/v1/accounts", &s.alice, Some(json!({"path": "x/y/z", "shares": 1}))).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    s.submit(&s.admin, json!({"command": ["true"], "gpus": 1, "walltime": 60, "account": "public/new-agency/pilot"}))
        .await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_requests_get_4xx() {
    let s = start("bad", 2).await;
    let url = format!("{}/v1/jobs", s.base);
    let raw = |body: String| {
        s.http.post(&url).bearer_auth(&s.alice).header("content-type", "application/json").body(body).send()
    };
    assert_eq!(raw("{not json".into()).await.unwrap().status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        raw(json!({"command": ["x"], "gpus": 1, "walltime": 1, "colour": "red"}).to_string()).await.unwrap().status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        raw(json!({"command": ["x"], "gpus": -1, "walltime": 1}).to_string()).await.unwrap().status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let huge = json!({"command": ["x".repeat(100_000)], "gpus": 1, "walltime": 1}).to_string();
    assert_eq!(raw(huge).await.unwrap().status(), StatusCode::PAYLOAD_TOO_LARGE);
    let cases = [
        (json!({"command": [], "gpus": 1, "walltime": 1}), "command: must not be empty"),
        (json!({"command": ["x"], "gpus": 0, "walltime": 1}), "gpus: must be at least 1"),
        (
            json!({"command": ["x"], "gpus": 3, "walltime": 1}),
            "gpus: 3 is more than the facility holds in one pool (2)",
        ),
        (
            json!({"command": ["x"], "gpus": 1, "walltime": 1, "gpu_type": "A100"}),
            "gpu_type: the facility has no A100 GPUs (it has H100)",
        ),
        (
            json!({"command": ["x"], "gpus": 1, "walltime": "soon"}),
            "walltime: 'soon' is not a duration (e.g. 3600, 90s, 45m, 1h 30m, 1.5d, 2-12:00:00, 30:00)",
        ),
        (
            json!({"command": ["x"], "gpus": 1, "walltime": 0}),
            "walltime: 0 s is not between 1 s and 31622400 s (366 days)",
        ),
        // 2^64 - 1 s once wrapped and killed the job at its start second
        (
            json!({"command": ["x"], "gpus": 1, "walltime": u64::MAX}),
            "walltime: 18446744073709551615 s is not between 1 s and 31622400 s (366 days)",
        ),
        (
            json!({"command": ["x"], "gpus": 1, "walltime": "1e308d"}),
            "walltime: 18446744073709551615 s is not between 1 s and 31622400 s (366 days)",
        ),
        (
            json!({"command": ["x"], "gpus": 1, "walltime": 60, "checkpoint_interval": "400d"}),
            "checkpoint_interval: 34560000 s is not between 1 s and 31622400 s (366 days)",
        ),
        (
            json!({"command": ["x"], "gpus": 1, "walltime": 60, "deadline": 9_223_372_036_854_775_808u64}),
            "deadline: 9223372036854775808 is more than 10 years ahead (Unix seconds or a date expected)",
        ),
        (
            json!({"command": ["x"], "gpus": 1, "walltime": 60, "earliest_start": u64::MAX}),
            "earliest_start: 18446744073709551615 is more than 10 years ahead (Unix seconds or a date expected)",
        ),
        (
            json!({"command": ["x"], "gpus": 1, "walltime": 60, "qos": ""}),
            "qos: must not be empty (leave it out for the default)",
        ),
        (
            json!({"command": ["x"], "gpus": 1, "walltime": 60, "name": " "}),
            "name: must not be empty (leave it out for the default)",
        ),
        (
            json!({"command": ["x"], "gpus": 1, "walltime": 60, "account": ""}),
            "account: must not be empty (leave it out for the default)",
        ),
        (
            json!({"command": ["x"], "gpus": 1, "walltime": 60, "gpu_type": ""}),
            "gpu_type: must not be empty (leave it out for the default)",
        ),
        (json!({"command": ["x\u{0}y"], "gpus": 1, "walltime": 60}), "command: arguments must not contain NUL bytes"),
        (
            json!({"command": ["x"], "gpus": 1, "walltime": 1, "qos": "urgent"}),
            "qos: unknown QoS 'urgent' (expected high, normal or low)",
        ),
        (json!({"command": ["x"], "gpus": 1, "walltime": 1, "account": "nobody"}), "account: unknown account 'nobody'"),
        (json!({"command": ["x"], "gpus": 1, "walltime": 1, "gpu_type": "Z9"}), "gpu_type: unknown GPU type 'Z9'"),
    ];
    for (body, msg) in cases {
        let (st, v) = s.req("POST", "/v1/jobs", &s.alice, Some(body)).await;
        assert_eq!((st, v["error"].as_str().unwrap()), (StatusCode::BAD_REQUEST, msg));
    }
    let (st, v) = s.req("GET", "/v1/jobs", "fbk_not_a_token", None).await;
    assert_eq!((st, v["error"].as_str().unwrap()), (StatusCode::UNAUTHORIZED, "unknown, revoked or expired token"));
    let st = s.http.get(&url).send().await.unwrap().status();
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _) = s.req("GET", "/v1/jobs/abc", &s.alice, None).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = s.req("GET", "/v1/jobs/999", &s.alice, None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = s.req("GET", "/v1/jobs?state=sleeping", &s.alice, None).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = s.req("GET", "/v1/jobs?colour=red", &s.alice, None).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = s.req("GET", "/v1/nothing", &s.alice, None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, doc) = s.req("GET", "/openapi.json", &s.alice, None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/v1/jobs/{id}/why"]["get"].is_object());
    assert!(
        doc["paths"]["/v1/nodes"]["get"].is_object() && doc["paths"]["/v1/nodes/{node}/resume"]["post"].is_object()
    );
    // the server still works after all that
    let id = s.submit(&s.alice, json!({"command": ["true"], "gpus": 1, "walltime": 5})).await;
    s.wait_state(id, &s.alice, "completed").await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_power_cap_holds_back_what_would_exceed_it() {
    // 4 virtual H100: idle IT 4 × (357.5 + 50) = 1,630 W; a 2-GPU job adds 2 × 611.5 = 1,223 W
    // (978.4 W at the 80% limit normal QoS allows). A 4 kW cap at PUE 1.25 leaves 3,200 W of IT
    // power: one 2-GPU job runs, a second waits although 2 GPUs are free.
    let cfg = EngineConfig {
        tick: Duration::from_millis(50),
        kill_grace_s: 1,
        power_cap_mw: Some(0.004),
        ..EngineConfig::default()
    };
    let s = start_with("cap", 4, cfg).await;
    let a = s.submit(&s.alice, json!({"command": ["sleep", "30"], "gpus": 2, "walltime": "1m"})).await;
    s.wait_state(a, &s.alice, "running").await;
    let b = s.submit(&s.alice, json!({"command": ["true"], "gpus": 2, "walltime": "1m"})).await;
    let t = Instant::now();
    let why = loop {
        let (_, why) = s.req("GET", &format!("/v1/jobs/{b}/why"), &s.alice, None).await;
        if why["reasons"][0].as_str().is_some_and(|r| r.starts_with("facility power cap")) {
            break why;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "{why}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(why["reasons"][0], "facility power cap 4.0 kW: 3.6 kW drawn, the job adds 1.2 kW", "{why}");
    let (_, d) = s.req("GET", "/v1/dashboard", &s.admin, None).await;
    assert_eq!(d["facility"]["power_cap_w"], 4000.0, "{d}");
    // (1,630 + 1,223) W × 1.25
    assert!((d["facility"]["facility_power_w"].as_f64().unwrap() - 3_566.25).abs() < 1e-6, "{d}");
    s.req("POST", &format!("/v1/jobs/{a}/cancel"), &s.alice, None).await;
    s.wait_state(b, &s.alice, "completed").await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_modifier_defers_flexible_jobs_only() {
    // A signal, indexed by Unix hour, that is dirty now and in the next hour and clean
    // otherwise: a job with a deadline a day away is held back; one without starts at once.
    let now_h = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() / 3600;
    let values = (0..24u64).map(|k| if k == now_h % 24 || k == (now_h + 1) % 24 { 1000.0 } else { 1.0 }).collect();
    let m = fabrik_sched::EnergyAware::new(
        fabrik_model::grid::Hourly { values },
        24,
        0.05,
        fabrik_model::Secs(3600),
        fabrik_sched::DeferMode::Queue,
    );
    let cfg = EngineConfig {
        tick: Duration::from_millis(50),
        kill_grace_s: 1,
        energy_aware: Some(m),
        ..EngineConfig::default()
    };
    let s = start_with("aware", 4, cfg).await;
    let deadline = now_h * 3600 + 86_400;
    let flex =
        s.submit(&s.alice, json!({"command": ["true"], "gpus": 1, "walltime": "1h", "deadline": deadline})).await;
    let fixed = s.submit(&s.alice, json!({"command": ["true"], "gpus": 1, "walltime": "1h"})).await;
    s.wait_state(fixed, &s.alice, "completed").await;
    let t = Instant::now();
    loop {
        let (_, why) = s.req("GET", &format!("/v1/jobs/{flex}/why"), &s.alice, None).await;
        if why["reasons"][0].as_str().is_some_and(|r| r.starts_with("flexible: deferred to")) {
            assert_eq!(why["state"], "pending", "{why}");
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "{why}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (st, v) = s.req("POST", &format!("/v1/jobs/{flex}/cancel"), &s.alice, None).await;
    assert_eq!((st, v["state"].as_str()), (StatusCode::OK, Some("cancelled")), "{v}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_twin_forked_from_a_snapshot_starts_jobs_when_the_server_does() {
    // The simulated executor on tiny (16 GPUs) at 200 virtual seconds per second: r (16 GPUs,
    // runs 1,200 s) is running; q1 (8 GPUs, 600 s), q2 (16, 300 s) and q3 (8, walltime 30 min,
    // 300 s) queue behind it. A user may not take a snapshot; the admin's, continued in the
    // twin, starts every queued job in the server's order and, at the server's tick of 10
    // virtual seconds, at its time (within 60 s of virtual time).
    let f = fabrik_model::Facility::preset("tiny").unwrap();
    let s = start_cfg("fork", |c| {
        c.executor = fabrik_server::ExecutorKind::Simulated;
        c.facility = Some(f.clone());
        c.engine.time_scale = 200.0;
    })
    .await;
    let job = |gpus: u32, wall: &str, run: &str| json!({"command": ["x"], "gpus": gpus, "walltime": wall, "simulated_runtime": run});
    let r = s.submit(&s.alice, job(16, "1h", "1200s")).await;
    s.wait_state(r, &s.alice, "running").await;
    let q = [
        s.submit(&s.alice, job(8, "1h", "600s")).await,
        s.submit(&s.alice, job(16, "1h", "300s")).await,
        s.submit(&s.alice, job(8, "30m", "300s")).await,
    ];
    let (st, _) = s.req("GET", "/v1/snapshot", &s.alice, None).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, v) = s.req("GET", "/v1/snapshot", &s.admin, None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let snap: fabrik_sched::Snapshot = serde_json::from_value(v).unwrap();
    assert_eq!((snap.running.len(), snap.queued.len()), (1, 3));
    assert_eq!(snap.running[0].key, Some(r));
    assert_eq!(snap.running[0].runtime_s, Some(1200));
    let keys: Vec<Option<i64>> = snap.queued.iter().map(|j| j.key).collect();
    assert_eq!(keys, q.map(Some).to_vec());
    // the twin's starts, in Unix seconds, by server id
    let (w, fk) = fabrik_twin::fork::fork(&snap, &f, None).unwrap();
    let mut cfg = fabrik_twin::TwinConfig::new(&snap.policy, fabrik_sched::SchedConfig::default(), 1);
    cfg.keep_job_rows = true;
    let base = w.clock_origin.unwrap();
    let report = fabrik_twin::Twin::forked(&f, &w, cfg, fk).unwrap().run(|_| {}).unwrap();
    let twin: Vec<u64> = (0..3).map(|k| report.jobs[1 + k].start_s + base).collect();
    let mut server = Vec::new();
    for id in q {
        let v = s.wait_state(id, &s.alice, "completed").await;
        server.push(v["start_time"].as_u64().unwrap());
    }
    let order = |t: &[u64]| {
        let mut k: Vec<usize> = (0..t.len()).collect();
        k.sort_by_key(|&i| (t[i], i));
        k
    };
    assert_eq!(order(&twin), order(&server), "twin {twin:?}, server {server:?}");
    for k in 0..3 {
        assert!(twin[k].abs_diff(server[k]) <= 60, "job {}: twin {} server {}", q[k], twin[k], server[k]);
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_jobs_get_start_forecasts_their_owners_may_see() {
    // tiny, simulated executor: r (16 GPUs, walltime 1 h) runs; alice's q1 (8 GPUs, 1 h) and
    // bob's q2 (16 GPUs, 1 h) wait. With only r's run so far (censored) as history every job is
    // forecast to run its walltime.
    // Under fair share bob's account (no usage yet) goes first: q2 starts when r's hour is up,
    // q1 an hour after that (failures off: every run agrees).
    let f = fabrik_model::Facility::preset("tiny").unwrap();
    let s = start_cfg("forecast", |c| {
        c.executor = fabrik_server::ExecutorKind::Simulated;
        c.facility = Some(f.clone());
        c.engine.forecast_interval = Some(Duration::from_millis(100));
        // no failures and no drawn arrivals: the starts are the queue's own (r, running, is all
        // the history)
        let config = fabrik_twin::forecast::ForecastConfig {
            runs: 4,
            failures: false,
            arrivals_horizon: Duration::ZERO,
            ..Default::default()
        };
        c.engine.twin = Some(std::sync::Arc::new(fabrik_twin::forecast::LiveTwin { config }));
    })
    .await;
    let job = |gpus: u32| json!({"command": ["x"], "gpus": gpus, "walltime": "1h", "simulated_runtime": "1h"});
    let r = s.submit(&s.alice, job(16)).await;
    let rv = s.wait_state(r, &s.alice, "running").await;
    let r_start = rv["start_time"].as_u64().unwrap();
    let q1 = s.submit(&s.alice, job(8)).await;
    let q2 = s.submit(&s.bob, job(16)).await;
    let t = Instant::now();
    let all = loop {
        let (st, v) = s.req("GET", "/v1/forecast", &s.admin, None).await;
        if st == StatusCode::OK && v["jobs"].as_array().is_some_and(|j| j.len() == 2) {
            break v;
        }
        assert!(t.elapsed() < Duration::from_secs(15), "{st} {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(all["runs"], 4, "{all}");
    let row = |v: &serde_json::Value, id: i64| v["jobs"].as_array().unwrap().iter().find(|j| j["id"] == id).cloned();
    let f1 = row(&all, q1).unwrap();
    let f2 = row(&all, q2).unwrap();
    assert_eq!(
        (f2["p50_start"].as_u64(), f2["p90_start"].as_u64()),
        (Some(r_start + 3600), Some(r_start + 3600)),
        "{all}"
    );
    assert_eq!(f1["p50_start"].as_u64(), Some(r_start + 7200), "{all}");
    assert!(f2["reason"].as_str().is_some_and(|r| r.starts_with("queue head")), "{f2}");
    // a tenant sees its own jobs only
    let (_, mine) = s.req("GET", "/v1/forecast", &s.alice, None).await;
    let ids: Vec<i64> = mine["jobs"].as_array().unwrap().iter().map(|j| j["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, vec![q1]);
    let (st, one) = s.req("GET", &format!("/v1/jobs/{q2}/forecast"), &s.bob, None).await;
    assert_eq!(st, StatusCode::OK, "{one}");
    assert_eq!(one["jobs"][0]["id"], q2);
    let (st, _) = s.req("GET", &format!("/v1/jobs/{q2}/forecast"), &s.alice, None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = s.req("GET", &format!("/v1/jobs/{r}/forecast"), &s.alice, None).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "a running job has no forecast");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whatifs_run_from_the_live_state_for_admins() {
    // tiny, simulated executor: one 16-GPU job runs, two wait. The what-if compares the
    // baseline (fair-share) with fifo and with one node drained, over the queue as it stands.
    let f = fabrik_model::Facility::preset("tiny").unwrap();
    let s = start_cfg("whatif", |c| {
        c.executor = fabrik_server::ExecutorKind::Simulated;
        c.facility = Some(f.clone());
        c.engine.twin = Some(std::sync::Arc::new(fabrik_twin::forecast::LiveTwin::default()));
    })
    .await;
    let job = |gpus: u32| json!({"command": ["x"], "gpus": gpus, "walltime": "1h", "simulated_runtime": "30m"});
    let r = s.submit(&s.alice, job(16)).await;
    s.wait_state(r, &s.alice, "running").await;
    s.submit(&s.alice, job(8)).await;
    s.submit(&s.bob, job(8)).await;
    let body = json!({"days": 0, "policies": ["fifo"], "drain": [1]});
    let (st, _) = s.req("POST", "/v1/whatif", &s.alice, Some(body.clone())).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, v) = s.req("POST", "/v1/whatif", &s.admin, Some(body)).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let names: Vec<&str> = v["rows"].as_array().unwrap().iter().map(|r| r["policy"].as_str().unwrap()).collect();
    // the drained node held half of r, which goes back to the queue and, needing 16 GPUs with 8
    // left in service, can never start: a note says so instead of a row
    assert_eq!(names, vec!["baseline (fair-share)", "policy=fifo (fifo)"]);
    let notes = v["notes"].as_array().unwrap();
    assert!(notes.iter().any(|n| n.as_str().is_some_and(|n| n.starts_with("drain 1: 1 jobs can never start"))), "{v}");
    for (bad, field) in
        [(json!({"days": 100}), "days"), (json!({"policies": ["nope"]}), "nope"), (json!({"bogus": 1}), "bogus")]
    {
        let (st, e) = s.req("POST", "/v1/whatif", &s.admin, Some(bad)).await;
        assert!(st == StatusCode::BAD_REQUEST || st == StatusCode::UNPROCESSABLE_ENTITY, "{st} {e}");
        assert!(e["error"].as_str().is_some_and(|m| m.contains(field)), "{e}");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn times_are_accepted_the_ways_people_write_them() {
    // walltime in Slurm's HH:MM:SS, a compound checkpoint interval, a deadline relative to now
    // and an earliest start as RFC 3339 with an offset; a time nobody can read is a 400 naming
    // its field.
    let s = start("times", 4).await;
    let (st, v) = s
        .req(
            "POST",
            "/v1/jobs",
            &s.alice,
            Some(json!({"command": ["true"], "gpus": 1, "walltime": "1:30:00", "checkpoint_interval": "1h 15m",
                        "deadline": "now+2h", "earliest_start": "2035-01-01T01:00:00+01:00"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["walltime_s"], 5400);
    assert_eq!(v["checkpoint_interval_s"], 4500);
    // 2035-01-01T00:00:00Z
    assert_eq!(v["earliest_start"], 2_051_222_400u64);
    let submit = v["submit_time"].as_u64().unwrap();
    let deadline = v["deadline"].as_u64().unwrap();
    assert!(deadline.abs_diff(submit + 7200) <= 1, "{v}");
    for (field, bad) in [("deadline", "tomorrow"), ("earliest_start", "2026-13-01"), ("walltime", "1-24:00:00")] {
        let mut body = json!({"command": ["true"], "gpus": 1, "walltime": "10m"});
        body[field] = json!(bad);
        let (st, e) = s.req("POST", "/v1/jobs", &s.alice, Some(body)).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{field}: {e}");
        assert!(e["error"].as_str().is_some_and(|m| m.starts_with(field)), "{e}");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_release_requeue_and_delete_as_scontrol_and_scancel_do() {
    let s = start("control", 4).await;
    // a 4-GPU job fills the host; a 1-GPU job waits behind it
    let big = s.submit(&s.alice, json!({"command": ["sleep", "30"], "gpus": 4, "walltime": "1h"})).await;
    s.wait_state(big, &s.alice, "running").await;
    let small = s.submit(&s.alice, json!({"command": ["true"], "gpus": 1, "walltime": 60})).await;
    // hold: out of the scheduler, shown as held with who held it
    let (st, v) = s.req("POST", &format!("/v1/jobs/{small}/hold"), &s.alice, None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!((v["state"].as_str(), v["reason"].as_str()), (Some("held"), Some("held by alice")));
    let (_, q) = s.req("GET", "/v1/jobs?state=HELD", &s.alice, None).await;
    assert_eq!(q["jobs"].as_array().unwrap().len(), 1, "states match case-insensitively: {q}");
    // only a pending job can be held, only a held one released, only a running one requeued
    let (st, _) = s.req("POST", &format!("/v1/jobs/{big}/hold"), &s.alice, None).await;
    assert_eq!(st, StatusCode::CONFLICT);
    let (st, _) = s.req("POST", &format!("/v1/jobs/{big}/release"), &s.alice, None).await;
    assert_eq!(st, StatusCode::CONFLICT);
    let (st, _) = s.req("POST", &format!("/v1/jobs/{small}/requeue"), &s.alice, None).await;
    assert_eq!(st, StatusCode::CONFLICT);
    // another tenant does not see it
    let (st, _) = s.req("POST", &format!("/v1/jobs/{small}/release"), &s.bob, None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // release: pending again; DELETE cancels it (scancel)
    let (_, v) = s.req("POST", &format!("/v1/jobs/{small}/release"), &s.alice, None).await;
    assert_eq!(v["state"], "pending", "{v}");
    let (st, v) = s.req("DELETE", &format!("/v1/jobs/{small}"), &s.alice, None).await;
    assert_eq!((st, v["state"].as_str()), (StatusCode::OK, Some("cancelled")), "{v}");
    // requeue a running job: SIGTERM, back in the queue when it exits, and it starts again
    let (_, first) = s.req("GET", &format!("/v1/jobs/{big}"), &s.alice, None).await;
    let (st, v) = s.req("POST", &format!("/v1/jobs/{big}/requeue"), &s.alice, None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(v["reason"].as_str().unwrap().starts_with("requeued by alice at "), "{v}");
    let t = Instant::now();
    let again = loop {
        let (_, v) = s.req("GET", &format!("/v1/jobs/{big}"), &s.alice, None).await;
        // a new process (the second may be the same)
        if v["state"] == "running" && v["pid"] != first["pid"] && v["pid"].is_u64() {
            break v;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "not restarted: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(again["reason"].as_str().unwrap().starts_with("requeued by alice"), "{again}");
    let (st, _) = s.req("DELETE", &format!("/v1/jobs/{big}"), &s.alice, None).await;
    assert_eq!(st, StatusCode::OK);
    s.wait_state(big, &s.alice, "cancelled").await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dependencies_wait_for_their_jobs_as_sbatch_s_do() {
    let s = start("deps", 4).await;
    let job = |cmd: &str, dep: Option<String>| {
        let mut b = json!({"command": ["sh", "-c", cmd], "gpus": 1, "walltime": 60});
        if let Some(d) = dep {
            b["dependency"] = json!(d);
        }
        b
    };
    // X holds all 4 GPUs for a second; A (behind it) sleeps, then fails; B waits for its
    // success, C for its failure, D for its end
    let x = s.submit(&s.alice, json!({"command": ["sleep", "1"], "gpus": 4, "walltime": 60})).await;
    s.wait_state(x, &s.alice, "running").await;
    let a = s.submit(&s.alice, job("sleep 1; exit 3", None)).await;
    let b = s.submit(&s.alice, job("true", Some(format!("afterok:{a}")))).await;
    let c = s.submit(&s.alice, job("true", Some(format!("afternotok:{a}")))).await;
    let d = s.submit(&s.alice, job("true", Some(format!("afterany:{a}")))).await;
    let (_, why) = s.req("GET", &format!("/v1/jobs/{b}/why"), &s.alice, None).await;
    assert_eq!(
        why["reasons"][0].as_str(),
        Some(format!("dependency: waits for job {a} to complete successfully (afterok)").as_str()),
        "{why}"
    );
    // a job with dependents cannot be held (they would wait on a job outside the queue)
    let (st, v) = s.req("POST", &format!("/v1/jobs/{a}/hold"), &s.alice, None).await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert!(v["error"].as_str().unwrap().starts_with(&format!("job {a} has dependent jobs ([{b}, {c}, {d}])")), "{v}");
    s.wait_state(a, &s.alice, "failed").await;
    s.wait_state(c, &s.alice, "completed").await;
    s.wait_state(d, &s.alice, "completed").await;
    // B never will: it stays pending, saying so
    let (_, why) = s.req("GET", &format!("/v1/jobs/{b}/why"), &s.alice, None).await;
    assert_eq!(
        why["reasons"][0].as_str(),
        Some(format!("dependency never satisfied: job {a} ended otherwise (afterok); cancel it").as_str()),
        "{why}"
    );
    // on an ended job: met at once (afterany), or never (afterok on a failed job)
    let e = s.submit(&s.alice, job("true", Some(format!("afterany:{a}")))).await;
    s.wait_state(e, &s.alice, "completed").await;
    let f = s.submit(&s.alice, job("true", Some(format!("afterok:{a}")))).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, v) = s.req("GET", &format!("/v1/jobs/{f}"), &s.alice, None).await;
    assert_eq!(
        (v["state"].as_str(), v["dependency"].as_str()),
        (Some("pending"), Some(format!("afterok:{a}").as_str()))
    );
    // bad dependencies name the field: unknown or invisible jobs, bad syntax
    let bobs = s.submit(&s.bob, json!({"command": ["true"], "gpus": 1, "walltime": 60})).await;
    for (dep, msg) in [
        ("afterok:999".to_string(), "dependency: job 999 not found".to_string()),
        (format!("afterok:{bobs}"), format!("dependency: job {bobs} not found")),
        ("afterok:x".to_string(), "dependency: 'x' is not a job id".to_string()),
        ("before:1".to_string(), "dependency 'before:1': unknown type 'before'".to_string()),
    ] {
        let (st, v) = s.req("POST", "/v1/jobs", &s.alice, Some(job("true", Some(dep.clone())))).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{dep}: {v}");
        assert!(v["error"].as_str().unwrap().starts_with(&msg), "{dep}: {v}");
    }
    // singleton: the second waits for the first of the same name and account
    let mut one = job("sleep 1", Some("singleton".into()));
    one["name"] = json!("nightly");
    let s1 = s.submit(&s.alice, one.clone()).await;
    let s2 = s.submit(&s.alice, one).await;
    s.wait_state(s1, &s.alice, "running").await;
    let (_, why) = s.req("GET", &format!("/v1/jobs/{s2}/why"), &s.alice, None).await;
    assert!(why["reasons"][0].as_str().unwrap().starts_with("singleton: job "), "{why}");
    s.wait_state(s2, &s.alice, "completed").await;
    let (_, v1) = s.req("GET", &format!("/v1/jobs/{s1}"), &s.alice, None).await;
    let (_, v2) = s.req("GET", &format!("/v1/jobs/{s2}"), &s.alice, None).await;
    assert!(v2["start_time"].as_u64() >= v1["end_time"].as_u64(), "{v1} {v2}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arrays_run_their_tasks_with_their_index_and_throttle() {
    // five tasks of 1 GPU on 4 GPUs, at most 2 at once (%2): never more than 2 run
    let s = start("array", 4).await;
    let (st, first) = s
        .req(
            "POST",
            "/v1/jobs",
            &s.alice,
            Some(json!({"command": ["sh", "-c", "echo task $SLURM_ARRAY_TASK_ID of $FABRIK_ARRAY_JOB_ID; sleep 1"],
                "gpus": 1, "walltime": 60, "array": "0-3,7%2", "name": "sweep"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{first}");
    let a = first["id"].as_i64().unwrap();
    assert_eq!((first["array_job_id"].as_i64(), first["array_task_id"].as_u64()), (Some(a), Some(0)));
    let ids: Vec<i64> = (a..a + 5).collect();
    let t = Instant::now();
    let mut most = 0;
    loop {
        let (_, v) = s.req("GET", "/v1/jobs?state=active", &s.alice, None).await;
        let running = v["jobs"].as_array().unwrap().iter().filter(|j| j["state"] == "running").count();
        most = most.max(running);
        if v["jobs"].as_array().unwrap().is_empty() {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "{v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(most, 2, "the throttle: at most 2 at once, and it reached 2");
    let mut outs = Vec::new();
    for (k, id) in ids.iter().enumerate() {
        let v = s.wait_state(*id, &s.alice, "completed").await;
        assert_eq!((v["array_job_id"].as_i64(), v["name"].as_str()), (Some(a), Some("sweep")));
        let (_, out) = s.req("GET", &format!("/v1/jobs/{id}/logs"), &s.alice, None).await;
        outs.push(out.as_str().unwrap().to_string());
        assert_eq!(v["array_task_id"].as_u64(), Some([0, 1, 2, 3, 7][k]));
    }
    assert_eq!(outs, [0, 1, 2, 3, 7].map(|t| format!("task {t} of {a}\n")));
    // cursor paging, newest first: pages of 2 of the 5 tasks, the last one short and final
    let page = |q: String| {
        let s = &s;
        async move {
            let (_, v) = s.req("GET", &format!("/v1/jobs?limit=2{q}"), &s.alice, None).await;
            let ids: Vec<i64> = v["jobs"].as_array().unwrap().iter().map(|j| j["id"].as_i64().unwrap()).collect();
            (ids, v["next"].as_i64())
        }
    };
    assert_eq!(page(String::new()).await, (vec![a + 4, a + 3], Some(a + 3)));
    assert_eq!(page(format!("&before={}", a + 3)).await, (vec![a + 2, a + 1], Some(a + 1)));
    assert_eq!(page(format!("&before={}", a + 1)).await, (vec![a], None));
    let (st, v) = s
        .req(
            "POST",
            "/v1/jobs",
            &s.alice,
            Some(json!({"command": ["true"], "gpus": 1, "walltime": 60, "array": "5-1"})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(v["error"].as_str().unwrap().contains("array '5-1': 5-1 runs backwards"), "{v}");
    s.stop().await;
}

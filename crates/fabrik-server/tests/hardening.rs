//! The attacks found against the live control plane, reproduced: each must fail now. Also the
//! bounds (connections, header and body timeouts, log reads), tokens (list, revoke, expiry),
//! store failures and crashes at each step of a job's start and end.

mod common;
use common::*;
use fabrik_server::engine::{CrashPoint, Faults};
use fabrik_server::test_support;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

async fn log(s: &Srv, id: i64, token: &str, stream: &str) -> String {
    let (st, v) = s.req("GET", &format!("/v1/jobs/{id}/logs?stream={stream}"), token, None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    match v {
        Value::String(t) => t,
        other => other.to_string(),
    }
}

/// Live processes whose command line names job `id`'s wrapper and that run in its directory
/// (other tests' servers have jobs of the same ids).
fn wrappers_of(s: &Srv, id: i64) -> usize {
    let marker = format!("fabrik-job-{id}");
    let dir = std::fs::canonicalize(fabrik_server::default_spool(&s.dir)).unwrap().join(id.to_string());
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.split(|&b| b == 0).any(|a| a == marker.as_bytes()))
                && std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|c| c == dir)
                && std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|st| st.rsplit(')').next().is_some_and(|r| !r.trim_start().starts_with('Z')))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_job_cannot_reach_the_database_other_logs_the_token_or_the_server() {
    if test_support::tenant_users().is_none() {
        test_support::skip("the isolation attacks need root (jobs run as two test users)");
        return;
    }
    // The server's own environment holds the admin token, as the README once suggested.
    std::env::set_var("FABRIK_TOKEN", "fbk_the_servers_own_token");
    let s = start("attack", 4).await;
    let b = s.submit(&s.bob, json!({"command": ["sh", "-c", "echo bob-secret"], "gpus": 1, "walltime": 60})).await;
    s.wait_state(b, &s.bob, "completed").await;
    let db = s.dir.join("fabrik.db");
    // Alice's job tries each attack of the report; every line it prints is a success.
    let attack = format!(
        "id -un; \
         sqlite3 {db} \"insert into tokens(name,hash,role,created) values('x','y','admin',0)\" 2>/dev/null && echo WROTE-DB; \
         cat {db} >/dev/null && echo READ-DB; \
         cat $FABRIK_JOB_DIR/../{b}/stdout && echo READ-BOB; \
         ls $FABRIK_JOB_DIR/.. && echo LISTED-SPOOL; \
         env | grep -q fbk_ && echo SAW-TOKEN; \
         kill -0 {server} && echo SIGNALLED-SERVER; \
         exit 0",
        db = db.display(),
        server = std::process::id(),
    );
    let a = s.submit(&s.alice, json!({"command": ["sh", "-c", attack], "gpus": 1, "walltime": 60})).await;
    s.wait_state(a, &s.alice, "completed").await;
    assert_eq!(log(&s, a, &s.alice, "stdout").await, "fabrik-ta\n", "an attack got through");
    let err = log(&s, a, &s.alice, "stderr").await;
    assert!(err.contains("Permission denied") && err.contains("Operation not permitted"), "{err}");
    // Bob's log is still his alone, and the database holds no token the job made.
    assert_eq!(log(&s, b, &s.bob, "stdout").await, "bob-secret\n");
    let (st, _) = s.req("GET", "/v1/jobs", "y", None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    // An account that maps to no Unix user is refused at submission, with the reason.
    let (st, v) = s
        .req(
            "POST",
            "/v1/jobs",
            &s.admin,
            Some(json!({"command": ["true"], "gpus": 1, "walltime": 60, "account": "industry/auto-ag/driving"})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(
        v["error"],
        "account: account 'industry/auto-ag/driving' maps to no Unix user ([[run_as]] in the facility file)"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_listed_revoked_at_once_and_expire() {
    let s = start_cfg("tokens", |c| c.metrics_token = true).await;
    let (st, v) = s
        .req(
            "POST",
            "/v1/tokens",
            &s.carol,
            Some(json!({"name": "ci", "role": "user", "account": "research/open-llm/eval", "expires_in": 2})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let short = v["token"].as_str().unwrap().to_string();
    // the manager lists the tokens of its subtree: alice's, its own and the new one
    let (_, v) = s.req("GET", "/v1/tokens", &s.carol, None).await;
    let names: Vec<&str> = v["tokens"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["alice", "carol", "ci"]);
    assert!(v.to_string().find("fbk_").is_none(), "secrets are never listed: {v}");
    let (st, _) = s.req("GET", "/v1/tokens", &s.alice, None).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (_, v) = s.req("GET", "/v1/tokens", &s.admin, None).await;
    let tokens = v["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 5);
    let bob_id = tokens.iter().find(|t| t["name"] == "bob").unwrap()["id"].as_i64().unwrap();
    // a manager cannot revoke outside its subtree; the admin can, and it holds at once
    let (st, _) = s.req("POST", &format!("/v1/tokens/{bob_id}/revoke"), &s.carol, None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = s.req("GET", "/v1/whoami", &s.bob, None).await;
    assert_eq!(st, StatusCode::OK);
    let (st, v) = s.req("POST", &format!("/v1/tokens/{bob_id}/revoke"), &s.admin, None).await;
    assert_eq!((st, v["revoked"].as_bool()), (StatusCode::OK, Some(true)));
    let (st, v) = s.req("GET", "/v1/whoami", &s.bob, None).await;
    assert_eq!((st, v["error"].as_str().unwrap()), (StatusCode::UNAUTHORIZED, "unknown, revoked or expired token"));
    // revocation straight in the store (as `fabrik admin token revoke` does) holds at once too
    let store = fabrik_server::open_store(&s.dir).unwrap();
    let carol_id = store.tokens().unwrap().iter().find(|t| t.name == "carol").unwrap().id;
    assert!(store.revoke_token(carol_id).unwrap());
    let (st, _) = s.req("GET", "/v1/whoami", &s.carol, None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    // expiry
    let (st, _) = s.req("GET", "/v1/whoami", &short, None).await;
    assert_eq!(st, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (st, _) = s.req("GET", "/v1/whoami", &short, None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    // bad expiries are refused by field
    let (st, v) =
        s.req("POST", "/v1/tokens", &s.admin, Some(json!({"name": "x", "role": "admin", "expires_in": 0}))).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(v["error"].as_str().unwrap().starts_with("expires_in: "), "{v}");
    // /metrics wants a token when told to
    let url = format!("{}/metrics", s.base);
    assert_eq!(s.http.get(&url).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let r = s.http.get(&url).bearer_auth(&s.alice).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("fabrik_store_healthy 1"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_reads_are_capped_and_streamed() {
    let s = start_cfg("logs", |c| c.limits.max_log_bytes = 1 << 20).await;
    // 3 MiB of numbered 16-byte lines
    let script = "i=0; while [ $i -lt 196608 ]; do printf '%015d\\n' $i; i=$((i+1)); done";
    let id = s.submit(&s.alice, json!({"command": ["sh", "-c", script], "gpus": 1, "walltime": 120})).await;
    s.wait_state(id, &s.alice, "completed").await;
    let url = format!("{}/v1/jobs/{id}/logs?tail=100000000", s.base);
    let body = s.http.get(&url).bearer_auth(&s.alice).send().await.unwrap().bytes().await.unwrap();
    // a tail of 100 MB is capped at 1 MiB: the last 65,536 lines, from line 131,072 on
    assert_eq!(body.len(), 1 << 20);
    assert_eq!(&body[..16], b"000000000131072\n");
    assert_eq!(&body[body.len() - 16..], b"000000000196607\n");
    let url = format!("{}/v1/jobs/{id}/logs?tail=32", s.base);
    let body = s.http.get(&url).bearer_auth(&s.alice).send().await.unwrap().text().await.unwrap();
    assert_eq!(body, "000000000196606\n000000000196607\n");
    s.stop().await;
}

/// Reads until the server closes the connection (Ok(true)) or `within` passes (Ok(false)).
fn closed_within(c: &mut std::net::TcpStream, within: Duration) -> bool {
    c.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 512];
    loop {
        match c.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // e.g. a 408 response before the close
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return false
            }
            Err(_) => return true, // reset
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_slow_and_excess_connections_are_closed() {
    let s = start_cfg("conns", |c| {
        c.limits.max_connections = 4;
        c.limits.header_timeout = Duration::from_millis(800);
        c.limits.body_timeout = Duration::from_millis(800);
    })
    .await;
    let addr = s.running.as_ref().unwrap().addr;
    let result = tokio::task::spawn_blocking(move || {
        let connect = || std::net::TcpStream::connect(addr).unwrap();
        // three idle connections and one slowloris that never finishes its headers
        let mut idle: Vec<_> = (0..3).map(|_| connect()).collect();
        let mut slow = connect();
        slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ").unwrap();
        std::thread::sleep(Duration::from_millis(200));
        // the fifth is over the limit: closed at once
        let mut fifth = connect();
        let over_limit_closed = closed_within(&mut fifth, Duration::from_millis(500));
        // the idle and the slow ones are closed after the header timeout
        let t = Instant::now();
        let slow_closed = closed_within(&mut slow, Duration::from_secs(3));
        let idle_closed = idle.iter_mut().all(|c| closed_within(c, Duration::from_secs(3)));
        let waited = t.elapsed();
        // a body that trickles: headers in time, the body never
        let mut trickle = connect();
        trickle
            .write_all(
                b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
            )
            .unwrap();
        trickle.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut resp = String::new();
        let _ = trickle.read_to_string(&mut resp);
        // and once they are gone, a normal request is served
        let mut ok = connect();
        ok.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut served = String::new();
        let _ = ok.read_to_string(&mut served);
        (over_limit_closed, slow_closed, idle_closed, waited, resp, served)
    })
    .await
    .unwrap();
    let (over_limit_closed, slow_closed, idle_closed, waited, resp, served) = result;
    assert!(over_limit_closed, "a connection over the limit was kept open");
    assert!(slow_closed, "a slowloris connection was kept open");
    assert!(idle_closed, "idle connections were kept open");
    assert!(waited < Duration::from_secs(3), "{waited:?}");
    assert!(resp.starts_with("HTTP/1.1 408"), "{resp}");
    assert!(served.starts_with("HTTP/1.1 200") && served.ends_with("ok"), "{served}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_store_starts_nothing_loses_nothing_and_is_reported() {
    let faults = Faults::default();
    let fail = faults.store_write_failures.clone();
    let s = start_cfg("storefail", |c| c.engine.faults = faults).await;
    let health = |s: &Srv| {
        let url = format!("{}/healthz", s.base);
        let http = s.http.clone();
        async move { http.get(url).send().await.unwrap().status() }
    };
    // A submission the store refuses is answered 500 and never appears.
    fail.store(1, Ordering::SeqCst);
    let (st, v) =
        s.req("POST", "/v1/jobs", &s.alice, Some(json!({"command": ["true"], "gpus": 1, "walltime": 60}))).await;
    assert_eq!(st, StatusCode::INTERNAL_SERVER_ERROR, "{v}");
    let (_, list) = s.req("GET", "/v1/jobs", &s.admin, None).await;
    assert_eq!(list["jobs"].as_array().unwrap().len(), 0);
    // A blocker holds all four GPUs; the next job waits for it.
    let blocker = s.submit(&s.alice, json!({"command": ["sleep", "30"], "gpus": 4, "walltime": 60})).await;
    s.wait_state(blocker, &s.alice, "running").await;
    let next = s.submit(&s.alice, json!({"command": ["sh", "-c", "echo ran"], "gpus": 4, "walltime": 60})).await;
    // The store now refuses every write: the blocker's end cannot be recorded, so its GPUs are
    // not handed on — the next job must not be spawned.
    fail.store(u32::MAX, Ordering::SeqCst);
    let (st, _) = s.req("POST", &format!("/v1/jobs/{blocker}/cancel"), &s.alice, None).await;
    assert_eq!(st, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(wrappers_of(&s, next), 0, "a job was spawned while the store refused writes");
    assert_eq!(health(&s).await, StatusCode::SERVICE_UNAVAILABLE);
    let (_, v) = s.req("GET", &format!("/v1/jobs/{next}"), &s.alice, None).await;
    assert_eq!(v["state"], "pending");
    let m = s.http.get(format!("{}/metrics", s.base)).send().await.unwrap().text().await.unwrap();
    assert!(m.contains("fabrik_store_healthy 0"), "{m}");
    // The store recovers: the end is recorded, then the next job runs, once.
    fail.store(0, Ordering::SeqCst);
    s.wait_state(next, &s.alice, "completed").await;
    assert_eq!(log(&s, next, &s.alice, "stdout").await, "ran\n");
    let (_, v) = s.req("GET", &format!("/v1/jobs/{blocker}"), &s.alice, None).await;
    assert_eq!(v["state"], "cancelled");
    assert_eq!(health(&s).await, StatusCode::OK);
    // What the store holds agrees (a restart sees the same).
    let s = s.restart(|c| c.engine.faults = Faults::default()).await;
    let (_, v) = s.req("GET", &format!("/v1/jobs/{next}"), &s.alice, None).await;
    assert_eq!(v["state"], "completed");
    s.stop().await;
}

/// Kills the engine at `point` while starting (or ending) one job, restarts, and checks the
/// job ran exactly once and ended exactly once.
async fn crash_at(name: &str, point: CrashPoint) {
    let faults = Faults { crash_at: Some(point), ..Faults::default() };
    let s = start_cfg(name, |c| c.engine.faults = faults).await;
    let runs = s.dir.with_extension("runs");
    std::fs::write(&runs, "").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&runs, std::fs::Permissions::from_mode(0o666)).unwrap();
    let script = format!("echo run >> {}; sleep 1", runs.display());
    let id = s.submit(&s.alice, json!({"command": ["sh", "-c", script], "gpus": 1, "walltime": 60})).await;
    // the engine dies at the point: the API then answers 503
    let t = Instant::now();
    loop {
        let (st, _) = s.req("GET", "/v1/jobs", &s.alice, None).await;
        if st == StatusCode::SERVICE_UNAVAILABLE {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "the engine did not reach {point:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let s = s.restart(|c| c.engine.faults = Faults::default()).await;
    let v = s.wait_state(id, &s.alice, "completed").await;
    assert_eq!(v["exit_code"], 0, "{v}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(std::fs::read_to_string(&runs).unwrap(), "run\n", "{point:?}: the job must run exactly once");
    assert_eq!(wrappers_of(&s, id), 0);
    let _ = std::fs::remove_file(&runs);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_the_starting_commit_starts_the_job_once_after_restart() {
    crash_at("crash-commit", CrashPoint::AfterStartingCommit).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_before_the_pid_is_recorded_readopts_the_running_job() {
    crash_at("crash-spawn", CrashPoint::AfterSpawn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_before_an_end_is_recorded_records_it_after_restart() {
    crash_at("crash-end", CrashPoint::BeforeEndCommit).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_numbers_stay_apart_when_domain_sizes_mix() {
    // One 4-GPU domain, then two 8-GPU domains: devices 0-3, 4-11 and 12-19.
    let text = "name = \"mixed\"\n\
        [[pool]]\ngpu = \"H100\"\ndomain_gpus = 4\ndomains_per_group = 1\ngroups = 1\n\
        [[pool]]\ngpu = \"H100\"\ndomain_gpus = 8\ndomains_per_group = 2\ngroups = 1\n";
    let f = fabrik_model::Facility::from_toml(text, "mixed.toml").unwrap();
    let s = start_cfg("mixed", |c| {
        c.executor = fabrik_server::ExecutorKind::Simulated;
        c.facility = Some(f);
    })
    .await;
    let job =
        |gpus: u32, runtime: u64| json!({"command": ["x"], "gpus": gpus, "walltime": 60, "simulated_runtime": runtime});
    let a = s.submit(&s.alice, job(8, 1)).await;
    let b = s.submit(&s.alice, job(8, 1)).await;
    let c = s.submit(&s.alice, job(4, 1)).await;
    let devices = |v: &Value| -> Vec<u64> {
        v["allocation"]["devices"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap()).collect()
    };
    let (_, va) = s.req("GET", &format!("/v1/jobs/{a}"), &s.alice, None).await;
    let (_, vb) = s.req("GET", &format!("/v1/jobs/{b}"), &s.alice, None).await;
    let (_, vc) = s.req("GET", &format!("/v1/jobs/{c}"), &s.alice, None).await;
    let mut all = [devices(&va), devices(&vb), devices(&vc)];
    all.sort();
    assert_eq!(all, [(0..4).collect::<Vec<u64>>(), (4..12).collect(), (12..20).collect()]);
    for id in [a, b, c] {
        s.wait_state(id, &s.alice, "completed").await;
    }
    // every slot was freed where it was taken: a 16-GPU gang gets both 8-GPU domains
    let d = s.submit(&s.alice, job(16, 1)).await;
    let (_, vd) = s.req("GET", &format!("/v1/jobs/{d}"), &s.alice, None).await;
    assert_eq!(devices(&vd), (4..20).collect::<Vec<u64>>());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_server_honours_advance_reservations() {
    // research holds all four GPUs of the host for an hour from the store's epoch
    let mut f = tenant_facility();
    let spec = fabrik_model::facility::FacilityFile {
        name: "t".into(),
        gpu: vec![],
        pool: vec![fabrik_model::facility::PoolSpec {
            gpu: "H100".into(),
            domain_gpus: 4,
            domains_per_group: 1,
            groups: 1,
            hall: None,
        }],
        account: vec![],
        reservation: vec![fabrik_model::facility::ReservationSpec {
            name: "block".into(),
            account: "research".into(),
            gpus: 4,
            gpu_type: None,
            group: None,
            start: "0s".into(),
            end: "1h".into(),
        }],
        run_as: vec![],
        nodes: vec![],
        slurm: None,
    };
    f.reservations = fabrik_model::Facility::from_file(&spec, "t.toml").unwrap().reservations;
    let s = start_cfg("resv", |c| c.facility = Some(f)).await;
    let sme = s.submit(&s.bob, json!({"command": ["true"], "gpus": 1, "walltime": 60})).await;
    let res = s.submit(&s.alice, json!({"command": ["true"], "gpus": 2, "walltime": 60})).await;
    s.wait_state(res, &s.alice, "completed").await;
    let (_, v) = s.req("GET", &format!("/v1/jobs/{sme}"), &s.bob, None).await;
    assert_eq!(v["state"], "pending", "{v}");
    let (_, why) = s.req("GET", &format!("/v1/jobs/{sme}/why"), &s.bob, None).await;
    assert!(why.to_string().contains("reserv"), "{why}");
    s.stop().await;
}

/// A bounded fuzz of the API: 600 requests with hostile bodies, paths and query strings, from
/// a seeded generator. None may get a 5xx, and the server must serve normally afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzzed_requests_never_get_a_server_error() {
    use rand::{Rng, SeedableRng};
    let s = start("fuzz", 4).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let values: Vec<Value> = vec![
        json!(null),
        json!(""),
        json!(" "),
        json!(-1),
        json!(0),
        json!(1),
        json!(1.5),
        json!(1e308),
        json!(u64::MAX),
        json!(i64::MIN),
        json!("1e308d"),
        json!("-5m"),
        json!("NaN"),
        json!("\u{0}"),
        json!("ä€😀"),
        json!([]),
        json!(["sh", "-c", "true"]),
        json!([1, 2]),
        json!({}),
        json!({"a": [[[[[]]]]]}),
        json!(true),
        json!("x".repeat(70_000)),
        json!("research/open-llm/eval"),
        json!("../../etc"),
        json!("admin"),
    ];
    let fields = [
        "name",
        "command",
        "gpus",
        "walltime",
        "account",
        "gpu_type",
        "qos",
        "preemptible",
        "checkpoint_interval",
        "earliest_start",
        "deadline",
        "simulated_runtime",
        "role",
        "path",
        "shares",
        "expires_in",
        "unknown",
    ];
    let posts = ["/v1/jobs", "/v1/accounts", "/v1/tokens", "/v1/jobs/1/cancel", "/v1/tokens/1/revoke"];
    let gets = [
        "/v1/jobs?limit=18446744073709551616",
        "/v1/jobs?state=%00",
        "/v1/jobs?account=..%2F..",
        "/v1/jobs/-1",
        "/v1/jobs/99999999999999999999",
        "/v1/jobs/1/logs?tail=18446744073709551615",
        "/v1/jobs/1/logs?stream=../../fabrik.db",
        "/v1/jobs/1/logs?tail=-1",
        "/v1/jobs/1/why",
        "/v1/facility",
        "/v1/dashboard",
        "/v1/tokens",
        "/v1/accounts",
        "/%2e%2e/%2e%2e/etc/passwd",
    ];
    let tokens = [s.admin.clone(), s.alice.clone(), s.carol.clone(), "fbk_nope".into(), "".into()];
    s.submit(&s.alice, json!({"command": ["true"], "gpus": 1, "walltime": 60})).await;
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..600 {
        // mostly valid tokens, so that requests get past authentication
        let token = &tokens[if rng.gen_bool(0.8) { rng.gen_range(0..3) } else { rng.gen_range(3..5) }];
        let (st, v) = if rng.gen_bool(0.6) {
            let mut body = serde_json::Map::new();
            body.insert("command".into(), json!(["true"]));
            body.insert("gpus".into(), json!(1));
            body.insert("walltime".into(), json!(60));
            for _ in 0..rng.gen_range(0..4) {
                let f = fields[rng.gen_range(0..fields.len())];
                body.insert(f.into(), values[rng.gen_range(0..values.len())].clone());
            }
            let path = posts[rng.gen_range(0..posts.len())];
            s.req("POST", path, token, Some(Value::Object(body))).await
        } else {
            s.req("GET", gets[rng.gen_range(0..gets.len())], token, None).await
        };
        assert!(st.as_u16() < 500, "{st}: {v}");
        *seen.entry(st.as_u16()).or_insert(0) += 1;
    }
    // both acceptance and refusal were exercised
    assert!(seen.contains_key(&201) && seen.contains_key(&400) && seen.contains_key(&401), "{seen:?}");
    let st = s.http.get(format!("{}/healthz", s.base)).send().await.unwrap().status();
    assert_eq!(st, StatusCode::OK);
    let id = s.submit(&s.alice, json!({"command": ["sh", "-c", "echo fine"], "gpus": 1, "walltime": 60})).await;
    s.wait_state(id, &s.alice, "completed").await;
    s.stop().await;
}

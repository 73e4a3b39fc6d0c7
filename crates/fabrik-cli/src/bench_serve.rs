//! `fabrik bench --only serve|pass`: the control plane under load on loopback, and the
//! scheduling pass with 100,000 pending jobs. Figures are printed, never asserted.

use anyhow::{Context, Result};
use fabrik_model::{Facility, JobSpec, Secs, SimTime};
use fabrik_sched::{SchedConfig, Scheduler};
use fabrik_server::store::Role;
use fabrik_server::{ExecutorKind, ServeConfig};
use rand::{Rng, SeedableRng};
use std::time::{Duration, Instant};

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// `n` durable submissions from `conc` concurrent clients against a server with the simulated
/// executor on the eu-gigafactory preset: without forecasts, then with the queue forecast every
/// second (the forecast runs beside the engine: submissions and passes must not slow down).
/// On `small` (128 GPUs) nearly every submission queues, so each forecast forks a twin with
/// thousands of queued jobs.
pub fn serve(n: usize, conc: usize) -> Result<()> {
    for preset in ["eu-gigafactory", "small"] {
        serve_with(n, conc, None, preset)?;
        serve_with(n, conc, Some(Duration::from_secs(1)), preset)?;
    }
    Ok(())
}

fn serve_with(n: usize, conc: usize, forecast: Option<Duration>, preset: &str) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("fabrik-bench-serve-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = fabrik_server::open_store(&dir)?;
    let facility = Facility::preset(preset).context("preset")?;
    for (_, a) in facility.tenants.iter().skip(1) {
        store.add_account(&a.path, a.shares)?;
    }
    let token = store.create_token("bench", None, Role::Admin, 0)?;
    drop(store);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let mut cfg = ServeConfig::new(dir.clone(), ExecutorKind::Simulated, Some(facility));
        cfg.engine.forecast_interval = forecast;
        let config = fabrik_twin::forecast::ForecastConfig { budget: Duration::from_secs(2), ..Default::default() };
        cfg.engine.twin = Some(std::sync::Arc::new(fabrik_twin::forecast::LiveTwin { config }));
        let running = fabrik_server::start(cfg).await?;
        let url = format!("http://{}/v1/jobs", running.addr);
        let client = reqwest::Client::new();
        let (lat1, secs1) = submit_all(&client, &url, &token, n, conc).await?;
        // a forecast of the queue the first round left starts within the interval
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let (lat, secs) = submit_all(&client, &url, &token, n, conc).await?;
        // the scheduling passes' mean duration, from the server's own histogram
        let metrics = client.get(format!("http://{}/metrics", running.addr)).send().await?.text().await?;
        let read = |name: &str| {
            metrics.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse::<f64>().ok()).unwrap_or(0.0)
        };
        let (sum, count) = (read("fabrik_scheduling_pass_seconds_sum "), read("fabrik_scheduling_pass_seconds_count "));
        let forecasts = match forecast {
            Some(every) => {
                let v: serde_json::Value = client
                    .get(format!("http://{}/v1/forecast", running.addr))
                    .bearer_auth(&token)
                    .send()
                    .await?
                    .json()
                    .await?;
                format!(
                    "forecast every {} s (last: {} runs in {} ms over {} queued)",
                    every.as_secs(),
                    v["runs"],
                    v["elapsed_ms"],
                    v["jobs"].as_array().map_or(0, Vec::len)
                )
            }
            None => "no forecasts".to_string(),
        };
        println!(
            "(serve) {preset}: {n} durable submissions, {conc} clients on loopback: {:.0}/s, latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; then {n} more with {forecasts}: {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {count:.0} passes, mean {:.1} µs",
            n as f64 / secs1,
            pct(&lat1, 0.5) * 1e3,
            pct(&lat1, 0.99) * 1e3,
            lat1[lat1.len() - 1] * 1e3,
            n as f64 / secs,
            pct(&lat, 0.5) * 1e3,
            pct(&lat, 0.99) * 1e3,
            lat[lat.len() - 1] * 1e3,
            if count > 0.0 { sum / count * 1e6 } else { 0.0 }
        );
        running.stop().await;
        let _ = std::fs::remove_dir_all(&dir);
        Ok::<_, anyhow::Error>(())
    })
}

/// `n` submissions from `conc` concurrent clients: each one's latency (sorted) and the wall time.
async fn submit_all(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    n: usize,
    conc: usize,
) -> Result<(Vec<f64>, f64)> {
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..conc {
        let (client, url, token) = (client.clone(), url.to_string(), token.to_string());
        let count = n / conc + usize::from(w < n % conc);
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(count);
            for i in 0..count {
                let body = serde_json::json!({"command": ["train"], "gpus": 1 << (i % 8), "walltime": "2h",
                    "simulated_runtime": "1h", "account": "research/open-llm/eval"});
                let t = Instant::now();
                let r = client.post(&url).bearer_auth(&token).json(&body).send().await?;
                anyhow::ensure!(r.status().as_u16() == 201, "submission answered {}", r.status());
                lat.push(t.elapsed().as_secs_f64());
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut lat = Vec::with_capacity(n);
    for t in tasks {
        lat.extend(t.await??);
    }
    lat.sort_by(f64::total_cmp);
    Ok((lat, t0.elapsed().as_secs_f64()))
}

/// The scheduling pass on a preset (eu-gigafactory: 100,096 GPUs; gw-campus: 1,002,240) with
/// 100,000 pending jobs.
pub fn pass(preset: &str, policy: &str) -> Result<()> {
    let f = Facility::preset(preset).context("preset")?;
    let mut s = Scheduler::with_policy(&f, policy, SchedConfig::default())?;
    let leaves: Vec<_> = f.tenants.leaves().map(|(id, _)| id).collect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let mut started = Vec::new();
    // Fill the facility with running work, then queue 100,000 more jobs.
    let mut n = 0;
    while s.busy_gpus() < f.total_gpus() * 95 / 100 {
        let g = 1u32 << rng.gen_range(0..10);
        s.submit(
            JobSpec::new(format!("r{n}"), leaves[n % leaves.len()], g, SimTime(0), Secs(3600 * rng.gen_range(1..48))),
            SimTime(0),
        )?;
        s.schedule(SimTime(0), &mut started);
        n += 1;
    }
    for i in 0..100_000 {
        let g = 1u32 << rng.gen_range(0..12);
        s.submit(
            JobSpec::new(format!("p{i}"), leaves[i % leaves.len()], g, SimTime(1), Secs(3600 * rng.gen_range(1..48))),
            SimTime(1),
        )?;
    }
    let t = Instant::now();
    s.schedule(SimTime(1), &mut started);
    let first = t.elapsed();
    let mut times = Vec::new();
    for k in 0..50u64 {
        // one running job ends, then a pass
        let running = s.jobs().find(|(_, j)| j.state.is_running()).map(|(id, _)| id);
        if let Some(id) = running {
            s.finish(id, SimTime(2 + k))?;
        }
        let t = Instant::now();
        s.schedule(SimTime(2 + k), &mut started);
        times.push(t.elapsed().as_secs_f64());
    }
    // a pass at which the fair-share priorities of all pending jobs are recalculated
    let t = Instant::now();
    s.schedule(SimTime(10_000), &mut started);
    let recalc = t.elapsed();
    // and again at each recalculation interval: the steady state
    let interval = s.config().fair_share.recalc_interval;
    let mut recalcs = Vec::new();
    for k in 1..=20u64 {
        let t = Instant::now();
        s.schedule(SimTime(10_000 + k * interval.0.max(1)), &mut started);
        recalcs.push(t.elapsed().as_secs_f64());
    }
    recalcs.sort_by(f64::total_cmp);
    times.sort_by(f64::total_cmp);
    // what a forecast or what-if costs the engine: one snapshot of the whole brain
    let t = Instant::now();
    let snap = s.snapshot(&f, SimTime(20_000), SimTime::ZERO, |id| Some(i64::from(id.0)), |_| None);
    let snapshot_ms = t.elapsed().as_secs_f64() * 1e3;
    let queued = snap.queued.len();
    drop(snap);
    println!(
        "(pass) {preset} {policy}: {} pending, {} GPUs busy of {}: first pass {:.2} ms; pass after a job end p50 {:.3} ms, max {:.3} ms; pass with priority recalculation {:.2} ms (first), p50 of 20 {:.2} ms, min {:.2} ms; snapshot of the brain ({queued} queued) {snapshot_ms:.1} ms",
        s.pending().len(),
        s.busy_gpus(),
        f.total_gpus(),
        first.as_secs_f64() * 1e3,
        pct(&times, 0.5) * 1e3,
        times[times.len() - 1] * 1e3,
        recalc.as_secs_f64() * 1e3,
        pct(&recalcs, 0.5) * 1e3,
        recalcs[0] * 1e3
    );
    let _ = Duration::ZERO;
    Ok(())
}

//! `fabrik bench --only forecast`: how good the live start-time forecasts are. A trace is
//! replayed through `fabrik serve` (simulated executor, accelerated clock): each job is
//! submitted at its scaled time with its recorded runtime; every forecast interval the client
//! reads the server's forecast of the queue and, for the naive estimate, takes a snapshot and
//! plans it once with every job running to its walltime (what a backfill scheduler's plan —
//! Slurm's `squeue --start` — gives). When every job has started, each forecast is compared
//! with the start that happened: mean absolute error of the P50, the share of jobs that started
//! by their P90, by job size. Figures are printed, never asserted.

use anyhow::{Context, Result};
use fabrik_model::Facility;
use fabrik_server::store::Role;
use fabrik_server::{ExecutorKind, ServeConfig};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// Size classes of the report.
const CLASSES: [(u32, u32, &str); 4] = [(1, 1, "1"), (2, 8, "2-8"), (9, 64, "9-64"), (65, u32::MAX, ">64")];

#[derive(Default)]
struct Tally {
    n: usize,
    abs_err_s: f64,
    by_p90: usize,
    naive_abs_err_s: f64,
    naive_n: usize,
}

/// Replays the first `hours` of ITP `trace` on `80x8:20` at `scale` virtual seconds per second.
pub fn accuracy(trace: &Path, hours: f64, scale: f64) -> Result<()> {
    let facility = crate::load_facility("80x8:20")?;
    let w = crate::load_workload(&format!("itp:{}", trace.display()), &facility, Some(hours / 24.0), 0.85, 1)?;
    let dir = std::env::temp_dir().join(format!("fabrik-bench-forecast-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = fabrik_server::open_store(&dir)?;
    for (_, a) in facility.tenants.iter().skip(1) {
        store.add_account(&a.path, a.shares)?;
    }
    let token = store.create_token("bench", None, Role::Admin, 0)?;
    drop(store);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let f2 = facility.clone();
    rt.block_on(async move {
        let mut cfg = ServeConfig::new(dir.clone(), ExecutorKind::Simulated, Some(f2));
        cfg.engine.time_scale = scale;
        cfg.engine.tick = Duration::from_millis(20);
        cfg.engine.forecast_interval = Some(Duration::from_secs(1));
        let config =
            fabrik_twin::forecast::ForecastConfig { runs: 8, budget: Duration::from_millis(500), ..Default::default() };
        cfg.engine.twin = Some(std::sync::Arc::new(fabrik_twin::forecast::LiveTwin { config }));
        let running = fabrik_server::start(cfg).await?;
        let base = format!("http://{}", running.addr);
        let client = reqwest::Client::new();
        let get = |path: String| {
            let (client, token) = (client.clone(), token.clone());
            async move {
                let r = client.get(path).bearer_auth(&token).send().await?;
                anyhow::ensure!(r.status().is_success(), "{} answered {}", r.url(), r.status());
                Ok::<serde_json::Value, anyhow::Error>(r.json().await?)
            }
        };
        let t0 = Instant::now();
        let mut next = 0;
        let mut ids: BTreeMap<i64, u32> = BTreeMap::new(); // server id → GPUs
        // (job, P50, P90) and (job, naive) samples
        let mut samples: Vec<(i64, u64, u64)> = Vec::new();
        let mut naive: Vec<(i64, u64)> = Vec::new();
        let mut last_forecast_at = 0;
        let mut last_poll = Instant::now();
        loop {
            // submit what is due on the scaled clock
            let now_v = t0.elapsed().as_secs_f64() * scale;
            while next < w.jobs.len() && (w.jobs[next].spec.submit.0 as f64) <= now_v {
                let j = &w.jobs[next];
                let body = serde_json::json!({"name": j.spec.name, "command": ["x"], "gpus": j.spec.gpus,
                    "walltime": format!("{}s", j.spec.walltime.0), "simulated_runtime": format!("{}s", j.runtime.0.max(1)),
                    "account": facility.tenants.get(j.spec.account).path});
                let r = client.post(format!("{base}/v1/jobs")).bearer_auth(&token).json(&body).send().await?;
                anyhow::ensure!(r.status().as_u16() == 201, "submission answered {}", r.status());
                let v: serde_json::Value = r.json().await?;
                ids.insert(v["id"].as_i64().context("id")?, j.spec.gpus);
                next += 1;
            }
            if last_poll.elapsed() >= Duration::from_millis(250) {
                last_poll = Instant::now();
                if let Ok(fc) = get(format!("{base}/v1/forecast")).await {
                    let at = fc["at"].as_u64().unwrap_or(0);
                    if at != last_forecast_at {
                        last_forecast_at = at;
                        for j in fc["jobs"].as_array().into_iter().flatten() {
                            if let (Some(id), Some(p50), Some(p90)) =
                                (j["id"].as_i64(), j["p50_start"].as_u64(), j["p90_start"].as_u64())
                            {
                                samples.push((id, p50, p90));
                            }
                        }
                        // the naive plan of the same moment: every job to its walltime
                        let snap: fabrik_sched::Snapshot = serde_json::from_value(get(format!("{base}/v1/snapshot")).await?)?;
                        if !snap.queued.is_empty() {
                            naive.extend(naive_plan(&snap, &facility)?);
                        }
                    }
                }
            }
            if next == w.jobs.len() {
                let v = get(format!("{base}/v1/jobs?state=pending&limit=1")).await?;
                if v["jobs"].as_array().is_some_and(Vec::is_empty) {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // the starts that happened
        let v = get(format!("{base}/v1/jobs?limit=100000")).await?;
        let started: BTreeMap<i64, u64> = v["jobs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|j| Some((j["id"].as_i64()?, j["start_time"].as_u64()?)))
            .collect();
        let mut t: Vec<Tally> = (0..CLASSES.len()).map(|_| Tally::default()).collect();
        let class = |g: u32| CLASSES.iter().position(|c| (c.0..=c.1).contains(&g)).unwrap_or(0);
        for &(id, p50, p90) in &samples {
            let (Some(&s), Some(&g)) = (started.get(&id), ids.get(&id)) else { continue };
            let x = &mut t[class(g)];
            x.n += 1;
            x.abs_err_s += s.abs_diff(p50) as f64;
            x.by_p90 += usize::from(s <= p90);
        }
        for &(id, est) in &naive {
            let (Some(&s), Some(&g)) = (started.get(&id), ids.get(&id)) else { continue };
            let x = &mut t[class(g)];
            x.naive_n += 1;
            x.naive_abs_err_s += s.abs_diff(est) as f64;
        }
        println!(
            "(forecast) ITP cluster04, first {hours} h ({} jobs) through fabrik serve on 80x8:20 at {scale}x: {} forecasts of pending jobs, wall {:.0} s",
            w.jobs.len(),
            samples.len(),
            t0.elapsed().as_secs_f64()
        );
        let all = t.iter().fold(Tally::default(), |mut a, x| {
            a.n += x.n;
            a.abs_err_s += x.abs_err_s;
            a.by_p90 += x.by_p90;
            a.naive_n += x.naive_n;
            a.naive_abs_err_s += x.naive_abs_err_s;
            a
        });
        for (name, x) in CLASSES.iter().map(|c| c.2).zip(&t).chain(std::iter::once(("all", &all))) {
            if x.n == 0 {
                continue;
            }
            println!(
                "(forecast)   {name:>5} GPUs: {:>6} samples, P50 mean abs. error {:>7.1} min, started by P90 {:>5.1}%; naive (walltimes) mean abs. error {:>7.1} min",
                x.n,
                x.abs_err_s / x.n as f64 / 60.0,
                100.0 * x.by_p90 as f64 / x.n as f64,
                if x.naive_n > 0 { x.naive_abs_err_s / x.naive_n as f64 / 60.0 } else { f64::NAN }
            );
        }
        running.stop().await;
        let _ = std::fs::remove_dir_all(&dir);
        Ok::<_, anyhow::Error>(())
    })
}

/// Every queued job's start when everything runs to its walltime, without failures or
/// arrivals: one twin run, the plan a backfill scheduler makes (a forecast without history).
fn naive_plan(snap: &fabrik_sched::Snapshot, facility: &Facility) -> Result<Vec<(i64, u64)>> {
    let f = fabrik_twin::fork::facility_of(snap, facility).map_err(anyhow::Error::msg)?;
    let cfg = fabrik_twin::forecast::ForecastConfig {
        runs: 1,
        failures: false,
        arrivals_horizon: Duration::ZERO,
        ..Default::default()
    };
    let model = fabrik_model::runtime_model::RuntimeModel::default();
    let fc = fabrik_twin::forecast::forecast(snap, &f, &model, &[], &cfg).map_err(anyhow::Error::msg)?;
    Ok(fc.jobs.iter().filter_map(|j| Some((j.key?, j.p50_start))).collect())
}

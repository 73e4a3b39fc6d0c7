//! `fabrik bench`: the reference scenarios, timed. Figures are printed, never asserted.

use crate::{load_facility, load_workload};
use anyhow::{bail, Result};
use clap::Args;
use fabrik_sched::SchedConfig;
use fabrik_twin::{simulate, TwinConfig};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args)]
pub struct BenchArgs {
    /// Where the Microsoft ITP trace lives.
    #[arg(long, default_value = "../shared/traces/microsoft-itp")]
    traces: PathBuf,
    /// Run only one scenario: a (ITP cluster04), b (eu-gigafactory, 30 days), c (las with
    /// preemption on ITP cluster04 replicated ×10), serve (durable submissions on loopback),
    /// pass (scheduling pass with 100,000 pending jobs on eu-gigafactory and gw-campus); the long
    /// ones only when named: year (eu-gigafactory, 365 days) and campus (gw-campus, 30 days),
    /// with the process's peak memory, and forecast (the accuracy of live start-time forecasts:
    /// ITP cluster04's first 4 days replayed through fabrik serve at 3,600×, a few minutes) and
    /// detector (the health detector's precision, recall and GPU-hours saved across precursor
    /// strength, noise, lost samples and counter resets).
    #[arg(long)]
    only: Option<String>,
    /// Submissions for the serve scenario.
    #[arg(long, default_value_t = 20_000)]
    submissions: usize,
    /// Concurrent clients for the serve scenario.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Repetitions of each scenario; the best time is reported.
    #[arg(long, default_value_t = 3)]
    repeat: u32,
}

fn scenario(label: &str, facility: &str, workload: &str, policy: &str, days: Option<f64>, repeat: u32) -> Result<()> {
    let f = load_facility(facility)?;
    let t0 = Instant::now();
    let w = load_workload(workload, &f, days, 0.85, 1)?;
    let load_s = t0.elapsed().as_secs_f64();
    timed(label, &f, &w, policy, load_s, repeat, &|_| {})
}

/// The process's peak resident memory so far, MiB.
fn peak_rss_mib() -> f64 {
    nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF)
        .map_or(0.0, |u| u.max_rss() as f64 / 1024.0)
}

fn timed(
    label: &str,
    f: &fabrik_model::Facility,
    w: &fabrik_twin::Workload,
    policy: &str,
    load_s: f64,
    repeat: u32,
    tweak: &dyn Fn(&mut TwinConfig),
) -> Result<()> {
    let (f, w) = (f, w);
    let mut best = f64::MAX;
    let mut events = 0;
    let mut util = 0.0;
    let mut preemptions = 0;
    for _ in 0..repeat.max(1) {
        let mut cfg = TwinConfig::new(policy, SchedConfig::default(), 1);
        // as `fabrik simulate` without --jobs-csv
        cfg.keep_job_rows = false;
        tweak(&mut cfg);
        let t = Instant::now();
        let r = simulate(f, w, cfg)?;
        best = best.min(t.elapsed().as_secs_f64());
        events = r.summary.events;
        util = r.summary.utilisation;
        preemptions = r.summary.preemptions;
    }
    println!(
        "{label:<44} {policy:<12} jobs {:>7}  events {:>8}  sim {:>8.3} s  {:>10.0} events/s  (workload load {:.3} s, utilisation {:.1}%, {} preemptions, peak RSS {:.0} MiB)",
        w.jobs.len(),
        events,
        best,
        events as f64 / best,
        load_s,
        util * 100.0,
        preemptions,
        peak_rss_mib()
    );
    Ok(())
}

pub fn run(a: &BenchArgs) -> Result<()> {
    let only = a.only.as_deref();
    if let Some(o) = only {
        if !["a", "b", "c", "serve", "pass", "year", "campus", "forecast", "detector"].contains(&o) {
            bail!("--only takes a, b, c, serve, pass, year, campus, forecast or detector, got '{o}'");
        }
    }
    let want = |x: &str| only.is_none_or(|o| o == x);
    let trace = a.traces.join("raw/cluster04.csv");
    if want("a") {
        if !trace.is_file() {
            bail!("ITP trace not found at {} (pass --traces DIR, or --only b)", trace.display());
        }
        let w = format!("itp:{}", trace.display());
        for policy in ["fifo", "fair-share"] {
            scenario("(a) ITP cluster04 on 80x8:20", "80x8:20", &w, policy, None, a.repeat)?;
        }
    }
    if want("b") {
        scenario(
            "(b) eu-gigafactory, 30 days synthetic",
            "eu-gigafactory",
            "synthetic",
            "fair-share",
            Some(30.0),
            a.repeat.min(1),
        )?;
    }
    if want("c") {
        if !trace.is_file() {
            bail!("ITP trace not found at {} (pass --traces DIR, or --only b)", trace.display());
        }
        // ten copies of every job, all preemptible and checkpointing, on ten times the GPUs
        let f = load_facility("800x8:20")?;
        let t0 = Instant::now();
        let one = load_workload(&format!("itp:{}", trace.display()), &f, None, 0.85, 1)?;
        let mut w = one.clone();
        w.jobs = (0..10)
            .flat_map(|k| {
                one.jobs.iter().map(move |j| {
                    let mut j = j.clone();
                    j.spec.name = format!("{}#{k}", j.spec.name);
                    j.spec.preemptible = true;
                    j
                })
            })
            .collect();
        w.sort();
        // checkpoints every 30 minutes: las preempts (a run without checkpoints it never throws away)
        let ckpt = |c: &mut TwinConfig| c.checkpoint = fabrik_twin::config::CheckpointPolicy::Every(1800);
        timed(
            "(c) ITP cluster04 ×10 on 800x8:20, preemptible",
            &f,
            &w,
            "las",
            t0.elapsed().as_secs_f64(),
            a.repeat,
            &ckpt,
        )?;
    }
    if only == Some("year") {
        scenario(
            "(year) eu-gigafactory, 365 days synthetic",
            "eu-gigafactory",
            "synthetic",
            "fair-share",
            Some(365.0),
            1,
        )?;
    }
    if only == Some("forecast") {
        if !trace.is_file() {
            bail!("ITP trace not found at {} (pass --traces DIR)", trace.display());
        }
        crate::bench_forecast::accuracy(&trace, 96.0, 3600.0)?;
    }
    if only == Some("detector") {
        crate::bench_detector::evaluate(3)?;
    }
    if only == Some("campus") {
        scenario("(campus) gw-campus, 30 days synthetic", "gw-campus", "synthetic", "fair-share", Some(30.0), 1)?;
    }
    if want("pass") {
        crate::bench_serve::pass("eu-gigafactory", "fifo-backfill")?;
        crate::bench_serve::pass("eu-gigafactory", "fair-share")?;
        // the next order of magnitude: the same 100,000 pending on a million GPUs
        crate::bench_serve::pass("gw-campus", "fifo-backfill")?;
        crate::bench_serve::pass("gw-campus", "fair-share")?;
    }
    if want("serve") {
        crate::bench_serve::serve(a.submissions.max(1), a.clients.clamp(1, 1024))?;
    }
    Ok(())
}

//! `fabrik telemetry serve`: synthetic dcgm-exporter metrics of a facility on loopback, from
//! the twin's telemetry model (`fabrik_twin::telemetry::Exporter`), for tests and
//! demonstrations of live predictive maintenance without GPUs.

use crate::load_facility;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use fabrik_model::units::parse_duration;
use fabrik_twin::telemetry::{Difficulty, Exporter, Injected};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Subcommand)]
pub enum TelemetryCmd {
    /// Serve synthetic dcgm-exporter metrics at http://LISTEN/metrics (Prometheus scrapes it).
    Serve(ExporterArgs),
}

#[derive(Args)]
pub struct ExporterArgs {
    /// The facility whose nodes report (preset, file or shorthand); host names are its node
    /// names, or node0, node1 … when it names none.
    #[arg(long, default_value = "small")]
    facility: String,
    /// Address and port to serve on.
    #[arg(long, default_value = "127.0.0.1:9400")]
    listen: std::net::SocketAddr,
    /// Wall time between samples (every node draws one sample per step).
    #[arg(long, default_value = "1s")]
    step: String,
    /// Virtual seconds per wall second: precursor times are virtual (a day-long ramp at 3600
    /// runs in 24 s).
    #[arg(long, default_value_t = 1.0)]
    time_scale: f64,
    /// A failing part on NODE: NODE[@START][/RAMP] — its precursor starts START after the
    /// exporter (default 0) and reaches full strength RAMP later (default 0: at once).
    /// Repeatable; `all` injects on every node.
    #[arg(long = "precursor", value_name = "NODE[@START][/RAMP]")]
    precursors: Vec<String>,
    /// Precursor strength (1: the twin's default, ~12 extra corrected errors per sample).
    #[arg(long, default_value_t = 1.0)]
    strength: f64,
    /// Healthy noise scale (1: the twin's default).
    #[arg(long, default_value_t = 1.0)]
    noise: f64,
    /// Share of steps in which a node reports nothing new.
    #[arg(long, default_value_t = 0.0)]
    missing: f64,
    /// Share of steps in which a node's counters reset.
    #[arg(long, default_value_t = 0.0)]
    resets: f64,
    /// Seed of the random draws (same seed, same run).
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// `NODE[@START][/RAMP]` on facility `f`, times in virtual seconds.
fn parse_precursor(spec: &str, f: &fabrik_model::Facility) -> Result<Vec<Injected>> {
    let (rest, ramp) = match spec.split_once('/') {
        Some((a, r)) => (a, parse_duration(r).map_err(|e| anyhow::anyhow!("--precursor {spec}: ramp: {e}"))?),
        None => (spec, 0),
    };
    let (node, start) = match rest.split_once('@') {
        Some((n, s)) => (n, parse_duration(s).map_err(|e| anyhow::anyhow!("--precursor {spec}: start: {e}"))?),
        None => (rest, 0),
    };
    let doms: Vec<fabrik_model::DomainId> = if node == "all" {
        (0..f.domains.len() as u32).map(fabrik_model::DomainId).collect()
    } else {
        vec![fabrik_model::telemetry::domain_of(f, node)
            .with_context(|| format!("--precursor {spec}: facility {} has no node '{node}'", f.name))?]
    };
    Ok(doms.into_iter().map(|domain| Injected { domain, start_s: start as f64, ramp_s: ramp as f64 }).collect())
}

pub fn run(cmd: &TelemetryCmd) -> Result<()> {
    let TelemetryCmd::Serve(a) = cmd;
    let f = load_facility(&a.facility)?;
    if !(a.time_scale.is_finite() && a.time_scale > 0.0) {
        bail!("--time-scale must be a positive number, got {}", a.time_scale);
    }
    let step = parse_duration(&a.step).map_err(|e| anyhow::anyhow!("--step: {e}"))?.max(1);
    let difficulty = Difficulty { strength: a.strength, noise: a.noise, missing: a.missing, resets: a.resets };
    difficulty.validate().map_err(anyhow::Error::msg)?;
    let mut injected = Vec::new();
    for p in &a.precursors {
        injected.extend(parse_precursor(p, &f)?);
    }
    let exporter = Arc::new(Mutex::new(Exporter::new(&f, injected, difficulty, a.seed)));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    rt.block_on(async move {
        let listener =
            tokio::net::TcpListener::bind(a.listen).await.with_context(|| format!("binding {}", a.listen))?;
        eprintln!(
            "synthetic dcgm-exporter for {} ({} nodes) at http://{}/metrics",
            f.name,
            f.domains.len(),
            listener.local_addr()?
        );
        let ticker = exporter.clone();
        let (scale, step_s) = (a.time_scale, step as f64);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(step));
            every.tick().await;
            loop {
                every.tick().await;
                ticker.lock().expect("exporter lock").step(step_s * scale);
            }
        });
        let render = Arc::new(move || exporter.lock().expect("exporter lock").render());
        fabrik_server::exposition::serve_text(listener, render).await.context("serving metrics")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precursor_specs_name_nodes_and_times() {
        let f = fabrik_model::Facility::preset("small").unwrap();
        let p = parse_precursor("node3@1h/24h", &f).unwrap();
        assert_eq!(p, vec![Injected { domain: fabrik_model::DomainId(3), start_s: 3600.0, ramp_s: 86_400.0 }]);
        assert_eq!(parse_precursor("node0", &f).unwrap()[0].start_s, 0.0);
        assert_eq!(parse_precursor("all/10s", &f).unwrap().len(), 16);
        let e = parse_precursor("node16", &f).unwrap_err().to_string();
        assert!(e.contains("has no node 'node16'"), "{e}");
        assert!(parse_precursor("node1@soon", &f).unwrap_err().to_string().contains("start"));
    }
}

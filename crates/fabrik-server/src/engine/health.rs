//! Live predictive maintenance: telemetry polls (from `crate::telemetry`) become per-node
//! samples (`fabrik_model::telemetry::Tracker`), the twin's detector (`fabrik_model::health`)
//! judges them, and a suspect node is drained — cordoned in the brain, drained in the executor
//! (Slurm: `scontrol update … State=DRAIN Reason=…`), its jobs sent the checkpoint signal
//! (SIGTERM) and requeued when they exit (SIGKILL after the grace period) — then returned by
//! an operator's `resume` or after the configured repair time.
//!
//! Safety rules: no decision from a failed or stale poll (the state is *degraded* and shown as
//! such); at most `max_drain_share` of the nodes (at least one) drained by the detector at a
//! time, so a bad exporter cannot empty the facility; a dry run only reports what it would drain.
//! Every drain logs and keeps its evidence (which rule fired, with the values and limits).

use super::{Ending, Engine};
use crate::store::Identity;
use fabrik_model::health::{Detector, DetectorConfig, Verdict};
use fabrik_model::telemetry::{GpuReading, NodeSample, Tracker};
use fabrik_model::{DomainId, SimTime};
use serde::Serialize;
use std::collections::HashMap;

/// What one telemetry poll brought: readings with the time of each GPU's last sample (Unix s),
/// and how many series were skipped (no host or GPU label, not a number).
#[derive(Debug, Clone)]
pub struct TelemetryBatch {
    pub readings: Vec<(GpuReading, Option<f64>)>,
    pub skipped: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthConfig {
    pub detector: DetectorConfig,
    /// Largest share of the facility's nodes drained by the detector at once (at least one).
    pub max_drain_share: f64,
    /// Only report what would be drained.
    pub dry_run: bool,
    /// Return a detector-drained node after this long (`None`: an operator resumes it).
    pub repair_s: Option<u64>,
    /// Samples older than this are stale: not judged.
    pub stale_s: u64,
    /// Time constant of the learned temperature lead (`Tracker`).
    pub baseline_tau_s: f64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            detector: DetectorConfig::default(),
            max_drain_share: 0.05,
            dry_run: false,
            repair_s: None,
            stale_s: 60,
            baseline_tau_s: 3.0 * 86_400.0,
        }
    }
}

/// One node's health as the detector sees it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NodeHealth {
    pub suspect: bool,
    /// The rules that fired in the last verdict: ecc, xid, temp.
    pub signals: Vec<&'static str>,
    pub last_sample: Option<NodeSample>,
    /// The last verdict's evidence (values beside limits).
    pub evidence: Option<String>,
    /// Drained by the detector at (Unix s), and when it returns by itself.
    pub drained_at: Option<u64>,
    pub returns_at: Option<u64>,
    /// A dry run (or the cap, or a degraded poll) kept it in service although it is suspect.
    pub held_back: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TelemetryView {
    /// waiting (no poll yet), ok, degraded.
    pub state: String,
    pub reason: Option<String>,
    pub last_ok: Option<u64>,
    pub polls: u64,
    pub dry_run: bool,
    pub drained_by_detector: u32,
    pub drain_cap: u32,
}

pub(super) struct Health {
    pub(super) cfg: HealthConfig,
    tracker: Tracker,
    detector: Detector,
    pub(super) nodes: Vec<NodeHealth>,
    degraded: Option<String>,
    last_ok: Option<u64>,
    polls: u64,
}

impl Health {
    pub(super) fn new(cfg: HealthConfig, domains: usize) -> Health {
        Health {
            tracker: Tracker::new(cfg.baseline_tau_s),
            detector: Detector::new(domains, cfg.detector.clone()),
            nodes: vec![NodeHealth::default(); domains],
            degraded: None,
            last_ok: None,
            polls: 0,
            cfg,
        }
    }

    fn cap(&self) -> u32 {
        ((self.nodes.len() as f64 * self.cfg.max_drain_share).floor() as u32).max(1)
    }

    fn drained(&self) -> u32 {
        self.nodes.iter().filter(|n| n.drained_at.is_some()).count() as u32
    }

    /// Forgets a node's history: it was repaired or resumed.
    pub(super) fn returned(&mut self, d: DomainId) {
        self.tracker.reset(d);
        self.detector.reset(d);
        self.nodes[d.idx()] = NodeHealth::default();
    }

    pub(super) fn view(&self) -> TelemetryView {
        TelemetryView {
            state: match (&self.degraded, self.polls) {
                (Some(_), _) => "degraded",
                (None, 0) => "waiting",
                (None, _) => "ok",
            }
            .into(),
            reason: self.degraded.clone(),
            last_ok: self.last_ok,
            polls: self.polls,
            dry_run: self.cfg.dry_run,
            drained_by_detector: self.drained(),
            drain_cap: self.cap(),
        }
    }
}

impl Engine {
    /// A telemetry poll's result: judged if fresh, else the state is degraded and nothing is
    /// decided.
    pub(super) fn on_telemetry(&mut self, r: Result<TelemetryBatch, String>) {
        let now = self.clock.now();
        let Some(h) = self.health.as_mut() else { return };
        h.polls += 1;
        let batch = match r {
            Ok(b) => b,
            Err(e) => {
                if h.degraded.is_none() {
                    tracing::warn!(error = %e, "telemetry degraded: no drain decisions until it recovers");
                }
                *self.metrics.telemetry_error.lock().expect("health lock") = Some(e.clone());
                h.degraded = Some(e);
                self.metrics.telemetry_up.set(0);
                self.metrics.telemetry_polls.get_or_create(&state("error")).inc();
                return;
            }
        };
        // group fresh readings by node; stale and unknown ones are left out
        let stale_before = now.0.saturating_sub(h.cfg.stale_s) as f64;
        let (mut by_node, mut stale, mut unknown): (HashMap<DomainId, Vec<GpuReading>>, usize, usize) =
            (HashMap::new(), 0, 0);
        for (r, t) in batch.readings {
            if t.is_none_or(|t| t < stale_before) {
                stale += 1;
                continue;
            }
            match fabrik_model::telemetry::domain_of(&self.facility, &r.host) {
                Some(d) => by_node.entry(d).or_default().push(r),
                None => unknown += 1,
            }
        }
        if by_node.is_empty() {
            let e = format!(
                "no fresh telemetry: {stale} GPU series older than {} s, {unknown} of unknown nodes, {} skipped",
                h.cfg.stale_s, batch.skipped
            );
            if h.degraded.is_none() {
                tracing::warn!("telemetry degraded: {e}");
            }
            *self.metrics.telemetry_error.lock().expect("health lock") = Some(e.clone());
            h.degraded = Some(e);
            self.metrics.telemetry_up.set(0);
            self.metrics.telemetry_polls.get_or_create(&state("stale")).inc();
            return;
        }
        if h.degraded.take().is_some() {
            tracing::info!("telemetry fresh again");
        }
        *self.metrics.telemetry_error.lock().expect("health lock") = None;
        h.last_ok = Some(now.0);
        self.metrics.telemetry_up.set(1);
        self.metrics.telemetry_polls.get_or_create(&state("ok")).inc();
        let mut doms: Vec<DomainId> = by_node.keys().copied().collect();
        doms.sort_unstable();
        let mut suspects = Vec::new();
        for d in doms {
            if self.sched.cluster().is_down(d) {
                continue;
            }
            let healthy = !h.nodes[d.idx()].suspect;
            let gpus: Vec<&GpuReading> = by_node[&d].iter().collect();
            let ns = h.tracker.sample(d, now, &gpus, healthy);
            let verdict = h.detector.observe(&ns.sample);
            let node = &mut h.nodes[d.idx()];
            node.last_sample = Some(ns);
            node.evidence = Some(h.detector.evidence(d).to_string());
            match verdict {
                Verdict::Healthy => {
                    node.suspect = false;
                    node.signals.clear();
                    node.held_back = None;
                }
                Verdict::Suspect { ecc, xid, temp } => {
                    node.suspect = true;
                    node.signals =
                        [("ecc", ecc), ("xid", xid), ("temp", temp)].into_iter().filter(|s| s.1).map(|s| s.0).collect();
                    suspects.push(d);
                }
            }
        }
        self.metrics.health_suspects.set(h.nodes.iter().filter(|n| n.suspect).count() as i64);
        for d in suspects {
            self.health_drain(d, now);
        }
    }

    /// Drains a suspect node if the rules allow it now.
    fn health_drain(&mut self, d: DomainId, now: SimTime) {
        let name = fabrik_model::telemetry::hostname_of(&self.facility, d);
        let Some(h) = self.health.as_mut() else { return };
        let node = &h.nodes[d.idx()];
        let evidence = format!("suspect on {} ({})", node.signals.join("+"), node.evidence.clone().unwrap_or_default());
        let held = if h.cfg.dry_run {
            Some("dry run".to_string())
        } else if h.drained() >= h.cap() {
            Some(format!("drain cap: {} of {} nodes already drained by the detector", h.drained(), h.nodes.len()))
        } else {
            None
        };
        if let Some(why) = held {
            let first = h.nodes[d.idx()].held_back.is_none();
            h.nodes[d.idx()].held_back = Some(why.clone());
            if first {
                let label = if h.cfg.dry_run { "dry_run" } else { "cap" };
                self.metrics.health_held_back.get_or_create(&state(label)).inc();
                tracing::warn!(node = %name, "would drain ({why}): {evidence}");
            }
            return;
        }
        let reason = format!("health detector: {evidence}");
        let short = format!("fabrik health: {}", h.nodes[d.idx()].signals.join("+"));
        for s in &h.nodes[d.idx()].signals {
            self.metrics.health_drains.get_or_create(&crate::metrics::SignalLabel { signal: (*s).into() }).inc();
        }
        let node = &mut h.nodes[d.idx()];
        node.drained_at = Some(now.0);
        node.returns_at = h.cfg.repair_s.map(|r| now.0 + r);
        node.held_back = None;
        tracing::warn!(node = %name, "draining: {evidence}");
        if let Err(e) = self.exec.drain(d, &short, false) {
            tracing::error!(node = %name, error = %e, "the executor did not drain the node; fabrik stops placing work on it anyway");
        }
        self.move_off(d, &reason, now);
    }

    /// Cordons `d` and moves its jobs: SIGTERM now (their checkpoint signal), SIGKILL after the
    /// grace period, requeued when they exit.
    pub(super) fn move_off(&mut self, d: DomainId, reason: &str, now: SimTime) {
        let _ = self.sched.cordon_domain(d);
        self.down_reason.insert(d, reason.to_string());
        self.node_event(d, format!("drained: {reason}"));
        let name = fabrik_model::telemetry::hostname_of(&self.facility, d);
        for jid in self.sched.jobs_on(d) {
            let id = self.from_sched[jid.idx()];
            let why = format!("moved off {name} at {}: {reason}", now.unix_utc());
            // one already ending (cancel, walltime) ends as it was going to
            if !self.terminating.contains_key(&id) {
                self.terminate(id, Ending::Requeue(why), now);
                tracing::info!(job = id, node = %name, "checkpoint signal sent; the job moves when it exits");
            }
        }
    }

    /// Detector-drained nodes whose repair time is up come back (once their jobs left).
    pub(super) fn health_returns(&mut self, now: SimTime) {
        let Some(h) = self.health.as_ref() else { return };
        let due: Vec<DomainId> = h
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.returns_at.is_some_and(|t| t <= now.0))
            .map(|(d, _)| DomainId(d as u32))
            .collect();
        for d in due {
            if self.sched.is_cordoned(d) {
                continue;
            }
            if let Err(e) = self.exec.drain(d, "", true) {
                tracing::warn!(domain = d.0, error = %e, "resuming after repair failed; retrying");
                continue;
            }
            if self.sched.repair_domain(d).is_ok() {
                self.down_reason.remove(&d);
                self.node_event(d, "back in service after its repair time".into());
                if let Some(h) = self.health.as_mut() {
                    h.returned(d);
                }
                self.metrics.health_returns.inc();
                tracing::info!(domain = d.0, "back in service after its repair time");
            }
        }
    }

    pub(super) fn telemetry_view(&self, _who: &Identity) -> Option<TelemetryView> {
        self.health.as_ref().map(Health::view)
    }
}

fn state(s: &str) -> crate::metrics::StateLabel {
    crate::metrics::StateLabel { state: s.into() }
}

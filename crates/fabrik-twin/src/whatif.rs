//! What-ifs from the live state: the twin forked from a snapshot under the facility's current
//! settings (the baseline) and under each alternative — another policy, another power cap, some
//! nodes drained, the energy-aware modifier — on the same arrivals, side by side in the compare
//! table.
//!
//! Draining a node in a what-if takes it out of service at the snapshot's moment: its running
//! jobs go back to the queue (their progress is lost, as a drain without a checkpoint loses it
//! live), at their own priority. Jobs run for the runtime the snapshot knows, else their
//! walltime (see `fork`).

use crate::compare::{Comparison, Row};
use crate::config::{AwareConfig, TwinConfig};
use crate::fork::fork;
use crate::workload::Workload;
use crate::Twin;
use fabrik_model::grid::Hourly;
use fabrik_model::Facility;
use fabrik_sched::Snapshot;

/// One alternative to the baseline; unset parts stay as the baseline has them.
#[derive(Debug, Clone, Default)]
pub struct Alternative {
    /// Its label in the table (`policy=las`, `cap=90 MW`, …).
    pub name: String,
    pub policy: Option<String>,
    /// Facility power cap, MW per hour of the twin's clock (see `EnergyConfig::cap_mw`).
    pub cap_mw: Option<Hourly>,
    pub cap_source: Option<String>,
    /// Domains taken out of service at the snapshot's moment.
    pub drain: Vec<u32>,
    pub aware: Option<AwareConfig>,
}

/// The snapshot with `drain` out of service: running jobs on those domains queued again.
pub fn drained(snap: &Snapshot, drain: &[u32]) -> Snapshot {
    let mut s = snap.clone();
    if drain.is_empty() {
        return s;
    }
    let mut keep = Vec::new();
    let mut moved = Vec::new();
    for mut j in s.running.drain(..) {
        if j.parts.iter().any(|(d, _)| drain.contains(d)) {
            j.start = None;
            j.parts.clear();
            moved.push(j);
        } else {
            keep.push(j);
        }
    }
    s.running = keep;
    // back in submission order among the queued (restore keeps the queue's key order anyway)
    s.queued.extend(moved);
    s.queued.sort_by_key(|j| j.spec.submit);
    for &d in drain {
        if !s.out_of_service.contains(&d) {
            s.out_of_service.push(d);
        }
    }
    s.out_of_service.sort_unstable();
    s
}

/// Runs the baseline (`base`: the facility's settings) and each alternative from the snapshot,
/// with `appended` arrivals after it, into one comparison.
pub fn whatif(
    snap: &Snapshot,
    facility: &Facility,
    base: &TwinConfig,
    alternatives: &[Alternative],
    appended: Option<&Workload>,
) -> Result<Comparison, String> {
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    let mut source = String::new();
    let baseline = Alternative { name: "baseline".into(), ..Alternative::default() };
    for alt in std::iter::once(&baseline).chain(alternatives) {
        for &d in &alt.drain {
            if d as usize >= facility.domains.len() {
                return Err(format!(
                    "{}: no domain {d} to drain (the facility has {})",
                    alt.name,
                    facility.domains.len()
                ));
            }
        }
        let s = drained(snap, &alt.drain);
        let (w, fk) = fork(&s, facility, appended)?;
        let mut cfg = base.clone();
        cfg.keep_job_rows = false;
        if let Some(p) = &alt.policy {
            cfg.policy = p.clone();
        }
        if let Some(c) = &alt.cap_mw {
            cfg.energy.cap_mw = Some(c.clone());
            cfg.energy.cap_source = alt.cap_source.clone().unwrap_or_default();
        }
        if let Some(a) = alt.aware {
            cfg.energy.aware = Some(a);
        }
        let report = match Twin::forked(facility, &w, cfg, fk).and_then(|t| t.run(|_| {})) {
            Ok(r) => r,
            // an alternative that cannot finish (a drain leaves a queued job no room) is a
            // finding, not a failure of the what-if: it is noted instead of a row
            Err(e) if !rows.is_empty() => {
                notes.push(format!("{}: {e}", alt.name));
                continue;
            }
            Err(e) => return Err(format!("{}: {e}", alt.name)),
        };
        if source.is_empty() {
            source = report.workload.source.clone();
            notes.extend(report.workload.notes.iter().cloned());
        }
        let mut row = Row::of(&report);
        row.policy = format!("{} ({})", alt.name, row.policy);
        rows.push(row);
    }
    Ok(Comparison { workload: source, notes, rows })
}

/// A what-if as asked for (`fabrik whatif`, `POST /v1/whatif`): synthetic arrivals for `days`
/// after the snapshot, and the alternatives. The baseline runs the snapshot's policy, settings,
/// power cap and PUE, with the zone's synthetic hourly carbon and price signals.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Request {
    pub days: f64,
    pub load: f64,
    pub seed: u64,
    pub zone: String,
    pub policies: Vec<String>,
    /// MW per hour of the day (UTC), 24 values or one.
    pub power_cap_mw: Option<Vec<f64>>,
    pub drain: Vec<u32>,
    pub energy_aware: Option<crate::config::Objective>,
}

impl Default for Request {
    fn default() -> Self {
        Request {
            days: 7.0,
            load: 0.85,
            seed: 1,
            zone: "DE".into(),
            policies: Vec::new(),
            power_cap_mw: None,
            drain: Vec::new(),
            energy_aware: None,
        }
    }
}

/// The longest what-if, days of arrivals.
pub const MAX_DAYS: f64 = 60.0;

impl Request {
    /// Runs the request on the snapshot (`facility`: the one it was taken on, with its
    /// accounts), with `extra` arrivals on top of the synthetic ones.
    pub fn run(&self, snap: &Snapshot, facility: &Facility, extra: Option<Workload>) -> Result<Comparison, String> {
        let zone =
            fabrik_model::grid::find(&self.zone).ok_or_else(|| format!("zone: unknown grid zone '{}'", self.zone))?;
        if !(0.0..=MAX_DAYS).contains(&self.days) {
            return Err(format!("days: between 0 and {MAX_DAYS}, got {}", self.days));
        }
        if !(self.load > 0.0 && self.load <= 2.0) {
            return Err(format!("load: above 0 and at most 2, got {}", self.load));
        }
        if self.policies.len() > 8 {
            return Err("policies: at most 8".into());
        }
        for p in &self.policies {
            if !fabrik_sched::POLICIES.iter().any(|(n, _)| n == p) {
                return Err(format!("policies: unknown policy '{p}'"));
            }
        }
        let mut appended = if self.days > 0.0 {
            let cfg = crate::workload::synthetic::SyntheticConfig {
                days: self.days,
                offered_load: self.load,
                ..Default::default()
            };
            Some(crate::workload::synthetic::generate(&cfg, facility, self.seed)?)
        } else {
            None
        };
        if let Some(w) = extra {
            appended = Some(match appended {
                Some(mut s) => {
                    s.source = format!("{} + {}", s.source, w.source);
                    s.jobs.extend(w.jobs);
                    s.jobs.sort_by_key(|j| j.spec.submit);
                    s
                }
                None => w,
            });
        }
        let hours = (self.days.max(1.0) * 24.0) as usize + 24 * 60;
        let mut base = crate::fork::base_config(snap, self.seed);
        base.energy.zone = zone.code.to_string();
        base.energy.intensity = Some(fabrik_model::grid::synthetic_intensity(zone, hours));
        base.energy.intensity_source = format!("synthetic hourly profile for {}", zone.code);
        base.energy.price = Some(fabrik_model::energy::synthetic_price(zone, hours));
        base.energy.price_source = format!("synthetic hourly profile for {}", zone.code);
        let mut alts: Vec<Alternative> = self
            .policies
            .iter()
            .map(|p| Alternative { name: format!("policy={p}"), policy: Some(p.clone()), ..Default::default() })
            .collect();
        if let Some(c) = &self.power_cap_mw {
            if !(c.len() == 1 || c.len() == 24) || c.iter().any(|&v| !(v.is_finite() && v > 0.0)) {
                return Err("power_cap_mw: one or 24 positive values (MW per hour of the day)".into());
            }
            let label = if c.len() == 1 { format!("{} MW", c[0]) } else { "hourly MW".to_string() };
            alts.push(Alternative {
                name: format!("cap={label}"),
                cap_mw: Some(Hourly { values: c.clone() }),
                cap_source: Some(label),
                ..Default::default()
            });
        }
        if !self.drain.is_empty() {
            let names: Vec<String> = self.drain.iter().map(u32::to_string).collect();
            alts.push(Alternative {
                name: format!("drain {}", names.join(",")),
                drain: self.drain.clone(),
                ..Default::default()
            });
        }
        if let Some(objective) = self.energy_aware {
            let aware = AwareConfig { objective, ..Default::default() };
            let name =
                serde_json::to_value(objective).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
            alts.push(Alternative { name: format!("energy-aware {name}"), aware: Some(aware), ..Default::default() });
        }
        whatif(snap, facility, &base, &alts, appended.as_ref())
    }
}

//! The twin forked from a running facility: a snapshot of the brain (`fabrik snapshot`, `GET
//! /v1/snapshot`) becomes the twin's starting state — the running jobs keep their GPUs and
//! starts, the queue its order, priorities and usage — and the twin continues from the
//! snapshot's moment, with no arrivals or with a workload appended after it.
//!
//! Times: the snapshot's clock (Unix seconds live) is shifted so that the twin's second 0 is
//! midnight UTC of the day of its earliest time (a start, a submission or the snapshot itself):
//! the synthetic grid profiles keep their hour of day, and `Workload::clock_origin` records the
//! shift. A job runs for the runtime the snapshot gives (the simulated executor's); where it
//! gives none, for its walltime (an upper bound: the runtime model of the live twin refines
//! it). Reports cover the run from the snapshot on; a running job's wait and start are its own.

use crate::workload::{TraceJob, Workload};
use fabrik_model::{Facility, Secs, SimTime};
use fabrik_sched::Snapshot;

/// What the engine needs to start from a snapshot.
#[derive(Debug, Clone)]
pub struct Fork {
    /// The snapshot in the twin's time.
    pub snapshot: Snapshot,
    /// The twin's time of the snapshot.
    pub at: SimTime,
    /// Workload jobs `0..running` are the running jobs, then `queued` queued ones; the rest
    /// arrive later.
    pub running: usize,
    pub queued: usize,
}

/// The twin's settings for continuing a snapshot: its policy and scheduler settings, and the
/// power cap and PUE in force.
pub fn base_config(snap: &Snapshot, seed: u64) -> crate::TwinConfig {
    let mut c = crate::TwinConfig::new(&snap.policy, snap.config.clone(), seed);
    if let Some(mw) = snap.power_cap_mw {
        c.energy.cap_mw = Some(fabrik_model::grid::Hourly::constant(mw));
        c.energy.cap_source = format!("{mw} MW (in force)");
    }
    if let Some(p) = snap.pue.filter(|p| p.is_finite() && *p >= 1.0) {
        c.energy.pue = fabrik_model::energy::PueModel::constant(p);
    }
    c
}

/// `facility` with the snapshot's accounts (paths and shares, in id order) under the quotas its
/// file gives those paths: the tree the snapshot's job specs refer to.
pub fn facility_of(snap: &Snapshot, facility: &Facility) -> Result<Facility, String> {
    let accounts: Vec<(String, f64)> = snap.accounts.iter().map(|a| (a.path.clone(), a.shares)).collect();
    let mut f = facility.clone();
    f.tenants = fabrik_model::TenantTree::with_quotas_of(&accounts, &facility.tenants, "snapshot accounts")
        .map_err(|e| e.to_string())?;
    Ok(f)
}

/// The snapshot's moment, its running and queued jobs and `appended` (its second 0 placed at
/// the snapshot's moment) as the twin's workload, with the fork the engine starts from. The
/// facility must be the one the snapshot was taken on, with its accounts.
pub fn fork(snap: &Snapshot, facility: &Facility, appended: Option<&Workload>) -> Result<(Workload, Fork), String> {
    fork_with(snap, facility, appended, |j, _| j.runtime_s.unwrap_or(j.spec.walltime.0))
}

/// `fork` with each snapshot job's runtime from `runtime(job, seconds it has run)` (a forecast
/// samples them from the runtime model).
pub fn fork_with(
    snap: &Snapshot,
    facility: &Facility,
    appended: Option<&Workload>,
    mut runtime: impl FnMut(&fabrik_sched::SnapJob, u64) -> u64,
) -> Result<(Workload, Fork), String> {
    let stamp = Snapshot::stamp(facility);
    if stamp != snap.facility {
        return Err(format!(
            "the snapshot was taken on facility '{}' ({} domains, {} GPUs), not '{}' ({} domains, {} GPUs): pass --facility with the server's facility",
            snap.facility.name, snap.facility.domains, snap.facility.gpus, stamp.name, stamp.domains, stamp.gpus
        ));
    }
    let jobs = snap.running.iter().chain(&snap.queued);
    let earliest = jobs.clone().flat_map(|j| [Some(j.spec.submit), j.start]).flatten().chain([snap.at]).min();
    let base = earliest.map_or(0, |t| t.0 / 86_400 * 86_400);
    let t = |x: SimTime| SimTime(x.0.saturating_sub(base));
    let mut s = snap.clone();
    s.at = t(s.at);
    s.origin = t(s.origin);
    s.last_recalc = s.last_recalc.map(t);
    s.usage = s.usage.shifted_back(base);
    for j in s.running.iter_mut().chain(s.queued.iter_mut()) {
        j.spec.submit = t(j.spec.submit);
        j.start = j.start.map(t);
        j.deferred_until = j.deferred_until.map(t);
        j.spec.earliest_start = j.spec.earliest_start.map(t);
        j.spec.deadline = j.spec.deadline.map(t);
    }
    let at = s.at;
    let mut out: Vec<TraceJob> = s
        .running
        .iter()
        .chain(&s.queued)
        .map(|j| {
            let ran = j.start.map_or(0, |st| at.0.saturating_sub(st.0));
            TraceJob { spec: j.spec.clone(), runtime: Secs(runtime(j, ran).max(1)) }
        })
        .collect();
    let mut source = format!(
        "snapshot of '{}' at Unix {} ({} running, {} queued)",
        snap.facility.name,
        snap.at.0,
        s.running.len(),
        s.queued.len()
    );
    let mut notes = vec![format!(
        "continued from a snapshot: second 0 is Unix {base}; jobs without a known runtime run for their walltime"
    )];
    if let Some(w) = appended {
        for j in &w.jobs {
            let mut spec = j.spec.clone();
            spec.submit = SimTime(spec.submit.0 + at.0);
            spec.earliest_start = spec.earliest_start.map(|x| SimTime(x.0 + at.0));
            spec.deadline = spec.deadline.map(|x| SimTime(x.0 + at.0));
            out.push(TraceJob { spec, runtime: j.runtime });
        }
        source.push_str(&format!(", then {}", w.source));
        notes.extend(w.notes.iter().cloned());
    }
    let (running, queued) = (s.running.len(), s.queued.len());
    let workload = Workload { source, notes, jobs: out, clock_origin: Some(base) };
    Ok((workload, Fork { snapshot: s, at, running, queued }))
}

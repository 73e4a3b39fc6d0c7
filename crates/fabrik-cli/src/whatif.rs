//! `fabrik whatif`: the live facility's next days under its current settings and under each
//! alternative, side by side — from the server's snapshot, run here in the twin.

use anyhow::{bail, Context, Result};
use clap::Args;
use fabrik_model::Facility;
use fabrik_twin::whatif::Request;
use std::path::PathBuf;

#[derive(Args, Debug, Clone)]
pub struct WhatifArgs {
    /// Days of synthetic arrivals after the snapshot (at --load); 0 for none.
    #[arg(long, default_value_t = 7.0)]
    days: f64,
    /// Offered load of the synthetic arrivals (GPU-time demanded / available).
    #[arg(long, default_value_t = 0.85)]
    load: f64,
    /// Seed of the random draws (same seed, same run).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The server's facility (default: the one the snapshot names, when it is a preset).
    #[arg(long)]
    facility: Option<String>,
    /// Alternatives: one per policy.
    #[arg(long, value_delimiter = ',')]
    policy: Vec<String>,
    /// An alternative under this facility power cap: MW, or MW with daily windows
    /// (120,08-20=90; hours UTC).
    #[arg(long)]
    power_cap_mw: Option<String>,
    /// An alternative with these nodes drained at the snapshot's moment: domain indices, node
    /// names, or gN for leaf group N.
    #[arg(long, num_args = 1.., value_delimiter = ',')]
    drain: Vec<String>,
    /// An alternative with the energy-aware modifier: carbon, price or both (the zone's
    /// synthetic hourly signals).
    #[arg(long)]
    energy_aware: Option<String>,
    /// Arrivals every run gets on top (a workload as `simulate --workload`, second 0 at the
    /// snapshot's moment).
    #[arg(long, value_name = "WORKLOAD")]
    add_workload: Option<String>,
    /// Grid zone of the carbon and price signals.
    #[arg(long, default_value = "DE")]
    zone: String,
    /// Write a self-contained HTML report here.
    #[arg(long)]
    html: Option<PathBuf>,
}

/// Domain indices of `--drain` entries.
fn drain_domains(f: &Facility, names: &[String]) -> Result<Vec<u32>> {
    let mut out = Vec::new();
    for n in names {
        if let Some(g) = n.strip_prefix('g').and_then(|g| g.parse::<usize>().ok()) {
            let grp = f
                .groups
                .get(g)
                .with_context(|| format!("--drain {n}: the facility has {} leaf groups", f.groups.len()))?;
            out.extend(grp.first_domain..grp.first_domain + grp.domains);
        } else if let Ok(d) = n.parse::<u32>() {
            if d as usize >= f.domains.len() {
                bail!("--drain {n}: the facility has {} nodes (domains 0–{})", f.domains.len(), f.domains.len() - 1);
            }
            out.push(d);
        } else if let Some(k) = f.node_names.iter().position(|x| x == n) {
            out.push(k as u32);
        } else {
            bail!("--drain {n}: not a domain index, a node name of the facility, or gN for a leaf group");
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

pub fn run(snap: fabrik_sched::Snapshot, a: &WhatifArgs, json: bool) -> Result<()> {
    let file = crate::load_facility(a.facility.as_deref().unwrap_or(&snap.facility.name))?;
    let facility = fabrik_twin::fork::facility_of(&snap, &file).map_err(anyhow::Error::msg)?;
    for p in &a.policy {
        crate::check_policy(p)?;
    }
    let extra = match &a.add_workload {
        Some(spec) => {
            let tz = jiff::tz::TimeZone::UTC;
            Some(crate::load_workload_with(spec, &facility, None, a.load, a.seed, 0.0, &tz)?.0)
        }
        None => None,
    };
    let req = Request {
        days: a.days,
        load: a.load,
        seed: a.seed,
        zone: a.zone.clone(),
        policies: a.policy.clone(),
        power_cap_mw: a.power_cap_mw.as_deref().map(crate::energy::daily_cap).transpose()?.map(|h| h.values),
        drain: drain_domains(&facility, &a.drain)?,
        energy_aware: match &a.energy_aware {
            Some(e) => Some(crate::energy::objective(e)?.context("--energy-aware takes carbon, price or both")?),
            None => None,
        },
    };
    let c = req.run(&snap, &facility, extra).map_err(|e| anyhow::anyhow!("whatif: {e}"))?;
    if json {
        println!("{}", c.to_json());
    } else {
        print!("{}", c.table());
    }
    if let Some(p) = &a.html {
        std::fs::write(p, c.html()).with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}

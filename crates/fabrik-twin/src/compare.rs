//! Several policies or facilities on one workload, side by side.

use crate::report::{dur, Report};
use serde::Serialize;
use std::fmt::Write as _;

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub policy: String,
    pub facility: String,
    pub gpus: u64,
    pub jct_mean_s: f64,
    pub jct_median_s: f64,
    pub jct_p95_s: f64,
    pub wait_mean_s: f64,
    pub wait_p95_s: f64,
    pub bounded_slowdown_mean: f64,
    pub utilisation: f64,
    pub jain_index: f64,
    pub max_time_to_guarantee_s: f64,
    pub preemptions: u64,
    pub lost_gpu_hours: f64,
    pub restart_overhead_gpu_hours: f64,
    /// The energy-aware modifier ("off", "carbon", "price", "both").
    pub energy_aware: String,
    pub facility_mwh: f64,
    pub emissions_t: f64,
    pub cost_eur: f64,
    pub flexible_emissions_t: f64,
    pub flexible_deadlines_missed: u64,
    /// Mean wait of the jobs without a deadline (the ones the modifier never holds).
    pub inflexible_wait_mean_s: f64,
    pub cap_lost_share: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub workload: String,
    pub notes: Vec<String>,
    pub rows: Vec<Row>,
}

impl Row {
    pub fn of(r: &Report) -> Row {
        let s = &r.summary;
        Row {
            policy: r.config.policy.clone(),
            facility: r.facility.name.clone(),
            gpus: r.facility.gpus,
            jct_mean_s: s.jct_s.mean,
            jct_median_s: s.jct_s.median,
            jct_p95_s: s.jct_s.p95,
            wait_mean_s: s.wait_s.mean,
            wait_p95_s: s.wait_s.p95,
            bounded_slowdown_mean: s.bounded_slowdown.mean,
            utilisation: s.utilisation_arrival_window,
            jain_index: s.jain_index,
            max_time_to_guarantee_s: s.max_time_to_guarantee_s,
            preemptions: s.preemptions,
            lost_gpu_hours: s.lost_gpu_hours + s.restart_overhead_gpu_hours,
            restart_overhead_gpu_hours: s.restart_overhead_gpu_hours,
            energy_aware: r.config.energy.aware.map_or("off".to_string(), |a| {
                serde_json::to_value(a.objective).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
            }),
            facility_mwh: r.energy.totals.facility_mwh,
            emissions_t: r.energy.totals.emissions_t,
            cost_eur: r.energy.totals.cost_eur,
            flexible_emissions_t: r.energy.flexible.share.emissions_t,
            flexible_deadlines_missed: r.energy.flexible.deadlines_missed,
            inflexible_wait_mean_s: r.energy.flexible.inflexible_mean_wait_s,
            cap_lost_share: r.energy.cap_lost_share,
        }
    }
}

const N: usize = 21;
const HEAD: [&str; N] = [
    "policy",
    "facility",
    "energy-aware",
    "JCT mean",
    "JCT median",
    "JCT p95",
    "wait mean",
    "wait p95",
    "inflex wait",
    "BSLD",
    "util",
    "Jain",
    "TTG max",
    "preempt",
    "GPUh lost",
    "MWh",
    "tCO2",
    "flex tCO2",
    "missed",
    "EUR",
    "cap lost",
];

impl Comparison {
    fn cells(r: &Row) -> [String; N] {
        [
            r.policy.clone(),
            r.facility.clone(),
            r.energy_aware.clone(),
            dur(r.jct_mean_s),
            dur(r.jct_median_s),
            dur(r.jct_p95_s),
            dur(r.wait_mean_s),
            dur(r.wait_p95_s),
            dur(r.inflexible_wait_mean_s),
            format!("{:.2}", r.bounded_slowdown_mean),
            format!("{:.1}%", r.utilisation * 100.0),
            format!("{:.3}", r.jain_index),
            dur(r.max_time_to_guarantee_s),
            r.preemptions.to_string(),
            format!("{:.1}", r.lost_gpu_hours),
            format!("{:.0}", r.facility_mwh),
            format!("{:.1}", r.emissions_t),
            format!("{:.1}", r.flexible_emissions_t),
            r.flexible_deadlines_missed.to_string(),
            format!("{:.0}", r.cost_eur),
            format!("{:.1}%", r.cap_lost_share * 100.0),
        ]
    }

    pub fn table(&self) -> String {
        let mut rows: Vec<[String; N]> = vec![HEAD.map(String::from)];
        rows.extend(self.rows.iter().map(Self::cells));
        let widths: Vec<usize> = (0..N).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
        let mut o = format!("workload: {}\n", self.workload);
        for n in &self.notes {
            let _ = writeln!(o, "  note: {n}");
        }
        for r in rows {
            let line: Vec<String> = r
                .iter()
                .enumerate()
                .map(|(c, v)| if c < 3 { format!("{v:<w$}", w = widths[c]) } else { format!("{v:>w$}", w = widths[c]) })
                .collect();
            let _ = writeln!(o, "{}", line.join("  "));
        }
        let _ = writeln!(o, "(BSLD = mean bounded slowdown; util while jobs arrive; TTG = time-to-guarantee; GPUh lost = lost work + restart overhead; tCO2 location-based from the grid; inflex wait = mean wait of the jobs without a deadline; flex = flexible jobs' share; missed = jobs that ended after their deadline; cap lost = GPU capacity idle while the power cap held work back)");
        o
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("comparison serialises")
    }

    pub fn html(&self) -> String {
        let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
        let mut o = format!(
            "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>fabrik compare</title>\
             <style>body{{font-family:system-ui,sans-serif;margin:2em}}table{{border-collapse:collapse;font-size:13px}}\
             td,th{{border-bottom:1px solid #ddd;padding:3px 8px;text-align:right}}td:nth-child(-n+3),th:nth-child(-n+3){{text-align:left}}\
             .bar{{display:inline-block;height:10px;background:#2a6fdb}}</style></head><body><h1>fabrik compare</h1><p>Workload: {}</p>",
            esc(&self.workload)
        );
        for n in &self.notes {
            let _ = write!(o, "<p style=\"color:#666\">Note: {}</p>", esc(n));
        }
        o.push_str("<table><tr>");
        for h in HEAD {
            let _ = write!(o, "<th>{h}</th>");
        }
        o.push_str("</tr>");
        for r in &self.rows {
            o.push_str("<tr>");
            for c in Self::cells(r) {
                let _ = write!(o, "<td>{}</td>", esc(&c));
            }
            o.push_str("</tr>");
        }
        o.push_str("</table><h2>Mean JCT</h2><table>");
        let max = self.rows.iter().map(|r| r.jct_mean_s).fold(1e-9, f64::max);
        for r in &self.rows {
            let _ = write!(
                o,
                "<tr><td>{} / {}</td><td style=\"text-align:left\"><span class=\"bar\" style=\"width:{:.0}px\"></span> {}</td></tr>",
                esc(&r.policy),
                esc(&r.facility),
                400.0 * r.jct_mean_s / max,
                dur(r.jct_mean_s)
            );
        }
        o.push_str("</table></body></html>\n");
        o
    }
}

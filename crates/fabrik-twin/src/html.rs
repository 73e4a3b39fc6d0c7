//! The report as one self-contained HTML page: inline SVG charts, no scripts, no network.

use crate::report::{dur, Report};
use std::fmt::Write as _;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

const W: f64 = 760.0;
const H: f64 = 220.0;
const PAD: f64 = 44.0;

/// A line chart of `ys` sampled every `dx_days` days, y from 0 to `ymax`.
fn line_chart(title: &str, ys: &[f64], dx_days: f64, ymax: f64, ylabel: &dyn Fn(f64) -> String, color: &str) -> String {
    lines_chart(title, &[(ys, color, "")], dx_days, ymax, ylabel)
}

/// Several series (values, colour, legend label) on one time axis.
fn lines_chart(
    title: &str,
    series: &[(&[f64], &str, &str)],
    dx_days: f64,
    ymax: f64,
    ylabel: &dyn Fn(f64) -> String,
) -> String {
    let mut o = String::new();
    let n = series.iter().map(|s| s.0.len()).max().unwrap_or(0);
    let _ = write!(
        o,
        r#"<figure><figcaption>{}</figcaption><svg viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{}">"#,
        esc(title),
        esc(title)
    );
    let (x0, x1, y0, y1) = (PAD, W - 10.0, H - 24.0, 10.0);
    let days = (n as f64 * dx_days).max(dx_days);
    let ymax = if ymax > 0.0 { ymax } else { 1.0 };
    for k in 0..=4 {
        let v = ymax * f64::from(k) / 4.0;
        let y = y0 + (y1 - y0) * f64::from(k) / 4.0;
        let _ = write!(
            o,
            r##"<line x1="{x0}" y1="{y:.1}" x2="{x1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" font-size="10" text-anchor="end">{}</text>"##,
            x0 - 4.0,
            y + 3.0,
            esc(&ylabel(v))
        );
    }
    let step = (days / 8.0).ceil().max(1.0);
    let mut d = 0.0;
    while d <= days {
        let x = x0 + (x1 - x0) * d / days;
        let _ = write!(o, r#"<text x="{x:.1}" y="{}" font-size="10" text-anchor="middle">day {d}</text>"#, H - 8.0);
        d += step;
    }
    for (k, &(ys, color, label)) in series.iter().enumerate() {
        let pts: Vec<String> = ys
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let x = x0 + (x1 - x0) * (i as f64 + 0.5) * dx_days / days;
                let y = y0 + (y1 - y0) * (v / ymax).clamp(0.0, 1.0);
                format!("{x:.1},{y:.1}")
            })
            .collect();
        let _ = write!(
            o,
            r#"<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{}"><title>{}</title></polyline>"#,
            pts.join(" "),
            esc(label)
        );
        if !label.is_empty() {
            let lx = x0 + 10.0 + 150.0 * k as f64;
            let _ = write!(
                o,
                r#"<rect x="{lx:.1}" y="{}" width="12" height="3" fill="{color}"/><text x="{:.1}" y="{}" font-size="10">{}</text>"#,
                y1 + 2.0,
                lx + 16.0,
                y1 + 6.0,
                esc(label)
            );
        }
    }
    o.push_str("</svg></figure>");
    o
}

/// Horizontal bars: (label, values) with one colour per series.
fn bar_chart(title: &str, rows: &[(String, Vec<f64>)], series: &[(&str, &str)], fmt: &dyn Fn(f64) -> String) -> String {
    let row_h = 14.0 * series.len() as f64 + 8.0;
    let h = 30.0 + row_h * rows.len() as f64;
    let label_w = 250.0;
    let max = rows.iter().flat_map(|r| r.1.iter().copied()).fold(0.0, f64::max).max(1e-12);
    let mut o = String::new();
    let _ = write!(
        o,
        r#"<figure><figcaption>{}</figcaption><svg viewBox="0 0 {W} {h}" width="{W}" height="{h}" role="img" aria-label="{}">"#,
        esc(title),
        esc(title)
    );
    for (k, (name, color)) in series.iter().enumerate() {
        let x = label_w + 130.0 * k as f64;
        let _ = write!(
            o,
            r#"<rect x="{x}" y="4" width="10" height="10" fill="{color}"/><text x="{}" y="13" font-size="11">{}</text>"#,
            x + 14.0,
            esc(name)
        );
    }
    for (i, (label, vals)) in rows.iter().enumerate() {
        let y = 24.0 + row_h * i as f64;
        let _ = write!(
            o,
            r#"<text x="{}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"#,
            label_w - 6.0,
            y + row_h / 2.0,
            esc(label)
        );
        for (k, v) in vals.iter().enumerate() {
            let wbar = (W - label_w - 90.0) * v / max;
            let yy = y + 14.0 * k as f64;
            let _ = write!(
                o,
                r#"<rect x="{label_w}" y="{yy:.1}" width="{wbar:.1}" height="12" fill="{}"/><text x="{:.1}" y="{:.1}" font-size="10">{}</text>"#,
                series[k].1,
                label_w + wbar + 4.0,
                yy + 10.0,
                esc(&fmt(*v))
            );
        }
    }
    o.push_str("</svg></figure>");
    o
}

pub fn render(r: &Report) -> String {
    let s = &r.summary;
    let f = &r.facility;
    let mut o = String::new();
    let _ = write!(
        o,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>fabrik report — {name}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:820px;margin:2em auto;color:#222}}table{{border-collapse:collapse;font-size:13px}}td,th{{border-bottom:1px solid #ddd;padding:3px 8px;text-align:right}}td:first-child,th:first-child{{text-align:left}}figure{{margin:1.5em 0}}figcaption{{font-weight:600;margin-bottom:.3em}}.note{{color:#666;font-size:13px}}</style></head><body>
<h1>fabrik simulation report</h1><p><b>{name}</b>: {gpus} GPUs, {mw:.1} MW nameplate IT power. Policy <b>{policy}</b>. Workload: {src}.</p>"#,
        name = esc(&f.name),
        gpus = f.gpus,
        mw = f.nameplate_it_power_mw,
        policy = esc(&r.config.policy),
        src = esc(&r.workload.source)
    );
    for n in &r.workload.notes {
        let _ = write!(o, r#"<p class="note">Note: {}</p>"#, esc(n));
    }
    let _ = write!(o, "<table><tr><th>metric</th><th>value</th></tr>");
    let rows = [
        ("jobs", s.jobs.to_string()),
        ("killed at walltime", s.killed_at_walltime.to_string()),
        ("GPU-hours", format!("{:.0}", s.gpu_hours)),
        ("makespan", dur(s.makespan_s as f64)),
        ("utilisation (while jobs arrive)", format!("{:.1}%", s.utilisation_arrival_window * 100.0)),
        ("utilisation (makespan, drain included)", format!("{:.1}%", s.utilisation * 100.0)),
        ("mean / p95 wait", format!("{} / {}", dur(s.wait_s.mean), dur(s.wait_s.p95))),
        ("mean / p95 JCT", format!("{} / {}", dur(s.jct_s.mean), dur(s.jct_s.p95))),
        ("mean / p95 bounded slowdown", format!("{:.2} / {:.2}", s.bounded_slowdown.mean, s.bounded_slowdown.p95)),
        ("Jain's fairness index", format!("{:.3}", s.jain_index)),
    ];
    for (k, v) in rows {
        let _ = write!(o, "<tr><td>{k}</td><td>{}</td></tr>", esc(&v));
    }
    o.push_str("</table>");
    let dx = r.timeseries.bucket_s as f64 / 86_400.0;
    o.push_str(&line_chart(
        "GPU utilisation over time",
        &r.timeseries.utilisation,
        dx,
        1.0,
        &|v| format!("{:.0}%", v * 100.0),
        "#2a6fdb",
    ));
    let qmax = r.timeseries.queue_length.iter().copied().fold(0.0, f64::max);
    o.push_str(&line_chart(
        "Queue length (pending jobs) over time",
        &r.timeseries.queue_length,
        dx,
        qmax,
        &|v| format!("{v:.0}"),
        "#d9822b",
    ));
    let t = &r.timeseries;
    let pmax = t.facility_mw.iter().chain(&t.cap_mw).copied().fold(0.0, f64::max) * 1.05;
    let mut power: Vec<(&[f64], &str, &str)> =
        vec![(&t.facility_mw, "#3a9d5d", "facility"), (&t.grid_mw, "#2a6fdb", "grid draw")];
    if !t.cap_mw.is_empty() {
        power.push((&t.cap_mw, "#c0392b", "cap"));
    }
    let e = &r.energy;
    o.push_str(&lines_chart(
        &format!(
            "Facility power vs cap (MW): {:.1} MWh facility, effective PUE {:.3}, {:.1} MWh from the grid, {:.1} tCO2e, EUR {:.0}",
            e.totals.facility_mwh, e.effective_pue, e.totals.grid_mwh, e.totals.emissions_t, e.totals.cost_eur
        ),
        &power,
        dx,
        pmax,
        &|v| format!("{v:.1}"),
    ));
    let cmax = t.gco2_per_kwh.iter().copied().fold(0.0, f64::max) * 1.05;
    o.push_str(&line_chart(
        &format!("Grid carbon intensity (gCO2/kWh, {}, {})", e.zone, e.intensity_source),
        &t.gco2_per_kwh,
        dx,
        cmax,
        &|v| format!("{v:.0}"),
        "#7f5539",
    ));
    let fl = &e.flexible;
    if fl.jobs > 0 || e.cap_max_mw.is_some() {
        let _ = write!(
            o,
            "<h2>Energy</h2><table><tr><th>item</th><th>value</th></tr>             <tr><td>renewables used on site / curtailed</td><td>{:.1} / {:.1} MWh</td></tr>             <tr><td>battery in / out</td><td>{:.1} / {:.1} MWh</td></tr>             <tr><td>GPU capacity idle while the cap held work back</td><td>{:.0} GPU-hours ({:.1}%)</td></tr>             <tr><td>jobs run power-limited</td><td>{}</td></tr>             <tr><td>flexible jobs (deferred)</td><td>{} ({})</td></tr>             <tr><td>flexible deadlines met / missed</td><td>{} / {}</td></tr>             <tr><td>flexible jobs: IT energy, emissions, cost</td><td>{:.1} MWh, {:.1} tCO2e, EUR {:.0}</td></tr></table>",
            e.totals.renewable_mwh,
            e.totals.curtailed_mwh,
            e.totals.battery_in_mwh,
            e.totals.battery_out_mwh,
            e.cap_lost_gpu_hours,
            e.cap_lost_share * 100.0,
            e.power_limited_jobs,
            fl.jobs,
            fl.deferred_jobs,
            fl.deadlines_met,
            fl.deadlines_missed,
            fl.share.it_mwh,
            fl.share.emissions_t,
            fl.share.cost_eur
        );
    }
    if r.summary.failures > 0 {
        let dmax = r.timeseries.down_gpus.iter().copied().fold(0.0, f64::max);
        o.push_str(&line_chart(
            "GPUs out of service (failed, in repair) over time",
            &r.timeseries.down_gpus,
            dx,
            dmax,
            &|v| format!("{v:.0}"),
            "#c0392b",
        ));
        let _ = write!(
            o,
            "<h2>Failures</h2><p>{} failures, {} job interruptions ({:.1}/day), {:.0} GPU-hours of work lost; ETTR mean {:.3}, goodput mean {:.3}.</p>\
             <table><tr><th>GPUs</th><th>jobs</th><th>interruptions</th><th>job-hours</th><th>MTBF (h)</th><th>mean ETTR</th></tr>",
            r.summary.failures,
            r.summary.interruptions,
            r.summary.interruptions_per_day,
            r.summary.failure_lost_gpu_hours,
            r.summary.ettr.mean,
            r.summary.goodput.mean
        );
        for x in &r.reliability {
            let mtbf = x.mtbf_hours.map_or("-".to_string(), |m| format!("{m:.1}"));
            let _ = write!(
                o,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.0}</td><td>{}</td><td>{:.3}</td></tr>",
                esc(&x.gpus),
                x.jobs,
                x.interruptions,
                x.run_hours,
                mtbf,
                x.mean_ettr
            );
        }
        o.push_str("</table>");
    }
    let shares: Vec<(String, Vec<f64>)> =
        r.accounts.iter().map(|a| (a.account.clone(), vec![a.entitled_share, a.used_share])).collect();
    o.push_str(&bar_chart(
        "Share of GPU-hours: entitled vs used, per account",
        &shares,
        &[("entitled", "#9bb7e0"), ("used", "#2a6fdb")],
        &|v| format!("{:.1}%", v * 100.0),
    ));
    let hist: Vec<(String, Vec<f64>)> =
        r.wait_histogram.iter().map(|b| (format!("wait {}", b.wait), vec![b.jobs as f64])).collect();
    o.push_str(&bar_chart("Wait-time distribution (jobs)", &hist, &[("jobs", "#d9822b")], &|v| format!("{v:.0}")));
    o.push_str("<h2>Wait by job size</h2><table><tr><th>GPUs</th><th>jobs</th><th>GPU-hours</th><th>mean wait</th><th>p95 wait</th><th>max wait</th></tr>");
    for z in &r.size_classes {
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{:.0}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&z.gpus),
            z.jobs,
            z.gpu_hours,
            dur(z.mean_wait_s),
            dur(z.p95_wait_s),
            dur(z.max_wait_s)
        );
    }
    o.push_str("</table></body></html>\n");
    o
}

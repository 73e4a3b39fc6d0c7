//! The report's outputs: JSON, the per-job and energy CSVs, and the text summary.

use super::*;
use std::fmt::Write as _;

/// Human-readable seconds: 42s, 3.5m, 2.1h, 1.3d.
pub fn dur(s: f64) -> String {
    fabrik_model::Secs(s.round() as u64).to_string()
}

impl Report {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("report serialises")
    }

    /// Per-job outcomes as CSV (empty when the run did not keep job rows:
    /// `TwinConfig::keep_job_rows`).
    pub fn jobs_csv(&self) -> String {
        let mut w = csv::Writer::from_writer(Vec::new());
        for j in &self.jobs {
            w.serialize(j).expect("in-memory CSV");
        }
        String::from_utf8(w.into_inner().expect("in-memory CSV")).expect("UTF-8")
    }

    /// The hourly energy ledger as CSV: hour from the start, MWh per flow, tCO2, EUR, peak MW.
    pub fn energy_csv(&self) -> String {
        let mut o = String::from(
            "hour,it_mwh,facility_mwh,renewable_mwh,battery_in_mwh,battery_out_mwh,curtailed_mwh,grid_mwh,emissions_t,cost_eur,peak_facility_mw\n",
        );
        for (h, r) in self.energy.hours.iter().enumerate() {
            let _ = writeln!(
                o,
                "{h},{},{},{},{},{},{},{},{},{},{}",
                r.it_mwh,
                r.facility_mwh,
                r.renewable_mwh,
                r.battery_in_mwh,
                r.battery_out_mwh,
                r.curtailed_mwh,
                r.grid_mwh,
                r.emissions_t,
                r.cost_eur,
                r.peak_facility_mw
            );
        }
        o
    }

    /// The terminal summary.
    pub fn summary_text(&self) -> String {
        let s = &self.summary;
        let f = &self.facility;
        let mut o = String::new();
        let _ = writeln!(
            o,
            "fabrik simulate — {} ({} GPUs, {:.1} MW nameplate IT), policy {}",
            f.name, f.gpus, f.nameplate_it_power_mw, self.config.policy
        );
        let _ = writeln!(o, "workload: {}", self.workload.source);
        if let (Some(a), Some(b)) = (&self.workload.start_utc, &self.workload.end_utc) {
            let _ = writeln!(o, "calendar: from {a} (second 0) to {b} (the last end)");
        }
        for n in &self.workload.notes {
            let _ = writeln!(o, "  note: {n}");
        }
        let _ = writeln!(
            o,
            "jobs {} ({} killed at walltime), {:.0} GPU-hours, makespan {}",
            s.jobs,
            s.killed_at_walltime,
            s.gpu_hours,
            dur(s.makespan_s as f64)
        );
        let _ = writeln!(
            o,
            "utilisation {:.1}% while jobs arrive ({:.1}% over the makespan, the drain after the last arrival included); queue mean {:.1}, max {:.0}",
            s.utilisation_arrival_window * 100.0,
            s.utilisation * 100.0,
            s.mean_queue_length,
            s.max_queue_length
        );
        let _ = writeln!(o, "{:<18} {:>10} {:>10} {:>10} {:>10}", "", "mean", "median", "p95", "max");
        for (name, st, is_time) in
            [("wait", &s.wait_s, true), ("JCT", &s.jct_s, true), ("bounded slowdown", &s.bounded_slowdown, false)]
        {
            let v = |x: f64| if is_time { dur(x) } else { format!("{x:.2}") };
            let _ =
                writeln!(o, "{:<18} {:>10} {:>10} {:>10} {:>10}", name, v(st.mean), v(st.median), v(st.p95), v(st.max));
        }
        let _ = writeln!(o, "fairness (Jain's index of used/entitled share over accounts): {:.3}", s.jain_index);
        let g = &s.gpu_time;
        let all = g.productive_gpu_hours
            + g.lost_work_gpu_hours
            + g.restarting_gpu_hours
            + g.checkpointing_gpu_hours
            + g.idle_gpu_hours
            + g.out_of_service_gpu_hours;
        let pct = |x: f64| if all > 0.0 { 100.0 * x / all } else { 0.0 };
        let _ = writeln!(
            o,
            "GPU time: productive {:.1}%, lost work {:.1}%, restarting {:.1}%, checkpointing {:.1}%, idle {:.1}%, out of service {:.1}%; goodput {:.3}",
            pct(g.productive_gpu_hours),
            pct(g.lost_work_gpu_hours),
            pct(g.restarting_gpu_hours),
            pct(g.checkpointing_gpu_hours),
            pct(g.idle_gpu_hours),
            pct(g.out_of_service_gpu_hours),
            g.goodput
        );
        if s.preemptions > 0 {
            let _ = writeln!(o, "preemptions {}: {:.1} GPU-hours of work lost", s.preemptions, s.lost_gpu_hours);
        }
        let r = &s.restarts;
        for (what, st) in
            [("preemptions", &r.after_preemption), ("failures", &r.after_failure), ("drains", &r.after_drain)]
        {
            if st.restarts > 0 {
                let _ = writeln!(
                    o,
                    "restarts after {what}: {} of {:.0} s on average, {:.1} GPU-hours restarting",
                    st.restarts, st.mean_s, st.gpu_hours
                );
            }
        }
        if s.failures > 0 {
            let _ = writeln!(
                o,
                "failures {}: {} job interruptions ({:.1}/day), {:.1} GPU-hours of work lost; ETTR mean {:.3} (p5 of jobs ≥ {:.3}), goodput mean {:.3}",
                s.failures,
                s.interruptions,
                s.interruptions_per_day,
                s.failure_lost_gpu_hours,
                s.ettr.mean,
                self.reliability.iter().map(|r| r.mean_ettr).fold(1.0, f64::min),
                s.goodput.mean
            );
            for r in self.reliability.iter().filter(|r| r.interruptions > 0) {
                let _ = writeln!(
                    o,
                    "  {:>9} GPUs: {} interruptions over {:.0} job-hours, MTBF {:.1} h, mean ETTR {:.3}",
                    r.gpus,
                    r.interruptions,
                    r.run_hours,
                    r.mtbf_hours.unwrap_or(f64::INFINITY),
                    r.mean_ettr
                );
            }
        }
        let e = &self.energy;
        let _ = writeln!(
            o,
            "energy: {:.1} MWh IT, {:.1} MWh facility (effective PUE {:.3}), {:.1} MWh from the grid; {:.1} tCO2e (mean {:.0} gCO2/kWh, {}, {}), EUR {:.0}; facility power mean {:.2} MW, peak {:.2} MW",
            e.totals.it_mwh, e.totals.facility_mwh, e.effective_pue, e.totals.grid_mwh, e.totals.emissions_t, e.gco2_per_kwh, e.zone, e.intensity_source, e.totals.cost_eur, e.mean_facility_mw, e.totals.peak_facility_mw
        );
        if e.totals.renewable_mwh > 0.0 || e.totals.battery_out_mwh > 0.0 {
            let _ = writeln!(
                o,
                "on site: {:.1} MWh renewables used, {:.1} MWh curtailed; battery {:.1} MWh in, {:.1} MWh out; peak grid draw {:.2} MW",
                e.totals.renewable_mwh, e.totals.curtailed_mwh, e.totals.battery_in_mwh, e.totals.battery_out_mwh, e.peak_grid_mw
            );
        }
        if let (Some(lo), Some(hi)) = (e.cap_min_mw, e.cap_max_mw) {
            let _ = writeln!(
                o,
                "power cap {lo:.3}–{hi:.3} MW ({}): {:.0} GPU-hours idle while the cap held work back ({:.1}% of capacity); {} jobs ran power-limited",
                e.cap_source,
                e.cap_lost_gpu_hours,
                e.cap_lost_share * 100.0,
                e.power_limited_jobs
            );
        }
        let fl = &e.flexible;
        if fl.jobs > 0 {
            let _ = writeln!(
                o,
                "flexible jobs: {} ({} deferred, their claimed GPUs idle {:.0} GPU-hours), mean wait {}, deadlines met {} / missed {}; {:.1} MWh IT, {:.1} tCO2e, EUR {:.0}; the {} others: mean wait {}, mean BSLD {:.2}",
                fl.jobs,
                fl.deferred_jobs,
                fl.claimed_idle_gpu_hours,
                dur(fl.mean_wait_s),
                fl.deadlines_met,
                fl.deadlines_missed,
                fl.share.it_mwh,
                fl.share.emissions_t,
                fl.share.cost_eur,
                fl.inflexible_jobs,
                dur(fl.inflexible_mean_wait_s),
                fl.inflexible_bsld_mean
            );
        }
        if let Some(m) = &self.maintenance {
            let _ = writeln!(
                o,
                "predictive maintenance: {} drains ({} true, {} false), precision {:.2}, recall {:.2} of predictable / {:.2} of all failures; {} failures avoided, {} jobs moved, ~{:.0} GPU-hours saved, {:.0} GPU-hours of healthy nodes drained",
                m.counts.drains,
                m.counts.true_drains,
                m.counts.false_drains,
                m.precision,
                m.recall_predictable,
                m.recall_all,
                m.counts.failures_avoided,
                m.counts.jobs_moved,
                m.counts.gpu_hours_saved_estimate,
                m.counts.false_drain_gpu_hours
            );
        }
        for c in self.classes.iter().filter(|c| c.guaranteed_jobs > 0) {
            let _ = writeln!(
                o,
                "time-to-guarantee {}: {} jobs, mean {}, max {}",
                c.account,
                c.guaranteed_jobs,
                dur(c.time_to_guarantee_mean_s),
                dur(c.time_to_guarantee_max_s)
            );
        }
        let _ = writeln!(
            o,
            "\n{:<34} {:>7} {:>12} {:>9} {:>9} {:>10} {:>10}",
            "class / account", "jobs", "GPU-hours", "entitled", "used", "mean wait", "p95 wait"
        );
        for c in &self.classes {
            let _ = writeln!(o, "{}", account_line(c));
            for a in self.accounts.iter().filter(|a| a.account.split('/').next() == Some(c.account.as_str())) {
                let mut a = a.clone();
                a.account = format!("  {}", a.account);
                let _ = writeln!(o, "{}", account_line(&a));
            }
        }
        let _ = writeln!(
            o,
            "\n{:<10} {:>8} {:>12} {:>10} {:>10} {:>10}",
            "job GPUs", "jobs", "GPU-hours", "mean wait", "p95 wait", "max wait"
        );
        for r in &self.size_classes {
            let _ = writeln!(
                o,
                "{:<10} {:>8} {:>12.0} {:>10} {:>10} {:>10}",
                r.gpus,
                r.jobs,
                r.gpu_hours,
                dur(r.mean_wait_s),
                dur(r.p95_wait_s),
                dur(r.max_wait_s)
            );
        }
        o
    }
}

fn account_line(a: &AccountRow) -> String {
    format!(
        "{:<34} {:>7} {:>12.0} {:>8.1}% {:>8.1}% {:>10} {:>10}",
        a.account,
        a.jobs,
        a.gpu_hours,
        a.entitled_share * 100.0,
        a.used_share * 100.0,
        dur(a.mean_wait_s),
        dur(a.p95_wait_s)
    )
}

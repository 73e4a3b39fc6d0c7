//! The simulation report: per job, per account, per tenant class, per job-size class, the
//! facility over time, and fairness. Serialised as JSON (byte-identical for identical inputs),
//! summarised as text, drawn as HTML.

use crate::config::TwinConfig;
use crate::failure_model::Maintenance;
use crate::joblog::JobLog;
use crate::metrics::{jain, Stats, TimeSeries};
use crate::workload::Workload;
use fabrik_model::{Facility, SimTime};
use std::collections::BTreeMap;

mod output;
mod types;
pub use output::dur;
pub use types::*;

/// Bounded slowdown uses a 10-second threshold so very short jobs do not dominate
/// (Feitelson et al., "Theory and practice in parallel job scheduling", 1997).
pub const BSLD_TAU_S: f64 = 10.0;

pub(crate) struct Inputs<'a> {
    pub interruptions: &'a [crate::failure_model::Interruption],
    pub restarts: &'a Restarts,
    pub facility: &'a Facility,
    pub workload: &'a Workload,
    pub cfg: &'a TwinConfig,
    pub log: &'a JobLog,
    pub busy: &'a TimeSeries,
    pub queue: &'a TimeSeries,
    pub events: u64,
    pub passes: u64,
    pub failures: Option<FailureCounts>,
    pub down: &'a TimeSeries,
    pub maintenance: Option<Maintenance>,
    pub spare_swaps: u64,
    pub ledger: &'a crate::energy::Ledger,
    pub cap_lost: &'a TimeSeries,
    pub claim_idle: &'a TimeSeries,
}

const SIZE_CLASSES: &[(u32, u32, &str)] = &[
    (1, 1, "1"),
    (2, 8, "2-8"),
    (9, 64, "9-64"),
    (65, 512, "65-512"),
    (513, 4096, "513-4096"),
    (4097, u32::MAX, ">4096"),
];
const WAIT_BINS: &[(u64, &str)] = &[
    (1, "0"),
    (60, "<1m"),
    (600, "1-10m"),
    (3600, "10m-1h"),
    (6 * 3600, "1-6h"),
    (86_400, "6h-1d"),
    (3 * 86_400, "1-3d"),
    (u64::MAX, ">3d"),
];

/// Failures that happened (when modelled): all of them and per cause (the run's root causes,
/// then the leaf switch).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FailureCounts {
    pub total: u64,
    pub by_cause: Vec<u64>,
}

/// Per job-size class: jobs, GPU-hours and waits.
#[derive(Debug, Clone, Default)]
struct SizeTally {
    jobs: u64,
    gpu_hours: f64,
    waits: Vec<f64>,
}

/// Per job-size class: jobs, their interruptions, run seconds and ETTRs.
#[derive(Debug, Clone, Default)]
struct ReliabilityTally {
    jobs: u64,
    interruptions: u64,
    run_s: f64,
    ettrs: Vec<f64>,
}

/// Jobs, GPU-hours, waits and time-to-guarantee of an account or a class.
#[derive(Default)]
struct Tally {
    jobs: u64,
    gpu_hours: f64,
    entitled: f64,
    waits: Vec<f64>,
    ttg: Vec<f64>,
}

pub(crate) fn build(i: Inputs<'_>) -> Report {
    let tenants = &i.facility.tenants;
    let total_gpus = i.facility.total_gpus() as f64;
    let mut jobs = Vec::with_capacity(if i.cfg.keep_job_rows { i.workload.jobs.len() } else { 0 });
    let (mut waits, mut jcts, mut sld, mut bsld) = (vec![], vec![], vec![], vec![]);
    let mut per_account: BTreeMap<usize, Tally> = BTreeMap::new();
    let (mut preemptions, mut lost, mut overhead) = (0u64, 0.0, 0.0);
    let (mut held_all, mut ckpt_all) = (0.0, 0.0);
    let mut per_preempted: Vec<f64> = Vec::new();
    // per job, the times failures interrupted it (only for the per-job rows)
    let mut interrupted_at: BTreeMap<u32, String> = BTreeMap::new();
    if i.cfg.keep_job_rows {
        for x in i.interruptions {
            let t = interrupted_at.entry(x.job.0).or_default();
            if !t.is_empty() {
                t.push(';');
            }
            t.push_str(&x.at.0.to_string());
        }
    }
    let (mut interruptions, mut fail_lost) = (0u64, 0.0);
    let mut energy_by_account: BTreeMap<usize, crate::energy::Share> = BTreeMap::new();
    let mut flex = FlexibleSummary::default();
    let mut flex_waits = 0.0;
    let (mut inflex_waits, mut inflex_bsld) = (0.0, 0.0);
    let mut power_limited_jobs = 0;
    let (mut ettrs, mut goodputs) = (vec![], vec![]);
    let mut rel = vec![ReliabilityTally::default(); SIZE_CLASSES.len()];
    let mut per_size = vec![SizeTally::default(); SIZE_CLASSES.len()];
    let mut hist = vec![0u64; WAIT_BINS.len()];
    let mut completed = 0;
    let mut runs = Vec::new();
    for (idx, log) in i.log.records.iter().enumerate() {
        let (Some(start), Some(end)) = (log.first_start, log.end) else {
            continue;
        };
        completed += 1;
        let s = &i.workload.jobs[idx].spec;
        preemptions += u64::from(log.preemptions);
        if log.preemptions > 0 {
            per_preempted.push(f64::from(log.preemptions));
        }
        lost += log.lost_gpu_s / 3600.0;
        overhead += log.overhead_gpu_s / 3600.0;
        held_all += log.held_gpu_s / 3600.0;
        ckpt_all += log.ckpt_gpu_s / 3600.0;
        let wait = (start - s.submit).0;
        // the run a dedicated machine would give it
        let run = i.workload.jobs[idx].runtime.0.min(log.walltime.0);
        let jct = (end - s.submit).0;
        let b = (jct as f64 / (run as f64).max(BSLD_TAU_S)).max(1.0);
        waits.push(wait as f64);
        jcts.push(jct as f64);
        sld.push(jct as f64 / (run.max(1)) as f64);
        bsld.push(b);
        let gh = log.held_gpu_s / 3600.0;
        let mut share = crate::energy::Share::default();
        i.log.runs_of(idx, &mut runs);
        for run in &runs {
            share += i.ledger.attribute(run.start, run.end, run.it_w);
        }
        *energy_by_account.entry(s.account.idx()).or_default() += share;
        if log.min_power_fraction < 1.0 {
            power_limited_jobs += 1;
        }
        let deadline_met = s.deadline.map(|d| end <= d);
        if let Some(met) = deadline_met {
            flex.jobs += 1;
            flex.deferred_jobs += u64::from(log.deferrals > 0);
            flex_waits += wait as f64;
            if met {
                flex.deadlines_met += 1;
            } else {
                flex.deadlines_missed += 1;
            }
            flex.share += share;
        } else {
            flex.inflexible_jobs += 1;
            inflex_waits += wait as f64;
            inflex_bsld += b;
        }
        interruptions += u64::from(log.interruptions);
        fail_lost += log.fail_lost_gpu_s / 3600.0;
        let span = (end - start).0.max(1) as f64;
        let ettr = (run as f64 / span).min(1.0);
        ettrs.push(ettr);
        goodputs.push(if log.held_gpu_s > 0.0 {
            (f64::from(s.gpus) * run as f64 / log.held_gpu_s).min(1.0)
        } else {
            1.0
        });
        let c = SIZE_CLASSES.iter().position(|&(lo, hi, _)| s.gpus >= lo && s.gpus <= hi).unwrap_or(0);
        rel[c].jobs += 1;
        rel[c].interruptions += u64::from(log.interruptions);
        rel[c].run_s += log.held_gpu_s / f64::from(s.gpus);
        rel[c].ettrs.push(ettr);
        let a = per_account.entry(s.account.idx()).or_default();
        a.jobs += 1;
        a.gpu_hours += gh;
        a.waits.push(wait as f64);
        if log.guaranteed_demand {
            a.ttg.push(wait as f64);
        }
        let c = SIZE_CLASSES.iter().position(|&(lo, hi, _)| s.gpus >= lo && s.gpus <= hi).unwrap_or(0);
        per_size[c].jobs += 1;
        per_size[c].gpu_hours += gh;
        per_size[c].waits.push(wait as f64);
        hist[WAIT_BINS.iter().position(|&(lim, _)| wait < lim).unwrap_or(WAIT_BINS.len() - 1)] += 1;
        if !i.cfg.keep_job_rows {
            continue;
        }
        let utc = |t: u64| i.workload.clock_origin.map(|o| SimTime(o.saturating_add(t)).unix_utc()).unwrap_or_default();
        jobs.push(JobRow {
            job_id: idx as u32,
            name: s.name.clone(),
            account: tenants.get(s.account).path.clone(),
            gpus: s.gpus,
            gpu_type: s.gpu_type.map_or_else(|| "any".to_string(), |t| i.facility.gpu(t).name.clone()),
            state: if log.killed { "timeout" } else { "completed" },
            submit_s: s.submit.0,
            start_s: start.0,
            end_s: end.0,
            submit_utc: utc(s.submit.0),
            start_utc: utc(start.0),
            end_utc: utc(end.0),
            wait_s: wait,
            jct_s: jct,
            bounded_slowdown: b,
            killed_at_walltime: log.killed,
            preemptions: log.preemptions,
            interruptions: log.interruptions,
            interrupted_at_s: interrupted_at.remove(&(idx as u32)).unwrap_or_default(),
            it_kwh: share.it_mwh * 1000.0,
            facility_kwh: share.facility_mwh * 1000.0,
            emissions_kg: share.emissions_t * 1000.0,
            cost_eur: share.cost_eur,
            power_fraction: log.min_power_fraction,
            deadline_s: s.deadline.map(|d| d.0),
            deadline_met,
            deferrals: log.deferrals,
        });
    }
    let gpu_hours: f64 = per_account.values().map(|a| a.gpu_hours).sum();
    let share = |gh: f64| if gpu_hours > 0.0 { gh / gpu_hours } else { 0.0 };
    let row = |name: String, t: &mut Tally| {
        let st = Stats::of(&mut t.waits);
        let gt = Stats::of(&mut t.ttg);
        let (gh, entitled) = (t.gpu_hours, t.entitled);
        let used = share(gh);
        AccountRow {
            account: name,
            jobs: t.jobs,
            gpu_hours: gh,
            entitled_share: entitled,
            used_share: used,
            ratio: if entitled > 0.0 { used / entitled } else { 0.0 },
            mean_wait_s: st.mean,
            p95_wait_s: st.p95,
            guaranteed_jobs: t.ttg.len() as u64,
            time_to_guarantee_mean_s: gt.mean,
            time_to_guarantee_max_s: gt.max,
        }
    };
    let mut accounts = Vec::new();
    let mut by_class: BTreeMap<String, Tally> = BTreeMap::new();
    for (id, a) in tenants.leaves() {
        let c = by_class.entry(a.class().to_string()).or_default();
        c.entitled += a.norm_share;
        if let Some(t) = per_account.get_mut(&id.idx()) {
            t.entitled = a.norm_share;
            c.jobs += t.jobs;
            c.gpu_hours += t.gpu_hours;
            c.waits.extend_from_slice(&t.waits);
            c.ttg.extend_from_slice(&t.ttg);
            accounts.push(row(a.path.clone(), t));
        }
    }
    let classes: Vec<AccountRow> = by_class.into_iter().map(|(name, mut t)| row(name, &mut t)).collect();
    let max_ttg = classes.iter().map(|c| c.time_to_guarantee_max_s).fold(0.0, f64::max);
    let ratios: Vec<f64> = accounts.iter().map(|a: &AccountRow| a.ratio).collect();
    let first_submit = i.workload.jobs.first().map_or(0, |j| j.spec.submit.0);
    let last_submit = i.workload.jobs.last().map_or(0, |j| j.spec.submit.0);
    let last_end = i.log.records.iter().filter_map(|r| r.end).max().map_or(0, |t| t.0);
    let makespan = last_end.saturating_sub(first_submit);
    let killed = i.log.records.iter().filter(|l| l.killed).count() as u64;
    // the time buckets of the charts
    // series that coarsened further than others set the common width
    let b = i.busy.bucket_s().max(i.queue.bucket_s()).max(i.down.bucket_s());
    let busy_means = i.busy.means_at(b);
    let chart_buckets: Vec<(SimTime, SimTime)> =
        (0..busy_means.len() as u64).map(|k| (SimTime(k * b), SimTime((k + 1) * b))).collect();
    Report {
        facility: i.facility.summary(),
        workload: WorkloadInfo {
            source: i.workload.source.clone(),
            notes: i.workload.notes.clone(),
            stats: i.workload.stats(),
            start_utc: i.workload.clock_origin.map(|o| SimTime(o).unix_utc()),
            end_utc: i.workload.clock_origin.map(|o| SimTime(o.saturating_add(last_end)).unix_utc()),
        },
        config: i.cfg.clone(),
        summary: Summary {
            jobs: i.workload.jobs.len() as u64,
            completed,
            killed_at_walltime: killed,
            events: i.events,
            scheduling_passes: i.passes,
            makespan_s: makespan,
            gpu_hours,
            utilisation: i.busy.integral() / (total_gpus * makespan.max(1) as f64),
            utilisation_arrival_window: i.busy.mean_between(first_submit, last_submit) / total_gpus,
            mean_queue_length: i.queue.integral() / makespan.max(1) as f64,
            max_queue_length: i.queue.max(),
            wait_s: Stats::of(&mut waits),
            jct_s: Stats::of(&mut jcts),
            slowdown: Stats::of(&mut sld),
            bounded_slowdown: Stats::of(&mut bsld),
            jain_index: jain(&ratios),
            preemptions,
            preemptions_per_preempted_job: Stats::of(&mut per_preempted),
            lost_gpu_hours: lost,
            restart_overhead_gpu_hours: overhead,
            restarts: i.restarts.clone(),
            max_time_to_guarantee_s: max_ttg,
            failures: i.failures.as_ref().map_or(0, |f| f.total),
            interruptions,
            interruptions_per_day: interruptions as f64 / (makespan.max(1) as f64 / 86_400.0),
            failure_lost_gpu_hours: fail_lost,
            ettr: Stats::of(&mut ettrs),
            goodput: Stats::of(&mut goodputs),
            spare_swaps: i.spare_swaps,
            gpu_time: {
                let capacity = total_gpus * makespan as f64 / 3600.0;
                let out = i.down.integral() / 3600.0;
                let busy = [lost + fail_lost, overhead, ckpt_all];
                let productive = (held_all - busy.iter().sum::<f64>()).max(0.0);
                GpuTime {
                    productive_gpu_hours: productive,
                    lost_work_gpu_hours: busy[0],
                    restarting_gpu_hours: busy[1],
                    checkpointing_gpu_hours: busy[2],
                    idle_gpu_hours: (capacity - held_all - out).max(0.0),
                    out_of_service_gpu_hours: out,
                    goodput: if capacity > out { productive / (capacity - out) } else { 0.0 },
                }
            },
        },
        accounts,
        classes,
        size_classes: SIZE_CLASSES
            .iter()
            .zip(per_size.iter_mut())
            .filter(|(_, s)| s.jobs > 0)
            .map(|(&(_, _, label), s)| {
                let st = Stats::of(&mut s.waits);
                SizeRow {
                    gpus: label.to_string(),
                    jobs: s.jobs,
                    gpu_hours: s.gpu_hours,
                    mean_wait_s: st.mean,
                    p95_wait_s: st.p95,
                    max_wait_s: st.max,
                }
            })
            .collect(),
        reliability: SIZE_CLASSES
            .iter()
            .zip(rel.iter_mut())
            .filter(|(_, r)| r.jobs > 0)
            .map(|(&(_, _, label), r)| ReliabilityRow {
                gpus: label.to_string(),
                jobs: r.jobs,
                interruptions: r.interruptions,
                run_hours: r.run_s / 3600.0,
                mtbf_hours: (r.interruptions > 0).then(|| r.run_s / 3600.0 / r.interruptions as f64),
                mean_ettr: Stats::of(&mut r.ettrs).mean,
            })
            .collect(),
        failure_causes: i
            .failures
            .as_ref()
            .map(|f| {
                f.by_cause
                    .iter()
                    .enumerate()
                    .map(|(c, &n)| CauseRow { cause: i.cfg.root_causes.name_of(c).to_string(), failures: n })
                    .collect()
            })
            .unwrap_or_default(),
        interruptions: i
            .interruptions
            .iter()
            .map(|x| InterruptionRow {
                at_s: x.at.0,
                job: i.workload.jobs[x.job.idx()].spec.name.clone(),
                node: x.node,
                cause: i.cfg.root_causes.name_of(usize::from(x.cause)).to_string(),
            })
            .collect(),
        maintenance: i.maintenance.clone().map(|m| {
            let all = i.failures.as_ref().map_or(0, |f| f.total) + m.failures_avoided;
            MaintenanceReport {
                precision: if m.drains > 0 { m.true_drains as f64 / m.drains as f64 } else { 0.0 },
                recall_predictable: if m.predictable_failures > 0 {
                    m.failures_avoided as f64 / m.predictable_failures as f64
                } else {
                    0.0
                },
                recall_all: if all > 0 { m.failures_avoided as f64 / all as f64 } else { 0.0 },
                counts: m,
            }
        }),
        energy: {
            let mean = |sum: f64, n: u64| if n > 0 { sum / n as f64 } else { 0.0 };
            flex.mean_wait_s = mean(flex_waits, flex.jobs);
            flex.inflexible_mean_wait_s = mean(inflex_waits, flex.inflexible_jobs);
            flex.inflexible_bsld_mean = mean(inflex_bsld, flex.inflexible_jobs);
            flex.claimed_idle_gpu_hours = i.claim_idle.integral() / 3600.0;
            energy_summary(&i, makespan, energy_by_account, flex, power_limited_jobs)
        },
        wait_histogram: WAIT_BINS.iter().zip(hist).map(|(&(_, l), n)| Bin { wait: l.to_string(), jobs: n }).collect(),
        timeseries: Series {
            bucket_s: b,
            utilisation: busy_means.iter().map(|x| x / total_gpus).collect(),
            queue_length: i.queue.means_at(b),
            down_gpus: i.down.means_at(b),
            facility_mw: per_bucket(i.ledger, b, |r| r.facility_mwh),
            grid_mw: per_bucket(i.ledger, b, |r| r.grid_mwh),
            cap_mw: i
                .cfg
                .energy
                .cap_mw
                .as_ref()
                .map_or(Vec::new(), |c| chart_buckets.iter().map(|&(from, to)| c.min_between(from, to)).collect()),
            gco2_per_kwh: {
                let e = &i.cfg.energy;
                chart_buckets
                    .iter()
                    .map(|&(from, to)| e.intensity.as_ref().map_or(e.gco2_per_kwh, |h| h.mean_between(from, to)))
                    .collect()
            },
        },
        jobs,
    }
}

/// Mean MW per chart bucket of an hourly ledger quantity in MWh.
fn per_bucket(l: &crate::energy::Ledger, bucket_s: u64, f: impl Fn(&crate::energy::HourRow) -> f64) -> Vec<f64> {
    let per = (bucket_s / 3600).max(1) as usize;
    l.rows.chunks(per).map(|c| c.iter().map(&f).sum::<f64>() / per as f64).collect()
}

fn energy_summary(
    i: &Inputs<'_>,
    makespan: u64,
    by_account: BTreeMap<usize, crate::energy::Share>,
    flexible: FlexibleSummary,
    power_limited_jobs: u64,
) -> EnergySummary {
    let e = &i.cfg.energy;
    let t = i.ledger.totals();
    let hours = makespan.max(1) as f64 / 3600.0;
    let cap_lost_gpu_hours = i.cap_lost.integral() / 3600.0;
    let cap_values = e.cap_mw.as_ref().map(|c| &c.values);
    EnergySummary {
        effective_pue: if t.it_mwh > 0.0 { t.facility_mwh / t.it_mwh } else { e.pue.base },
        pue_model: e.pue,
        temperature_source: e.temperature_source.clone(),
        cap_source: e.cap_source.clone(),
        cap_min_mw: cap_values.map(|v| v.iter().copied().fold(f64::INFINITY, f64::min)),
        cap_max_mw: cap_values.map(|v| v.iter().copied().fold(0.0, f64::max)),
        zone: e.zone.clone(),
        gco2_per_kwh: e.intensity.as_ref().map_or(e.gco2_per_kwh, |h| h.mean()),
        intensity_source: e.intensity_source.clone(),
        price_eur_per_mwh: e.price.as_ref().map_or(e.price_eur_per_mwh, |h| h.mean()),
        price_source: e.price_source.clone(),
        renewables_source: e.renewables_source.clone(),
        totals: t,
        mean_facility_mw: t.facility_mwh / hours,
        peak_grid_mw: i.ledger.peak_grid_w / 1e6,
        jobs: by_account.values().fold(crate::energy::Share::default(), |mut s, a| {
            s += *a;
            s
        }),
        cap_lost_gpu_hours,
        cap_lost_share: cap_lost_gpu_hours / (i.facility.total_gpus() as f64 * hours),
        power_limited_jobs,
        flexible,
        accounts: by_account
            .iter()
            .map(|(&a, &share)| AccountEnergy {
                account: i.facility.tenants.get(fabrik_model::AccountId(a as u32)).path.clone(),
                share,
            })
            .collect(),
        hours: i.ledger.rows.clone(),
    }
}

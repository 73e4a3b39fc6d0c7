//! The twin continuing from a snapshot of a running brain: exact starts on hand-made states.

use fabrik_model::{AccountId, Facility, JobSpec, Secs, SimTime};
use fabrik_sched::{SchedConfig, Scheduler, Snapshot};
use fabrik_twin::{fork, Twin, TwinConfig};
use std::collections::BTreeMap;

/// The snapshot's moment (Unix seconds), 18:13:20 UTC; midnight of its day is 1,699,920,000.
const AT: u64 = 1_700_000_000;

/// tiny (16 GPUs in two 8-GPU domains), fifo-backfill, live at AT: `r` (16 GPUs) started 30 min
/// ago and runs 1 h in all; queued: q1 (8 GPUs, walltime 1 h, runs 1,200 s), q2 (16, 1 h, 600 s),
/// q3 (8, 30 min, 900 s).
fn live() -> (Facility, Snapshot) {
    let f = Facility::preset("tiny").unwrap();
    let leaf: AccountId = f.tenants.leaves().next().unwrap().0;
    let mut s = Scheduler::for_facility(&f, "fifo-backfill", SchedConfig::default(), SimTime(0)).unwrap();
    let mut started = Vec::new();
    s.submit(JobSpec::new("r", leaf, 16, SimTime(AT - 1800), Secs(7200)), SimTime(AT - 1800)).unwrap();
    s.schedule(SimTime(AT - 1800), &mut started);
    assert_eq!(started.len(), 1);
    for (name, gpus, submit, wall) in [("q1", 8, AT - 600, 3600), ("q2", 16, AT - 300, 3600), ("q3", 8, AT - 100, 1800)]
    {
        s.submit(JobSpec::new(name, leaf, gpus, SimTime(submit), Secs(wall)), SimTime(submit)).unwrap();
        s.schedule(SimTime(submit), &mut started);
    }
    assert_eq!(s.pending().len(), 3);
    let runtimes: BTreeMap<&str, u64> = [("r", 3600), ("q1", 1200), ("q2", 600), ("q3", 900)].into_iter().collect();
    let snap = s.snapshot(
        &f,
        SimTime(AT),
        SimTime(0),
        |id| Some(i64::from(id.0)),
        |id| runtimes.get(s.job(id).spec.name.as_str()).copied(),
    );
    (f, snap)
}

/// Each job's (start, end) relative to the snapshot's moment, in seconds.
fn run(
    f: &Facility,
    snap: &Snapshot,
    policy: &str,
    appended: Option<&fabrik_twin::Workload>,
) -> BTreeMap<String, (i64, i64)> {
    let (w, fk) = fork::fork(snap, f, appended).unwrap();
    assert_eq!(w.clock_origin, Some(1_699_920_000));
    let mut cfg = TwinConfig::new(policy, SchedConfig::default(), 1);
    cfg.keep_job_rows = true;
    let r = Twin::forked(f, &w, cfg, fk).unwrap().run(|_| {}).unwrap();
    let rel = |t: u64| (t + 1_699_920_000) as i64 - AT as i64;
    r.jobs.iter().map(|j| (j.name.clone(), (rel(j.start_s), rel(j.end_s)))).collect()
}

fn want(rows: &[(&str, i64, i64)]) -> BTreeMap<String, (i64, i64)> {
    rows.iter().map(|&(n, s, e)| (n.to_string(), (s, e))).collect()
}

#[test]
fn the_twin_continues_from_a_snapshot_with_the_starts_by_hand() {
    // r ends at +1,800 (3,600 s from its start 1,800 s before the snapshot). q1 starts then;
    // q2 (16 GPUs) holds the reservation at q1's walltime end (+5,400); q3 (walltime 1,800 s)
    // ends by +3,600 and backfills at +1,800, ending at +2,700; q1 ends at +3,000 and q2 runs
    // from +3,000 to +3,600.
    let (f, snap) = live();
    let got = run(&f, &snap, "fifo-backfill", None);
    assert_eq!(got, want(&[("r", -1800, 1800), ("q1", 1800, 3000), ("q3", 1800, 2700), ("q2", 3000, 3600)]));
}

#[test]
fn a_forked_run_takes_a_workload_appended_after_the_snapshot_and_another_policy() {
    // fifo (no backfill): q3 waits behind q2, which starts when q1 ends (+3,000) and ends at
    // +3,600. A job appended 100 s after the snapshot (8 GPUs, 10 min) queues behind q3; at
    // +3,600 both fit (8 + 8 GPUs): q3 runs to +4,500, the late job to +4,200.
    let (f, snap) = live();
    let leaf = f.tenants.leaves().next().unwrap().0;
    let later = fabrik_twin::Workload {
        source: "later".into(),
        notes: vec![],
        jobs: vec![fabrik_twin::TraceJob {
            spec: JobSpec::new("late", leaf, 8, SimTime(100), Secs(600)),
            runtime: Secs(600),
        }],
        clock_origin: None,
    };
    let got = run(&f, &snap, "fifo", Some(&later));
    assert_eq!(
        got,
        want(&[("r", -1800, 1800), ("q1", 1800, 3000), ("q2", 3000, 3600), ("q3", 3600, 4500), ("late", 3600, 4200)])
    );
}

#[test]
fn a_snapshot_of_another_facility_is_refused() {
    let (_, snap) = live();
    let small = Facility::preset("small").unwrap();
    let e = fork::fork(&snap, &small, None).err().unwrap();
    assert!(e.contains("taken on facility 'tiny'") && e.contains("--facility"), "{e}");
}

#[test]
fn a_forecast_samples_runtimes_from_history_and_reports_p50_and_p90() {
    // History: every job ran half its walltime, so every sampled runtime is half the walltime
    // (r: 3,600 of 7,200 s, having run 1,800: it ends 1,800 s after the snapshot). q1 starts
    // then and runs 1,800 s; q2 (16 GPUs) holds the reservation at q1's walltime end; q3
    // (900 s) backfills beside q1. q1 ends at +3,600 and q2 starts. Without failures every run
    // agrees: P50 = P90.
    use fabrik_model::runtime_model::{Completed, RuntimeModel};
    let (f, snap) = live();
    let history: Vec<Completed> = (0..5)
        .map(|k| Completed {
            account: "x/y/z".into(),
            gpus: 1,
            submit_unix: k,
            walltime_s: 1000,
            runtime_s: 500,
            running: false,
        })
        .collect();
    let model = RuntimeModel::fit(&history);
    // no arrivals: the hand-computed starts are the queue's own
    let cfg = fabrik_twin::forecast::ForecastConfig {
        runs: 4,
        failures: false,
        arrivals_horizon: std::time::Duration::ZERO,
        ..Default::default()
    };
    let fc = fabrik_twin::forecast::forecast(&snap, &f, &model, &history, &cfg).unwrap();
    assert_eq!((fc.runs, fc.model_jobs, fc.at), (4, 5, AT));
    let got: Vec<(&str, u64, u64)> =
        fc.jobs.iter().map(|j| (j.name.as_str(), j.p50_start - AT, j.p90_start - AT)).collect();
    assert_eq!(got, vec![("q1", 1800, 1800), ("q2", 3600, 3600), ("q3", 1800, 1800)]);
    assert_eq!(fc.jobs[0].key, Some(1));
}

#[test]
fn a_forecast_spreads_with_the_runtime_distribution() {
    // History: ratios 0.05 … 1.0 evenly: r's remaining run and q1's runtime vary, so q2's start
    // spreads; its P90 is at least its P50, and both lie between the earliest possible start
    // (r ends at once, q1 runs 1 s: +1 s) and the latest (r to its walltime +5,400, q1 its
    // full hour: +9,000).
    use fabrik_model::runtime_model::{Completed, RuntimeModel};
    let (f, snap) = live();
    let history: Vec<Completed> = (1..=20)
        .map(|k| Completed {
            account: "x/y/z".into(),
            gpus: 1,
            submit_unix: k,
            walltime_s: 1000,
            runtime_s: k * 50,
            running: false,
        })
        .collect();
    let model = RuntimeModel::fit(&history);
    let cfg = fabrik_twin::forecast::ForecastConfig { runs: 32, failures: false, ..Default::default() };
    let fc = fabrik_twin::forecast::forecast(&snap, &f, &model, &history, &cfg).unwrap();
    let q2 = &fc.jobs[1];
    assert_eq!(q2.name, "q2");
    assert!(q2.p50_start < q2.p90_start, "{q2:?}");
    assert!(q2.p50_start > AT && q2.p90_start <= AT + 9000, "{q2:?}");
    // the same seed gives the same forecast
    let again = fabrik_twin::forecast::forecast(&snap, &f, &model, &history, &cfg).unwrap();
    assert_eq!(again.jobs, fc.jobs);
}

#[test]
fn a_whatif_runs_the_baseline_and_each_alternative_side_by_side() {
    // Baseline (the snapshot's fifo-backfill): waits r 0, q1 2,400 (AT−600 → +1,800), q2 3,300
    // (AT−300 → +3,000), q3 1,900 (AT−100 → +1,800): mean 1,900 s. Under fifo q3 waits behind
    // q2 until +3,600: 3,700 s, mean 2,350 s.
    use fabrik_twin::whatif::{whatif, Alternative};
    let (f, snap) = live();
    let base = TwinConfig::new(&snap.policy, snap.config.clone(), 1);
    let alt = Alternative { name: "fifo".into(), policy: Some("fifo".into()), ..Default::default() };
    let c = whatif(&snap, &f, &base, &[alt], None).unwrap();
    let rows: Vec<(&str, f64)> = c.rows.iter().map(|r| (r.policy.as_str(), r.wait_mean_s)).collect();
    assert_eq!(rows, vec![("baseline (fifo-backfill)", 1900.0), ("fifo (fifo)", 2350.0)]);
    assert!(c.table().contains("baseline (fifo-backfill)"));
    // draining a node r runs on puts r back in the queue and the node out of service
    let d = fabrik_twin::whatif::drained(&snap, &[1]);
    assert!(d.running.is_empty());
    assert_eq!(d.queued.iter().map(|j| j.spec.name.as_str()).collect::<Vec<_>>(), vec!["r", "q1", "q2", "q3"]);
    assert_eq!(d.out_of_service, vec![1]);
    let bad = Alternative { name: "drain".into(), drain: vec![9], ..Default::default() };
    assert!(whatif(&snap, &f, &base, &[bad], None).unwrap_err().contains("no domain 9"));
}

#[test]
fn a_forked_report_shows_calendar_dates() {
    // second 0 is midnight of the snapshot's day; the last job (q2) ends 3,600 s after AT
    let (f, snap) = live();
    let (w, fk) = fork::fork(&snap, &f, None).unwrap();
    let r = Twin::forked(&f, &w, TwinConfig::new(&snap.policy, SchedConfig::default(), 1), fk)
        .unwrap()
        .run(|_| {})
        .unwrap();
    assert_eq!(r.workload.start_utc.as_deref(), Some("2023-11-14 00:00:00Z"));
    assert_eq!(r.workload.end_utc.as_deref(), Some("2023-11-14 23:13:20Z"));
    assert!(r.summary_text().contains("calendar: from 2023-11-14 00:00:00Z (second 0) to 2023-11-14 23:13:20Z"));
}

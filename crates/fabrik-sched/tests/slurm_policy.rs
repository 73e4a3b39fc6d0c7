//! The `slurm` policy, rule by rule: small scenarios with hand-computed outcomes, most of them
//! cases where fabrik's `fifo-backfill` (EASY backfilling) and Slurm's backfill decide
//! differently. Each test quotes the Slurm documentation of the rule it checks.

use fabrik_model::{AccountId, DomainId, Facility, JobId, JobSpec, Secs, SimTime};
use fabrik_sched::{Reason, SchedConfig, Scheduler};

/// Nodes of 4 H100 in leaf switches of the given sizes, with `[slurm]` settings.
fn facility(leaves: &[u32], slurm: &str) -> Facility {
    let mut t = String::from("name = \"lab\"\n");
    for &n in leaves {
        t += &format!("[[pool]]\ngpu = \"H100\"\ndomain_gpus = 4\ndomains_per_group = {n}\ngroups = 1\n");
    }
    let interval = if slurm.contains("bf_interval_s") { "" } else { "bf_interval_s = 1\n" };
    t += &format!("[slurm]\ntopology_tree = true\n{interval}{slurm}\n");
    Facility::from_toml(&t, "lab.toml").unwrap()
}

fn project(f: &Facility) -> AccountId {
    f.tenants.leaves().next().unwrap().0
}

fn job(f: &Facility, name: &str, gpus: u32, limit_s: u64, at: u64) -> JobSpec {
    JobSpec::new(name, project(f), gpus, SimTime(at), Secs(limit_s))
}

fn nodes(s: &Scheduler, id: JobId) -> Vec<u32> {
    s.job(id).parts().iter().map(|p| p.0 .0).collect()
}

fn pass(s: &mut Scheduler, t: u64) -> Vec<JobId> {
    let mut started = Vec::new();
    s.schedule(SimTime(t), &mut started);
    started
}

#[test]
fn time_limits_are_whole_minutes_and_the_partition_max_time_holds() {
    // sbatch(1) --time: "Acceptable time formats include minutes, ..."; a limit is minutes.
    // slurm.conf(5) MaxTime: "Maximum run time limit for jobs."
    let f = facility(&[2], "[[slurm.partitions]]\nname = \"gpu\"\nmax_time_min = 60\ndefault = true");
    let mut s = Scheduler::for_facility(&f, "slurm", SchedConfig::default(), SimTime::ZERO).unwrap();
    let a = s.submit(job(&f, "a", 1, 90, 0), SimTime(0)).unwrap();
    let b = s.submit(job(&f, "b", 1, 1, 0), SimTime(0)).unwrap();
    assert_eq!(s.job(a).spec.walltime, Secs(120));
    assert_eq!(s.job(b).spec.walltime, Secs(60));
    assert!(s.submit(job(&f, "c", 1, 3600, 0), SimTime(0)).is_ok());
    let e = s.submit(job(&f, "d", 1, 3601, 0), SimTime(0)).unwrap_err().to_string();
    assert!(e.contains("time limit 61 min exceeds the partition/QOS limit of 60 min"), "{e}");
}

/// Three nodes A, B, C in one leaf switch. R1 holds A until 600, R2 holds B until 1800.
/// H (12 GPUs) waits for 1800; S (8 GPUs) could start at 600 on A and C; T (4 GPUs, 15 min)
/// fits on C now and ends at 900, before H's 1800.
fn three_nodes(policy: &str) -> (Facility, Scheduler, [JobId; 5]) {
    let f = facility(&[3], "");
    let mut s = Scheduler::for_facility(&f, policy, SchedConfig::default(), SimTime::ZERO).unwrap();
    let r1 = s.submit(job(&f, "r1", 4, 600, 0), SimTime(0)).unwrap();
    let r2 = s.submit(job(&f, "r2", 4, 1800, 0), SimTime(0)).unwrap();
    let h = s.submit(job(&f, "h", 12, 600, 0), SimTime(0)).unwrap();
    let sj = s.submit(job(&f, "s", 8, 600, 0), SimTime(0)).unwrap();
    let t = s.submit(job(&f, "t", 4, 900, 0), SimTime(0)).unwrap();
    (f, s, [r1, r2, h, sj, t])
}

#[test]
fn backfill_reserves_for_every_tested_job_not_only_the_head() {
    // Scheduling Configuration Guide, Backfill: "Slurm considers pending jobs in priority order,
    // determining when and where each will start, taking into consideration the possibility of
    // job preemption, generic resource (GRES) requirements, memory requirements, etc. If the
    // job under consideration can start immediately without impacting the expected start time
    // of any higher priority job, then it does so."
    let (_f, mut s, [r1, r2, h, sj, t]) = three_nodes("slurm");
    assert_eq!(pass(&mut s, 0), [r1, r2]);
    assert_eq!((nodes(&s, r1), nodes(&s, r2)), (vec![0], vec![1]));
    // H: R2's GPUs are needed, so H starts when R2's limit ends
    assert_eq!(s.job(h).why(), &Reason::HoldsReservation { start_at: SimTime(1800) });
    // S is reserved too (A and C from 600 to 1200), which keeps T off C although T would end
    // long before H starts; T finds room only after H's reservation
    assert_eq!(s.job(sj).why(), &Reason::HoldsReservation { start_at: SimTime(600) });
    assert_eq!(s.job(t).why(), &Reason::HoldsReservation { start_at: SimTime(2400) });
    // R1 ends at 600: S starts as planned; T's earliest window collides with H's reservation
    s.finish(r1, SimTime(600)).unwrap();
    assert_eq!(pass(&mut s, 600), [sj]);
    assert_eq!(nodes(&s, sj), [0, 2]);
    assert_eq!(s.job(t).why(), &Reason::HoldsReservation { start_at: SimTime(2400) });

    // fifo-backfill reserves for the head alone: T starts at once on C
    let (_f, mut s, [r1, r2, _h, _sj, t]) = three_nodes("fifo-backfill");
    assert_eq!(pass(&mut s, 0), [r1, r2, t]);
}

#[test]
fn a_job_ending_exactly_at_a_reservation_start_does_not_backfill() {
    // backfill.c: the nodes of a reservation whose begin is at or before the candidate's end
    // (`node_space[j].begin_time <= end_time`) are off limits, and reservations begin at the
    // planned start rounded down to bf_resolution (sched_config: "bf_resolution ... The
    // number of seconds in the resolution of data maintained about when jobs begin and end.")
    let setup = |policy: &str| {
        let f = facility(&[2], "");
        let mut s = Scheduler::for_facility(&f, policy, SchedConfig::default(), SimTime::ZERO).unwrap();
        let r = s.submit(job(&f, "r", 4, 600, 0), SimTime(0)).unwrap();
        let h = s.submit(job(&f, "h", 8, 600, 0), SimTime(0)).unwrap();
        let c1 = s.submit(job(&f, "c1", 4, 600, 0), SimTime(0)).unwrap();
        let c2 = s.submit(job(&f, "c2", 4, 540, 0), SimTime(0)).unwrap();
        (s, [r, h, c1, c2])
    };
    // Slurm: H is reserved on both nodes from 600. C1 would end at 600, on the boundary: it
    // waits; C2 ends at 540 and backfills on the free node.
    let (mut s, [r, h, c1, c2]) = setup("slurm");
    assert_eq!(pass(&mut s, 0), [r, c2]);
    assert_eq!(s.job(h).why(), &Reason::HoldsReservation { start_at: SimTime(600) });
    assert!(matches!(s.job(c1).why(), Reason::HoldsReservation { .. }), "{:?}", s.job(c1).why());
    // fifo-backfill: a job that ends by the shadow time may use the held GPUs: C1 takes them
    let (mut s, [r, _h, c1, _c2]) = setup("fifo-backfill");
    assert_eq!(pass(&mut s, 0), [r, c1]);

    // bf_resolution: R started at 10 ends at 610; H's reservation begins at 600, so a 9-minute
    // job at 60 (ending at 600) is kept off too.
    let f = facility(&[2], "");
    let mut s = Scheduler::for_facility(&f, "slurm", SchedConfig::default(), SimTime::ZERO).unwrap();
    let r = s.submit(job(&f, "r", 4, 600, 10), SimTime(10)).unwrap();
    assert_eq!(pass(&mut s, 10), [r]);
    let h = s.submit(job(&f, "h", 8, 600, 20), SimTime(20)).unwrap();
    let c = s.submit(job(&f, "c", 4, 540, 60), SimTime(60)).unwrap();
    assert_eq!(pass(&mut s, 60), Vec::<JobId>::new());
    assert_eq!(s.job(h).why(), &Reason::HoldsReservation { start_at: SimTime(610) });
    assert!(matches!(s.job(c).why(), Reason::HoldsReservation { .. }));
    // at resolution 1 the same job fits before 610
    let f = facility(&[2], "bf_resolution_s = 1");
    let mut s = Scheduler::for_facility(&f, "slurm", SchedConfig::default(), SimTime::ZERO).unwrap();
    let r = s.submit(job(&f, "r", 4, 600, 10), SimTime(10)).unwrap();
    pass(&mut s, 10);
    let _h = s.submit(job(&f, "h", 8, 600, 20), SimTime(20)).unwrap();
    let c = s.submit(job(&f, "c", 4, 540, 60), SimTime(60)).unwrap();
    assert_eq!(pass(&mut s, 60), [c]);
    assert_eq!(nodes(&s, r), [0]);
}

/// Two nodes of 4 GPUs: R1 (4 GPUs) runs from 0 to 600; at 30 R2 (4 GPUs, to 630), H (8 GPUs,
/// 2 min) and J (4 GPUs, 1 min) arrive. One pass at 30 with the run's second 0 at Unix `origin`;
/// the reasons of H and J.
fn truncated_reservation_plans(origin: u64) -> (Reason, Reason) {
    let f = facility(&[2], "");
    let mut s = Scheduler::for_facility(&f, "slurm", SchedConfig::default(), SimTime::ZERO).unwrap();
    s.set_clock_origin(origin);
    let r1 = s.submit(job(&f, "r1", 4, 600, 0), SimTime(0)).unwrap();
    assert_eq!(pass(&mut s, 0), [r1]);
    let r2 = s.submit(job(&f, "r2", 4, 600, 30), SimTime(30)).unwrap();
    let h = s.submit(job(&f, "h", 8, 120, 30), SimTime(30)).unwrap();
    let j = s.submit(job(&f, "j", 4, 60, 30), SimTime(30)).unwrap();
    assert_eq!(pass(&mut s, 30), [r2]);
    (s.job(h).why().clone(), s.job(j).why().clone())
}

#[test]
fn a_reservation_ends_at_its_limit_rounded_down_and_later_jobs_plan_into_the_gap() {
    // backfill.c (_attempt_backfill): "end_reserve = (end_reserve / backfill_resolution) *
    // backfill_resolution" — the end is rounded *down* like the start (sched_config:
    // bf_resolution "The number of seconds in the resolution of data maintained about when
    // jobs begin and end"), and _add_reservation keeps at least one resolution. Measured on
    // Slurm 22.05.8 (tools/twin-vs-slurm.py, priority/basic seed 1): with the end rounded up
    // every plan after the first truncated one lay one minute late.
    let (h, j) = truncated_reservation_plans(0);
    // H needs both nodes: R1 ends at 600, R2 at 630 (one will-run batch): H at 630, reserved
    // from 600 to 750 rounded down, 720 — not to 780
    assert_eq!(h, Reason::HoldsReservation { start_at: SimTime(630) });
    // J first fits at 630 on node 0, inside H's reservation; the map frees both nodes at 720,
    // so J is planned there (it would be 780 with the end rounded up)
    assert_eq!(j, Reason::HoldsReservation { start_at: SimTime(720) });
}

#[test]
fn reservations_round_on_the_wall_clock_of_the_replayed_cluster() {
    // The same scenario with the run's second 0 at hh:mm:30 (a replayed sacct trace starts at
    // its first submission): Slurm rounds Unix times to bf_resolution, so H's reservation is
    // [630, 750) in run time (Unix [hh:mm+11:00, +13:00)), J's first slot [630, 690) collides,
    // and J is planned when the map frees both nodes, at 750.
    let (h, j) = truncated_reservation_plans(1_800_000_030);
    assert_eq!(h, Reason::HoldsReservation { start_at: SimTime(630) });
    assert_eq!(j, Reason::HoldsReservation { start_at: SimTime(750) });
}

#[test]
fn the_main_scheduler_stops_at_the_first_job_that_cannot_start() {
    // Scheduling Configuration Guide: "the main scheduling loop ... tests jobs in priority
    // order ... the first job that cannot start blocks the partition"; sched_config
    // bf_interval: "The number of seconds between backfill iterations."
    let f = facility(&[2], "bf_interval_s = 30");
    let mut s = Scheduler::for_facility(&f, "slurm", SchedConfig::default(), SimTime::ZERO).unwrap();
    let r = s.submit(job(&f, "r", 4, 600, 0), SimTime(0)).unwrap();
    assert_eq!(pass(&mut s, 0), [r]);
    let h = s.submit(job(&f, "h", 8, 600, 5), SimTime(5)).unwrap();
    let small = s.submit(job(&f, "small", 2, 120, 5), SimTime(5)).unwrap();
    // at 5 the main scheduler runs: H blocks, the small job waits behind it although it fits
    assert_eq!(pass(&mut s, 5), Vec::<JobId>::new());
    assert_eq!(s.job(small).why(), &Reason::BehindQueueHead { head: h });
    assert_eq!(s.next_wakeup(), Some(SimTime(30)));
    // the next backfill cycle, at 30, starts it (it ends at 150, before H's 600)
    assert_eq!(pass(&mut s, 30), [small]);
    // that start is a change, so the cycle at 60 runs; it changes nothing, and later cycles
    // are skipped until an event (Slurm's backfill agent: no work without state changes)
    assert_eq!(s.next_wakeup(), Some(SimTime(60)));
    assert_eq!(pass(&mut s, 60), Vec::<JobId>::new());
    assert_eq!(s.next_wakeup(), None);
    s.finish(small, SimTime(140)).unwrap();
    assert_eq!(pass(&mut s, 140), Vec::<JobId>::new());
    assert_eq!(s.next_wakeup(), Some(SimTime(150)));

    // bf_phase_s = 7: cycles at 7, 37, 67, …; the small job waits for the cycle at 37
    let f = facility(&[2], "bf_interval_s = 30\nbf_phase_s = 7");
    let mut s = Scheduler::for_facility(&f, "slurm", SchedConfig::default(), SimTime::ZERO).unwrap();
    let r = s.submit(job(&f, "r", 4, 600, 0), SimTime(0)).unwrap();
    assert_eq!(pass(&mut s, 0), [r]);
    let _h = s.submit(job(&f, "h", 8, 600, 5), SimTime(5)).unwrap();
    pass(&mut s, 5);
    assert_eq!(s.next_wakeup(), Some(SimTime(7)));
    assert_eq!(pass(&mut s, 7), Vec::<JobId>::new());
    let small = s.submit(job(&f, "small", 2, 120, 8), SimTime(8)).unwrap();
    assert_eq!(pass(&mut s, 8), Vec::<JobId>::new());
    assert_eq!(s.next_wakeup(), Some(SimTime(37)));
    assert_eq!(pass(&mut s, 37), [small]);
    let bad = Facility::from_toml("name = \"x\"\n[[pool]]\ngpu = \"H100\"\ndomain_gpus = 4\ndomains_per_group = 1\ngroups = 1\n[slurm]\nbf_interval_s = 30\nbf_phase_s = 30\n", "x.toml");
    assert!(bad.unwrap_err().to_string().contains("slurm.bf_phase_s"));
}

#[test]
fn backfill_and_main_scheduler_depths_bound_what_is_tested() {
    // sched_config bf_max_job_test: "The maximum number of jobs to attempt backfill
    // scheduling for"; default_queue_depth: "The default number of jobs to attempt scheduling
    // (i.e. the queue depth) when a running job completes or other routine actions occur".
    let f = facility(&[2], "bf_max_job_test = 1\ndefault_queue_depth = 1");
    let mut s = Scheduler::for_facility(&f, "slurm", SchedConfig::default(), SimTime::ZERO).unwrap();
    let r = s.submit(job(&f, "r", 4, 600, 0), SimTime(0)).unwrap();
    let h = s.submit(job(&f, "h", 8, 600, 0), SimTime(0)).unwrap();
    let small = s.submit(job(&f, "small", 2, 120, 0), SimTime(0)).unwrap();
    assert_eq!(pass(&mut s, 0), [r]);
    assert_eq!(s.job(h).why(), &Reason::HoldsReservation { start_at: SimTime(600) });
    assert_eq!(s.job(small).why(), &Reason::BeyondBackfillDepth { position: 2, depth: 1 });
    // default_queue_depth = 1: of two jobs that fit, the main scheduler starts one
    let f = facility(&[2], "default_queue_depth = 1\nbackfill = false");
    let mut s = Scheduler::for_facility(&f, "slurm", SchedConfig::default(), SimTime::ZERO).unwrap();
    let a = s.submit(job(&f, "a", 1, 60, 0), SimTime(0)).unwrap();
    let _b = s.submit(job(&f, "b", 1, 60, 0), SimTime(0)).unwrap();
    assert_eq!(pass(&mut s, 0), [a]);
}

#[test]
fn nodes_are_chosen_as_cons_tres_does_on_a_tree() {
    // topology.conf(5) / select/cons_tres: the job goes to the leaf switch that best fits it
    // (fewest suitable nodes that suffice), lowest-numbered nodes first; a job no leaf holds
    // spans leaves. Leaf 1: nodes 0 and 1; leaf 2: node 2.
    let f = facility(&[2, 1], "");
    let mut s = Scheduler::for_facility(&f, "slurm", SchedConfig::default(), SimTime::ZERO).unwrap();
    let one = s.submit(job(&f, "one", 1, 600, 0), SimTime(0)).unwrap();
    let two_nodes = s.submit(job(&f, "two-nodes", 8, 600, 0), SimTime(0)).unwrap();
    assert_eq!(pass(&mut s, 0), [one, two_nodes]);
    // the 1-GPU job takes leaf 2 (one suitable node beats two), the 8-GPU job leaf 1
    assert_eq!(nodes(&s, one), [2]);
    assert_eq!(nodes(&s, two_nodes), [0, 1]);
    s.finish(one, SimTime(10)).unwrap();
    s.finish(two_nodes, SimTime(10)).unwrap();
    // node 1 busy: no leaf has two free nodes, so an 8-GPU job spans node 0 and node 2
    let busy = s.submit(job(&f, "busy", 4, 600, 10), SimTime(10)).unwrap();
    pass(&mut s, 10);
    assert_eq!(nodes(&s, busy), [2]);
    let x = s.submit(job(&f, "x", 4, 600, 11), SimTime(11)).unwrap();
    pass(&mut s, 11);
    assert_eq!(nodes(&s, x), [0]);
    s.finish(busy, SimTime(12)).unwrap();
    let span = s.submit(job(&f, "span", 8, 600, 12), SimTime(12)).unwrap();
    assert_eq!(pass(&mut s, 12), [span]);
    assert_eq!(nodes(&s, span), [1, 2]);
    assert_eq!(s.job(span).parts(), [(DomainId(1), 4), (DomainId(2), 4)]);
}

#[test]
fn will_run_estimates_the_start_from_the_last_job_of_a_batch() {
    // cons_common/job_test.c (22.05) _will_run_test: running jobs are removed in batches (the
    // first takes the jobs ending within 30 s after the first end rounded up to 30 s), and the
    // start is the end of the last job removed. Jobs end at 600 and 640 (the first end rounds
    // to 630; 640 ≤ 630 + 30): both go in one batch, so a job needing only the first job's
    // node is planned at 640, not 600.
    let f = facility(&[2], "");
    let mut s = Scheduler::for_facility(&f, "slurm", SchedConfig::default(), SimTime::ZERO).unwrap();
    let a = s.submit(job(&f, "a", 4, 600, 0), SimTime(0)).unwrap();
    pass(&mut s, 0);
    let b = s.submit(job(&f, "b", 4, 600, 40), SimTime(40)).unwrap();
    pass(&mut s, 40);
    assert_eq!((nodes(&s, a), nodes(&s, b)), (vec![0], vec![1]));
    let w = s.submit(job(&f, "w", 4, 60, 50), SimTime(50)).unwrap();
    pass(&mut s, 50);
    assert_eq!(s.job(w).why(), &Reason::HoldsReservation { start_at: SimTime(640) });
}

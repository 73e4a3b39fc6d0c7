//! Scenario tests with hand-computed outcomes, and property tests of the invariants.
//! `run` is a minimal event loop (the twin's job, reduced to what these tests need).

use crate::fairshare::FairShareConfig;
use crate::*;
use fabrik_model::tenants::AccountSpec;
use fabrik_model::{AccountId, Facility, JobId, JobSpec, Qos, Secs, SimTime, TenantTree};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

struct Run {
    /// (start, end) per job, by input index.
    spans: Vec<(u64, u64)>,
    /// The first reservation time announced for each job (by input index) while it was the head.
    first_reservation: BTreeMap<u32, u64>,
    /// The scheduler's id of each input job.
    ids: Vec<JobId>,
}

/// Jobs are (spec, runtime). Runs until every job has ended; a job is killed at its walltime.
fn run(facility: &Facility, policy: &str, cfg: SchedConfig, jobs: &[(JobSpec, u64)]) -> (Run, Scheduler) {
    let mut s = Scheduler::with_policy(facility, policy, cfg).unwrap();
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by_key(|&i| (jobs[i].0.submit, i));
    let mut ends: BTreeMap<(u64, u32), ()> = BTreeMap::new();
    let mut ids = vec![JobId(0); jobs.len()];
    let mut rev: BTreeMap<u32, usize> = BTreeMap::new();
    let mut next = 0;
    let mut started = Vec::new();
    let mut first_reservation = BTreeMap::new();
    let mut spans = vec![(u64::MAX, u64::MAX); jobs.len()];
    let mut checked_end = 0;
    let mut end_of: BTreeMap<u32, u64> = BTreeMap::new();
    let mut left: Vec<u64> = jobs.iter().map(|j| j.1).collect();
    let mut preempted = Vec::new();
    loop {
        let t_sub = order.get(next).map(|&i| jobs[i].0.submit.0);
        let t_end = ends.keys().next().map(|k| k.0);
        let t_wake = s.next_wakeup().map(|w| w.0);
        let Some(now) = [t_sub, t_end, t_wake].into_iter().flatten().min() else {
            break;
        };
        while let Some((&(t, id), _)) = ends.iter().next() {
            if t != now {
                break;
            }
            ends.remove(&(t, id));
            end_of.remove(&id);
            s.finish(JobId(id), SimTime(now)).unwrap();
            spans[rev[&id]].1 = now;
            checked_end += 1;
        }
        while next < order.len() && jobs[order[next]].0.submit.0 == now {
            let i = order[next];
            ids[i] = s.submit(jobs[i].0.clone(), SimTime(now)).unwrap();
            rev.insert(ids[i].0, i);
            next += 1;
        }
        s.schedule(SimTime(now), &mut started);
        s.drain_preempted(&mut preempted);
        for &id in &preempted {
            // the harness models perfect checkpoints: work done so far is kept
            let t = end_of.remove(&id.0).expect("a preempted job was running");
            ends.remove(&(t, id.0));
            let i = rev[&id.0];
            left[i] -= now - spans[i].0;
        }
        for &id in &started {
            let i = rev[&id.0];
            let j = s.job(id);
            assert_eq!(j.parts().iter().map(|p| p.1).sum::<u32>(), j.spec.gpus, "gang is all or nothing");
            spans[i].0 = now;
            let t = now + left[i].min(j.spec.walltime.0);
            ends.insert((t, id.0), ());
            end_of.insert(id.0, t);
        }
        if let Some(Reservation { holder: Holder::Job(j), start_at }) = s.reservation() {
            first_reservation.entry(rev[&j.0] as u32).or_insert(start_at.0);
        }
        // the slurm policy plans every tested job anew in each backfill cycle (22.05's batched
        // estimate may move a plan later between cycles); its first job's latest plan holds
        if let Some(&h) = s.pending().first().filter(|_| s.policy_name() == "slurm") {
            if let Reason::HoldsReservation { start_at } = s.job(h).why() {
                first_reservation.insert(rev[&h.0] as u32, start_at.0);
            }
        }
        // No GPU allocated twice: busy GPUs equal the running jobs' gangs and never exceed capacity.
        let busy: u64 = s.jobs().filter(|(_, j)| j.state.is_running()).map(|(_, j)| u64::from(j.spec.gpus)).sum();
        assert_eq!(busy, s.busy_gpus());
        assert_eq!(s.cluster().free_gpus() + busy, s.cluster().total_gpus());
    }
    assert_eq!(checked_end, jobs.len(), "every job ends exactly once");
    (Run { spans, first_reservation, ids }, s)
}

fn tenants2() -> TenantTree {
    TenantTree::from_specs(&[AccountSpec::new("a/x/p", 1.0), AccountSpec::new("b/y/q", 1.0)], "test").unwrap()
}

fn fac(name: &str) -> Facility {
    let mut f = Facility::preset(name).unwrap_or_else(|| Facility::from_shorthand(name).unwrap());
    f.tenants = tenants2();
    f
}

fn job(account: u32, gpus: u32, submit: u64, walltime: u64) -> JobSpec {
    JobSpec::new(format!("j{submit}"), AccountId(account), gpus, SimTime(submit), Secs(walltime))
}

const P: u32 = 3; // a/x/p: root, a, a/x, a/x/p
const Q: u32 = 6;

#[test]
fn fifo_blocks_behind_the_head_and_backfill_does_not() {
    // tiny = 2 nodes × 8. J0 takes node 0 until 100; J1 needs both nodes; J2 is one GPU for 10 s.
    let jobs = vec![(job(P, 8, 0, 100), 100), (job(P, 16, 1, 100), 100), (job(Q, 1, 2, 10), 10)];
    let (r, s) = run(&fac("tiny"), "fifo", SchedConfig::default(), &jobs);
    // FIFO: J1 starts when J0 ends (100), J2 only after J1 (200).
    assert_eq!(r.spans, vec![(0, 100), (100, 200), (200, 210)]);
    assert_eq!(s.policy_name(), "fifo");
    let (r, _) = run(&fac("tiny"), "fifo-backfill", SchedConfig::default(), &jobs);
    // EASY: J1 reserves both nodes at 100; J2 ends at 12 ≤ 100, so it backfills at once.
    assert_eq!(r.spans, vec![(0, 100), (100, 200), (2, 12)]);
    assert_eq!(r.first_reservation.get(&1), Some(&100));
    assert_eq!(r.first_reservation.len(), 1);
}

#[test]
fn backfill_never_starts_a_long_job_on_reserved_gpus() {
    // J1 (16 GPUs) reserves both nodes at 100. J2 (8 GPUs, 200 s) fits on node 1 now but would
    // run past 100 on a reserved node: it waits. J3 (4 GPUs, 50 s) ends at 53 and backfills.
    let jobs =
        vec![(job(P, 8, 0, 100), 100), (job(P, 16, 1, 50), 50), (job(Q, 8, 2, 200), 200), (job(Q, 4, 3, 50), 50)];
    let f = fac("tiny");
    let mut s = Scheduler::with_policy(&f, "fifo-backfill", SchedConfig::default()).unwrap();
    let mut started = vec![];
    for (i, (spec, _)) in jobs.iter().enumerate() {
        s.submit(spec.clone(), spec.submit).unwrap();
        s.schedule(spec.submit, &mut started);
        if i == 3 {
            assert_eq!(started, vec![JobId(3)]);
        }
    }
    let why = s.explain(JobId(2)).unwrap();
    assert_eq!(why.reasons[0], Reason::BehindReservation { holder: JobId(1), start_at: SimTime(100) });
    assert_eq!(why.reasons[0].to_string(), "behind the reservation of job 1 (starting by d0 00:01:40)");
    assert_eq!(s.explain(JobId(1)).unwrap().reasons[0], Reason::HoldsReservation { start_at: SimTime(100) });
    let (r, _) = run(&f, "fifo-backfill", SchedConfig::default(), &jobs);
    assert_eq!(r.spans, vec![(0, 100), (100, 150), (150, 350), (3, 53)]);
}

#[test]
fn backfill_starts_a_long_job_on_gpus_the_reservation_does_not_need() {
    // One group of 3 nodes. J0 holds nodes 0–1 until 100. J1 needs two whole nodes: its
    // reservation at 100 takes nodes 0 and 1, so J2 (8 GPUs, 1000 s) may run on node 2 now.
    let jobs = vec![(job(P, 16, 0, 100), 100), (job(P, 16, 1, 100), 100), (job(Q, 8, 2, 1000), 1000)];
    let (r, _) = run(&fac("3x8:3"), "fifo-backfill", SchedConfig::default(), &jobs);
    assert_eq!(r.spans, vec![(0, 100), (100, 200), (2, 1002)]);
}

#[test]
fn a_long_backfill_job_may_take_a_reserved_node_up_to_its_budget() {
    // tiny = 2 nodes × 8. J0 (4 GPUs, 100 s) goes to node 0, J1 (8 GPUs, 1000 s) to node 1.
    // J2 (6 GPUs) waits: at 100 node 0 is free and it takes 6 of its 8 GPUs, so jobs running
    // past 100 may still take 2 there (the budget). J3 (2 GPUs, 500 s) is placed on node 0's
    // free GPUs within that budget and starts; J4 (2 GPUs, 500 s) would exceed it and waits;
    // J5 (2 GPUs, 50 s) ends by 100 and takes node 0's last free GPUs.
    let jobs = vec![
        (job(P, 4, 0, 100), 100),
        (job(P, 8, 1, 1000), 1000),
        (job(P, 6, 2, 100), 100),
        (job(Q, 2, 3, 500), 500),
        (job(Q, 2, 4, 500), 500),
        (job(Q, 2, 5, 50), 50),
    ];
    let f = fac("tiny");
    let mut s = Scheduler::with_policy(&f, "fifo-backfill", SchedConfig::default()).unwrap();
    let mut started = vec![];
    for (spec, _) in &jobs {
        s.submit(spec.clone(), spec.submit).unwrap();
        s.schedule(spec.submit, &mut started);
    }
    assert_eq!(s.job(JobId(3)).parts(), &[(fabrik_model::DomainId(0), 2)]);
    assert_eq!(s.job(JobId(5)).parts(), &[(fabrik_model::DomainId(0), 2)]);
    assert!(s.job(JobId(4)).state.is_waiting());
    assert_eq!(
        s.explain(JobId(4)).unwrap().reasons[0],
        Reason::BehindReservation { holder: JobId(2), start_at: SimTime(100) }
    );
    let (r, _) = run(&f, "fifo-backfill", SchedConfig::default(), &jobs);
    // When J5 ends at 55 node 0 has 2 free, but the budget is spent: J4 still waits. At 100
    // J2 takes node 0's 6 free GPUs; J4 starts when J2 ends at 200.
    assert_eq!(r.spans, vec![(0, 100), (1, 1001), (100, 200), (3, 503), (200, 700), (5, 55)]);
}

#[test]
fn fair_share_puts_the_idle_account_first() {
    // p uses the whole machine from 0 to 100. At 50 p submits J1, at 60 q submits J2, both
    // 16 GPUs. Recalculated at 60 with no age weight: F_p = 2^(-1/0.5) = 0.25, F_q = 1, so
    // J2 (12,000) outranks J1 (4,500) and starts first at 100; J1 follows at 200.
    let mut cfg = SchedConfig::default();
    cfg.fair_share.recalc_interval = Secs(1);
    cfg.fair_share.w_age = 0.0;
    let jobs = vec![(job(P, 16, 0, 100), 100), (job(P, 16, 50, 100), 100), (job(Q, 16, 60, 100), 100)];
    let (r, s) = run(&fac("tiny"), "fair-share", cfg.clone(), &jobs);
    assert_eq!(r.spans, vec![(0, 100), (200, 300), (100, 200)]);
    assert_eq!(s.usage().gpu_seconds(AccountId(P), SimTime(300)), 3200.0);
    // The same jobs under FIFO with backfill: submission order.
    let (r, _) = run(&fac("tiny"), "fifo-backfill", cfg, &jobs);
    assert_eq!(r.spans, vec![(0, 100), (100, 200), (200, 300)]);
}

#[test]
fn priorities_follow_the_multifactor_formula() {
    // Right after p used 1,600 GPU-s and q nothing: F_p = 0.25. A normal-QoS 8-GPU job of p on
    // a 16-GPU facility, 3.5 days old: 1000·0.5 + 10000·0.25 + 1000·0.5 + 2000·0.5 = 4,500.
    let f = fac("tiny");
    let mut s = Scheduler::with_policy(&f, "fair-share", SchedConfig::default()).unwrap();
    let mut started = vec![];
    s.submit(job(P, 16, 0, 100), SimTime(0)).unwrap();
    s.schedule(SimTime(0), &mut started);
    s.finish(JobId(0), SimTime(100)).unwrap();
    s.submit(job(P, 16, 100, 10), SimTime(100)).unwrap(); // keeps the machine busy
    s.submit(job(P, 8, 400, 10), SimTime(400)).unwrap();
    s.schedule(SimTime(100), &mut started); // recalc at 100: F_p = 0.25, job 1 starts
    let at = SimTime(400 + 302_400);
    s.schedule(at, &mut started); // recalc
    let p = s.job(JobId(2)).priority;
    // usage decays but p remains the only user, so F_p stays 2^(-1/0.5)
    assert!((p - 4_500.0).abs() < 1e-6, "{p}");
}

#[test]
fn explanations_name_the_topology_that_blocks() {
    // small: 4 groups × 4 nodes × 8. Four 24-GPU jobs fill three nodes of each group (best
    // fit by group, lowest id first): 32 GPUs stay free, but no group has 32.
    let f = fac("small");
    let mut s = Scheduler::with_policy(&f, "fifo", SchedConfig::default()).unwrap();
    let mut started = vec![];
    for g in 0..4 {
        s.submit(job(P, 24, g, 1000), SimTime(g)).unwrap();
        s.schedule(SimTime(g), &mut started);
        assert_eq!(s.cluster().group_free(fabrik_model::GroupId(g as u32)), 8);
    }
    s.submit(job(Q, 32, 20, 10), SimTime(20)).unwrap();
    s.submit(job(Q, 1, 21, 10), SimTime(21)).unwrap();
    assert_eq!(s.explain(JobId(5)).unwrap().reasons[0], Reason::NotYetConsidered);
    s.schedule(SimTime(21), &mut started);
    assert!(started.is_empty());
    let why = s.explain(JobId(4)).unwrap();
    assert_eq!(why.reasons[0].to_string(), "no leaf group with 32 free GPUs");
    assert_eq!(why.position, Some(0));
    assert_eq!(s.explain(JobId(5)).unwrap().reasons[0], Reason::BehindQueueHead { head: JobId(4) });
    assert_eq!(s.explain(JobId(0)).unwrap().state, "running");
}

#[test]
fn earliest_start_defers_a_job_without_blocking_others() {
    let mut a = job(P, 8, 0, 100);
    a.earliest_start = Some(SimTime(50));
    let jobs = vec![(a, 100), (job(Q, 8, 1, 10), 10)];
    let (r, _) = run(&fac("tiny"), "fifo", SchedConfig::default(), &jobs);
    assert_eq!(r.spans, vec![(50, 150), (1, 11)]);
}

#[test]
fn impossible_jobs_and_unknown_policies_are_refused() {
    let f = fac("tiny");
    let mut s = Scheduler::with_policy(&f, "fifo", SchedConfig::default()).unwrap();
    assert_eq!(
        s.submit(job(P, 17, 0, 10), SimTime(0)).unwrap_err().to_string(),
        "job 'j0' asks for 17 GPUs, more than any pool of its GPU type holds"
    );
    assert!(s.submit(job(1, 1, 0, 10), SimTime(0)).unwrap_err().to_string().contains("not a project"));
    assert!(s.submit(job(P, 0, 0, 10), SimTime(0)).is_err());
    let e = Scheduler::with_policy(&f, "lottery", SchedConfig::default()).err().unwrap();
    assert_eq!(e.to_string(), "unknown policy 'lottery' (known: fifo, fifo-backfill, fair-share, las, slurm)");
    assert_eq!(s.finish(JobId(9), SimTime(0)), Err(SchedError::UnknownJob(JobId(9))));
}

#[test]
fn an_undone_start_frees_the_gpus_and_queues_the_job_first_again() {
    // tiny: 2 nodes × 8 GPUs. Two 8-GPU jobs start; the body cannot carry out the first.
    let f = fac("tiny");
    let mut s = Scheduler::with_policy(&f, "fifo", SchedConfig::default()).unwrap();
    let mut started = vec![];
    s.submit(job(P, 8, 0, 100), SimTime(0)).unwrap();
    s.submit(job(P, 8, 0, 100), SimTime(0)).unwrap();
    s.schedule(SimTime(0), &mut started);
    assert_eq!(started, [JobId(0), JobId(1)]);
    s.unstart(JobId(0), SimTime(0)).unwrap();
    assert_eq!((s.cluster().free_gpus(), s.busy_gpus()), (8, 8));
    assert_eq!(s.pending(), [JobId(0)]);
    assert_eq!(s.job(JobId(0)).state, JobState::Pending);
    assert!(s.explain(JobId(0)).unwrap().reasons[0]
        .describe(&|t: SimTime| t.0.to_string())
        .contains("could not be carried out"));
    // it starts again at the next pass, on the GPUs it left
    s.schedule(SimTime(1), &mut started);
    assert_eq!(started, [JobId(0)]);
    assert_eq!(s.cluster().free_gpus(), 0);
    assert_eq!(s.unstart(JobId(5), SimTime(1)), Err(SchedError::UnknownJob(JobId(5))));
    s.finish(JobId(1), SimTime(2)).unwrap();
    assert_eq!(s.unstart(JobId(1), SimTime(2)), Err(SchedError::NotRunning(JobId(1))));
}

#[test]
fn cancel_removes_pending_and_frees_running() {
    let f = fac("tiny");
    let mut s = Scheduler::with_policy(&f, "fifo", SchedConfig::default()).unwrap();
    let mut started = vec![];
    s.submit(job(P, 16, 0, 100), SimTime(0)).unwrap();
    s.submit(job(P, 16, 0, 100), SimTime(0)).unwrap();
    s.schedule(SimTime(0), &mut started);
    s.cancel(JobId(1), SimTime(5)).unwrap();
    assert!(s.pending().is_empty());
    s.cancel(JobId(0), SimTime(6)).unwrap();
    assert_eq!(s.cluster().free_gpus(), 16);
    assert_eq!(s.cancel(JobId(0), SimTime(7)), Err(SchedError::NotRunning(JobId(0))));
}

fn arb_jobs() -> impl Strategy<Value = Vec<(u32, u32, u64, u64, u64)>> {
    // (account, gpus, submit, walltime, runtime)
    prop::collection::vec(
        (
            prop_oneof![Just(P), Just(Q)],
            prop_oneof![1u32..=8, Just(16), Just(24), Just(32), Just(64), Just(128)],
            0u64..500,
            1u64..300,
            1u64..400,
        ),
        1..60,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// No GPU is allocated twice, gangs are all-or-nothing and every job ends exactly once
    /// (checked inside `run` at every step), under every policy.
    #[test]
    fn invariants_hold_under_every_policy(
        jobs in arb_jobs(),
        pol in 0usize..POLICIES.len(),
        preemptible in prop::collection::vec(any::<bool>(), 60),
        quotas in 0usize..3,
    ) {
        let jobs: Vec<(JobSpec, u64)> = jobs
            .into_iter()
            .enumerate()
            .map(|(i, (a, g, s, w, r))| {
                // with a 64-GPU limit on b, larger jobs of q are refused at submission
                let g = if quotas == 2 && a == Q { g.min(64) } else { g };
                let mut j = job(a, g, s, w);
                j.preemptible = preemptible[i];
                (j, r)
            })
            .collect();
        let cfg = SchedConfig { las_thresholds_gpu_hours: vec![0.01, 0.1], ..SchedConfig::default() };
        // no quotas; a guarantee reclaimed by preemption; a guarantee and a limit
        let f = match quotas {
            0 => fac("small"),
            1 => with_tree("small", quota_tree(true, None)),
            _ => with_tree("small", quota_tree(true, Some(64))),
        };
        let (r, s) = run(&f, POLICIES[pol].0, cfg, &jobs);
        for (i, (spec, rt)) in jobs.iter().enumerate() {
            let (start, end) = r.spans[i];
            prop_assert!(start >= spec.submit.0);
            let e = s.job(r.ids[i]);
            if e.preemptions == 0 {
                // (the brain's walltime: the slurm policy rounds it up to whole minutes)
                prop_assert_eq!(end - start, (*rt).min(e.spec.walltime.0));
            }
            // non-preemptible jobs are never preempted
            prop_assert!(spec.preemptible || e.preemptions == 0);
        }
    }

    /// Under FIFO with EASY backfill the head starts no later than the reservation it was first
    /// given: backfilled jobs never delay it.
    #[test]
    fn backfill_never_delays_the_head_reservation(jobs in arb_jobs(), depth in 1usize..20) {
        let jobs: Vec<(JobSpec, u64)> = jobs.into_iter().map(|(a, g, s, w, r)| (job(a, g, s, w), r)).collect();
        let cfg = SchedConfig { backfill_depth: depth, ..SchedConfig::default() };
        let (r, _) = run(&fac("small"), "fifo-backfill", cfg, &jobs);
        for (&j, &t) in &r.first_reservation {
            prop_assert!(r.spans[j as usize].0 <= t, "job {} reserved for {} started {}", j, t, r.spans[j as usize].0);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Under the slurm policy (priority/basic) the first job in the queue starts no later than
    /// the start the last backfill cycle before its start planned: jobs backfilled in that
    /// cycle never delay it.
    #[test]
    fn slurm_backfill_never_delays_the_first_job(jobs in arb_jobs()) {
        let jobs: Vec<(JobSpec, u64)> = jobs.into_iter().map(|(a, g, s, w, r)| (job(a, g, s, w), r)).collect();
        let (r, _) = run(&fac("small"), "slurm", SchedConfig::default(), &jobs);
        for (&j, &t) in &r.first_reservation {
            prop_assert!(r.spans[j as usize].0 <= t, "job {} planned for {} started {}", j, t, r.spans[j as usize].0);
        }
    }
}

#[test]
fn adopting_a_running_job_takes_its_gpus_and_refuses_conflicts() {
    // After a restart, job A is known to run on node 1 (8 GPUs) since t=50 with walltime 100.
    let f = fac("tiny");
    let mut s = Scheduler::with_policy(&f, "fifo-backfill", SchedConfig::default()).unwrap();
    let a = s.adopt(job(P, 8, 0, 100), &[(fabrik_model::DomainId(1), 8)], SimTime(50)).unwrap();
    assert_eq!(s.busy_gpus(), 8);
    assert_eq!(s.cluster().domain_free(fabrik_model::DomainId(1)), 0);
    let e = s.adopt(job(P, 4, 0, 100), &[(fabrik_model::DomainId(1), 4)], SimTime(50)).unwrap_err();
    assert!(e.to_string().contains("GPUs on domain 1 are not free"), "{e}");
    assert!(s.adopt(job(P, 4, 0, 100), &[(fabrik_model::DomainId(0), 3)], SimTime(50)).is_err());
    // A 16-GPU job reserves for the adopted job's walltime end, 150.
    let mut started = vec![];
    s.submit(job(Q, 16, 60, 10), SimTime(60)).unwrap();
    s.schedule(SimTime(60), &mut started);
    assert!(started.is_empty());
    assert_eq!(s.reservation().unwrap().start_at, SimTime(150));
    s.finish(a, SimTime(120)).unwrap();
    s.schedule(SimTime(120), &mut started);
    assert_eq!(started, vec![JobId(1)]);
    assert_eq!(s.usage().gpu_seconds(AccountId(P), SimTime(120)), 8.0 * 70.0);
}

#[test]
fn tenant_trees_may_grow_but_not_move() {
    let f = fac("tiny");
    let mut s = Scheduler::with_policy(&f, "fair-share", SchedConfig::default()).unwrap();
    let grown = TenantTree::from_specs(
        &[AccountSpec::new("a/x/p", 1.0), AccountSpec::new("b/y/q", 1.0), AccountSpec::new("c/z/r", 2.0)],
        "t",
    )
    .unwrap();
    s.update_tenants(grown.clone()).unwrap();
    let r = grown.resolve("r").unwrap();
    s.submit(job(r.0, 1, 0, 10), SimTime(0)).unwrap();
    // classes a, b, c hold 1 share each; r is the only project of c
    assert!((s.tenants().get(r).norm_share - 1.0 / 3.0).abs() < 1e-12);
    let moved = TenantTree::from_specs(&[AccountSpec::new("b/y/q", 1.0)], "t").unwrap();
    assert!(s.update_tenants(moved).is_err());
}

fn quota_tree(reclaim: bool, limit_q: Option<u64>) -> TenantTree {
    let mut a = AccountSpec::new("a", 1.0);
    a.quota.guarantee_gpus = Some(8);
    a.quota.reclaim_by_preemption = reclaim;
    let mut b = AccountSpec::new("b", 1.0);
    b.quota.limit_gpus = limit_q;
    TenantTree::from_specs(&[a, AccountSpec::new("a/x/p", 1.0), b, AccountSpec::new("b/y/q", 1.0)], "test").unwrap()
}

fn with_tree(name: &str, t: TenantTree) -> Facility {
    let mut f = fac(name);
    f.tenants = t;
    f
}

fn borrower(submit: u64, ckpt: u64) -> JobSpec {
    let mut j = job(Q, 8, submit, 10_000);
    j.preemptible = true;
    j.checkpoint_interval = Some(Secs(ckpt));
    j
}

#[test]
fn a_borrower_is_preempted_when_the_owner_returns() {
    // tiny = 16 GPUs. Account a is guaranteed 8 GPUs and reclaims by preemption; q (account b)
    // borrows all 16 with two preemptible 8-GPU jobs checkpointing every 30 s and 60 s. At
    // t = 100 p asks for 8 GPUs: within a's guarantee, so the borrower with less unsaved work
    // goes: job 0 has 100 mod 30 = 10 s unsaved (80 GPU-s), job 1 has 40 s (320 GPU-s).
    let f = with_tree("tiny", quota_tree(true, None));
    let mut s = Scheduler::with_policy(&f, "fair-share", SchedConfig::default()).unwrap();
    let mut started = vec![];
    let mut preempted = vec![];
    s.submit(borrower(0, 30), SimTime(0)).unwrap();
    s.submit(borrower(0, 60), SimTime(0)).unwrap();
    s.schedule(SimTime(0), &mut started);
    assert_eq!(started.len(), 2);
    let owner = s.submit(job(P, 8, 100, 50), SimTime(100)).unwrap();
    assert!(s.job(owner).guaranteed_demand);
    s.schedule(SimTime(100), &mut started);
    assert_eq!(started, vec![owner]);
    s.drain_preempted(&mut preempted);
    assert_eq!(preempted, vec![JobId(0)]);
    let victim = s.job(JobId(0));
    assert_eq!((&victim.state, victim.preemptions, victim.attained), (&JobState::Pending, 1, 800.0));
    assert_eq!(s.explain(JobId(0)).unwrap().reasons[0], Reason::Preempted { at: SimTime(100) });
    // Without reclaim by preemption the owner waits for a borrower to end.
    let f = with_tree("tiny", quota_tree(false, None));
    let mut s = Scheduler::with_policy(&f, "fair-share", SchedConfig::default()).unwrap();
    s.submit(borrower(0, 30), SimTime(0)).unwrap();
    s.submit(borrower(0, 60), SimTime(0)).unwrap();
    s.schedule(SimTime(0), &mut started);
    s.submit(job(P, 8, 100, 50), SimTime(100)).unwrap();
    s.schedule(SimTime(100), &mut started);
    assert!(started.is_empty());
    s.drain_preempted(&mut preempted);
    assert!(preempted.is_empty());
}

#[test]
fn non_preemptible_borrowers_are_never_preempted() {
    let f = with_tree("tiny", quota_tree(true, None));
    let mut s = Scheduler::with_policy(&f, "fair-share", SchedConfig::default()).unwrap();
    let mut started = vec![];
    s.submit(job(Q, 16, 0, 1000), SimTime(0)).unwrap();
    s.schedule(SimTime(0), &mut started);
    s.submit(job(P, 8, 10, 50), SimTime(10)).unwrap();
    s.schedule(SimTime(10), &mut started);
    assert!(started.is_empty());
    assert_eq!(s.explain(JobId(1)).unwrap().reasons[0], Reason::HoldsReservation { start_at: SimTime(1000) });
}

#[test]
fn an_account_at_its_limit_waits_even_with_free_gpus() {
    let f = with_tree("tiny", quota_tree(false, Some(8)));
    let mut s = Scheduler::with_policy(&f, "fifo-backfill", SchedConfig::default()).unwrap();
    let mut started = vec![];
    s.submit(job(Q, 8, 0, 100), SimTime(0)).unwrap();
    s.submit(job(Q, 8, 0, 100), SimTime(0)).unwrap();
    s.submit(job(P, 4, 1, 100), SimTime(1)).unwrap();
    s.schedule(SimTime(1), &mut started);
    // p's job is within a's guarantee, so it is considered first (tier 1); q's second job would
    // take b to 16 GPUs, over its limit of 8.
    assert_eq!(started, vec![JobId(2), JobId(0)]);
    let why = &s.explain(JobId(1)).unwrap().reasons[0];
    assert_eq!(why.to_string(), "account b is at its limit of 8 GPUs");
    let e = s.submit(job(Q, 16, 2, 100), SimTime(2)).unwrap_err();
    assert_eq!(e.to_string(), "job 'j2' asks for 16 GPUs, more than account b's limit of 8");
}

/// tiny; las with one threshold at 360 GPU-s; J0 (16 GPUs, preemptible, checkpoint `ckpt`)
/// runs from 0, J1 (16 GPUs) arrives at 10 in the top queue. Returns the first of `times` at
/// which a pass preempts J0.
fn las_preempts_j0_at(cfg: SchedConfig, ckpt: Option<u64>, times: &[u64]) -> Option<u64> {
    // a pass at every call: the priority recalculation every second marks the queue dirty
    let fair_share = FairShareConfig { recalc_interval: Secs(1), ..FairShareConfig::default() };
    let cfg = SchedConfig { las_thresholds_gpu_hours: vec![0.1], fair_share, ..cfg };
    let mut s = Scheduler::with_policy(&fac("tiny"), "las", cfg).unwrap();
    let (mut started, mut preempted) = (vec![], vec![]);
    let mut j0 = job(P, 16, 0, 100_000);
    j0.preemptible = true;
    j0.checkpoint_interval = ckpt.map(Secs);
    s.submit(j0, SimTime(0)).unwrap();
    s.schedule(SimTime(0), &mut started);
    s.submit(job(Q, 16, 10, 100_000), SimTime(10)).unwrap();
    for &t in times {
        s.schedule(SimTime(t), &mut started);
        s.drain_preempted(&mut preempted);
        if !preempted.is_empty() {
            return Some(t);
        }
    }
    None
}

#[test]
fn las_spares_a_job_within_its_exempt_time_and_one_that_would_lose_too_much() {
    let cfg = SchedConfig { preempt_exempt: Secs(1000), preempt_max_unsaved: Secs(1500), ..SchedConfig::default() };
    // demoted at 23 s (360 / 16), but exempt until it has run 1,000 s; then 1,000 s unsaved < 1,500
    assert_eq!(las_preempts_j0_at(cfg.clone(), None, &[100, 999, 1000]), Some(1000));
    // first looked at after 1,600 s without a checkpoint: it would lose 1,600 s > 1,500: spared
    assert_eq!(las_preempts_j0_at(cfg.clone(), None, &[1600, 5000]), None);
    // checkpointing every 500 s it would lose 100 s at 1,600
    assert_eq!(las_preempts_j0_at(cfg, Some(500), &[1600]), Some(1600));
    // the defaults, 30 minutes each: a job without checkpoints is never a victim, one that
    // checkpoints every 10 minutes is once it has run 30 minutes
    assert_eq!(las_preempts_j0_at(SchedConfig::default(), None, &[1799, 1800, 1801, 100_000]), None);
    assert_eq!(las_preempts_j0_at(SchedConfig::default(), Some(600), &[1799, 1800]), Some(1800));
}

#[test]
fn a_victims_cost_weighs_its_restart_with_its_unsaved_work() {
    // tiny (2 nodes × 8). X (4 GPUs, not preemptible) and A (4 GPUs, no checkpoints) share node
    // 0, B (8 GPUs, checkpoint every 100 s) has node 1, all from 0. H (4 GPUs) arrives at 2,050:
    // A and B have more service (queue 1). Unsaved: A 4 × 2,050 = 8,200, B 8 × 50 = 400 GPU-s.
    // With no restart cost B is cheaper; with 3,000 s A is (8,200 + 12,000 < 400 + 24,000).
    let victim = |restart: u64| {
        let cfg = SchedConfig {
            las_thresholds_gpu_hours: vec![0.1],
            preempt_exempt: Secs(0),
            preempt_max_unsaved: Secs(u64::MAX),
            restart_cost: Secs(restart),
            ..SchedConfig::default()
        };
        let mut s = Scheduler::with_policy(&fac("tiny"), "las", cfg).unwrap();
        let (mut started, mut preempted) = (vec![], vec![]);
        let mut a = job(P, 4, 0, 100_000);
        a.preemptible = true;
        let mut b = job(Q, 8, 0, 100_000);
        b.preemptible = true;
        b.checkpoint_interval = Some(Secs(100));
        for spec in [job(P, 4, 0, 100_000), a, b] {
            s.submit(spec, SimTime(0)).unwrap();
        }
        s.schedule(SimTime(0), &mut started);
        assert_eq!(started.len(), 3);
        s.submit(job(Q, 4, 2050, 100), SimTime(2050)).unwrap();
        s.schedule(SimTime(2050), &mut started);
        s.drain_preempted(&mut preempted);
        assert_eq!(started, vec![JobId(3)]);
        preempted.clone()
    };
    assert_eq!(victim(0), vec![JobId(2)]);
    assert_eq!(victim(3000), vec![JobId(1)]);
}

#[test]
fn las_demotes_across_a_threshold_and_preempts_the_job_with_more_service() {
    // Threshold 0.1 GPU-hours = 360 GPU-s. J0 (16 GPUs) runs from 0; at t = 10 it has 160 GPU-s,
    // the same queue as the new J1: no preemption. At t = 100 J0 has 1,600 GPU-s: demoted to
    // queue 1, and J1 (queue 0) preempts it.
    // (No exempt time and no bound on the loss: those have tests of their own.)
    let cfg = SchedConfig {
        las_thresholds_gpu_hours: vec![0.1],
        fair_share: FairShareConfig { recalc_interval: Secs(1), ..FairShareConfig::default() },
        preempt_exempt: Secs(0),
        preempt_max_unsaved: Secs(u64::MAX),
        ..SchedConfig::default()
    };
    let f = fac("tiny");
    let mut s = Scheduler::with_policy(&f, "las", cfg).unwrap();
    let (mut started, mut preempted) = (vec![], vec![]);
    let mut j0 = job(P, 16, 0, 10_000);
    j0.preemptible = true;
    s.submit(j0, SimTime(0)).unwrap();
    s.schedule(SimTime(0), &mut started);
    let mut j1 = job(Q, 16, 10, 10_000);
    j1.preemptible = true;
    s.submit(j1, SimTime(10)).unwrap();
    s.schedule(SimTime(10), &mut started);
    s.drain_preempted(&mut preempted);
    assert!(started.is_empty() && preempted.is_empty());
    s.schedule(SimTime(100), &mut started);
    s.drain_preempted(&mut preempted);
    assert_eq!((started.clone(), preempted.clone()), (vec![JobId(1)], vec![JobId(0)]));
    assert_eq!(s.job(JobId(0)).attained, 1600.0);
    // J1 reaches 368 GPU-s at t = 123: both in queue 1 now; equal priority never preempts.
    s.schedule(SimTime(200), &mut started);
    s.drain_preempted(&mut preempted);
    assert!(started.is_empty() && preempted.is_empty());
    assert!(Scheduler::with_policy(
        &f,
        "las",
        SchedConfig { las_thresholds_gpu_hours: vec![5.0, 1.0], ..SchedConfig::default() }
    )
    .is_err());
}

#[test]
fn a_starving_gang_becomes_the_head_and_starts_in_bounded_time() {
    // q (high QoS) submits an 8-GPU, 100-s job every 50 s from t = 0 to 5,000, keeping both
    // nodes busy; p's 16-GPU job (normal QoS) is always outranked. Without starvation handling
    // it starts only after the stream (t > 5,000); with starvation_after = 1,000 s it becomes
    // the head at the first recalculation after 1,001 and starts once the two running q jobs
    // end, within one walltime (100 s).
    let mk = |starve: u64| {
        let cfg = SchedConfig {
            starvation_after: Secs(starve),
            fair_share: FairShareConfig {
                recalc_interval: Secs(1),
                w_age: 0.0,
                w_size: 0.0,
                w_fairshare: 0.0,
                ..FairShareConfig::default()
            },
            ..SchedConfig::default()
        };
        let mut jobs = vec![(job(P, 16, 1, 100), 100)];
        for k in 0..=100u64 {
            let mut j = job(Q, 8, 50 * k, 100);
            j.qos = fabrik_model::Qos::High;
            jobs.push((j, 100));
        }
        let (r, _) = run(&fac("tiny"), "fair-share", cfg, &jobs);
        r.spans[0].0
    };
    assert!(mk(1_000_000) > 5_000);
    let start = mk(1_000);
    assert!((1_001..=1_101).contains(&start), "started at {start}");
}

fn advance(account: u32, gpus: u32, start: u64, end: u64) -> fabrik_model::facility::AdvanceReservation {
    fabrik_model::facility::AdvanceReservation {
        name: "block".into(),
        account: AccountId(account),
        gpus,
        gpu_type: None,
        group: None,
        start: SimTime(start),
        end: SimTime(end),
    }
}

#[test]
fn a_reservation_pinned_to_a_leaf_group_holds_gpus_there() {
    // small: groups of 32 GPUs. A 16-GPU reservation pinned to group 2 from t = 0.
    let f = fac("small");
    let mut s = Scheduler::with_policy(&f, "fifo", SchedConfig::default()).unwrap();
    let mut r = advance(P, 16, 0, 100);
    r.group = Some(fabrik_model::GroupId(2));
    let rid = s.add_reservation(&r).unwrap();
    let mut started = vec![];
    s.schedule(SimTime(0), &mut started);
    let Some(Window::Open { parts, .. }) = s.window(rid) else { panic!("the window is open at 0") };
    let doms: Vec<u32> = parts.iter().map(|p| p.0 .0).collect();
    assert_eq!(doms, vec![8, 9]);
    assert_eq!(s.cluster().group_free(fabrik_model::GroupId(2)), 16);
}

#[test]
fn an_advance_reservation_is_honoured_under_backfill_and_its_account_runs_inside() {
    // small = 128 GPUs. p reserves 128 GPUs from 1,000 to 5,000. At t = 0 q submits a 64-GPU job
    // of walltime 2,000 (would still run at 1,000: it must wait until the window closes) and a
    // 64-GPU job of walltime 500 (ends before the window: backfills now). In the window p's
    // 32-GPU job runs inside the reservation; q's 8-GPU job at 2,000 finds no GPU outside it.
    let f = fac("small");
    let mut s = Scheduler::with_policy(&f, "fifo-backfill", SchedConfig::default()).unwrap();
    let rid = s.add_reservation(&advance(P, 128, 1_000, 5_000)).unwrap();
    assert_eq!(rid, ResvId(0), "reservations have ids of their own");
    let mut started = vec![];
    let long = s.submit(job(Q, 64, 0, 2_000), SimTime(0)).unwrap();
    let short = s.submit(job(Q, 64, 0, 500), SimTime(0)).unwrap();
    assert_eq!((long, short), (JobId(0), JobId(1)), "jobs are numbered from 0 beside reservations");
    s.schedule(SimTime(0), &mut started);
    assert_eq!(started, vec![short]);
    assert_eq!(s.next_wakeup(), Some(SimTime(1_000)));
    assert_eq!(
        s.explain(long).unwrap().reasons[0],
        Reason::BehindAdvanceReservation { reservation: "block".into(), start_at: SimTime(1_000) }
    );
    s.finish(short, SimTime(500)).unwrap();
    s.schedule(SimTime(500), &mut started);
    assert!(started.is_empty(), "the long job would overlap the window");
    s.schedule(SimTime(1_000), &mut started);
    assert!(started.is_empty());
    assert!(matches!(s.window(rid), Some(Window::Open { start: SimTime(1_000), .. })));
    assert_eq!(s.busy_gpus(), 0, "a reservation is not busy until its jobs run");
    let inner = s.submit(job(P, 32, 1_500, 1_000), SimTime(1_500)).unwrap();
    let outsider = s.submit(job(Q, 8, 2_000, 100), SimTime(2_000)).unwrap();
    s.schedule(SimTime(2_000), &mut started);
    assert_eq!(started, vec![inner]);
    assert_eq!(s.job(inner).inside, Some(0));
    assert_eq!(s.busy_gpus(), 32);
    // A p job that would outlast the window does not run inside it.
    let too_long = s.submit(job(P, 8, 2_100, 4_000), SimTime(2_100)).unwrap();
    s.schedule(SimTime(2_100), &mut started);
    assert!(started.is_empty());
    s.finish(inner, SimTime(2_500)).unwrap();
    assert_eq!(s.next_wakeup(), Some(SimTime(5_000)));
    s.schedule(SimTime(5_000), &mut started);
    assert!(matches!(s.window(rid), Some(Window::Closed { start: Some(SimTime(1_000)), end: SimTime(5_000) })));
    // the window closed: FIFO order, the long job first, then the others
    assert_eq!(started, vec![long, outsider, too_long]);
    assert_eq!(s.cluster().free_gpus(), 128 - 64 - 8 - 8);
}

#[test]
fn jobs_inside_a_reservation_keep_their_gpus_when_the_window_closes() {
    let f = fac("tiny");
    let mut s = Scheduler::with_policy(&f, "fifo", SchedConfig::default()).unwrap();
    let rid = s.add_reservation(&advance(P, 8, 0, 100)).unwrap();
    let mut started = vec![];
    s.schedule(SimTime(0), &mut started);
    let j = s.submit(job(P, 8, 10, 90), SimTime(10)).unwrap();
    s.schedule(SimTime(10), &mut started);
    assert_eq!(started, vec![j]);
    s.schedule(SimTime(100), &mut started);
    assert!(matches!(s.window(rid), Some(Window::Closed { start: Some(SimTime(0)), end: SimTime(100) })));
    assert_eq!((s.job(j).inside, s.cluster().free_gpus()), (None, 8));
    s.finish(j, SimTime(100)).unwrap();
    assert_eq!(s.cluster().free_gpus(), 16);
}

#[test]
fn a_failure_interrupts_exactly_the_jobs_on_the_node() {
    // small: 16 nodes × 8. A fills node 0; B and C (4 GPUs each) share node 1; D (16 GPUs)
    // takes nodes 2 and 3. Node 1 fails at t = 10: B and C stop and requeue, A and D run on.
    let f = fac("small");
    let mut s = Scheduler::with_policy(&f, "fifo-backfill", SchedConfig::default()).unwrap();
    let mut started = vec![];
    for (g, t) in [(8, 0), (4, 1), (4, 2), (16, 3)] {
        s.submit(job(P, g, t, 1000), SimTime(t)).unwrap();
        s.schedule(SimTime(t), &mut started);
    }
    let node = |id: u32| s.job(JobId(id)).parts().iter().map(|p| p.0 .0).collect::<Vec<_>>();
    assert_eq!((node(0), node(1), node(2), node(3)), (vec![0], vec![1], vec![1], vec![2, 3]));
    s.fail_domain(fabrik_model::DomainId(1), SimTime(10)).unwrap();
    let mut hit = vec![];
    s.drain_interrupted(&mut hit);
    assert_eq!(hit, vec![JobId(1), JobId(2)]);
    assert_eq!(s.job(JobId(1)).interruptions, 1);
    assert_eq!(s.explain(JobId(1)).unwrap().reasons[0], Reason::Interrupted { at: SimTime(10) });
    use fabrik_model::DomainId;
    assert_eq!(
        (&s.job(JobId(0)).state, &s.job(JobId(3)).state),
        (
            &JobState::Running { start: SimTime(0), parts: vec![(DomainId(0), 8)] },
            &JobState::Running { start: SimTime(3), parts: vec![(DomainId(2), 8), (DomainId(3), 8)] }
        )
    );
    assert_eq!(s.cluster().down_gpus(), 8);
    // 128 − 8 (A) − 16 (D) − 8 (down) = 96 free; B and C restart elsewhere, not on node 1
    assert_eq!(s.cluster().free_gpus(), 96);
    s.schedule(SimTime(10), &mut started);
    assert_eq!(started, vec![JobId(1), JobId(2)]);
    assert!(started.iter().all(|&j| !s.job(j).parts().iter().any(|p| p.0 .0 == 1)));
    s.repair_domain(fabrik_model::DomainId(1)).unwrap();
    assert_eq!((s.cluster().down_gpus(), s.cluster().free_gpus()), (0, 96));
}

/// A job that depends on `on` (a brain id) in the given way.
fn after(mut j: JobSpec, kind: fabrik_model::DepKind, on: u32) -> JobSpec {
    j.after.push(fabrik_model::Dependency { kind, on: format!("j{on}"), job: Some(JobId(on)) });
    j
}

#[test]
fn dependencies_hold_jobs_without_blocking_others_under_fabrik_s_and_slurm_s_policies() {
    // sbatch(1): "afterok: this job can begin execution after the specified jobs have
    // successfully executed (ran to completion with an exit code of zero)"; afterany: "after
    // the specified jobs have terminated"; afternotok: "after the specified jobs have
    // terminated in some failed state"; after: "after the specified jobs have begun
    // execution"; singleton: "after any previously launched jobs sharing the same job name and
    // user have terminated". A job held by a dependency does not block the queue (Slurm's
    // reason Dependency).
    use fabrik_model::DepKind::*;
    for policy in ["fifo-backfill", "fifo", "slurm"] {
        let f = fac("small");
        let mut s = Scheduler::with_policy(&f, policy, SchedConfig::default()).unwrap();
        let mut started = vec![];
        let j = |t: u64| job(P, 8, t, 600);
        // 0: A; 1: B afterok A; 2: C afterany A; 3: D afternotok A; 4: E, free
        s.submit(j(0), SimTime(0)).unwrap();
        s.submit(after(j(0), AfterOk, 0), SimTime(0)).unwrap();
        s.submit(after(j(0), AfterAny, 0), SimTime(0)).unwrap();
        s.submit(after(j(0), AfterNotOk, 0), SimTime(0)).unwrap();
        s.submit(j(0), SimTime(0)).unwrap();
        // 5: F runs and fails; 6: G afterok F; 7: H afternotok F; 8: I after K; 9: K (waits
        // behind nothing: it starts, so I may start too)
        s.submit(j(0), SimTime(0)).unwrap();
        s.submit(after(j(0), AfterOk, 5), SimTime(0)).unwrap();
        s.submit(after(j(0), AfterNotOk, 5), SimTime(0)).unwrap();
        s.submit(after(j(0), After, 9), SimTime(0)).unwrap();
        s.submit(j(0), SimTime(0)).unwrap();
        // 10 and 11: singleton of one key; 12: a job whose dependency the body found unsatisfiable
        let mut s1 = j(0);
        s1.singleton = Some("nightly@p".into());
        s.submit(s1.clone(), SimTime(0)).unwrap();
        s.submit(s1, SimTime(0)).unwrap();
        let mut never = j(0);
        never.after.push(fabrik_model::Dependency { kind: AfterOk, on: "gone".into(), job: None });
        s.submit(never, SimTime(0)).unwrap();
        s.schedule(SimTime(0), &mut started);
        started.sort();
        // I (8) waits for K (9) to start, which happens in the same pass: fabrik's next pass
        // starts I; Slurm's backfill cycle, which runs after its main scheduler at t = 0 here,
        // sees K started and starts I at once
        let mut first = vec![JobId(0), JobId(4), JobId(5), JobId(9), JobId(10)];
        if policy == "slurm" {
            first.insert(3, JobId(8));
        }
        assert_eq!(started, first, "{policy}");
        let why = |s: &Scheduler, id: u32| s.explain(JobId(id)).unwrap().reasons[0].clone();
        assert_eq!(why(&s, 1), Reason::Dependency { kind: AfterOk, on: "j0".into() }, "{policy}");
        assert_eq!(why(&s, 3), Reason::Dependency { kind: AfterNotOk, on: "j0".into() }, "{policy}");
        assert_eq!(why(&s, 11), Reason::Singleton { on: "j0".into() }, "{policy}");
        assert_eq!(why(&s, 12), Reason::DependencyNeverSatisfied { kind: AfterOk, on: "gone".into() }, "{policy}");
        s.schedule(SimTime(1), &mut started);
        let second = if policy == "slurm" { vec![] } else { vec![JobId(8)] };
        assert_eq!(started, second, "after: K started, {policy}");
        // A completes, F fails: B and C (after A) and H (afternotok F) start; D and G never will
        s.finish(JobId(0), SimTime(10)).unwrap();
        s.finish_not_ok(JobId(5), SimTime(10)).unwrap();
        s.schedule(SimTime(10), &mut started);
        started.sort();
        assert_eq!(started, vec![JobId(1), JobId(2), JobId(7)], "{policy}");
        assert_eq!(why(&s, 3), Reason::DependencyNeverSatisfied { kind: AfterNotOk, on: "j0".into() }, "{policy}");
        assert_eq!(why(&s, 6), Reason::DependencyNeverSatisfied { kind: AfterOk, on: "j5".into() }, "{policy}");
        // the first singleton ends: the second starts
        s.finish(JobId(10), SimTime(20)).unwrap();
        s.schedule(SimTime(20), &mut started);
        assert_eq!(started, vec![JobId(11)], "{policy}");
    }
}

#[test]
fn a_cordoned_node_takes_no_new_work_and_its_jobs_leave_one_by_one() {
    // small: 16 nodes × 8. B and C (4 GPUs each) share node 1, D (16) takes nodes 2 and 3.
    // Node 1 is cordoned at t = 10: B and C keep running (nothing interrupted), its GPUs
    // leave service (8 down), and a new 8-GPU job does not land on it.
    use fabrik_model::DomainId;
    let f = fac("small");
    let mut s = Scheduler::with_policy(&f, "fifo-backfill", SchedConfig::default()).unwrap();
    let mut started = vec![];
    for (g, t) in [(8, 0), (4, 1), (4, 2), (16, 3)] {
        s.submit(job(P, g, t, 1000), SimTime(t)).unwrap();
        s.schedule(SimTime(t), &mut started);
    }
    assert_eq!(s.job(JobId(1)).parts(), &[(DomainId(1), 4)]);
    s.cordon_domain(DomainId(1)).unwrap();
    let mut hit = vec![];
    s.drain_interrupted(&mut hit);
    assert!(hit.is_empty());
    assert!(s.is_cordoned(DomainId(1)));
    assert_eq!(s.jobs_on(DomainId(1)), vec![JobId(1), JobId(2)]);
    // 128 − 8 (A) − 16 (D) − 8 (node 1, with B and C on it) = 96 free, 8 out of service
    assert_eq!((s.cluster().free_gpus(), s.cluster().down_gpus()), (96, 8));
    assert!(s.job(JobId(1)).state.is_running());
    // the node cannot come back while B and C are on it
    assert!(s.repair_domain(DomainId(1)).is_err());
    s.submit(job(P, 8, 11, 1000), SimTime(11)).unwrap();
    s.schedule(SimTime(11), &mut started);
    assert_eq!(started, vec![JobId(4)]);
    assert_eq!(s.job(JobId(4)).parts(), &[(DomainId(4), 8)]);
    // B checkpointed and left: requeued as interrupted; its GPUs stay out of service
    s.requeue(JobId(1), SimTime(20)).unwrap();
    assert_eq!(s.job(JobId(1)).interruptions, 1);
    assert_eq!(s.explain(JobId(1)).unwrap().reasons[0], Reason::Interrupted { at: SimTime(20) });
    assert_eq!((s.cluster().free_gpus(), s.cluster().down_gpus()), (88, 8));
    s.schedule(SimTime(20), &mut started);
    assert_eq!(started, vec![JobId(1)]);
    assert_ne!(s.job(JobId(1)).parts()[0].0, DomainId(1));
    // C ends on its own; the node is then an ordinary drained one and comes back whole
    s.finish(JobId(2), SimTime(30)).unwrap();
    assert!(!s.is_cordoned(DomainId(1)));
    s.repair_domain(DomainId(1)).unwrap();
    assert_eq!(s.cluster().down_gpus(), 0);
    assert_eq!(s.cluster().domain_free(DomainId(1)), 8);
    // a failure of a cordoned node stops the jobs still on it
    s.cordon_domain(DomainId(4)).unwrap();
    s.fail_domain(DomainId(4), SimTime(40)).unwrap();
    s.drain_interrupted(&mut hit);
    assert_eq!(hit, vec![JobId(4)]);
    assert!(!s.is_cordoned(DomainId(4)));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// After any sequence of submissions, passes, ends, failures and repairs, no job runs on a
    /// failed node and no GPU is allocated twice.
    #[test]
    fn failures_never_leave_jobs_on_dead_nodes(
        ops in prop::collection::vec((0u8..5, 0u32..16, 1u32..40), 1..120),
        aware in 0usize..3,
    ) {
        let f = fac("small");
        let mut s = Scheduler::with_policy(&f, "fair-share", SchedConfig::default()).unwrap();
        // with the energy-aware modifier, every third job is flexible: claims and deferrals must
        // survive failures (a claim on a failed node sends its job back to the queue)
        let mode = [None, Some(crate::DeferMode::Claim), Some(crate::DeferMode::Queue)][aware];
        if let Some(mode) = mode {
            let sig = fabrik_model::grid::Hourly { values: vec![400.0, 300.0, 100.0] };
            s.set_energy_aware(Some(crate::EnergyAware::new(sig, 48, 0.05, Secs(0), mode)));
        }
        let mut started = vec![];
        let mut sink = vec![];
        for (t, (op, x, g)) in ops.into_iter().enumerate() {
            let now = SimTime(t as u64 * 100);
            match op {
                0 | 1 => {
                    let gpus = [1, 2, 4, 8, 16, 32][g as usize % 6];
                    let mut j = job(if x % 2 == 0 { P } else { Q }, gpus, now.0, 500);
                    if x % 3 == 0 {
                        j.deadline = Some(SimTime(now.0 + 500 + 4 * 3600));
                    }
                    s.submit(j, now).unwrap();
                }
                2 => {
                    let running: Vec<JobId> = s.jobs().filter(|(_, j)| j.state.is_running()).map(|(id, _)| id).collect();
                    if let Some(&j) = running.get(x as usize % running.len().max(1)) {
                        s.finish(j, now).unwrap();
                    }
                }
                3 => s.fail_domain(fabrik_model::DomainId(x), now).unwrap(),
                _ => s.repair_domain(fabrik_model::DomainId(x)).unwrap(),
            }
            s.schedule(now, &mut started);
            s.drain_interrupted(&mut sink);
            let c = s.cluster();
            for (_, j) in s.jobs().filter(|(_, j)| j.state.is_running()) {
                prop_assert!(j.parts().iter().all(|p| !c.is_down(p.0)), "a job runs on a failed node");
                prop_assert_eq!(j.parts().iter().map(|p| p.1).sum::<u32>(), j.spec.gpus);
            }
            prop_assert_eq!(c.free_gpus() + s.busy_gpus() + c.down_gpus(), c.total_gpus());
            // every pending job is queued or deferred, never lost
            let waiting = s.jobs().filter(|(_, j)| j.state.is_waiting()).count();
            prop_assert_eq!(waiting, s.pending().len() + s.deferred_len());
        }
    }
}

#[test]
fn the_power_cap_holds_back_jobs_that_would_exceed_it() {
    // tiny = 16 H100: idle 357.5 W and busy 969 W per GPU with its host share, plus 50 W of
    // network and storage per GPU (800 W). With a cap of 8 × 969 + 8 × 357.5 + 800 = 11,412 W
    // (PUE 1) one 8-GPU job fits; a second would add 8 × 611.5 W, even a 1-GPU job 611.5 W:
    // both wait although GPUs are free. High QoS: no power limit allowed.
    let f = fac("tiny");
    let mut s = Scheduler::with_policy(&f, "fifo-backfill", SchedConfig::default()).unwrap();
    s.set_power_cap(Some(11_412.0), 1.0);
    assert!((s.facility_power_w(SimTime(0)) - 6_520.0).abs() < 1e-9);
    let mut started = vec![];
    let high = |acct, gpus| {
        let mut j = job(acct, gpus, 0, 100);
        j.qos = Qos::High;
        j
    };
    s.submit(high(P, 8), SimTime(0)).unwrap();
    s.submit(high(P, 8), SimTime(0)).unwrap();
    s.submit(high(Q, 1), SimTime(0)).unwrap();
    s.schedule(SimTime(0), &mut started);
    assert_eq!(started, vec![JobId(0)]);
    assert!((s.facility_power_w(SimTime(0)) - 11_412.0).abs() < 1e-9);
    assert_eq!(s.power_blocked_gpus(), 9);
    let why = s.explain(JobId(2)).unwrap().reasons[0].to_string();
    assert_eq!(why, "facility power cap 11.4 kW: 11.4 kW drawn, the job adds 0.6 kW");
    assert!(matches!(s.explain(JobId(1)).unwrap().reasons[0], Reason::PowerCap { .. }));
    s.finish(JobId(0), SimTime(100)).unwrap();
    s.schedule(SimTime(100), &mut started);
    assert_eq!(started, vec![JobId(1)]);
    // lifting the cap lets the small job run beside it
    s.set_power_cap(None, 1.0);
    s.schedule(SimTime(101), &mut started);
    assert_eq!(started, vec![JobId(2)]);
    // a cap below idle power refuses every job at submission
    s.set_power_cap(Some(6_000.0), 1.0);
    let e = s.submit(high(P, 1), SimTime(102)).unwrap_err().to_string();
    assert_eq!(
        e,
        "job 'j0' can never start under the power cap: 0.007 MW idle + 0.001 MW for its GPUs > 0.006 MW of IT power in the best hour"
    );
}

#[test]
fn a_binding_cap_runs_normal_qos_jobs_power_limited() {
    // Room for one 8-GPU job at full power and a second at 80% of its draw above idle:
    // cap = 11,412 + 0.8 × 8 × 611.5 = 15,325.6 W. Normal QoS may go down to 0.8, so the second
    // job starts limited to exactly 0.8; a 1-GPU job then finds no room even at 0.8.
    let f = fac("tiny");
    let mut s = Scheduler::with_policy(&f, "fifo-backfill", SchedConfig::default()).unwrap();
    s.set_power_cap(Some(15_325.6), 1.0);
    let mut started = vec![];
    s.submit(job(P, 8, 0, 100), SimTime(0)).unwrap();
    s.submit(job(P, 8, 0, 100), SimTime(0)).unwrap();
    s.schedule(SimTime(0), &mut started);
    assert_eq!(started, vec![JobId(0), JobId(1)]);
    assert_eq!(s.job(JobId(0)).power_fraction, 1.0);
    assert!((s.job(JobId(1)).power_fraction - 0.8).abs() < 1e-9);
    assert!((s.facility_power_w(SimTime(0)) - 15_325.6).abs() < 1e-6);
    // the limited job's end gives its saving back: idle + one full job again
    s.finish(JobId(1), SimTime(50)).unwrap();
    assert!((s.it_power_w() - 11_412.0).abs() < 1e-6);
    // without limits the second job waits
    let cfg = SchedConfig { power_limits: crate::PowerLimits::none(), ..SchedConfig::default() };
    let mut s = Scheduler::with_policy(&f, "fifo-backfill", cfg).unwrap();
    s.set_power_cap(Some(15_325.6), 1.0);
    s.submit(job(P, 8, 0, 100), SimTime(0)).unwrap();
    s.submit(job(P, 8, 0, 100), SimTime(0)).unwrap();
    s.schedule(SimTime(0), &mut started);
    assert_eq!(started, vec![JobId(0)]);
}

#[test]
fn an_hourly_cap_admits_only_jobs_whose_walltime_stays_under_every_hour() {
    // Hour 0 allows one 8-GPU job (11,412 W), hour 1 only idle power (6,520 W), and so on
    // alternating. A 100-s job fits in hour 0; a 3,700-s job would still run in hour 1 and
    // waits, with a wake-up at the next hour. Every 3,700-s window touches a low hour, so it
    // keeps waiting, while a 3,500-s job submitted at 7,200 s (hour 2) fits.
    let f = fac("tiny");
    let mut s = Scheduler::with_policy(&f, "fifo-backfill", SchedConfig::default()).unwrap();
    let h = |v: Vec<f64>| fabrik_model::grid::Hourly { values: v };
    s.set_power_cap_hourly(Some(h(vec![11_412.0, 6_520.0])), h(vec![1.0]));
    let mut started = vec![];
    let hi = |gpus, wall| {
        let mut j = job(P, gpus, 0, wall);
        j.qos = Qos::High;
        j
    };
    s.submit(hi(8, 3_700), SimTime(0)).unwrap();
    s.submit(hi(8, 100), SimTime(0)).unwrap();
    s.schedule(SimTime(0), &mut started);
    assert_eq!(started, vec![JobId(1)]);
    assert_eq!(s.next_wakeup(), Some(SimTime(3600)));
    s.finish(JobId(1), SimTime(100)).unwrap();
    s.schedule(SimTime(3600), &mut started);
    assert!(started.is_empty());
    s.submit(hi(8, 3_500), SimTime(7_200)).unwrap();
    s.schedule(SimTime(7_200), &mut started);
    assert_eq!(started, vec![JobId(2)]);
}

#[test]
fn the_energy_aware_modifier_defers_only_flexible_jobs_and_green_power_brings_them_forward() {
    // Signal: hour 0 dirty (400), hour 1 clean (100), repeating. A flexible 1-hour job with a
    // 4-hour deadline waits for hour 1; an inflexible one starts at once; a second flexible job
    // whose 611.5 W fit in 700 W of green headroom starts at once too.
    let f = fac("tiny");
    let mut s = Scheduler::with_policy(&f, "fifo-backfill", SchedConfig::default()).unwrap();
    let sig = fabrik_model::grid::Hourly { values: vec![400.0, 100.0] };
    s.set_energy_aware(Some(crate::EnergyAware::new(sig, 48, 0.05, Secs(0), crate::DeferMode::Claim)));
    let mut flexible = job(P, 1, 0, 3600);
    flexible.deadline = Some(SimTime(4 * 3600));
    s.submit(flexible.clone(), SimTime(0)).unwrap();
    s.submit(job(Q, 1, 0, 3600), SimTime(0)).unwrap();
    let mut started = vec![];
    s.schedule(SimTime(0), &mut started);
    assert_eq!(started, vec![JobId(1)]);
    let why = s.explain(JobId(0)).unwrap().reasons[0].clone();
    assert_eq!(why, Reason::Deferred { until: SimTime(3600), signal_now: 400.0, signal_then: 100.0 });
    assert_eq!(s.next_wakeup(), Some(SimTime(3600)));
    s.set_green_headroom_w(700.0);
    s.submit(flexible, SimTime(10)).unwrap();
    s.schedule(SimTime(10), &mut started);
    // the headroom (700 W) covers one job (611.5 W): the first in queue order
    assert_eq!(started, vec![JobId(0)]);
    s.schedule(SimTime(3600), &mut started);
    assert_eq!(started, vec![JobId(2)]);
    assert_eq!(s.job(JobId(2)).deferrals, 1);
}

#[test]
fn queue_mode_deferral_returns_the_job_at_its_own_place() {
    // tiny (16 GPUs). A flexible 8-GPU job is deferred to hour 1 without claiming GPUs; a
    // 16-GPU job submitted later takes the whole facility at once (nothing is held idle). At
    // hour 1 the flexible job returns at its own tier and place (submitted first, it is ahead
    // of a later normal job under fifo, without being made urgent): it holds the EASY
    // reservation and starts first when the big job ends.
    let f = fac("tiny");
    let mut s = Scheduler::with_policy(&f, "fifo-backfill", SchedConfig::default()).unwrap();
    let sig = fabrik_model::grid::Hourly { values: vec![400.0, 100.0] };
    s.set_energy_aware(Some(crate::EnergyAware::new(sig, 48, 0.05, Secs(0), crate::DeferMode::Queue)));
    let mut flexible = job(P, 8, 0, 3600);
    flexible.deadline = Some(SimTime(6 * 3600));
    s.submit(flexible, SimTime(0)).unwrap();
    let mut started = vec![];
    s.schedule(SimTime(0), &mut started);
    assert!(started.is_empty());
    s.submit(job(Q, 16, 10, 4000), SimTime(10)).unwrap();
    s.schedule(SimTime(10), &mut started);
    assert_eq!(started, vec![JobId(1)]);
    s.submit(job(Q, 8, 20, 3600), SimTime(20)).unwrap();
    s.schedule(SimTime(3600), &mut started);
    assert!(started.is_empty());
    assert!(!s.job(JobId(0)).urgent);
    assert_eq!(s.pending()[0], JobId(0));
    assert!(matches!(s.explain(JobId(0)).unwrap().reasons[0], Reason::HoldsReservation { .. }));
    s.finish(JobId(1), SimTime(4010)).unwrap();
    s.schedule(SimTime(4010), &mut started);
    assert_eq!(started, vec![JobId(0), JobId(2)]);
}

#[test]
fn queue_mode_deferrals_count_the_power_already_deferred_into_their_window() {
    // tiny under a cap of 12,100 W, the greener hour 1. One 8-GPU job draws 6,520 idle +
    // 4,892 W = 11,412 W (see the power cap test), under the default headroom's 95% of the cap
    // (11,495 W). Two flexible 8-GPU jobs (high QoS: no power limit) could each start now. The
    // first is deferred to hour 1; the second would need 6,520 + 2 × 4,892 = 16,304 W there,
    // over the cap, so it is not deferred into the same hour: it starts now.
    let f = fac("tiny");
    let mut s = Scheduler::with_policy(&f, "fifo-backfill", SchedConfig::default()).unwrap();
    s.set_power_cap(Some(12_100.0), 1.0);
    let sig = fabrik_model::grid::Hourly { values: vec![400.0, 100.0] };
    s.set_energy_aware(Some(crate::EnergyAware::new(sig, 48, 0.05, Secs(0), crate::DeferMode::Queue)));
    for _ in 0..2 {
        let mut j = job(P, 8, 0, 3600);
        j.qos = Qos::High;
        j.deadline = Some(SimTime(6 * 3600));
        s.submit(j, SimTime(0)).unwrap();
    }
    let mut started = vec![];
    s.schedule(SimTime(0), &mut started);
    assert_eq!(started, vec![JobId(1)]);
    assert_eq!(s.job(JobId(0)).deferred_until(), Some(SimTime(3600)));
    assert_eq!(s.job(JobId(1)).deferrals, 0);
}

#[test]
fn queue_mode_deferrals_leave_the_headroom_of_the_later_windows_cap_free() {
    // tiny under a cap of 11,600 W, the greener hour 1. One flexible 8-GPU job would draw
    // 6,520 idle + 4,892 W = 11,412 W in hour 1: under the cap, but over 95% of it (11,020 W),
    // so with the default headroom of 5% it is not deferred and starts now (11,412 W fits the
    // cap now). With no headroom the same job is deferred to hour 1.
    let f = fac("tiny");
    let sig = fabrik_model::grid::Hourly { values: vec![400.0, 100.0] };
    for (headroom, deferred) in [(crate::power::DEFAULT_HEADROOM, false), (0.0, true)] {
        let mut s = Scheduler::with_policy(&f, "fifo-backfill", SchedConfig::default()).unwrap();
        s.set_power_cap(Some(11_600.0), 1.0);
        let m = crate::EnergyAware::new(sig.clone(), 48, 0.05, Secs(0), crate::DeferMode::Queue);
        s.set_energy_aware(Some(m.with_headroom(headroom)));
        let mut j = job(P, 8, 0, 3600);
        j.qos = Qos::High;
        j.deadline = Some(SimTime(6 * 3600));
        s.submit(j, SimTime(0)).unwrap();
        let mut started = vec![];
        s.schedule(SimTime(0), &mut started);
        assert_eq!(started.is_empty(), deferred, "headroom {headroom}");
        assert_eq!(s.job(JobId(0)).deferred_until(), deferred.then_some(SimTime(3600)));
    }
}

#[test]
fn a_group_sized_gang_spans_groups_when_every_group_has_a_node_out() {
    // small: 4 leaf groups of 4 domains × 8 GPUs. A 32-GPU gang fills one group. With one
    // domain of every group out of service (spares held back, failures), no group can ever hold
    // it again until a repair: it spans two groups instead of waiting forever.
    let f = fac("small");
    let mut s = Scheduler::with_policy(&f, "fifo", SchedConfig::default()).unwrap();
    let mut started = vec![];
    s.submit(job(P, 32, 0, 100), SimTime(0)).unwrap();
    s.schedule(SimTime(0), &mut started);
    let groups = |s: &Scheduler, j: JobId| -> BTreeSet<u32> {
        s.job(j).parts().iter().map(|p| f.domains[p.0.idx()].group.0).collect()
    };
    assert_eq!(groups(&s, JobId(0)).len(), 1);
    s.finish(JobId(0), SimTime(10)).unwrap();
    for g in 0..4 {
        s.fail_domain(fabrik_model::DomainId(g * 4 + 3), SimTime(10)).unwrap();
    }
    s.submit(job(P, 32, 10, 100), SimTime(10)).unwrap();
    s.schedule(SimTime(10), &mut started);
    assert_eq!(started, vec![JobId(1)]);
    assert_eq!(groups(&s, JobId(1)).len(), 2);
    // a repair brings a whole group back: group-sized gangs keep to one group again
    s.finish(JobId(1), SimTime(20)).unwrap();
    s.repair_domain(fabrik_model::DomainId(3)).unwrap();
    s.submit(job(P, 32, 20, 100), SimTime(20)).unwrap();
    s.schedule(SimTime(20), &mut started);
    assert_eq!(groups(&s, JobId(2)), BTreeSet::from([0]));
}

#[test]
fn a_gang_larger_than_what_is_in_service_says_so() {
    // tiny (2 nodes × 8): node 1 fails; a 16-GPU job cannot run until it is back.
    let mut s = Scheduler::with_policy(&fac("tiny"), "fifo-backfill", SchedConfig::default()).unwrap();
    s.fail_domain(fabrik_model::DomainId(1), SimTime(0)).unwrap();
    let id = s.submit(job(P, 16, 0, 100), SimTime(0)).unwrap();
    let mut started = vec![];
    s.schedule(SimTime(0), &mut started);
    assert!(started.is_empty());
    let no_fit = crate::cluster::NoFit::OutOfService { need: 16, in_service: 8 };
    let r = s.explain(id).unwrap().reasons[0].clone();
    // no reservation at the end of time: it says why it cannot run
    assert_eq!(r, Reason::Resources { no_fit });
    assert!(s.reservation().is_none());
    let mut out = crate::cluster::Parts::new();
    let mut c = s.cluster().clone();
    assert_eq!(c.find(16, None, &mut out), Err(no_fit));
    assert_eq!(
        Reason::Resources { no_fit }.to_string(),
        "cannot run now: needs 16 GPUs, only 8 in service (nodes out of service)"
    );
    s.repair_domain(fabrik_model::DomainId(1)).unwrap();
    s.schedule(SimTime(50), &mut started);
    assert_eq!(started, vec![id]);
}

//! The `fabrik` binary end to end: exit codes and messages for good and bad input.

use std::path::PathBuf;
use std::process::{Command, Output};

fn fabrik(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fabrik")).args(args).output().expect("runs fabrik")
}

fn tmp(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fabrik-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// The named columns of a CSV's rows, comma-joined per row (by header, not position).
fn csv_cols(csv: &str, cols: &[&str]) -> Vec<String> {
    let header: Vec<&str> = csv.lines().next().unwrap_or("").split(',').collect();
    let idx: Vec<usize> =
        cols.iter().map(|c| header.iter().position(|h| h == c).unwrap_or_else(|| panic!("no column {c}"))).collect();
    csv.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            idx.iter().map(|&i| f[i]).collect::<Vec<_>>().join(",")
        })
        .collect()
}

fn fails_with(args: &[&str], needle: &str) {
    let o = fabrik(args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{args:?} should fail");
    assert!(err.contains(needle), "{args:?}: stderr {err:?} lacks {needle:?}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn simulate_small_prints_a_summary_and_writes_reports() {
    let json = tmp("r.json", "");
    let html = tmp("r.html", "");
    let jobs = tmp("jobs.csv", "");
    let o = fabrik(&[
        "simulate",
        "--facility",
        "small",
        "--days",
        "2",
        "--seed",
        "5",
        "--json",
        json.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
        "--jobs-csv",
        jobs.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("fabrik simulate — small (128 GPUs"), "{out}");
    assert!(out.contains("policy fair-share"));
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["facility"]["gpus"], 128);
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.starts_with("<!DOCTYPE html>")
            && page.contains("<svg")
            && !page.contains("http://")
            && !page.contains("https://")
    );
    let rows = std::fs::read_to_string(&jobs).unwrap().lines().count() as u64;
    assert_eq!(rows, report["summary"]["jobs"].as_u64().unwrap() + 1);
}

#[test]
fn facility_show_and_policies_list() {
    let o = fabrik(&["facility", "show", "eu-gigafactory"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("GPUs 100096, NVLink domains 3552, leaf groups 216, halls 5"), "{out}");
    assert!(out.contains("nameplate IT power 165.04 MW"), "{out}");
    let o = fabrik(&["facility", "show", "80x8:20", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((v["gpus"].as_u64(), v["groups"].as_u64()), (Some(640), Some(4)));
    let o = fabrik(&["policies"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(out.lines().count(), 5);
    assert!(out.starts_with("fifo "));
    assert!(out.lines().any(|l| l.starts_with("slurm ")), "{out}");
}

#[test]
fn bad_input_is_a_clear_error_and_a_nonzero_exit() {
    fails_with(&["simulate", "--policy", "lottery"], "unknown policy 'lottery'");
    fails_with(&["simulate", "--facility", "mega-factory"], "unknown facility 'mega-factory'");
    fails_with(&["facility", "show", "80x0:20"], "80x0:20: shorthand: G '0' is not a positive whole number");
    let bad_toml = tmp("bad.toml", "name = \"x\"\n[[pool]]\ngpu = \"H100\"\ndomain_gpus = 8\n");
    fails_with(&["facility", "show", bad_toml.to_str().unwrap()], "bad.toml");
    let bad_gpu = tmp("badgpu.toml", "name='x'\n[[pool]]\ngpu='Z9'\ndomain_gpus=8\ndomains_per_group=1\ngroups=1\n");
    fails_with(&["facility", "show", bad_gpu.to_str().unwrap()], "pool[0].gpu: unknown GPU type 'Z9'");
    let neg = tmp("neg.csv", "name,submit,account,gpus,walltime,runtime\na,0,eval,1,1h,1h\nb,-60,eval,1,1h,1h\n");
    let wl = format!("csv:{}", neg.display());
    fails_with(
        &["simulate", "--facility", "tiny", "--workload", &wl],
        "neg.csv: line 3: submit: '-60' must not be negative",
    );
    let big = tmp("big.csv", "name,submit,account,gpus,walltime,runtime\nhuge,0,eval,64,1h,1h\n");
    let wl = format!("csv:{}", big.display());
    fails_with(&["simulate", "--facility", "tiny", "--workload", &wl], "job 'huge' (#0) asks for 64 GPUs");
    fails_with(
        &["simulate", "--workload", "csv:/nonexistent/jobs.csv"],
        "cannot open workload file /nonexistent/jobs.csv",
    );
    fails_with(&["simulate", "--workload", "slurm:x"], "unknown workload 'slurm:x'");
    fails_with(&["simulate", "--workload", "pai:only-one.csv"], "pai: takes JOBS.csv,TASKS.csv");
    fails_with(&["simulate", "--facility", "tiny", "--days=-3"], "days must be in (0, 3660] (ten years), got -3.0");
    // absurd values once ran away (memory linear in a duration, endless event streams)
    fails_with(
        &["simulate", "--facility", "tiny", "--days", "1e308"],
        "days must be in (0, 3660] (ten years), got 1e308",
    );
    fails_with(
        &["simulate", "--facility", "tiny", "--failures", "--failure-rate", "1e12"],
        "--failure-rate must be in [0, 1000] failures per 1,000 node-days, got 1000000000000.0",
    );
    let long = tmp(
        "long.csv",
        "name,submit,account,gpus,walltime,runtime
forever,0,eval,8,1000000000000d,1000000000000d
",
    );
    let wl = format!("csv:{}", long.display());
    fails_with(
        &["simulate", "--facility", "tiny", "--workload", &wl],
        "job 'forever' (#0) has a walltime of 86400000000000000 s; the twin accepts at most 158112000 s (5 years)",
    );
    fails_with(&["simulate", "--facility", "tiny", "--workload", &wl, "--days", "1e9"], "--days must be in (0, 7320]");
    let sc = tmp("sched.toml", "backfill_depth = 5\n[fair_share]\nhalf_lfe = 3\n");
    fails_with(&["simulate", "--facility", "tiny", "--sched-config", sc.to_str().unwrap()], "unknown field `half_lfe`");
}

#[test]
fn compare_runs_every_policy_on_every_facility() {
    let json = tmp("cmp.json", "");
    let html = tmp("cmp.html", "");
    let o = fabrik(&[
        "compare",
        "--policies",
        "fifo,las",
        "--facilities",
        "small,20x8:5",
        "--days",
        "2",
        "--json",
        json.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let rows = v["rows"].as_array().unwrap();
    let labels: Vec<(String, String)> =
        rows.iter().map(|r| (r["policy"].as_str().unwrap().into(), r["facility"].as_str().unwrap().into())).collect();
    let expect = [("fifo", "small"), ("las", "small"), ("fifo", "20x8:5"), ("las", "20x8:5")];
    assert_eq!(labels, expect.map(|(a, b)| (a.to_string(), b.to_string())));
    assert_eq!(rows[0]["preemptions"], 0, "fifo never preempts");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("JCT mean") && out.contains("TTG max"), "{out}");
    assert!(std::fs::read_to_string(&html).unwrap().contains("<table>"));
    fails_with(&["compare", "--policies", "fifo,chaos"], "unknown policy 'chaos'");
}

#[test]
fn energy_flags_run_the_ledger_and_the_modifier() {
    // a one-job workload on tiny: 8 GPUs for 2 h from 00:00, flexible with a day of slack
    let wl = tmp("flex.csv", "name,submit,account,gpus,walltime,runtime,deadline\nf,0,eval,8,2h,2h,1d\n");
    let wl = format!("csv:{}", wl.display());
    let ledger = tmp("ledger.csv", "");
    let jobs = tmp("flexjobs.csv", "");
    let run = |aware: &str| {
        fabrik(&[
            "simulate",
            "--facility",
            "tiny",
            "--workload",
            &wl,
            "--carbon",
            "synthetic",
            "--price",
            "synthetic",
            "--pue",
            "temperature",
            "--power-cap-mw",
            "0.02,17-21=0.015",
            "--renewables",
            "solar=0.005",
            "--battery",
            "0.01,0.005",
            "--energy-aware",
            aware,
            "--energy-csv",
            ledger.to_str().unwrap(),
            "--jobs-csv",
            jobs.to_str().unwrap(),
        ])
    };
    let o = run("off");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("power cap 0.015–0.020 MW (0.02,17-21=0.015 MW)"), "{out}");
    assert!(out.contains("flexible jobs: 1 (0 deferred"), "{out}");
    let o = run("carbon");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("flexible jobs: 1 (1 deferred"), "{out}");
    assert!(out.contains("deadlines met 1 / missed 0"), "{out}");
    let csv = std::fs::read_to_string(&ledger).unwrap();
    assert!(csv.starts_with("hour,it_mwh,facility_mwh,renewable_mwh,battery_in_mwh"), "{csv}");
    let start: u64 = csv_cols(&std::fs::read_to_string(&jobs).unwrap(), &["start_s"])[0].parse().unwrap();
    assert!(start > 0 && start.is_multiple_of(3600), "deferred to an hour: {start}");
}

#[test]
fn bad_energy_flags_name_the_flag() {
    fails_with(&["simulate", "--facility", "tiny", "--zone", "XX"], "unknown grid zone 'XX'");
    fails_with(&["simulate", "--facility", "tiny", "--pue", "0.9"], "--pue: PUE must be at least 1, got 0.9");
    fails_with(&["simulate", "--facility", "tiny", "--pue", "cool"], "--pue takes a number or 'temperature'");
    fails_with(&["simulate", "--facility", "tiny", "--power-cap-mw", "10,25-3=4"], "needs hours 0–24");
    fails_with(&["simulate", "--facility", "tiny", "--power-cap-mw", "abc"], "--power-cap-mw: 'abc' is not a number");
    fails_with(
        &["simulate", "--facility", "tiny", "--carbon", "hourly"],
        "--carbon takes annual-mean, synthetic or csv:PATH",
    );
    fails_with(
        &["simulate", "--facility", "tiny", "--price", "csv:/nonexistent/p.csv"],
        "reading --price file /nonexistent/p.csv",
    );
    fails_with(&["simulate", "--facility", "tiny", "--battery", "10"], "--battery takes MWH,MW[,ROUND_TRIP]");
    fails_with(&["simulate", "--facility", "tiny", "--battery", "10,5,1.5"], "round-trip efficiency must be in (0, 1]");
    fails_with(&["simulate", "--facility", "tiny", "--renewables", "hydro=5"], "--renewables takes solar=MW,wind=MW");
    fails_with(
        &["simulate", "--facility", "tiny", "--energy-aware", "carbon"],
        "--energy-aware carbon needs an hourly signal",
    );
    fails_with(
        &["simulate", "--facility", "tiny", "--energy-aware", "green"],
        "--energy-aware takes off, carbon, price or both",
    );
    fails_with(
        &[
            "simulate",
            "--facility",
            "tiny",
            "--carbon",
            "synthetic",
            "--energy-aware",
            "carbon",
            "--aware-mode",
            "hold",
        ],
        "--aware-mode takes claim or queue",
    );
    fails_with(
        &["simulate", "--facility", "tiny", "--power-limits", "low=2"],
        "power limit for QoS low must be between 0.3 and 1",
    );
    let bad = tmp("cap.csv", "time,mw\n0,100\n3600,-5\n");
    let spec = format!("csv:{}", bad.display());
    fails_with(
        &["simulate", "--facility", "tiny", "--power-cap-mw", &spec],
        "cap.csv: line 3: '-5' must not be negative",
    );
    fails_with(
        &["simulate", "--facility", "tiny", "--flexible-share", "0.5", "--workload", "itp:x.csv"],
        "--flexible-share applies to the synthetic workload",
    );
    fails_with(
        &["serve", "--data-dir", "/nonexistent/fabrik", "--energy-aware", "green"],
        "--energy-aware takes off, carbon, price or both",
    );
    fails_with(
        &["serve", "--data-dir", "/nonexistent/fabrik", "--aware-mode", "hold", "--energy-aware", "carbon"],
        "--aware-mode takes claim or queue",
    );
    // a cap below the facility's idle draw refuses every job, naming the job
    fails_with(
        &["simulate", "--facility", "tiny", "--days", "1", "--power-cap-mw", "0.001"],
        "can never start under the power cap",
    );
}

#[test]
fn an_imported_slurm_cluster_runs_under_the_slurm_policy() {
    // Two 4-GPU nodes on one leaf switch. R holds node 1 until 600; H (8 GPUs) waits for it.
    // C1 (limit 10 min) would end exactly when H's reservation begins, C2 (9 min) before it.
    // Slurm's backfill keeps C1 off the reserved nodes and backfills C2 at 0; fabrik's EASY
    // backfilling lets C1 run (it ends by the shadow time) and C2 then waits for H.
    let conf = tmp(
        "slurm.conf",
        "ClusterName=lab\nSchedulerType=sched/backfill\nSchedulerParameters=bf_interval=30\n\
         TopologyPlugin=topology/tree\nNodeName=n[1-2] Gres=gpu:h100:4\n\
         PartitionName=gpu Nodes=ALL Default=YES MaxTime=60\n",
    );
    let topo = tmp("topology.conf", "SwitchName=leaf Nodes=n[1-2]\n");
    let fac = tmp("lab.toml", "");
    let o = fabrik(&[
        "facility",
        "import",
        conf.to_str().unwrap(),
        "--topology",
        topo.to_str().unwrap(),
        "-o",
        fac.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&fac).unwrap();
    assert!(text.contains("[slurm]") && text.contains("bf_interval_s = 30") && text.contains("max_time_min = 60"));
    let account = "industry/telco-eu/llm";
    let jobs = tmp(
        "slurm-jobs.csv",
        &format!(
            "name,submit,account,gpus,walltime,runtime\nr,0,{account},4,600,600\nh,0,{account},8,600,300\n\
             c1,0,{account},4,600,300\nc2,0,{account},4,540,300\n"
        ),
    );
    let starts = |policy: &str| {
        let out = tmp(&format!("starts-{policy}.csv"), "");
        let o = fabrik(&[
            "simulate",
            "--facility",
            fac.to_str().unwrap(),
            "--workload",
            &format!("csv:{}", jobs.display()),
            "--policy",
            policy,
            "--jobs-csv",
            out.to_str().unwrap(),
            "--quiet",
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let text = std::fs::read_to_string(&out).unwrap();
        let mut lines = text.lines();
        let h: Vec<&str> = lines.next().unwrap().split(',').collect();
        let (n, s) = (h.iter().position(|&c| c == "name").unwrap(), h.iter().position(|&c| c == "start_s").unwrap());
        let mut v: Vec<(String, String)> =
            lines.map(|l| l.split(',').collect::<Vec<_>>()).map(|r| (r[n].to_string(), r[s].to_string())).collect();
        v.sort();
        v
    };
    let pairs = |v: &[(&str, &str)]| v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<Vec<_>>();
    assert_eq!(starts("slurm"), pairs(&[("c1", "900"), ("c2", "0"), ("h", "600"), ("r", "0")]));
    assert_eq!(starts("fifo-backfill"), pairs(&[("c1", "0"), ("c2", "900"), ("h", "600"), ("r", "0")]));
    // a limit above the partition's MaxTime is refused, naming the job
    let long = tmp("slurm-long.csv", &format!("name,submit,account,gpus,walltime,runtime\nlong,0,{account},1,2h,60\n"));
    fails_with(
        &[
            "simulate",
            "--facility",
            fac.to_str().unwrap(),
            "--workload",
            &format!("csv:{}", long.display()),
            "--policy",
            "slurm",
        ],
        "time limit 120 min exceeds the partition/QOS limit of 60 min",
    );
}

/// A live brain on tiny at Unix 1,700,000,000: `r` (16 GPUs) started 30 min before and runs
/// 1 h; queued q1 (8 GPUs, 1 h walltime, runs 1,200 s) and q2 (16 GPUs, 1 h, runs 600 s).
fn snapshot_file() -> PathBuf {
    snapshot_file_with([Some(3600), Some(1200), Some(600)], "state.json")
}

/// The same live brain with these runtimes known for r, q1 and q2.
fn snapshot_file_with(runtimes: [Option<u64>; 3], name: &str) -> PathBuf {
    use fabrik_model::{Facility, JobSpec, Secs, SimTime};
    const AT: u64 = 1_700_000_000;
    let f = Facility::preset("tiny").unwrap();
    let leaf = f.tenants.leaves().next().unwrap().0;
    let mut s = fabrik_sched::Scheduler::for_facility(&f, "fifo-backfill", Default::default(), SimTime(0)).unwrap();
    let mut started = Vec::new();
    s.submit(JobSpec::new("r", leaf, 16, SimTime(AT - 1800), Secs(7200)), SimTime(AT - 1800)).unwrap();
    s.schedule(SimTime(AT - 1800), &mut started);
    for (name, gpus) in [("q1", 8), ("q2", 16)] {
        s.submit(JobSpec::new(name, leaf, gpus, SimTime(AT - 60), Secs(3600)), SimTime(AT - 60)).unwrap();
    }
    s.schedule(SimTime(AT - 60), &mut started);
    let runtime = |id: fabrik_model::JobId| runtimes[id.idx()];
    let snap = s.snapshot(&f, SimTime(AT), SimTime(0), |id| Some(i64::from(id.0)), runtime);
    tmp(name, &serde_json::to_string(&snap).unwrap())
}

#[test]
fn simulate_from_a_snapshot_continues_the_facility() {
    // Second 0 of the twin is midnight of the snapshot's day (1,699,920,000): the snapshot is
    // at 80,000 s, r started at 78,200 and ends at 81,800; q1 (submitted at 79,940) runs
    // 81,800..83,000, then q2 83,000..83,600. Appended, a job 10 s after the snapshot (8 GPUs,
    // runs its 1 h walltime) ends by 85,400, when q2's reservation (q1's walltime end) begins:
    // it backfills beside q1 at 81,800, and q2 starts at its reservation, 85,400..86,000.
    let state = snapshot_file();
    let jobs = std::env::temp_dir().join(format!("fabrik-cli-fork-{}.csv", std::process::id()));
    let late =
        tmp("late.csv", "name,submit,account,gpus,walltime,runtime\nlate,10,research/open-llm/pretrain,8,1h,1h\n");
    let base = ["r,78200,78200,81800", "q1,79940,81800,83000", "q2,79940,83000,83600"];
    for (extra, want) in [
        (vec![], base.to_vec()),
        (
            vec!["--append".to_string(), format!("csv:{}", late.display())],
            vec![base[0], base[1], "q2,79940,85400,86000", "late,80010,81800,85400"],
        ),
    ] {
        let mut args = vec!["simulate", "-q", "--from", state.to_str().unwrap(), "--facility", "tiny"];
        args.extend(extra.iter().map(String::as_str));
        args.extend(["--jobs-csv", jobs.to_str().unwrap()]);
        let o = fabrik(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let csv = std::fs::read_to_string(&jobs).unwrap();
        // name, submit, start, end
        let rows = csv_cols(&csv, &["name", "submit_s", "start_s", "end_s"]);
        assert_eq!(rows, want);
    }
}

#[test]
fn simulate_from_refuses_bad_snapshots_with_the_file_and_reason() {
    let state = snapshot_file();
    fails_with(&["simulate", "--from", state.to_str().unwrap(), "--facility", "small"], "--facility");
    let broken = tmp("broken.json", "{\"version\": 1,\n \"at\": \"soon\"}");
    fails_with(&["simulate", "--from", broken.to_str().unwrap()], "broken.json");
    fails_with(&["simulate", "--from", broken.to_str().unwrap()], "line 2");
    fails_with(&["simulate", "--append", "synthetic"], "--from");
    fails_with(
        &["simulate", "--from", state.to_str().unwrap(), "--facility", "tiny", "--workload", "synthetic:x"],
        "--append",
    );
}

#[test]
fn simulate_from_samples_unknown_runtimes_from_a_traces_history() {
    // q1 and q2 have no known runtime. Without history they run their hour: q1 81,800..85,400,
    // q2 85,400..89,000. A history in which every job ran half its walltime makes them run
    // 1,800 s: q1 81,800..83,600, q2 83,600..85,400.
    let state = snapshot_file_with([Some(3600), None, None], "state-unknown.json");
    let hist = tmp("hist.csv", "name,submit,account,gpus,walltime,runtime\nh1,0,research/open-llm/pretrain,8,2h,1h\nh2,60,sme/startup-a/llm,1,10m,5m\n");
    let jobs = std::env::temp_dir().join(format!("fabrik-cli-fork-rt-{}.csv", std::process::id()));
    let rows = |extra: &[&str]| -> Vec<String> {
        let mut args = vec!["simulate", "-q", "--from", state.to_str().unwrap(), "--facility", "tiny", "--jobs-csv"];
        args.push(jobs.to_str().unwrap());
        args.extend(extra);
        let o = fabrik(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        csv_cols(&std::fs::read_to_string(&jobs).unwrap(), &["name", "start_s", "end_s"])
    };
    assert_eq!(rows(&[]), vec!["r,78200,81800", "q1,81800,85400", "q2,85400,89000"]);
    let spec = format!("csv:{}", hist.display());
    assert_eq!(rows(&["--runtimes-from", &spec]), vec!["r,78200,81800", "q1,81800,83600", "q2,83600,85400"]);
}

#[test]
fn compare_gives_every_facility_its_own_tenant_tree() {
    // one node of 8 GPUs, accounts a/p and b/q; on the second facility b may hold 4 GPUs.
    // Two 4-GPU jobs of b/q at t = 0 running 100 s: on the first both start at once (mean
    // wait 0); on the second the second job waits for the first (100 s): mean wait 50 s.
    let pool = "[[pool]]\ngpu = \"H100\"\ndomain_gpus = 8\ndomains_per_group = 1\ngroups = 1\n";
    let tree = "[[account]]\npath = \"a\"\n[[account]]\npath = \"a/p\"\n[[account]]\npath = \"b\"\n";
    let a = tmp("tree-a.toml", &format!("name = \"free\"\n{pool}{tree}[[account]]\npath = \"b/q\"\n"));
    let b =
        tmp("tree-b.toml", &format!("name = \"limited\"\n{pool}{tree}limit_gpus = 4\n[[account]]\npath = \"b/q\"\n"));
    let jobs =
        tmp("tree-jobs.csv", "name,submit,account,gpus,walltime,runtime\nj1,0,b/q,4,200,100\nj2,0,b/q,4,200,100\n");
    let json = tmp("tree-cmp.json", "");
    let workload = format!("csv:{}", jobs.display());
    // the comparison's JSON for a policy on two facility files
    let compare = |policy: &str, x: &std::path::Path, y: &std::path::Path| -> serde_json::Value {
        let facilities = format!("{},{}", x.display(), y.display());
        let o = fabrik(&[
            "compare",
            "--policies",
            policy,
            "--facilities",
            &facilities,
            "--workload",
            &workload,
            "--json",
            json.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap()
    };
    let v = compare("fifo-backfill", &a, &b);
    let waits: Vec<f64> = v["rows"].as_array().unwrap().iter().map(|r| r["wait_mean_s"].as_f64().unwrap()).collect();
    assert_eq!(waits, vec![0.0, 50.0]);
    // a facility without the workload's account runs with the first's tree, and says so
    let c = tmp("tree-c.toml", &format!("name = \"other\"\n{pool}{tree}[[account]]\npath = \"b/r\"\n"));
    let v = compare("fifo", &a, &c);
    let notes: Vec<&str> = v["notes"].as_array().unwrap().iter().filter_map(|n| n.as_str()).collect();
    assert!(
        notes.iter().any(|n| n.starts_with("facility other: the workload's account 'b/q' is not in its tenant tree")
            && n.ends_with("it runs with the tenant tree of free")),
        "{notes:?}"
    );
}

#[test]
fn parquet_outputs_read_back_as_their_csvs() {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::RowAccessor;
    // tiny, a CSV workload: a runs 100 s, b is killed at its 60-s walltime
    let jobs_in = tmp(
        "pq-jobs.csv",
        "name,submit,account,gpus,walltime,runtime,gpu_type\na,0,eval,8,1h,100,\nb,10,eval,8,60,2h,H100\n",
    );
    let (jobs_pq, hours_pq, jobs_csv, hours_csv) =
        (tmp("pq-jobs.parquet", ""), tmp("pq-energy.parquet", ""), tmp("pq-out.csv", ""), tmp("pq-energy.csv", ""));
    let workload = format!("csv:{}", jobs_in.display());
    let o = fabrik(&[
        "simulate",
        "-q",
        "--facility",
        "tiny",
        "--policy",
        "fifo",
        "--workload",
        &workload,
        "--jobs-parquet",
        jobs_pq.to_str().unwrap(),
        "--energy-parquet",
        hours_pq.to_str().unwrap(),
        "--jobs-csv",
        jobs_csv.to_str().unwrap(),
        "--energy-csv",
        hours_csv.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = SerializedFileReader::new(std::fs::File::open(&jobs_pq).unwrap()).unwrap();
    assert_eq!(r.metadata().file_metadata().num_rows(), 2);
    let rows: Vec<parquet::record::Row> = r.get_row_iter(None).unwrap().map(|x| x.unwrap()).collect();
    // by hand: b (job 1) asked for H100, started at 10 s when a's GPUs were not needed (16
    // GPUs, 8 each), killed at 70 s; no calendar: null times
    let b = &rows[1];
    assert_eq!((b.get_long(0).unwrap(), b.get_string(1).unwrap().as_str()), (1, "b"));
    assert_eq!((b.get_string(4).unwrap().as_str(), b.get_string(5).unwrap().as_str()), ("H100", "timeout"));
    assert_eq!((b.get_long(6).unwrap(), b.get_long(7).unwrap(), b.get_long(8).unwrap()), (10, 10, 70));
    assert!(b.get_string(10).is_err(), "no calendar: start_utc is null");
    // every column as the CSV has it
    let csv = std::fs::read_to_string(&jobs_csv).unwrap();
    let ids = csv_cols(&csv, &["job_id", "name", "start_s", "end_s", "wait_s"]);
    let from_pq: Vec<String> = rows
        .iter()
        .map(|x| {
            format!(
                "{},{},{},{},{}",
                x.get_long(0).unwrap(),
                x.get_string(1).unwrap(),
                x.get_long(7).unwrap(),
                x.get_long(8).unwrap(),
                x.get_long(12).unwrap()
            )
        })
        .collect();
    assert_eq!(from_pq, ids);
    let e = SerializedFileReader::new(std::fs::File::open(&hours_pq).unwrap()).unwrap();
    let hours = std::fs::read_to_string(&hours_csv).unwrap().lines().count() as i64 - 1;
    assert_eq!(e.metadata().file_metadata().num_rows(), hours);
    let first: parquet::record::Row = e.get_row_iter(None).unwrap().next().unwrap().unwrap();
    let it = csv_cols(&std::fs::read_to_string(&hours_csv).unwrap(), &["it_mwh"])[0].parse::<f64>().unwrap();
    assert_eq!((first.get_long(0).unwrap(), first.get_double(1).unwrap()), (0, it));
}

//! Property-based fuzzing of every parser fabrik reads files with: the facility TOML, each
//! workload format (fabrik CSV, Microsoft ITP, Philly, Helios/Acme, Alibaba PAI, sacct, SWF), failure
//! traces, hourly energy CSVs, durations and date-times. Inputs are random bytes and valid
//! samples with random mutations (cells replaced by hostile values, bytes cut or repeated). Every
//! parser must return (no panic), name its origin in any error, and produce output bounded by
//! its input (no row becomes unbounded memory).

use fabrik_model::{Facility, TenantTree};
use fabrik_twin::workload::{fabrik_csv, itp, traces};
use proptest::prelude::*;

const HOSTILE: &[&str] = &[
    "",
    "-1",
    "0",
    "1e308",
    "-1e308",
    "NaN",
    "inf",
    "18446744073709551615",
    "18446744073709551616",
    "9223372036854775808",
    "4294967296",
    "99999999999999999999d",
    "1e12d",
    "9999-12-31 23:59:59",
    "0000-00-00 00:00:00",
    "2024-02-30 25:61:61",
    "\"",
    "\"\"\"",
    ",",
    "\n",
    "\r\n",
    "[",
    "]]",
    "{",
    "}",
    "=",
    "ä€😀",
    "\u{0}",
    "H100",
    "null",
    "true",
    "[[pool]]",
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
];

/// A mutation: at a relative position, cut some bytes and insert a hostile value.
fn mutations() -> impl Strategy<Value = Vec<(f64, usize, usize)>> {
    proptest::collection::vec((0.0..1.0f64, 0..8usize, 0..HOSTILE.len()), 0..6)
}

fn mutate(sample: &str, muts: &[(f64, usize, usize)]) -> String {
    let mut s: Vec<char> = sample.chars().collect();
    for &(at, cut, h) in muts {
        let i = ((at * s.len() as f64) as usize).min(s.len());
        let j = (i + cut).min(s.len());
        s.splice(i..j, HOSTILE[h].chars());
    }
    s.into_iter().collect()
}

const FACILITY: &str = "name = \"lab\"\n\
[[gpu]]\nname = \"X1\"\nbf16_tflops = 100.0\nmemory_gb = 64.0\nmax_power_w = 300.0\nidle_power_w = 30.0\nhost_overhead_w = 100.0\nprice_usd = 5000.0\n\
[[pool]]\ngpu = \"H100\"\ndomain_gpus = 8\ndomains_per_group = 4\ngroups = 2\nhall = \"hall-1\"\n\
[[account]]\npath = \"research\"\nshares = 35\nguarantee_fraction = 0.3\nlimit_gpus = 48\n\
[[account]]\npath = \"research/uni-x/nlp\"\nshares = 1\n\
[[reservation]]\nname = \"block\"\naccount = \"research\"\ngpus = 16\nstart = \"8h\"\nend = \"2d\"\n\
[[run_as]]\naccount = \"research\"\nuser = \"res\"\n";

const CSV: &str =
    "name,submit,account,gpus,walltime,runtime,gpu_type,qos,preemptible,checkpoint_interval,earliest_start,deadline\n\
pretrain-1,0,research/open-llm/pretrain,16,3d,60h,,high,false,1h,,\n\
eval-7,2h,eval,8,1h,20m,H100,normal,true,,,\n\
flex,3h,eval,2,1h,30m,,low,true,,4h,2d\n";

const ITP: &str = "job_id,submission_time,duration,num_gpu\n1,0,3600,8\n2,60,120,1\n3,61,7200,16\n";

const PHILLY: &str = r#"[
 {"jobid": "a1", "vc": "vc1", "user": "u", "status": "Pass", "submitted_time": "2017-10-03 05:00:00",
  "attempts": [{"start_time": "2017-10-03 05:10:00", "end_time": "2017-10-03 05:20:00",
                "detail": [{"ip": "m1", "gpus": ["gpu0", "gpu1"]}]}]},
 {"jobid": "a2", "vc": "vc1", "status": "Failed", "submitted_time": "2017-10-03 05:05:00",
  "attempts": [{"start_time": "2017-10-03 05:06:00", "end_time": "2017-10-03 05:07:00", "detail": [{"ip": "m3", "gpus": ["gpu3"]}]}]}
]"#;

const HELIOS: &str =
    "job_id,user,vc,jobname,gpu_num,cpu_num,node_num,state,submit_time,start_time,end_time,duration,queue\n\
1,u1,vcA,x,8,32,1,COMPLETED,2020-04-01 00:00:00,2020-04-01 00:00:10,2020-04-01 01:00:10,3600,10\n\
3,u2,vcB,z,2,8,1,FAILED,2020-04-01 00:02:00,2020-04-01 00:02:05,2020-04-01 00:03:05,60,5\n";

const PAI_JOBS: &str = "j1,i1,alice,Terminated,1000,2000\nj2,i2,bob,Failed,1100,1300\n";
const PAI_TASKS: &str =
    "j1,worker,2,Terminated,1010,1900,600,29.3,100,V100\nj2,worker,1,Failed,1150,1250,100,10,25,T4\n";

const SACCT: &str = "JobIDRaw|JobID|Submit|Start|End|Timelimit|Elapsed|AllocTRES|ReqTRES|Account|User|QOS|Partition|State|ExitCode|NodeList\n\
100|100|2026-01-01T00:00:00|2026-01-01T00:00:10|2026-01-01T01:00:10|02:00:00|01:00:00|billing=8,gres/gpu=8,node=1|gres/gpu=8|lab|alice|normal|gpu|COMPLETED|0:0|node1\n\
101|101_3|2026-01-01T00:01:00|2026-01-01T00:01:00|2026-01-01T00:02:00|UNLIMITED|00:01:00|gres/gpu:h100=2||lab|bob|high|gpu|CANCELLED by 12|1:0|node2\n";

const SWF: &str = "; MaxProcs: 128\n1 100 5 3600 64 -1 -1 64 7200 -1 1 3 1 -1 1 -1 -1 -1\n2 160 0 60 -1 -1 -1 16 -1 -1 0 4 1 -1 1 -1 -1 -1\n";

const FAILURES: &str = "time,node,component,repair\n1h,0,gpu,2h\n3h,1,leaf switch,\n90m,2,nic,30m\n";

const HOURLY: &str = "Datetime (UTC),Country,Carbon Intensity gCO2eq/kWh (direct)\n\
2024-01-01 00:00:00,DE,400\n2024-01-01 01:00:00,DE,420\n2024-01-01 02:00:00,DE,300\n";

fn lines(s: &str) -> usize {
    s.lines().count() + 1
}

/// The checks every parser result must pass: an error names the origin; jobs are no more than
/// the input has lines (or JSON objects).
fn jobs_ok(
    r: Result<fabrik_twin::workload::Workload, fabrik_twin::workload::WorkloadError>,
    origin: &str,
    input: &str,
) {
    match r {
        Ok(w) => assert!(w.jobs.len() <= lines(input) + input.matches('{').count(), "{} jobs", w.jobs.len()),
        Err(e) => assert!(e.to_string().contains(origin), "error does not name {origin}: {e}"),
    }
}

fn facility() -> Facility {
    Facility::preset("small").unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn facility_toml(muts in mutations(), junk in "\\PC{0,200}") {
        for text in [mutate(FACILITY, &muts), junk.clone()] {
            match Facility::from_toml(&text, "fuzz.toml") {
                Ok(f) => prop_assert!(f.domains.len() <= 50_000_000),
                Err(e) => prop_assert!(e.to_string().contains("fuzz.toml"), "{e}"),
            }
        }
    }

    #[test]
    fn fabrik_csv_workloads(muts in mutations(), junk in "\\PC{0,200}") {
        let f = facility();
        for text in [mutate(CSV, &muts), junk.clone()] {
            jobs_ok(fabrik_csv::read(text.as_bytes(), "fuzz.csv", &f), "fuzz.csv", &text);
        }
    }

    #[test]
    fn itp_workloads(muts in mutations(), junk in "\\PC{0,200}") {
        let t = TenantTree::default_tree();
        for text in [mutate(ITP, &muts), junk.clone()] {
            jobs_ok(itp::read(text.as_bytes(), "itp.csv", &t), "itp.csv", &text);
        }
    }

    #[test]
    fn philly_workloads(muts in mutations(), junk in "\\PC{0,200}") {
        let t = TenantTree::default_tree();
        for text in [mutate(PHILLY, &muts), junk.clone()] {
            jobs_ok(traces::read_philly(text.as_bytes(), "philly.json", &t), "philly.json", &text);
        }
    }

    #[test]
    fn helios_workloads(muts in mutations(), junk in "\\PC{0,200}") {
        let t = TenantTree::default_tree();
        for text in [mutate(HELIOS, &muts), junk.clone()] {
            jobs_ok(traces::read_helios(text.as_bytes(), "helios.csv", &t), "helios.csv", &text);
        }
    }

    #[test]
    fn pai_workloads(muts in mutations(), muts2 in mutations()) {
        let t = TenantTree::default_tree();
        let (jobs, tasks) = (mutate(PAI_JOBS, &muts), mutate(PAI_TASKS, &muts2));
        match traces::read_pai(jobs.as_bytes(), "job.csv", tasks.as_bytes(), "task.csv", &t) {
            Ok(w) => prop_assert!(w.jobs.len() <= lines(&jobs)),
            Err(e) => {
                let e = e.to_string();
                prop_assert!(e.contains("job.csv") || e.contains("task.csv"), "{e}");
            }
        }
    }

    #[test]
    fn slurm_conf_imports(muts in mutations(), muts2 in mutations()) {
        let conf = mutate("ClusterName=lab\nNodeName=gpu[01-04] Gres=gpu:h100:8 Features=a,b\nNodeName=c1 CPUs=4\nPartitionName=p Nodes=gpu[01-04] Default=YES\n", &muts);
        let topo = mutate("SwitchName=l1 Nodes=gpu[01-02]\nSwitchName=l2 Nodes=gpu[03-04]\n", &muts2);
        match fabrik_model::slurm::SlurmConf::parse(&conf, "slurm.conf", None) {
            Ok(c) => match c.to_facility("lab", Some((&topo, "topology.conf")), None) {
                Ok((file, _)) => {
                    prop_assert!(file.nodes.len() <= fabrik_model::slurm::MAX_HOSTS);
                    if let Err(e) = Facility::from_file(&file, "lab.toml") {
                        prop_assert!(e.to_string().contains("lab.toml"), "{e}");
                    }
                }
                Err(e) => {
                    let e = e.to_string();
                    prop_assert!(e.contains("slurm.conf") || e.contains("topology.conf"), "{e}");
                }
            },
            Err(e) => prop_assert!(e.to_string().contains("slurm.conf"), "{e}"),
        }
    }

    #[test]
    fn sacct_workloads(muts in mutations(), junk in "\\PC{0,200}") {
        for text in [mutate(SACCT, &muts), junk.clone()] {
            let r = fabrik_twin::workload::sacct::read(text.as_bytes(), "sacct.txt", &jiff::tz::TimeZone::UTC);
            jobs_ok(r.map(|(w, _)| w), "sacct.txt", &text);
        }
    }

    #[test]
    fn swf_workloads(muts in mutations(), junk in "\\PC{0,200}") {
        for text in [mutate(SWF, &muts), junk.clone()] {
            let r = fabrik_twin::workload::swf::read(text.as_bytes(), "log.swf", 128, None);
            jobs_ok(r.map(|(w, _)| w), "log.swf", &text);
        }
    }

    #[test]
    fn failure_traces(muts in mutations(), junk in "\\PC{0,200}") {
        let f = facility();
        for text in [mutate(FAILURES, &muts), junk.clone()] {
            match fabrik_twin::failures::read_trace(text.as_bytes(), "fail.csv", &f, &fabrik_model::reliability::RootCauses::ft_hsdp()) {
                Ok(ev) => prop_assert!(ev.len() <= lines(&text)),
                Err(e) => prop_assert!(e.to_string().contains("fail.csv"), "{e}"),
            }
        }
    }

    #[test]
    fn hourly_energy_csvs(muts in mutations(), junk in "\\PC{0,200}") {
        for text in [mutate(HOURLY, &muts), junk.clone()] {
            match fabrik_model::grid::read_hourly_csv(&text, "series.csv", None) {
                Ok(h) => prop_assert!(h.values.len() <= fabrik_model::grid::MAX_SERIES_HOURS),
                Err(e) => prop_assert!(e.contains("series.csv"), "{e}"),
            }
        }
    }

    #[test]
    fn durations_and_date_times(muts in mutations(), junk in "\\PC{0,40}") {
        for text in [mutate("1.5d", &muts), mutate("2024-03-01 12:00:00", &muts), junk.clone()] {
            if let Ok(s) = fabrik_model::units::parse_duration(&text) {
                // what parses is a real duration: a number, optionally with a unit
                prop_assert!(!text.trim().is_empty(), "'{text}' -> {s}");
            }
            let _ = fabrik_model::units::parse_datetime(&text);
        }
    }
}

#[test]
fn a_far_off_time_in_an_energy_csv_is_refused_not_allocated() {
    let e = fabrik_model::grid::read_hourly_csv("time,v\n0,1\n1e15,2\n", "far.csv", None).unwrap_err();
    assert_eq!(e, "far.csv: the times span 277777777778 hours; an hourly series may span at most 175680 (20 years)");
}

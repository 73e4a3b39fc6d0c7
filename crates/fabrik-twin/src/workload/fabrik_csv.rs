//! The fabrik CSV job format: one job per row, with a header naming the columns (any order).
//!
//! | column | required | meaning |
//! |---|---|---|
//! | `name` | yes | job name |
//! | `submit` | yes | submission time since the start of the run |
//! | `account` | yes | project: full path (`research/inria/vision`) or a unique leaf name |
//! | `gpus` | yes | gang size |
//! | `walltime` | yes | requested walltime; the job is killed when it runs this long |
//! | `runtime` | yes | how long the job actually runs (the twin's knowledge) |
//! | `gpu_type` | no | a GPU type of the facility's catalog (any type when empty) |
//! | `qos` | no | `high`, `normal` (default) or `low` |
//! | `preemptible` | no | `true`/`false` (default false) |
//! | `checkpoint_interval` | no | time between checkpoints |
//! | `earliest_start`, `deadline` | no | times since the start of the run |
//! | `dependency` | no | sbatch's `--dependency` on earlier jobs by name: `afterok:prep`, `afterany:a:b`, `singleton` (same name and account) |
//!
//! A dependency names jobs submitted no later than the job itself (the last such job of that
//! name); in the twin every job that ends has completed, so `afterok` and `afterany` are met at
//! its end and `afternotok` never is.
//!
//! Times and durations are seconds, or a number with a unit: `90s`, `45m`, `2h`, `1.5d`.

use super::{TraceJob, Workload, WorkloadError};
use fabrik_model::units::parse_duration;
use fabrik_model::{Facility, JobSpec, Qos, Secs, SimTime};
use std::io::Read;

const COLUMNS: &[&str] = &[
    "name",
    "submit",
    "account",
    "gpus",
    "walltime",
    "runtime",
    "gpu_type",
    "qos",
    "preemptible",
    "checkpoint_interval",
    "earliest_start",
    "deadline",
    "dependency",
];

pub fn read(input: impl Read, origin: &str, facility: &Facility) -> Result<Workload, WorkloadError> {
    let mut rdr = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(input);
    let file_err = |msg: String| WorkloadError::File { origin: origin.to_string(), msg };
    let headers = rdr.headers().map_err(|e| file_err(e.to_string()))?.clone();
    for h in headers.iter() {
        if !COLUMNS.contains(&h) {
            return Err(file_err(format!("unknown column '{h}' (known: {})", COLUMNS.join(", "))));
        }
    }
    let col = |name: &str| headers.iter().position(|h| h == name);
    for req in &COLUMNS[..6] {
        if col(req).is_none() {
            return Err(file_err(format!("missing column '{req}'")));
        }
    }
    let mut jobs = Vec::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| file_err(e.to_string()))?;
        let line = rec.position().map_or(0, |p| p.line());
        let bad = |field: &str, msg: String| WorkloadError::Line {
            origin: origin.to_string(),
            line,
            msg: format!("{field}: {msg}"),
        };
        let get = |name: &str| col(name).and_then(|c| rec.get(c)).unwrap_or("");
        let dur = |name: &str| parse_duration(get(name)).map_err(|m| bad(name, m));
        let opt_dur = |name: &str| -> Result<Option<u64>, WorkloadError> {
            if get(name).is_empty() {
                Ok(None)
            } else {
                dur(name).map(Some)
            }
        };
        let name = get("name").to_string();
        let account = facility.tenants.resolve(get("account")).map_err(|m| bad("account", m))?;
        let gpus: u32 = get("gpus")
            .parse()
            .ok()
            .filter(|&g| g > 0)
            .ok_or_else(|| bad("gpus", format!("'{}' is not a positive whole number", get("gpus"))))?;
        let walltime = dur("walltime")?;
        if walltime == 0 {
            return Err(bad("walltime", "must be positive".to_string()));
        }
        let mut spec = JobSpec::new(name, account, gpus, SimTime(dur("submit")?), Secs(walltime));
        let gt = get("gpu_type");
        if !gt.is_empty() {
            spec.gpu_type =
                Some(facility.gpu_type_id(gt).ok_or_else(|| bad("gpu_type", format!("unknown GPU type '{gt}'")))?);
        }
        spec.qos = get("qos").parse::<Qos>().map_err(|m| bad("qos", m))?;
        spec.preemptible = match get("preemptible").to_ascii_lowercase().as_str() {
            "" | "false" | "no" | "0" => false,
            "true" | "yes" | "1" => true,
            other => return Err(bad("preemptible", format!("'{other}' is not true or false"))),
        };
        spec.checkpoint_interval = opt_dur("checkpoint_interval")?.map(Secs);
        spec.earliest_start = opt_dur("earliest_start")?.map(SimTime);
        spec.deadline = opt_dur("deadline")?.map(SimTime);
        let dep = get("dependency");
        if !dep.is_empty() {
            let d = fabrik_model::DependencySpec::parse(dep).map_err(|m| bad("dependency", m))?;
            if d.singleton {
                spec.singleton = Some(format!("{}@{}", spec.name, facility.tenants.get(account).path));
            }
            // resolved to brain ids once the jobs are in submission order (below)
            spec.after = d.on.into_iter().map(|(kind, on)| fabrik_model::Dependency { kind, on, job: None }).collect();
        }
        jobs.push(TraceJob { spec, runtime: Secs(dur("runtime")?) });
    }
    if jobs.is_empty() {
        return Err(file_err("no jobs".to_string()));
    }
    let mut w = Workload { source: format!("csv:{origin}"), notes: vec![], jobs, clock_origin: None };
    w.sort();
    // the twin submits in this order, so a job's brain id is its position
    let mut last: std::collections::HashMap<String, u32> = std::collections::HashMap::new();
    for i in 0..w.jobs.len() {
        let name = w.jobs[i].spec.name.clone();
        for d in &mut w.jobs[i].spec.after {
            match last.get(&d.on).copied() {
                Some(t) => d.job = Some(fabrik_model::JobId(t)),
                None => {
                    return Err(file_err(format!(
                        "job '{name}': dependency on '{}', which is not a job submitted before it",
                        d.on
                    )))
                }
            }
        }
        last.insert(name, i as u32);
    }
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("3600"), Ok(3600));
        assert_eq!(parse_duration("90m"), Ok(5400));
        assert_eq!(parse_duration("1.5d"), Ok(129_600));
        assert_eq!(parse_duration("2h"), Ok(7200));
        assert!(parse_duration("-1h").unwrap_err().contains("negative"));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn reads_all_columns() {
        let f = Facility::preset("small").unwrap();
        let text = "name,submit,account,gpus,walltime,runtime,gpu_type,qos,preemptible,checkpoint_interval,earliest_start,deadline\n\
                    b,2h,research/open-llm/eval,4,1h,30m,,low,true,,,\n\
                    a,0,pretrain,16,1d,20h,H100,high,false,1h,10m,2d\n";
        let w = read(text.as_bytes(), "jobs.csv", &f).unwrap();
        assert_eq!(w.jobs[0].spec.name, "a");
        let a = &w.jobs[0].spec;
        assert_eq!(f.tenants.get(a.account).path, "research/open-llm/pretrain");
        assert_eq!((a.gpus, a.walltime, a.qos), (16, Secs(86_400), Qos::High));
        assert_eq!(a.checkpoint_interval, Some(Secs(3600)));
        assert_eq!(a.earliest_start, Some(SimTime(600)));
        assert_eq!(a.deadline, Some(SimTime(172_800)));
        assert_eq!(w.jobs[0].runtime, Secs(72_000));
        let b = &w.jobs[1].spec;
        assert!(b.preemptible && b.qos == Qos::Low && b.gpu_type.is_none());
    }

    #[test]
    fn errors_name_line_and_column() {
        let f = Facility::preset("small").unwrap();
        let hdr = "name,submit,account,gpus,walltime,runtime\n";
        let cases = [
            ("x,0,nobody,1,1h,1h\n", "j.csv: line 2: account: unknown account 'nobody'"),
            ("x,0,eval,0,1h,1h\n", "j.csv: line 2: gpus: '0' is not a positive whole number"),
            ("x,-3,eval,1,1h,1h\n", "j.csv: line 2: submit: '-3' must not be negative"),
            ("x,0,eval,1,0,1h\n", "j.csv: line 2: walltime: must be positive"),
        ];
        for (row, msg) in cases {
            let e = read(format!("{hdr}{row}").as_bytes(), "j.csv", &f).unwrap_err().to_string();
            assert_eq!(e, msg);
        }
        let e =
            read("name,submit,account,gpus,walltime,runtime,color\n".as_bytes(), "j.csv", &f).unwrap_err().to_string();
        assert!(e.starts_with("j.csv: unknown column 'color'"), "{e}");
        let e = read("name,submit,account,gpus,walltime\n".as_bytes(), "j.csv", &f).unwrap_err().to_string();
        assert_eq!(e, "j.csv: missing column 'runtime'");
    }
}

//! Further public GPU-cluster traces. Each reader documents its format, parses robustly (bad
//! rows are errors naming file, line and field; rows without GPUs are skipped and counted), maps
//! users or virtual clusters to the facility's accounts by hash, shifts time so the first
//! submission is at 0, keeps each job's recorded run (a failed job runs its recorded duration)
//! and, as for ITP, assumes a requested walltime of twice the run rounded up to an hour.
//!
//! - **Philly** (Microsoft, ATC '19), `cluster_job_log`: a JSON array of jobs with `jobid`,
//!   `vc`, `user`, `status`, `submitted_time` and `attempts`, each attempt with `start_time`,
//!   `end_time` and `detail` (machines, each with its list of `gpus`). GPUs = the most any attempt
//!   held; run = first attempt start to last attempt end. Times are `YYYY-MM-DD HH:MM:SS`.
//! - **Helios** (SenseTime, SC '21) and **Acme** (Shanghai AI Lab, NSDI '24) CSV: `job_id`,
//!   `user`, `vc` (Helios), `gpu_num`, `cpu_num`, `node_num`, `state`, `submit_time`,
//!   `start_time`, `end_time`, `duration`, `queue`; times as date-times or seconds.
//! - **Alibaba PAI 2020** (NSDI '22): `pai_job_table` (`job_name, inst_id, user, status,
//!   start_time, end_time`) and `pai_task_table` (`job_name, task_name, inst_num, status,
//!   start_time, end_time, plan_cpu, plan_mem, plan_gpu, gpu_type`), with or without a header;
//!   times in Unix seconds. GPUs = Σ inst_num × plan_gpu / 100, rounded up (PAI shares GPUs;
//!   a gang here holds whole GPUs); submission = the job's start_time; run = first task start to
//!   last task end.

use super::{account_by_hash, TraceJob, Workload, WorkloadError};
use fabrik_model::{JobSpec, Secs, SimTime, TenantTree};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::Read;

pub use fabrik_model::units::parse_datetime;

/// A time given as a date-time or as (possibly fractional) seconds.
fn time_field(v: &str) -> Option<u64> {
    let v = v.trim();
    if v.is_empty() || v.eq_ignore_ascii_case("none") || v.eq_ignore_ascii_case("nan") {
        return None;
    }
    match v.parse::<f64>() {
        Ok(x) if x.is_finite() && x >= 0.0 => Some(x as u64),
        Ok(_) => None,
        Err(_) => parse_datetime(v),
    }
}

struct Builder {
    jobs: Vec<TraceJob>,
    skipped_no_gpu: usize,
    skipped_no_time: usize,
}

impl Builder {
    fn new() -> Builder {
        Builder { jobs: Vec::new(), skipped_no_gpu: 0, skipped_no_time: 0 }
    }

    fn push(&mut self, tenants: &TenantTree, name: String, owner: &str, gpus: u64, submit: u64, run: u64) {
        let walltime = run.max(1).saturating_mul(2).div_ceil(3600).saturating_mul(3600);
        let spec = JobSpec::new(
            name,
            account_by_hash(tenants, owner),
            gpus.min(u64::from(u32::MAX)) as u32,
            SimTime(submit),
            Secs(walltime),
        );
        self.jobs.push(TraceJob { spec, runtime: Secs(run.max(1)) });
    }

    fn finish(mut self, source: String, origin: &str, owner_kind: &str) -> Result<Workload, WorkloadError> {
        if self.jobs.is_empty() {
            return Err(WorkloadError::File { origin: origin.to_string(), msg: "no GPU jobs".into() });
        }
        let t0 = self.jobs.iter().map(|j| j.spec.submit.0).min().unwrap_or(0);
        for j in &mut self.jobs {
            j.spec.submit = SimTime(j.spec.submit.0 - t0);
        }
        let mut notes = vec![
            "no walltimes recorded: requested walltime = 2 x the recorded run, rounded up to a whole hour".to_string(),
            format!("{owner_kind} mapped to accounts by hash, in proportion to shares"),
            format!("times shifted by {t0} s so the first submission is at 0"),
        ];
        if self.skipped_no_gpu > 0 {
            notes.push(format!("{} jobs without GPUs skipped", self.skipped_no_gpu));
        }
        if self.skipped_no_time > 0 {
            notes.push(format!("{} jobs without start or end times skipped", self.skipped_no_time));
        }
        let mut w = Workload { source, notes, jobs: self.jobs, clock_origin: None };
        w.sort();
        Ok(w)
    }
}

#[derive(Deserialize)]
struct PhillyJob {
    jobid: String,
    #[serde(default)]
    vc: Option<String>,
    #[serde(default)]
    user: Option<String>,
    submitted_time: Option<String>,
    #[serde(default)]
    attempts: Vec<PhillyAttempt>,
}

#[derive(Deserialize)]
struct PhillyAttempt {
    start_time: Option<String>,
    end_time: Option<String>,
    #[serde(default)]
    detail: Vec<PhillyMachine>,
}

#[derive(Deserialize)]
struct PhillyMachine {
    #[serde(default)]
    gpus: Vec<serde_json::Value>,
}

pub fn read_philly(input: impl Read, origin: &str, tenants: &TenantTree) -> Result<Workload, WorkloadError> {
    let jobs: Vec<PhillyJob> = serde_json::from_reader(input)
        .map_err(|e| WorkloadError::File { origin: origin.into(), msg: e.to_string() })?;
    let mut b = Builder::new();
    for (i, j) in jobs.into_iter().enumerate() {
        let bad = |m: String| WorkloadError::Line {
            origin: origin.into(),
            line: i as u64 + 1,
            msg: format!("job {}: {m}", j.jobid),
        };
        let gpus =
            j.attempts.iter().map(|a| a.detail.iter().map(|d| d.gpus.len() as u64).sum::<u64>()).max().unwrap_or(0);
        if gpus == 0 {
            b.skipped_no_gpu += 1;
            continue;
        }
        let submit = match j.submitted_time.as_deref().map(|s| (s, time_field(s))) {
            Some((_, Some(t))) => t,
            Some((s, None)) => return Err(bad(format!("submitted_time: '{s}' is not a date-time"))),
            None => return Err(bad("submitted_time: missing".into())),
        };
        let start = j.attempts.iter().filter_map(|a| a.start_time.as_deref().and_then(time_field)).min();
        let end = j.attempts.iter().filter_map(|a| a.end_time.as_deref().and_then(time_field)).max();
        let (Some(start), Some(end)) = (start, end) else {
            b.skipped_no_time += 1;
            continue;
        };
        let owner = j.vc.clone().or(j.user.clone()).unwrap_or_default();
        b.push(tenants, j.jobid.clone(), &owner, gpus, submit, end.saturating_sub(start));
    }
    b.finish(format!("philly:{origin}"), origin, "virtual clusters")
}

/// Helios and Acme job CSVs (header required; column order free).
pub fn read_helios(input: impl Read, origin: &str, tenants: &TenantTree) -> Result<Workload, WorkloadError> {
    let mut rdr = csv::ReaderBuilder::new().trim(csv::Trim::All).flexible(true).from_reader(input);
    let file_err = |msg: String| WorkloadError::File { origin: origin.into(), msg };
    let headers = rdr.headers().map_err(|e| file_err(e.to_string()))?.clone();
    let col = |n: &str| headers.iter().position(|h| h == n);
    let need = |n: &str| {
        col(n).ok_or_else(|| {
            file_err(format!("missing column '{n}' (Helios/Acme: job_id, gpu_num, submit_time, duration …)"))
        })
    };
    let (c_id, c_gpu, c_sub) = (need("job_id")?, need("gpu_num")?, need("submit_time")?);
    let (c_dur, c_start, c_end) = (col("duration"), col("start_time"), col("end_time"));
    if c_dur.is_none() && (c_start.is_none() || c_end.is_none()) {
        return Err(file_err("needs a duration column or start_time and end_time".into()));
    }
    let owner_col = col("vc").or(col("user"));
    let mut b = Builder::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| file_err(e.to_string()))?;
        let line = rec.position().map_or(0, |p| p.line());
        let get = |c: usize| rec.get(c).unwrap_or("");
        let bad =
            |field: &str, m: String| WorkloadError::Line { origin: origin.into(), line, msg: format!("{field}: {m}") };
        let gpus: f64 = get(c_gpu).parse().map_err(|_| bad("gpu_num", format!("'{}' is not a number", get(c_gpu))))?;
        if !gpus.is_finite() || gpus < 0.0 {
            return Err(bad("gpu_num", format!("'{}' must not be negative", get(c_gpu))));
        }
        if gpus < 0.5 {
            b.skipped_no_gpu += 1;
            continue;
        }
        let submit =
            time_field(get(c_sub)).ok_or_else(|| bad("submit_time", format!("'{}' is not a time", get(c_sub))))?;
        let run = match c_dur.map(&get).filter(|v| !v.is_empty()) {
            Some(v) => v
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .ok_or_else(|| bad("duration", format!("'{v}' is not a duration in seconds")))?
                as u64,
            None => match (c_start.and_then(|c| time_field(get(c))), c_end.and_then(|c| time_field(get(c)))) {
                (Some(s), Some(e)) => e.saturating_sub(s),
                _ => {
                    b.skipped_no_time += 1;
                    continue;
                }
            },
        };
        let owner = owner_col.map(|c| get(c).to_string()).unwrap_or_default();
        b.push(tenants, get(c_id).to_string(), &owner, gpus.ceil() as u64, submit, run);
    }
    b.finish(format!("helios:{origin}"), origin, "virtual clusters (or users)")
}

const PAI_JOB: [&str; 6] = ["job_name", "inst_id", "user", "status", "start_time", "end_time"];
const PAI_TASK: [&str; 10] = [
    "job_name",
    "task_name",
    "inst_num",
    "status",
    "start_time",
    "end_time",
    "plan_cpu",
    "plan_mem",
    "plan_gpu",
    "gpu_type",
];

/// A row by column name, with its line number.
type Row = (u64, BTreeMap<String, String>);

fn pai_rows(input: impl Read, origin: &str, cols: &[&str]) -> Result<Vec<Row>, WorkloadError> {
    let mut rdr = csv::ReaderBuilder::new().has_headers(false).flexible(true).trim(csv::Trim::All).from_reader(input);
    let mut out = Vec::new();
    let mut header: Option<Vec<String>> = None;
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| WorkloadError::File { origin: origin.into(), msg: e.to_string() })?;
        let line = rec.position().map_or(i as u64 + 1, |p| p.line());
        if i == 0 && rec.get(0) == Some("job_name") {
            header = Some(rec.iter().map(String::from).collect());
            continue;
        }
        let names: Vec<String> = header.clone().unwrap_or_else(|| cols.iter().map(|c| c.to_string()).collect());
        if rec.len() < names.len().min(cols.len()) {
            return Err(WorkloadError::Line {
                origin: origin.into(),
                line,
                msg: format!("expected {} columns ({}), found {}", cols.len(), cols.join(", "), rec.len()),
            });
        }
        out.push((line, names.into_iter().zip(rec.iter().map(String::from)).collect()));
    }
    Ok(out)
}

pub fn read_pai(
    jobs: impl Read,
    jobs_origin: &str,
    tasks: impl Read,
    tasks_origin: &str,
    tenants: &TenantTree,
) -> Result<Workload, WorkloadError> {
    let job_rows = pai_rows(jobs, jobs_origin, &PAI_JOB)?;
    let task_rows = pai_rows(tasks, tasks_origin, &PAI_TASK)?;
    // per job: (GPU percent, first task start, last task end)
    let mut per_job: BTreeMap<String, (f64, Option<u64>, Option<u64>)> = BTreeMap::new();
    for (line, r) in &task_rows {
        let f = |k: &str| r.get(k).map(String::as_str).unwrap_or("");
        let num = |k: &str| -> Result<f64, WorkloadError> {
            let v = f(k);
            if v.is_empty() {
                return Ok(0.0);
            }
            v.parse::<f64>().ok().filter(|x| x.is_finite() && *x >= 0.0).ok_or_else(|| WorkloadError::Line {
                origin: tasks_origin.into(),
                line: *line,
                msg: format!("{k}: '{v}' is not a non-negative number"),
            })
        };
        let e = per_job.entry(f("job_name").to_string()).or_insert((0.0, None, None));
        e.0 += num("inst_num")? * num("plan_gpu")?;
        if let Some(s) = time_field(f("start_time")) {
            e.1 = Some(e.1.map_or(s, |x: u64| x.min(s)));
        }
        if let Some(t) = time_field(f("end_time")) {
            e.2 = Some(e.2.map_or(t, |x: u64| x.max(t)));
        }
    }
    let mut b = Builder::new();
    for (line, r) in &job_rows {
        let f = |k: &str| r.get(k).map(String::as_str).unwrap_or("");
        let name = f("job_name").to_string();
        let Some(&(pct, start, end)) = per_job.get(&name) else {
            b.skipped_no_gpu += 1;
            continue;
        };
        let gpus = (pct / 100.0).ceil() as u64;
        if gpus == 0 {
            b.skipped_no_gpu += 1;
            continue;
        }
        let submit = time_field(f("start_time")).ok_or_else(|| WorkloadError::Line {
            origin: jobs_origin.into(),
            line: *line,
            msg: format!("start_time: '{}' is not a time", f("start_time")),
        })?;
        let (Some(s), Some(e)) = (start, end) else {
            b.skipped_no_time += 1;
            continue;
        };
        b.push(tenants, name, f("user"), gpus, submit.min(s), e.saturating_sub(s));
    }
    b.finish(format!("pai:{jobs_origin},{tasks_origin}"), jobs_origin, "users")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_times_convert_to_unix_seconds() {
        assert_eq!(parse_datetime("1970-01-01 00:00:00"), Some(0));
        assert_eq!(parse_datetime("2017-10-03 05:32:39"), Some(1_507_008_759));
        assert_eq!(parse_datetime("2024-02-29T12:00:00Z"), Some(1_709_208_000));
        assert_eq!(parse_datetime("2017-13-03 05:32:39"), None);
        assert_eq!(parse_datetime("yesterday"), None);
    }

    #[test]
    fn philly_jobs_take_their_largest_attempt_and_full_span() {
        let t = TenantTree::default_tree();
        let text = r#"[
          {"jobid": "a1", "vc": "vc1", "user": "u", "status": "Pass", "submitted_time": "2017-10-03 05:00:00",
           "attempts": [{"start_time": "2017-10-03 05:10:00", "end_time": "2017-10-03 05:20:00",
                         "detail": [{"ip": "m1", "gpus": ["gpu0", "gpu1"]}]},
                        {"start_time": "2017-10-03 05:30:00", "end_time": "2017-10-03 06:00:00",
                         "detail": [{"ip": "m1", "gpus": ["gpu0", "gpu1"]}, {"ip": "m2", "gpus": ["gpu0", "gpu1"]}]}]},
          {"jobid": "a2", "vc": "vc1", "status": "Failed", "submitted_time": "2017-10-03 05:05:00",
           "attempts": [{"start_time": "2017-10-03 05:06:00", "end_time": "2017-10-03 05:07:00", "detail": [{"ip": "m3", "gpus": ["gpu3"]}]}]},
          {"jobid": "cpu", "vc": "vc2", "status": "Pass", "submitted_time": "2017-10-03 05:00:00", "attempts": []}
        ]"#;
        let w = read_philly(text.as_bytes(), "philly.json", &t).unwrap();
        assert_eq!(w.jobs.len(), 2);
        let a1 = &w.jobs[0];
        // 4 GPUs in the second attempt; run 05:10 → 06:00 = 3,000 s; walltime 6,000 s → 2 h
        assert_eq!(
            (a1.spec.gpus, a1.runtime, a1.spec.walltime, a1.spec.submit),
            (4, Secs(3000), Secs(7200), SimTime(0))
        );
        assert_eq!(w.jobs[1].spec.submit, SimTime(300));
        assert_eq!(a1.spec.account, w.jobs[1].spec.account, "a virtual cluster maps to one account");
        assert!(w.notes.iter().any(|n| n == "1 jobs without GPUs skipped"));
        let e = read_philly(r#"[{"jobid": "x", "submitted_time": "soon", "attempts": [{"start_time": null, "end_time": null, "detail": [{"gpus": [1]}]}]}]"#.as_bytes(), "p.json", &t)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "p.json: line 1: job x: submitted_time: 'soon' is not a date-time");
        assert!(read_philly("{".as_bytes(), "p.json", &t).unwrap_err().to_string().starts_with("p.json: "));
    }

    #[test]
    fn helios_and_acme_rows() {
        let t = TenantTree::default_tree();
        let helios =
            "job_id,user,vc,jobname,gpu_num,cpu_num,node_num,state,submit_time,start_time,end_time,duration,queue\n\
                      1,u1,vcA,x,8,32,1,COMPLETED,2020-04-01 00:00:00,2020-04-01 00:00:10,2020-04-01 01:00:10,3600,10\n\
                      2,u2,vcB,y,0,4,1,COMPLETED,2020-04-01 00:01:00,2020-04-01 00:01:00,2020-04-01 00:02:00,60,0\n\
                      3,u2,vcB,z,2,8,1,FAILED,2020-04-01 00:02:00,2020-04-01 00:02:05,2020-04-01 00:03:05,60,5\n";
        let w = read_helios(helios.as_bytes(), "helios.csv", &t).unwrap();
        assert_eq!(w.jobs.len(), 2);
        assert_eq!((w.jobs[0].spec.gpus, w.jobs[0].runtime), (8, Secs(3600)));
        assert_eq!((w.jobs[1].spec.submit, w.jobs[1].runtime), (SimTime(120), Secs(60)));
        // Acme: no vc column, seconds, no duration column
        let acme = "job_id,user,gpu_num,cpu_num,node_num,state,submit_time,start_time,end_time,queue\n\
                    j1,u9,16,64,2,COMPLETED,100,150,1150,50\n";
        let w = read_helios(acme.as_bytes(), "acme.csv", &t).unwrap();
        assert_eq!((w.jobs[0].spec.gpus, w.jobs[0].runtime), (16, Secs(1000)));
        let e = read_helios("job_id,gpu_num,submit_time,duration\n1,-2,0,5\n".as_bytes(), "h.csv", &t)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "h.csv: line 2: gpu_num: '-2' must not be negative");
        let e = read_helios("job_id,gpu_num,submit_time\n".as_bytes(), "h.csv", &t).unwrap_err().to_string();
        assert_eq!(e, "h.csv: needs a duration column or start_time and end_time");
    }

    #[test]
    fn pai_jobs_sum_their_tasks_gpus() {
        let t = TenantTree::default_tree();
        let jobs = "j1,i1,alice,Terminated,1000,2000\nj2,i2,bob,Failed,1100,1300\nj3,i3,carol,Terminated,1200,1300\n";
        let tasks = "j1,worker,2,Terminated,1010,1900,600,29.3,100,V100\n\
                     j1,ps,1,Terminated,1005,1950,600,29.3,50,MISC\n\
                     j2,worker,1,Failed,1150,1250,100,10,25,T4\n\
                     j3,tensorflow,1,Terminated,1200,1300,100,10,,\n";
        let w = read_pai(jobs.as_bytes(), "job.csv", tasks.as_bytes(), "task.csv", &t).unwrap();
        assert_eq!(w.jobs.len(), 2);
        // j1: 2 × 100% + 1 × 50% = 2.5 GPUs → 3; run 1005 → 1950 = 945 s
        assert_eq!((w.jobs[0].spec.gpus, w.jobs[0].runtime, w.jobs[0].spec.submit), (3, Secs(945), SimTime(0)));
        // j2: 25% of a GPU → 1 whole GPU
        assert_eq!((w.jobs[1].spec.gpus, w.jobs[1].spec.submit), (1, SimTime(100)));
        let with_header = format!("job_name,inst_id,user,status,start_time,end_time\n{jobs}");
        assert_eq!(
            read_pai(with_header.as_bytes(), "job.csv", tasks.as_bytes(), "task.csv", &t).unwrap().jobs.len(),
            2
        );
        let e = read_pai(jobs.as_bytes(), "job.csv", "j1,w,x,T,1,2,1,1,100,V100\n".as_bytes(), "task.csv", &t)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "task.csv: line 1: inst_num: 'x' is not a non-negative number");
    }
}

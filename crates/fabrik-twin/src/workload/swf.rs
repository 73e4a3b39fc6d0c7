//! The Standard Workload Format of the Parallel Workloads Archive (`--workload swf:FILE[#K]`):
//! one job per line, 18 whitespace-separated fields, `-1` for unknown; `;` lines are header
//! comments (`; MaxProcs: 1024`, `; UnixStartTime: …`).
//!
//! | field | meaning | used as |
//! |---|---|---|
//! | 1 | job number | the job's name |
//! | 2 | submit time (s) | submission (shifted so the first is at 0) |
//! | 3 | wait time | — (fabrik decides) |
//! | 4 | run time (s) | the run; `-1` skips the job |
//! | 5 | allocated processors | processors (`-1`: field 8) |
//! | 8 | requested processors | processors where 5 is unknown |
//! | 9 | requested time (s) | walltime (`-1`: 2 × the run, rounded up to an hour) |
//! | 11 | status (1 done, 0 failed, 5 cancelled) | counted in the notes |
//! | 12, 13 | user, group | tenants: `group-G/user-U` |
//!
//! Processors to GPUs: with `#K`, K processors make one GPU (rounded up). Without, the trace's
//! machine is scaled onto the facility: GPUs = ⌈processors × facility GPUs ÷ MaxProcs⌉ (MaxProcs
//! from the header, else the largest job), so the trace's offered load is kept. Both are stated
//! in the report.

use super::{TraceJob, Workload, WorkloadError};
use fabrik_model::{JobSpec, Secs, SimTime, TenantTree};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};

/// Lines longer than this are refused (an SWF line is ~100 bytes).
const MAX_LINE: usize = 4096;

struct Row {
    name: String,
    submit: u64,
    run: u64,
    procs: u64,
    req_time: Option<u64>,
    user: i64,
    group: i64,
}

/// Reads an SWF file for a facility of `facility_gpus` GPUs; `procs_per_gpu` fixes the mapping.
pub fn read(
    input: impl Read,
    origin: &str,
    facility_gpus: u64,
    procs_per_gpu: Option<u64>,
) -> Result<(Workload, TenantTree), WorkloadError> {
    let file_err = |msg: String| WorkloadError::File { origin: origin.into(), msg };
    if procs_per_gpu == Some(0) {
        return Err(file_err("processors per GPU must be at least 1".into()));
    }
    let mut max_procs: Option<u64> = None;
    let mut rows: Vec<Row> = Vec::new();
    let mut skipped: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut status: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut reader = BufReader::new(input);
    let mut buf = Vec::new();
    let mut line = 0u64;
    loop {
        buf.clear();
        let n =
            (&mut reader).take(MAX_LINE as u64 + 1).read_until(b'\n', &mut buf).map_err(|e| file_err(e.to_string()))?;
        if n == 0 {
            break;
        }
        line += 1;
        let bad = |m: String| WorkloadError::Line { origin: origin.into(), line, msg: m };
        if n > MAX_LINE && !buf.ends_with(b"\n") {
            return Err(bad(format!("longer than {MAX_LINE} bytes")));
        }
        let text = std::str::from_utf8(&buf).map_err(|_| bad("not UTF-8 text".into()))?.trim();
        if let Some(c) = text.strip_prefix(';') {
            if let Some((k, v)) = c.split_once(':') {
                if k.trim().eq_ignore_ascii_case("MaxProcs") {
                    max_procs = v.trim().parse().ok().filter(|&p| p > 0);
                }
            }
            continue;
        }
        if text.is_empty() {
            continue;
        }
        let f: Vec<&str> = text.split_whitespace().collect();
        if f.len() != 18 {
            return Err(bad(format!("{} fields; SWF has 18", f.len())));
        }
        let num = |i: usize, name: &str| -> Result<i64, WorkloadError> {
            // some archive files write whole numbers as 12.00
            let v = f[i];
            v.parse::<i64>()
                .or_else(|_| {
                    v.parse::<f64>().map_err(|_| ()).and_then(|x| {
                        if x.is_finite() && x.abs() < 9e15 {
                            Ok(x.round() as i64)
                        } else {
                            Err(())
                        }
                    })
                })
                .map_err(|_| bad(format!("field {} ({name}): '{v}' is not a number", i + 1)))
        };
        let (submit, run, alloc, req, req_time) = (
            num(1, "submit time")?,
            num(3, "run time")?,
            num(4, "allocated processors")?,
            num(7, "requested processors")?,
            num(8, "requested time")?,
        );
        let (st, user, group) = (num(10, "status")?, num(11, "user")?, num(12, "group")?);
        *status
            .entry(match st {
                1 => "completed",
                0 => "failed",
                5 => "cancelled",
                _ => "other status",
            })
            .or_default() += 1;
        let procs = if alloc > 0 { alloc } else { req };
        if submit < 0 || run < 0 {
            *skipped.entry("without a submit or run time").or_default() += 1;
            continue;
        }
        if procs <= 0 {
            *skipped.entry("without processors").or_default() += 1;
            continue;
        }
        rows.push(Row {
            name: f[0].to_string(),
            submit: submit as u64,
            run: run as u64,
            procs: procs as u64,
            req_time: (req_time > 0).then_some(req_time as u64),
            user,
            group,
        });
    }
    if rows.is_empty() {
        return Err(file_err("no jobs with a submit time, run time and processors".into()));
    }
    let scale_from = max_procs.unwrap_or_else(|| rows.iter().map(|r| r.procs).max().unwrap_or(1));
    let mapping = match procs_per_gpu {
        Some(k) => format!("{k} processors per GPU"),
        None => format!(
            "the trace's {scale_from} processors{} scaled onto {facility_gpus} GPUs",
            if max_procs.is_some() { " (MaxProcs)" } else { " (largest job)" }
        ),
    };
    let gpus_of = |p: u64| -> u64 {
        match procs_per_gpu {
            Some(k) => p.div_ceil(k),
            None => (u128::from(p) * u128::from(facility_gpus)).div_ceil(u128::from(scale_from.max(1))) as u64,
        }
        .max(1)
    };
    let owners: Vec<(String, String)> =
        rows.iter().map(|r| (format!("group-{}", r.group), format!("user-{}", r.user))).collect();
    let tenants = super::owner_tree(owners.iter().map(|(g, u)| (g.as_str(), u.as_str())), origin)?;
    let t0 = rows.iter().map(|r| r.submit).min().unwrap_or(0);
    let mut unlimited = 0;
    let mut jobs = Vec::with_capacity(rows.len());
    for Row { name, submit, run, procs, req_time, user, group } in rows {
        let run = run.max(1);
        let walltime = req_time.unwrap_or_else(|| {
            unlimited += 1;
            run.saturating_mul(2).div_ceil(3600).saturating_mul(3600)
        });
        let account = tenants.resolve(&format!("group-{group}/user-{user}")).map_err(file_err)?;
        let spec = JobSpec::new(
            name,
            account,
            gpus_of(procs).min(u64::from(u32::MAX)) as u32,
            SimTime(submit - t0),
            Secs(walltime),
        );
        jobs.push(TraceJob { spec, runtime: Secs(run) });
    }
    let mut notes = vec![
        format!(
            "swf: {} jobs ({})",
            jobs.len(),
            status.iter().map(|(s, n)| format!("{s} {n}")).collect::<Vec<_>>().join(", ")
        ),
        format!("processors to GPUs: {mapping}, rounded up"),
    ];
    for (why, n) in &skipped {
        notes.push(format!("{n} jobs {why} skipped"));
    }
    if unlimited > 0 {
        notes.push(super::walltime_note(unlimited, "a requested time"));
    }
    notes.push("tenants: SWF groups with their users as leaves, equal shares".into());
    let mut w = Workload { source: format!("swf:{origin}"), notes, jobs, clock_origin: None };
    w.sort();
    Ok((w, tenants))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SWF: &str = "; Version: 2.2\n\
        ; MaxProcs: 128\n\
        ; UnixStartTime: 1000000000\n\
        1 100 5 3600 64 -1 -1 64 7200 -1 1 3 1 -1 1 -1 -1 -1\n\
        2 160 0 60 -1 -1 -1 16 -1 -1 0 4 1 -1 1 -1 -1 -1\n\
        3 200 -1 -1 8 -1 -1 8 600 -1 5 3 1 -1 1 -1 -1 -1\n\
        4 220 0 30.00 1 -1 -1 1 600 -1 1 5 2 -1 1 -1 -1 -1\n";

    #[test]
    fn swf_jobs_scale_onto_the_facility() {
        // 128 processors onto 16 GPUs: 64 → 8 GPUs, 16 → 2, 1 → 1 (rounded up)
        let (w, t) = read(SWF.as_bytes(), "log.swf", 16, None).unwrap();
        let got: Vec<(&str, u32, u64, u64, u64)> = w
            .jobs
            .iter()
            .map(|j| (j.spec.name.as_str(), j.spec.gpus, j.spec.submit.0, j.spec.walltime.0, j.runtime.0))
            .collect();
        assert_eq!(got, [("1", 8, 0, 7200, 3600), ("2", 2, 60, 3600, 60), ("4", 1, 120, 600, 30)]);
        assert_eq!(t.get(w.jobs[0].spec.account).path, "group-1/user-3");
        assert_eq!(t.get(w.jobs[2].spec.account).path, "group-2/user-5");
        assert_eq!(
            w.notes,
            [
                "swf: 3 jobs (cancelled 1, completed 2, failed 1)",
                "processors to GPUs: the trace's 128 processors (MaxProcs) scaled onto 16 GPUs, rounded up",
                "1 jobs without a submit or run time skipped",
                "1 jobs without a requested time: walltime taken as 2 × the run, rounded up to an hour",
                "tenants: SWF groups with their users as leaves, equal shares",
            ]
        );
        // a fixed mapping: 4 processors per GPU
        let (w, _) = read(SWF.as_bytes(), "log.swf", 16, Some(4)).unwrap();
        assert_eq!(w.jobs.iter().map(|j| j.spec.gpus).collect::<Vec<_>>(), [16, 4, 1]);
    }

    #[test]
    fn malformed_swf_lines_are_named() {
        let e = |t: &str| read(t.as_bytes(), "x.swf", 8, None).unwrap_err().to_string();
        assert_eq!(e("1 2 3\n"), "x.swf: line 1: 3 fields; SWF has 18");
        assert_eq!(
            e("; c\n1 abc 0 60 1 -1 -1 1 60 -1 1 1 1 -1 1 -1 -1 -1\n"),
            "x.swf: line 2: field 2 (submit time): 'abc' is not a number"
        );
        assert_eq!(e(&"9".repeat(5000)), "x.swf: line 1: longer than 4096 bytes");
        assert_eq!(e("; only comments\n"), "x.swf: no jobs with a submit time, run time and processors");
    }
}

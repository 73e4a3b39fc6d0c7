//! Slurm accounting as a workload (`--workload sacct:FILE`): the output of
//!
//! ```sh
//! sacct -a -X -P --noconvert -S 2026-01-01 -E now \
//!   --format=JobIDRaw,JobID,Submit,Start,End,Timelimit,Elapsed,AllocTRES,ReqTRES,Account,User,QOS,Partition,State,ExitCode,NodeList
//! ```
//!
//! (`-a` all users, `-X` allocations only — no steps, `-P` `|`-separated with a header). Columns
//! are found by name, in any order; `JobID` (or `JobIDRaw`), `Submit`, `Start`, `Timelimit`,
//! `State` and `AllocTRES` (or `ReqTRES`) are required, and `End` or `Elapsed`.
//!
//! - Times: Slurm's local date-times (`2026-12-01T10:00:00`), read in the zone given (`--tz`,
//!   UTC by default); `Unknown`/`None` mean never. Durations: `[D-]HH:MM:SS`, `MM:SS`, `D-HH`,
//!   `D-HH:MM`, minutes; `UNLIMITED` and `Partition_Limit` time limits become 2 × the run rounded
//!   up to an hour (as for traces without walltimes; counted in the notes).
//! - GPUs: `gres/gpu=N` of `AllocTRES` (typed `gres/gpu:h100=N` entries are summed when the
//!   untyped one is absent); `ReqTRES` where nothing was allocated.
//! - Skipped and counted: jobs without GPUs, jobs cancelled before they started, jobs not ended
//!   (pending, running, suspended, requeued). `CANCELLED by 1234` is a cancelled job.
//! - Array tasks (`123_4`) are jobs of their own, named by `JobID`.
//! - Tenants: each account is a node of the tree and each user a leaf under it
//!   (`account/user`), all with equal shares (Slurm's default `Fairshare=1`).
//! - QOS names containing `high` or `urgent` run as high, `low`, `scavenger` or `standby` as low
//!   (and preemptible), others as normal.
//! - Times are shifted so the first submission is at 0.

use super::{TraceJob, Workload, WorkloadError};
use fabrik_model::{JobSpec, Qos, Secs, SimTime, TenantTree};
use std::collections::BTreeMap;
use std::io::Read;

pub use fabrik_model::slurm::parse_slurm_duration;

/// A Slurm date-time in `tz`; `None` for `Unknown`, `None` or empty.
pub fn parse_slurm_time(s: &str, tz: &jiff::tz::TimeZone) -> Result<Option<u64>, String> {
    let s = s.trim();
    if s.is_empty() || s.eq_ignore_ascii_case("unknown") || s.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let dt: jiff::civil::DateTime = s.parse().map_err(|_| format!("'{s}' is not a date-time (2026-12-01T10:00:00)"))?;
    let z = dt.to_zoned(tz.clone()).map_err(|e| format!("'{s}': {e}"))?;
    u64::try_from(z.timestamp().as_second()).map(Some).map_err(|_| format!("'{s}' lies before 1970"))
}

/// GPUs in a TRES string (`billing=8,cpu=8,gres/gpu=4,mem=4000M,node=1`).
fn tres_gpus(tres: &str) -> Result<u64, String> {
    let mut plain = None;
    let mut typed = 0u64;
    for item in tres.split(',') {
        let Some((k, v)) = item.split_once('=') else { continue };
        let count = || v.trim().parse::<u64>().map_err(|_| format!("'{item}': '{v}' is not a GPU count"));
        if k == "gres/gpu" {
            plain = Some(count()?);
        } else if k.starts_with("gres/gpu:") {
            typed = typed.saturating_add(count()?);
        }
    }
    Ok(plain.unwrap_or(typed))
}

fn qos_of(name: &str) -> (Qos, bool) {
    let n = name.to_ascii_lowercase();
    if n.contains("high") || n.contains("urgent") {
        (Qos::High, false)
    } else if n.contains("low") || n.contains("scavenger") || n.contains("standby") {
        (Qos::Low, true)
    } else {
        (Qos::Normal, false)
    }
}

/// A tenant name as a path segment.
fn segment(s: &str, default: &str) -> String {
    let s: String = s.trim().chars().map(|c| if c == '/' || c.is_whitespace() { '_' } else { c }).collect();
    if s.is_empty() {
        default.to_string()
    } else {
        s
    }
}

/// A finished GPU job as read from one row.
struct Row {
    id: String,
    account: String,
    user: String,
    qos: Qos,
    preemptible: bool,
    gpus: u64,
    submit: u64,
    run: u64,
    limit: Option<u64>,
}

/// Reads `sacct -P` output; returns the workload and the tenant tree its accounts and users form.
pub fn read(input: impl Read, origin: &str, tz: &jiff::tz::TimeZone) -> Result<(Workload, TenantTree), WorkloadError> {
    read_with(input, origin, tz, None)
}

/// As [`read`]; when `known` (the facility's tree, e.g. the cluster's associations imported
/// with `fabrik facility import --assoc`) holds every `account/user` of the trace as a leaf,
/// jobs are charged to it and it is the run's tree (with its shares).
pub fn read_with(
    input: impl Read,
    origin: &str,
    tz: &jiff::tz::TimeZone,
    known: Option<&TenantTree>,
) -> Result<(Workload, TenantTree), WorkloadError> {
    let mut rdr = csv::ReaderBuilder::new().delimiter(b'|').flexible(true).quoting(false).from_reader(input);
    let file_err = |msg: String| WorkloadError::File { origin: origin.into(), msg };
    let headers = rdr.headers().map_err(|e| file_err(e.to_string()))?.clone();
    let col = |n: &str| headers.iter().position(|h| h.trim().eq_ignore_ascii_case(n));
    let need = |n: &str, alt: Option<&str>| {
        col(n).or_else(|| alt.and_then(col)).ok_or_else(|| {
            file_err(format!("missing column '{n}' (see `fabrik` README, Running on Slurm, for the sacct command)"))
        })
    };
    let c_id = need("JobID", Some("JobIDRaw"))?;
    let c_submit = need("Submit", None)?;
    let c_start = need("Start", None)?;
    let c_limit = need("Timelimit", None)?;
    let c_state = need("State", None)?;
    let c_alloc = col("AllocTRES");
    let c_req = col("ReqTRES");
    if c_alloc.is_none() && c_req.is_none() {
        return Err(file_err("missing column 'AllocTRES' (or 'ReqTRES')".into()));
    }
    let (c_end, c_elapsed) = (col("End"), col("Elapsed"));
    if c_end.is_none() && c_elapsed.is_none() {
        return Err(file_err("missing column 'End' (or 'Elapsed')".into()));
    }
    let (c_account, c_user, c_qos) = (col("Account"), col("User"), col("QOS"));
    let mut skipped: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut states: BTreeMap<String, u64> = BTreeMap::new();
    let mut unlimited = 0u64;
    let mut rows: Vec<Row> = Vec::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| file_err(e.to_string()))?;
        let line = rec.position().map_or(0, |p| p.line());
        let get = |c: usize| rec.get(c).unwrap_or("").trim();
        let opt = |c: Option<usize>| c.map_or("", get);
        let bad =
            |field: &str, m: String| WorkloadError::Line { origin: origin.into(), line, msg: format!("{field}: {m}") };
        if rec.len() <= 1 && get(0).is_empty() {
            continue;
        }
        let id = get(c_id);
        if id.is_empty() {
            return Err(bad("JobID", "empty".into()));
        }
        let state = get(c_state).split_whitespace().next().unwrap_or("").to_ascii_uppercase();
        if state.is_empty() {
            return Err(bad("State", "empty".into()));
        }
        if ["PENDING", "RUNNING", "SUSPENDED", "REQUEUED", "RESIZING", "REQUEUE_HOLD", "REQUEUE_FED"]
            .contains(&state.as_str())
        {
            *skipped.entry("not ended (pending, running, suspended or requeued)").or_default() += 1;
            continue;
        }
        let alloc = opt(c_alloc);
        let tres = if alloc.is_empty() { opt(c_req) } else { alloc };
        let gpus = tres_gpus(tres).map_err(|m| bad(if alloc.is_empty() { "ReqTRES" } else { "AllocTRES" }, m))?;
        if gpus == 0 {
            *skipped.entry("without GPUs").or_default() += 1;
            continue;
        }
        let submit = parse_slurm_time(get(c_submit), tz).map_err(|m| bad("Submit", m))?;
        let start = parse_slurm_time(get(c_start), tz).map_err(|m| bad("Start", m))?;
        let (Some(submit), Some(start)) = (submit, start) else {
            *skipped
                .entry(if state == "CANCELLED" { "cancelled before they started" } else { "never started" })
                .or_default() += 1;
            continue;
        };
        let elapsed = match c_elapsed {
            Some(c) => parse_slurm_duration(get(c)).map_err(|m| bad("Elapsed", m))?,
            None => None,
        };
        let end = match c_end {
            Some(c) => parse_slurm_time(get(c), tz).map_err(|m| bad("End", m))?,
            None => None,
        };
        let run = match (elapsed, end) {
            (Some(e), _) => e,
            (None, Some(end)) => end.saturating_sub(start),
            (None, None) => {
                *skipped.entry("not ended (pending, running, suspended or requeued)").or_default() += 1;
                continue;
            }
        };
        let limit = parse_slurm_duration(get(c_limit)).map_err(|m| bad("Timelimit", m))?;
        if limit.is_none() {
            unlimited += 1;
        }
        let (qos, preemptible) = qos_of(opt(c_qos));
        *states.entry(state).or_default() += 1;
        rows.push(Row {
            id: id.to_string(),
            account: segment(opt(c_account), "default"),
            user: segment(opt(c_user), "unknown"),
            qos,
            preemptible,
            gpus,
            submit,
            run: run.max(1),
            limit,
        });
    }
    if rows.is_empty() {
        return Err(file_err("no finished GPU jobs".into()));
    }
    // the tenant tree: accounts, each user a leaf under its account
    let covers = |t: &TenantTree| {
        rows.iter().all(|r| {
            let path = format!("{}/{}", r.account, r.user);
            t.iter().any(|(_, a)| a.path == path && a.is_leaf())
        })
    };
    let (tenants, from_facility) = match known.filter(|t| !rows.is_empty() && covers(t)) {
        Some(t) => (t.clone(), true),
        None => (super::owner_tree(rows.iter().map(|r| (r.account.as_str(), r.user.as_str())), origin)?, false),
    };
    let t0 = rows.iter().map(|r| r.submit).min().unwrap_or(0);
    let mut jobs = Vec::with_capacity(rows.len());
    for Row { id, account, user, qos, preemptible, gpus, submit, run, limit } in rows {
        let account = tenants.resolve(&format!("{account}/{user}")).map_err(file_err)?;
        let walltime = limit.unwrap_or_else(|| run.saturating_mul(2).div_ceil(3600).saturating_mul(3600)).max(1);
        let mut spec =
            JobSpec::new(id, account, gpus.min(u64::from(u32::MAX)) as u32, SimTime(submit - t0), Secs(walltime));
        spec.qos = qos;
        spec.preemptible = preemptible;
        jobs.push(TraceJob { spec, runtime: Secs(run) });
    }
    let mut notes = vec![format!(
        "sacct: {} jobs ({})",
        jobs.len(),
        states.iter().map(|(s, n)| format!("{s} {n}")).collect::<Vec<_>>().join(", ")
    )];
    for (why, n) in &skipped {
        notes.push(format!("{n} jobs {why} skipped"));
    }
    if unlimited > 0 {
        notes.push(super::walltime_note(unlimited, "a time limit"));
    }
    notes.push(if from_facility {
        "tenants: the facility's tree (it holds every account/user of the trace)".into()
    } else {
        "tenants: each Slurm account with its users as leaves, equal shares".into()
    });
    let mut w = Workload { source: format!("sacct:{origin}"), notes, jobs, clock_origin: Some(t0) };
    w.sort();
    Ok((w, tenants))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slurm_durations_in_every_format() {
        let d = |s: &str| parse_slurm_duration(s).unwrap();
        assert_eq!(d("1-02:03:04"), Some(86_400 + 2 * 3600 + 3 * 60 + 4));
        assert_eq!(d("02:03:04"), Some(7384));
        assert_eq!(d("03:04"), Some(184)); // MM:SS
        assert_eq!(d("30"), Some(1800)); // minutes
        assert_eq!(d("2-12"), Some(2 * 86_400 + 12 * 3600)); // D-HH
        assert_eq!(d("2-12:30"), Some(2 * 86_400 + 12 * 3600 + 1800)); // D-HH:MM
        assert_eq!(d("00:00:07.250"), Some(7));
        assert_eq!(d("UNLIMITED"), None);
        assert_eq!(d("Partition_Limit"), None);
        assert!(parse_slurm_duration("1:2:3:4").is_err());
        assert!(parse_slurm_duration("-5").is_err());
        assert!(parse_slurm_duration("1e9").is_err());
    }

    #[test]
    fn local_times_read_in_the_given_zone() {
        let utc = jiff::tz::TimeZone::UTC;
        assert_eq!(parse_slurm_time("2026-01-01T00:00:00", &utc).unwrap(), Some(1_767_225_600));
        assert_eq!(parse_slurm_time("Unknown", &utc).unwrap(), None);
        // Berlin is UTC+1 in January, UTC+2 in July (the system's time zone database)
        let berlin = jiff::tz::TimeZone::get("Europe/Berlin").unwrap();
        assert_eq!(parse_slurm_time("2026-01-01T01:00:00", &berlin).unwrap(), Some(1_767_225_600));
        assert_eq!(parse_slurm_time("2026-07-01T02:00:00", &berlin).unwrap(), Some(1_782_864_000));
        let plus1 = jiff::tz::TimeZone::fixed(jiff::tz::offset(1));
        assert_eq!(parse_slurm_time("2026-07-01T01:00:00", &plus1).unwrap(), Some(1_782_864_000));
        assert!(parse_slurm_time("yesterday", &utc).is_err());
    }

    const HEAD: &str = "JobIDRaw|JobID|Submit|Start|End|Timelimit|Elapsed|AllocTRES|ReqTRES|Account|User|QOS|Partition|State|ExitCode|NodeList\n";

    #[test]
    fn sacct_rows_become_jobs_and_tenants() {
        let text = format!(
            "{HEAD}\
             100|100|2026-01-01T00:00:00|2026-01-01T00:00:10|2026-01-01T01:00:10|02:00:00|01:00:00|billing=8,cpu=8,gres/gpu=8,node=1|cpu=8,gres/gpu=8|lab|alice|normal|gpu|COMPLETED|0:0|node1\n\
             101|101_3|2026-01-01T00:01:00|2026-01-01T00:01:00|2026-01-01T00:02:00|UNLIMITED|00:01:00|cpu=2,gres/gpu:h100=2,node=1||lab|bob|high|gpu|FAILED|1:0|node2\n\
             102|102|2026-01-01T00:02:00|2026-01-01T00:03:00|2026-01-01T00:13:00|1-00:00:00|00:10:00|cpu=16,gres/gpu=16,node=2||ai|carol|scavenger|gpu|CANCELLED by 1234|0:15|node[1-2]\n\
             103|103|2026-01-01T00:03:00|Unknown|2026-01-01T00:05:00|01:00:00|00:00:00||cpu=8,gres/gpu=8|lab|alice|normal|gpu|CANCELLED by 0|0:0|None assigned\n\
             104|104|2026-01-01T00:04:00|2026-01-01T00:04:00|2026-01-01T00:05:00|01:00:00|00:01:00|cpu=4,mem=1G,node=1||lab|alice|normal|cpu|COMPLETED|0:0|node3\n\
             105|105|2026-01-01T00:05:00|Unknown|Unknown|01:00:00|00:00:00||cpu=8,gres/gpu=8|lab|alice|normal|gpu|PENDING|0:0|None assigned\n\
             106|106|2026-01-01T00:06:00|2026-01-01T00:06:30|2026-01-01T01:06:30|01:00:00|01:00:00|gres/gpu=1|gres/gpu=1|lab|alice|normal|gpu|TIMEOUT|0:1|node1\n"
        );
        let (w, t) = read(text.as_bytes(), "sacct.txt", &jiff::tz::TimeZone::UTC).unwrap();
        let got: Vec<(String, u32, u64, u64, u64, Qos, bool)> = w
            .jobs
            .iter()
            .map(|j| {
                (
                    j.spec.name.clone(),
                    j.spec.gpus,
                    j.spec.submit.0,
                    j.spec.walltime.0,
                    j.runtime.0,
                    j.spec.qos,
                    j.spec.preemptible,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("100".to_string(), 8, 0, 7200, 3600, Qos::Normal, false),
                // UNLIMITED: 2 × 60 s rounded up to an hour
                ("101_3".to_string(), 2, 60, 3600, 60, Qos::High, false),
                ("102".to_string(), 16, 120, 86_400, 600, Qos::Low, true),
                ("106".to_string(), 1, 360, 3600, 3600, Qos::Normal, false),
            ]
        );
        assert_eq!(t.get(w.jobs[0].spec.account).path, "lab/alice");
        assert_eq!(t.get(w.jobs[2].spec.account).path, "ai/carol");
        assert_eq!(t.leaves().count(), 3);
        assert_eq!(
            w.notes,
            [
                "sacct: 4 jobs (CANCELLED 1, COMPLETED 1, FAILED 1, TIMEOUT 1)",
                "1 jobs cancelled before they started skipped",
                "1 jobs not ended (pending, running, suspended or requeued) skipped",
                "1 jobs without GPUs skipped",
                "1 jobs without a time limit: walltime taken as 2 × the run, rounded up to an hour",
                "tenants: each Slurm account with its users as leaves, equal shares",
            ]
        );
    }

    #[test]
    fn malformed_sacct_rows_are_named_by_line() {
        let utc = jiff::tz::TimeZone::UTC;
        let e = |text: String| read(text.as_bytes(), "s.txt", &utc).unwrap_err().to_string();
        let row = |limit: &str, tres: &str, submit: &str| {
            format!("{HEAD}1|1|2026-01-01T00:00:00|2026-01-01T00:00:00|2026-01-01T00:01:00|01:00:00|00:01:00|gres/gpu=1||a|u|normal|gpu|COMPLETED|0:0|n1\n2|2|{submit}|2026-01-01T00:00:00|2026-01-01T00:01:00|{limit}|00:01:00|{tres}||a|u|normal|gpu|COMPLETED|0:0|n1\n")
        };
        assert_eq!(
            e(row("soon", "gres/gpu=1", "2026-01-01T00:00:00")),
            "s.txt: line 3: Timelimit: 'soon' is not a Slurm duration ([D-]HH:MM:SS, MM:SS, D-HH, minutes)"
        );
        assert_eq!(
            e(row("01:00:00", "gres/gpu=x", "2026-01-01T00:00:00")),
            "s.txt: line 3: AllocTRES: 'gres/gpu=x': 'x' is not a GPU count"
        );
        assert_eq!(
            e(row("01:00:00", "gres/gpu=1", "2026-13-01T00:00:00")),
            "s.txt: line 3: Submit: '2026-13-01T00:00:00' is not a date-time (2026-12-01T10:00:00)"
        );
        assert!(e("JobID|Submit\n1|x\n".into()).contains("s.txt: missing column 'Start'"));
    }
}

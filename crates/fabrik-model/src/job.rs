//! Job specifications as the scheduler sees them. The actual runtime of a job is not part of the
//! spec: only the twin knows it in advance.

use crate::ids::{AccountId, GpuTypeId};
use crate::units::{Secs, SimTime};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Quality-of-service class: the priority tier a job was submitted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Qos {
    High,
    #[default]
    Normal,
    Low,
}

impl Qos {
    /// The QoS priority factor in [0, 1] used by the multifactor priority.
    pub fn factor(self) -> f64 {
        match self {
            Qos::High => 1.0,
            Qos::Normal => 0.5,
            Qos::Low => 0.0,
        }
    }
    pub const ALL: [Qos; 3] = [Qos::High, Qos::Normal, Qos::Low];
}

impl fmt::Display for Qos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Qos::High => "high",
            Qos::Normal => "normal",
            Qos::Low => "low",
        })
    }
}

impl FromStr for Qos {
    type Err = String;
    fn from_str(s: &str) -> Result<Qos, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "high" => Ok(Qos::High),
            "normal" | "" => Ok(Qos::Normal),
            "low" => Ok(Qos::Low),
            other => Err(format!("unknown QoS '{other}' (expected high, normal or low)")),
        }
    }
}

/// What a tenant asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    /// The external name (trace job id, user-chosen name).
    pub name: String,
    pub account: AccountId,
    /// A gang: all of these GPUs start together or none do.
    pub gpus: u32,
    pub gpu_type: Option<GpuTypeId>,
    pub submit: SimTime,
    /// The user's runtime estimate; the job is killed when it runs this long.
    pub walltime: Secs,
    pub qos: Qos,
    pub preemptible: bool,
    pub checkpoint_interval: Option<Secs>,
    pub earliest_start: Option<SimTime>,
    pub deadline: Option<SimTime>,
    /// Jobs it waits for (Slurm's `--dependency`), as the body resolved them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<Dependency>,
    /// Slurm's `--dependency=singleton`: it starts only when no job marked so with the same
    /// key (its name and account, set by the body) and submitted before it is still waiting or
    /// running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub singleton: Option<String>,
    /// A job array's throttle (sbatch `--array …%N`): at most N jobs with this key run at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle: Option<(String, u32)>,
}

/// A job array's index set and throttle (sbatch `--array`): `0-99%8`, `1,3,5-7`, `0-15:4`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArraySpec {
    pub tasks: Vec<u32>,
    /// At most this many tasks run at once.
    pub limit: Option<u32>,
}

/// The most tasks one array may have (Slurm's MaxArraySize defaults to 1001).
pub const MAX_ARRAY_TASKS: usize = 10_000;

impl ArraySpec {
    pub fn parse(text: &str) -> Result<ArraySpec, String> {
        let bad = |m: String| Err(format!("array '{text}': {m}"));
        let (set, limit) = match text.split_once('%') {
            Some((s, l)) => match l.trim().parse::<u32>() {
                Ok(n) if n > 0 => (s, Some(n)),
                _ => return bad(format!("'%{l}' is not a positive number of tasks")),
            },
            None => (text, None),
        };
        let mut tasks = Vec::new();
        for item in set.split(',').map(str::trim) {
            let (range, step) = match item.split_once(':') {
                Some((r, st)) => match st.parse::<u32>() {
                    Ok(n) if n > 0 => (r, n),
                    _ => return bad(format!("step '{st}' is not a positive number")),
                },
                None => (item, 1),
            };
            let num =
                |x: &str| x.trim().parse::<u32>().map_err(|_| format!("array '{text}': '{x}' is not a task index"));
            let (a, b) = match range.split_once('-') {
                Some((a, b)) => (num(a)?, num(b)?),
                None => (num(range)?, num(range)?),
            };
            if b < a {
                return bad(format!("{a}-{b} runs backwards"));
            }
            let mut t = a;
            while t <= b {
                tasks.push(t);
                if tasks.len() > MAX_ARRAY_TASKS {
                    return bad(format!("more than {MAX_ARRAY_TASKS} tasks"));
                }
                match t.checked_add(step) {
                    Some(n) => t = n,
                    None => break,
                }
            }
        }
        tasks.sort_unstable();
        tasks.dedup();
        Ok(ArraySpec { tasks, limit })
    }
}

/// How a job depends on another (sbatch(1), `--dependency`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DepKind {
    /// `after`: the other job has started (or ended).
    After,
    /// `afterany`: the other job has ended, however.
    AfterAny,
    /// `afterok`: the other job completed successfully.
    AfterOk,
    /// `afternotok`: the other job failed, timed out or was cancelled.
    AfterNotOk,
}

impl DepKind {
    pub fn name(self) -> &'static str {
        match self {
            DepKind::After => "after",
            DepKind::AfterAny => "afterany",
            DepKind::AfterOk => "afterok",
            DepKind::AfterNotOk => "afternotok",
        }
    }
}

/// One dependency of a job as the brain holds it: on the job the body named `on`, known to the
/// brain as `job`; `None` when the body found that job ended in a way that can never satisfy
/// it (an `afterok` on a failed job).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dependency {
    pub kind: DepKind,
    pub on: String,
    pub job: Option<crate::JobId>,
}

/// A `--dependency` value as written: `afterok:12:13,afterany:14,singleton` (`?` between
/// items, "any of", is not supported).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DependencySpec {
    /// (kind, the job names or ids it names), in the order written.
    pub on: Vec<(DepKind, String)>,
    pub singleton: bool,
}

impl DependencySpec {
    pub fn parse(text: &str) -> Result<DependencySpec, String> {
        let mut d = DependencySpec::default();
        if text.contains('?') {
            return Err(format!("dependency '{text}': '?' (any of) is not supported; separate with ','"));
        }
        for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            if item == "singleton" {
                d.singleton = true;
                continue;
            }
            let mut parts = item.split(':');
            let kind = match parts.next().unwrap_or("") {
                "after" => DepKind::After,
                "afterany" => DepKind::AfterAny,
                "afterok" => DepKind::AfterOk,
                "afternotok" => DepKind::AfterNotOk,
                other => {
                    return Err(format!(
                        "dependency '{item}': unknown type '{other}' (after, afterany, afterok, afternotok, singleton)"
                    ))
                }
            };
            let ids: Vec<&str> = parts.map(str::trim).collect();
            if ids.is_empty() || ids.iter().any(|i| i.is_empty()) {
                return Err(format!("dependency '{item}': needs job ids, as {}:ID[:ID…]", kind.name()));
            }
            // Slurm's `+time` after an id (after:ID+MINUTES) is not modelled
            if let Some(bad) = ids.iter().find(|i| i.contains('+')) {
                return Err(format!("dependency '{item}': '{bad}': a delay (+minutes) is not supported"));
            }
            d.on.extend(ids.into_iter().map(|i| (kind, i.to_string())));
        }
        if d.on.is_empty() && !d.singleton {
            return Err(format!("dependency '{text}': names no job"));
        }
        if d.on.len() > 1000 {
            return Err(format!("dependency: {} jobs named; at most 1000", d.on.len()));
        }
        Ok(d)
    }

    /// The spec written back in Slurm's form (the store keeps this).
    pub fn to_text(&self) -> String {
        let mut out: Vec<String> = Vec::new();
        for (k, id) in &self.on {
            match out.last_mut() {
                Some(last) if last.starts_with(&format!("{}:", k.name())) => {
                    last.push(':');
                    last.push_str(id);
                }
                _ => out.push(format!("{}:{id}", k.name())),
            }
        }
        if self.singleton {
            out.push("singleton".into());
        }
        out.join(",")
    }
}

impl JobSpec {
    /// A plain job: normal QoS, not preemptible, no checkpoints or time constraints.
    pub fn new(name: impl Into<String>, account: AccountId, gpus: u32, submit: SimTime, walltime: Secs) -> JobSpec {
        JobSpec {
            name: name.into(),
            account,
            gpus,
            gpu_type: None,
            submit,
            walltime,
            qos: Qos::Normal,
            preemptible: false,
            checkpoint_interval: None,
            earliest_start: None,
            deadline: None,
            after: Vec::new(),
            singleton: None,
            throttle: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_parse_as_sbatch_writes_them() {
        let a = ArraySpec::parse("0-3,7,10-14:2%2").unwrap();
        assert_eq!((a.tasks, a.limit), (vec![0, 1, 2, 3, 7, 10, 12, 14], Some(2)));
        assert_eq!(ArraySpec::parse("5").unwrap().tasks, vec![5]);
        for (bad, why) in [
            ("3-1", "runs backwards"),
            ("0-9%0", "not a positive number of tasks"),
            ("a-b", "'a' is not a task index"),
            ("0-99999", "more than 10000 tasks"),
            ("0-9:0", "step '0'"),
        ] {
            let e = ArraySpec::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn dependencies_parse_as_sbatch_writes_them() {
        let d = DependencySpec::parse("afterok:12:13,afterany:14,singleton").unwrap();
        assert_eq!(
            d.on,
            vec![(DepKind::AfterOk, "12".into()), (DepKind::AfterOk, "13".into()), (DepKind::AfterAny, "14".into())]
        );
        assert!(d.singleton);
        assert_eq!(d.to_text(), "afterok:12:13,afterany:14,singleton");
        assert_eq!(DependencySpec::parse("singleton").unwrap().on, vec![]);
        for (bad, why) in [
            ("afterok", "needs job ids"),
            ("afterok:", "needs job ids"),
            ("before:3", "unknown type 'before'"),
            ("afterok:3?afterany:4", "'?' (any of) is not supported"),
            ("after:3+10", "a delay (+minutes) is not supported"),
            ("", "names no job"),
        ] {
            let e = DependencySpec::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}

//! Slurm's scheduling configuration as the `slurm` policy reads it: the priority plugin and its
//! weights, the backfill scheduler's `SchedulerParameters`, partitions and QOS. `fabrik facility
//! import slurm.conf` fills it from the operator's own files (the `[slurm]` table of a facility
//! file); every field defaults to Slurm 22.05's default (slurm.conf(5)).

use crate::error::ModelError;
use serde::{Deserialize, Serialize};

/// `PriorityType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PriorityType {
    /// `priority/basic`: submission order.
    #[default]
    Basic,
    /// `priority/multifactor`: weighted age, fair-share, job size, partition and QOS factors.
    Multifactor,
}

/// The fair-share algorithm of `priority/multifactor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FairShareAlgo {
    /// Fair Tree (the default since Slurm 19.05).
    #[default]
    FairTree,
    /// Classic fair-share, `PriorityFlags=NO_FAIR_TREE`: F = 2^(−U/S).
    Classic,
}

/// A partition's scheduling-relevant settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlurmPartitionSpec {
    pub name: String,
    /// `MaxTime` in minutes (`None`: unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_time_min: Option<u64>,
    /// `PriorityJobFactor` (default 1).
    #[serde(default = "one")]
    pub priority_job_factor: u32,
    #[serde(default)]
    pub default: bool,
}

/// A QOS (from the accounting database: `sacctmgr show qos`), matched to a job's QoS by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlurmQosSpec {
    pub name: String,
    #[serde(default)]
    pub priority: u32,
    /// `MaxWall` in minutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_wall_min: Option<u64>,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlurmSched {
    /// `SchedulerType=sched/backfill` (Slurm's default); `false` for `sched/builtin`, the main
    /// scheduler alone (strict priority order).
    pub backfill: bool,
    pub priority_type: PriorityType,
    pub fair_share: FairShareAlgo,
    pub weight_age: u32,
    pub weight_fairshare: u32,
    pub weight_job_size: u32,
    pub weight_partition: u32,
    pub weight_qos: u32,
    /// CPUs of all the cluster's nodes (slurm.conf `CPUs=`), the job-size factor's CPU
    /// denominator; unset: the facility's GPU count.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_cpus: Option<u64>,
    /// Fair Tree counts Slurm's `root` user association (user root in account root, which
    /// `sacctmgr add cluster` creates) as a user without usage, ranked first.
    pub root_user_association: bool,
    /// `PriorityFavorSmall`.
    pub favor_small: bool,
    /// `PriorityDecayHalfLife` (default 7 days).
    pub decay_half_life_s: u64,
    /// `PriorityMaxAge` (default 7 days).
    pub max_age_s: u64,
    /// `PriorityCalcPeriod` (default 5 minutes).
    pub calc_period_s: u64,
    /// `bf_interval` (default 30 s).
    pub bf_interval_s: u64,
    /// `bf_window` in minutes (default 1440).
    pub bf_window_min: u64,
    /// Where the backfill cycles fall on the `bf_interval` grid: cycles run at
    /// `bf_phase_s + k · bf_interval` seconds of the run (Slurm's backfill thread wakes every
    /// interval from slurmctld's start, so a replay measures it: tools/twin-vs-slurm.py reads it
    /// from slurmctld's log). Default 0; at most `bf_interval_s − 1`.
    pub bf_phase_s: u64,
    /// `bf_resolution` (default 60 s).
    pub bf_resolution_s: u64,
    /// `bf_max_job_test` (default 500).
    pub bf_max_job_test: u32,
    /// `bf_max_job_user` (default 0: no limit); fabrik's user is the job's project account.
    pub bf_max_job_user: u32,
    /// `bf_continue`: accepted; a twin's backfill cycle never yields, so it has no effect.
    pub bf_continue: bool,
    /// `default_queue_depth`: jobs the main scheduler tests per run (default 100).
    pub default_queue_depth: u32,
    /// `TopologyPlugin=topology/tree`: nodes are chosen by leaf switch (best fit) as
    /// `select/cons_tres` does with a tree; without it, the best-fitting single node.
    pub topology_tree: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<SlurmPartitionSpec>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub qos: Vec<SlurmQosSpec>,
}

impl Default for SlurmSched {
    fn default() -> Self {
        SlurmSched {
            backfill: true,
            priority_type: PriorityType::Basic,
            fair_share: FairShareAlgo::FairTree,
            weight_age: 0,
            weight_fairshare: 0,
            weight_job_size: 0,
            weight_partition: 0,
            weight_qos: 0,
            cluster_cpus: None,
            root_user_association: true,
            favor_small: false,
            decay_half_life_s: 7 * 86_400,
            max_age_s: 7 * 86_400,
            calc_period_s: 300,
            bf_interval_s: 30,
            bf_window_min: 1440,
            bf_phase_s: 0,
            bf_resolution_s: 60,
            bf_max_job_test: 500,
            bf_max_job_user: 0,
            bf_continue: false,
            default_queue_depth: 100,
            topology_tree: false,
            partitions: Vec::new(),
            qos: Vec::new(),
        }
    }
}

/// Longest accepted interval or window: a year.
const MAX_S: u64 = 366 * 86_400;

impl SlurmSched {
    /// Checks ranges; `origin` names the file in errors.
    pub fn validate(&self, origin: &str) -> Result<(), ModelError> {
        let bad = |f: &str, m: String| Err(ModelError::invalid(origin, format!("slurm.{f}"), m));
        for (f, v, min) in [
            ("bf_interval_s", self.bf_interval_s, 1),
            ("bf_resolution_s", self.bf_resolution_s, 1),
            ("calc_period_s", self.calc_period_s, 1),
            ("decay_half_life_s", self.decay_half_life_s, 0),
            ("max_age_s", self.max_age_s, 1),
            ("bf_window_min", self.bf_window_min.saturating_mul(60), 60),
        ] {
            if v < min || v > MAX_S {
                return bad(f, format!("{v} is out of range ({min} s to a year)"));
            }
        }
        if self.bf_phase_s >= self.bf_interval_s {
            return bad(
                "bf_phase_s",
                format!("{} must be below bf_interval_s ({})", self.bf_phase_s, self.bf_interval_s),
            );
        }
        if self.bf_resolution_s > 3600 {
            return bad("bf_resolution_s", format!("{} exceeds Slurm's maximum of 3600", self.bf_resolution_s));
        }
        if self.bf_max_job_test == 0 || self.default_queue_depth == 0 {
            return bad("bf_max_job_test", "bf_max_job_test and default_queue_depth must be at least 1".into());
        }
        if self.partitions.iter().filter(|p| p.default).count() > 1 {
            return bad("partitions", "more than one default partition".into());
        }
        Ok(())
    }

    /// The partition jobs run in: the default one, else the first.
    pub fn default_partition(&self) -> Option<&SlurmPartitionSpec> {
        self.partitions.iter().find(|p| p.default).or(self.partitions.first())
    }

    /// The partition factor of the default partition: its `PriorityJobFactor` over the largest
    /// (1 with no partitions, as with Slurm's default factor of 1 everywhere).
    pub fn partition_factor(&self) -> f64 {
        let max = self.partitions.iter().map(|p| p.priority_job_factor).max().unwrap_or(1);
        match self.default_partition() {
            Some(p) if max > 0 => f64::from(p.priority_job_factor) / f64::from(max),
            Some(_) => 0.0,
            None => 1.0,
        }
    }

    /// The QOS factor of the QOS named `name`: its priority over the largest QOS priority.
    pub fn qos_factor(&self, name: &str) -> f64 {
        let max = self.qos.iter().map(|q| q.priority).max().unwrap_or(0);
        match self.qos.iter().find(|q| q.name.eq_ignore_ascii_case(name)) {
            Some(q) if max > 0 => f64::from(q.priority) / f64::from(max),
            _ => 0.0,
        }
    }

    /// The longest time limit a job of QOS `qos` may ask for, in seconds: the smaller of the
    /// default partition's `MaxTime` and the QOS's `MaxWall`.
    pub fn max_time_s(&self, qos: &str) -> Option<u64> {
        let part = self.default_partition().and_then(|p| p.max_time_min);
        let q = self.qos.iter().find(|q| q.name.eq_ignore_ascii_case(qos)).and_then(|q| q.max_wall_min);
        match (part, q) {
            (Some(a), Some(b)) => Some(a.min(b) * 60),
            (a, b) => a.or(b).map(|m| m * 60),
        }
    }

    /// Applies one `SchedulerParameters=` value (comma-separated `key[=value]`); unknown keys
    /// are returned so the importer can say which ones the twin ignores.
    pub fn apply_scheduler_parameters(&mut self, value: &str) -> Result<Vec<String>, String> {
        let mut ignored = Vec::new();
        for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (k, v) = item.split_once('=').map_or((item, None), |(k, v)| (k, Some(v)));
            let num = |what: &str| -> Result<u64, String> {
                v.ok_or_else(|| format!("{what} needs a value"))?
                    .trim()
                    .parse::<u64>()
                    .map_err(|_| format!("{what}: '{}' is not a whole number", v.unwrap_or("")))
            };
            match k.to_ascii_lowercase().as_str() {
                "bf_interval" => self.bf_interval_s = num(k)?,
                "bf_window" => self.bf_window_min = num(k)?,
                "bf_resolution" => self.bf_resolution_s = num(k)?,
                "bf_max_job_test" => self.bf_max_job_test = num(k)?.min(u64::from(u32::MAX)) as u32,
                "bf_max_job_user" => self.bf_max_job_user = num(k)?.min(u64::from(u32::MAX)) as u32,
                "default_queue_depth" => self.default_queue_depth = num(k)?.min(u64::from(u32::MAX)) as u32,
                "bf_continue" => self.bf_continue = true,
                _ => ignored.push(item.to_string()),
            }
        }
        Ok(ignored)
    }
}

/// At most this many QOS lines are read (a QOS table is small).
const MAX_QOS: usize = 10_000;

/// The QOS table as `sacctmgr -P show qos format=Name,Priority,MaxWall` prints it (a header
/// line, `|`-separated; the columns in any order, MaxWall optional).
pub fn parse_sacctmgr_qos(text: &str, origin: &str) -> Result<Vec<SlurmQosSpec>, ModelError> {
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let Some((_, header)) = lines.next() else {
        return Err(ModelError::invalid(origin, "line 1", "empty: expected a header Name|Priority|MaxWall"));
    };
    let cols: Vec<String> = header.split('|').map(|c| c.trim().to_ascii_lowercase()).collect();
    let col = |n: &str| cols.iter().position(|c| c == n);
    let (Some(c_name), Some(c_prio)) = (col("name"), col("priority")) else {
        return Err(ModelError::invalid(origin, "line 1", format!("header '{header}' lacks Name or Priority")));
    };
    let c_wall = col("maxwall");
    let mut out = Vec::new();
    for (i, line) in lines {
        let bad = |f: &str, m: String| ModelError::invalid(origin, format!("line {}: {f}", i + 1), m);
        if out.len() >= MAX_QOS {
            return Err(bad("Name", format!("more than {MAX_QOS} QOS")));
        }
        let f: Vec<&str> = line.split('|').collect();
        let get = |c: usize| f.get(c).map_or("", |v| v.trim());
        let name = get(c_name);
        if name.is_empty() {
            return Err(bad("Name", "empty".into()));
        }
        let p = get(c_prio);
        let priority = if p.is_empty() {
            0
        } else {
            p.parse().map_err(|_| bad("Priority", format!("'{p}' is not a whole number")))?
        };
        let max_wall_min = match c_wall.map(get) {
            Some(w) => crate::slurm::parse_slurm_duration(w).map_err(|m| bad("MaxWall", m))?.map(|s| s.div_ceil(60)),
            None => None,
        };
        out.push(SlurmQosSpec { name: name.to_string(), priority, max_wall_min });
    }
    Ok(out)
}

/// The association tree as `sacctmgr -P show assoc format=Account,User,ParentName,Fairshare`
/// prints it, as tenant-tree accounts: each account under its parent (Slurm's `root` account is
/// the tree's root), each user association a leaf `ACCOUNT-PATH/USER` with its `Fairshare`
/// (`parent` counts as 1, said in the notes). Accounts without users are left out: Fair Tree
/// ranks users only. Returns the accounts and notes.
pub fn parse_sacctmgr_assoc(
    text: &str,
    origin: &str,
) -> Result<(Vec<crate::tenants::AccountSpec>, Vec<String>), ModelError> {
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let Some((_, header)) = lines.next() else {
        return Err(ModelError::invalid(origin, "line 1", "empty: expected a header Account|User|ParentName|Share"));
    };
    let cols: Vec<String> = header.split('|').map(|c| c.trim().to_ascii_lowercase().replace([' ', '_'], "")).collect();
    let col = |names: &[&str]| cols.iter().position(|c| names.contains(&c.as_str()));
    let (Some(c_acct), Some(c_user), Some(c_parent), Some(c_share)) =
        (col(&["account"]), col(&["user"]), col(&["parentname", "parname"]), col(&["share", "fairshare"]))
    else {
        return Err(ModelError::invalid(
            origin,
            "line 1",
            format!("header '{header}' lacks Account, User, ParentName or Share"),
        ));
    };
    let mut parent_of: std::collections::BTreeMap<String, String> = Default::default();
    let mut shares_of: std::collections::BTreeMap<String, f64> = Default::default();
    let mut users: Vec<(String, String, f64)> = Vec::new();
    let mut notes = Vec::new();
    for (i, line) in lines {
        if users.len() + parent_of.len() >= MAX_QOS * 10 {
            return Err(ModelError::invalid(origin, format!("line {}", i + 1), "too many associations"));
        }
        let bad = |f: &str, m: String| ModelError::invalid(origin, format!("line {}: {f}", i + 1), m);
        let f: Vec<&str> = line.split('|').collect();
        let get = |c: usize| f.get(c).map_or("", |v| v.trim());
        let (acct, user, parent, share) = (get(c_acct), get(c_user), get(c_parent), get(c_share));
        if acct.is_empty() || acct.contains('/') || user.contains('/') {
            return Err(bad("Account", format!("'{acct}' is not an account name")));
        }
        let shares = if share.eq_ignore_ascii_case("parent") {
            notes.push(format!("line {}: Fairshare=parent taken as 1", i + 1));
            1.0
        } else {
            match share.parse::<f64>() {
                Ok(v) if v.is_finite() && v > 0.0 => v,
                _ => return Err(bad("Share", format!("'{share}' is not a positive number"))),
            }
        };
        if user.is_empty() {
            if acct != "root" {
                parent_of.insert(acct.to_string(), if parent.is_empty() { "root".into() } else { parent.to_string() });
                shares_of.insert(acct.to_string(), shares);
            }
        } else {
            users.push((acct.to_string(), user.to_string(), shares));
        }
    }
    // an account's path: its ancestors below Slurm's root (bounded: a cycle is an error)
    let path = |a: &str| -> Result<String, ModelError> {
        let mut parts = vec![a.to_string()];
        let mut cur = a.to_string();
        while let Some(p) = parent_of.get(&cur) {
            if p == "root" {
                break;
            }
            if parts.len() > 64 || parts.contains(p) {
                return Err(ModelError::invalid(origin, "ParentName", format!("account '{a}' has a parent cycle")));
            }
            parts.push(p.clone());
            cur = p.clone();
        }
        if cur != "root" && !parent_of.contains_key(&cur) {
            return Err(ModelError::invalid(origin, "ParentName", format!("account '{cur}' is not listed")));
        }
        parts.reverse();
        Ok(parts.join("/"))
    };
    let mut specs: Vec<crate::tenants::AccountSpec> = Vec::new();
    let mut used: std::collections::BTreeSet<String> = Default::default();
    for (acct, user, shares) in &users {
        // user root in account root: a leaf of its own account `root` at the top, ranked like
        // Slurm's root user association
        let p = if acct == "root" { "root".to_string() } else { path(acct)? };
        let mut prefix = String::new();
        for seg in p.split('/') {
            prefix = if prefix.is_empty() { seg.to_string() } else { format!("{prefix}/{seg}") };
            if used.insert(prefix.clone()) {
                specs
                    .push(crate::tenants::AccountSpec::new(prefix.clone(), shares_of.get(seg).copied().unwrap_or(1.0)));
            }
        }
        let leaf = format!("{p}/{user}");
        if used.insert(leaf.clone()) {
            specs.push(crate::tenants::AccountSpec::new(leaf, *shares));
        }
    }
    let empty = parent_of.keys().filter(|a| !used.iter().any(|u| u.split('/').any(|s| s == a.as_str()))).count();
    if empty > 0 {
        notes.push(format!("{empty} account(s) without users left out (Fair Tree ranks users)"));
    }
    if specs.is_empty() {
        return Err(ModelError::invalid(origin, "User", "no user association"));
    }
    Ok((specs, notes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_association_tree_comes_from_sacctmgr() {
        let t = "Account|User|ParentName|Share\nroot|||1\nroot|root||1\nphys||root|3\nhep||phys|2\n\
                 hep|alice||1\nhep|bob||parent\nbio||root|1\nbio|carol||4\nempty||root|1\n";
        let (specs, notes) = parse_sacctmgr_assoc(t, "assoc.txt").unwrap();
        let got: Vec<(String, f64)> = specs.iter().map(|s| (s.path.clone(), s.shares)).collect();
        let want: Vec<(String, f64)> = [
            ("root", 1.0),
            ("root/root", 1.0),
            ("phys", 3.0),
            ("phys/hep", 2.0),
            ("phys/hep/alice", 1.0),
            ("phys/hep/bob", 1.0),
            ("bio", 1.0),
            ("bio/carol", 4.0),
        ]
        .iter()
        .map(|(p, s)| (p.to_string(), *s))
        .collect();
        assert_eq!(got, want);
        assert!(notes.iter().any(|n| n == "line 7: Fairshare=parent taken as 1"), "{notes:?}");
        assert!(notes.iter().any(|n| n.starts_with("1 account(s) without users")), "{notes:?}");
        let e = parse_sacctmgr_assoc("Account|User|ParentName|Share\na||b|1\nb||a|1\na|u||1\n", "x");
        assert!(e.unwrap_err().to_string().contains("parent cycle"));
        let e = parse_sacctmgr_assoc("Account|User|ParentName|Share\na|u||-1\n", "x").unwrap_err().to_string();
        assert!(e.contains("x: line 2: Share: '-1' is not a positive number"), "{e}");
        assert!(parse_sacctmgr_assoc("Account|User\n", "x").unwrap_err().to_string().contains("lacks"));
    }

    #[test]
    fn the_qos_table_comes_from_sacctmgr() {
        let t = "Name|Priority|MaxWall\nnormal|0|\nhigh|100|2-00:00:00\nlow|x|\n";
        let e = parse_sacctmgr_qos(t, "qos.txt").unwrap_err().to_string();
        assert!(e.contains("qos.txt: line 4: Priority: 'x' is not a whole number"), "{e}");
        let q = parse_sacctmgr_qos("MaxWall|Name|Priority\n01:00:00|normal|10\n|high|100\n", "q").unwrap();
        assert_eq!(q.len(), 2);
        assert_eq!((q[0].name.as_str(), q[0].priority, q[0].max_wall_min), ("normal", 10, Some(60)));
        assert_eq!((q[1].name.as_str(), q[1].priority, q[1].max_wall_min), ("high", 100, None));
        assert!(parse_sacctmgr_qos("Name|MaxWall\n", "q").unwrap_err().to_string().contains("lacks Name or Priority"));
        assert!(parse_sacctmgr_qos("", "q").is_err());
    }

    #[test]
    fn scheduler_parameters_set_the_backfill_knobs_and_report_the_rest() {
        let mut s = SlurmSched::default();
        let ignored = s
            .apply_scheduler_parameters("bf_interval=2, bf_window=60,bf_resolution=30,bf_continue,bf_max_job_test=50,bf_max_job_user=4,default_queue_depth=20,sched_min_interval=2")
            .unwrap();
        assert_eq!(
            (s.bf_interval_s, s.bf_window_min, s.bf_resolution_s, s.bf_max_job_test, s.bf_max_job_user),
            (2, 60, 30, 50, 4)
        );
        assert!(s.bf_continue);
        assert_eq!(s.default_queue_depth, 20);
        assert_eq!(ignored, ["sched_min_interval=2"]);
        assert!(s.apply_scheduler_parameters("bf_interval=x").unwrap_err().contains("'x' is not a whole number"));
        assert!(s.apply_scheduler_parameters("bf_window").unwrap_err().contains("needs a value"));
        s.bf_resolution_s = 4000;
        assert!(s.validate("f.toml").unwrap_err().to_string().contains("slurm.bf_resolution_s"));
    }

    #[test]
    fn partition_and_qos_factors_are_normalised_by_the_largest() {
        let mut s = SlurmSched::default();
        assert_eq!(s.partition_factor(), 1.0);
        assert_eq!(s.qos_factor("normal"), 0.0);
        s.partitions = vec![
            SlurmPartitionSpec { name: "gpu".into(), max_time_min: Some(120), priority_job_factor: 2, default: true },
            SlurmPartitionSpec { name: "prio".into(), max_time_min: None, priority_job_factor: 8, default: false },
        ];
        s.qos = vec![
            SlurmQosSpec { name: "normal".into(), priority: 10, max_wall_min: Some(60) },
            SlurmQosSpec { name: "high".into(), priority: 40, max_wall_min: None },
        ];
        assert_eq!(s.partition_factor(), 0.25);
        assert_eq!(s.qos_factor("Normal"), 0.25);
        assert_eq!(s.qos_factor("high"), 1.0);
        assert_eq!(s.qos_factor("low"), 0.0);
        assert_eq!(s.max_time_s("normal"), Some(3600));
        assert_eq!(s.max_time_s("high"), Some(7200));
    }
}

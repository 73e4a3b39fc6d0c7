//! A Slurm cluster's own configuration as a facility: `slurm.conf` (nodes with their GPUs as
//! Gres, features, partitions), optionally `topology.conf` (leaf switches: `SwitchName=… Nodes=…`)
//! and `gres.conf` (GPU types, where `slurm.conf` gives none). Each node is an NVLink domain;
//! each leaf switch a leaf group; nodes under no leaf switch form one group per GPU type and
//! size. GPU types map to the catalog by name (`nvidia_h100_80gb_hbm3`, `h100` → H100). Nodes
//! without GPUs are skipped and counted. Partitions are noted in the written file.
//!
//! The result is a facility file (`FacilityFile`) with the node names in domain order
//! (`nodes = […]`), so `simulate`, `compare` and `serve` read it like any other, and an
//! executor can tell which Slurm node a domain is.

use crate::error::ModelError;
use crate::facility::{FacilityFile, PoolSpec};
use crate::gpu::builtin_catalog;
use std::collections::BTreeMap;

/// Hostlists longer than this are refused (a typo like `n[1-999999999]` is not a cluster).
pub const MAX_HOSTS: usize = 1_000_000;

/// Expands a Slurm hostlist: `node[01-04,07],gpu-[1-2]-[a,b]` → node01 … node04, node07,
/// gpu-1-a, gpu-1-b, gpu-2-a, gpu-2-b (zero padding kept, several bracket groups multiply).
pub fn expand_hostlist(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    // split on commas outside brackets
    let (mut depth, mut start) = (0i32, 0usize);
    let mut parts = Vec::new();
    for (i, c) in s.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if !(0..=1).contains(&depth) {
            return Err(format!("'{s}': unbalanced or nested brackets"));
        }
    }
    if depth != 0 {
        return Err(format!("'{s}': unbalanced brackets"));
    }
    parts.push(&s[start..]);
    for p in parts {
        let p = p.trim();
        if p.is_empty() {
            continue;
        }
        let mut names = vec![String::new()];
        let mut rest = p;
        while !rest.is_empty() {
            let (lit, after) = match rest.find('[') {
                Some(i) => (&rest[..i], Some(&rest[i + 1..])),
                None => (rest, None),
            };
            for n in names.iter_mut() {
                n.push_str(lit);
            }
            let Some(after) = after else { break };
            let close = after.find(']').ok_or_else(|| format!("'{s}': unbalanced brackets"))?;
            let mut alts: Vec<String> = Vec::new();
            for range in after[..close].split(',') {
                let range = range.trim();
                match range.split_once('-') {
                    Some((a, b)) => {
                        let bad = || format!("'{s}': '{range}' is not a range of whole numbers");
                        let (x, y): (u64, u64) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
                        if y < x {
                            return Err(format!("'{s}': range '{range}' runs backwards"));
                        }
                        if (y - x) as usize >= MAX_HOSTS {
                            return Err(format!("'{s}': more than {MAX_HOSTS} hosts"));
                        }
                        let width = if a.starts_with('0') { a.len() } else { 0 };
                        alts.extend((x..=y).map(|v| format!("{v:0width$}")));
                    }
                    None if !range.is_empty() => alts.push(range.to_string()),
                    None => return Err(format!("'{s}': empty item in brackets")),
                }
            }
            if names.len().saturating_mul(alts.len()) > MAX_HOSTS {
                return Err(format!("'{s}': more than {MAX_HOSTS} hosts"));
            }
            names = names.iter().flat_map(|n| alts.iter().map(move |a| format!("{n}{a}"))).collect();
            rest = &after[close + 1..];
        }
        out.extend(names);
        if out.len() > MAX_HOSTS {
            return Err(format!("'{s}': more than {MAX_HOSTS} hosts"));
        }
    }
    Ok(out)
}

/// A Slurm duration (`[D-]HH:MM:SS`, `MM:SS`, `D-HH`, `D-HH:MM`, `MM`, with optional fractional
/// seconds) in seconds; `None` for `UNLIMITED`, `Partition_Limit`, `INVALID` or empty.
pub fn parse_slurm_duration(s: &str) -> Result<Option<u64>, String> {
    let s = s.trim();
    if s.is_empty()
        || ["unlimited", "partition_limit", "invalid", "none", "unknown"].contains(&s.to_ascii_lowercase().as_str())
    {
        return Ok(None);
    }
    let bad = || format!("'{s}' is not a Slurm duration ([D-]HH:MM:SS, MM:SS, D-HH, minutes)");
    let num = |x: &str| -> Result<u64, String> {
        let x = x.split('.').next().unwrap_or("");
        if x.is_empty() || !x.bytes().all(|b| b.is_ascii_digit()) || x.len() > 12 {
            return Err(bad());
        }
        x.parse().map_err(|_| bad())
    };
    let (days, rest) = match s.split_once('-') {
        Some((d, r)) => (num(d)?, Some(r)),
        None => (0, None),
    };
    let secs = match rest {
        // D-HH, D-HH:MM, D-HH:MM:SS
        Some(r) => {
            let f: Vec<&str> = r.split(':').collect();
            match f.as_slice() {
                [h] => num(h)? * 3600,
                [h, m] => num(h)? * 3600 + num(m)? * 60,
                [h, m, sec] => num(h)? * 3600 + num(m)? * 60 + num(sec)?,
                _ => return Err(bad()),
            }
        }
        None => {
            let f: Vec<&str> = s.split(':').collect();
            match f.as_slice() {
                [m] => num(m)? * 60,
                [m, sec] => num(m)? * 60 + num(sec)?,
                [h, m, sec] => num(h)? * 3600 + num(m)? * 60 + num(sec)?,
                _ => return Err(bad()),
            }
        }
    };
    Ok(Some(days * 86_400 + secs))
}

/// One line of a Slurm config file as `key → value` (keys lower-cased), with its line number.
fn records(text: &str) -> Vec<(usize, Vec<(String, String)>)> {
    let mut out = Vec::new();
    let mut pending = String::new();
    let mut first_line = 0;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim_end();
        if pending.is_empty() {
            first_line = i + 1;
        }
        if let Some(cont) = line.strip_suffix('\\') {
            pending.push_str(cont);
            pending.push(' ');
            continue;
        }
        pending.push_str(line);
        let full = std::mem::take(&mut pending);
        let mut kv = Vec::new();
        for tok in split_words(&full) {
            if let Some((k, v)) = tok.split_once('=') {
                kv.push((k.trim().to_ascii_lowercase(), v.trim().trim_matches('"').to_string()));
            }
        }
        if !kv.is_empty() {
            out.push((first_line, kv));
        }
    }
    out
}

/// Whitespace-separated words; a double-quoted value may hold spaces.
fn split_words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn get<'a>(kv: &'a [(String, String)], key: &str) -> Option<&'a str> {
    kv.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// A node as slurm.conf describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct SlurmNode {
    pub name: String,
    pub gpus: u32,
    /// The Gres type (`h100`), if slurm.conf or gres.conf names one.
    pub gpu_type: Option<String>,
    pub features: Vec<String>,
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SlurmPartition {
    pub name: String,
    pub nodes: String,
    pub default: bool,
    pub max_time: Option<String>,
    pub priority_job_factor: u32,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct SlurmConf {
    /// The file it was read from, for errors.
    pub origin: String,
    pub cluster: Option<String>,
    pub nodes: Vec<SlurmNode>,
    pub partitions: Vec<SlurmPartition>,
    /// Nodes without GPUs, skipped.
    pub cpu_only: usize,
    /// The scheduling configuration (priority plugin, weights, SchedulerParameters, partitions).
    pub sched: crate::slurm_sched::SlurmSched,
    /// What the `slurm` policy does not model (ignored SchedulerParameters, other plugins).
    pub sched_notes: Vec<String>,
}

/// `gpu:8`, `gpu:h100:8`, `gpu:h100:8(S:0-1)`, several comma-separated: the GPU count and type.
fn parse_gres(gres: &str) -> Result<(u32, Option<String>), String> {
    let mut total = 0u32;
    let mut ty = None;
    for item in gres.split(',') {
        let item = item.split('(').next().unwrap_or("").trim();
        let mut f = item.split(':');
        if f.next() != Some("gpu") {
            continue;
        }
        let rest: Vec<&str> = f.collect();
        let (t, n) = match rest.as_slice() {
            [n] => (None, *n),
            [t, n] => (Some(t.to_string()), *n),
            [] => (None, "1"),
            _ => return Err(format!("'{item}' is not gpu[:TYPE]:COUNT")),
        };
        let n: u32 = n.parse().map_err(|_| format!("'{item}': '{n}' is not a GPU count"))?;
        total = total.checked_add(n).ok_or_else(|| format!("'{gres}': too many GPUs"))?;
        if t.is_some() {
            ty = t;
        }
    }
    Ok((total, ty))
}

impl SlurmConf {
    /// Parses slurm.conf (and gres.conf, for GPU types slurm.conf does not give).
    pub fn parse(text: &str, origin: &str, gres_conf: Option<(&str, &str)>) -> Result<SlurmConf, ModelError> {
        let bad = |line: usize, field: &str, m: String| ModelError::invalid(origin, format!("line {line}: {field}"), m);
        let mut conf = SlurmConf { origin: origin.to_string(), ..SlurmConf::default() };
        let mut defaults: Vec<(String, String)> = Vec::new();
        for (line, kv) in records(text) {
            let (k0, v0) = &kv[0];
            match k0.as_str() {
                "clustername" => conf.cluster = Some(v0.clone()),
                "nodename" if v0.eq_ignore_ascii_case("default") => defaults = kv[1..].to_vec(),
                "nodename" => {
                    let names = expand_hostlist(v0).map_err(|m| bad(line, "NodeName", m))?;
                    let lookup = |key: &str| get(&kv, key).or_else(|| get(&defaults, key));
                    let (gpus, gpu_type) = match lookup("gres") {
                        Some(g) => parse_gres(g).map_err(|m| bad(line, "Gres", m))?,
                        None => (0, None),
                    };
                    let features: Vec<String> = lookup("features")
                        .or_else(|| lookup("feature"))
                        .map(|f| f.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
                        .unwrap_or_default();
                    let cpus: u64 = match lookup("cpus") {
                        Some(c) => c.parse().map_err(|_| bad(line, "CPUs", format!("'{c}' is not a whole number")))?,
                        None => 1, // slurm.conf(5): CPUs defaults to 1
                    };
                    let total =
                        conf.sched.cluster_cpus.unwrap_or(0).saturating_add(cpus.saturating_mul(names.len() as u64));
                    conf.sched.cluster_cpus = Some(total);
                    for name in names {
                        if conf.nodes.iter().any(|n| n.name == name) {
                            return Err(bad(line, "NodeName", format!("node '{name}' is defined twice")));
                        }
                        if gpus == 0 {
                            conf.cpu_only += 1;
                            continue;
                        }
                        conf.nodes.push(SlurmNode {
                            name,
                            gpus,
                            gpu_type: gpu_type.clone(),
                            features: features.clone(),
                            line,
                        });
                    }
                    if conf.nodes.len() > MAX_HOSTS {
                        return Err(bad(line, "NodeName", format!("more than {MAX_HOSTS} nodes")));
                    }
                }
                "partitionname" if !v0.eq_ignore_ascii_case("default") => {
                    let factor = match get(&kv, "priorityjobfactor") {
                        Some(f) => f
                            .parse()
                            .map_err(|_| bad(line, "PriorityJobFactor", format!("'{f}' is not a whole number")))?,
                        None => 1,
                    };
                    conf.partitions.push(SlurmPartition {
                        name: v0.clone(),
                        nodes: get(&kv, "nodes").unwrap_or("").to_string(),
                        default: get(&kv, "default").is_some_and(|d| d.eq_ignore_ascii_case("yes")),
                        max_time: get(&kv, "maxtime").map(str::to_string),
                        priority_job_factor: factor,
                    })
                }
                key => conf.sched_key(key, v0, line).map_err(|(f, m)| bad(line, f, m))?,
            }
        }
        if let Some((gtext, gorigin)) = gres_conf {
            for (line, kv) in records(gtext) {
                let (Some(nodes), Some(ty)) = (get(&kv, "nodename"), get(&kv, "type")) else { continue };
                if get(&kv, "name").is_some_and(|n| n != "gpu") {
                    continue;
                }
                let names = expand_hostlist(nodes)
                    .map_err(|m| ModelError::invalid(gorigin, format!("line {line}: NodeName"), m))?;
                for n in conf.nodes.iter_mut().filter(|n| n.gpu_type.is_none() && names.contains(&n.name)) {
                    n.gpu_type = Some(ty.to_string());
                }
            }
        }
        if conf.nodes.is_empty() {
            return Err(ModelError::invalid(origin, "NodeName", "no node with GPUs (Gres=gpu:…)".to_string()));
        }
        for p in &conf.partitions {
            let max_time_min = match p.max_time.as_deref().map(|m| {
                if m.eq_ignore_ascii_case("infinite") {
                    Ok(None)
                } else {
                    parse_slurm_duration(m)
                }
            }) {
                Some(Ok(s)) => s.map(|s| s.div_ceil(60)),
                Some(Err(m)) => return Err(ModelError::invalid(origin, format!("partition {}: MaxTime", p.name), m)),
                None => None,
            };
            conf.sched.partitions.push(crate::slurm_sched::SlurmPartitionSpec {
                name: p.name.clone(),
                max_time_min,
                priority_job_factor: p.priority_job_factor,
                default: p.default,
            });
        }
        conf.sched.validate(origin)?;
        Ok(conf)
    }

    /// Reads one global scheduling key of slurm.conf into `sched`; errors name the field.
    fn sched_key(&mut self, key: &str, v: &str, line: usize) -> Result<(), (&'static str, String)> {
        use crate::slurm_sched::{FairShareAlgo, PriorityType};
        let s = &mut self.sched;
        let int = |f: &'static str| -> Result<u32, (&'static str, String)> {
            v.trim().parse().map_err(|_| (f, format!("'{v}' is not a whole number")))
        };
        let dur = |f: &'static str| -> Result<u64, (&'static str, String)> {
            parse_slurm_duration(v).map_err(|m| (f, m))?.ok_or((f, format!("'{v}' is not a duration")))
        };
        match key {
            "schedulertype" => match v {
                "sched/backfill" => s.backfill = true,
                "sched/builtin" => s.backfill = false,
                other => self
                    .sched_notes
                    .push(format!("line {line}: SchedulerType={other} is not modelled; taken as sched/backfill")),
            },
            "schedulerparameters" => {
                let ignored = s.apply_scheduler_parameters(v).map_err(|m| ("SchedulerParameters", m))?;
                if !ignored.is_empty() {
                    self.sched_notes
                        .push(format!("line {line}: SchedulerParameters not modelled: {}", ignored.join(",")));
                }
            }
            "prioritytype" => match v {
                "priority/basic" => s.priority_type = PriorityType::Basic,
                "priority/multifactor" => s.priority_type = PriorityType::Multifactor,
                other => {
                    return Err((
                        "PriorityType",
                        format!("'{other}' is neither priority/basic nor priority/multifactor"),
                    ))
                }
            },
            "priorityflags" if v.split(',').any(|f| f.trim().eq_ignore_ascii_case("no_fair_tree")) => {
                s.fair_share = FairShareAlgo::Classic
            }
            "priorityweightage" => s.weight_age = int("PriorityWeightAge")?,
            "priorityweightfairshare" => s.weight_fairshare = int("PriorityWeightFairshare")?,
            "priorityweightjobsize" => s.weight_job_size = int("PriorityWeightJobSize")?,
            "priorityweightpartition" => s.weight_partition = int("PriorityWeightPartition")?,
            "priorityweightqos" => s.weight_qos = int("PriorityWeightQOS")?,
            "priorityfavorsmall" => s.favor_small = v.eq_ignore_ascii_case("yes"),
            "prioritydecayhalflife" => s.decay_half_life_s = dur("PriorityDecayHalfLife")?,
            "prioritymaxage" => s.max_age_s = dur("PriorityMaxAge")?,
            "prioritycalcperiod" => s.calc_period_s = dur("PriorityCalcPeriod")?,
            "topologyplugin" => s.topology_tree = v == "topology/tree",
            "selecttype" if v != "select/cons_tres" => self
                .sched_notes
                .push(format!("line {line}: SelectType={v}: nodes are chosen as select/cons_tres would")),
            _ => {}
        }
        Ok(())
    }

    /// The facility file: one leaf group per leaf switch of `topology` (else one per GPU type
    /// and size), nodes in order. `default_type` names the catalog GPU of nodes whose Gres has
    /// no type (H100 when `None`, said in the returned notes).
    pub fn to_facility(
        &self,
        name: &str,
        topology: Option<(&str, &str)>,
        default_type: Option<&str>,
    ) -> Result<(FacilityFile, Vec<String>), ModelError> {
        let mut notes = Vec::new();
        let catalog = builtin_catalog();
        // longest names first, so GB200 wins over B200 and MI325X over MI300X's prefix
        let mut names: Vec<String> = catalog.iter().map(|g| g.name.clone()).collect();
        names.sort_by_key(|n| std::cmp::Reverse(n.len()));
        let mut untyped = 0;
        let mut typed: Vec<(usize, String)> = Vec::new();
        for (i, n) in self.nodes.iter().enumerate() {
            let t = match &n.gpu_type {
                Some(t) => {
                    let up = t.to_ascii_uppercase();
                    names.iter().find(|c| up.contains(c.as_str())).cloned().ok_or_else(|| {
                        ModelError::invalid(
                            &self.origin,
                            format!("line {}: Gres", n.line),
                            format!("GPU type '{t}' of node {} matches no catalog GPU ({})", n.name, names.join(" ")),
                        )
                    })?
                }
                None => {
                    untyped += 1;
                    default_type.unwrap_or("H100").to_string()
                }
            };
            typed.push((i, t));
        }
        if untyped > 0 {
            notes.push(format!(
                "{untyped} node(s) give no GPU type in Gres or gres.conf; taken as {}",
                default_type.unwrap_or("H100 (use --gpu-type to say)")
            ));
        }
        if self.cpu_only > 0 {
            notes.push(format!("{} node(s) without GPUs skipped", self.cpu_only));
        }
        // leaf switches: the switches whose Nodes= lists nodes
        let mut leaf_of: BTreeMap<String, usize> = BTreeMap::new();
        let mut leaves: Vec<String> = Vec::new();
        if let Some((text, origin)) = topology {
            for (line, kv) in records(text) {
                // a leaf has nodes and no child switches (`scontrol show topology` lists the
                // nodes below upper switches too)
                let (Some(sw), Some(nodes)) = (get(&kv, "switchname"), get(&kv, "nodes")) else { continue };
                if get(&kv, "switches").is_some() {
                    continue;
                }
                let hosts = expand_hostlist(nodes)
                    .map_err(|m| ModelError::invalid(origin, format!("line {line}: Nodes"), m))?;
                leaves.push(sw.to_string());
                for h in hosts {
                    if let Some(prev) = leaf_of.insert(h.clone(), leaves.len() - 1) {
                        return Err(ModelError::invalid(
                            origin,
                            format!("line {line}: Nodes"),
                            format!("node {h} is under two leaf switches ({} and {sw})", leaves[prev]),
                        ));
                    }
                }
            }
        }
        // groups in order of first appearance: (leaf switch or none, type, GPUs per node)
        // (leaf switch, GPU type, GPUs per node) → the nodes of that group
        type Key = (Option<usize>, String, u32);
        let mut groups: Vec<(Key, Vec<usize>)> = Vec::new();
        for (i, t) in &typed {
            let n = &self.nodes[*i];
            let key = (leaf_of.get(&n.name).copied(), t.clone(), n.gpus);
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, v)) => v.push(*i),
                None => groups.push((key, vec![*i])),
            }
        }
        let unswitched = groups.iter().filter(|((l, _, _), _)| l.is_none()).map(|(_, v)| v.len()).sum::<usize>();
        if topology.is_some() && unswitched > 0 {
            notes.push(format!("{unswitched} node(s) under no leaf switch form groups of their own"));
        }
        let mut pool = Vec::new();
        let mut order = Vec::new();
        for ((_, t, gpus), members) in &groups {
            pool.push(PoolSpec {
                gpu: t.clone(),
                domain_gpus: *gpus,
                domains_per_group: members.len() as u32,
                groups: 1,
                hall: None,
            });
            order.extend(members.iter().map(|&i| self.nodes[i].name.clone()));
        }
        notes.extend(self.sched_notes.iter().cloned());
        if topology.is_some() && !self.sched.topology_tree {
            notes.push(
                "topology.conf given but TopologyPlugin is not topology/tree: the slurm policy ignores the switches"
                    .into(),
            );
        }
        for p in &self.partitions {
            notes.push(format!(
                "partition {}{}: {}{}",
                p.name,
                if p.default { " (default)" } else { "" },
                p.nodes,
                p.max_time.as_ref().map_or(String::new(), |m| format!(", MaxTime={m}"))
            ));
        }
        let file = FacilityFile {
            name: name.to_string(),
            gpu: vec![],
            pool,
            account: vec![],
            reservation: vec![],
            run_as: vec![],
            nodes: order,
            slurm: Some(self.sched.clone()),
        };
        Ok((file, notes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostlists_expand_like_slurms() {
        assert_eq!(expand_hostlist("node[01-03,07]").unwrap(), ["node01", "node02", "node03", "node07"]);
        assert_eq!(expand_hostlist("a,b[1-2]").unwrap(), ["a", "b1", "b2"]);
        assert_eq!(expand_hostlist("r[1-2]n[a,b]").unwrap(), ["r1na", "r1nb", "r2na", "r2nb"]);
        assert_eq!(expand_hostlist("n[8-10]").unwrap(), ["n8", "n9", "n10"]);
        assert!(expand_hostlist("n[3-1]").unwrap_err().contains("runs backwards"));
        assert!(expand_hostlist("n[1-2").unwrap_err().contains("unbalanced"));
        assert!(expand_hostlist("n[1-9999999999]").unwrap_err().contains("more than"));
        assert!(expand_hostlist("n[1-x]").unwrap_err().contains("not a range"));
    }

    #[test]
    fn a_cluster_with_leaf_switches_becomes_the_expected_facility() {
        let conf = "ClusterName=lab\n\
            # 4 H100 nodes, 2 B200 nodes, a login node without GPUs\n\
            NodeName=DEFAULT CPUs=64 RealMemory=512000\n\
            NodeName=gpu[01-04] Gres=gpu:h100:8 Features=hgx,ib State=UNKNOWN\n\
            NodeName=b[1-2] Gres=gpu:8 \\\n   Features=blackwell\n\
            NodeName=login CPUs=8\n\
            PartitionName=gpu Nodes=gpu[01-04],b[1-2] Default=YES MaxTime=2-00:00:00\n\
            PartitionName=debug Nodes=gpu01 MaxTime=30\n";
        let gres = "AutoDetect=off\nNodeName=b[1-2] Name=gpu Type=nvidia_b200 File=/dev/nvidia[0-7]\n";
        // as topology.conf has it, and the spine as `scontrol show topology` prints it
        let topo = "SwitchName=leaf1 Nodes=gpu[01-02]\nSwitchName=leaf2 Nodes=gpu[03-04],b[1-2]\nSwitchName=spine Level=1 LinkSpeed=1 Nodes=gpu[01-04],b[1-2] Switches=leaf[1-2]\n";
        let c = SlurmConf::parse(conf, "slurm.conf", Some((gres, "gres.conf"))).unwrap();
        assert_eq!(c.cluster.as_deref(), Some("lab"));
        assert_eq!(c.cpu_only, 1);
        // the job-size factor's CPU denominator: six nodes of the DEFAULT 64 CPUs and login's 8
        assert_eq!(c.sched.cluster_cpus, Some(6 * 64 + 8));
        assert_eq!(c.nodes[4].features, ["blackwell"]);
        assert_eq!(c.nodes[0].features, ["hgx", "ib"]);
        let (file, notes) = c.to_facility("lab", Some((topo, "topology.conf")), None).unwrap();
        // leaf1: 2 H100 nodes; leaf2: 2 H100 nodes and, apart (another type), 2 B200 nodes
        let pools: Vec<(String, u32, u32)> =
            file.pool.iter().map(|p| (p.gpu.clone(), p.domain_gpus, p.domains_per_group)).collect();
        assert_eq!(pools, [("H100".into(), 8, 2), ("H100".into(), 8, 2), ("B200".into(), 8, 2)]);
        assert_eq!(file.nodes, ["gpu01", "gpu02", "gpu03", "gpu04", "b1", "b2"]);
        assert!(notes.contains(&"1 node(s) without GPUs skipped".to_string()), "{notes:?}");
        assert!(notes.contains(&"partition gpu (default): gpu[01-04],b[1-2], MaxTime=2-00:00:00".to_string()));
        let f = crate::Facility::from_file(&file, "lab.toml").unwrap();
        assert_eq!((f.total_gpus(), f.groups.len(), f.domains.len()), (48, 3, 6));
        assert_eq!(f.node_names[4], "b1");
        // written as TOML and read back, the same facility
        let text = toml::to_string(&file).unwrap();
        assert_eq!(crate::Facility::from_toml(&text, "lab.toml").unwrap(), f);
        // without topology: one group per type and size
        let (file, _) = c.to_facility("lab", None, None).unwrap();
        assert_eq!(file.pool.iter().map(|p| p.domains_per_group).collect::<Vec<_>>(), [4, 2]);
    }

    #[test]
    fn scheduling_settings_come_from_slurm_conf() {
        let conf = "SchedulerType=sched/backfill\n\
            SchedulerParameters=bf_interval=2,bf_resolution=30,bf_window=120,sched_min_interval=2\n\
            PriorityType=priority/multifactor\nPriorityFlags=NO_FAIR_TREE\n\
            PriorityWeightAge=1000\nPriorityWeightFairshare=10000\nPriorityWeightJobSize=500\n\
            PriorityDecayHalfLife=1-12\nPriorityMaxAge=2-0\nPriorityCalcPeriod=1\nTopologyPlugin=topology/tree\n\
            NodeName=n[1-2] Gres=gpu:h100:4\n\
            PartitionName=gpu Nodes=ALL Default=YES MaxTime=2:00:00 PriorityJobFactor=3\n\
            PartitionName=long Nodes=ALL MaxTime=INFINITE\n";
        let c = SlurmConf::parse(conf, "slurm.conf", None).unwrap();
        let s = &c.sched;
        assert!(s.backfill);
        assert_eq!((s.bf_interval_s, s.bf_resolution_s, s.bf_window_min), (2, 30, 120));
        assert_eq!(s.priority_type, crate::slurm_sched::PriorityType::Multifactor);
        assert_eq!(s.fair_share, crate::slurm_sched::FairShareAlgo::Classic);
        assert_eq!((s.weight_age, s.weight_fairshare, s.weight_job_size, s.weight_qos), (1000, 10000, 500, 0));
        // 1-12 is a day and a half; PriorityCalcPeriod is in minutes
        assert_eq!((s.decay_half_life_s, s.max_age_s, s.calc_period_s), (129_600, 172_800, 60));
        assert!(s.topology_tree);
        assert_eq!(s.partitions.len(), 2);
        assert_eq!((s.partitions[0].max_time_min, s.partitions[0].priority_job_factor), (Some(120), 3));
        assert_eq!(s.partitions[1].max_time_min, None);
        assert_eq!(s.partition_factor(), 1.0);
        let (file, notes) = c.to_facility("x", None, None).unwrap();
        assert_eq!(file.slurm.as_ref(), Some(s));
        assert!(
            notes.iter().any(|n| n == "line 2: SchedulerParameters not modelled: sched_min_interval=2"),
            "{notes:?}"
        );
        let e = SlurmConf::parse("PriorityType=priority/magic\nNodeName=n1 Gres=gpu:1\n", "s.conf", None);
        assert!(e.unwrap_err().to_string().contains("s.conf: line 1: PriorityType"));
        let e = SlurmConf::parse("PriorityWeightAge=lots\nNodeName=n1 Gres=gpu:1\n", "s.conf", None);
        assert!(e.unwrap_err().to_string().contains("line 1: PriorityWeightAge: 'lots' is not a whole number"));
    }

    #[test]
    fn bad_slurm_files_name_the_line() {
        let e = SlurmConf::parse("NodeName=n[1-2] Gres=gpu:h100:x\n", "slurm.conf", None).unwrap_err().to_string();
        assert!(e.contains("slurm.conf: line 1: Gres"), "{e}");
        let e = SlurmConf::parse("NodeName=cpu1 CPUs=4\n", "slurm.conf", None).unwrap_err().to_string();
        assert!(e.contains("no node with GPUs"), "{e}");
        let c = SlurmConf::parse("NodeName=n1 Gres=gpu:tpu9:4\n", "slurm.conf", None).unwrap();
        let e = c.to_facility("x", None, None).unwrap_err().to_string();
        assert!(e.contains("GPU type 'tpu9' of node n1 matches no catalog GPU"), "{e}");
        let c = SlurmConf::parse("NodeName=n[1-2] Gres=gpu:4\n", "slurm.conf", None).unwrap();
        let e = c.to_facility("x", Some(("SwitchName=a Nodes=n1\nSwitchName=b Nodes=n[1-2]\n", "topo.conf")), None);
        assert!(e.unwrap_err().to_string().contains("topo.conf: line 2: Nodes: node n1 is under two leaf switches"));
    }

    #[test]
    fn gres_strings() {
        assert_eq!(parse_gres("gpu:8").unwrap(), (8, None));
        assert_eq!(parse_gres("gpu:h100:4(S:0-1),gpu:h100:4").unwrap(), (8, Some("h100".into())));
        assert_eq!(parse_gres("mps:100,gpu:a100:2").unwrap(), (2, Some("a100".into())));
        assert!(parse_gres("gpu:h100:x").is_err());
    }
}

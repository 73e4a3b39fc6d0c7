//! Facility topology: GPUs in NVLink domains, domains in leaf groups (scalable units under one
//! leaf switch), groups in halls. A pool is a block of identical groups (one GPU type, one domain
//! size); heterogeneous facilities have several pools. Consecutive `[[pool]]` entries with the
//! same GPU type and domain size form one pool even when their groups sit in different halls, so
//! a large gang may span halls.

use crate::error::ModelError;
use crate::gpu::{self, GpuType};
use crate::ids::{DomainId, GpuTypeId, GroupId, HallId, PoolId};
use crate::tenants::{AccountSpec, TenantTree};
use crate::units::Watts;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pool {
    pub gpu_type: GpuTypeId,
    /// GPUs per NVLink domain (8 for an HGX node, 72 for an NVL72 rack).
    pub domain_gpus: u32,
    pub first_group: u32,
    pub groups: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Group {
    pub hall: HallId,
    pub pool: PoolId,
    pub first_domain: u32,
    pub domains: u32,
}

impl Group {
    pub fn domain_ids(&self) -> impl Iterator<Item = DomainId> {
        (self.first_domain..self.first_domain + self.domains).map(DomainId)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Domain {
    pub group: GroupId,
    pub pool: PoolId,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Facility {
    pub name: String,
    /// The GPU types this facility knows (built-in catalog plus the file's own entries).
    pub catalog: Vec<GpuType>,
    pub halls: Vec<String>,
    pub pools: Vec<Pool>,
    pub groups: Vec<Group>,
    pub domains: Vec<Domain>,
    pub tenants: TenantTree,
    pub reservations: Vec<AdvanceReservation>,
    /// Which Unix user each subtree's jobs run as (`[[run_as]]`), for executors that run real
    /// processes.
    pub run_as: crate::users::UserMap,
    /// The host (Slurm node) name of each domain, in domain order, where the file names them
    /// (`nodes = […]`, written by `fabrik facility import`); empty otherwise.
    pub node_names: Vec<String>,
    /// Slurm's scheduling configuration, for the `slurm` policy (`[slurm]`; Slurm's defaults
    /// when absent).
    pub slurm: crate::slurm_sched::SlurmSched,
}

/// A window of GPUs held for one account (its subtree's jobs run inside), e.g. a 4,096-GPU
/// block for a training run from Monday 08:00 to Friday 18:00.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AdvanceReservation {
    pub name: String,
    pub account: crate::AccountId,
    pub gpus: u32,
    pub gpu_type: Option<GpuTypeId>,
    /// Hold the GPUs inside this leaf group.
    pub group: Option<GroupId>,
    pub start: crate::SimTime,
    pub end: crate::SimTime,
}

/// One `[[reservation]]` of a facility file; times are offsets from the run's start
/// (seconds, or `8h`, `4.75d` …).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReservationSpec {
    pub name: String,
    pub account: String,
    pub gpus: u32,
    #[serde(default)]
    pub gpu_type: Option<String>,
    /// Leaf group index (0-based, in facility order).
    #[serde(default)]
    pub group: Option<u32>,
    pub start: String,
    pub end: String,
}

/// One `[[pool]]` of a facility file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSpec {
    pub gpu: String,
    pub domain_gpus: u32,
    pub domains_per_group: u32,
    pub groups: u32,
    #[serde(default)]
    pub hall: Option<String>,
}

/// The facility file format (TOML). See README.md for an example.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FacilityFile {
    pub name: String,
    /// Extra or overriding GPU catalog entries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpu: Vec<GpuType>,
    pub pool: Vec<PoolSpec>,
    /// The tenant share tree; the built-in tree when absent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub account: Vec<AccountSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reservation: Vec<ReservationSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub run_as: Vec<crate::users::RunAsSpec>,
    /// Host names of the domains, in order (one per domain, unique).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
    /// Slurm's scheduling configuration for the `slurm` policy (written by `fabrik facility
    /// import`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm: Option<crate::slurm_sched::SlurmSched>,
}

/// Names of the built-in presets, for help texts and errors.
pub const PRESETS: &[(&str, &str)] = &[
    (
        "eu-gigafactory",
        "EU AI gigafactory: 100,096 GPUs (80,640 GB200 in NVL72 racks, 19,456 B200 in HGX nodes), 5 halls",
    ),
    ("gw-campus", "GW-class campus: 1,002,240 GB200 in 13,920 NVL72 racks, 10 buildings of 174 scalable units"),
    ("ai-factory", "national AI centre: 4,096 H100 in 512 HGX nodes, 16 leaf groups of 32 nodes"),
    ("small", "test facility: 128 H100 in 16 nodes, 4 leaf groups of 4 nodes"),
    ("tiny", "test facility: 16 H100 in 2 nodes, one leaf group"),
];

impl Facility {
    /// Parses a facility TOML file's contents; `origin` (the file name) prefixes every error.
    pub fn from_toml(text: &str, origin: &str) -> Result<Facility, ModelError> {
        let file: FacilityFile = toml::from_str(text)
            .map_err(|e| ModelError::Toml { origin: origin.to_string(), message: e.to_string() })?;
        Facility::from_file(&file, origin)
    }

    pub fn from_file(file: &FacilityFile, origin: &str) -> Result<Facility, ModelError> {
        let mut catalog = gpu::builtin_catalog();
        for (i, g) in file.gpu.iter().enumerate() {
            let f = |name: &str| format!("gpu[{i}].{name}");
            for (name, v) in [
                ("bf16_tflops", g.bf16_tflops),
                ("memory_gb", g.memory_gb),
                ("max_power_w", g.max_power_w),
                ("price_usd", g.price_usd),
            ] {
                if !(v.is_finite() && v > 0.0) {
                    return Err(ModelError::invalid(origin, f(name), "must be a positive number"));
                }
            }
            for (name, v) in [("idle_power_w", g.idle_power_w), ("host_overhead_w", g.host_overhead_w)] {
                if !(v.is_finite() && v >= 0.0) {
                    return Err(ModelError::invalid(origin, f(name), "must be zero or positive"));
                }
            }
            if g.idle_power_w > g.max_power_w {
                return Err(ModelError::invalid(origin, f("idle_power_w"), "exceeds max_power_w"));
            }
            match catalog.iter_mut().find(|c| c.name.eq_ignore_ascii_case(&g.name)) {
                Some(c) => *c = g.clone(),
                None => catalog.push(g.clone()),
            }
        }
        let tenants = if file.account.is_empty() {
            TenantTree::default_tree()
        } else {
            TenantTree::from_specs(&file.account, origin)?
        };
        let mut b = Builder::new(&file.name, catalog, tenants);
        if file.name.trim().is_empty() {
            return Err(ModelError::invalid(origin, "name", "must not be empty"));
        }
        if file.pool.is_empty() {
            return Err(ModelError::invalid(origin, "pool", "a facility needs at least one [[pool]]"));
        }
        for (i, p) in file.pool.iter().enumerate() {
            b.pool(p, origin, &format!("pool[{i}]"))?;
        }
        let mut f = b.finish();
        if !file.nodes.is_empty() {
            if file.nodes.len() != f.domains.len() {
                return Err(ModelError::invalid(
                    origin,
                    "nodes",
                    format!("names {} nodes; the pools have {} domains", file.nodes.len(), f.domains.len()),
                ));
            }
            let mut seen = std::collections::BTreeSet::new();
            if let Some(dup) = file.nodes.iter().find(|n| !seen.insert(n.as_str())) {
                return Err(ModelError::invalid(origin, "nodes", format!("'{dup}' is named twice")));
            }
            f.node_names = file.nodes.clone();
        }
        if let Some(sl) = &file.slurm {
            sl.validate(origin)?;
            f.slurm = sl.clone();
        }
        f.run_as =
            crate::users::UserMap::from_specs(&file.run_as, origin, |p| f.tenants.iter().any(|(_, a)| a.path == p))?;
        for (i, r) in file.reservation.iter().enumerate() {
            let field = |n: &str| format!("reservation[{i}].{n}");
            let bad = |n: &str, m: String| ModelError::invalid(origin, field(n), m);
            let account = f
                .tenants
                .iter()
                .find(|(_, a)| a.path == r.account.trim_matches('/'))
                .map(|(id, _)| id)
                .ok_or_else(|| bad("account", format!("unknown account '{}'", r.account)))?;
            let gpu_type = match &r.gpu_type {
                Some(t) => Some(f.gpu_type_id(t).ok_or_else(|| bad("gpu_type", format!("unknown GPU type '{t}'")))?),
                None => None,
            };
            let start = crate::units::parse_duration(&r.start).map_err(|m| bad("start", m))?;
            let end = crate::units::parse_duration(&r.end).map_err(|m| bad("end", m))?;
            if end <= start {
                return Err(bad("end", "must be after start".into()));
            }
            if r.gpus == 0 || u64::from(r.gpus) > f.max_gang(gpu_type) {
                return Err(bad(
                    "gpus",
                    format!("{} is not between 1 and the largest pool ({})", r.gpus, f.max_gang(gpu_type)),
                ));
            }
            let group = match r.group {
                Some(g) if g as usize >= f.groups.len() => {
                    return Err(bad("group", format!("no leaf group {g} (the facility has {})", f.groups.len())))
                }
                Some(g) => {
                    let gid = GroupId(g);
                    if r.gpus > f.group_gpus(gid) {
                        return Err(bad(
                            "gpus",
                            format!("{} is more than leaf group {g} holds ({})", r.gpus, f.group_gpus(gid)),
                        ));
                    }
                    if gpu_type.is_some_and(|t| f.pools[f.groups[g as usize].pool.idx()].gpu_type != t) {
                        return Err(bad(
                            "group",
                            format!("leaf group {g} has no {} GPUs", r.gpu_type.clone().unwrap_or_default()),
                        ));
                    }
                    Some(gid)
                }
                None => None,
            };
            f.reservations.push(AdvanceReservation {
                name: r.name.clone(),
                account,
                gpus: r.gpus,
                gpu_type,
                group,
                start: crate::SimTime(start),
                end: crate::SimTime(end),
            });
        }
        Ok(f)
    }

    /// A built-in preset by name.
    pub fn preset(name: &str) -> Option<Facility> {
        let pools: Vec<PoolSpec> = match name {
            "tiny" => vec![spec("H100", 8, 2, 1, "hall-1")],
            "small" => vec![spec("H100", 8, 4, 4, "hall-1")],
            "ai-factory" => vec![spec("H100", 8, 32, 16, "hall-1")],
            // ~100,000 latest-generation chips (EU InvestAI plan, ../shared/reference). NVL72
            // scalable units of 8 racks (576 GPUs) as in NVIDIA's GB200 SuperPOD; four halls of
            // 35 SUs, plus one hall of B200 HGX nodes in 256-GPU leaf groups.
            "eu-gigafactory" => {
                let mut v: Vec<PoolSpec> = (1..=4).map(|h| spec("GB200", 72, 8, 35, &format!("hall-{h}"))).collect();
                v.push(spec("B200", 8, 32, 76, "hall-5"));
                v
            }
            // The next order of magnitude: ~1,000,000 GPUs, the "1 GW (2026)" frontier campus of
            // the seed claims (../shared/reference). Ten buildings of 174 scalable units of 8
            // GB200 NVL72 racks (72 GPUs, ~120 kW per rack, SemiAnalysis): 13,920 racks,
            // ~1.7 GW of rack IT power.
            "gw-campus" => (1..=10).map(|h| spec("GB200", 72, 8, 174, &format!("hall-{h}"))).collect(),
            _ => return None,
        };
        let file = FacilityFile {
            name: name.to_string(),
            gpu: vec![],
            pool: pools,
            account: vec![],
            reservation: vec![],
            run_as: vec![],
            nodes: vec![],
            slurm: None,
        };
        Some(Facility::from_file(&file, name).expect("presets are valid"))
    }

    /// The trace-replay shorthand `NxG:M[@TYPE]`: N domains of G GPUs, M domains per leaf group
    /// (the last group may be smaller), GPU type H100 unless given. `80x8:20` is 80 HGX nodes in 4
    /// leaf groups of 20.
    pub fn from_shorthand(s: &str) -> Result<Facility, ModelError> {
        let bad = |msg: &str| ModelError::invalid(s, "shorthand", msg.to_string());
        let (body, gpu) = match s.split_once('@') {
            Some((b, g)) => (b, g),
            None => (s, "H100"),
        };
        let (nodes, rest) = body.split_once('x').ok_or_else(|| bad("expected NxG:M, e.g. 80x8:20"))?;
        let (gpus, per) = rest.split_once(':').ok_or_else(|| bad("expected NxG:M, e.g. 80x8:20"))?;
        let num = |v: &str, what: &str| -> Result<u32, ModelError> {
            v.trim()
                .parse::<u32>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| bad(&format!("{what} '{v}' is not a positive whole number")))
        };
        let (nodes, gpus, per) = (num(nodes, "N")?, num(gpus, "G")?, num(per, "M")?);
        let catalog = gpu::builtin_catalog();
        let mut b = Builder::new(s, catalog, TenantTree::default_tree());
        let full = nodes / per;
        if full > 0 {
            b.pool(&spec(gpu, gpus, per, full, "hall-1"), s, "shorthand")?;
        }
        if nodes % per > 0 {
            b.pool(&spec(gpu, gpus, nodes % per, 1, "hall-1"), s, "shorthand")?;
        }
        Ok(b.finish())
    }

    pub fn gpu(&self, t: GpuTypeId) -> &GpuType {
        &self.catalog[t.idx()]
    }
    pub fn gpu_type_id(&self, name: &str) -> Option<GpuTypeId> {
        self.catalog.iter().position(|g| g.name.eq_ignore_ascii_case(name)).map(|i| GpuTypeId(i as u32))
    }
    pub fn domain_gpus(&self, d: DomainId) -> u32 {
        self.pools[self.domains[d.idx()].pool.idx()].domain_gpus
    }
    pub fn pool_gpus(&self, p: PoolId) -> u64 {
        let pool = &self.pools[p.idx()];
        (pool.first_group..pool.first_group + pool.groups).map(|g| u64::from(self.group_gpus(GroupId(g)))).sum()
    }
    pub fn group_gpus(&self, g: GroupId) -> u32 {
        let group = &self.groups[g.idx()];
        group.domains * self.pools[group.pool.idx()].domain_gpus
    }
    pub fn total_gpus(&self) -> u64 {
        (0..self.pools.len()).map(|p| self.pool_gpus(PoolId(p as u32))).sum()
    }
    /// The largest gang any pool of the given type (any type when `None`) could ever hold.
    pub fn max_gang(&self, gpu_type: Option<GpuTypeId>) -> u64 {
        (0..self.pools.len())
            .map(|p| PoolId(p as u32))
            .filter(|p| gpu_type.is_none_or(|t| self.pools[p.idx()].gpu_type == t))
            .map(|p| self.pool_gpus(p))
            .max()
            .unwrap_or(0)
    }

    /// The names of the GPU types its pools hold, in catalog order.
    pub fn gpu_types_present(&self) -> Vec<String> {
        (0..self.catalog.len())
            .filter(|&t| self.pools.iter().any(|p| p.gpu_type.idx() == t))
            .map(|t| self.catalog[t].name.clone())
            .collect()
    }

    /// Nameplate IT power: every GPU at its board limit plus its share of host overhead.
    pub fn nameplate_it_power(&self) -> Watts {
        let mut w = 0.0;
        for (p, pool) in self.pools.iter().enumerate() {
            let g = self.gpu(pool.gpu_type);
            w += self.pool_gpus(PoolId(p as u32)) as f64 * (g.max_power_w + g.host_overhead_w);
        }
        Watts(w)
    }

    pub fn summary(&self) -> FacilitySummary {
        let mut by_type: BTreeMap<String, TypeSummary> = BTreeMap::new();
        for (p, pool) in self.pools.iter().enumerate() {
            let g = self.gpu(pool.gpu_type);
            let e = by_type.entry(g.name.clone()).or_insert_with(|| TypeSummary {
                gpu_type: g.name.clone(),
                gpus: 0,
                domains: 0,
                domain_gpus: pool.domain_gpus,
                bf16_pflops: 0.0,
                it_power_mw: 0.0,
            });
            let n = self.pool_gpus(PoolId(p as u32));
            e.gpus += n;
            e.domains += n / u64::from(pool.domain_gpus);
            e.bf16_pflops += n as f64 * g.bf16_tflops / 1000.0;
            e.it_power_mw += n as f64 * (g.max_power_w + g.host_overhead_w) / 1e6;
        }
        FacilitySummary {
            name: self.name.clone(),
            gpus: self.total_gpus(),
            domains: self.domains.len() as u64,
            groups: self.groups.len() as u64,
            halls: self.halls.len() as u64,
            nameplate_it_power_mw: self.nameplate_it_power().megawatts(),
            by_type: by_type.into_values().collect(),
            accounts: self.tenants.leaves().count() as u64,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FacilitySummary {
    pub name: String,
    pub gpus: u64,
    pub domains: u64,
    pub groups: u64,
    pub halls: u64,
    pub nameplate_it_power_mw: f64,
    pub by_type: Vec<TypeSummary>,
    pub accounts: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TypeSummary {
    pub gpu_type: String,
    pub gpus: u64,
    pub domains: u64,
    pub domain_gpus: u32,
    pub bf16_pflops: f64,
    pub it_power_mw: f64,
}

fn spec(gpu: &str, domain_gpus: u32, domains_per_group: u32, groups: u32, hall: &str) -> PoolSpec {
    PoolSpec { gpu: gpu.to_string(), domain_gpus, domains_per_group, groups, hall: Some(hall.to_string()) }
}

/// Index spaces stay within u32; more than 4 billion domains is an input error, not a wrap.
const MAX_DOMAINS: u64 = 50_000_000;

struct Builder {
    f: Facility,
}

impl Builder {
    fn new(name: &str, catalog: Vec<GpuType>, tenants: TenantTree) -> Builder {
        Builder {
            f: Facility {
                name: name.to_string(),
                catalog,
                halls: vec![],
                pools: vec![],
                groups: vec![],
                domains: vec![],
                tenants,
                reservations: vec![],
                run_as: Default::default(),
                node_names: vec![],
                slurm: Default::default(),
            },
        }
    }

    fn pool(&mut self, p: &PoolSpec, origin: &str, field: &str) -> Result<(), ModelError> {
        let gpu_type = self.f.gpu_type_id(&p.gpu).ok_or_else(|| {
            ModelError::invalid(origin, format!("{field}.gpu"), format!("unknown GPU type '{}'", p.gpu))
        })?;
        for (name, v) in
            [("domain_gpus", p.domain_gpus), ("domains_per_group", p.domains_per_group), ("groups", p.groups)]
        {
            if v == 0 {
                return Err(ModelError::invalid(origin, format!("{field}.{name}"), "must be at least 1"));
            }
        }
        let new_domains = u64::from(p.groups) * u64::from(p.domains_per_group);
        if self.f.domains.len() as u64 + new_domains > MAX_DOMAINS {
            return Err(ModelError::invalid(origin, field.to_string(), format!("more than {MAX_DOMAINS} domains")));
        }
        let hall_name = p.hall.clone().unwrap_or_else(|| "hall-1".to_string());
        let hall = match self.f.halls.iter().position(|h| *h == hall_name) {
            Some(h) => HallId(h as u32),
            None => {
                self.f.halls.push(hall_name);
                HallId(self.f.halls.len() as u32 - 1)
            }
        };
        let pool = match self.f.pools.last_mut() {
            Some(last) if last.gpu_type == gpu_type && last.domain_gpus == p.domain_gpus => {
                last.groups += p.groups;
                PoolId(self.f.pools.len() as u32 - 1)
            }
            _ => {
                self.f.pools.push(Pool {
                    gpu_type,
                    domain_gpus: p.domain_gpus,
                    first_group: self.f.groups.len() as u32,
                    groups: p.groups,
                });
                PoolId(self.f.pools.len() as u32 - 1)
            }
        };
        for _ in 0..p.groups {
            let group = GroupId(self.f.groups.len() as u32);
            self.f.groups.push(Group {
                hall,
                pool,
                first_domain: self.f.domains.len() as u32,
                domains: p.domains_per_group,
            });
            for _ in 0..p.domains_per_group {
                self.f.domains.push(Domain { group, pool });
            }
        }
        Ok(())
    }

    fn finish(self) -> Facility {
        self.f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eu_gigafactory_has_about_100k_gpus_in_five_halls() {
        let f = Facility::preset("eu-gigafactory").unwrap();
        let s = f.summary();
        // 4 halls × 35 SUs × 8 racks × 72 = 80,640 GB200; 76 × 32 × 8 = 19,456 B200.
        assert_eq!(s.gpus, 80_640 + 19_456);
        assert_eq!(s.halls, 5);
        assert_eq!(s.groups, 140 + 76);
        assert_eq!(s.domains, 1_120 + 2_432);
        // the four GB200 halls form one pool: a gang may span halls
        assert_eq!(f.pools.len(), 2);
        assert_eq!(f.max_gang(None), 80_640);
        // 1,120 racks × 120 kW + 19,456 × (1,000 + 575) W = 134.4 MW + 30.6432 MW
        assert!((s.nameplate_it_power_mw - 165.0432).abs() < 1e-9, "{}", s.nameplate_it_power_mw);
    }

    #[test]
    fn shorthand_builds_leaf_groups_with_a_remainder() {
        let f = Facility::from_shorthand("90x8:20@A100").unwrap();
        assert_eq!(f.total_gpus(), 720);
        assert_eq!(f.groups.len(), 5);
        assert_eq!(f.groups[4].domains, 10);
        assert_eq!(f.gpu(f.pools[0].gpu_type).name, "A100");
        // the 10-node remainder group joins the same pool: one 720-GPU gang is possible
        assert_eq!(f.pools.len(), 1);
        assert_eq!(f.max_gang(None), 720);
        let e = Facility::from_shorthand("80x0:20").unwrap_err().to_string();
        assert_eq!(e, "80x0:20: shorthand: G '0' is not a positive whole number");
        assert!(Facility::from_shorthand("80x8:20@Z9").unwrap_err().to_string().contains("unknown GPU type 'Z9'"));
    }

    #[test]
    fn toml_facility_with_custom_gpu_and_tenants() {
        let text = r#"
name = "lab"
[[gpu]]
name = "X1"
bf16_tflops = 100.0
memory_gb = 64.0
max_power_w = 300.0
idle_power_w = 30.0
host_overhead_w = 100.0
price_usd = 5000.0
[[pool]]
gpu = "X1"
domain_gpus = 4
domains_per_group = 2
groups = 3
[[pool]]
gpu = "H100"
domain_gpus = 8
domains_per_group = 2
groups = 1
hall = "annex"
[[account]]
path = "research/lab/a"
"#;
        let f = Facility::from_toml(text, "lab.toml").unwrap();
        assert_eq!(f.total_gpus(), 24 + 16);
        assert_eq!(f.halls, vec!["hall-1".to_string(), "annex".to_string()]);
        // 24 × 400 W + 16 × 1,275 W = 9,600 + 20,400
        assert_eq!(f.nameplate_it_power().0, 30_000.0);
        assert_eq!(f.tenants.leaves().count(), 1);
        assert_eq!(f.domain_gpus(DomainId(6)), 8);
        assert_eq!(f.domains[6].group, GroupId(3));
    }

    #[test]
    fn reservations_parse_with_their_window() {
        let base = "name='x'\n[[pool]]\ngpu='H100'\ndomain_gpus=8\ndomains_per_group=4\ngroups=2\n";
        let ok = format!(
            "{base}[[reservation]]\nname='run'\naccount='research/open-llm'\ngpus=32\nstart='8h'\nend='4.75d'\n"
        );
        let f = Facility::from_toml(&ok, "r.toml").unwrap();
        let r = &f.reservations[0];
        assert_eq!((r.gpus, r.start, r.end), (32, crate::SimTime(28_800), crate::SimTime(410_400)));
        assert_eq!(f.tenants.get(r.account).path, "research/open-llm");
        let bad = format!("{base}[[reservation]]\nname='r'\naccount='research'\ngpus=128\nstart='0'\nend='1h'\n");
        let e = Facility::from_toml(&bad, "r.toml").unwrap_err().to_string();
        assert_eq!(e, "r.toml: reservation[0].gpus: 128 is not between 1 and the largest pool (64)");
        let grouped =
            format!("{base}[[reservation]]\nname='g'\naccount='research'\ngpus=16\ngroup=1\nstart='0'\nend='1h'\n");
        assert_eq!(Facility::from_toml(&grouped, "r.toml").unwrap().reservations[0].group, Some(GroupId(1)));
        let bad =
            format!("{base}[[reservation]]\nname='g'\naccount='research'\ngpus=40\ngroup=1\nstart='0'\nend='1h'\n");
        let e = Facility::from_toml(&bad, "r.toml").unwrap_err().to_string();
        assert_eq!(e, "r.toml: reservation[0].gpus: 40 is more than leaf group 1 holds (32)");
        let bad = format!("{base}[[reservation]]\nname='r'\naccount='research'\ngpus=8\nstart='2h'\nend='1h'\n");
        assert!(Facility::from_toml(&bad, "r.toml")
            .unwrap_err()
            .to_string()
            .contains("reservation[0].end: must be after start"));
    }

    #[test]
    fn malformed_facility_files_name_file_and_field() {
        let e = Facility::from_toml("name = 3", "a.toml").unwrap_err().to_string();
        assert!(e.starts_with("a.toml: "), "{e}");
        assert!(e.contains("line 1"), "{e}");
        let e = Facility::from_toml(
            "name='x'\n[[pool]]\ngpu='H100'\ndomain_gpus=8\ndomains_per_group=0\ngroups=1\n",
            "b.toml",
        )
        .unwrap_err()
        .to_string();
        assert_eq!(e, "b.toml: pool[0].domains_per_group: must be at least 1");
        let e = Facility::from_toml(
            "name='x'\n[[pool]]\ngpu='H100'\ndomain_gpus=8\ndomains_per_group=1\ngroups=1\nspeed=3\n",
            "c.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("unknown field `speed`"), "{e}");
    }
}

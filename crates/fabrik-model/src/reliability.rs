//! Published reliability figures shared by the planner and the twin
//! (../shared/reference/reliability.md).

use crate::ModelError;
use serde::{Deserialize, Serialize};

/// 6.50 failures per 1,000 node-days on RSC-1, 16k A100 (Kokolis et al. 2024, arXiv 2410.21680).
pub const FAILURES_PER_1000_NODE_DAYS: f64 = 6.5;

/// Health checks every 5 minutes (Kokolis et al. 2024): a failure is noticed after 150 s on average.
pub const DETECTION_S: f64 = 150.0;

/// Cold restart of a synchronous job versus its size (FT-HSDP paper, arXiv 2602.00277): 16k GPUs
/// ~200 s, 22k ~300 s, 64k ~600 s, 98k ~900 s; piecewise linear, flat below 16k, extrapolated above.
pub fn cold_restart_s(gpus: f64) -> f64 {
    const PTS: [(f64, f64); 4] = [(16_384.0, 200.0), (22_000.0, 300.0), (65_536.0, 600.0), (98_304.0, 900.0)];
    if gpus <= PTS[0].0 {
        return PTS[0].1;
    }
    for w in PTS.windows(2) {
        let ((x0, y0), (x1, y1)) = (w[0], w[1]);
        if gpus <= x1 {
            return y0 + (y1 - y0) * (gpus - x0) / (x1 - x0);
        }
    }
    let ((x0, y0), (x1, y1)) = (PTS[2], PTS[3]);
    y1 + (y1 - y0) * (gpus - x1) / (x1 - x0)
}

/// What kind of part or layer a root cause is. Failures of GPU-side hardware (GPU, HBM, SRAM,
/// PCIe, silent data corruption) and thermal faults may announce themselves in telemetry
/// (rising corrected ECC counts, XID events, temperature drift); the others strike unannounced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CauseClass {
    Gpu,
    Hbm,
    Sram,
    Pcie,
    Sdc,
    Thermal,
    Host,
    Network,
    Switch,
    Storage,
    Power,
    Software,
    Other,
}

impl CauseClass {
    pub fn predictable(self) -> bool {
        matches!(
            self,
            CauseClass::Gpu
                | CauseClass::Hbm
                | CauseClass::Sram
                | CauseClass::Pcie
                | CauseClass::Sdc
                | CauseClass::Thermal
        )
    }
}

/// One root cause: its share of node failures and the typical time it keeps the node out of
/// service.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RootCause {
    pub name: String,
    pub class: CauseClass,
    pub share: f64,
    pub repair_s: f64,
}

/// A mix of root causes (shares summing to 1), named after the study it comes from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RootCauses {
    pub name: String,
    pub source: String,
    pub causes: Vec<RootCause>,
}

/// The named mixes, with what they are.
pub const ROOT_CAUSE_PRESETS: &[(&str, &str)] = &[
    (
        "ft-hsdp",
        "678 interruptions of a 32k-H100 training run (Meta FT-HSDP paper, arXiv 2602.00277, summary); the default",
    ),
    (
        "llama3",
        "419 unexpected interruptions of Llama 3 405B's 54-day pre-training on 16,384 H100 (arXiv 2407.21783, Table 5)",
    ),
];

/// Typical repair times (assumptions, not in the reference): a hardware part replaced, a day;
/// a network link or cable, 4 h; host maintenance, 8 h; a software fault, a reboot of 15 min.
const REPLACE_S: f64 = 86_400.0;
const LINK_S: f64 = 14_400.0;
const MAINTENANCE_S: f64 = 28_800.0;
const REBOOT_S: f64 = 900.0;

/// Weights normalised to shares (kept as given when they already sum to 1).
fn mix(name: &str, causes: &[(&str, CauseClass, f64, f64)]) -> RootCauses {
    let sum: f64 = causes.iter().map(|c| c.2).sum();
    let total = if (sum - 1.0).abs() < 1e-9 { 1.0 } else { sum };
    let source = ROOT_CAUSE_PRESETS.iter().find(|p| p.0 == name).map_or("", |p| p.1).to_string();
    RootCauses {
        name: name.to_string(),
        source,
        causes: causes
            .iter()
            .map(|&(n, class, w, repair_s)| RootCause { name: n.to_string(), class, share: w / total, repair_s })
            .collect(),
    }
}

impl RootCauses {
    /// The FT-HSDP study's mix (shares as published, summing to 1), the default.
    pub fn ft_hsdp() -> RootCauses {
        use CauseClass::*;
        mix(
            "ft-hsdp",
            &[
                ("HBM3 memory", Hbm, 0.229, REPLACE_S),
                ("PCIe device", Pcie, 0.180, REPLACE_S),
                ("NCCL timeout", Network, 0.090, REBOOT_S),
                ("faulty GPU", Gpu, 0.074, REPLACE_S),
                ("software bug", Software, 0.071, REBOOT_S),
                ("host maintenance", Host, 0.062, MAINTENANCE_S),
                ("kernel fault", Software, 0.058, REBOOT_S),
                ("system reboot", Host, 0.056, REBOOT_S),
                ("silent data corruption", Sdc, 0.055, REPLACE_S),
                ("network", Network, 0.053, LINK_S),
                ("other", Other, 0.072, LINK_S),
            ],
        )
    }

    /// Llama 3 405B's mix by the counts of its Table 5 (419 in all; the shares are count / 419).
    pub fn llama3() -> RootCauses {
        use CauseClass::*;
        mix(
            "llama3",
            &[
                ("faulty GPU", Gpu, 148.0, REPLACE_S),
                ("GPU HBM3 memory", Hbm, 72.0, REPLACE_S),
                ("software bug", Software, 54.0, REBOOT_S),
                ("network switch/cable", Switch, 35.0, LINK_S),
                ("host maintenance", Host, 32.0, MAINTENANCE_S),
                ("GPU SRAM memory", Sram, 19.0, REPLACE_S),
                ("GPU system processor", Gpu, 17.0, REPLACE_S),
                ("NIC", Network, 7.0, LINK_S),
                ("NCCL watchdog timeout", Network, 7.0, REBOOT_S),
                ("silent data corruption", Sdc, 6.0, REPLACE_S),
                ("GPU thermal interface and sensor", Thermal, 6.0, REPLACE_S),
                ("SSD", Storage, 3.0, REPLACE_S),
                ("power supply", Power, 3.0, REPLACE_S),
                ("server chassis", Host, 2.0, REPLACE_S),
                ("IO expansion board", Pcie, 2.0, REPLACE_S),
                ("dependency", Software, 2.0, REBOOT_S),
                ("CPU", Host, 2.0, REPLACE_S),
                ("system memory", Host, 2.0, REPLACE_S),
            ],
        )
    }

    pub fn preset(name: &str) -> Option<RootCauses> {
        match name.to_ascii_lowercase().as_str() {
            "ft-hsdp" => Some(RootCauses::ft_hsdp()),
            "llama3" => Some(RootCauses::llama3()),
            _ => None,
        }
    }

    /// A mix from a TOML file: `name`, optional `source`, and `[[cause]]` tables with `name`,
    /// `class` (gpu, hbm, sram, pcie, sdc, thermal, host, network, switch, storage, power,
    /// software, other), `share` (any positive weights: they are normalised) and `repair` (a
    /// duration: `1d`, `4h`, `900`).
    pub fn from_toml(text: &str, origin: &str) -> Result<RootCauses, ModelError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            name: String,
            #[serde(default)]
            source: String,
            cause: Vec<Cause>,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Cause {
            name: String,
            class: CauseClass,
            share: f64,
            repair: String,
        }
        let f: File =
            toml::from_str(text).map_err(|e| ModelError::Toml { origin: origin.into(), message: e.to_string() })?;
        if f.cause.is_empty() || f.cause.len() > 200 {
            return Err(ModelError::invalid(origin, "cause", format!("give 1 to 200 causes, got {}", f.cause.len())));
        }
        let mut causes = Vec::with_capacity(f.cause.len());
        for (k, c) in f.cause.iter().enumerate() {
            let field = |x: &str| format!("cause[{k}].{x}");
            if !(c.share.is_finite() && c.share > 0.0) {
                return Err(ModelError::invalid(origin, field("share"), format!("must be positive, got {}", c.share)));
            }
            let repair =
                crate::units::parse_duration(&c.repair).map_err(|m| ModelError::invalid(origin, field("repair"), m))?;
            if repair == 0 {
                return Err(ModelError::invalid(origin, field("repair"), "must be positive"));
            }
            if f.cause[..k].iter().any(|o| o.name.eq_ignore_ascii_case(&c.name)) {
                return Err(ModelError::invalid(origin, field("name"), format!("'{}' is given twice", c.name)));
            }
            causes.push((c.name.as_str(), c.class, c.share, repair as f64));
        }
        let mut m = mix(&f.name, &causes);
        m.source = if f.source.is_empty() { format!("{origin} (given)") } else { f.source };
        Ok(m)
    }

    /// The index of a cause by name (case-insensitive): else the cause named "other", else the
    /// last.
    pub fn index_of(&self, name: &str) -> usize {
        let by = |n: &str| self.causes.iter().position(|c| c.name.eq_ignore_ascii_case(n));
        by(name).or_else(|| by("other")).unwrap_or(self.causes.len() - 1)
    }

    /// The name of a cause index; the index after the last is a leaf switch.
    pub fn name_of(&self, cause: usize) -> &str {
        self.causes.get(cause).map_or("leaf switch (whole group)", |c| c.name.as_str())
    }
}

/// GPUs per failing unit ("node") of a GPU type: NVL72 systems fail per 4-GPU compute tray,
/// HGX systems per 8-GPU node.
pub fn gpus_per_node(gpu_name: &str) -> u32 {
    let n = gpu_name.to_ascii_uppercase();
    // a TPU v4 or v5p host drives 4 chips (Google Cloud TPU documentation)
    if n.starts_with("GB") || n.starts_with("TPU") {
        4
    } else {
        8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_cause_mixes_sum_to_one_and_read_from_files() {
        for (name, _) in ROOT_CAUSE_PRESETS {
            let m = RootCauses::preset(name).unwrap();
            assert!((m.causes.iter().map(|c| c.share).sum::<f64>() - 1.0).abs() < 1e-12, "{name}");
        }
        // Llama 3: 148 of 419 are faulty GPUs; GPU-side causes predictable
        let l = RootCauses::llama3();
        assert_eq!(l.causes.len(), 18);
        assert!((l.causes[0].share - 148.0 / 419.0).abs() < 1e-15);
        let predictable: f64 = l.causes.iter().filter(|c| c.class.predictable()).map(|c| c.share).sum();
        // 148 + 72 + 19 + 17 + 6 + 6 + 2 (IO board) = 270
        assert!((predictable - 270.0 / 419.0).abs() < 1e-12);
        // FT-HSDP keeps its published shares and order (HBM, PCIe, GPU, SDC predictable)
        let f = RootCauses::ft_hsdp();
        assert_eq!((f.causes[0].name.as_str(), f.causes[0].share), ("HBM3 memory", 0.229));
        let p: Vec<usize> = (0..f.causes.len()).filter(|&k| f.causes[k].class.predictable()).collect();
        assert_eq!(p, vec![0, 1, 3, 8]);
        assert_eq!(
            (f.index_of("hbm3 MEMORY"), f.index_of("gremlins"), f.name_of(11)),
            (0, 10, "leaf switch (whole group)")
        );
        let t = "name = \"site\"\n[[cause]]\nname = \"gpu\"\nclass = \"gpu\"\nshare = 3\nrepair = \"1d\"\n[[cause]]\nname = \"sw\"\nclass = \"software\"\nshare = 1\nrepair = \"15m\"\n";
        let m = RootCauses::from_toml(t, "c.toml").unwrap();
        assert_eq!((m.causes[0].share, m.causes[1].share, m.causes[1].repair_s), (0.75, 0.25, 900.0));
        assert_eq!(m.index_of("other"), 1, "no 'other': the last");
        let bad = t.replace("share = 1", "share = -1");
        assert_eq!(
            RootCauses::from_toml(&bad, "c.toml").unwrap_err().to_string(),
            "c.toml: cause[1].share: must be positive, got -1"
        );
        let bad = t.replace("\"software\"", "\"gremlin\"");
        assert!(RootCauses::from_toml(&bad, "c.toml").unwrap_err().to_string().starts_with("c.toml: "));
        let bad = t.replace("\"sw\"", "\"GPU\"");
        assert!(RootCauses::from_toml(&bad, "c.toml").unwrap_err().to_string().contains("given twice"));
    }

    #[test]
    fn restart_time_grows_with_scale() {
        assert_eq!(cold_restart_s(1024.0), 200.0);
        assert_eq!(cold_restart_s(19_192.0), 250.0);
        assert_eq!(cold_restart_s(98_304.0), 900.0);
    }
}

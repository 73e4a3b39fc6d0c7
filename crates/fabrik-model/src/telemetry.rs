//! GPU telemetry as NVIDIA's dcgm-exporter publishes it (the Prometheus text format, one series
//! per GPU), and how it becomes the health detector's per-node [`Sample`]s. Shared by the live
//! control plane (which reads it from Prometheus) and `fabrik telemetry serve` (which serves
//! synthetic telemetry in the same format).
//!
//! **Series** (dcgm-exporter's field names; labels `gpu`, `UUID`, `device`, `modelName` and
//! `Hostname`, the node's host name, by which a series is mapped to a facility domain — see
//! [`domain_of`]):
//!
//! | series | kind | use |
//! |---|---|---|
//! | `DCGM_FI_DEV_GPU_TEMP` | gauge, °C | temperature signal |
//! | `DCGM_FI_DEV_POWER_USAGE` | gauge, W | shown with the evidence, not a vote |
//! | `DCGM_FI_DEV_XID_ERRORS` | gauge, the last XID code | an error event whenever it changes to a non-zero code |
//! | `DCGM_EXP_XID_ERRORS_COUNT` | counter per `xid` label | error events (preferred over the gauge when present) |
//! | `DCGM_FI_DEV_ECC_SBE_VOL_TOTAL` | counter | corrected errors |
//! | `DCGM_FI_DEV_ECC_DBE_VOL_TOTAL` | counter | error events |
//! | `DCGM_FI_DEV_RETIRED_SBE`, `DCGM_FI_DEV_RETIRED_DBE` | counter, pages | error events |
//! | `DCGM_FI_DEV_ROW_REMAP_FAILURE` | gauge (0/1) | error events (on a rise) |
//! | `DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS` | counter | error events |
//! | `DCGM_FI_DEV_PCIE_REPLAY_COUNTER` | counter | corrected errors |
//! | `DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL`, `…_CRC_DATA_ERROR_COUNT_TOTAL`, `…_REPLAY_ERROR_COUNT_TOTAL` | counter | corrected errors |
//! | `DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL` | counter | error events |
//!
//! **From GPUs to a node's sample** ([`Tracker`]): counters become increments since the previous
//! scrape; a counter lower than before was reset (a driver reload, a reboot) and counts from
//! zero, as Prometheus' `increase()` does; a GPU seen for the first time contributes no
//! increment. Per node: `ecc` = the corrected-error increments of all its GPUs, `xid` = its
//! error events, `temp_dev_c` = the hottest GPU's lead over the node's median GPU less that
//! lead's own slowly learned level (an EWMA with time constant `baseline_tau_s`, learned only
//! while the node is healthy): a single failing GPU runs hotter than its siblings under the
//! same job, while load and the room's temperature move them all.

use crate::health::Sample;
use crate::ids::DomainId;
use crate::units::SimTime;
use crate::Facility;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt::Write;

/// One dcgm-exporter series and what the detector makes of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Series {
    GpuTemp,
    Power,
    XidLast,
    XidCount,
    EccSbe,
    EccDbe,
    RetiredSbe,
    RetiredDbe,
    RowRemapFailure,
    UncorrectableRemappedRows,
    PcieReplay,
    NvlinkCrcFlit,
    NvlinkCrcData,
    NvlinkReplay,
    NvlinkRecovery,
}

/// How a series feeds the detector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Temperature,
    Info,
    /// Corrected or retried errors: the detector's `ecc` signal.
    Corrected,
    /// Uncorrected errors and events: the detector's `xid` signal.
    Event,
}

impl Series {
    pub const ALL: [Series; 15] = [
        Series::GpuTemp,
        Series::Power,
        Series::XidLast,
        Series::XidCount,
        Series::EccSbe,
        Series::EccDbe,
        Series::RetiredSbe,
        Series::RetiredDbe,
        Series::RowRemapFailure,
        Series::UncorrectableRemappedRows,
        Series::PcieReplay,
        Series::NvlinkCrcFlit,
        Series::NvlinkCrcData,
        Series::NvlinkReplay,
        Series::NvlinkRecovery,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Series::GpuTemp => "DCGM_FI_DEV_GPU_TEMP",
            Series::Power => "DCGM_FI_DEV_POWER_USAGE",
            Series::XidLast => "DCGM_FI_DEV_XID_ERRORS",
            Series::XidCount => "DCGM_EXP_XID_ERRORS_COUNT",
            Series::EccSbe => "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL",
            Series::EccDbe => "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
            Series::RetiredSbe => "DCGM_FI_DEV_RETIRED_SBE",
            Series::RetiredDbe => "DCGM_FI_DEV_RETIRED_DBE",
            Series::RowRemapFailure => "DCGM_FI_DEV_ROW_REMAP_FAILURE",
            Series::UncorrectableRemappedRows => "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS",
            Series::PcieReplay => "DCGM_FI_DEV_PCIE_REPLAY_COUNTER",
            Series::NvlinkCrcFlit => "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL",
            Series::NvlinkCrcData => "DCGM_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL",
            Series::NvlinkReplay => "DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL",
            Series::NvlinkRecovery => "DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL",
        }
    }

    pub fn from_name(name: &str) -> Option<Series> {
        Series::ALL.iter().copied().find(|s| s.name() == name)
    }

    /// Whether it only grows (until a reset).
    pub fn is_counter(self) -> bool {
        !matches!(self, Series::GpuTemp | Series::Power | Series::XidLast | Series::RowRemapFailure)
    }

    pub fn role(self) -> Role {
        match self {
            Series::GpuTemp => Role::Temperature,
            Series::Power => Role::Info,
            Series::EccSbe
            | Series::PcieReplay
            | Series::NvlinkCrcFlit
            | Series::NvlinkCrcData
            | Series::NvlinkReplay => Role::Corrected,
            _ => Role::Event,
        }
    }

    pub fn help(self) -> &'static str {
        match self {
            Series::GpuTemp => "GPU temperature (in C).",
            Series::Power => "Power draw (in W).",
            Series::XidLast => "Value of the last XID error encountered.",
            Series::XidCount => "Count of XID errors by code.",
            Series::EccSbe => "Total number of single-bit volatile ECC errors.",
            Series::EccDbe => "Total number of double-bit volatile ECC errors.",
            Series::RetiredSbe => "Total number of retired pages due to single-bit errors.",
            Series::RetiredDbe => "Total number of retired pages due to double-bit errors.",
            Series::RowRemapFailure => "Whether remapping of rows has failed.",
            Series::UncorrectableRemappedRows => "Number of remapped rows for uncorrectable errors.",
            Series::PcieReplay => "Total number of PCIe retries.",
            Series::NvlinkCrcFlit => "Total number of NVLink flow-control CRC errors.",
            Series::NvlinkCrcData => "Total number of NVLink data CRC errors.",
            Series::NvlinkReplay => "Total number of NVLink retries.",
            Series::NvlinkRecovery => "Total number of NVLink recovery errors.",
        }
    }
}

/// The latest values of one GPU's series (absent: not exported or not scraped).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GpuReading {
    pub host: String,
    pub gpu: u32,
    pub values: HashMap<Series, f64>,
}

impl GpuReading {
    pub fn get(&self, s: Series) -> Option<f64> {
        self.values.get(&s).copied()
    }
}

/// The host name telemetry carries for domain `d`: the facility's node name, or `node<d>` when
/// the facility names no nodes (presets, shorthands).
pub fn hostname_of(f: &Facility, d: DomainId) -> String {
    f.node_names.get(d.idx()).cloned().unwrap_or_else(|| format!("node{}", d.0))
}

/// The domain a `Hostname` label names: a node name of the facility, the same name with a DNS
/// domain (`gpu001.cluster.local` is `gpu001`), or `node<d>` on a facility without node names.
pub fn domain_of(f: &Facility, host: &str) -> Option<DomainId> {
    let short = host.split('.').next().unwrap_or(host);
    if let Some(i) = f.node_names.iter().position(|n| n == host || n == short) {
        return Some(DomainId(i as u32));
    }
    if f.node_names.is_empty() {
        let d: u32 = short.strip_prefix("node")?.parse().ok()?;
        return ((d as usize) < f.domains.len()).then_some(DomainId(d));
    }
    None
}

/// Renders readings in the Prometheus text exposition format, as dcgm-exporter does (one
/// `# HELP`/`# TYPE` pair per series, then a line per GPU).
pub fn render(readings: &[GpuReading], model: &str) -> String {
    let mut out = String::new();
    for s in Series::ALL {
        let mut first = true;
        for r in readings {
            let Some(v) = r.get(s) else { continue };
            if first {
                let kind = if s.is_counter() { "counter" } else { "gauge" };
                let _ = writeln!(out, "# HELP {} {}\n# TYPE {} {kind}", s.name(), s.help(), s.name());
                first = false;
            }
            let xid = if s == Series::XidCount { ",xid=\"79\"" } else { "" };
            let _ = writeln!(
                out,
                "{}{{gpu=\"{}\",UUID=\"GPU-{}-{}\",device=\"nvidia{}\",modelName=\"{model}\",Hostname=\"{}\"{xid}}} {v}",
                s.name(),
                r.gpu,
                r.host,
                r.gpu,
                r.gpu,
                r.host
            );
        }
    }
    out
}

/// Turns scrapes into the detector's per-node samples (see the module's notes).
#[derive(Debug, Clone)]
pub struct Tracker {
    /// Time constant of the learned temperature lead, seconds.
    pub baseline_tau_s: f64,
    prev: HashMap<(DomainId, u32), HashMap<Series, f64>>,
    lead: HashMap<DomainId, (f64, SimTime)>,
}

/// One node's telemetry turned into a sample, with the raw figures behind it (the evidence).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeSample {
    pub sample: Sample,
    /// GPUs that reported.
    pub gpus: u32,
    pub max_temp_c: Option<f64>,
    pub power_w: Option<f64>,
    /// Counters seen going backwards (reset) in this scrape.
    pub resets: u32,
}

impl Tracker {
    pub fn new(baseline_tau_s: f64) -> Tracker {
        Tracker { baseline_tau_s, prev: HashMap::new(), lead: HashMap::new() }
    }

    /// The sample of node `d` at `at` from its GPUs' readings; `healthy` says whether the node
    /// was healthy before (only then does the temperature baseline learn).
    pub fn sample(&mut self, d: DomainId, at: SimTime, gpus: &[&GpuReading], healthy: bool) -> NodeSample {
        let (mut ecc, mut xid, mut resets) = (0.0, 0u32, 0u32);
        let mut temps = Vec::new();
        let mut power = None::<f64>;
        for r in gpus {
            let prev = self.prev.entry((d, r.gpu)).or_default();
            let has_count = r.get(Series::XidCount).is_some();
            for (&s, &v) in &r.values {
                if !v.is_finite() {
                    continue;
                }
                let before = prev.insert(s, v);
                match s.role() {
                    Role::Temperature => temps.push(v),
                    Role::Info => *power.get_or_insert(0.0) += v,
                    _ if s == Series::XidLast => {
                        // the gauge holds the last code: a new non-zero code is an event
                        if !has_count && v != 0.0 && before.is_some_and(|b| b != v) {
                            xid += 1;
                        }
                    }
                    _ if s == Series::RowRemapFailure => xid += u32::from(v > 0.0 && before.is_some_and(|b| b <= 0.0)),
                    role => {
                        let inc = match before {
                            None => 0.0,
                            Some(b) if v >= b => v - b,
                            Some(_) => {
                                resets += 1;
                                v
                            }
                        };
                        if role == Role::Corrected {
                            ecc += inc;
                        } else {
                            xid = xid.saturating_add(inc.min(f64::from(u32::MAX)) as u32);
                        }
                    }
                }
            }
        }
        let max_temp = temps.iter().copied().fold(None, |m: Option<f64>, t| Some(m.map_or(t, |m| m.max(t))));
        let temp_dev_c = match max_temp {
            Some(hot) if temps.len() >= 2 => {
                temps.sort_by(f64::total_cmp);
                let n = temps.len();
                let median = if n % 2 == 1 { temps[n / 2] } else { (temps[n / 2 - 1] + temps[n / 2]) / 2.0 };
                let lead = hot - median;
                let (level, _) = *self.lead.entry(d).or_insert((lead, at));
                if healthy {
                    let last = self.lead[&d].1;
                    let dt = at.0.saturating_sub(last.0) as f64;
                    let a = if self.baseline_tau_s > 0.0 { 1.0 - (-dt / self.baseline_tau_s).exp() } else { 1.0 };
                    self.lead.insert(d, (level + a * (lead - level), at));
                }
                lead - level
            }
            _ => 0.0,
        };
        NodeSample {
            sample: Sample { domain: d, at, ecc, xid, temp_dev_c },
            gpus: gpus.len() as u32,
            max_temp_c: max_temp,
            power_w: power,
            resets,
        }
    }

    /// Forgets a node's history (it was repaired: its counters and temperatures start anew).
    pub fn reset(&mut self, d: DomainId) {
        self.prev.retain(|k, _| k.0 != d);
        self.lead.remove(&d);
    }
}

/// The Prometheus HTTP API's answer to an instant query (`GET /api/v1/query`).
#[derive(Debug, Clone, Deserialize)]
pub struct QueryResponse {
    pub status: String,
    #[serde(default)]
    pub data: Option<QueryData>,
    #[serde(default)]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct QueryData {
    #[serde(rename = "resultType")]
    pub result_type: String,
    pub result: Vec<VectorSample>,
}

/// One series of an instant vector: its labels and `[unix time, "value"]`.
#[derive(Debug, Clone, Deserialize)]
pub struct VectorSample {
    pub metric: HashMap<String, String>,
    pub value: (f64, String),
}

/// Readings from an instant vector of dcgm series, grouped by (host label, GPU). Series without
/// the host label or GPU, or with a value that is not a number, are counted and skipped;
/// `DCGM_EXP_XID_ERRORS_COUNT` is summed over its `xid` labels. Returns the readings and the
/// number skipped. (An instant query's value time is the query's, not the sample's: sample
/// age comes from `timestamp(…)`, see `fabrik_server::telemetry`.)
pub fn readings_from(samples: &[VectorSample], host_label: &str) -> (Vec<GpuReading>, usize) {
    let mut by: HashMap<(String, u32), GpuReading> = HashMap::new();
    let mut skipped = 0usize;
    for s in samples {
        let name = s.metric.get("__name__").map(String::as_str).unwrap_or("");
        let (Some(series), Some(host), Some(gpu), Ok(v)) = (
            Series::from_name(name),
            s.metric.get(host_label),
            s.metric.get("gpu").and_then(|g| g.parse::<u32>().ok()),
            s.value.1.parse::<f64>(),
        ) else {
            skipped += 1;
            continue;
        };
        let r = by.entry((host.clone(), gpu)).or_insert_with(|| GpuReading {
            host: host.clone(),
            gpu,
            ..Default::default()
        });
        *r.values.entry(series).or_insert(0.0) += if series == Series::XidCount { v } else { 0.0 };
        if series != Series::XidCount {
            r.values.insert(series, v);
        }
    }
    let mut out: Vec<GpuReading> = by.into_values().collect();
    out.sort_by(|a, b| (&a.host, a.gpu).cmp(&(&b.host, b.gpu)));
    (out, skipped)
}

/// The instant query selecting every series above.
pub fn query() -> String {
    let names: Vec<&str> = Series::ALL.iter().map(|s| s.name()).collect();
    format!("{{__name__=~\"{}\"}}", names.join("|"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu(host: &str, gpu: u32, vals: &[(Series, f64)]) -> GpuReading {
        GpuReading { host: host.into(), gpu, values: vals.iter().copied().collect() }
    }

    #[test]
    fn counters_become_increments_and_a_reset_counts_from_zero() {
        let mut t = Tracker::new(86_400.0);
        let d = DomainId(0);
        let a = gpu("n0", 0, &[(Series::EccSbe, 100.0), (Series::PcieReplay, 7.0), (Series::EccDbe, 1.0)]);
        // first sight: no increment
        let s = t.sample(d, SimTime(0), &[&a], true);
        assert_eq!((s.sample.ecc, s.sample.xid, s.resets), (0.0, 0, 0));
        // +5 SBE, +2 PCIe replays = 7 corrected; +2 DBE = 2 events
        let b = gpu("n0", 0, &[(Series::EccSbe, 105.0), (Series::PcieReplay, 9.0), (Series::EccDbe, 3.0)]);
        let s = t.sample(d, SimTime(15), &[&b], true);
        assert_eq!((s.sample.ecc, s.sample.xid), (7.0, 2));
        // the driver reloaded: SBE 4 (< 105) counts 4 from zero; the others unchanged
        let c = gpu("n0", 0, &[(Series::EccSbe, 4.0), (Series::PcieReplay, 9.0), (Series::EccDbe, 3.0)]);
        let s = t.sample(d, SimTime(30), &[&c], true);
        assert_eq!((s.sample.ecc, s.sample.xid, s.resets), (4.0, 0, 1));
    }

    #[test]
    fn xid_gauge_changes_count_unless_the_counter_is_there() {
        let mut t = Tracker::new(86_400.0);
        let d = DomainId(0);
        let seq = [0.0, 0.0, 79.0, 79.0, 48.0, 0.0, 79.0];
        // events: 0→79, 79→48, 0→79 (the gauge going back to 0 is no event) = 3
        let total: u32 = seq
            .iter()
            .enumerate()
            .map(|(i, &x)| t.sample(d, SimTime(i as u64), &[&gpu("n", 0, &[(Series::XidLast, x)])], true).sample.xid)
            .sum();
        assert_eq!(total, 3);
        // with the counter present, the counter's increments count and the gauge does not
        let mut t = Tracker::new(86_400.0);
        t.sample(d, SimTime(0), &[&gpu("n", 0, &[(Series::XidLast, 0.0), (Series::XidCount, 2.0)])], true);
        let s = t.sample(d, SimTime(1), &[&gpu("n", 0, &[(Series::XidLast, 79.0), (Series::XidCount, 5.0)])], true);
        assert_eq!(s.sample.xid, 3);
    }

    #[test]
    fn temperature_is_the_hottest_gpus_lead_over_its_siblings_less_its_usual_lead() {
        let mut t = Tracker::new(0.0); // τ = 0: the level is the last healthy lead
        let d = DomainId(3);
        let temps = |v: &[f64]| -> Vec<GpuReading> {
            v.iter().enumerate().map(|(i, &c)| gpu("n", i as u32, &[(Series::GpuTemp, c)])).collect()
        };
        // 4 GPUs at 60, 61, 62, 65: median 61.5, lead 3.5; first sample sets the level: dev 0
        let r = temps(&[60.0, 61.0, 62.0, 65.0]);
        let s = t.sample(d, SimTime(0), &r.iter().collect::<Vec<_>>(), true);
        assert_eq!((s.sample.temp_dev_c, s.max_temp_c), (0.0, Some(65.0)));
        // the whole node warms by 10 (load): the lead is unchanged, dev 0
        let r = temps(&[70.0, 71.0, 72.0, 75.0]);
        assert_eq!(t.sample(d, SimTime(15), &r.iter().collect::<Vec<_>>(), true).sample.temp_dev_c, 0.0);
        // one GPU runs 6 hotter than usual: lead 9.5 − level 3.5 = 6; while the node is
        // suspect the level does not learn it: the next identical sample says 6 again
        let r: Vec<GpuReading> = temps(&[70.0, 71.0, 72.0, 81.0]);
        let r: Vec<&GpuReading> = r.iter().collect();
        assert_eq!(t.sample(d, SimTime(30), &r, false).sample.temp_dev_c, 6.0);
        assert_eq!(t.sample(d, SimTime(45), &r, false).sample.temp_dev_c, 6.0);
        // healthy, it learns (τ = 0: at once): 6 this time, 0 after
        assert_eq!(t.sample(d, SimTime(60), &r, true).sample.temp_dev_c, 6.0);
        assert_eq!(t.sample(d, SimTime(75), &r, true).sample.temp_dev_c, 0.0);
    }

    #[test]
    fn prometheus_answers_become_readings_and_hosts_map_to_domains() {
        let body = r#"{"status":"success","data":{"resultType":"vector","result":[
          {"metric":{"__name__":"DCGM_FI_DEV_GPU_TEMP","Hostname":"node1","gpu":"0","instance":"x:9400"},"value":[1700000000.5,"61"]},
          {"metric":{"__name__":"DCGM_FI_DEV_ECC_SBE_VOL_TOTAL","Hostname":"node1","gpu":"0"},"value":[1700000000.5,"12"]},
          {"metric":{"__name__":"DCGM_EXP_XID_ERRORS_COUNT","Hostname":"node1","gpu":"0","xid":"79"},"value":[1700000000.5,"2"]},
          {"metric":{"__name__":"DCGM_EXP_XID_ERRORS_COUNT","Hostname":"node1","gpu":"0","xid":"48"},"value":[1700000000.5,"1"]},
          {"metric":{"__name__":"DCGM_FI_DEV_GPU_TEMP","gpu":"1"},"value":[1700000000.5,"60"]},
          {"metric":{"__name__":"DCGM_FI_DEV_GPU_TEMP","Hostname":"node1","gpu":"1"},"value":[1699999990,"NaN"]}
        ]}}"#;
        let q: QueryResponse = serde_json::from_str(body).unwrap();
        let (r, skipped) = readings_from(&q.data.unwrap().result, "Hostname");
        // the series without a host is skipped; NaN parses as a number (the tracker drops it)
        assert_eq!((r.len(), skipped), (2, 1));
        assert_eq!(
            (r[0].get(Series::GpuTemp), r[0].get(Series::EccSbe), r[0].get(Series::XidCount)),
            (Some(61.0), Some(12.0), Some(3.0))
        );
        let f = Facility::preset("tiny").unwrap();
        assert_eq!(domain_of(&f, "node1"), Some(DomainId(1)));
        assert_eq!(domain_of(&f, "node1.cluster.local"), Some(DomainId(1)));
        assert_eq!(domain_of(&f, "node99999"), None);
        assert_eq!(domain_of(&f, "gpu1"), None);
        assert_eq!(hostname_of(&f, DomainId(2)), "node2");
    }

    #[test]
    fn rendered_text_has_one_type_line_per_series_and_dcgm_labels() {
        let r =
            [gpu("n7", 0, &[(Series::GpuTemp, 60.0), (Series::EccSbe, 3.0)]), gpu("n7", 1, &[(Series::GpuTemp, 61.0)])];
        let text = render(&r, "NVIDIA H100 80GB HBM3");
        assert_eq!(text.matches("# TYPE DCGM_FI_DEV_GPU_TEMP gauge").count(), 1);
        assert!(text.contains("# TYPE DCGM_FI_DEV_ECC_SBE_VOL_TOTAL counter"));
        assert!(text.contains(
            "DCGM_FI_DEV_GPU_TEMP{gpu=\"1\",UUID=\"GPU-n7-1\",device=\"nvidia1\",modelName=\"NVIDIA H100 80GB HBM3\",Hostname=\"n7\"} 61\n"
        ));
        assert_eq!(text.lines().filter(|l| !l.starts_with('#')).count(), 3);
    }
}

//! Documented inputs: grid zones, MFU defaults, power and cost factors. Every figure names its
//! source (../shared/reference/) or says that it is an assumption.

use crate::PlanError;
use serde::Serialize;

/// One input the result depends on, printed beside it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Assumption {
    pub name: String,
    pub value: String,
    pub source: String,
}

pub fn assumption(name: &str, value: impl Into<String>, source: &str) -> Assumption {
    Assumption { name: name.to_string(), value: value.into(), source: source.to_string() }
}

pub use fabrik_model::grid::{Zone, ZONES};

pub fn zone(code: &str) -> Result<&'static Zone, PlanError> {
    ZONES.iter().find(|z| z.code.eq_ignore_ascii_case(code)).ok_or_else(|| {
        PlanError::Invalid(format!(
            "zone: unknown grid zone '{code}' (known: {})",
            ZONES.iter().map(|z| z.code).collect::<Vec<_>>().join(", ")
        ))
    })
}

/// Default model FLOPs utilisation for a GPU type at a scale, with its source.
///
/// H100/H200: Llama 3 405B reached 43% on 8,192 H100 and 41% on 16,384 (arXiv 2407.21783,
/// Table 4). Other types scale the H100 figure by their measured achievable share of BF16 peak
/// relative to H100's 80% (MLE: A100 87%, B200 78%, GB200 73%, MI300X 51%); types without a
/// measurement use their closest sibling.
pub fn default_mfu(gpu: &str, gpus: f64) -> (f64, String) {
    let h100 = if gpus > 8192.0 { 0.41 } else { 0.43 };
    let base = "Llama 3 405B on H100: 43% up to 8,192 GPUs, 41% at 16,384 (arXiv 2407.21783, Table 4)";
    let (share, what) = match gpu.to_ascii_uppercase().as_str() {
        "H100" | "H200" => (0.80, "as measured"),
        "A100" => (0.87, "x 87/80 achievable-matmul ratio (MLE)"),
        "B200" | "B300" => (0.78, "x 78/80 achievable-matmul ratio of B200 (MLE)"),
        "GB200" | "GB300" => (0.73, "x 73/80 achievable-matmul ratio of GB200 (MLE)"),
        "MI300X" | "MI325X" => (0.51, "x 51/80 achievable-matmul ratio of MI300X (MLE)"),
        _ => (0.80, "assumption: same as H100"),
    };
    (h100 * share / 0.80, format!("{base}, {what}"))
}

/// Average IT power while training as a share of the node's rated power: measured H100 nodes drew
/// ~76% of their 10.2 kW rating (Newkirk et al. 2025, arXiv 2506.14551).
pub const TRAINING_POWER_FRACTION: f64 = fabrik_model::gpu::TRAINING_POWER_FRACTION;
pub const TRAINING_POWER_SRC: &str = "Newkirk et al. 2025 (arXiv 2506.14551): H100 nodes ~76% of rating in training";

/// PUE default for a new European build: Cottier et al. 2024 use 1.25 outside hyperscalers; new
/// builds reach ≤ 1.3 (Uptime Institute).
pub const DEFAULT_PUE: f64 = 1.25;
pub const PUE_SRC: &str = "Cottier et al. 2024 (Epoch) cost-model default for non-hyperscalers";

/// Server cost ≈ 1.64 × accelerator cost; interconnect ≈ 19.5% of cluster hardware (Cottier et
/// al. 2024, Epoch).
pub const SERVER_FACTOR: f64 = 1.64;
pub const INTERCONNECT_SHARE: f64 = 0.195;
pub const COST_SRC: &str = "Cottier et al. 2024 (Epoch): server = 1.64 x accelerator; interconnect 19-20% of hardware";
pub const DEPRECIATION_YEARS: f64 = 4.0;
pub const DEPRECIATION_SRC: &str = "Cottier et al. 2024 / common practice: 4-year hardware depreciation";

/// Assumptions with no figure in the reference, overridable on the command line.
pub const USD_TO_EUR: f64 = 0.92;
pub const USD_TO_EUR_SRC: &str = "assumption: exchange rate 0.92 EUR per USD";
pub const BUILDING_EUR_PER_MW: f64 = 10.0e6;
pub const BUILDING_SRC: &str = "assumption: building, cooling and power distribution EUR 10 M per MW of facility power";
pub const BUILDING_YEARS: f64 = 15.0;
pub const BUILDING_YEARS_SRC: &str = "assumption: building and power amortised over 15 years";

/// Parses `405e9`, `405B`, `15T`, `1.5M`, `20bn`.
pub fn parse_quantity(s: &str, field: &str) -> Result<f64, PlanError> {
    let t = s.trim().replace('_', "");
    let lower = t.to_ascii_lowercase();
    let (num, mult) = if let Some(n) = lower.strip_suffix("bn") {
        (n.to_string(), 1e9)
    } else {
        match lower.chars().last() {
            Some('k') => (lower[..lower.len() - 1].to_string(), 1e3),
            Some('m') => (lower[..lower.len() - 1].to_string(), 1e6),
            Some('b') | Some('g') => (lower[..lower.len() - 1].to_string(), 1e9),
            Some('t') => (lower[..lower.len() - 1].to_string(), 1e12),
            _ => (lower.clone(), 1.0),
        }
    };
    let x: f64 = num
        .parse()
        .map_err(|_| PlanError::Invalid(format!("{field}: '{s}' is not a number (e.g. 405e9, 405B, 15T)")))?;
    if !x.is_finite() {
        return Err(PlanError::Invalid(format!("{field}: '{s}' is not finite")));
    }
    Ok(x * mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_take_suffixes() {
        assert_eq!(parse_quantity("405B", "p").unwrap(), 405e9);
        assert_eq!(parse_quantity("15T", "t").unwrap(), 15e12);
        assert_eq!(parse_quantity("20bn", "b").unwrap(), 20e9);
        assert_eq!(parse_quantity("1.5e3", "x").unwrap(), 1500.0);
        assert_eq!(
            parse_quantity("x", "params").unwrap_err().to_string(),
            "params: 'x' is not a number (e.g. 405e9, 405B, 15T)"
        );
    }

    #[test]
    fn mfu_defaults_follow_llama3_and_scale_by_achievable_matmul() {
        assert_eq!(default_mfu("H100", 16_384.0).0, 0.41);
        assert_eq!(default_mfu("h100", 1024.0).0, 0.43);
        assert!((default_mfu("MI300X", 1024.0).0 - 0.43 * 51.0 / 80.0).abs() < 1e-12);
        assert!(zone("xx").unwrap_err().to_string().contains("unknown grid zone 'xx'"));
        assert_eq!(zone("de").unwrap().gco2_per_kwh, 384.0);
    }
}

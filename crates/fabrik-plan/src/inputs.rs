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

/// Numeric precision of the training matmuls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    Bf16,
    Fp8,
}

/// Published MFU anchors on H100 in BF16, by active parameters: a 1B Llama on 8 H100 reached
/// 216 model TFLOP/s per GPU in its best parallel layout, 22% (Hugging Face nanotron
/// bench_cluster, llama-1B, 8 GPUs, dp-2 pp-4); Llama 3 405B reached 43% on 8,192 H100 (arXiv
/// 2407.21783, Table 4). Small models sit far below large ones: their matmuls are too small to
/// fill the GPU and communication weighs more.
const MFU_1B: f64 = 0.22;
const MFU_405B: f64 = 0.43;
/// Llama 3 405B: 43% on 8,192 H100, 41% on 16,384 (Table 4).
const MFU_AT_16K_FACTOR: f64 = 0.41 / 0.43;
/// FP8 matmuls: end-to-end training throughput over BF16, from published measurements:
/// TorchTitan/torchao report +25% for Llama 3 8B on H100 (arXiv 2410.06511); PyTorch reports
/// +30% for Llama 4 Scout with MXFP8 on GB200. We take +25%.
pub const FP8_SPEEDUP: f64 = 1.25;

/// Default model FLOPs utilisation of a run: `active_params` per token on `gpus` GPUs of type
/// `gpu` in `precision`, with its source.
///
/// - Size: log-linear in active parameters between the two H100 anchors (1B: 22%, 405B: 43%),
///   held at the anchor outside them (no measurement there).
/// - Scale: up to 8,192 GPUs as measured; from 8,192 to 16,384 log-linear to Llama 3's 41/43;
///   held there beyond (no published larger run).
/// - GPU type: the H100 figure scaled by the type's measured achievable share of BF16 peak
///   relative to H100's 80% (MLE: A100 87%, B200 78%, GB200 73%, MI300X 51%); types without a
///   measurement use their closest sibling (H800 as H100, A100-40 and V100 as A100, TPUs as H100:
///   an assumption).
/// - FP8: MFU is against the FP8 peak, so it is the BF16 figure × `FP8_SPEEDUP` × BF16/FP8 peak.
pub fn default_mfu(gpu: &fabrik_model::GpuType, active_params: f64, gpus: f64, precision: Precision) -> (f64, String) {
    let x = ((active_params / 1e9).log10() / 405f64.log10()).clamp(0.0, 1.0);
    let size = MFU_1B + (MFU_405B - MFU_1B) * x;
    let scale = MFU_AT_16K_FACTOR.powf((gpus / 8192.0).log2().clamp(0.0, 1.0));
    let (share, what) = match gpu.name.to_ascii_uppercase().as_str() {
        "H100" | "H200" | "H800" => (0.80, "H100 as measured"),
        "A100" | "A100-40" | "V100" => (0.87, "x 87/80 achievable-matmul ratio of A100 (MLE)"),
        "B200" | "B300" => (0.78, "x 78/80 achievable-matmul ratio of B200 (MLE)"),
        "GB200" | "GB300" => (0.73, "x 73/80 achievable-matmul ratio of GB200 (MLE)"),
        "MI300X" | "MI325X" => (0.51, "x 51/80 achievable-matmul ratio of MI300X (MLE)"),
        _ => (0.80, "assumption: same as H100"),
    };
    let mut mfu = size * scale * share / 0.80;
    let mut src = format!(
        "H100 BF16 {:.1}% at {:.3e} active parameters (log-linear between nanotron 1B 22% and Llama 3 405B 43%), x {scale:.3} for {gpus} GPUs (Llama 3: 41% at 16,384), {what}",
        size * 100.0,
        active_params
    );
    if precision == Precision::Fp8 {
        if let Some(fp8) = gpu.fp8_tflops {
            mfu *= FP8_SPEEDUP * gpu.bf16_tflops / fp8;
            src.push_str(&format!(
                "; FP8: {FP8_SPEEDUP}x BF16 throughput (TorchTitan, arXiv 2410.06511) against the FP8 peak"
            ));
        }
    }
    (mfu, src)
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
    fn mfu_defaults_follow_size_scale_type_and_precision() {
        let cat = fabrik_model::gpu::builtin_catalog();
        let g = |n: &str| fabrik_model::gpu::find(&cat, n).unwrap().clone();
        let bf = Precision::Bf16;
        // Llama 3 405B's own points: 43% at 8,192 H100, 41% at 16,384 and beyond
        assert!((default_mfu(&g("H100"), 405e9, 8192.0, bf).0 - 0.43).abs() < 1e-12);
        assert!((default_mfu(&g("h100"), 405e9, 16_384.0, bf).0 - 0.41).abs() < 1e-12);
        assert!((default_mfu(&g("H100"), 405e9, 100_000.0, bf).0 - 0.41).abs() < 1e-12);
        // half-way in log2 between them: 0.43 · (41/43)^0.5 = sqrt(0.43 · 0.41) = 0.419881
        assert!((default_mfu(&g("H100"), 405e9, 8192.0 * 2f64.sqrt(), bf).0 - (0.43f64 * 0.41).sqrt()).abs() < 1e-12);
        // size: 1B and below 22%; 1e9 · 405^0.5 = 20.12B is half-way: 32.5%
        assert!((default_mfu(&g("H100"), 1e9, 8.0, bf).0 - 0.22).abs() < 1e-12);
        assert!((default_mfu(&g("H100"), 1e8, 8.0, bf).0 - 0.22).abs() < 1e-12);
        assert!((default_mfu(&g("H100"), 1e9 * 405f64.sqrt(), 1024.0, bf).0 - 0.325).abs() < 1e-12);
        // type: MI300X at 405B on 1,024: 0.43 · 51/80
        assert!((default_mfu(&g("MI300X"), 405e9, 1024.0, bf).0 - 0.43 * 51.0 / 80.0).abs() < 1e-12);
        // FP8 on H100: 0.43 · 1.25 · 989/1979 = 0.268627 of the FP8 peak, i.e. 1.25x the BF16 FLOP/s
        let (m8, src) = default_mfu(&g("H100"), 405e9, 8192.0, Precision::Fp8);
        assert!((m8 - 0.43 * 1.25 * 989.0 / 1979.0).abs() < 1e-12);
        assert!((m8 * 1979.0 - 1.25 * 0.43 * 989.0).abs() < 1e-9 && src.contains("FP8"));
        assert!(zone("xx").unwrap_err().to_string().contains("unknown grid zone 'xx'"));
        assert_eq!(zone("de").unwrap().gco2_per_kwh, 384.0);
    }
}

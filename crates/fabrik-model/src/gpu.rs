//! The GPU catalog: what one accelerator computes, holds, draws and costs.

use serde::{Deserialize, Serialize};

/// One accelerator type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuType {
    pub name: String,
    /// Dense 16-bit tensor peak, TFLOP/s: BF16, or FP16 on chips without BF16 (V100).
    pub bf16_tflops: f64,
    /// Dense FP8 tensor peak, TFLOP/s; absent on chips without FP8 (V100, A100, TPU v4/v5p).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fp8_tflops: Option<f64>,
    pub memory_gb: f64,
    /// Board power limit (TDP), W.
    pub max_power_w: f64,
    /// Power of an idle, allocated-but-unused GPU, W.
    pub idle_power_w: f64,
    /// Non-GPU IT power of the host or rack (CPUs, memory, NICs, fans, switches in the rack),
    /// per GPU, W.
    pub host_overhead_w: f64,
    /// Purchase price of one accelerator, USD.
    pub price_usd: f64,
}

/// Idle power is not tabulated in the reference; we assume 10% of board power, in line with the
/// ~100 W H100s draw while checkpointing (Morrison et al. 2025, arXiv 2503.05804, Fig. 2), which
/// is a light load rather than idle. Assumption, not a publication.
const IDLE_FRACTION: f64 = 0.10;

/// Non-GPU power of an 8-GPU HGX H100 node: 10.2 kW node rating (Newkirk et al. 2025,
/// arXiv 2506.14551) minus 8 × 700 W GPUs = 4.6 kW, i.e. 575 W per GPU. Used for all 8-GPU
/// HGX-style hosts.
const HGX_OVERHEAD_PER_GPU_W: f64 = (10_200.0 - 8.0 * 700.0) / 8.0;
/// GB200 NVL72 rack ~120 kW (SemiAnalysis, via ../shared/reference) minus 72 × 1,200 W GPUs
/// = 33.6 kW per rack, i.e. ~467 W per GPU.
const GB200_OVERHEAD_PER_GPU_W: f64 = (120_000.0 - 72.0 * 1_200.0) / 72.0;
/// GB300 NVL72 planning budget: 18 nodes × (1 kW CPU + 0.9 kW static) = 34.2 kW per rack
/// (NVIDIA Mission Control power FAQ, via MLE), i.e. 475 W per GPU.
const GB300_OVERHEAD_PER_GPU_W: f64 = 18.0 * (1_000.0 + 900.0) / 72.0;

/// V100: NVIDIA DGX-1 (8 × V100 SXM2, 300 W each) is rated 3,500 W (NVIDIA DGX-1 data sheet):
/// (3,500 − 8 × 300) / 8 = 137.5 W of host per GPU.
const DGX1_OVERHEAD_PER_GPU_W: f64 = (3_500.0 - 8.0 * 300.0) / 8.0;
/// TPU hosts: Google publishes no host power. Assumption: the HGX share of host to GPU power
/// (575 W per 700 W), applied to the chip's power.
const TPU_HOST_SHARE: f64 = HGX_OVERHEAD_PER_GPU_W / 700.0;

#[allow(clippy::too_many_arguments)]
fn entry(name: &str, tflops: f64, fp8: Option<f64>, mem: f64, max_w: f64, overhead: f64, price: f64) -> GpuType {
    GpuType {
        name: name.to_string(),
        bf16_tflops: tflops,
        fp8_tflops: fp8,
        memory_gb: mem,
        max_power_w: max_w,
        idle_power_w: max_w * IDLE_FRACTION,
        host_overhead_w: overhead,
        price_usd: price,
    }
}

/// The built-in catalog. Dense BF16/FP8 TFLOP/s, HBM and max power: stas00/ml-engineering,
/// compute/accelerator/README.md ("MLE"), which cites vendor specifications. Prices: Hugging Face
/// hardware pages (H100 $30k, H200 $32k, B300 $45k, MI300X $15k); B200 ~$40k is a street-price
/// estimate of low confidence. Where the reference gives no price (A100, GB200, GB300, MI325X)
/// we use the nearest listed sibling's price and say so here: A100 $15k (assumed), GB200 as B200
/// $40k, GB300 as B300 $45k, MI325X as MI300X $15k. All from ../shared/reference/hardware-and-energy.md.
///
/// Chips of published runs the reference does not list:
/// - V100 SXM2 32 GB: 125 FP16 tensor TFLOP/s (NVIDIA, "Programming Tensor Cores in CUDA 9"),
///   no BF16 or FP8, 300 W (NVIDIA Tesla V100 announcement); price assumed $10k.
/// - A100 SXM 40 GB: the 80 GB part's compute and power with 40 GB (MLE lists the 80 GB part;
///   NVIDIA's A100 data sheet gives both); price as A100.
/// - H800 SXM: the H100's die and compute (989 BF16 / 1,979 FP8, 80 GB, 700 W) with NVLink cut
///   to 400 GB/s for export (NVIDIA; DeepSeek-V3 was trained on it); price as H100 (assumed).
/// - TPU v4: 275 BF16 TFLOP/s, 32 GB HBM2, 192 W maximum (Google Cloud TPU v4 documentation).
/// - TPU v5p: 459 BF16 TFLOP/s, 95 GB HBM2e (Google Cloud TPU v5p documentation); Google gives
///   no power: 450 W is an assumption (v4's 192 W scaled by its 1.7x peak, rounded up).
///   TPUs are not sold: prices as A100 (v4) and H100 (v5p), assumptions for a cost of the same
///   generation.
pub fn builtin_catalog() -> Vec<GpuType> {
    let h = HGX_OVERHEAD_PER_GPU_W;
    vec![
        entry("A100", 312.0, None, 80.0, 400.0, h, 15_000.0),
        entry("H100", 989.0, Some(1_979.0), 80.0, 700.0, h, 30_000.0),
        entry("H200", 989.0, Some(1_979.0), 141.0, 700.0, h, 32_000.0),
        entry("B200", 2_250.0, Some(4_500.0), 180.0, 1_000.0, h, 40_000.0),
        entry("GB200", 2_500.0, Some(5_000.0), 186.0, 1_200.0, GB200_OVERHEAD_PER_GPU_W, 40_000.0),
        entry("B300", 2_250.0, Some(4_500.0), 288.0, 1_000.0, h, 45_000.0),
        entry("GB300", 2_500.0, Some(5_000.0), 288.0, 1_400.0, GB300_OVERHEAD_PER_GPU_W, 45_000.0),
        entry("MI300X", 1_307.0, Some(2_610.0), 192.0, 750.0, h, 15_000.0),
        entry("MI325X", 1_300.0, Some(2_610.0), 256.0, 1_000.0, h, 15_000.0),
        entry("V100", 125.0, None, 32.0, 300.0, DGX1_OVERHEAD_PER_GPU_W, 10_000.0),
        entry("A100-40", 312.0, None, 40.0, 400.0, h, 15_000.0),
        entry("H800", 989.0, Some(1_979.0), 80.0, 700.0, h, 30_000.0),
        entry("TPUv4", 275.0, None, 32.0, 192.0, 192.0 * TPU_HOST_SHARE, 15_000.0),
        entry("TPUv5p", 459.0, None, 95.0, 450.0, 450.0 * TPU_HOST_SHARE, 30_000.0),
    ]
}

/// Average IT power while training as a share of the GPU-plus-host rating: measured H100 nodes
/// drew ~76% of their 10.2 kW rating in training (Newkirk et al. 2025, arXiv 2506.14551).
pub const TRAINING_POWER_FRACTION: f64 = 0.76;

impl GpuType {
    /// GPU board power plus its share of host overhead, W.
    pub fn rating_w(&self) -> f64 {
        self.max_power_w + self.host_overhead_w
    }
    /// Average IT power of one GPU with its host share, W, when busy a fraction `busy` of the
    /// time: busy draws 76% of rating; idle draws the idle GPU power plus half the host overhead
    /// (an assumption: hosts idle lower but not to zero).
    pub fn average_it_power_w(&self, busy: f64) -> f64 {
        let idle = self.idle_power_w + 0.5 * self.host_overhead_w;
        busy * TRAINING_POWER_FRACTION * self.rating_w() + (1.0 - busy) * idle
    }
}

/// Looks a type up by name, case-insensitively.
pub fn find<'a>(catalog: &'a [GpuType], name: &str) -> Option<&'a GpuType> {
    catalog.iter().find(|g| g.name.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hgx_h100_node_adds_up_to_its_10_2_kw_rating() {
        let h100 = find(&builtin_catalog(), "h100").unwrap().clone();
        let node_w = 8.0 * (h100.max_power_w + h100.host_overhead_w);
        assert!((node_w - 10_200.0).abs() < 1e-9);
        assert_eq!(h100.idle_power_w, 70.0);
        // half busy: 0.5 · 0.76 · 1,275 + 0.5 · (70 + 287.5) = 663.25 W
        assert!((h100.average_it_power_w(0.5) - 663.25).abs() < 1e-9);
    }

    #[test]
    fn chips_of_published_runs_are_in_the_catalog() {
        let cat = builtin_catalog();
        // DGX-1: 8 × (300 + 137.5) = 3,500 W
        let v100 = find(&cat, "v100").unwrap();
        assert_eq!((v100.bf16_tflops, v100.fp8_tflops, 8.0 * v100.rating_w()), (125.0, None, 3_500.0));
        let h800 = find(&cat, "H800").unwrap();
        let h100 = find(&cat, "H100").unwrap();
        assert_eq!((h800.bf16_tflops, h800.fp8_tflops, h800.rating_w()), (989.0, Some(1_979.0), h100.rating_w()));
        assert_eq!(find(&cat, "a100-40").unwrap().memory_gb, 40.0);
        // TPU v4: 192 W chip plus 192 · 575/700 = 157.71 W of host
        let v4 = find(&cat, "tpuv4").unwrap();
        assert!((v4.rating_w() - (192.0 + 192.0 * 575.0 / 700.0)).abs() < 1e-9);
        assert_eq!((find(&cat, "TPUv5p").unwrap().bf16_tflops, find(&cat, "TPUv5p").unwrap().memory_gb), (459.0, 95.0));
    }

    #[test]
    fn gb200_nvl72_rack_adds_up_to_120_kw() {
        let gb = find(&builtin_catalog(), "GB200").unwrap().clone();
        let rack_w = 72.0 * (gb.max_power_w + gb.host_overhead_w);
        assert!((rack_w - 120_000.0).abs() < 1e-6);
    }

    #[test]
    fn gb300_rack_matches_the_135_kw_planning_budget() {
        // 18 × (4 × 1.4 kW + 1 kW + 0.9 kW) = 135 kW
        let gb = find(&builtin_catalog(), "GB300").unwrap().clone();
        let rack_w = 72.0 * (gb.max_power_w + gb.host_overhead_w);
        assert!((rack_w - 135_000.0).abs() < 1e-6);
    }
}

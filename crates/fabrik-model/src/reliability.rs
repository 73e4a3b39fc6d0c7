//! Published reliability figures shared by the planner and the twin
//! (../shared/reference/reliability.md).

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

/// Root causes of 678 interruptions of a 32k-H100 training run (FT-HSDP paper, summary), with the
/// time a node is out of service for each — an assumption, not in the reference: hardware
/// replacements (HBM, PCIe, GPU, SDC) a day, network links 4 h, host maintenance 8 h, software
/// faults a reboot of 15 min.
pub const ROOT_CAUSES: &[(&str, f64, f64)] = &[
    ("HBM3 memory", 0.229, 86_400.0),
    ("PCIe device", 0.180, 86_400.0),
    ("NCCL timeout", 0.090, 900.0),
    ("faulty GPU", 0.074, 86_400.0),
    ("software bug", 0.071, 900.0),
    ("host maintenance", 0.062, 28_800.0),
    ("kernel fault", 0.058, 900.0),
    ("system reboot", 0.056, 900.0),
    ("silent data corruption", 0.055, 86_400.0),
    ("network", 0.053, 14_400.0),
    ("other", 0.072, 14_400.0),
];

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
    fn restart_time_grows_with_scale() {
        assert_eq!(cold_restart_s(1024.0), 200.0);
        assert_eq!(cold_restart_s(19_192.0), 250.0);
        assert_eq!(cold_restart_s(98_304.0), 900.0);
        let shares: f64 = ROOT_CAUSES.iter().map(|c| c.1).sum();
        assert!((shares - 1.0).abs() < 1e-9, "{shares}");
    }
}

//! `plan train`: what one training run costs in time, GPU-hours, energy, CO2 and money.
//!
//! The chain (Patterson et al. 2021; ../shared/reference/hardware-and-energy.md):
//! FLOPs = 6·N·D (N = active parameters); wall time = FLOPs / (GPUs · peak · MFU) / ETTR;
//! kWh = hours · GPUs · average W · PUE / 1000; tCO2e = kWh · kgCO2e/kWh / 1000.

use crate::checkpoint::{self, CheckpointInputs};
use crate::inputs::{self, assumption, Assumption};
use crate::PlanError;
use fabrik_model::GpuType;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrainInputs {
    /// Total parameters.
    pub params: f64,
    /// Active parameters per token (mixture-of-experts); `params` when dense.
    pub active_params: Option<f64>,
    pub tokens: f64,
    pub gpu: GpuType,
    /// GPU count, or `None` to solve for `target_days`.
    pub gpus: Option<f64>,
    pub target_days: Option<f64>,
    pub mfu: Option<f64>,
    pub ettr: Option<f64>,
    pub pue: f64,
    /// Zone code (or "custom") and its carbon intensity and price.
    pub zone: String,
    pub gco2_per_kwh: f64,
    pub price_eur_per_mwh: f64,
    /// Rented GPUs: € per GPU-hour (energy included). Owned hardware when `None`.
    pub gpu_hour_price_eur: Option<f64>,
    pub depreciation_years: f64,
    /// Average IT power per GPU while training, W; by default 76% of GPU plus host rating.
    pub avg_power_w: Option<f64>,
}

impl TrainInputs {
    pub fn new(params: f64, tokens: f64, gpu: GpuType, gpus: f64, zone: &inputs::Zone) -> TrainInputs {
        TrainInputs {
            params,
            active_params: None,
            tokens,
            gpu,
            gpus: Some(gpus),
            target_days: None,
            mfu: None,
            ettr: None,
            pue: inputs::DEFAULT_PUE,
            zone: zone.code.to_string(),
            gco2_per_kwh: zone.gco2_per_kwh,
            price_eur_per_mwh: zone.price_eur_per_mwh,
            gpu_hour_price_eur: None,
            depreciation_years: inputs::DEPRECIATION_YEARS,
            avg_power_w: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrainPlan {
    pub gpu_type: String,
    pub training_flops: f64,
    pub gpus: f64,
    pub mfu: f64,
    pub ettr: f64,
    pub wall_clock_days: f64,
    pub gpu_hours: f64,
    pub avg_it_power_w_per_gpu: f64,
    pub it_power_mw: f64,
    pub facility_power_mw: f64,
    pub it_energy_mwh: f64,
    pub facility_energy_mwh: f64,
    pub emissions_t: f64,
    pub energy_cost_eur: f64,
    /// Hardware amortisation (owned) or rental (rented) for the run.
    pub hardware_or_rental_eur: f64,
    /// Total compute cost: rental (energy included), or amortisation plus energy when owned.
    pub total_cost_eur: f64,
    pub assumptions: Vec<Assumption>,
}

/// All-in hardware cost of one GPU in a cluster, € (accelerator → server → with interconnect).
pub fn hardware_eur_per_gpu(gpu: &GpuType) -> f64 {
    gpu.price_usd * inputs::USD_TO_EUR * inputs::SERVER_FACTOR / (1.0 - inputs::INTERCONNECT_SHARE)
}

/// Default ETTR for a synchronous job: the checkpoint model at the Daly interval.
pub fn default_ettr(gpus: f64, params: f64, gpus_per_node: f64) -> f64 {
    let mut c = CheckpointInputs::defaults(gpus, params);
    c.gpus_per_node = gpus_per_node;
    c.intervals_s.clear();
    checkpoint::plan(&c).map(|p| p.rows.last().map_or(1.0, |r| r.ettr)).unwrap_or(1.0)
}

pub fn gpus_per_node(gpu: &GpuType) -> f64 {
    f64::from(fabrik_model::reliability::gpus_per_node(&gpu.name))
}

pub fn plan(i: &TrainInputs) -> Result<TrainPlan, PlanError> {
    crate::positive("params", i.params)?;
    crate::positive("tokens", i.tokens)?;
    crate::positive("pue", i.pue)?;
    if i.pue < 1.0 {
        return Err(PlanError::Invalid(format!(
            "pue: {} is below 1 (facility energy cannot be less than IT energy)",
            i.pue
        )));
    }
    crate::non_negative("gco2_per_kwh", i.gco2_per_kwh)?;
    crate::non_negative("price_eur_per_mwh", i.price_eur_per_mwh)?;
    crate::positive("depreciation_years", i.depreciation_years)?;
    let active = i.active_params.unwrap_or(i.params);
    crate::positive("active_params", active)?;
    if active > i.params {
        return Err(PlanError::Invalid("active_params: more active than total parameters".into()));
    }
    for (name, v) in [("mfu", i.mfu), ("ettr", i.ettr)] {
        if let Some(x) = v {
            if !(x > 0.0 && x <= 1.0) {
                return Err(PlanError::Invalid(format!("{name}: {x} is outside (0, 1]")));
            }
        }
    }
    if let Some(p) = i.gpu_hour_price_eur {
        crate::non_negative("gpu_hour_price_eur", p)?;
    }
    if let Some(w) = i.avg_power_w {
        crate::positive("avg_power_w", w)?;
    }
    let per_node = gpus_per_node(&i.gpu);
    let flops = 6.0 * active * i.tokens;
    let peak = i.gpu.bf16_tflops * 1e12;
    let mut notes = Vec::new();
    let rates = |gpus: f64| -> (f64, String, f64) {
        let (mfu, src) = match i.mfu {
            Some(m) => (m, "given".to_string()),
            None => inputs::default_mfu(&i.gpu.name, gpus),
        };
        let ettr = i.ettr.unwrap_or_else(|| default_ettr(gpus, i.params, per_node));
        (mfu, src, ettr)
    };
    let gpus = match (i.gpus, i.target_days) {
        (Some(g), None) => {
            crate::positive("gpus", g)?;
            if g.fract() != 0.0 {
                return Err(PlanError::Invalid(format!("gpus: {g} is not a whole number")));
            }
            g
        }
        (None, Some(days)) => {
            crate::positive("target_days", days)?;
            // MFU and ETTR depend on the count: iterate to a fixed point, whole nodes.
            let mut g = per_node;
            for _ in 0..20 {
                let (mfu, _, ettr) = rates(g);
                let need = (flops / (days * 86_400.0 * peak * mfu * ettr) / per_node).ceil() * per_node;
                if need == g {
                    break;
                }
                g = need;
            }
            notes.push(assumption(
                "GPU count",
                format!("solved for {days} days, whole nodes of {per_node}"),
                "computed",
            ));
            g
        }
        _ => return Err(PlanError::Invalid("give exactly one of gpus and target_days".into())),
    };
    let (mfu, mfu_src, ettr) = rates(gpus);
    let seconds = flops / (gpus * peak * mfu) / ettr;
    let hours = seconds / 3600.0;
    let gpu_hours = gpus * hours;
    let rating = i.gpu.max_power_w + i.gpu.host_overhead_w;
    let avg_w = i.avg_power_w.unwrap_or(inputs::TRAINING_POWER_FRACTION * rating);
    let it_mwh = gpu_hours * avg_w / 1e6;
    let facility_mwh = it_mwh * i.pue;
    let emissions_t = facility_mwh * i.gco2_per_kwh / 1000.0;
    let energy_cost = facility_mwh * i.price_eur_per_mwh;
    let (hw, total, cost_note) = match i.gpu_hour_price_eur {
        Some(p) => {
            (gpu_hours * p, gpu_hours * p, assumption("GPU-hour price", format!("EUR {p}, energy included"), "given"))
        }
        None => {
            let per_hour = hardware_eur_per_gpu(&i.gpu) / (i.depreciation_years * 8760.0);
            let building = rating * i.pue / 1e6 * inputs::BUILDING_EUR_PER_MW / (inputs::BUILDING_YEARS * 8760.0);
            let hw = gpu_hours * (per_hour + building);
            (
                hw,
                hw + energy_cost,
                assumption(
                    "owned hardware",
                    format!(
                        "EUR {:.0} per GPU installed, over {} years, plus building",
                        hardware_eur_per_gpu(&i.gpu),
                        i.depreciation_years
                    ),
                    inputs::COST_SRC,
                ),
            )
        }
    };
    let mut assumptions = vec![
        assumption("training FLOPs", "6 x active parameters x tokens", "reference: dense transformer rule"),
        assumption(
            "peak",
            format!("{} BF16 TFLOP/s per {}", i.gpu.bf16_tflops, i.gpu.name),
            "MLE (stas00/ml-engineering)",
        ),
        assumption("MFU", format!("{mfu:.3}"), &mfu_src),
        assumption(
            "ETTR",
            format!("{ettr:.3}"),
            if i.ettr.is_some() {
                "given"
            } else {
                "checkpoint model at the Daly interval (6.5 failures/1,000 node-days, Kokolis et al. 2024)"
            },
        ),
        assumption(
            "average IT power per GPU",
            format!("{avg_w:.0} W"),
            if i.avg_power_w.is_some() { "given" } else { inputs::TRAINING_POWER_SRC },
        ),
        assumption("PUE", format!("{}", i.pue), inputs::PUE_SRC),
        assumption(
            "grid",
            format!("{}: {} gCO2/kWh, EUR {}/MWh", i.zone, i.gco2_per_kwh, i.price_eur_per_mwh),
            "zone table (see `fabrik plan zones`)",
        ),
        cost_note,
    ];
    if i.gpu_hour_price_eur.is_none() {
        assumptions.push(assumption("USD to EUR", format!("{}", inputs::USD_TO_EUR), inputs::USD_TO_EUR_SRC));
        assumptions.push(assumption("building", "EUR 10 M per MW over 15 years", inputs::BUILDING_SRC));
    }
    assumptions.extend(notes);
    Ok(TrainPlan {
        gpu_type: i.gpu.name.clone(),
        training_flops: flops,
        gpus,
        mfu,
        ettr,
        wall_clock_days: hours / 24.0,
        gpu_hours,
        avg_it_power_w_per_gpu: avg_w,
        it_power_mw: gpus * avg_w / 1e6,
        facility_power_mw: gpus * avg_w * i.pue / 1e6,
        it_energy_mwh: it_mwh,
        facility_energy_mwh: facility_mwh,
        emissions_t,
        energy_cost_eur: energy_cost,
        hardware_or_rental_eur: hw,
        total_cost_eur: total,
        assumptions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use fabrik_model::gpu::{builtin_catalog, find};

    fn h100() -> GpuType {
        find(&builtin_catalog(), "H100").unwrap().clone()
    }

    #[test]
    fn published_energy_chain_on_a_constructed_run() {
        // 1,000 H100 for exactly 24 h at 700 W average, PUE 1.1, 384 gCO2/kWh, EUR 200/MWh:
        // FLOPs chosen so that 1,000 · 989e12 · 0.5 · 86,400 s = 4.2725e22.
        // kWh = 24 · 1,000 · 700 · 1.1 / 1000 = 18,480; tCO2e = 18,480 · 0.384 / 1000 = 7.09632.
        let de = inputs::zone("DE").unwrap();
        let tokens = 1_000.0 * 989e12 * 0.5 * 86_400.0 / (6.0 * 1e9);
        let mut i = TrainInputs::new(1e9, tokens, h100(), 1_000.0, de);
        i.mfu = Some(0.5);
        i.ettr = Some(1.0);
        i.pue = 1.1;
        i.avg_power_w = Some(700.0);
        i.price_eur_per_mwh = 200.0;
        i.gpu_hour_price_eur = Some(2.0);
        let p = plan(&i).unwrap();
        assert!((p.wall_clock_days - 1.0).abs() < 1e-12);
        assert!((p.gpu_hours - 24_000.0).abs() < 1e-6);
        assert!((p.it_energy_mwh - 16.8).abs() < 1e-9);
        assert!((p.facility_energy_mwh - 18.48).abs() < 1e-9);
        assert!((p.emissions_t - 7.09632).abs() < 1e-9);
        assert!((p.energy_cost_eur - 3_696.0).abs() < 1e-6);
        assert!((p.total_cost_eur - 48_000.0).abs() < 1e-6);
        assert!((p.facility_power_mw - 0.77).abs() < 1e-12);
    }

    #[test]
    fn solving_for_a_duration_gives_whole_nodes() {
        // 6 · 70e9 · 2e12 = 8.4e23 FLOP in 30 days at MFU 0.4, ETTR 1 on H100:
        // 8.4e23 / (30 · 86,400 · 989e12 · 0.4) = 818.9 GPUs → 103 nodes = 824 GPUs.
        let mut i = TrainInputs::new(70e9, 2e12, h100(), 1.0, inputs::zone("FR").unwrap());
        i.gpus = None;
        i.target_days = Some(30.0);
        i.mfu = Some(0.4);
        i.ettr = Some(1.0);
        let p = plan(&i).unwrap();
        assert_eq!(p.gpus, 824.0);
        assert!(p.wall_clock_days <= 30.0 && p.wall_clock_days > 29.5);
    }

    #[test]
    fn moe_uses_active_parameters_and_owned_cost_adds_energy() {
        let mut i = TrainInputs::new(1e12, 1e12, h100(), 1024.0, inputs::zone("SE").unwrap());
        i.active_params = Some(1e11);
        let p = plan(&i).unwrap();
        assert_eq!(p.training_flops, 6.0 * 1e11 * 1e12);
        assert!((p.total_cost_eur - (p.hardware_or_rental_eur + p.energy_cost_eur)).abs() < 1e-6);
        // H100 installed: 30,000 · 0.92 · 1.64 / 0.805 = 56,228.57 €
        assert!((hardware_eur_per_gpu(&h100()) - 30_000.0 * 0.92 * 1.64 / 0.805).abs() < 1e-6);
    }

    #[test]
    fn invalid_inputs_are_named() {
        let de = inputs::zone("DE").unwrap();
        let base = TrainInputs::new(1e9, 1e9, h100(), 8.0, de);
        let cases: Vec<(TrainInputs, &str)> = vec![
            (TrainInputs { gpus: Some(0.0), ..base.clone() }, "gpus: must be positive, got 0"),
            (TrainInputs { gpus: Some(-8.0), ..base.clone() }, "gpus: must be positive, got -8"),
            (TrainInputs { mfu: Some(1.5), ..base.clone() }, "mfu: 1.5 is outside (0, 1]"),
            (TrainInputs { mfu: Some(0.0), ..base.clone() }, "mfu: 0 is outside (0, 1]"),
            (TrainInputs { pue: 0.9, ..base.clone() }, "pue: 0.9 is below 1"),
            (TrainInputs { gpus: None, ..base.clone() }, "give exactly one of gpus and target_days"),
            (TrainInputs { active_params: Some(2e9), ..base.clone() }, "active_params: more active than total"),
        ];
        for (i, msg) in cases {
            let e = plan(&i).unwrap_err().to_string();
            assert!(e.starts_with(msg), "{e} vs {msg}");
        }
    }
}

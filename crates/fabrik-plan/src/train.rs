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
    let c = costs(&UsageInputs::at_site_of(i), gpu_hours);
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
    ];
    assumptions.extend(c.assumptions);
    assumptions.extend(notes);
    let avg_w = c.avg_w;
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
        it_energy_mwh: c.it_mwh,
        facility_energy_mwh: c.facility_mwh,
        emissions_t: c.emissions_t,
        energy_cost_eur: c.energy_cost,
        hardware_or_rental_eur: c.hw,
        total_cost_eur: c.total,
        assumptions,
    })
}

/// Energy, emissions and cost of some GPU-hours at a site, with the assumptions they rest on.
struct Costs {
    avg_w: f64,
    it_mwh: f64,
    facility_mwh: f64,
    emissions_t: f64,
    energy_cost: f64,
    hw: f64,
    total: f64,
    assumptions: Vec<Assumption>,
}

/// The energy, emissions and cost of `gpu_hours` at the site `s` describes (its usage fields
/// are not read).
fn costs(s: &UsageInputs, gpu_hours: f64) -> Costs {
    let rating = s.gpu.max_power_w + s.gpu.host_overhead_w;
    let avg_w = s.avg_power_w.unwrap_or(inputs::TRAINING_POWER_FRACTION * rating);
    let it_mwh = gpu_hours * avg_w / 1e6;
    let facility_mwh = it_mwh * s.pue;
    let emissions_t = facility_mwh * s.gco2_per_kwh / 1000.0;
    let energy_cost = facility_mwh * s.price_eur_per_mwh;
    let (hw, total, cost_note) = match s.gpu_hour_price_eur {
        Some(p) => {
            (gpu_hours * p, gpu_hours * p, assumption("GPU-hour price", format!("EUR {p}, energy included"), "given"))
        }
        None => {
            let per_hour = hardware_eur_per_gpu(&s.gpu) / (s.depreciation_years * 8760.0);
            let building = rating * s.pue / 1e6 * inputs::BUILDING_EUR_PER_MW / (inputs::BUILDING_YEARS * 8760.0);
            let hw = gpu_hours * (per_hour + building);
            let note = assumption(
                "owned hardware",
                format!(
                    "EUR {:.0} per GPU installed, over {} years, plus building",
                    hardware_eur_per_gpu(&s.gpu),
                    s.depreciation_years
                ),
                inputs::COST_SRC,
            );
            (hw, hw + energy_cost, note)
        }
    };
    let mut assumptions = vec![
        assumption(
            "average IT power per GPU",
            format!("{avg_w:.0} W"),
            if s.avg_power_w.is_some() { "given" } else { inputs::TRAINING_POWER_SRC },
        ),
        assumption("PUE", format!("{}", s.pue), inputs::PUE_SRC),
        assumption(
            "grid",
            format!("{}: {} gCO2/kWh, EUR {}/MWh", s.zone, s.gco2_per_kwh, s.price_eur_per_mwh),
            "zone table (see `fabrik plan zones`)",
        ),
        cost_note,
    ];
    if s.gpu_hour_price_eur.is_none() {
        assumptions.push(assumption("USD to EUR", format!("{}", inputs::USD_TO_EUR), inputs::USD_TO_EUR_SRC));
        assumptions.push(assumption("building", "EUR 10 M per MW over 15 years", inputs::BUILDING_SRC));
    }
    Costs { avg_w, it_mwh, facility_mwh, emissions_t, energy_cost, hw, total, assumptions }
}

/// A finished run as it reports its usage — GPU-hours, or a GPU count and wall-clock days — at a
/// site, to compute its energy, emissions and cost from what it measured rather than from a
/// model of its training. The site fields mean what they mean in [`TrainInputs`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageInputs {
    pub gpu: GpuType,
    pub gpu_hours: Option<f64>,
    pub gpus: Option<f64>,
    pub days: Option<f64>,
    pub pue: f64,
    pub zone: String,
    pub gco2_per_kwh: f64,
    pub price_eur_per_mwh: f64,
    pub gpu_hour_price_eur: Option<f64>,
    pub depreciation_years: f64,
    pub avg_power_w: Option<f64>,
}

impl UsageInputs {
    /// The site settings of `t` (GPU, PUE, grid, prices, power) with no usage yet.
    pub fn at_site_of(t: &TrainInputs) -> UsageInputs {
        UsageInputs {
            gpu: t.gpu.clone(),
            gpu_hours: None,
            gpus: None,
            days: None,
            pue: t.pue,
            zone: t.zone.clone(),
            gco2_per_kwh: t.gco2_per_kwh,
            price_eur_per_mwh: t.price_eur_per_mwh,
            gpu_hour_price_eur: t.gpu_hour_price_eur,
            depreciation_years: t.depreciation_years,
            avg_power_w: t.avg_power_w,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsagePlan {
    pub gpu_type: String,
    pub gpu_hours: f64,
    /// GPU count and wall-clock days, when given (or derived: days from GPU-hours and GPUs).
    pub gpus: Option<f64>,
    pub wall_clock_days: Option<f64>,
    pub avg_it_power_w_per_gpu: f64,
    pub it_energy_mwh: f64,
    pub facility_energy_mwh: f64,
    pub emissions_t: f64,
    pub energy_cost_eur: f64,
    pub hardware_or_rental_eur: f64,
    pub total_cost_eur: f64,
    pub assumptions: Vec<Assumption>,
}

/// Energy, emissions and cost of a run from its measured usage: `gpu_hours` (with `gpus`, its
/// wall-clock follows), or `gpus` and `days` (GPU-hours = gpus × days × 24).
pub fn from_usage(i: &UsageInputs) -> Result<UsagePlan, PlanError> {
    crate::positive("pue", i.pue)?;
    if i.pue < 1.0 {
        return Err(PlanError::Invalid(format!("pue: {} is below 1", i.pue)));
    }
    crate::non_negative("gco2_per_kwh", i.gco2_per_kwh)?;
    crate::non_negative("price_eur_per_mwh", i.price_eur_per_mwh)?;
    crate::positive("depreciation_years", i.depreciation_years)?;
    for (name, v) in [("gpu_hours", i.gpu_hours), ("gpus", i.gpus), ("days", i.days), ("avg_power_w", i.avg_power_w)] {
        if let Some(x) = v {
            crate::positive(name, x)?;
        }
    }
    if let Some(p) = i.gpu_hour_price_eur {
        crate::non_negative("gpu_hour_price_eur", p)?;
    }
    let (gpu_hours, days, source) = match (i.gpu_hours, i.gpus, i.days) {
        (Some(h), g, None) => (h, g.map(|g| h / g / 24.0), "given (--gpu-hours)"),
        (None, Some(g), Some(d)) => (g * d * 24.0, Some(d), "GPUs x days x 24 (given)"),
        _ => {
            return Err(PlanError::Invalid(
                "measured usage: give gpu_hours (optionally with gpus), or gpus and days".into(),
            ))
        }
    };
    let c = costs(i, gpu_hours);
    let mut assumptions = vec![assumption("GPU-hours", format!("{gpu_hours:.0}"), source)];
    assumptions.extend(c.assumptions);
    Ok(UsagePlan {
        gpu_type: i.gpu.name.clone(),
        gpu_hours,
        gpus: i.gpus,
        wall_clock_days: days,
        avg_it_power_w_per_gpu: c.avg_w,
        it_energy_mwh: c.it_mwh,
        facility_energy_mwh: c.facility_mwh,
        emissions_t: c.emissions_t,
        energy_cost_eur: c.energy_cost,
        hardware_or_rental_eur: c.hw,
        total_cost_eur: c.total,
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
    fn measured_usage_gives_the_same_chain_without_a_model() {
        // The run above as it would report itself: 24,000 GPU-hours (or 1,000 GPUs for 1 day)
        // at 700 W, PUE 1.1, DE's 384 gCO2/kWh, EUR 200/MWh, rented at EUR 2: 18.48 MWh,
        // 7.09632 t, EUR 48,000.
        let de = inputs::zone("DE").unwrap();
        let mut t = TrainInputs::new(1e9, 1e12, h100(), 1_000.0, de);
        t.pue = 1.1;
        t.avg_power_w = Some(700.0);
        t.price_eur_per_mwh = 200.0;
        t.gpu_hour_price_eur = Some(2.0);
        let mut u = UsageInputs::at_site_of(&t);
        u.gpu_hours = Some(24_000.0);
        let a = from_usage(&u).unwrap();
        assert!((a.facility_energy_mwh - 18.48).abs() < 1e-9);
        assert!((a.emissions_t - 7.09632).abs() < 1e-9);
        assert!((a.energy_cost_eur - 3_696.0).abs() < 1e-6);
        assert!((a.total_cost_eur - 48_000.0).abs() < 1e-6);
        assert_eq!((a.gpus, a.wall_clock_days), (None, None));
        assert_eq!(a.assumptions[0].source, "given (--gpu-hours)");
        // GPUs and days: the same GPU-hours; GPU-hours with GPUs: the wall-clock follows
        let b =
            from_usage(&UsageInputs { gpu_hours: None, gpus: Some(1_000.0), days: Some(1.0), ..u.clone() }).unwrap();
        assert_eq!((b.gpu_hours, b.wall_clock_days), (24_000.0, Some(1.0)));
        assert_eq!(b.emissions_t, a.emissions_t);
        let c = from_usage(&UsageInputs { gpus: Some(500.0), ..u.clone() }).unwrap();
        assert_eq!(c.wall_clock_days, Some(2.0));
        // neither, or both ways at once, or a non-positive figure: a named error
        assert!(from_usage(&UsageInputs { gpu_hours: None, ..u.clone() }).is_err());
        assert!(from_usage(&UsageInputs { days: Some(1.0), ..u.clone() }).is_err());
        let e = from_usage(&UsageInputs { gpu_hours: Some(-1.0), ..u }).unwrap_err().to_string();
        assert!(e.contains("gpu_hours"), "{e}");
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

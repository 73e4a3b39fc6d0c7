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

/// Where a run computes and how its energy is counted: the GPU type, the facility's PUE, the
/// grid, prices, and the power per GPU. Shared by a planned run and a finished one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SiteInputs {
    pub gpu: GpuType,
    pub pue: f64,
    /// Zone code (or "custom") and its carbon intensity and price.
    pub zone: String,
    pub gco2_per_kwh: f64,
    pub price_eur_per_mwh: f64,
    /// Rented GPUs: € per GPU-hour (energy included). Owned hardware when `None`.
    pub gpu_hour_price_eur: Option<f64>,
    pub depreciation_years: f64,
    /// Average power per GPU while training, W, in the `power_scope`; by default 76% of GPU
    /// plus host rating (scope `it`) or the GPU's TDP (scope `gpu`).
    pub avg_power_w: Option<f64>,
    pub power_scope: PowerScope,
}

/// What the energy chain counts per GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PowerScope {
    /// The GPU and its share of the host (CPUs, memory, NICs, fans, in-rack switches): what
    /// the facility's IT load is.
    #[default]
    It,
    /// The GPU board alone, at its TDP unless given: the convention of model cards (Llama 2
    /// and 3 multiply GPU-hours by the GPU's peak power, then apply the data centre's PUE).
    Gpu,
}

impl SiteInputs {
    /// A site in `zone` with the defaults: PUE 1.25, owned hardware, IT power.
    pub fn new(gpu: GpuType, zone: &inputs::Zone) -> SiteInputs {
        SiteInputs {
            gpu,
            pue: inputs::DEFAULT_PUE,
            zone: zone.code.to_string(),
            gco2_per_kwh: zone.gco2_per_kwh,
            price_eur_per_mwh: zone.price_eur_per_mwh,
            gpu_hour_price_eur: None,
            depreciation_years: inputs::DEPRECIATION_YEARS,
            avg_power_w: None,
            power_scope: PowerScope::It,
        }
    }

    fn check(&self) -> Result<(), PlanError> {
        crate::positive("pue", self.pue)?;
        if self.pue < 1.0 {
            return Err(PlanError::Invalid(format!(
                "pue: {} is below 1 (facility energy cannot be less than IT energy)",
                self.pue
            )));
        }
        crate::non_negative("gco2_per_kwh", self.gco2_per_kwh)?;
        crate::non_negative("price_eur_per_mwh", self.price_eur_per_mwh)?;
        crate::positive("depreciation_years", self.depreciation_years)?;
        if let Some(p) = self.gpu_hour_price_eur {
            crate::non_negative("gpu_hour_price_eur", p)?;
        }
        if let Some(w) = self.avg_power_w {
            crate::positive("avg_power_w", w)?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrainInputs {
    /// Total parameters.
    pub params: f64,
    /// Active parameters per token (mixture-of-experts); `params` when dense.
    pub active_params: Option<f64>,
    pub tokens: f64,
    /// GPU count, or `None` to solve for `target_days`.
    pub gpus: Option<f64>,
    pub target_days: Option<f64>,
    pub mfu: Option<f64>,
    pub ettr: Option<f64>,
    pub precision: inputs::Precision,
    #[serde(flatten)]
    pub site: SiteInputs,
}

impl TrainInputs {
    pub fn new(params: f64, tokens: f64, gpu: GpuType, gpus: f64, zone: &inputs::Zone) -> TrainInputs {
        TrainInputs {
            params,
            active_params: None,
            tokens,
            gpus: Some(gpus),
            target_days: None,
            mfu: None,
            ettr: None,
            precision: inputs::Precision::Bf16,
            site: SiteInputs::new(gpu, zone),
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
    pub precision: inputs::Precision,
    pub power_scope: PowerScope,
    /// Average power per GPU counted: the GPU's part and its host share (0 in scope `gpu`).
    pub avg_it_power_w_per_gpu: f64,
    pub gpu_power_w_per_gpu: f64,
    pub host_power_w_per_gpu: f64,
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

/// ETTR of one job with fault-tolerant training: each failure stalls it `stall_s` and loses no
/// work (hot spares, in-memory redundancy).
pub fn fault_tolerant_ettr(gpus: f64, params: f64, gpus_per_node: f64, stall_s: f64) -> f64 {
    let mut c = CheckpointInputs::defaults(gpus, params);
    c.gpus_per_node = gpus_per_node;
    c.intervals_s.clear();
    c.fault_tolerant_stall_s = Some(stall_s);
    // its best: no checkpoints taken for failures (the "none" row), 1 − S/M
    checkpoint::plan(&c).map(|p| p.rows.iter().find(|r| r.label == "none").map_or(1.0, |r| r.ettr)).unwrap_or(1.0)
}

pub fn gpus_per_node(gpu: &GpuType) -> f64 {
    f64::from(fabrik_model::reliability::gpus_per_node(&gpu.name))
}

pub fn plan(i: &TrainInputs) -> Result<TrainPlan, PlanError> {
    crate::positive("params", i.params)?;
    crate::positive("tokens", i.tokens)?;
    i.site.check()?;
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
    let gpu = &i.site.gpu;
    let per_node = gpus_per_node(gpu);
    let flops = 6.0 * active * i.tokens;
    let (peak_tflops, precision) = match i.precision {
        inputs::Precision::Bf16 => (gpu.bf16_tflops, "BF16"),
        inputs::Precision::Fp8 => match gpu.fp8_tflops {
            Some(t) => (t, "FP8"),
            None => return Err(PlanError::Invalid(format!("precision: {} has no FP8 peak (use bf16)", gpu.name))),
        },
    };
    let peak = peak_tflops * 1e12;
    let mut notes = Vec::new();
    let rates = |gpus: f64| -> (f64, String, f64) {
        let (mfu, src) = match i.mfu {
            Some(m) => (m, "given".to_string()),
            None => inputs::default_mfu(gpu, active, gpus, i.precision),
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
    let c = costs(&i.site, gpu_hours);
    let mut assumptions = vec![
        assumption("training FLOPs", "6 x active parameters x tokens", "reference: dense transformer rule"),
        assumption(
            "peak",
            format!("{peak_tflops} {precision} TFLOP/s per {}", gpu.name),
            "GPU catalog (see fabrik_model::gpu::builtin_catalog for sources)",
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
        gpu_type: gpu.name.clone(),
        training_flops: flops,
        gpus,
        mfu,
        ettr,
        wall_clock_days: hours / 24.0,
        gpu_hours,
        precision: i.precision,
        power_scope: i.site.power_scope,
        avg_it_power_w_per_gpu: avg_w,
        gpu_power_w_per_gpu: c.gpu_w,
        host_power_w_per_gpu: avg_w - c.gpu_w,
        it_power_mw: gpus * avg_w / 1e6,
        facility_power_mw: gpus * avg_w * i.site.pue / 1e6,
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
    /// The GPU's part of `avg_w`.
    gpu_w: f64,
    it_mwh: f64,
    facility_mwh: f64,
    emissions_t: f64,
    energy_cost: f64,
    hw: f64,
    total: f64,
    assumptions: Vec<Assumption>,
}

/// The energy, emissions and cost of `gpu_hours` at the site `s`.
fn costs(s: &SiteInputs, gpu_hours: f64) -> Costs {
    let rating = s.gpu.max_power_w + s.gpu.host_overhead_w;
    let (avg_w, gpu_w, power_note) = match s.power_scope {
        PowerScope::It => {
            let w = s.avg_power_w.unwrap_or(inputs::TRAINING_POWER_FRACTION * rating);
            // split in the proportion of the ratings
            (
                w,
                w * s.gpu.max_power_w / rating,
                if s.avg_power_w.is_some() { "given" } else { inputs::TRAINING_POWER_SRC },
            )
        }
        PowerScope::Gpu => {
            let w = s.avg_power_w.unwrap_or(s.gpu.max_power_w);
            (
                w,
                w,
                if s.avg_power_w.is_some() {
                    "given"
                } else {
                    "GPU power only, at its TDP: the model-card convention (Llama 2/3)"
                },
            )
        }
    };
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
            match s.power_scope {
                PowerScope::It => "average IT power per GPU",
                PowerScope::Gpu => "average GPU power (no host)",
            },
            format!("{avg_w:.0} W (GPU {gpu_w:.0} W, host {:.0} W)", avg_w - gpu_w),
            power_note,
        ),
        assumption("PUE", format!("{}", s.pue), if s.pue == inputs::DEFAULT_PUE { inputs::PUE_SRC } else { "given" }),
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
    Costs { avg_w, gpu_w, it_mwh, facility_mwh, emissions_t, energy_cost, hw, total, assumptions }
}

/// A finished run as it reports its usage — GPU-hours, or a GPU count and wall-clock days — at a
/// site, to compute its energy, emissions and cost from what it measured rather than from a
/// model of its training. The site fields mean what they mean in [`TrainInputs`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageInputs {
    pub gpu_hours: Option<f64>,
    pub gpus: Option<f64>,
    pub days: Option<f64>,
    #[serde(flatten)]
    pub site: SiteInputs,
}

impl UsageInputs {
    /// No usage yet, at `site`.
    pub fn at(site: SiteInputs) -> UsageInputs {
        UsageInputs { gpu_hours: None, gpus: None, days: None, site }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsagePlan {
    pub gpu_type: String,
    pub gpu_hours: f64,
    /// GPU count and wall-clock days, when given (or derived: days from GPU-hours and GPUs).
    pub gpus: Option<f64>,
    pub wall_clock_days: Option<f64>,
    pub power_scope: PowerScope,
    pub avg_it_power_w_per_gpu: f64,
    pub gpu_power_w_per_gpu: f64,
    pub host_power_w_per_gpu: f64,
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
    i.site.check()?;
    for (name, v) in [("gpu_hours", i.gpu_hours), ("gpus", i.gpus), ("days", i.days)] {
        if let Some(x) = v {
            crate::positive(name, x)?;
        }
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
    let c = costs(&i.site, gpu_hours);
    let mut assumptions = vec![assumption("GPU-hours", format!("{gpu_hours:.0}"), source)];
    assumptions.extend(c.assumptions);
    Ok(UsagePlan {
        gpu_type: i.site.gpu.name.clone(),
        gpu_hours,
        gpus: i.gpus,
        wall_clock_days: days,
        power_scope: i.site.power_scope,
        avg_it_power_w_per_gpu: c.avg_w,
        gpu_power_w_per_gpu: c.gpu_w,
        host_power_w_per_gpu: c.avg_w - c.gpu_w,
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

    fn a100() -> GpuType {
        find(&builtin_catalog(), "A100").unwrap().clone()
    }

    #[test]
    fn gpu_power_scope_follows_the_model_card_convention() {
        // 1,000 H100 GPU-hours at the GPU's 700 W TDP, PUE 1.1, 400 gCO2/kWh:
        // 0.7 MWh of GPU energy, 0.77 MWh at the facility, 0.308 t; no host power
        let de = inputs::zone("DE").unwrap();
        let mut site = SiteInputs::new(h100(), de);
        site.pue = 1.1;
        site.gco2_per_kwh = 400.0;
        site.power_scope = PowerScope::Gpu;
        let u = from_usage(&UsageInputs { gpu_hours: Some(1_000.0), ..UsageInputs::at(site.clone()) }).unwrap();
        assert!((u.it_energy_mwh - 0.7).abs() < 1e-12);
        assert!((u.facility_energy_mwh - 0.77).abs() < 1e-12);
        assert!((u.emissions_t - 0.308).abs() < 1e-12);
        assert_eq!((u.gpu_power_w_per_gpu, u.host_power_w_per_gpu), (700.0, 0.0));
        // IT scope: 76% of (700 + 575) = 969 W, split 700:575 -> GPU 532 W, host 437 W
        site.power_scope = PowerScope::It;
        let it = from_usage(&UsageInputs { gpu_hours: Some(1_000.0), ..UsageInputs::at(site) }).unwrap();
        assert!((it.avg_it_power_w_per_gpu - 969.0).abs() < 1e-9);
        assert!((it.gpu_power_w_per_gpu - 532.0).abs() < 1e-9);
        assert!((it.host_power_w_per_gpu - 437.0).abs() < 1e-9);
        assert!((it.it_energy_mwh - 0.969).abs() < 1e-12);
    }

    #[test]
    fn fp8_uses_the_fp8_peak_and_its_mfu() {
        // the same run in FP8 takes 1/1.25 of the BF16 time at default MFU (FP8_SPEEDUP)
        let de = inputs::zone("DE").unwrap();
        let bf = plan(&TrainInputs { ettr: Some(1.0), ..TrainInputs::new(70e9, 1e12, h100(), 1024.0, de) }).unwrap();
        let f8 = plan(&TrainInputs {
            ettr: Some(1.0),
            precision: inputs::Precision::Fp8,
            ..TrainInputs::new(70e9, 1e12, h100(), 1024.0, de)
        })
        .unwrap();
        assert!((bf.wall_clock_days / f8.wall_clock_days - 1.25).abs() < 1e-9);
        assert!(f8.assumptions.iter().any(|a| a.value.starts_with("1979 FP8 TFLOP/s")));
    }

    #[test]
    fn measured_usage_gives_the_same_chain_without_a_model() {
        // The run above as it would report itself: 24,000 GPU-hours (or 1,000 GPUs for 1 day)
        // at 700 W, PUE 1.1, DE's 384 gCO2/kWh, EUR 200/MWh, rented at EUR 2: 18.48 MWh,
        // 7.09632 t, EUR 48,000.
        let de = inputs::zone("DE").unwrap();
        let mut t = TrainInputs::new(1e9, 1e12, h100(), 1_000.0, de);
        t.site.pue = 1.1;
        t.site.avg_power_w = Some(700.0);
        t.site.price_eur_per_mwh = 200.0;
        t.site.gpu_hour_price_eur = Some(2.0);
        let mut u = UsageInputs::at(t.site.clone());
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
        i.site.pue = 1.1;
        i.site.avg_power_w = Some(700.0);
        i.site.price_eur_per_mwh = 200.0;
        i.site.gpu_hour_price_eur = Some(2.0);
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
            (TrainInputs { site: SiteInputs { pue: 0.9, ..base.site.clone() }, ..base.clone() }, "pue: 0.9 is below 1"),
            (
                TrainInputs { precision: inputs::Precision::Fp8, site: SiteInputs::new(a100(), de), ..base.clone() },
                "precision: A100 has no FP8 peak",
            ),
            (TrainInputs { gpus: None, ..base.clone() }, "give exactly one of gpus and target_days"),
            (TrainInputs { active_params: Some(2e9), ..base.clone() }, "active_params: more active than total"),
        ];
        for (i, msg) in cases {
            let e = plan(&i).unwrap_err().to_string();
            assert!(e.starts_with(msg), "{e} vs {msg}");
        }
    }
}

//! `plan facility`: what a facility of a given budget or size holds, draws, emits and costs, and
//! the power-level check of the seed claims.

use crate::inputs::{self, assumption, Assumption};
use crate::train::{self, default_ettr, gpus_per_node, hardware_eur_per_gpu};
use crate::PlanError;
use fabrik_model::GpuType;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FacilityInputs {
    pub name: String,
    pub budget_eur: Option<f64>,
    pub gpus: Option<f64>,
    pub gpu: GpuType,
    pub zone: String,
    pub gco2_per_kwh: f64,
    pub price_eur_per_mwh: f64,
    pub pue: f64,
    /// Share of GPU-time busy over a year.
    pub utilisation: f64,
    pub building_eur_per_mw: f64,
    pub depreciation_years: f64,
    /// The training run to count per year: parameters and tokens.
    pub run_params: f64,
    pub run_tokens: f64,
    /// GPUs per run (default: the facility or 16,384, whichever is smaller).
    pub run_gpus: Option<f64>,
}

impl FacilityInputs {
    pub fn new(name: &str, gpu: GpuType, zone: &inputs::Zone) -> FacilityInputs {
        FacilityInputs {
            name: name.to_string(),
            budget_eur: None,
            gpus: None,
            gpu,
            zone: zone.code.to_string(),
            gco2_per_kwh: zone.gco2_per_kwh,
            price_eur_per_mwh: zone.price_eur_per_mwh,
            pue: inputs::DEFAULT_PUE,
            utilisation: 0.8,
            building_eur_per_mw: inputs::BUILDING_EUR_PER_MW,
            depreciation_years: inputs::DEPRECIATION_YEARS,
            run_params: 405e9,
            run_tokens: 15e12,
            run_gpus: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Capex {
    pub accelerators_eur: f64,
    /// Rest of the servers (CPUs, memory, chassis): 0.64 × accelerators.
    pub servers_eur: f64,
    pub network_eur: f64,
    pub building_and_power_eur: f64,
    pub total_eur: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FacilityPlan {
    pub name: String,
    pub gpu_type: String,
    pub gpus: f64,
    pub nodes: f64,
    pub racks: f64,
    pub leaf_groups: f64,
    pub domain_gpus: u32,
    pub nameplate_it_mw: f64,
    pub nameplate_facility_mw: f64,
    pub average_facility_mw: f64,
    pub annual_energy_gwh: f64,
    pub annual_emissions_t: f64,
    pub capex: Capex,
    pub annual_energy_cost_eur: f64,
    pub annual_capital_charge_eur: f64,
    pub cost_per_gpu_hour_eur: f64,
    pub run_flops: f64,
    pub runs_per_year: f64,
    pub assumptions: Vec<Assumption>,
}

/// Rack and group layout per form factor: NVL72 racks of 72 GPUs in scalable units of 8 racks
/// (NVIDIA GB200 SuperPOD); HGX nodes of 8 GPUs, 4 per rack (assumption: ~41 kW racks), leaf
/// groups of 32 nodes (NVIDIA DGX SuperPOD scalable unit).
fn layout(gpu: &GpuType) -> (u32, f64, f64) {
    if gpus_per_node(gpu) == 4.0 {
        (72, 72.0, 8.0 * 72.0)
    } else {
        (8, 32.0, 32.0 * 8.0)
    }
}

pub fn plan(i: &FacilityInputs) -> Result<FacilityPlan, PlanError> {
    crate::positive("pue", i.pue)?;
    if i.pue < 1.0 {
        return Err(PlanError::Invalid(format!("pue: {} is below 1", i.pue)));
    }
    if !(i.utilisation > 0.0 && i.utilisation <= 1.0) {
        return Err(PlanError::Invalid(format!("utilisation: {} is outside (0, 1]", i.utilisation)));
    }
    crate::non_negative("building_eur_per_mw", i.building_eur_per_mw)?;
    crate::positive("depreciation_years", i.depreciation_years)?;
    crate::positive("run_params", i.run_params)?;
    crate::positive("run_tokens", i.run_tokens)?;
    let g = &i.gpu;
    let rating_w = g.rating_w();
    let hw = hardware_eur_per_gpu(g);
    let building_per_gpu = rating_w * i.pue / 1e6 * i.building_eur_per_mw;
    let (domain_gpus, rack_gpus, group_gpus) = layout(g);
    let gpus = match (i.budget_eur, i.gpus) {
        (Some(b), None) => {
            crate::positive("budget_eur", b)?;
            let n = ((b / (hw + building_per_gpu)) / f64::from(domain_gpus)).floor() * f64::from(domain_gpus);
            if n < 1.0 {
                return Err(PlanError::Invalid(format!(
                    "budget_eur: EUR {b} does not buy one {}-GPU domain",
                    domain_gpus
                )));
            }
            n
        }
        (None, Some(n)) => {
            crate::positive("gpus", n)?;
            (n / f64::from(domain_gpus)).ceil() * f64::from(domain_gpus)
        }
        _ => return Err(PlanError::Invalid("give exactly one of budget_eur and gpus".into())),
    };
    let nodes = gpus / gpus_per_node(g);
    let racks = (gpus / rack_gpus).ceil();
    let groups = (gpus / group_gpus).ceil();
    let it_mw = gpus * rating_w / 1e6;
    let idle_w = g.average_it_power_w(0.0);
    // the twin's power model: GPUs with their hosts, plus network and storage, always on
    let avg_it_w = gpus * (g.average_it_power_w(i.utilisation) + fabrik_model::energy::NETWORK_STORAGE_W_PER_GPU);
    let avg_fac_mw = avg_it_w * i.pue / 1e6;
    let annual_mwh = avg_fac_mw * 8760.0;
    let acc = gpus * g.price_usd * inputs::USD_TO_EUR;
    let servers = acc * (inputs::SERVER_FACTOR - 1.0);
    let network = (acc + servers) * inputs::INTERCONNECT_SHARE / (1.0 - inputs::INTERCONNECT_SHARE);
    let building = it_mw * i.pue * i.building_eur_per_mw;
    let capex = Capex {
        accelerators_eur: acc,
        servers_eur: servers,
        network_eur: network,
        building_and_power_eur: building,
        total_eur: acc + servers + network + building,
    };
    let energy_cost = annual_mwh * i.price_eur_per_mwh;
    let capital = (acc + servers + network) / i.depreciation_years + building / inputs::BUILDING_YEARS;
    let busy_gpu_hours = gpus * 8760.0 * i.utilisation;
    let run_gpus = i.run_gpus.unwrap_or(gpus.min(16_384.0)).min(gpus);
    let (mfu, mfu_src) = inputs::default_mfu(g, i.run_params, run_gpus, inputs::Precision::Bf16);
    let ettr = default_ettr(run_gpus, i.run_params, gpus_per_node(g));
    let run_flops = 6.0 * i.run_params * i.run_tokens;
    let useful = busy_gpu_hours * 3600.0 * g.bf16_tflops * 1e12 * mfu * ettr;
    let _ = hw;
    Ok(FacilityPlan {
        name: i.name.clone(),
        gpu_type: g.name.clone(),
        gpus,
        nodes,
        racks,
        leaf_groups: groups,
        domain_gpus,
        nameplate_it_mw: it_mw,
        nameplate_facility_mw: it_mw * i.pue,
        average_facility_mw: avg_fac_mw,
        annual_energy_gwh: annual_mwh / 1000.0,
        annual_emissions_t: annual_mwh * i.gco2_per_kwh / 1000.0,
        capex,
        annual_energy_cost_eur: energy_cost,
        annual_capital_charge_eur: capital,
        cost_per_gpu_hour_eur: (capital + energy_cost) / busy_gpu_hours,
        run_flops,
        runs_per_year: useful / run_flops,
        assumptions: vec![
            assumption(
                "accelerator price",
                format!("USD {:.0} ({})", g.price_usd, g.name),
                "reference price table (HF, street estimates)",
            ),
            assumption(
                "server and network",
                "server = 1.64 x accelerator; network 19.5% of hardware",
                inputs::COST_SRC,
            ),
            assumption("USD to EUR", format!("{}", inputs::USD_TO_EUR), inputs::USD_TO_EUR_SRC),
            assumption(
                "building and power",
                format!("EUR {:.1} M per MW of facility power", i.building_eur_per_mw / 1e6),
                inputs::BUILDING_SRC,
            ),
            assumption(
                "depreciation",
                format!("hardware {} years, building {} years", i.depreciation_years, inputs::BUILDING_YEARS),
                inputs::DEPRECIATION_SRC,
            ),
            assumption(
                "power",
                format!("{rating_w:.0} W rating per GPU incl. host; 76% of it while busy"),
                inputs::TRAINING_POWER_SRC,
            ),
            assumption(
                "idle power",
                format!("{idle_w:.0} W per idle GPU (idle GPU + half the host overhead)"),
                "assumption",
            ),
            assumption(
                "network and storage",
                format!("{:.0} W per GPU, always on", fabrik_model::energy::NETWORK_STORAGE_W_PER_GPU),
                "assumption",
            ),
            assumption("PUE", format!("{}", i.pue), inputs::PUE_SRC),
            assumption(
                "grid",
                format!("{}: {} gCO2/kWh, EUR {}/MWh", i.zone, i.gco2_per_kwh, i.price_eur_per_mwh),
                "zone table (see `fabrik plan zones`)",
            ),
            assumption("utilisation", format!("{:.0}%", i.utilisation * 100.0), "stated"),
            assumption(
                "training run",
                format!(
                    "{:.3e} params x {:.3e} tokens on {run_gpus:.0} GPUs, MFU {mfu:.3}, ETTR {ettr:.3}",
                    i.run_params, i.run_tokens
                ),
                &mfu_src,
            ),
            assumption(
                "layout",
                format!("{domain_gpus}-GPU domains, {rack_gpus} GPUs per rack, {group_gpus} per leaf group"),
                "NVIDIA SuperPOD scalable units; 4 HGX nodes per rack assumed",
            ),
        ],
    })
}

impl FacilityPlan {
    /// A facility file `fabrik simulate` accepts: one pool of this plan's GPUs (the last leaf
    /// group may be partial and is written as its own pool entry).
    pub fn to_facility_toml(&self) -> String {
        let per_group = if self.domain_gpus == 72 { 8.0 } else { 32.0 };
        let domains = self.gpus / f64::from(self.domain_gpus);
        let full = (domains / per_group).floor();
        let rest = domains - full * per_group;
        let mut s = format!("# written by `fabrik plan facility`\nname = \"{}\"\n", self.name.replace('"', ""));
        let pool = |groups: f64, per: f64| {
            format!(
                "\n[[pool]]\ngpu = \"{}\"\ndomain_gpus = {}\ndomains_per_group = {}\ngroups = {}\nhall = \"hall-1\"\n",
                self.gpu_type, self.domain_gpus, per as u64, groups as u64
            )
        };
        if full > 0.0 {
            s.push_str(&pool(full, per_group));
        }
        if rest > 0.0 {
            s.push_str(&pool(1.0, rest));
        }
        s
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PowerCheckRow {
    pub claim: String,
    pub facility_mw: f64,
    pub gpu_type: String,
    pub facility_w_per_gpu: f64,
    pub gpus: f64,
    /// BF16 FLOPs of a 100-day run of one synchronous job on all of them (checkpoint and
    /// restart at the default failure rate): 0 when failures come faster than it recovers.
    pub flops_100_days: f64,
    /// The same job with fault-tolerant training (a 90-s stall per failure, no rollback).
    pub flops_100_days_fault_tolerant: f64,
    pub ettr: f64,
    pub ettr_fault_tolerant: f64,
}

/// The stall per failure of fault-tolerant training in `power_check`, s (the twin's
/// `--fault-tolerant 90s` example; an assumption).
pub const FT_STALL_S: f64 = 90.0;

/// What GPU counts and training FLOPs the seed claims' power levels correspond to: all GPUs at
/// their rating including host, times PUE; a 100-day run at the scale's default MFU and ETTR.
pub fn power_check(catalog: &[GpuType], pue: f64) -> Result<Vec<PowerCheckRow>, PlanError> {
    let claims = [
        ("100k-GPU cluster ~100 MW (2024)", 100.0, "H100"),
        ("frontier cluster 1 GW (2026)", 1_000.0, "GB200"),
        ("10 GW (2028)", 10_000.0, "GB300"),
        ("100 GW (2030)", 100_000.0, "GB300"),
    ];
    claims
        .iter()
        .map(|&(claim, mw, ty)| {
            let g = fabrik_model::gpu::find(catalog, ty)
                .ok_or_else(|| PlanError::Invalid(format!("gpu: unknown GPU type '{ty}'")))?;
            let w = (g.max_power_w + g.host_overhead_w) * pue;
            let gpus = (mw * 1e6 / w).floor();
            let (mfu, _) = inputs::default_mfu(g, 405e9, gpus, inputs::Precision::Bf16);
            let ettr = train::default_ettr(gpus, 405e9, gpus_per_node(g));
            let ettr_ft = train::fault_tolerant_ettr(gpus, 405e9, gpus_per_node(g), FT_STALL_S);
            let peak_100_days = gpus * g.bf16_tflops * 1e12 * mfu * 100.0 * 86_400.0;
            Ok(PowerCheckRow {
                claim: claim.to_string(),
                facility_mw: mw,
                gpu_type: g.name.clone(),
                facility_w_per_gpu: w,
                gpus,
                flops_100_days: peak_100_days * ettr,
                flops_100_days_fault_tolerant: peak_100_days * ettr_ft,
                ettr,
                ettr_fault_tolerant: ettr_ft,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use fabrik_model::gpu::{builtin_catalog, find};
    use fabrik_model::Facility;

    fn gpu(n: &str) -> GpuType {
        find(&builtin_catalog(), n).unwrap().clone()
    }

    #[test]
    fn a_gpu_count_plan_adds_up_by_hand() {
        // 1,024 H100 (128 nodes, 4 per rack), PUE 1.25, utilisation 0.5, DE.
        let mut i = FacilityInputs::new("lab", gpu("H100"), inputs::zone("DE").unwrap());
        i.gpus = Some(1_024.0);
        i.utilisation = 0.5;
        let p = plan(&i).unwrap();
        assert_eq!((p.nodes, p.racks, p.leaf_groups), (128.0, 32.0, 4.0));
        // rating 1,275 W → 1.3056 MW IT, 1.632 MW facility
        assert!((p.nameplate_it_mw - 1.3056).abs() < 1e-12);
        assert!((p.nameplate_facility_mw - 1.632).abs() < 1e-12);
        // average IT W per GPU: 0.5 · 0.76 · 1,275 + 0.5 · (70 + 287.5) = 663.25, plus 50 W of
        // network and storage
        let avg_mw = 1_024.0 * 713.25 * 1.25 / 1e6;
        assert!((p.average_facility_mw - avg_mw).abs() < 1e-12);
        assert!((p.annual_energy_gwh - avg_mw * 8.76).abs() < 1e-9);
        assert!((p.annual_emissions_t - avg_mw * 8760.0 * 0.384).abs() < 1e-6);
        // capex: accelerators 1,024 · 30,000 · 0.92; servers × 0.64; network 19.5/80.5 of both
        let acc = 1_024.0 * 27_600.0;
        assert!((p.capex.accelerators_eur - acc).abs() < 1e-6);
        assert!((p.capex.servers_eur - acc * 0.64).abs() < 1e-6);
        assert!((p.capex.network_eur - acc * 1.64 * 0.195 / 0.805).abs() < 1e-3);
        assert!((p.capex.building_and_power_eur - 1.632 * 10e6).abs() < 1e-3);
        let capital = acc * 1.64 / 0.805 / 4.0 + 1.632e7 / 15.0;
        let energy = avg_mw * 8760.0 * 166.5;
        assert!((p.cost_per_gpu_hour_eur - (capital + energy) / (1_024.0 * 8760.0 * 0.5)).abs() < 1e-9);
    }

    #[test]
    fn a_budget_buys_whole_domains_and_the_file_round_trips() {
        // GB200: hardware 40,000 · 0.92 · 1.64 / 0.805 = 74,971.4 €; building 1,666.7 W · 1.25 ·
        // €10 M/MW = 20,833.3 € → €95,804.8 per GPU; €5 bn buys 52,190 → 724 racks = 52,128 GPUs.
        let mut i = FacilityInputs::new("gf", gpu("GB200"), inputs::zone("DE").unwrap());
        i.budget_eur = Some(5e9);
        let p = plan(&i).unwrap();
        assert_eq!(p.gpus, 52_128.0);
        assert_eq!((p.racks, p.leaf_groups), (724.0, 91.0));
        assert!(p.capex.total_eur <= 5e9);
        let f = Facility::from_toml(&p.to_facility_toml(), "plan").unwrap();
        assert_eq!(f.total_gpus(), 52_128);
        assert_eq!(f.groups.len(), 91);
        let e = plan(&FacilityInputs { budget_eur: Some(1.0), ..i.clone() }).unwrap_err().to_string();
        assert!(e.contains("does not buy one 72-GPU domain"), "{e}");
        assert!(plan(&FacilityInputs { utilisation: 1.2, ..i }).is_err());
    }

    #[test]
    fn seed_claims_in_gpus() {
        // 100 MW / (1,275 W · 1.25) = 62,745 H100
        let rows = power_check(&builtin_catalog(), 1.25).unwrap();
        assert_eq!(rows[0].gpus, 62_745.0);
        assert_eq!(rows.len(), 4);
        assert!(rows[3].gpus > rows[2].gpus * 9.9);
        // 1 GW of GB200 (2,083 W all-in each): 479,999 GPUs in 119,999.75 → 120,000 four-GPU
        // trays, 780 failures a day: M = 86,400 / 780 = 110.8 s, shorter than the restart, so
        // a synchronous job never gets anywhere (ETTR 0, no FLOPs); fault-tolerant (a 90-s stall
        // per failure): ETTR = 1 − 90/110.8 = 0.1875
        let gw = &rows[1];
        assert_eq!((gw.gpus, gw.ettr, gw.flops_100_days), (479_999.0, 0.0, 0.0));
        let m = 86_400.0 / (120_000.0 * 6.5 / 1000.0);
        assert!((gw.ettr_fault_tolerant - (1.0 - 90.0 / m)).abs() < 1e-12, "{}", gw.ettr_fault_tolerant);
        assert!(gw.flops_100_days_fault_tolerant > 0.0);
    }
}

//! `fabrik plan`: argument parsing and tables for the planner's pure functions.

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use fabrik_model::gpu::{builtin_catalog, find};
use fabrik_model::GpuType;
use fabrik_plan::checkpoint::{self, CheckpointInputs};
use fabrik_plan::facility::{self, FacilityInputs, FacilityPlan};
use fabrik_plan::inputs::{self, parse_quantity, Assumption, Zone, ZONES};
use fabrik_plan::train::{self, TrainInputs, TrainPlan, UsageInputs, UsagePlan};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum PlanCmd {
    /// Time, GPU-hours, energy, CO2 and cost of one training run.
    Train(TrainArgs),
    /// GPUs, power, energy, emissions and cost of a facility from a budget or a GPU count.
    Facility(FacilityArgs),
    /// Failures and the Young/Daly checkpoint interval for one synchronous job.
    Checkpoint(CheckpointArgs),
    /// Several GPU types and/or grid zones side by side for the same run or budget.
    Compare {
        #[command(subcommand)]
        what: CompareCmd,
    },
    /// What GPU counts and training FLOPs the seed claims' power levels (100 MW … 100 GW) mean.
    Power {
        /// Power usage effectiveness of the facility.
        #[arg(long, default_value_t = inputs::DEFAULT_PUE)]
        pue: f64,
        /// Print JSON instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// The built-in grid zones with their carbon intensity and price.
    Zones,
}

#[derive(Subcommand)]
pub enum CompareCmd {
    /// Training runs on several GPU types and zones side by side.
    Train {
        /// GPU types to compare, comma-separated.
        #[arg(long, value_delimiter = ',')]
        gpu_types: Vec<String>,
        /// Grid zones to compare, comma-separated (EU, DE, FR, SE, PL, US).
        #[arg(long, value_delimiter = ',')]
        zones: Vec<String>,
        #[command(flatten)]
        args: TrainArgs,
    },
    /// Facilities of several GPU types and zones side by side.
    Facility {
        /// GPU types to compare, comma-separated.
        #[arg(long, value_delimiter = ',')]
        gpu_types: Vec<String>,
        /// Grid zones to compare, comma-separated (EU, DE, FR, SE, PL, US).
        #[arg(long, value_delimiter = ',')]
        zones: Vec<String>,
        #[command(flatten)]
        args: FacilityArgs,
    },
}

#[derive(Args, Clone)]
pub struct Site {
    /// Grid zone: EU, DE, FR, SE, PL, US (see `fabrik plan zones`).
    #[arg(long, default_value = "DE")]
    zone: String,
    /// Override the zone's carbon intensity, gCO2/kWh.
    #[arg(long)]
    gco2_per_kwh: Option<f64>,
    /// Override the zone's electricity price, €/MWh.
    #[arg(long)]
    price_eur_per_mwh: Option<f64>,
    /// Power usage effectiveness of the facility.
    #[arg(long, default_value_t = inputs::DEFAULT_PUE)]
    pue: f64,
    /// A facility file whose own [[gpu]] entries --gpu may name (besides the built-in catalog).
    #[arg(long)]
    facility: Option<String>,
}

#[derive(Args, Clone)]
pub struct TrainArgs {
    /// Total parameters (405e9, 405B). With --tokens: plan a run; without them give a
    /// finished run's usage (--gpu-hours, or --gpus with --days).
    #[arg(long)]
    params: Option<String>,
    /// Active parameters per token, for mixture-of-experts models.
    #[arg(long)]
    active_params: Option<String>,
    /// Training tokens (15e12, 15T).
    #[arg(long)]
    tokens: Option<String>,
    /// A finished run's measured GPU-hours (30.8M): its energy, emissions and cost.
    #[arg(long)]
    gpu_hours: Option<String>,
    /// GPU type: the built-in catalog (`fabrik facility gpus`) or a --facility file's own.
    #[arg(long, default_value = "H100")]
    gpu: String,
    /// Precision of the training matmuls: bf16 or fp8 (FP8 peak, and its default MFU).
    #[arg(long, default_value = "bf16", value_parser = ["bf16", "fp8"])]
    precision: String,
    /// GPU count; or give --days to solve for it (for a finished run: with --days, its usage).
    #[arg(long)]
    gpus: Option<String>,
    /// Target wall-clock days: solve for the GPU count (for a finished run: its duration).
    #[arg(long)]
    days: Option<f64>,
    /// Model FLOPs utilisation (default: by model size, GPU count, type and precision).
    #[arg(long)]
    mfu: Option<f64>,
    /// Effective training time ratio (default: from the failure rate and checkpointing at this scale).
    #[arg(long)]
    ettr: Option<f64>,
    #[command(flatten)]
    site: Site,
    /// Rented GPUs at this price per GPU-hour (energy included); owned hardware otherwise.
    #[arg(long)]
    gpu_hour_price_eur: Option<f64>,
    /// Years over which the hardware is written off (for the cost per GPU-hour).
    #[arg(long, default_value_t = inputs::DEPRECIATION_YEARS)]
    depreciation_years: f64,
    /// Average power per GPU while training, W, in the --power-scope (default: 76% of GPU +
    /// host rating for `it`, the GPU's TDP for `gpu`).
    #[arg(long)]
    avg_power_w: Option<f64>,
    /// What the energy counts: `it` (GPU and its host share: the facility's IT load) or `gpu`
    /// (GPU board power only, the model-card convention).
    #[arg(long, default_value = "it", value_parser = ["it", "gpu"])]
    power_scope: String,
    /// Print JSON instead of the table.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Clone)]
pub struct FacilityArgs {
    /// eu-gigafactory (EUR 20 bn over four facilities, ~100,000 chips each) or leam (EUR 350-400 M).
    #[arg(long)]
    preset: Option<String>,
    /// Capital budget, € (5e9, 5bn).
    #[arg(long)]
    budget_eur: Option<String>,
    /// Number of GPUs.
    #[arg(long)]
    gpus: Option<String>,
    /// GPU type (a catalog name: H100, B200, GB200 …).
    #[arg(long)]
    gpu: Option<String>,
    #[command(flatten)]
    site: Site,
    /// Share of GPU-time busy over the year.
    #[arg(long, default_value_t = 0.8)]
    utilisation: f64,
    /// Building and power infrastructure cost, EUR per MW of IT load.
    #[arg(long, default_value_t = inputs::BUILDING_EUR_PER_MW)]
    building_eur_per_mw: f64,
    /// Years over which the hardware is written off (for the cost per GPU-hour).
    #[arg(long, default_value_t = inputs::DEPRECIATION_YEARS)]
    depreciation_years: f64,
    /// The training run to count per year.
    #[arg(long, default_value = "405e9")]
    run_params: String,
    /// Tokens of the reference training run the facility is sized for.
    #[arg(long, default_value = "15e12")]
    run_tokens: String,
    /// GPUs of the reference training run.
    #[arg(long)]
    run_gpus: Option<String>,
    /// Write the planned facility as a file `fabrik simulate --facility` accepts.
    #[arg(long)]
    write_facility: Option<PathBuf>,
    /// Print JSON instead of the table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct CheckpointArgs {
    /// Number of GPUs.
    #[arg(long)]
    gpus: String,
    /// Model parameters, to derive the checkpoint write time (14 B/param at 2 TB/s).
    #[arg(long, default_value = "405e9")]
    params: String,
    /// GPUs per node (a failure takes one node down).
    #[arg(long, default_value_t = 8.0)]
    gpus_per_node: f64,
    /// Blocking checkpoint time, s (overrides the one derived from --params).
    #[arg(long)]
    checkpoint_s: Option<f64>,
    /// Restart overhead, s (default: 150 s detection + cold restart by scale).
    #[arg(long)]
    restart_s: Option<f64>,
    /// Node failures per 1,000 node-days (Kokolis et al. 2024: 6.5).
    #[arg(long, default_value_t = checkpoint::FAILURES_PER_1000_NODE_DAYS)]
    failures_per_1000_node_days: f64,
    /// The job's mean time between interruptions (90m, 2h …), instead of the failure rate.
    #[arg(long)]
    mtbf: Option<String>,
    /// Fault-tolerant training (hot spares, in-memory redundancy): each failure stalls the job
    /// this long (90s, 2m …) and loses no work; the table adds its best (no checkpoints) and
    /// rolling back at Daly's interval.
    #[arg(long, value_name = "STALL")]
    fault_tolerant: Option<String>,
    /// Checkpoint intervals to evaluate besides the optima, comma-separated (5m,15m,1h).
    #[arg(long, value_delimiter = ',')]
    interval: Vec<String>,
    /// Print JSON instead of the table.
    #[arg(long)]
    json: bool,
}

/// A GPU type by name: the built-in catalog, or the `--facility` file's catalog (its own
/// entries added to or overriding the built-in ones).
fn gpu(name: &str, s: &Site) -> Result<GpuType> {
    let cat = match &s.facility {
        Some(path) => crate::load_facility(path).with_context(|| format!("--facility {path}"))?.catalog,
        None => builtin_catalog(),
    };
    match find(&cat, name) {
        Some(g) => Ok(g.clone()),
        None => bail!(
            "gpu: unknown GPU type '{name}' (known: {})",
            cat.iter().map(|g| g.name.as_str()).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// The site the flags give for a run on `gpu_name` in `zone` (or --zone).
fn site_inputs(a: &TrainArgs, gpu_name: &str, zone: Option<&str>) -> Result<train::SiteInputs> {
    let (z, g, p) = site(&a.site, zone)?;
    let mut s = train::SiteInputs::new(gpu(gpu_name, &a.site)?, z);
    s.pue = a.site.pue;
    s.gco2_per_kwh = g;
    s.price_eur_per_mwh = p;
    s.gpu_hour_price_eur = a.gpu_hour_price_eur;
    s.depreciation_years = a.depreciation_years;
    s.avg_power_w = a.avg_power_w;
    s.power_scope = if a.power_scope == "gpu" { train::PowerScope::Gpu } else { train::PowerScope::It };
    Ok(s)
}

fn site(s: &Site, zone_code: Option<&str>) -> Result<(&'static Zone, f64, f64)> {
    let z = inputs::zone(zone_code.unwrap_or(&s.zone))?;
    Ok((z, s.gco2_per_kwh.unwrap_or(z.gco2_per_kwh), s.price_eur_per_mwh.unwrap_or(z.price_eur_per_mwh)))
}

fn opt_q(v: &Option<String>, field: &str) -> Result<Option<f64>> {
    v.as_deref().map(|s| parse_quantity(s, field)).transpose().map_err(Into::into)
}

fn train_inputs(a: &TrainArgs, gpu_override: Option<&str>, zone: Option<&str>) -> Result<TrainInputs> {
    let (Some(params), Some(tokens)) = (&a.params, &a.tokens) else {
        bail!("give --params and --tokens to plan a run, or a finished run's --gpu-hours H (or --gpus N --days D)");
    };
    if a.gpu_hours.is_some() {
        bail!("--gpu-hours is a finished run's usage; --params and --tokens plan a run: give one or the other");
    }
    let i = TrainInputs {
        params: parse_quantity(params, "params")?,
        active_params: opt_q(&a.active_params, "active_params")?,
        tokens: parse_quantity(tokens, "tokens")?,
        gpus: opt_q(&a.gpus, "gpus")?,
        target_days: a.days,
        mfu: a.mfu,
        ettr: a.ettr,
        precision: if a.precision == "fp8" { inputs::Precision::Fp8 } else { inputs::Precision::Bf16 },
        site: site_inputs(a, gpu_override.unwrap_or(&a.gpu), zone)?,
    };
    match (i.gpus, i.target_days) {
        (None, None) => bail!("give --gpus N or --days D"),
        (Some(_), Some(_)) => bail!("give --gpus N (how long it takes) or --days D (how many GPUs it needs), not both"),
        _ => {}
    }
    Ok(i)
}

fn facility_inputs(a: &FacilityArgs, gpu_override: Option<&str>, zone: Option<&str>) -> Result<Vec<FacilityInputs>> {
    let (z, g, p) = site(&a.site, zone)?;
    let mut base: Vec<(String, &str, Option<f64>, Option<f64>)> = match a.preset.as_deref() {
        // EUR 20 bn over four gigafactories; the plan speaks of ~100,000 latest chips each.
        Some("eu-gigafactory") => vec![
            ("eu-gigafactory (EUR 20 bn / 4)".into(), "GB200", Some(5e9), None),
            ("eu-gigafactory (100,000 chips)".into(), "GB200", None, Some(100_000.0)),
        ],
        // LEAM feasibility study: EUR 350-400 M.
        Some("leam") => vec![
            ("leam (EUR 350 M)".into(), "B200", Some(350e6), None),
            ("leam (EUR 400 M)".into(), "B200", Some(400e6), None),
        ],
        Some(other) => bail!("unknown planning preset '{other}' (known: eu-gigafactory, leam)"),
        None => vec![("facility".into(), "H100", opt_q(&a.budget_eur, "budget_eur")?, opt_q(&a.gpus, "gpus")?)],
    };
    if a.preset.is_some() && (a.budget_eur.is_some() || a.gpus.is_some()) {
        bail!("--preset sets the budget or GPU count; drop --budget-eur/--gpus or the preset");
    }
    if a.preset.is_none() && base[0].2.is_none() && base[0].3.is_none() {
        bail!("give --budget-eur, --gpus or --preset");
    }
    let mut out = Vec::new();
    for (name, default_gpu, budget, gpus) in base.drain(..) {
        let ty = gpu_override.or(a.gpu.as_deref()).unwrap_or(default_gpu);
        let mut i = FacilityInputs::new(&name, gpu(ty, &a.site)?, z);
        i.budget_eur = budget;
        i.gpus = gpus;
        i.gco2_per_kwh = g;
        i.price_eur_per_mwh = p;
        i.pue = a.site.pue;
        i.utilisation = a.utilisation;
        i.building_eur_per_mw = a.building_eur_per_mw;
        i.depreciation_years = a.depreciation_years;
        i.run_params = parse_quantity(&a.run_params, "run_params")?;
        i.run_tokens = parse_quantity(&a.run_tokens, "run_tokens")?;
        i.run_gpus = opt_q(&a.run_gpus, "run_gpus")?;
        out.push(i);
    }
    Ok(out)
}

fn eur(x: f64) -> String {
    if x.abs() >= 1e9 {
        format!("EUR {:.2} bn", x / 1e9)
    } else if x.abs() >= 1e6 {
        format!("EUR {:.1} M", x / 1e6)
    } else {
        format!("EUR {x:.0}")
    }
}

fn print_assumptions(a: &[Assumption]) {
    println!("\nassumptions:");
    for x in a {
        println!("  {:<26} {:<46} [{}]", x.name, x.value, x.source);
    }
}

/// A finished run's usage at the site the flags give.
fn usage_inputs(a: &TrainArgs) -> Result<UsageInputs> {
    if a.mfu.is_some() || a.ettr.is_some() || a.active_params.is_some() {
        bail!("--mfu, --ettr and --active-params plan a run; a finished run's usage does not need them");
    }
    if a.precision != "bf16" {
        bail!("--precision plans a run; a finished run's usage does not need it");
    }
    let mut u = UsageInputs::at(site_inputs(a, &a.gpu, None)?);
    u.gpu_hours = opt_q(&a.gpu_hours, "gpu_hours")?;
    u.gpus = opt_q(&a.gpus, "gpus")?;
    u.days = a.days;
    if u.gpu_hours.is_none() && (u.gpus.is_none() || u.days.is_none()) {
        bail!("give --params and --tokens to plan a run, or a finished run's --gpu-hours H (or --gpus N --days D)");
    }
    if u.gpu_hours.is_some() && u.days.is_some() {
        bail!("give --gpu-hours (optionally with --gpus) or --gpus with --days, not both");
    }
    Ok(u)
}

fn print_usage(p: &UsagePlan) {
    let rows = [
        ("GPU-hours", format!("{:.3e} x {}", p.gpu_hours, p.gpu_type)),
        ("GPUs", p.gpus.map_or("not given".into(), |g| format!("{g:.0}"))),
        ("wall-clock", p.wall_clock_days.map_or("not given".into(), |d| format!("{d:.1} days"))),
    ];
    let costs = [
        p.it_energy_mwh,
        p.facility_energy_mwh,
        p.emissions_t,
        p.energy_cost_eur,
        p.hardware_or_rental_eur,
        p.total_cost_eur,
    ];
    print_table(rows, costs, &p.assumptions);
}

/// A plan's rows, then its energy, emissions and cost (IT MWh, facility MWh, t, energy EUR,
/// hardware or rental EUR, total EUR), then its assumptions.
fn print_table<const N: usize>(rows: [(&str, String); N], c: [f64; 6], assumptions: &[Assumption]) {
    let cost_rows = [
        ("energy (IT / facility)", format!("{:.0} MWh / {:.0} MWh", c[0], c[1])),
        ("emissions (location-based)", format!("{:.0} tCO2e", c[2])),
        ("energy cost", eur(c[3])),
        ("hardware or rental", eur(c[4])),
        ("total compute cost", eur(c[5])),
    ];
    for (k, v) in rows.into_iter().chain(cost_rows) {
        println!("{k:<30} {v}");
    }
    print_assumptions(assumptions);
}

fn print_train(p: &TrainPlan) {
    let rows = [
        ("training FLOPs", format!("{:.3e}", p.training_flops)),
        ("GPUs", format!("{:.0} x {}", p.gpus, p.gpu_type)),
        ("MFU / ETTR", format!("{:.3} / {:.3}", p.mfu, p.ettr)),
        ("wall-clock", format!("{:.1} days", p.wall_clock_days)),
        ("GPU-hours", format!("{:.3e}", p.gpu_hours)),
        ("power drawn (IT / facility)", format!("{:.2} MW / {:.2} MW", p.it_power_mw, p.facility_power_mw)),
    ];
    let costs = [
        p.it_energy_mwh,
        p.facility_energy_mwh,
        p.emissions_t,
        p.energy_cost_eur,
        p.hardware_or_rental_eur,
        p.total_cost_eur,
    ];
    print_table(rows, costs, &p.assumptions);
}

fn print_facility(p: &FacilityPlan) {
    println!("{} — {}", p.name, p.gpu_type);
    let rows = [
        ("GPUs", format!("{:.0}", p.gpus)),
        ("nodes / racks / leaf groups", format!("{:.0} / {:.0} / {:.0}", p.nodes, p.racks, p.leaf_groups)),
        ("nameplate IT / facility", format!("{:.1} MW / {:.1} MW", p.nameplate_it_mw, p.nameplate_facility_mw)),
        ("average facility power", format!("{:.1} MW", p.average_facility_mw)),
        ("annual energy", format!("{:.1} GWh", p.annual_energy_gwh)),
        ("annual emissions", format!("{:.0} tCO2e", p.annual_emissions_t)),
        ("capex: accelerators", eur(p.capex.accelerators_eur)),
        ("capex: rest of servers", eur(p.capex.servers_eur)),
        ("capex: network", eur(p.capex.network_eur)),
        ("capex: building and power", eur(p.capex.building_and_power_eur)),
        ("capex: total", eur(p.capex.total_eur)),
        ("annual energy cost", eur(p.annual_energy_cost_eur)),
        ("annual capital charge", eur(p.annual_capital_charge_eur)),
        ("cost per busy GPU-hour", format!("EUR {:.2}", p.cost_per_gpu_hour_eur)),
        ("training runs per year", format!("{:.1} of {:.2e} FLOPs", p.runs_per_year, p.run_flops)),
    ];
    for (k, v) in rows {
        println!("  {k:<30} {v}");
    }
}

pub fn run(cmd: &PlanCmd) -> Result<()> {
    match cmd {
        PlanCmd::Train(a) if a.params.is_none() && a.tokens.is_none() => {
            let p = train::from_usage(&usage_inputs(a)?)?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&p)?);
            } else {
                print_usage(&p);
            }
        }
        PlanCmd::Train(a) => {
            let p = train::plan(&train_inputs(a, None, None)?)?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&p)?);
            } else {
                print_train(&p);
            }
        }
        PlanCmd::Facility(a) => {
            let plans = facility_inputs(a, None, None)?.iter().map(facility::plan).collect::<Result<Vec<_>, _>>()?;
            if let Some(path) = &a.write_facility {
                std::fs::write(path, plans[0].to_facility_toml())
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            if a.json {
                println!("{}", serde_json::to_string_pretty(&plans)?);
            } else {
                for p in &plans {
                    print_facility(p);
                }
                print_assumptions(&plans[0].assumptions);
            }
        }
        PlanCmd::Checkpoint(a) => {
            let gpus = parse_quantity(&a.gpus, "gpus")?;
            let mut i = CheckpointInputs::defaults(gpus, parse_quantity(&a.params, "params")?);
            i.gpus_per_node = a.gpus_per_node;
            i.failures_per_1000_node_days = a.failures_per_1000_node_days;
            if let Some(c) = a.checkpoint_s {
                i.checkpoint_s = c;
                i.checkpoint_given = true;
            }
            if let Some(r) = a.restart_s {
                i.restart_s = r;
                i.restart_given = true;
            }
            let duration = |flag: &str, s: &str| {
                fabrik_model::units::parse_duration(s).map(|v| v as f64).map_err(|e| anyhow::anyhow!("--{flag}: {e}"))
            };
            if let Some(m) = &a.mtbf {
                i.mtbf_s = Some(duration("mtbf", m)?);
            }
            if let Some(s) = &a.fault_tolerant {
                i.fault_tolerant_stall_s = Some(duration("fault-tolerant", s)?);
            }
            if !a.interval.is_empty() {
                i.intervals_s = a.interval.iter().map(|s| duration("interval", s)).collect::<Result<_>>()?;
            }
            let p = checkpoint::plan(&i)?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&p)?);
                return Ok(());
            }
            println!("job of {:.0} GPUs on {:.0} nodes", gpus, p.nodes);
            println!("  interruptions per day {:.2}; MTBF {:.2} h", p.interruptions_per_day, p.mtbf_s / 3600.0);
            println!("  Young interval {:.1} min; Daly interval {:.1} min", p.young_s / 60.0, p.daly_s / 60.0);
            println!("  {:<10} {:>12} {:>8}", "interval", "minutes", "ETTR");
            for r in &p.rows {
                let minutes = if r.label == "none" { "-".to_string() } else { format!("{:.1}", r.interval_s / 60.0) };
                println!("  {:<10} {:>12} {:>8.3}", r.label, minutes, r.ettr);
            }
            print_assumptions(&p.assumptions);
        }
        PlanCmd::Compare { what } => compare(what)?,
        PlanCmd::Power { pue, json } => {
            let rows = facility::power_check(&builtin_catalog(), *pue)?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
                return Ok(());
            }
            println!(
                "{:<34} {:>8} {:>7} {:>12} {:>10} {:>6} {:>16} {:>6} {:>16}",
                "claim", "MW", "GPU", "W/GPU all-in", "GPUs", "ETTR", "FLOPs in 100 d", "FT", "FT FLOPs 100 d"
            );
            for r in rows {
                println!(
                    "{:<34} {:>8.0} {:>7} {:>12.0} {:>10.0} {:>6.2} {:>16} {:>6.2} {:>16}",
                    r.claim,
                    r.facility_mw,
                    r.gpu_type,
                    r.facility_w_per_gpu,
                    r.gpus,
                    r.ettr,
                    if r.ettr > 0.0 { format!("{:.2e}", r.flops_100_days) } else { "none".into() },
                    r.ettr_fault_tolerant,
                    if r.ettr_fault_tolerant > 0.0 {
                        format!("{:.2e}", r.flops_100_days_fault_tolerant)
                    } else {
                        "none".into()
                    }
                );
            }
            println!(
                "\nall-in W/GPU = (GPU board power + host overhead) x PUE {pue}; one synchronous 405B job on every GPU at the \
                 default MFU; ETTR with checkpoints and restarts at the default failure rate (none: failures come faster than \
                 such a job recovers, or stalls it), FT with fault-tolerant training ({:.0} s stall per failure, no rollback)",
                fabrik_plan::facility::FT_STALL_S
            );
        }
        PlanCmd::Zones => {
            for z in ZONES {
                println!(
                    "{:<3} {:<14} {:>5} gCO2/kWh [{}]  EUR {}/MWh [{}]",
                    z.code, z.name, z.gco2_per_kwh, z.carbon_source, z.price_eur_per_mwh, z.price_source
                );
            }
        }
    }
    Ok(())
}

fn combos(types: &[String], zones: &[String]) -> Vec<(Option<String>, Option<String>)> {
    let t: Vec<Option<String>> = if types.is_empty() { vec![None] } else { types.iter().cloned().map(Some).collect() };
    let z: Vec<Option<String>> = if zones.is_empty() { vec![None] } else { zones.iter().cloned().map(Some).collect() };
    t.iter().flat_map(|a| z.iter().map(move |b| (a.clone(), b.clone()))).collect()
}

fn compare(what: &CompareCmd) -> Result<()> {
    match what {
        CompareCmd::Train { gpu_types, zones, args } => {
            let mut plans = Vec::new();
            for (t, z) in combos(gpu_types, zones) {
                let i = train_inputs(args, t.as_deref(), z.as_deref())?;
                plans.push((i.site.zone.clone(), train::plan(&i)?));
            }
            if args.json {
                println!("{}", serde_json::to_string_pretty(&plans.iter().map(|p| &p.1).collect::<Vec<_>>())?);
                return Ok(());
            }
            println!(
                "{:<7} {:<5} {:>8} {:>6} {:>6} {:>8} {:>11} {:>11} {:>9} {:>14}",
                "GPU", "zone", "GPUs", "MFU", "ETTR", "days", "GPU-hours", "MWh (fac.)", "tCO2e", "total cost"
            );
            for (z, p) in &plans {
                println!(
                    "{:<7} {:<5} {:>8.0} {:>6.3} {:>6.3} {:>8.1} {:>11.3e} {:>11.0} {:>9.0} {:>14}",
                    p.gpu_type,
                    z,
                    p.gpus,
                    p.mfu,
                    p.ettr,
                    p.wall_clock_days,
                    p.gpu_hours,
                    p.facility_energy_mwh,
                    p.emissions_t,
                    eur(p.total_cost_eur)
                );
            }
        }
        CompareCmd::Facility { gpu_types, zones, args } => {
            let mut plans = Vec::new();
            for (t, z) in combos(gpu_types, zones) {
                for i in facility_inputs(args, t.as_deref(), z.as_deref())? {
                    plans.push((i.zone.clone(), facility::plan(&i)?));
                }
            }
            if args.json {
                println!("{}", serde_json::to_string_pretty(&plans.iter().map(|p| &p.1).collect::<Vec<_>>())?);
                return Ok(());
            }
            println!(
                "{:<32} {:<7} {:<5} {:>8} {:>9} {:>9} {:>10} {:>14} {:>9} {:>9}",
                "facility", "GPU", "zone", "GPUs", "MW (fac.)", "GWh/yr", "tCO2e/yr", "capex", "EUR/GPUh", "runs/yr"
            );
            for (z, p) in &plans {
                println!(
                    "{:<32} {:<7} {:<5} {:>8.0} {:>9.1} {:>9.1} {:>10.0} {:>14} {:>9.2} {:>9.1}",
                    p.name,
                    p.gpu_type,
                    z,
                    p.gpus,
                    p.nameplate_facility_mw,
                    p.annual_energy_gwh,
                    p.annual_emissions_t,
                    eur(p.capex.total_eur),
                    p.cost_per_gpu_hour_eur,
                    p.runs_per_year
                );
            }
        }
    }
    Ok(())
}

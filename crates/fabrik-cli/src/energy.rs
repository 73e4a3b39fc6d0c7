//! Energy flags of `simulate` and `compare`: grid zone, PUE, cap, signals, renewables, battery,
//! the energy-aware modifier and power limits.

use anyhow::{bail, Context, Result};
use clap::Args;
use fabrik_model::energy::{self, Battery, PueModel};
use fabrik_model::grid::{self, Hourly, Zone};
use fabrik_twin::config::{AwareConfig, EnergyConfig, Objective};

#[derive(Args, Clone)]
pub struct EnergyArgs {
    /// Grid zone for emissions and cost: EU, DE, FR, SE, PL, US.
    #[arg(long, default_value = "DE")]
    zone: String,
    /// PUE: a number (default 1.25, Cottier et al. 2024), or `temperature` (1.15 with free
    /// cooling up to 18 °C, +0.01 per °C above, driven by --temperature).
    #[arg(long, default_value = "1.25")]
    pue: String,
    /// Outside temperature for --pue temperature: synthetic (the zone's documented profile) or
    /// csv:PATH[#COLUMN] (°C per hour).
    #[arg(long, default_value = "synthetic")]
    temperature: String,
    /// Facility power cap (the grid connection), MW: a number, a number with daily windows
    /// (`140,17-21=120` caps at 120 MW from 17:00 to 21:00), or csv:PATH[#COLUMN] (MW per hour).
    #[arg(long)]
    power_cap_mw: Option<String>,
    /// Carbon intensity: annual-mean (the zone's), synthetic (documented hourly profile with that
    /// mean), or csv:PATH[#COLUMN] (an ENTSO-E / Electricity Maps export).
    #[arg(long, default_value = "annual-mean")]
    carbon: String,
    /// Electricity price: annual-mean, synthetic, or csv:PATH[#COLUMN] (€/MWh per hour).
    #[arg(long, default_value = "annual-mean")]
    price: String,
    /// On-site renewables: solar=MW,wind=MW (synthetic output) or csv:PATH[#COLUMN] (MW per hour).
    #[arg(long)]
    renewables: Option<String>,
    /// On-site battery: MWH,MW[,ROUND_TRIP] (round trip default 0.88).
    #[arg(long)]
    battery: Option<String>,
    /// Carbon- or price-aware modifier for flexible jobs: off, carbon, price or both.
    #[arg(long, default_value = "off")]
    energy_aware: String,
    /// How a deferred job gets its GPUs back: queue (released as urgent work at its planned hour;
    /// no GPU idles) or claim (its GPUs are kept for it: it starts exactly as planned, at the cost
    /// of idle GPU-hours).
    #[arg(long, default_value = "queue")]
    aware_mode: String,
    /// How far ahead the modifier looks for a cleaner hour (hours).
    #[arg(long, default_value_t = 24)]
    aware_horizon_h: u64,
    /// Under a power cap, the share of a later window's cap that deferrals into it leave free
    /// for the work arriving meanwhile (0 to 0.5).
    #[arg(long, default_value_t = fabrik_sched::power::DEFAULT_HEADROOM)]
    aware_headroom: f64,
    /// Lowest GPU power limit per QoS when the cap binds: high=1,normal=0.8,low=0.6.
    #[arg(long)]
    power_limits: Option<String>,
}

impl EnergyArgs {
    /// Whether --power-cap-mw was given.
    pub fn has_power_cap(&self) -> bool {
        self.power_cap_mw.is_some()
    }
}

/// An hourly series flag: `annual-mean` (none), `synthetic` (the zone's profile), or
/// `csv:PATH[#COLUMN]`; with where it came from, for the report.
fn series(spec: &str, flag: &str, zone: &Zone, synthetic: impl FnOnce() -> Hourly) -> Result<Option<(Hourly, String)>> {
    match spec {
        "annual-mean" | "none" => Ok(None),
        "synthetic" => Ok(Some((synthetic(), format!("synthetic hourly profile for {}", zone.code)))),
        other => {
            let spec = other.strip_prefix("csv:").with_context(|| {
                format!("--{flag} takes annual-mean, synthetic or csv:PATH[#COLUMN], got '{other}'")
            })?;
            csv_series(spec, flag).map(Some)
        }
    }
}

/// `PATH[#COLUMN]` of an hourly CSV series (the part after `csv:`).
fn csv_series(spec: &str, flag: &str) -> Result<(Hourly, String)> {
    let (path, column) = match spec.split_once('#') {
        Some((p, c)) => (p, Some(c)),
        None => (spec, None),
    };
    let text = std::fs::read_to_string(path).with_context(|| format!("reading --{flag} file {path}"))?;
    let h = grid::read_hourly_csv(&text, path, column).map_err(anyhow::Error::msg)?;
    Ok((h, path.to_string()))
}

fn num(s: &str, what: &str) -> Result<f64> {
    let x: f64 = s.trim().parse().with_context(|| format!("{what}: '{s}' is not a number"))?;
    if !x.is_finite() || x < 0.0 {
        bail!("{what}: '{s}' must be a non-negative number");
    }
    Ok(x)
}

/// `140`, `140,17-21=120,0-6=150`: a base cap and daily windows, as a 24-hour series.
pub fn daily_cap(spec: &str) -> Result<Hourly> {
    let mut parts = spec.split(',');
    let base = num(parts.next().unwrap_or(""), "--power-cap-mw")?;
    if base <= 0.0 {
        bail!("--power-cap-mw must be positive");
    }
    let mut values = vec![base; 24];
    let mut windows = false;
    for w in parts {
        let (hours, mw) =
            w.split_once('=').with_context(|| format!("--power-cap-mw: window '{w}' is not FROM-TO=MW"))?;
        let (a, b) =
            hours.split_once('-').with_context(|| format!("--power-cap-mw: window '{w}' is not FROM-TO=MW"))?;
        let (a, b) = (num(a, "--power-cap-mw window start")? as usize, num(b, "--power-cap-mw window end")? as usize);
        if a >= 24 || b > 24 || a == b {
            bail!("--power-cap-mw: window '{w}' needs hours 0–24 with FROM ≠ TO");
        }
        let mw = num(mw, "--power-cap-mw window")?;
        if mw <= 0.0 {
            bail!("--power-cap-mw: window '{w}' must be positive");
        }
        let mut h = a;
        while h != b % 24 {
            values[h] = mw;
            h = (h + 1) % 24;
        }
        windows = true;
    }
    Ok(if windows { Hourly { values } } else { Hourly::constant(base) })
}

/// `--energy-aware`: off (None), carbon, price or both.
pub fn objective(s: &str) -> Result<Option<Objective>> {
    Ok(match s {
        "off" => None,
        "carbon" => Some(Objective::Carbon),
        "price" => Some(Objective::Price),
        "both" => Some(Objective::Both),
        other => bail!("--energy-aware takes off, carbon, price or both, got '{other}'"),
    })
}

/// `--aware-mode`: queue or claim.
pub fn defer_mode(s: &str) -> Result<fabrik_sched::DeferMode> {
    Ok(match s {
        "claim" => fabrik_sched::DeferMode::Claim,
        "queue" => fabrik_sched::DeferMode::Queue,
        other => bail!("--aware-mode takes claim or queue, got '{other}'"),
    })
}

fn power_limits(spec: &str) -> Result<fabrik_sched::PowerLimits> {
    let mut l = fabrik_sched::PowerLimits::default();
    for part in spec.split(',') {
        let (q, f) = part.split_once('=').with_context(|| format!("--power-limits: '{part}' is not QOS=FRACTION"))?;
        let f = num(f, "--power-limits")?;
        match q.trim() {
            "high" => l.high = f,
            "normal" => l.normal = f,
            "low" => l.low = f,
            other => bail!("--power-limits: unknown QoS '{other}' (high, normal, low)"),
        }
    }
    l.validate().map_err(|e| anyhow::anyhow!("--power-limits: {e}"))?;
    Ok(l)
}

impl EnergyArgs {
    pub fn zone(&self) -> Result<&'static Zone> {
        grid::find(&self.zone).with_context(|| {
            let known: Vec<&str> = grid::ZONES.iter().map(|z| z.code).collect();
            format!("unknown grid zone '{}' (known: {})", self.zone, known.join(", "))
        })
    }

    /// The twin's energy configuration for a run of `days`, and the scheduler's power limits.
    pub fn configure(&self, days: f64, sched: &mut fabrik_sched::SchedConfig) -> Result<EnergyConfig> {
        let zone = self.zone()?;
        // series cover the run plus two months of drain time; they repeat beyond
        let hours = (days.max(1.0) * 24.0) as usize + 24 * 60;
        let mut e = EnergyConfig {
            zone: zone.code.to_string(),
            gco2_per_kwh: zone.gco2_per_kwh,
            price_eur_per_mwh: zone.price_eur_per_mwh,
            ..EnergyConfig::default()
        };
        e.pue = match self.pue.as_str() {
            "temperature" => {
                let (t, src) =
                    series(&self.temperature, "temperature", zone, || energy::synthetic_temperature(zone, hours))?
                        .context("--pue temperature needs --temperature synthetic or csv:PATH")?;
                e.temperature = Some(t);
                e.temperature_source = src;
                PueModel::temperature_dependent()
            }
            p => {
                let x: f64 = p.parse().with_context(|| format!("--pue takes a number or 'temperature', got '{p}'"))?;
                let m = PueModel::constant(x);
                m.validate().map_err(|err| anyhow::anyhow!("--pue: {err}"))?;
                m
            }
        };
        if let Some(c) = &self.power_cap_mw {
            if let Some(spec) = c.strip_prefix("csv:") {
                let (h, src) = csv_series(spec, "power-cap-mw")?;
                if h.values.iter().any(|&v| v <= 0.0) {
                    bail!("--power-cap-mw {src}: every hour's cap must be positive");
                }
                e.cap_mw = Some(h);
                e.cap_source = src;
            } else {
                e.cap_mw = Some(daily_cap(c)?);
                e.cap_source = format!("{c} MW");
            }
        }
        if let Some((h, src)) = series(&self.carbon, "carbon", zone, || grid::synthetic_intensity(zone, hours))? {
            e.intensity = Some(h);
            e.intensity_source = src;
        }
        if let Some((h, src)) = series(&self.price, "price", zone, || energy::synthetic_price(zone, hours))? {
            e.price = Some(h);
            e.price_source = src;
        }
        if let Some(r) = &self.renewables {
            if let Some(spec) = r.strip_prefix("csv:") {
                let (h, src) = csv_series(spec, "renewables")?;
                e.renewables_mw = Some(h);
                e.renewables_source = src;
            } else {
                let (mut solar, mut wind) = (0.0, 0.0);
                for part in r.split(',') {
                    match part.split_once('=') {
                        Some(("solar", v)) => solar = num(v, "--renewables solar")?,
                        Some(("wind", v)) => wind = num(v, "--renewables wind")?,
                        _ => bail!("--renewables takes solar=MW,wind=MW or csv:PATH, got '{part}'"),
                    }
                }
                e.renewables_mw = Some(energy::synthetic_renewables(solar, wind, hours));
                e.renewables_source = format!("synthetic: {solar} MW solar, {wind} MW wind");
            }
        }
        if let Some(b) = &self.battery {
            let v: Vec<&str> = b.split(',').collect();
            if !(2..=3).contains(&v.len()) {
                bail!("--battery takes MWH,MW[,ROUND_TRIP], got '{b}'");
            }
            let bat = Battery {
                capacity_mwh: num(v[0], "--battery capacity")?,
                power_mw: num(v[1], "--battery power")?,
                round_trip: v.get(2).map_or(Ok(0.88), |x| num(x, "--battery round trip"))?,
            };
            bat.validate().map_err(|err| anyhow::anyhow!("--battery: {err}"))?;
            e.battery = Some(bat);
        }
        if let Some(objective) = objective(&self.energy_aware)? {
            if self.aware_horizon_h == 0 {
                bail!("--aware-horizon-h must be at least 1");
            }
            let missing = match objective {
                Objective::Carbon => e.intensity.is_none().then_some("--carbon synthetic or csv:PATH"),
                Objective::Price => e.price.is_none().then_some("--price synthetic or csv:PATH"),
                Objective::Both => {
                    (e.intensity.is_none() && e.price.is_none()).then_some("--carbon or --price as a series")
                }
            };
            if let Some(m) = missing {
                bail!("--energy-aware {} needs an hourly signal: {m}", self.energy_aware);
            }
            let mode = defer_mode(&self.aware_mode)?;
            if !(0.0..=0.5).contains(&self.aware_headroom) {
                bail!("--aware-headroom takes a share from 0 to 0.5, got {}", self.aware_headroom);
            }
            e.aware = Some(AwareConfig {
                objective,
                mode,
                horizon_h: self.aware_horizon_h,
                headroom: self.aware_headroom,
                ..AwareConfig::default()
            });
        }
        if let Some(l) = &self.power_limits {
            sched.power_limits = power_limits(l)?;
        }
        Ok(e)
    }

    /// The same flags with another modifier setting.
    pub fn with_modifier(&self, m: &str) -> EnergyArgs {
        EnergyArgs { energy_aware: m.trim().to_string(), ..self.clone() }
    }
    pub fn modifier(&self) -> &str {
        &self.energy_aware
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daily_cap_windows_wrap_around_midnight() {
        let h = daily_cap("140,17-21=120,22-2=130").unwrap();
        assert_eq!(h.values.len(), 24);
        assert_eq!((h.values[16], h.values[17], h.values[20], h.values[21]), (140.0, 120.0, 120.0, 140.0));
        assert_eq!(
            (h.values[22], h.values[23], h.values[0], h.values[1], h.values[2]),
            (130.0, 130.0, 130.0, 130.0, 140.0)
        );
        assert_eq!(daily_cap("90").unwrap(), Hourly::constant(90.0));
        assert_eq!(daily_cap("140,17-21").unwrap_err().to_string(), "--power-cap-mw: window '17-21' is not FROM-TO=MW");
        assert!(daily_cap("0").is_err());
        assert_eq!(
            daily_cap("140,5-5=1").unwrap_err().to_string(),
            "--power-cap-mw: window '5-5=1' needs hours 0–24 with FROM ≠ TO"
        );
    }

    #[test]
    fn power_limits_parse_and_validate() {
        let l = power_limits("normal=0.9,low=0.5").unwrap();
        assert_eq!((l.high, l.normal, l.low), (1.0, 0.9, 0.5));
        assert_eq!(
            power_limits("mid=0.5").unwrap_err().to_string(),
            "--power-limits: unknown QoS 'mid' (high, normal, low)"
        );
        assert!(power_limits("low=0.1").is_err());
    }
}

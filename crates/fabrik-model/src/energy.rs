//! Energy signals and the models that turn IT power into grid power: electricity price,
//! outside temperature and a temperature-dependent PUE, on-site renewables, a battery, GPU power
//! limits with their throughput curve, and network/storage overhead.
//!
//! The synthetic series are documented shapes, not data: their annual means match the reference
//! figures (../shared/reference/hardware-and-energy.md) where it has one, and their daily and
//! seasonal shapes follow solar and wind. Real series come in through `grid::read_hourly_csv`.

use crate::grid::{Hourly, Zone};
use serde::{Deserialize, Serialize};
use std::f64::consts::{PI, TAU};

/// Solar output over the day (0 at night, 1 at noon) and its seasonal strength (summer 1.5×,
/// winter 0.5×), for hour `h` from 1 January 00:00 UTC.
fn sun(h: usize) -> f64 {
    let hour = (h % 24) as f64;
    let day = h as f64 / 24.0;
    let daily = if (6.0..18.0).contains(&hour) { (PI * (hour - 6.0) / 12.0).sin() } else { 0.0 };
    daily * (1.0 - 0.5 * (TAU * (day - 15.0) / 365.0).cos())
}

/// Wind output in [0, 1]: multi-day swings (two incommensurate sine waves; the same weather as
/// the carbon-intensity profile's wind term), stronger in winter.
fn wind(h: usize) -> f64 {
    let day = h as f64 / 24.0;
    let swing = (TAU * day / 4.3).sin() * (TAU * day / 11.7).sin();
    let season = 1.0 + 0.3 * (TAU * (day - 15.0) / 365.0).cos();
    ((0.5 - 0.5 * swing) * season / 1.3).clamp(0.0, 1.0)
}

/// Scales `raw` over `hours` so that its mean over a whole year is `mean`.
fn with_annual_mean(mean: f64, hours: usize, raw: impl Fn(usize) -> f64) -> Hourly {
    let year = (0..8760).map(&raw).sum::<f64>() / 8760.0;
    let k = if year > 0.0 { mean / year } else { 0.0 };
    Hourly { values: (0..hours.max(1)).map(|h| raw(h) * k).collect() }
}

/// A synthetic hourly day-ahead price, €/MWh, whose annual mean is the zone's industrial price.
/// Shape (ours): cheaper when the sun shines and the wind blows (merit order), an evening peak
/// 17–20 h, dearer in winter. Where solar is large (DE) the midday dip is deep.
pub fn synthetic_price(zone: &Zone, hours: usize) -> Hourly {
    let solar = if zone.code == "DE" { 0.45 } else { 0.25 };
    with_annual_mean(zone.price_eur_per_mwh, hours, |h| {
        let hour = h % 24;
        let evening = if (17..21).contains(&hour) { 0.25 } else { 0.0 };
        let winter = 0.1 * (TAU * (h as f64 / 24.0 - 15.0) / 365.0).cos();
        (1.0 - solar * sun(h) / 1.5 - 0.3 * (wind(h) - 0.5) + evening + winter).max(0.05)
    })
}

/// Outside temperature model of a zone, °C: annual mean, seasonal and daily amplitudes.
/// Assumptions (climate normals rounded; not in the reference).
pub fn climate(zone: &Zone) -> (f64, f64, f64) {
    match zone.code {
        "DE" => (9.5, 9.0, 4.0),
        "FR" => (12.5, 8.0, 5.0),
        "SE" => (7.0, 10.0, 3.5),
        "PL" => (8.5, 10.0, 4.5),
        "US" => (13.0, 11.0, 6.0),
        _ => (10.0, 9.0, 4.5),
    }
}

/// A synthetic hourly outside temperature, °C: coldest mid-January and at 03:00, warmest
/// mid-July and at 15:00.
pub fn synthetic_temperature(zone: &Zone, hours: usize) -> Hourly {
    let (mean, seasonal, daily) = climate(zone);
    Hourly {
        values: (0..hours.max(1))
            .map(|h| {
                let day = h as f64 / 24.0;
                let hour = (h % 24) as f64;
                mean - seasonal * (TAU * (day - 15.0) / 365.0).cos() - daily * (TAU * (hour - 3.0) / 24.0).cos()
            })
            .collect(),
    }
}

/// PUE as a function of outside temperature: free cooling up to `free_cooling_c`, then chillers
/// add `per_degree` per °C (a simple linear model; with `per_degree` 0 the PUE is constant).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PueModel {
    pub base: f64,
    pub free_cooling_c: f64,
    pub per_degree: f64,
}

impl PueModel {
    pub fn constant(pue: f64) -> PueModel {
        PueModel { base: pue, free_cooling_c: 0.0, per_degree: 0.0 }
    }
    /// A new build (Uptime Institute: new builds ≤ 1.3) with free cooling up to 18 °C and
    /// +0.01 per °C above (our assumption): 1.15 most of the year in Germany, ~1.27 at 30 °C.
    pub fn temperature_dependent() -> PueModel {
        PueModel { base: 1.15, free_cooling_c: 18.0, per_degree: 0.01 }
    }
    pub fn at(&self, outside_c: f64) -> f64 {
        self.base + self.per_degree * (outside_c - self.free_cooling_c).max(0.0)
    }
    pub fn validate(&self) -> Result<(), String> {
        if !(self.base.is_finite() && self.base >= 1.0) {
            return Err(format!("PUE must be at least 1, got {}", self.base));
        }
        if !(self.per_degree.is_finite() && self.per_degree >= 0.0) {
            return Err(format!("PUE per degree must be zero or positive, got {}", self.per_degree));
        }
        Ok(())
    }
}

/// On-site renewables of the given nameplate (MW of solar, MW of wind) as hourly output, MW.
/// Capacity factors (assumptions for central Europe): solar ~11%, wind ~25% over a year.
pub fn synthetic_renewables(solar_mw: f64, wind_mw: f64, hours: usize) -> Hourly {
    let s = with_annual_mean(0.11, hours, sun);
    let w = with_annual_mean(0.25, hours, wind);
    Hourly {
        values: s.values.iter().zip(&w.values).map(|(a, b)| solar_mw * a.min(1.0) + wind_mw * b.min(1.0)).collect(),
    }
}

/// An on-site battery.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Battery {
    pub capacity_mwh: f64,
    pub power_mw: f64,
    /// Round-trip efficiency, charged on the way in.
    pub round_trip: f64,
}

impl Battery {
    pub fn validate(&self) -> Result<(), String> {
        if !(self.capacity_mwh.is_finite() && self.capacity_mwh > 0.0) {
            return Err(format!("battery capacity must be positive, got {} MWh", self.capacity_mwh));
        }
        if !(self.power_mw.is_finite() && self.power_mw > 0.0) {
            return Err(format!("battery power must be positive, got {} MW", self.power_mw));
        }
        if !(self.round_trip > 0.0 && self.round_trip <= 1.0) {
            return Err(format!("battery round-trip efficiency must be in (0, 1], got {}", self.round_trip));
        }
        Ok(())
    }
}

/// Relative throughput of a GPU running at `fraction` of its training power draw above idle:
/// 1 − (1 − f)², concave — a 20% cut costs 4% speed, a 40% cut 16%. Our assumption, shaped after
/// published power-capping measurements (a moderate cap costs little speed); not in the reference.
pub fn speed_at_power(fraction: f64) -> f64 {
    let f = fraction.clamp(0.0, 1.0);
    1.0 - (1.0 - f) * (1.0 - f)
}

/// Network (switches, optics) and storage draw per GPU, W, always on. Assumption: ~4% of an
/// H100's 1,275 W rating with host — a leaf/spine fabric and parallel file system at this scale.
pub const NETWORK_STORAGE_W_PER_GPU: f64 = 50.0;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::find;

    #[test]
    fn synthetic_price_keeps_the_annual_mean_and_is_cheap_at_noon_and_dear_in_the_evening() {
        let de = find("DE").unwrap();
        let p = synthetic_price(de, 8760);
        assert!((p.mean() - 166.5).abs() < 1e-9);
        // 1 January: noon below 19:00
        assert!(p.values[12] < p.values[19]);
        assert!(p.values.iter().all(|&x| x > 0.0));
    }

    #[test]
    fn temperature_peaks_in_july_afternoons_and_drives_the_pue() {
        let de = find("DE").unwrap();
        let t = synthetic_temperature(de, 8760);
        assert!((t.mean() - 9.5).abs() < 0.05, "annual mean {}", t.mean());
        // 16 January 03:00: 9.5 − 9 − 4 = −3.5 °C; 16 July 15:00: 9.5 + 9 + 4 = 22.5 °C
        let jan = 15 * 24 + 3;
        assert!((t.values[jan] + 3.5).abs() < 1e-3, "{}", t.values[jan]);
        let jul = 197 * 24 + 15;
        assert!((t.values[jul] - 22.5).abs() < 1e-3, "{}", t.values[jul]);
        let pue = PueModel::temperature_dependent();
        assert_eq!(pue.at(10.0), 1.15);
        assert!((pue.at(30.0) - 1.27).abs() < 1e-12);
        assert_eq!(PueModel::constant(1.25).at(40.0), 1.25);
        assert!(PueModel { base: 0.9, free_cooling_c: 0.0, per_degree: 0.0 }.validate().is_err());
    }

    #[test]
    fn renewables_have_their_capacity_factors_and_no_sun_at_night() {
        let r = synthetic_renewables(100.0, 0.0, 8760);
        assert!((r.mean() - 11.0).abs() < 1e-9);
        assert_eq!(r.values[2], 0.0);
        assert!(r.values.iter().all(|&x| x <= 100.0));
        let w = synthetic_renewables(0.0, 10.0, 8760);
        assert!((w.mean() - 2.5).abs() < 0.01);
    }

    #[test]
    fn power_limits_cost_little_speed_at_first() {
        assert_eq!(speed_at_power(1.0), 1.0);
        assert!((speed_at_power(0.8) - 0.96).abs() < 1e-12);
        assert!((speed_at_power(0.6) - 0.84).abs() < 1e-12);
        // concave: the second 20% cut costs more than the first
        assert!((1.0 - speed_at_power(0.8)) < (speed_at_power(0.8) - speed_at_power(0.6)));
        let b = Battery { capacity_mwh: 10.0, power_mw: 5.0, round_trip: 1.2 };
        assert_eq!(b.validate().unwrap_err(), "battery round-trip efficiency must be in (0, 1], got 1.2");
    }
}

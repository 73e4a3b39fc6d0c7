//! Electricity grids: annual mean carbon intensity and industrial price per zone, each with its
//! source (../shared/reference/hardware-and-energy.md).

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Zone {
    pub code: &'static str,
    pub name: &'static str,
    /// Annual mean grid carbon intensity, gCO2/kWh.
    pub gco2_per_kwh: f64,
    pub carbon_source: &'static str,
    /// Industrial electricity price, €/MWh.
    pub price_eur_per_mwh: f64,
    pub price_source: &'static str,
}

const SDES: &str = "SDES, Key figures on climate 2023 (IEA data), 2021";
/// New industrial contracts, Germany, July 2024: 16.65 ct/kWh (BDEW via Statista).
const DE_PRICE: f64 = 166.5;
const DE_PRICE_SRC: &str = "BDEW via Statista: new industrial contracts, July 2024, 16.65 ct/kWh";
/// The EU-27 average for non-household consumers, second half of 2023, excluding VAT and other
/// recoverable taxes: €0.20/kWh (Eurostat nrg_pc_205, as reported by Eurostat's Statistics
/// Explained and qery.no's Eurostat tracker). Per-country figures of that table are not in the
/// reference nor in the pages this project can read, so the other zones use this average (said
/// in their source) rather than inventing figures.
const EU_PRICE: f64 = 200.0;
const EU_PRICE_SRC: &str = "Eurostat nrg_pc_205: EU-27 non-household average, H2 2023, EUR 0.20/kWh excl. VAT";
const NO_PRICE: &str =
    "assumption: no per-country figure available here (Eurostat nrg_pc_205's table is not in the reference); EU-27 non-household average used";

pub const ZONES: &[Zone] = &[
    Zone {
        code: "EU",
        name: "EU-27",
        gco2_per_kwh: 264.0,
        carbon_source: SDES,
        price_eur_per_mwh: EU_PRICE,
        price_source: EU_PRICE_SRC,
    },
    Zone {
        code: "DE",
        name: "Germany",
        gco2_per_kwh: 384.0,
        carbon_source: SDES,
        price_eur_per_mwh: DE_PRICE,
        price_source: DE_PRICE_SRC,
    },
    Zone {
        code: "FR",
        name: "France",
        gco2_per_kwh: 60.0,
        carbon_source: SDES,
        price_eur_per_mwh: EU_PRICE,
        price_source: NO_PRICE,
    },
    Zone {
        code: "SE",
        name: "Sweden",
        gco2_per_kwh: 34.0,
        carbon_source: SDES,
        price_eur_per_mwh: EU_PRICE,
        price_source: NO_PRICE,
    },
    Zone {
        code: "PL",
        name: "Poland",
        gco2_per_kwh: 748.0,
        carbon_source: SDES,
        price_eur_per_mwh: EU_PRICE,
        price_source: NO_PRICE,
    },
    Zone {
        code: "US",
        name: "United States",
        gco2_per_kwh: 429.0,
        carbon_source: "LLaMA paper / Patterson et al. 2021 (upper end of 385-429)",
        price_eur_per_mwh: EU_PRICE,
        price_source: NO_PRICE,
    },
];

/// Looks a zone up by code, case-insensitively.
pub fn find(code: &str) -> Option<&'static Zone> {
    ZONES.iter().find(|z| z.code.eq_ignore_ascii_case(code))
}

/// An hourly series from the run's start (carbon intensity in gCO2/kWh, a price in €/MWh …);
/// it repeats after its last hour.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hourly {
    pub values: Vec<f64>,
}

impl Hourly {
    pub fn constant(v: f64) -> Hourly {
        Hourly { values: vec![v] }
    }
    pub fn at(&self, t: crate::SimTime) -> f64 {
        self.values[(t.0 / 3600) as usize % self.values.len()]
    }
    pub fn mean(&self) -> f64 {
        self.values.iter().sum::<f64>() / self.values.len() as f64
    }
    /// The same series re-indexed for absolute (Unix) time: `at(t)` with a Unix `t` reads the
    /// value for `t − start_unix`, where `start_unix` is the series' first hour (e.g. 1 January
    /// 00:00 UTC for the synthetic profiles). For the live control plane, whose clock is Unix time.
    pub fn aligned_to_unix(&self, start_unix: u64) -> Hourly {
        let n = self.values.len();
        let shift = (start_unix / 3600) as usize % n;
        Hourly { values: (0..n).map(|k| self.values[(k + n - shift) % n]).collect() }
    }
    /// Minimum over [from, to) in whole hours (at least the hour of `from`); at most one full
    /// cycle of the series is scanned.
    pub fn min_between(&self, from: crate::SimTime, to: crate::SimTime) -> f64 {
        if self.values.len() == 1 {
            return self.values[0];
        }
        let (a, b) = (from.0 / 3600, (to.0.div_ceil(3600)).max(from.0 / 3600 + 1));
        let b = b.min(a + self.values.len() as u64);
        (a..b).map(|h| self.values[h as usize % self.values.len()]).fold(f64::INFINITY, f64::min)
    }
    /// Mean over [from, to) in whole hours (at least the hour of `from`).
    pub fn mean_between(&self, from: crate::SimTime, to: crate::SimTime) -> f64 {
        let (a, b) = (from.0 / 3600, (to.0.div_ceil(3600)).max(from.0 / 3600 + 1));
        (a..b).map(|h| self.values[h as usize % self.values.len()]).sum::<f64>() / (b - a) as f64
    }
}

/// A documented synthetic hourly carbon intensity for a zone over `hours`, whose mean over a
/// year equals the zone's published annual mean. The shape is ours, not from the reference:
/// a midday solar dip (deep where solar is large: DE), a winter high, and multi-day wind swings
/// (two incommensurate sine waves, deterministic).
pub fn synthetic_intensity(zone: &Zone, hours: usize) -> Hourly {
    let (solar, winter, wind) = match zone.code {
        "DE" => (0.35, 0.15, 0.25),
        "FR" => (0.05, 0.30, 0.05),
        "SE" => (0.05, 0.10, 0.10),
        "PL" => (0.15, 0.05, 0.10),
        _ => (0.20, 0.15, 0.15),
    };
    let raw = |h: usize| {
        let hour = (h % 24) as f64;
        let day = h as f64 / 24.0;
        let sun = if (6.0..18.0).contains(&hour) { (std::f64::consts::PI * (hour - 6.0) / 12.0).sin() } else { 0.0 };
        let season = 1.0 + winter * (std::f64::consts::TAU * (day - 15.0) / 365.0).cos();
        let w = 1.0 + wind * (std::f64::consts::TAU * day / 4.3).sin() * (std::f64::consts::TAU * day / 11.7).sin();
        (1.0 - solar * sun) * season * w
    };
    let year_mean = (0..8760).map(raw).sum::<f64>() / 8760.0;
    let k = zone.gco2_per_kwh / year_mean;
    Hourly { values: (0..hours.max(1)).map(|h| raw(h) * k).collect() }
}

/// The longest hourly series a CSV may describe: 20 years.
pub const MAX_SERIES_HOURS: usize = 20 * 366 * 24;

/// Reads an hourly series from CSV as exported by ENTSO-E or Electricity Maps: a time column
/// (Unix seconds or a date-time; the first column unless one is named `datetime`, `timestamp` or
/// `time`) and a value column (`column`, or the first other column that parses as a number).
/// Values in the same hour are averaged; missing hours repeat the previous value.
pub fn read_hourly_csv(text: &str, origin: &str, column: Option<&str>) -> Result<Hourly, String> {
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let (_, header) = lines.next().ok_or(format!("{origin}: empty file"))?;
    let names: Vec<String> = header.split(',').map(|h| h.trim().trim_matches('"').to_string()).collect();
    let t_col = names
        .iter()
        .position(|n| ["datetime", "timestamp", "time"].contains(&n.to_ascii_lowercase().as_str()))
        .or_else(|| names.iter().position(|n| n.to_ascii_lowercase().contains("datetime")))
        .unwrap_or(0);
    let mut v_col = match column {
        Some(c) => Some(names.iter().position(|n| n == c).ok_or(format!("{origin}: no column '{c}'"))?),
        None => None,
    };
    let mut points: Vec<(u64, f64)> = Vec::new();
    for (i, line) in lines {
        let cells: Vec<&str> = line.split(',').map(|c| c.trim().trim_matches('"')).collect();
        let t = cells.get(t_col).copied().unwrap_or("");
        let time = t
            .parse::<f64>()
            .ok()
            .map(|x| x as u64)
            .or_else(|| crate::units::parse_datetime(t))
            .ok_or(format!("{origin}: line {}: '{t}' is not a time", i + 1))?;
        let vc = match v_col {
            Some(c) => c,
            None => {
                let c = (0..cells.len())
                    .find(|&c| c != t_col && cells[c].parse::<f64>().is_ok())
                    .ok_or(format!("{origin}: line {}: no numeric column", i + 1))?;
                v_col = Some(c);
                c
            }
        };
        let v = cells.get(vc).copied().unwrap_or("");
        let x: f64 = v.parse().map_err(|_| format!("{origin}: line {}: '{v}' is not a number", i + 1))?;
        if !x.is_finite() || x < 0.0 {
            return Err(format!("{origin}: line {}: '{v}' must not be negative", i + 1));
        }
        points.push((time, x));
    }
    let t0 = points.iter().map(|p| p.0).min().ok_or(format!("{origin}: no rows"))?;
    let hours = points.iter().map(|p| ((p.0 - t0) / 3600) as usize).max().unwrap_or(0) + 1;
    // One value per hour of the span: a stray far-off time must not make that unbounded.
    if hours > MAX_SERIES_HOURS {
        return Err(format!(
            "{origin}: the times span {hours} hours; an hourly series may span at most {MAX_SERIES_HOURS} (20 years)"
        ));
    }
    let mut sum = vec![0.0; hours];
    let mut n = vec![0u32; hours];
    for (t, x) in points {
        let h = ((t - t0) / 3600) as usize;
        sum[h] += x;
        n[h] += 1;
    }
    let mut values = Vec::with_capacity(hours);
    let mut last = 0.0;
    for h in 0..hours {
        if n[h] > 0 {
            last = sum[h] / f64::from(n[h]);
        }
        values.push(last);
    }
    Ok(Hourly { values })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_name_their_source_and_say_where_they_are_an_average() {
        // Germany's from BDEW (16.65 ct/kWh), the EU's from Eurostat (0.20 €/kWh); the others
        // say that they use the EU average
        let price = |z: &str| (find(z).unwrap().price_eur_per_mwh, find(z).unwrap().price_source);
        assert_eq!(price("DE").0, 166.5);
        assert_eq!(price("EU"), (200.0, EU_PRICE_SRC));
        for z in ["FR", "SE", "PL", "US"] {
            assert_eq!(price(z), (200.0, NO_PRICE), "{z}");
        }
    }

    #[test]
    fn synthetic_profiles_keep_the_annual_mean_and_dip_at_noon_in_germany() {
        let de = find("DE").unwrap();
        let y = synthetic_intensity(de, 8760);
        assert!((y.mean() - 384.0).abs() < 1e-9);
        // on day 0, noon is cleaner than midnight (solar)
        assert!(y.values[12] < 0.8 * y.values[0]);
        let fr = synthetic_intensity(find("FR").unwrap(), 8760);
        assert!((fr.mean() - 60.0).abs() < 1e-9);
        assert_eq!(y.at(crate::SimTime(8760 * 3600 + 7200)), y.values[2], "the series repeats");
    }

    #[test]
    fn hourly_csv_from_grid_exports() {
        let t = "Datetime (UTC),Country,Carbon Intensity gCO₂eq/kWh (direct)\n\
                 2024-01-01 00:00:00,DE,400\n2024-01-01 00:30:00,DE,420\n2024-01-01 02:00:00,DE,300\n";
        let h = read_hourly_csv(t, "de.csv", None).unwrap();
        assert_eq!(h.values, vec![410.0, 410.0, 300.0]);
        assert_eq!(h.mean_between(crate::SimTime(0), crate::SimTime(7200)), 410.0);
        assert_eq!(h.min_between(crate::SimTime(3599), crate::SimTime(7201)), 300.0);
        assert_eq!(h.min_between(crate::SimTime(3600), crate::SimTime(3600)), 410.0);
        // repeats: hour 3 is hour 0 again
        assert_eq!(h.min_between(crate::SimTime(3 * 3600), crate::SimTime(5 * 3600)), 410.0);
        // aligned to a Unix start: 2024-01-01 00:00 UTC reads hour 0, five hours later hour 2
        // (the series repeats every 3 hours)
        let start = crate::units::parse_datetime("2024-01-01 00:00:00").unwrap();
        let a = h.aligned_to_unix(start);
        assert_eq!(a.at(crate::SimTime(start)), 410.0);
        assert_eq!(a.at(crate::SimTime(start + 2 * 3600)), 300.0);
        assert_eq!(a.at(crate::SimTime(start + 5 * 3600)), 300.0);
        let e = read_hourly_csv("time,v\n0,abc\n", "x.csv", None).unwrap_err();
        assert_eq!(e, "x.csv: line 2: no numeric column");
        let e = read_hourly_csv("time,v\nnow,5\n", "x.csv", Some("v")).unwrap_err();
        assert_eq!(e, "x.csv: line 2: 'now' is not a time");
    }
}

//! Units as types. Virtual and wall-clock time are both whole seconds since an epoch chosen by
//! the caller (the twin: start of the simulation; the server: the Unix epoch).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::ops::{Add, AddAssign, Sub};

/// A point in time, in whole seconds since the run's epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SimTime(pub u64);

/// A span of time in whole seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secs(pub u64);

impl SimTime {
    pub const ZERO: SimTime = SimTime(0);
    pub const MAX: SimTime = SimTime(u64::MAX);

    /// Time elapsed since `earlier`, zero if `earlier` is later.
    pub fn since(self, earlier: SimTime) -> Secs {
        Secs(self.0.saturating_sub(earlier.0))
    }
    pub fn hours(self) -> f64 {
        self.0 as f64 / 3600.0
    }

    /// Reads the time as Unix seconds (the live control plane's epoch): `2026-11-23 21:08:33Z`.
    pub fn unix_utc(self) -> String {
        // Howard Hinnant's days-to-civil algorithm.
        let z = (self.0 / 86_400) as i64 + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + i64::from(m <= 2);
        let s = self.0 % 86_400;
        format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}Z", s / 3600, (s / 60) % 60, s % 60)
    }
}

impl Secs {
    pub const HOUR: Secs = Secs(3600);
    pub const DAY: Secs = Secs(86_400);
    pub fn hours(self) -> f64 {
        self.0 as f64 / 3600.0
    }
    pub fn from_hours(h: f64) -> Secs {
        Secs((h * 3600.0).round().max(0.0) as u64)
    }
}

impl Add<Secs> for SimTime {
    type Output = SimTime;
    fn add(self, rhs: Secs) -> SimTime {
        SimTime(self.0.saturating_add(rhs.0))
    }
}
impl AddAssign<Secs> for SimTime {
    fn add_assign(&mut self, rhs: Secs) {
        self.0 = self.0.saturating_add(rhs.0);
    }
}
impl Sub<SimTime> for SimTime {
    type Output = Secs;
    fn sub(self, rhs: SimTime) -> Secs {
        self.since(rhs)
    }
}
impl Add for Secs {
    type Output = Secs;
    fn add(self, rhs: Secs) -> Secs {
        Secs(self.0.saturating_add(rhs.0))
    }
}

impl fmt::Display for SimTime {
    /// `d3 04:05:06` — day and time of day since the epoch.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        write!(f, "d{} {:02}:{:02}:{:02}", s / 86_400, (s / 3600) % 24, (s / 60) % 60, s % 60)
    }
}

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        if s >= 86_400 {
            write!(f, "{:.1}d", s as f64 / 86_400.0)
        } else if s >= 3600 {
            write!(f, "{:.1}h", s as f64 / 3600.0)
        } else if s >= 60 {
            write!(f, "{:.1}m", s as f64 / 60.0)
        } else {
            write!(f, "{s}s")
        }
    }
}

/// Parses `3600`, `90s`, `45m`, `2h` or `1.5d` into whole seconds.
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, 's')) => (&s[..i], 1.0),
        Some((i, 'm')) => (&s[..i], 60.0),
        Some((i, 'h')) => (&s[..i], 3600.0),
        Some((i, 'd')) => (&s[..i], 86_400.0),
        _ => (s, 1.0),
    };
    let x: f64 = num.trim().parse().map_err(|_| format!("'{s}' is not a duration (e.g. 3600, 90m, 2h, 1.5d)"))?;
    if !x.is_finite() || x < 0.0 {
        return Err(format!("'{s}' must not be negative"));
    }
    Ok((x * mult).round() as u64)
}

/// `YYYY-MM-DD HH:MM:SS` (or with a `T`) as seconds since the Unix epoch.
pub fn parse_datetime(s: &str) -> Option<u64> {
    let s = s.trim();
    let (date, time) = s.split_once([' ', 'T'])?;
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, m, dd) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.trim_end_matches('Z').split(':').map(|x| x.split('.').next().unwrap_or("").parse::<i64>().ok());
    let (h, mi, se) = (t.next()??, t.next()??, t.next().flatten().unwrap_or(0));
    if h < 0 || mi < 0 || se < 0 {
        return None;
    }
    if !(1..=9999).contains(&y) || !(1..=12).contains(&m) || !(1..=31).contains(&dd) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    // Howard Hinnant's days-from-civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + dd - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + h * 3600 + mi * 60 + se).ok()
}

/// Electrical power.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Watts(pub f64);

impl Watts {
    pub fn megawatts(self) -> f64 {
        self.0 / 1e6
    }
}
impl Add for Watts {
    type Output = Watts;
    fn add(self, rhs: Watts) -> Watts {
        Watts(self.0 + rhs.0)
    }
}
impl std::ops::Mul<f64> for Watts {
    type Output = Watts;
    fn mul(self, rhs: f64) -> Watts {
        Watts(self.0 * rhs)
    }
}

/// Energy.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Joules(pub f64);

impl Joules {
    pub fn of(power: Watts, span: Secs) -> Joules {
        Joules(power.0 * span.0 as f64)
    }
    pub fn megawatt_hours(self) -> f64 {
        self.0 / 3.6e9
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_arithmetic_saturates_instead_of_wrapping() {
        assert_eq!(SimTime(10) - SimTime(25), Secs(0));
        assert_eq!(SimTime(u64::MAX - 1) + Secs(5), SimTime::MAX);
        assert_eq!(SimTime(90_061).to_string(), "d1 01:01:01");
        assert_eq!(parse_duration("1.5d"), Ok(129_600));
        assert_eq!(parse_duration("90m"), Ok(5400));
        assert!(parse_duration("-1h").unwrap_err().contains("negative"));
        assert_eq!(SimTime(0).unix_utc(), "1970-01-01 00:00:00Z");
        // 2024-02-29 12:00:00 UTC = 1,709,208,000
        assert_eq!(SimTime(1_709_208_000).unix_utc(), "2024-02-29 12:00:00Z");
    }

    #[test]
    fn energy_of_one_h100_for_an_hour_is_0_0007_mwh() {
        // 700 W × 3600 s = 2.52 MJ = 0.7 kWh = 0.0007 MWh
        let e = Joules::of(Watts(700.0), Secs::HOUR);
        assert_eq!(e.0, 2_520_000.0);
        assert!((e.megawatt_hours() - 0.0007).abs() < 1e-12);
    }
}

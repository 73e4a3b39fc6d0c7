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
        match i64::try_from(self.0).ok().and_then(|s| jiff::Timestamp::from_second(s).ok()) {
            Some(ts) => ts.strftime("%Y-%m-%d %H:%M:%SZ").to_string(),
            None => format!("Unix {}", self.0),
        }
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

/// Parses a duration into whole seconds, the ways people write one:
/// - a number of seconds, or a number with a unit: `3600`, `90s`, `45m`, `2h`, `1.5d`;
/// - Slurm's `[D-]HH:MM:SS`, `MM:SS`, `D-HH` and `D-HH:MM` (`2-12:00:00`, `30:00`);
/// - spans with several units, as humantime and jiff write them: `1h 30m`, `1h30m`,
///   `2 days 4 hours`, `15min`, `3 weeks`, and ISO 8601's `PT1H30M` (a day is 24 hours).
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let err = || format!("'{s}' is not a duration (e.g. 3600, 90s, 45m, 1h 30m, 1.5d, 2-12:00:00, 30:00)");
    let (num, mult) = match s.char_indices().last() {
        Some((i, 's')) => (&s[..i], 1.0),
        Some((i, 'm')) => (&s[..i], 60.0),
        Some((i, 'h')) => (&s[..i], 3600.0),
        Some((i, 'd')) => (&s[..i], 86_400.0),
        _ => (s, 1.0),
    };
    if let Ok(x) = num.trim().parse::<f64>() {
        if !x.is_finite() || x < 0.0 {
            return Err(format!("'{s}' must not be negative"));
        }
        return Ok((x * mult).round() as u64);
    }
    if s.contains(':') || s.contains('-') {
        return slurm_duration(s).ok_or_else(err);
    }
    let span: jiff::Span = s.parse().map_err(|_| err())?;
    let secs = span.total(jiff::SpanTotal::from(jiff::Unit::Second).days_are_24_hours()).map_err(|_| err())?;
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("'{s}' must not be negative"));
    }
    Ok(secs.round() as u64)
}

/// Slurm's time limits: `MM:SS`, `HH:MM:SS`, `D-HH`, `D-HH:MM`, `D-HH:MM:SS`.
fn slurm_duration(s: &str) -> Option<u64> {
    let num = |x: &str| -> Option<u64> {
        (!x.is_empty() && x.bytes().all(|b| b.is_ascii_digit())).then(|| x.parse().ok()).flatten()
    };
    let (days, rest) = match s.split_once('-') {
        Some((d, r)) => (num(d)?, r),
        None => (0, s),
    };
    let f: Vec<u64> = rest.split(':').map(num).collect::<Option<_>>()?;
    let (h, m, sec) = match (s.contains('-'), f.as_slice()) {
        (true, [h]) => (*h, 0, 0),
        (true, [h, m]) => (*h, *m, 0),
        (_, [h, m, sec]) => (*h, *m, *sec),
        (false, [m, sec]) => (0, *m, *sec),
        _ => return None,
    };
    // every field after the leading one stays below its unit's next: hours < 24 after days,
    // minutes and seconds < 60 after a larger field
    let leading_minutes = !s.contains('-') && f.len() == 2;
    if (s.contains('-') && h >= 24) || (!leading_minutes && m >= 60) || sec >= 60 {
        return None;
    }
    days.checked_mul(86_400)?.checked_add(h.checked_mul(3600)?)?.checked_add(m.checked_mul(60)?)?.checked_add(sec)
}

/// A date and time as seconds since the Unix epoch: RFC 3339 / ISO 8601 with a zone
/// (`2026-12-04T18:00:00Z`, `…+01:00`), or without one, read as UTC (`2026-12-04 18:00:00`,
/// `2026-12-04T18:00`, `2026-12-04`). Fractions of a second are dropped.
pub fn parse_datetime(s: &str) -> Option<u64> {
    let s = s.trim();
    let secs = if let Ok(ts) = s.parse::<jiff::Timestamp>() {
        ts.as_second()
    } else if let Ok(dt) = s.parse::<jiff::civil::DateTime>() {
        dt.to_zoned(jiff::tz::TimeZone::UTC).ok()?.timestamp().as_second()
    } else {
        let d: jiff::civil::Date = s.parse().ok()?;
        d.to_zoned(jiff::tz::TimeZone::UTC).ok()?.timestamp().as_second()
    };
    u64::try_from(secs).ok()
}

/// A point in time as Unix seconds, the ways people write one: Unix seconds (`1796400000`),
/// a date and time (see [`parse_datetime`]), `now`, or an offset from `now` (`now+2h`, `+1d`,
/// `now+1h 30m`, `now-10m`).
pub fn parse_time(s: &str, now: u64) -> Result<u64, String> {
    let t = s.trim();
    let err = || {
        format!("'{t}' is not a point in time (Unix seconds, 2026-12-04T18:00:00Z, 2026-12-04 18:00 as UTC, now+2h)")
    };
    if let Ok(x) = t.parse::<u64>() {
        return Ok(x);
    }
    let rel = t.strip_prefix("now").unwrap_or(t).trim_start();
    if rel.is_empty() {
        return Ok(now);
    }
    if let Some(d) = rel.strip_prefix('+') {
        return parse_duration(d).map(|d| now.saturating_add(d)).map_err(|_| err());
    }
    if let Some(d) = rel.strip_prefix('-').filter(|_| t.starts_with("now")) {
        return parse_duration(d).map(|d| now.saturating_sub(d)).map_err(|_| err());
    }
    parse_datetime(t).ok_or_else(err)
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
    fn durations_the_ways_people_write_them() {
        for (s, want) in [
            ("3600", 3600),
            ("90s", 90),
            ("45m", 2700),
            ("1.5d", 129_600),
            ("1h 30m", 5400),
            ("1h30m", 5400),
            ("2 days 4 hours", 187_200),
            ("15min", 900),
            ("PT1H30M", 5400),
            ("3 weeks", 1_814_400),
            ("30:00", 1800),
            ("01:30:00", 5400),
            ("100:00:00", 360_000),
            ("2-12:00:00", 216_000),
            ("1-06", 108_000),
            ("1-06:30", 109_800),
        ] {
            assert_eq!(parse_duration(s), Ok(want), "{s}");
        }
        assert_eq!(parse_duration("90:00"), Ok(5400), "Slurm's MM:SS may run past 60 minutes");
        for bad in ["", "soon", "1-", "-5", "1:2:3:4", "1-24:00:00", "10:75", "1h -30m", "12:60:00", "1-06:75"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert!(parse_duration("-5").unwrap_err().contains("negative"));
    }

    #[test]
    fn points_in_time_the_ways_people_write_them() {
        // 2026-12-04 18:00:00 UTC
        let t = 1_796_407_200;
        for s in [
            "2026-12-04T18:00:00Z",
            "2026-12-04T19:00:00+01:00",
            "2026-12-04 18:00:00",
            "2026-12-04T18:00",
            "1796407200",
        ] {
            assert_eq!(parse_time(s, 0), Ok(t), "{s}");
        }
        assert_eq!(parse_time("2026-12-04", 0), Ok(t - 18 * 3600));
        assert_eq!(parse_time("now", t), Ok(t));
        assert_eq!(parse_time("now+2h", t), Ok(t + 7200));
        assert_eq!(parse_time("+1h 30m", t), Ok(t + 5400));
        assert_eq!(parse_time("now-10m", t), Ok(t - 600));
        for bad in ["tomorrow", "2026-13-01", "now+", "now+soon", "-10m"] {
            assert!(parse_time(bad, t).is_err(), "{bad}");
        }
        assert_eq!(SimTime(t).unix_utc(), "2026-12-04 18:00:00Z");
        assert_eq!(SimTime(u64::MAX).unix_utc(), format!("Unix {}", u64::MAX));
    }

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

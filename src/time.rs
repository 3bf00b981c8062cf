//! Simulated time: integer nanoseconds since the start of the scenario.
//!
//! Floats never enter the model; they appear only when a report converts to seconds.

use std::fmt;
use std::ops::{Add, Sub};

/// A point in simulated time, in nanoseconds since the scenario started.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct Instant(pub u64);

/// A span of simulated time, in nanoseconds.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct Duration(pub u64);

impl Duration {
    pub const ZERO: Duration = Duration(0);
    pub const fn from_nanos(ns: u64) -> Self {
        Duration(ns)
    }
    pub const fn from_micros(us: u64) -> Self {
        Duration(us * 1_000)
    }
    pub const fn from_millis(ms: u64) -> Self {
        Duration(ms * 1_000_000)
    }
    pub const fn from_secs(s: u64) -> Self {
        Duration(s * 1_000_000_000)
    }
    pub const fn as_nanos(self) -> u64 {
        self.0
    }
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e9
    }
    pub fn as_millis_f64(self) -> f64 {
        self.0 as f64 / 1e6
    }
    /// Parses a human duration: a decimal number followed by a unit
    /// (`ns`, `us`/`µs`, `ms`, `s`, `m`/`min`, `h`), e.g. `"60s"`, `"1.5ms"`, `"250us"`.
    /// Conversion is exact decimal arithmetic; a value finer than 1 ns is an error.
    pub fn parse(text: &str) -> Result<Duration, DurationError> {
        let t = text.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
            .ok_or(DurationError::NoUnit)?;
        let (num, unit) = (t[..split].replace('_', ""), t[split..].trim());
        let unit_ns: u128 = match unit {
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" | "min" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(DurationError::BadUnit),
        };
        if num.is_empty() || num.matches('.').count() > 1 {
            return Err(DurationError::BadNumber);
        }
        let (int, frac) = num.split_once('.').unwrap_or((&num, ""));
        if int.is_empty() && frac.is_empty() {
            return Err(DurationError::BadNumber);
        }
        let int: u128 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| DurationError::BadNumber)?
        };
        let mut ns = int.checked_mul(unit_ns).ok_or(DurationError::TooLarge)?;
        if !frac.is_empty() {
            let digits = frac.len() as u32;
            if digits > 18 {
                return Err(DurationError::TooPrecise);
            }
            let f: u128 = frac.parse().map_err(|_| DurationError::BadNumber)?;
            let scale = 10u128.pow(digits);
            let part = f * unit_ns;
            if !part.is_multiple_of(scale) {
                return Err(DurationError::TooPrecise);
            }
            ns += part / scale;
        }
        u64::try_from(ns)
            .map(Duration)
            .map_err(|_| DurationError::TooLarge)
    }
}

/// Why a duration string was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DurationError {
    NoUnit,
    BadUnit,
    BadNumber,
    TooPrecise,
    TooLarge,
}

impl DurationError {
    pub const ALLOWED: &'static str =
        "a number with a unit: ns, us, ms, s, m or h (e.g. \"60s\", \"1.5ms\", \"250us\")";
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self {
            DurationError::NoUnit => "no unit",
            DurationError::BadUnit => "unknown unit",
            DurationError::BadNumber => "not a number",
            DurationError::TooPrecise => "finer than 1 ns",
            DurationError::TooLarge => "too large (over 584 years)",
        };
        write!(f, "{what}; expected {}", Self::ALLOWED)
    }
}

impl fmt::Display for Duration {
    /// Prints the largest unit that represents the value exactly: `60s`, `1500us`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = self.0;
        for (unit, name) in [
            (3_600_000_000_000u64, "h"),
            (60_000_000_000, "m"),
            (1_000_000_000, "s"),
            (1_000_000, "ms"),
            (1_000, "us"),
        ] {
            if ns != 0 && ns.is_multiple_of(unit) {
                return write!(f, "{}{name}", ns / unit);
            }
        }
        write!(f, "{ns}ns")
    }
}

impl Instant {
    pub const ZERO: Instant = Instant(0);
    /// Later than every event.
    pub const MAX: Instant = Instant(u64::MAX);
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e9
    }
    pub fn saturating_since(self, earlier: Instant) -> Duration {
        Duration(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        Instant(self.0.saturating_add(d.0))
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, earlier: Instant) -> Duration {
        Duration(self.0 - earlier.0)
    }
}

impl Add for Duration {
    type Output = Duration;
    fn add(self, d: Duration) -> Duration {
        Duration(self.0.saturating_add(d.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_human_durations_exactly() {
        assert_eq!(Duration::parse("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(Duration::parse("15ms"), Ok(Duration::from_millis(15)));
        assert_eq!(Duration::parse("1.5ms"), Ok(Duration::from_micros(1500)));
        assert_eq!(Duration::parse("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(Duration::parse("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(Duration::parse("0.1s"), Ok(Duration::from_millis(100)));
        assert_eq!(Duration::parse("10 s"), Ok(Duration::from_secs(10)));
        assert_eq!(Duration::parse("60"), Err(DurationError::NoUnit));
        assert_eq!(Duration::parse("5 parsecs"), Err(DurationError::BadUnit));
        assert_eq!(Duration::parse("0.5ns"), Err(DurationError::TooPrecise));
        assert_eq!(Duration::parse("1.2.3s"), Err(DurationError::BadNumber));
    }

    #[test]
    fn displays_in_the_largest_exact_unit() {
        assert_eq!(Duration::from_secs(60).to_string(), "1m");
        assert_eq!(Duration::from_millis(1500).to_string(), "1500ms");
        assert_eq!(Duration::from_nanos(7).to_string(), "7ns");
    }
}

//! Human-readable durations: `"250ms"`, `"5s"`, `"1m30s"`, `"1d"`.

use std::time::Duration;

/// Units accepted in a duration string, with their length in nanoseconds.
const UNITS: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
    ("d", 86_400_000_000_000),
];

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// A duration string that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason}")]
pub struct DurationError {
    input: String,
    reason: String,
}

impl DurationError {
    fn new(input: &str, reason: impl Into<String>) -> Self {
        DurationError {
            input: input.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Parses a duration such as `"250ms"`, `"5s"`, `"1m"`, `"1h"`, `"1d"`, `"1m30s"` or
/// `"1.5s"`.
///
/// A duration is one or more `NUMBER UNIT` parts (optionally separated by spaces),
/// added together. Units: `ns`, `us` (or `µs`), `ms`, `s`, `m`, `h`, `d`. A number may
/// have a decimal fraction as long as the result is a whole number of nanoseconds.
/// `"0"` alone is also accepted.
///
/// ```
/// use std::time::Duration;
/// use smartlb_config::parse_duration;
///
/// assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
/// assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
/// assert!(parse_duration("5 seconds").is_err());
/// ```
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    if input.trim().is_empty() {
        return Err(DurationError::new(
            input,
            "empty; write a number and a unit such as \"5s\"",
        ));
    }
    if input == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = input.trim();
    let mut total: u128 = 0;
    while !rest.is_empty() {
        if rest.starts_with('-') {
            return Err(DurationError::new(input, "a duration cannot be negative"));
        }
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_part, after) = rest.split_at(int_len);
        let (frac_part, after) = match after.strip_prefix('.') {
            Some(tail) => {
                let len = tail.bytes().take_while(u8::is_ascii_digit).count();
                tail.split_at(len)
            }
            None => ("", after),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(DurationError::new(
                input,
                format!(
                    "expected a number at {:?}; write a number and a unit such as \"5s\"",
                    rest
                ),
            ));
        }
        let unit_len = after
            .char_indices()
            .find(|&(_, c)| !(c.is_alphabetic()))
            .map_or(after.len(), |(i, _)| i);
        let (unit, after) = after.split_at(unit_len);
        if unit.is_empty() {
            return Err(DurationError::new(
                input,
                format!(
                    "missing unit after \"{}\"; use ns, us, ms, s, m, h or d",
                    &rest[..rest.len() - after.len()]
                ),
            ));
        }
        let Some(&(_, nanos)) = UNITS.iter().find(|(name, _)| *name == unit) else {
            return Err(DurationError::new(
                input,
                format!("unknown unit \"{unit}\"; use ns, us, ms, s, m, h or d"),
            ));
        };
        total = total
            .checked_add(part_nanos(input, int_part, frac_part, nanos)?)
            .ok_or_else(|| too_large(input))?;
        rest = after.trim_start();
    }
    let secs = u64::try_from(total / NANOS_PER_SEC).map_err(|_| too_large(input))?;
    Ok(Duration::new(secs, (total % NANOS_PER_SEC) as u32))
}

fn too_large(input: &str) -> DurationError {
    DurationError::new(input, "too large")
}

/// Nanoseconds of one `NUMBER UNIT` part.
fn part_nanos(
    input: &str,
    int_part: &str,
    frac_part: &str,
    unit_nanos: u128,
) -> Result<u128, DurationError> {
    // 30 digits keep every product below u128::MAX / 10; larger values overflow anyway.
    if int_part.len() > 30 {
        return Err(too_large(input));
    }
    if frac_part.len() > 18 {
        return Err(DurationError::new(input, "too many decimal places"));
    }
    let int_value: u128 = if int_part.is_empty() {
        0
    } else {
        int_part.parse().map_err(|_| too_large(input))?
    };
    let mut nanos = int_value
        .checked_mul(unit_nanos)
        .ok_or_else(|| too_large(input))?;
    if !frac_part.is_empty() {
        let frac_value: u128 = frac_part.parse().map_err(|_| too_large(input))?;
        let scale = 10u128.pow(frac_part.len() as u32);
        let scaled = frac_value * unit_nanos;
        if !scaled.is_multiple_of(scale) {
            return Err(DurationError::new(input, "finer than one nanosecond"));
        }
        nanos = nanos
            .checked_add(scaled / scale)
            .ok_or_else(|| too_large(input))?;
    }
    Ok(nanos)
}

/// Formats a duration in the syntax [`parse_duration`] reads, using the largest units
/// first: `90s` becomes `"1m30s"`, zero becomes `"0s"`.
///
/// ```
/// use std::time::Duration;
/// use smartlb_config::format_duration;
///
/// assert_eq!(format_duration(Duration::from_millis(90_250)), "1m30s250ms");
/// assert_eq!(format_duration(Duration::from_secs(86_400)), "1d");
/// ```
pub fn format_duration(duration: Duration) -> String {
    if duration.is_zero() {
        return "0s".to_owned();
    }
    let mut nanos = duration.as_nanos();
    let mut out = String::new();
    for &(name, unit) in UNITS.iter().rev() {
        if name == "µs" {
            continue;
        }
        let count = nanos / unit;
        if count > 0 {
            out.push_str(&count.to_string());
            out.push_str(name);
            nanos %= unit;
        }
    }
    out
}

/// Serde helpers that write durations as strings.
pub(crate) mod serde_format {
    use std::time::Duration;

    use serde::Serializer;

    pub(crate) fn duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&super::format_duration(*d))
    }

    pub(crate) fn season<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.collect_str(&super::format_duration(*d)),
            None => s.serialize_str("none"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("7ns"), Ok(Duration::from_nanos(7)));
        assert_eq!(parse_duration("7us"), Ok(Duration::from_micros(7)));
        assert_eq!(parse_duration("7µs"), Ok(Duration::from_micros(7)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn combinations_and_fractions() {
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration(".5s"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("0.25m"), Ok(Duration::from_secs(15)));
    }

    #[test]
    fn errors_are_clear() {
        let msg = |s: &str| parse_duration(s).unwrap_err().to_string();
        assert_eq!(
            msg("5"),
            "invalid duration \"5\": missing unit after \"5\"; use ns, us, ms, s, m, h or d"
        );
        assert_eq!(
            msg("5sec"),
            "invalid duration \"5sec\": unknown unit \"sec\"; use ns, us, ms, s, m, h or d"
        );
        assert!(msg("").contains("empty"));
        assert!(msg("-5s").contains("negative"));
        assert!(msg("s").contains("expected a number"));
        assert!(msg("1.5ns").contains("nanosecond"));
        assert!(msg("99999999999999999999999d").contains("too large"));
        assert!(msg("5s!").contains("expected a number"));
    }

    #[test]
    fn formatting() {
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::new(86_401, 7)), "1d1s7ns");
        assert_eq!(
            parse_duration(&format_duration(Duration::MAX)),
            Ok(Duration::MAX)
        );
    }
}

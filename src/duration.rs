//! The duration grammar shared by configuration and scripts: Mold's `mirrorscheduleinterval`
//! units plus seconds — `30s`, `5m`, `1h`, `1d`, `1h30m`, `250ms`.

use std::fmt;
use std::time::Duration;

/// A malformed duration; the message says what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason} (expected e.g. \"30s\", \"5m\", \"1h30m\", \"1d\")")]
pub struct DurationError {
    pub input: String,
    pub reason: &'static str,
}

/// Parses `1h30m`-style durations. Units: `ms`, `s`, `m`, `h`, `d`; at least one part.
pub fn parse(input: &str) -> Result<Duration, DurationError> {
    let err = |reason| DurationError {
        input: input.to_string(),
        reason,
    };
    let s = input.trim();
    if s.is_empty() {
        return Err(err("empty"));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(err("a number must come before each unit"));
        }
        let value: u64 = rest[..digits]
            .parse()
            .map_err(|_| err("number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (millis_per_unit, len) = match &rest[..unit_len] {
            "ms" => (1, 2),
            "s" => (1_000, 1),
            "m" => (60_000, 1),
            "h" => (3_600_000, 1),
            "d" => (86_400_000, 1),
            "" => return Err(err("missing unit")),
            _ => return Err(err("unknown unit")),
        };
        let part = value
            .checked_mul(millis_per_unit)
            .ok_or_else(|| err("number too large"))?;
        total = total
            .checked_add(Duration::from_millis(part))
            .ok_or_else(|| err("number too large"))?;
        rest = &rest[len..];
    }
    Ok(total)
}

/// Formats a duration in the same grammar, largest units first (`1h30m`, `45s`, `250ms`).
pub fn format(d: Duration) -> String {
    Human(d).to_string()
}

/// `Display` adapter for [`format`].
pub struct Human(pub Duration);

impl fmt::Display for Human {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX);
        if ms == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1_000),
            ("ms", 1),
        ] {
            if ms >= size {
                write!(f, "{}{unit}", ms / size)?;
                ms %= size;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_grammar() {
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("1d"), Ok(Duration::from_secs(86400)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse(" 2h "), Ok(Duration::from_secs(7200)));
    }

    #[test]
    fn rejects_malformed_input() {
        for bad in [
            "",
            "h",
            "10",
            "10x",
            "1h3",
            "m5",
            "-5s",
            "99999999999999999999d",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should not parse");
        }
        assert!(
            parse("10")
                .unwrap_err()
                .to_string()
                .contains("missing unit")
        );
    }

    #[test]
    fn formats_round_trip() {
        for s in ["1h30m", "45s", "250ms", "1d2h", "0s"] {
            assert_eq!(format(parse(s).unwrap()), s);
        }
    }
}

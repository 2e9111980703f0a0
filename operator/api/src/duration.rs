//! Durations written the way Kubernetes users write them: `90s`, `10m`, `1h30m`, `2d`.

use std::{borrow::Cow, fmt, str::FromStr, time::Duration as StdDuration};

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// The pattern every duration field carries in the CRD, so `kubectl apply` rejects `10 minutes`
/// before anything parses it. It accepts exactly what [`Duration::from_str`] accepts.
pub const PATTERN: &str = r"^([0-9]+(ms|s|m|h|d))+$";

const UNITS: [(&str, u128); 5] = [
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// A non-negative duration with millisecond precision, written as a sequence of
/// `<number><unit>` parts with units `d`, `h`, `m`, `s` and `ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(StdDuration);

/// Why a duration string could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason}; write it like 90s, 10m, 1h30m or 2d")]
pub struct ParseDurationError {
    input: String,
    reason: &'static str,
}

impl Duration {
    pub const fn from_secs(secs: u64) -> Self {
        Self(StdDuration::from_secs(secs))
    }

    pub const fn from_millis(millis: u64) -> Self {
        Self(StdDuration::from_millis(millis))
    }

    pub const fn std(self) -> StdDuration {
        self.0
    }

    /// The same span as a signed `chrono` duration, for arithmetic on timestamps.
    pub fn chrono(self) -> chrono::Duration {
        chrono::Duration::from_std(self.0).unwrap_or(chrono::Duration::MAX)
    }
}

impl From<StdDuration> for Duration {
    fn from(d: StdDuration) -> Self {
        Self(d)
    }
}

impl FromStr for Duration {
    type Err = ParseDurationError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let fail = |reason| ParseDurationError {
            input: input.to_owned(),
            reason,
        };
        if input.is_empty() {
            return Err(fail("it is empty"));
        }
        let mut millis: u128 = 0;
        let mut rest = input;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            if digits == 0 {
                return Err(fail("each part must start with a number"));
            }
            let number: u128 = rest[..digits]
                .parse()
                .map_err(|_| fail("a number is too large"))?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let unit = &rest[..unit_len];
            let (_, scale) = UNITS
                .iter()
                .find(|(name, _)| *name == unit)
                .ok_or_else(|| fail("each number needs a unit: d, h, m, s or ms"))?;
            millis = number
                .checked_mul(*scale)
                .and_then(|m| m.checked_add(millis))
                .ok_or_else(|| fail("it is too long"))?;
            rest = &rest[unit_len..];
        }
        let millis = u64::try_from(millis).map_err(|_| fail("it is too long"))?;
        Ok(Self::from_millis(millis))
    }
}

impl fmt::Display for Duration {
    /// Writes the shortest form, largest unit first (`90s` reads back as `1m30s`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut left = self.0.as_millis();
        if left == 0 {
            return f.write_str("0s");
        }
        for (name, scale) in UNITS {
            if left >= scale {
                write!(f, "{}{name}", left / scale)?;
                left %= scale;
            }
        }
        Ok(())
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Cow::<str>::deserialize(deserializer)?;
        text.parse().map_err(de::Error::custom)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "string", "pattern": PATTERN })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_single_and_compound_units() {
        assert_eq!("90s".parse(), Ok(Duration::from_secs(90)));
        assert_eq!("1h30m".parse(), Ok(Duration::from_secs(5400)));
        assert_eq!("2d".parse(), Ok(Duration::from_secs(172_800)));
        assert_eq!("250ms".parse(), Ok(Duration::from_millis(250)));
        assert_eq!("1m500ms".parse(), Ok(Duration::from_millis(60_500)));
        assert_eq!("0s".parse(), Ok(Duration::from_secs(0)));
    }

    #[test]
    fn rejects_what_a_person_might_write_by_mistake() {
        for bad in ["", "10", "m", "10 minutes", "1.5h", "-1m", "10x", "1h 30m"] {
            let err = bad.parse::<Duration>().unwrap_err().to_string();
            assert!(err.contains("write it like 90s"), "{bad:?} gave {err}");
        }
    }

    #[test]
    fn the_schema_pattern_accepts_exactly_what_the_parser_accepts() {
        let pattern = regex::Regex::new(PATTERN).unwrap();
        for text in [
            "90s", "1h30m", "2d", "250ms", "1m500ms", "10", "m", "1.5h", "-1m", "1h 30m",
        ] {
            assert_eq!(
                pattern.is_match(text),
                text.parse::<Duration>().is_ok(),
                "pattern and parser disagree on {text:?}"
            );
        }
    }

    #[test]
    fn displays_the_shortest_form_and_round_trips() {
        assert_eq!(Duration::from_secs(90).to_string(), "1m30s");
        assert_eq!(Duration::from_secs(86_400 + 60).to_string(), "1d1m");
        assert_eq!(Duration::from_millis(1_250).to_string(), "1s250ms");
        assert_eq!(Duration::default().to_string(), "0s");
        for text in ["10m", "1h30m", "2d", "1s250ms"] {
            let parsed: Duration = text.parse().unwrap();
            assert_eq!(parsed.to_string(), text);
        }
    }

    #[test]
    fn serde_uses_the_string_form() {
        let d: Duration = serde_json::from_str("\"10m\"").unwrap();
        assert_eq!(d, Duration::from_secs(600));
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"10m\"");
        let err = serde_json::from_str::<Duration>("\"ten minutes\"").unwrap_err();
        assert!(err.to_string().contains("invalid duration"));
    }
}

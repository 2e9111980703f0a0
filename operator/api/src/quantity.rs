//! Kubernetes resource quantities (`250m`, `1.5`, `512Mi`, `1e3`): parsed to compare them, and
//! written in the canonical form the API server stores, so the operator can build children in
//! the form it will read back (`cpu: 1.5` comes back as `1500m`) and a no-op reconcile stays one.

use std::fmt;

/// How a quantity was written; the canonical form keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// `Ki`, `Mi`, … powers of 1024.
    Binary,
    /// `m`, `k`, `M`, … powers of 1000, or none.
    DecimalSi,
    /// `1e3`.
    DecimalExponent,
}

/// A non-negative quantity: `mantissa × 10^exponent`, or for binary suffixes
/// `mantissa × 10^exponent × 1024^power`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity {
    mantissa: u128,
    exponent: i32,
    power: u32,
    format: Format,
}

/// Why a string is not a quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a Kubernetes quantity (such as 250m, 1.5, 512Mi or 1e3)")]
pub struct NotAQuantity(pub String);

const BINARY: [&str; 6] = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
const DECIMAL: [(&str, i32); 9] = [
    ("n", -9),
    ("u", -6),
    ("m", -3),
    ("k", 3),
    ("M", 6),
    ("G", 9),
    ("T", 12),
    ("P", 15),
    ("E", 18),
];

impl Quantity {
    pub fn parse(text: &str) -> Result<Self, NotAQuantity> {
        let fail = || NotAQuantity(text.to_owned());
        let text_ = text.strip_prefix('+').unwrap_or(text);
        let end = text_
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text_.len());
        let (number, suffix) = text_.split_at(end);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
            return Err(fail());
        }
        let digits = format!("{whole}{fraction}");
        let digits = digits.trim_start_matches('0');
        if digits.len() > 30 {
            return Err(fail());
        }
        let mantissa: u128 = if digits.is_empty() {
            0
        } else {
            digits.parse().map_err(|_| fail())?
        };
        let mut exponent = -(fraction.len() as i32);
        let (power, format) = if suffix.is_empty() {
            (0, Format::DecimalSi)
        } else if let Some(i) = BINARY.iter().position(|s| *s == suffix) {
            (i as u32 + 1, Format::Binary)
        } else if let Some((_, e)) = DECIMAL.iter().find(|(s, _)| *s == suffix) {
            exponent += e;
            (0, Format::DecimalSi)
        } else if let Some(e) = suffix.strip_prefix(['e', 'E']) {
            let e: i32 = e.parse().map_err(|_| fail())?;
            if e.abs() > 30 {
                return Err(fail());
            }
            exponent += e;
            (0, Format::DecimalExponent)
        } else {
            return Err(fail());
        };
        Ok(Self {
            mantissa,
            exponent,
            power,
            format,
        })
    }

    /// The value as a float, for comparisons and sizes.
    pub fn value(&self) -> f64 {
        self.mantissa as f64 * 10f64.powi(self.exponent) * 1024f64.powi(self.power as i32)
    }

    /// The value in bytes (or whole units), rounded up.
    pub fn whole(&self) -> u64 {
        self.value().ceil() as u64
    }

    /// The form the API server writes back.
    pub fn canonical(&self) -> String {
        if self.mantissa == 0 {
            return "0".into();
        }
        if self.format == Format::Binary {
            if let Some(whole) = self.integer() {
                let mut power = 0;
                let mut value = whole;
                while power < BINARY.len() && value >= 1024 && value % 1024 == 0 {
                    value /= 1024;
                    power += 1;
                }
                return match power {
                    0 => value.to_string(),
                    p => format!("{value}{}", BINARY[p - 1]),
                };
            }
        }
        // Decimal: the largest exponent that is a multiple of three and keeps the mantissa whole;
        // nothing finer than nano (the API server rounds up).
        let (mut mantissa, mut exponent) = self.decimal();
        while mantissa % 10 == 0 {
            mantissa /= 10;
            exponent += 1;
        }
        let mut target = exponent.div_euclid(3) * 3;
        if target < -9 {
            let drop = (-9 - exponent) as u32;
            let scale = 10u128.pow(drop);
            mantissa = mantissa.div_ceil(scale);
            exponent = -9;
            target = -9;
        }
        let mantissa = mantissa * 10u128.pow((exponent - target) as u32);
        match self.format {
            Format::DecimalExponent if target != 0 => format!("{mantissa}e{target}"),
            Format::DecimalExponent => mantissa.to_string(),
            _ => match DECIMAL.iter().find(|(_, e)| *e == target) {
                Some((suffix, _)) => format!("{mantissa}{suffix}"),
                None if target == 0 => mantissa.to_string(),
                None => {
                    let extra = 10u128.pow((target - 18) as u32);
                    format!("{}E", mantissa * extra)
                }
            },
        }
    }

    /// The value as an integer, when it is one.
    fn integer(&self) -> Option<u128> {
        let (mantissa, exponent) = self.decimal();
        if exponent >= 0 {
            mantissa.checked_mul(10u128.checked_pow(exponent as u32)?)
        } else {
            let scale = 10u128.checked_pow((-exponent) as u32)?;
            (mantissa % scale == 0).then_some(mantissa / scale)
        }
    }

    /// `mantissa × 10^exponent` with the binary power folded in.
    fn decimal(&self) -> (u128, i32) {
        (self.mantissa * 1024u128.pow(self.power), self.exponent)
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical())
    }
}

/// A quantity string in the API server's canonical form; anything unparsable is left as it is
/// (the API server would have refused it, and the CRD's pattern does).
pub fn canonical(text: &str) -> String {
    Quantity::parse(text)
        .map(|q| q.canonical())
        .unwrap_or_else(|_| text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_come_back_as_the_api_server_writes_them() {
        for (written, stored) in [
            ("1.5", "1500m"),
            ("1000m", "1"),
            ("0.1", "100m"),
            ("250m", "250m"),
            ("2000", "2k"),
            ("1.5G", "1500M"),
            ("1Gi", "1Gi"),
            ("1024Mi", "1Gi"),
            ("0.5Gi", "512Mi"),
            ("1536", "1536"),
            ("1.5Ki", "1536"),
            ("128974848", "128974848"),
            ("1e3", "1e3"),
            ("0", "0"),
            ("0.0000000001", "1n"),
            ("+2", "2"),
        ] {
            assert_eq!(canonical(written), stored, "{written}");
        }
    }

    #[test]
    fn values_compare_across_suffixes() {
        let q = |s| Quantity::parse(s).unwrap().value();
        assert_eq!(q("1.5"), q("1500m"));
        assert_eq!(q("1Gi"), 1073741824.0);
        assert!(q("512Mi") < q("1G"));
        assert_eq!(Quantity::parse("1.5Mi").unwrap().whole(), 1572864);
    }

    #[test]
    fn what_is_not_a_quantity_is_refused() {
        for bad in ["", "m", "1.2.3", "12x", "1e", "Gi", "-1"] {
            assert!(Quantity::parse(bad).is_err(), "{bad}");
        }
    }
}

//! Amounts of money: whole numbers in the currency's smallest unit (cents for USD, won for KRW),
//! written for people and read back from what they type.

/// Currencies without minor units (ISO 4217 exponent 0) among those commonly used.
const ZERO_DECIMAL: &[&str] = &[
    "JPY", "KRW", "VND", "CLP", "ISK", "UGX", "PYG", "XAF", "XOF",
];

/// How many digits the currency has after the decimal point: 0 or 2.
pub fn minor_digits(currency: &str) -> u32 {
    if ZERO_DECIMAL.contains(&currency) {
        0
    } else {
        2
    }
}

/// An amount in the currency's smallest unit, written for people: `9900 USD` is `99.00 USD`.
pub fn format(amount: i64, currency: &str) -> String {
    let digits = minor_digits(currency);
    let scale = 10i64.pow(digits);
    let whole = (amount / scale).abs();
    let mut grouped = String::new();
    for (i, c) in whole.to_string().chars().rev().enumerate() {
        if i > 0 && i % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let mut text: String = grouped.chars().rev().collect();
    if amount < 0 {
        text.insert(0, '-');
    }
    if digits > 0 {
        text = format!("{text}.{:02}", (amount % scale).abs());
    }
    format!("{text} {currency}")
}

/// Reads a price as people type it (`299`, `299.9`, `1,299.00`) into the smallest unit, without
/// floating point. The error says what a valid price looks like.
pub fn parse(text: &str, currency: &str) -> Result<i64, String> {
    let digits = minor_digits(currency) as usize;
    let example = if digits == 0 { "19900" } else { "299.00" };
    let refuse = || format!("enter a price such as {example}");
    let cleaned: String = text.trim().chars().filter(|c| *c != ',').collect();
    let (whole, fraction) = cleaned.split_once('.').unwrap_or((&cleaned, ""));
    let numeric = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if whole.is_empty() || !numeric(whole) || !numeric(fraction) {
        return Err(refuse());
    }
    if fraction.len() > digits {
        return Err(if digits == 0 {
            format!("{currency} has no minor unit: enter a whole number such as {example}")
        } else {
            format!("enter at most {digits} digits after the point, such as {example}")
        });
    }
    let padded = format!("{fraction:0<digits$}");
    format!("{whole}{padded}")
        .parse::<i64>()
        .map_err(|_| "that price is too large".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_use_the_currency_minor_unit() {
        assert_eq!(format(9900, "USD"), "99.00 USD");
        assert_eq!(format(123456789, "EUR"), "1,234,567.89 EUR");
        assert_eq!(format(5, "USD"), "0.05 USD");
        assert_eq!(format(19900, "KRW"), "19,900 KRW");
        assert_eq!(format(-250, "USD"), "-2.50 USD");
    }

    #[test]
    fn typed_prices_are_read_exactly() {
        assert_eq!(parse("299", "USD"), Ok(29900));
        assert_eq!(parse("299.9", "USD"), Ok(29990));
        assert_eq!(parse(" 1,299.05 ", "EUR"), Ok(129905));
        assert_eq!(parse("19900", "KRW"), Ok(19900));
        assert!(parse("199.5", "KRW").unwrap_err().contains("no minor unit"));
        assert!(parse("2.999", "USD")
            .unwrap_err()
            .contains("at most 2 digits"));
        for bad in ["", "-5", "abc", "1e3", "12.3.4", ".5"] {
            assert!(parse(bad, "USD").is_err(), "{bad:?}");
        }
        assert!(parse("99999999999999999999", "USD").is_err());
    }
}

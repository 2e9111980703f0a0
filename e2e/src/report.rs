//! From repeated measurements to the figures BENCHMARKS.md shows: the median with its min–max,
//! and the ratios of the product to the references taken from medians of the same invocation.

/// Several runs of one measurement.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub runs: usize,
}

/// The median (the mean of the middle two for an even count), min and max; `None` for no runs.
pub fn summarise(values: &[f64]) -> Option<Summary> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    let median = if sorted.len().is_multiple_of(2) {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    } else {
        sorted[middle]
    };
    Some(Summary {
        median,
        min: sorted[0],
        max: sorted[sorted.len() - 1],
        runs: sorted.len(),
    })
}

/// `value / reference`, as a percentage with no decimals ("87 %").
pub fn percent(value: &Summary, reference: &Summary) -> String {
    format!("{:.0} %", 100.0 * value.median / reference.median)
}

/// `value / reference`, as a factor with one decimal ("12.3×").
pub fn factor(value: &Summary, reference: &Summary) -> String {
    format!("{:.1}×", value.median / reference.median)
}

/// "54,321 (52,000–55,100)" for rates; whole numbers with thousands separators.
pub fn rate(summary: &Summary) -> String {
    format!(
        "{} ({}–{})",
        thousands(summary.median),
        thousands(summary.min),
        thousands(summary.max)
    )
}

/// "1.84 (1.70–2.10)" for latencies in milliseconds.
pub fn millis(summary: &Summary) -> String {
    format!(
        "{:.2} ({:.2}–{:.2})",
        summary.median, summary.min, summary.max
    )
}

fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.round());
    let (sign, digits) = digits
        .strip_prefix('-')
        .map_or(("", digits.as_str()), |d| ("-", d));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    format!("{sign}{out}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_of_an_odd_count_is_the_middle_value() {
        let s = summarise(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!(
            s,
            Summary {
                median: 2.0,
                min: 1.0,
                max: 3.0,
                runs: 3
            }
        );
    }

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_middle_two() {
        assert_eq!(summarise(&[4.0, 1.0, 3.0, 2.0]).unwrap().median, 2.5);
        assert_eq!(summarise(&[]), None);
    }

    #[test]
    fn figures_read_as_people_write_them() {
        let s = summarise(&[54_321.4, 52_000.0, 1_055_100.0]).unwrap();
        assert_eq!(rate(&s), "54,321 (52,000–1,055,100)");
        let bare = summarise(&[60_000.0]).unwrap();
        assert_eq!(percent(&s, &bare), "91 %");
        assert_eq!(factor(&s, &summarise(&[500.0]).unwrap()), "108.6×");
        assert_eq!(
            millis(&summarise(&[1.844, 1.7, 2.1]).unwrap()),
            "1.84 (1.70–2.10)"
        );
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(-1234.0), "-1,234");
    }
}

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

/// How a figure reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    PerSecond,
    Millis,
    /// Plain numbers with one decimal (Redis commands per answer).
    Count,
    /// Bytes, shown in MiB.
    Bytes,
}

/// One line of the figures table.
#[derive(Clone, Debug)]
pub struct Row {
    pub name: String,
    pub unit: Unit,
    pub summary: Summary,
}

impl Row {
    pub fn shown(&self) -> String {
        let s = &self.summary;
        match self.unit {
            Unit::PerSecond => format!("{} /s", rate(s)),
            Unit::Millis => format!("{} ms", millis(s)),
            Unit::Count => format!("{:.1} ({:.1}–{:.1})", s.median, s.min, s.max),
            Unit::Bytes => {
                let mib = |b: f64| b / (1024.0 * 1024.0);
                format!(
                    "{:.1} MiB ({:.1}–{:.1})",
                    mib(s.median),
                    mib(s.min),
                    mib(s.max)
                )
            }
        }
    }
}

/// A target of the benchmark and whether this run met it.
#[derive(Clone, Debug)]
pub struct Target {
    pub goal: String,
    pub measured: String,
    pub met: bool,
}

/// Everything BENCHMARKS.md shows.
pub struct Document {
    pub command: String,
    pub date: String,
    pub machine: crate::machine::Machine,
    pub settings: String,
    pub rows: Vec<Row>,
    pub targets: Vec<Target>,
    /// Hand-written findings kept next to the benchmark, shown as they are.
    pub findings: String,
}

/// BENCHMARKS.md.
pub fn render(doc: &Document) -> String {
    let m = &doc.machine;
    let mut out = String::new();
    out.push_str("# Benchmarks\n\n");
    out.push_str(
        "Written by the benchmark itself; do not edit by hand (findings come from \
         `e2e/FINDINGS.md`). Every figure is the median of its runs, with the lowest and highest \
         in brackets. Ratios compare medians taken in the same invocation, because absolute \
         figures drift by ±15 % on shared machines.\n\n",
    );
    out.push_str("## How it was run\n\n");
    out.push_str(&format!("```sh\n{}\n```\n\n", doc.command));
    out.push_str(&format!("- Date: {}\n", doc.date));
    out.push_str(&format!(
        "- Machine: {} cores, {}, {:.0} GiB, {}, Linux {}\n",
        m.cores, m.cpu, m.memory_gib, m.os, m.kernel
    ));
    for (name, version) in &m.versions {
        out.push_str(&format!("- {name}: {version}\n"));
    }
    out.push_str(&format!("- {}\n\n", doc.settings));
    let met = doc.targets.iter().filter(|t| t.met).count();
    out.push_str(&format!(
        "## Targets: {met} of {} met\n\n| Target | Measured | Met |\n|---|---|---|\n",
        doc.targets.len()
    ));
    for target in &doc.targets {
        out.push_str(&format!(
            "| {} | {} | {} |\n",
            target.goal,
            target.measured,
            if target.met { "yes" } else { "**no**" }
        ));
    }
    out.push_str("\n## Figures\n\n| Measurement | Median (min–max) |\n|---|---|\n");
    for row in &doc.rows {
        out.push_str(&format!("| {} | {} |\n", row.name, row.shown()));
    }
    out.push('\n');
    out.push_str(doc.findings.trim());
    out.push('\n');
    out
}

/// Whole numbers with thousands separators ("1,000,000").
pub fn thousands(value: f64) -> String {
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
    fn the_document_shows_targets_rows_and_findings() {
        let doc = Document {
            command: "make bench".into(),
            date: "2026-11-21".into(),
            machine: crate::machine::Machine {
                cpu: "Test CPU".into(),
                cores: 2,
                memory_gib: 24.0,
                kernel: "6.1".into(),
                os: "Debian".into(),
                versions: vec![("rustc".into(), "rustc 1.95.0".into())],
            },
            settings: "3 rounds of 10 s at 64 connections".into(),
            rows: vec![
                Row {
                    name: "orders attempts".into(),
                    unit: Unit::PerSecond,
                    summary: summarise(&[40_000.0, 41_000.0, 39_000.0]).unwrap(),
                },
                Row {
                    name: "crowd memory".into(),
                    unit: Unit::Bytes,
                    summary: summarise(&[64.0 * 1024.0 * 1024.0]).unwrap(),
                },
            ],
            targets: vec![
                Target {
                    goal: "p99 ≤ 10 ms".into(),
                    measured: "4.1 ms".into(),
                    met: true,
                },
                Target {
                    goal: "≥ 80 % of bare /hello".into(),
                    measured: "60 %".into(),
                    met: false,
                },
            ],
            findings: "## Findings\n\nNone.".into(),
        };
        let text = render(&doc);
        assert!(text.contains("```sh\nmake bench\n```"), "{text}");
        assert!(text.contains("2 cores, Test CPU, 24 GiB"), "{text}");
        assert!(text.contains("## Targets: 1 of 2 met"), "{text}");
        assert!(
            text.contains("| ≥ 80 % of bare /hello | 60 % | **no** |"),
            "{text}"
        );
        assert!(
            text.contains("| orders attempts | 40,000 (39,000–41,000) /s |"),
            "{text}"
        );
        assert!(
            text.contains("| crowd memory | 64.0 MiB (64.0–64.0) |"),
            "{text}"
        );
        assert!(text.ends_with("None.\n"), "{text}");
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

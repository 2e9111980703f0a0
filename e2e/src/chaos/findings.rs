//! The fault drills' part of BENCHMARKS.md. It sits between two markers, so that
//! `timedeal-bench run` (the speed figures) and `timedeal-bench chaos` (the drills) each rewrite
//! only their own part of the file.

use std::time::Duration;

use super::{Fault, Plan, Report};

pub const BEGIN: &str = "<!-- fault drills: written by `timedeal-bench chaos` -->";
pub const END: &str = "<!-- end of the fault drills -->";

/// Every round of one fault: what it cost, or what broke.
pub struct Rounds {
    pub fault: Fault,
    pub results: Vec<Result<Report, String>>,
}

fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn seconds(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// One seed of the fault explorer: what it cost, or what broke.
pub type Explored = (u64, Result<Report, String>);

/// The section, markers included: the drills, then the explorer's seeds.
pub fn render(
    command: &str,
    date: &str,
    plan: &Plan,
    all: &[Rounds],
    explored: &[Explored],
) -> String {
    let mut out = format!("{BEGIN}\n## Fault drills\n\n");
    out.push_str(&format!(
        "```sh\n{command}\n```\n\n- Date: {date}\n- Each round: a sale of {} units (at most {} a \
         shopper) to {} shoppers on two storefront replicas sharing Redis, a durable PostgreSQL \
         and an HTTP payment provider; one shopper in {} cancels their first order. After each \
         round, once settled: confirmed units ≤ stock, nobody over the limit, every order a \
         shopper was told of is in PostgreSQL as told, Redis's figures equal PostgreSQL's, every \
         payment is taken exactly when its order is confirmed, one per purchase, none refunded twice.\n\n",
        plan.stock, plan.limit, plan.shoppers, plan.cancel_every
    ));
    let broken: usize = all
        .iter()
        .map(|r| r.results.iter().filter(|r| r.is_err()).count())
        .sum();
    let rounds: usize = all.iter().map(|r| r.results.len()).sum();
    out.push_str(&format!(
        "**{} of {rounds} rounds kept every promise.**\n\n",
        rounds - broken
    ));
    out.push_str(
        "| Fault | Rounds held | Orders placed (median) | Cancelled (median) | Refused with 503, \
         to retry (median) | Slowest answer (max) | Payments refunded by reconciliation (total) \
         | Round took (median) |\n|---|---|---|---|---|---|---|---|\n",
    );
    for rounds in all {
        let ok: Vec<&Report> = rounds
            .results
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .collect();
        let med = |f: &dyn Fn(&Report) -> f64| median(ok.iter().map(|r| f(r)).collect());
        let slowest = ok.iter().map(|r| r.slowest).max().unwrap_or_default();
        out.push_str(&format!(
            "| {} | {} of {} | {:.0} | {:.0} | {:.0} | {} | {} | {} |\n",
            rounds.fault.describe(),
            ok.len(),
            rounds.results.len(),
            med(&|r| r.placed as f64),
            med(&|r| r.cancelled as f64),
            med(&|r| r.retried.values().sum::<usize>() as f64),
            seconds(slowest),
            ok.iter().map(|r| r.unmatched).sum::<i64>(),
            seconds(Duration::from_secs_f64(med(&|r| r.elapsed.as_secs_f64()))),
        ));
    }
    let failures: Vec<String> = all
        .iter()
        .flat_map(|rounds| {
            rounds.results.iter().enumerate().filter_map(move |(i, r)| {
                r.as_ref()
                    .err()
                    .map(|e| format!("- {}, round {}: {e}", rounds.fault, i + 1))
            })
        })
        .collect();
    if !failures.is_empty() {
        out.push_str("\nWhat broke:\n\n");
        out.push_str(&failures.join("\n"));
        out.push('\n');
    }
    if !explored.is_empty() {
        out.push_str(&explorer(explored));
    }
    out.push_str(&format!("\n{END}\n"));
    out
}

/// The explorer's part: how many seeds ran, which held, and what broke.
fn explorer(explored: &[Explored]) -> String {
    let held: Vec<&Report> = explored
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .collect();
    let seeds: Vec<String> = explored.iter().map(|(seed, _)| seed.to_string()).collect();
    let mut out = format!(
        "\n### Fault explorer\n\n**{} of {} seeds kept every promise** (seeds {}). Each draws \
         two to four composed faults and every shopper's habits (`e2e/src/chaos/explore.rs`); \
         orders placed (median) {:.0}, cancelled (median) {:.0}, payments given back by \
         reconciliation (total) {}, a seed took (median) {}.\n",
        held.len(),
        explored.len(),
        seeds.join(", "),
        median(held.iter().map(|r| r.placed as f64).collect()),
        median(held.iter().map(|r| r.cancelled as f64).collect()),
        held.iter().map(|r| r.unmatched).sum::<i64>(),
        seconds(Duration::from_secs_f64(median(
            held.iter().map(|r| r.elapsed.as_secs_f64()).collect()
        ))),
    );
    let broken: Vec<String> = explored
        .iter()
        .filter_map(|(seed, r)| r.as_ref().err().map(|e| format!("- seed {seed}: {e}")))
        .collect();
    if !broken.is_empty() {
        out.push_str("\nWhat broke:\n\n");
        out.push_str(&broken.join("\n"));
        out.push('\n');
    }
    out
}

/// The section in `document`, markers included, if it has one.
pub fn section(document: &str) -> Option<&str> {
    let begin = document.find(BEGIN)?;
    let end = document[begin..].find(END)? + begin + END.len();
    Some(&document[begin..end])
}

/// `document` with its section replaced by `new`, or `new` appended when it has none.
pub fn splice(document: &str, new: &str) -> String {
    let new = new.trim_end();
    match section(document) {
        Some(old) => document.replacen(old, new, 1),
        None => format!("{}\n\n{new}\n", document.trim_end()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn report(fault: Fault, placed: usize) -> Report {
        Report {
            fault,
            elapsed: Duration::from_secs(12),
            placed,
            cancelled: 3,
            retried: BTreeMap::from([("unavailable".to_owned(), 5)]),
            slowest: Duration::from_millis(3200),
            unmatched: 1,
        }
    }

    #[test]
    fn the_section_says_what_held_and_what_broke() {
        let all = [
            Rounds {
                fault: Fault::PostgresStop,
                results: vec![
                    Ok(report(Fault::PostgresStop, 40)),
                    Ok(report(Fault::PostgresStop, 44)),
                ],
            },
            Rounds {
                fault: Fault::RedisEmpty,
                results: vec![Err("oversold: 41 confirmed units for a stock of 40".into())],
            },
        ];
        let explored = [
            (7, Ok(report(Fault::Explore, 80))),
            (
                9,
                Err("oversold: 81 confirmed units for a stock of 80".into()),
            ),
        ];
        let text = render("make chaos", "2026-11-23", &Plan::small(), &all, &explored);
        assert!(text.starts_with(BEGIN) && text.trim_end().ends_with(END));
        assert!(
            text.contains("**1 of 2 seeds kept every promise** (seeds 7, 9)"),
            "{text}"
        );
        assert!(text.contains("- seed 9: oversold"), "{text}");
        assert!(
            text.contains("**2 of 3 rounds kept every promise.**"),
            "{text}"
        );
        assert!(
            text.contains(
                "| PostgreSQL stopped for 10 s | 2 of 2 | 44 | 3 | 5 | 3.2 s | 2 | 12.0 s |"
            ),
            "{text}"
        );
        assert!(text.contains("- redis-empty, round 1: oversold"), "{text}");
    }

    #[test]
    fn only_the_section_is_replaced() {
        let old = format!("# Benchmarks\n\nfigures\n\n{BEGIN}\nold drills\n{END}\n\nafter\n");
        let new = format!("{BEGIN}\nnew drills\n{END}\n");
        let spliced = splice(&old, &new);
        assert_eq!(
            spliced,
            format!("# Benchmarks\n\nfigures\n\n{BEGIN}\nnew drills\n{END}\n\nafter\n")
        );
        assert_eq!(
            section(&spliced),
            Some(format!("{BEGIN}\nnew drills\n{END}").as_str())
        );
        let fresh = splice("# Benchmarks\n", &new);
        assert_eq!(
            fresh,
            format!("# Benchmarks\n\n{BEGIN}\nnew drills\n{END}\n")
        );
        assert_eq!(section("no drills here"), None);
    }
}

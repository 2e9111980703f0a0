//! The sale over time as SVG, drawn on the server: orders confirmed, shoppers waiting and stock
//! left, each on its own scale, one above the other on the same time axis. A table under it
//! gives the same figures to screen readers and to anyone who would rather read.

use maud::{html, Markup};
use timedeal_api::stats::Sample;

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 90.0;
const LEFT: f64 = 8.0;

/// The points of one series, scaled into a panel.
pub fn polyline(samples: &[Sample], value: impl Fn(&Sample) -> i64) -> String {
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        return String::new();
    };
    let span = (last.at - first.at).num_milliseconds().max(1) as f64;
    let top = samples.iter().map(&value).max().unwrap_or(0).max(1) as f64;
    samples
        .iter()
        .map(|s| {
            let x =
                LEFT + (s.at - first.at).num_milliseconds() as f64 / span * (WIDTH - 2.0 * LEFT);
            let y = HEIGHT - 6.0 - value(s) as f64 / top * (HEIGHT - 24.0);
            format!("{x:.1},{y:.1}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn panel(
    id: &str,
    title: &str,
    samples: &[Sample],
    value: impl Fn(&Sample) -> i64 + Copy,
) -> Markup {
    let latest = samples.last().map(value).unwrap_or(0);
    let peak = samples.iter().map(value).max().unwrap_or(0);
    html! {
        svg.panel id=(id) viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) role="img"
            aria-label=(format!("{title}: now {latest}, at most {peak}")) {
            text x=(LEFT) y="14" { (title) ": " (latest) " (at most " (peak) ")" }
            polyline points=(polyline(samples, value)) {}
        }
    }
}

/// Orders, queue and stock over the sale, or nothing before the first reading.
pub fn sale(samples: &[Sample]) -> Markup {
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        return html! {};
    };
    let time = |s: &Sample| s.at.format("%H:%M:%S UTC").to_string();
    html! {
        figure.chart id="sale-chart" {
            figcaption { "The sale from " (time(first)) " to " (time(last)) }
            (panel("chart-orders", "Orders confirmed", samples, |s| s.confirmed))
            (panel("chart-queue", "Waiting in the queue", samples, |s| s.waiting))
            (panel("chart-stock", "Stock left", samples, |s| s.remaining))
            details {
                summary { "The figures as a table" }
                table {
                    thead { tr { th { "Time" } th { "Orders" } th { "Waiting" } th { "Stock left" } } }
                    tbody {
                        @for s in samples {
                            tr { td { (time(s)) } td { (s.confirmed) } td { (s.waiting) } td { (s.remaining) } }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64, confirmed: i64) -> Sample {
        Sample {
            at: chrono::DateTime::UNIX_EPOCH + chrono::Duration::seconds(second),
            sold: confirmed,
            remaining: 100 - confirmed,
            waiting: 0,
            confirmed,
        }
    }

    #[test]
    fn points_span_the_panel_and_rise_with_the_value() {
        let line = polyline(&[at(0, 0), at(30, 50), at(60, 100)], |s| s.confirmed);
        assert_eq!(line, "8.0,84.0 320.0,51.0 632.0,18.0");
        assert_eq!(polyline(&[], |s| s.confirmed), "");
        // One reading: a point at the left, nothing divided by zero.
        assert_eq!(polyline(&[at(0, 5)], |s| s.confirmed), "8.0,18.0");
    }
}

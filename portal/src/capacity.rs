//! The capacity the rental form suggests from the expected peak of shoppers. Pure arithmetic,
//! shown to the company before it submits and written into the TimeDeal it creates.
//!
//! - admission rate: the whole crowd is admitted within five minutes (`peak / 300` per second);
//! - shoppers at once: a minute's worth of admissions;
//! - peak replicas: one storefront replica per 2,000 shoppers polling their place, at least two;
//! - max replicas: twice the peak, for the HPA to absorb what the estimate missed.
//!
//! Everything is capped by the limits the operator is configured with.

use serde::Serialize;

/// The most a request from the form may ask for.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_replicas: i32,
    pub max_admission_rate: i32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_replicas: 20,
            max_admission_rate: 1000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Suggestion {
    pub min_replicas: i32,
    pub peak_replicas: i32,
    pub max_replicas: i32,
    pub admission_rate: i32,
    pub max_active: i32,
}

/// Most shoppers the form accepts as an estimate.
pub const MAX_PEAK_SHOPPERS: i64 = 10_000_000;

pub fn suggest(peak_shoppers: i64, limits: Limits) -> Suggestion {
    let peak = peak_shoppers.clamp(1, MAX_PEAK_SHOPPERS);
    let ceil_div = |a: i64, b: i64| ((a + b - 1) / b) as i32;
    let max_replicas_limit = limits.max_replicas.max(2);
    let admission_rate = ceil_div(peak, 300).clamp(10, limits.max_admission_rate.max(10));
    let peak_replicas = ceil_div(peak, 2000).clamp(2, max_replicas_limit);
    Suggestion {
        min_replicas: 2,
        peak_replicas,
        max_replicas: (peak_replicas * 2).clamp(peak_replicas, max_replicas_limit),
        admission_rate,
        max_active: admission_rate.saturating_mul(60).clamp(100, 100_000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_deal_gets_the_minimum() {
        let small = suggest(500, Limits::default());
        assert_eq!(
            small,
            Suggestion {
                min_replicas: 2,
                peak_replicas: 2,
                max_replicas: 4,
                admission_rate: 10,
                max_active: 600,
            }
        );
    }

    #[test]
    fn a_big_crowd_scales_up_to_the_limits() {
        let big = suggest(30_000, Limits::default());
        assert_eq!(big.admission_rate, 100);
        assert_eq!(big.peak_replicas, 15);
        assert_eq!(big.max_replicas, 20, "capped by the operator's limit");
        let huge = suggest(i64::MAX, Limits::default());
        assert_eq!(huge.peak_replicas, 20);
        assert_eq!(huge.admission_rate, 1000);
        assert!(huge.min_replicas <= huge.peak_replicas && huge.peak_replicas <= huge.max_replicas);
    }

    #[test]
    fn every_suggestion_keeps_the_crd_ordering() {
        for peak in [0, 1, 1999, 2001, 40_000, 10_000_000] {
            for max_replicas in [1, 2, 3, 50] {
                let s = suggest(
                    peak,
                    Limits {
                        max_replicas,
                        max_admission_rate: 50,
                    },
                );
                assert!(s.min_replicas <= s.peak_replicas, "{peak} {max_replicas}");
                assert!(s.peak_replicas <= s.max_replicas, "{peak} {max_replicas}");
                assert!(s.admission_rate >= 1 && s.admission_rate <= 50);
            }
        }
    }
}

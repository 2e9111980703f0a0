//! Who is still waiting, without a per-shopper entry: one bitmap per time window, indexed by
//! join number (`live:<window>`, an eighth of a byte per shopper). A poll marks the shopper's
//! number once per window in this replica's memory; each replica flushes its marks in batches,
//! one `BITFIELD` per window, a few times a second. Admission (`admit.lua`) passes over the
//! numbers marked in neither this window nor the last.
//!
//! A window is half the deal's `idleGrace`, so a shopper who stops polling is passed over after
//! between one and two windows. A page polling its status does so at least twice a window; one
//! following the public head pings every two thirds of a window ([`ping_gap`]).

use std::{collections::HashSet, sync::Mutex, time::Duration};

/// The length of one liveness window for the deal's `idleGrace` (at least a second).
pub fn window(idle_grace: Duration) -> Duration {
    (idle_grace / 2).max(Duration::from_secs(1))
}

/// The window `now_ms` falls in.
pub fn window_of(now_ms: i64, window: Duration) -> i64 {
    now_ms.div_euclid(window.as_millis().max(1) as i64)
}

/// The longest a waiting shopper may go between polls and still be seen in every window.
pub fn max_poll_gap(window: Duration) -> Duration {
    window / 2
}

/// How often a waiting shopper who follows the public head pings: two thirds of a window (a
/// third of `idleGrace`, 10 s at the default). Any gap shorter than a window leaves a mark in
/// this window or the last whenever admission looks; the third left over is for a ping that is
/// late or slow to be flushed.
pub fn ping_gap(window: Duration) -> Duration {
    window * 2 / 3
}

/// Marks not yet flushed, and which numbers this replica marked in the current window.
#[derive(Default)]
pub struct Marks {
    inner: Mutex<MarksInner>,
}

#[derive(Default)]
struct MarksInner {
    window: i64,
    marked: HashSet<u64>,
    pending: Vec<(i64, u64)>,
}

impl Marks {
    /// Notes that the holder of `number` was seen in `window`; true when that is news for this
    /// replica (the first time in the window).
    pub fn mark(&self, window: i64, number: u64) -> bool {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.window != window {
            inner.window = window;
            inner.marked.clear();
        }
        if !inner.marked.insert(number) {
            return false;
        }
        inner.pending.push((window, number));
        true
    }

    /// Takes the marks to flush, grouped by window.
    pub fn take(&self) -> Vec<(i64, Vec<u64>)> {
        let pending = {
            let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::take(&mut inner.pending)
        };
        let mut batches: Vec<(i64, Vec<u64>)> = Vec::new();
        for (window, number) in pending {
            match batches.last_mut() {
                Some((w, numbers)) if *w == window => numbers.push(number),
                _ => batches.push((window, vec![number])),
            }
        }
        batches
    }

    /// Puts marks back after a failed flush, so they are sent with the next one.
    pub fn restore(&self, batches: Vec<(i64, Vec<u64>)>) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut again: Vec<(i64, u64)> = batches
            .into_iter()
            .flat_map(|(w, numbers)| numbers.into_iter().map(move |n| (w, n)))
            .collect();
        again.append(&mut inner.pending);
        inner.pending = again;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_is_half_the_grace() {
        assert_eq!(window(Duration::from_secs(30)), Duration::from_secs(15));
        assert_eq!(window(Duration::from_millis(600)), Duration::from_secs(1));
        assert_eq!(
            max_poll_gap(Duration::from_secs(15)),
            Duration::from_millis(7_500)
        );
        assert_eq!(
            ping_gap(window(Duration::from_secs(30))),
            Duration::from_secs(10)
        );
        let w = Duration::from_secs(15);
        assert_eq!(window_of(0, w), 0);
        assert_eq!(window_of(14_999, w), 0);
        assert_eq!(window_of(15_000, w), 1);
        assert_eq!(window_of(-1, w), -1);
    }

    /// Admission passes over a number marked in neither this window nor the last: a shopper
    /// who pings every `ping_gap`, each ping up to a third of a window late (one on time and the
    /// next as late as may be is the worst case), is never passed over, at any moment admission
    /// might look.
    #[test]
    fn a_pinging_shopper_is_seen_whenever_admission_looks() {
        let w = Duration::from_secs(15);
        let (gap, most) = (ping_gap(w).as_millis() as i64, w.as_millis() as i64 / 3 - 1);
        for start in (0..15_000).step_by(1_300) {
            // Lateness alternating between none and the most, and in between.
            let late = |i: i64| [0, most, 0, most / 2, most, most / 3][i as usize % 6];
            let pings: Vec<i64> = (0..40).map(|i| start + i * gap + late(i)).collect();
            for look in (pings[0]..pings[39]).step_by(250) {
                let now = window_of(look, w);
                assert!(
                    pings
                        .iter()
                        .any(|&p| p <= look && (now - 1..=now).contains(&window_of(p, w))),
                    "a look at {look} ms finds no mark"
                );
            }
        }
    }

    #[test]
    fn a_shopper_is_marked_once_per_window() {
        let marks = Marks::default();
        assert!(marks.mark(7, 42));
        assert!(
            !marks.mark(7, 42),
            "a second poll in the window costs nothing"
        );
        assert!(marks.mark(7, 43));
        assert!(marks.mark(8, 42), "a new window marks again");
        assert_eq!(marks.take(), vec![(7, vec![42, 43]), (8, vec![42])]);
        assert_eq!(marks.take(), vec![]);
        assert!(
            !marks.mark(8, 42),
            "flushing does not forget what was marked"
        );
    }

    #[test]
    fn marks_of_a_failed_flush_go_out_with_the_next() {
        let marks = Marks::default();
        marks.mark(1, 5);
        let batch = marks.take();
        marks.mark(1, 6);
        marks.restore(batch);
        assert_eq!(marks.take(), vec![(1, vec![5, 6])]);
    }
}

//! The WorkerSupervisor's own timing of its restart path, for the dump.
//!
//! Owns a fixed window of the last [`WINDOW`] exit-notification delays — from the moment the
//! leader was reaped ([`crate::process::ExitReport::exited`]) to the moment its WorkerSupervisor
//! handles the exit — and their summary ([`NotifyLatency`], the dump's `exit_notify_us`). It
//! must not measure anything itself: the WorkerSupervisor hands it each delay.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How many recent exits the summary covers.
pub const WINDOW: usize = 64;

/// Exit notification latency over the last exits, in µs (the dump's `exit_notify_us`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyLatency {
    /// Exits the figures cover (at most [`WINDOW`]).
    pub count: u32,
    /// The most recent exit.
    pub last: u64,
    /// Median.
    pub p50: u64,
    /// 95th percentile (nearest rank).
    pub p95: u64,
    /// Largest.
    pub max: u64,
}

/// The last [`WINDOW`] delays, oldest overwritten first. No allocation after creation.
#[derive(Clone, Debug)]
pub struct LatencyWindow {
    samples: [u64; WINDOW],
    len: usize,
    next: usize,
    last: u64,
}

impl Default for LatencyWindow {
    fn default() -> Self {
        LatencyWindow {
            samples: [0; WINDOW],
            len: 0,
            next: 0,
            last: 0,
        }
    }
}

impl LatencyWindow {
    /// Add one delay.
    pub fn record(&mut self, delay: Duration) {
        let us = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.samples[self.next] = us;
        self.next = (self.next + 1) % WINDOW;
        self.len = (self.len + 1).min(WINDOW);
        self.last = us;
    }

    /// The summary, `None` before the first delay.
    pub fn summary(&self) -> Option<NotifyLatency> {
        if self.len == 0 {
            return None;
        }
        let mut sorted = self.samples;
        let sorted = &mut sorted[..self.len];
        sorted.sort_unstable();
        let rank = |p: usize| sorted[(p * self.len).div_ceil(100).clamp(1, self.len) - 1];
        Some(NotifyLatency {
            count: self.len as u32,
            last: self.last,
            p50: rank(50),
            p95: rank(95),
            max: sorted[self.len - 1],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_window_has_no_summary() {
        assert_eq!(LatencyWindow::default().summary(), None);
    }

    #[test]
    fn summary_covers_the_last_window_only() {
        let mut w = LatencyWindow::default();
        for us in 1..=100u64 {
            w.record(Duration::from_micros(us));
        }
        // Only 37..=100 are kept.
        let s = w.summary().unwrap();
        assert_eq!(s.count, WINDOW as u32);
        assert_eq!(s.last, 100);
        assert_eq!(s.max, 100);
        assert_eq!(s.p50, 37 + 31);
        assert_eq!(s.p95, 37 + 60);
    }

    #[test]
    fn one_sample_is_every_percentile() {
        let mut w = LatencyWindow::default();
        w.record(Duration::from_micros(250));
        let s = w.summary().unwrap();
        assert_eq!(
            (s.count, s.last, s.p50, s.p95, s.max),
            (1, 250, 250, 250, 250)
        );
    }
}

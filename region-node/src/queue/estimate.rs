//! The queue's rate and wait maths, without a database: the admission rate measured over
//! recent windows (a range, since admissions come in bursts as the closed loop reacts), and
//! the wait a place that many positions behind the counter can expect.

use serde::Serialize;

/// Length of one measuring window, in seconds; the store counts admissions per window.
pub const WINDOW_SECONDS: f64 = 5.0;
/// How many windows back the measurement looks (30 s).
pub const WINDOWS: usize = 6;

/// Admissions per second: the mean over the measured span and the slowest and fastest window.
/// `measured` is false while nothing was admitted yet; the range is then the configured
/// ceiling (the best the loop can do), which is all that can be said.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdmitRate {
    pub per_second: f64,
    pub low: f64,
    pub high: f64,
    pub measured: bool,
}

/// The rate from `admitted[w]`, the positions admitted in window `w` (0 = the latest
/// `WINDOW_SECONDS`, 1 = the one before, ...), given that admissions began `since_start`
/// seconds ago (`None`: not yet). Windows wholly before the start say nothing and are skipped;
/// the window the start falls in is scaled to the part of it after the start.
pub fn admit_rate(admitted: &[i64], since_start: Option<f64>, ceiling: f64) -> AdmitRate {
    let unmeasured = AdmitRate {
        per_second: ceiling,
        low: ceiling,
        high: ceiling,
        measured: false,
    };
    let Some(since_start) = since_start.filter(|s| *s > 0.0) else {
        return unmeasured;
    };
    let mut total = 0.0;
    let mut span = 0.0;
    let (mut low, mut high) = (f64::INFINITY, 0.0_f64);
    for (w, &count) in admitted.iter().enumerate().take(WINDOWS) {
        let window_start_ago = (w as f64 + 1.0) * WINDOW_SECONDS;
        let covered = if since_start >= window_start_ago {
            WINDOW_SECONDS
        } else {
            since_start - w as f64 * WINDOW_SECONDS
        };
        // Under a second of a window is too little to call a rate.
        if covered < 1.0 {
            continue;
        }
        let rate = count.max(0) as f64 / covered;
        total += count.max(0) as f64;
        span += covered;
        low = low.min(rate);
        high = high.max(rate);
    }
    if span == 0.0 || total == 0.0 {
        return unmeasured;
    }
    AdmitRate {
        per_second: total / span,
        low,
        high,
        measured: true,
    }
}

/// An estimated wait in whole seconds: at the fastest and the slowest measured rate.
/// `max_seconds` is `None` when the slowest rate is zero (the queue stood still in a window).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WaitRange {
    pub min_seconds: u64,
    pub max_seconds: Option<u64>,
}

/// The wait of a place `ahead` positions behind the counter (0: admitted now).
pub fn wait_range(ahead: i64, rate: &AdmitRate) -> WaitRange {
    let ahead = ahead.max(0) as f64;
    let at = |rate: f64| (rate > 0.0).then(|| (ahead / rate).ceil() as u64);
    WaitRange {
        min_seconds: at(rate.high).unwrap_or(0),
        max_seconds: if ahead == 0.0 { Some(0) } else { at(rate.low) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn before_any_admission_the_rate_is_the_ceiling_and_unmeasured() {
        let rate = admit_rate(&[0; WINDOWS], None, 50.0);
        assert_eq!((rate.per_second, rate.low, rate.high), (50.0, 50.0, 50.0));
        assert!(!rate.measured);
        assert!(!admit_rate(&[0; WINDOWS], Some(12.0), 50.0).measured);
    }

    #[test]
    fn full_windows_give_the_mean_and_the_range() {
        // 30 s of admissions: 100, 50 and 4 x 25 per 5 s window.
        let rate = admit_rate(&[100, 50, 25, 25, 25, 25], Some(600.0), 1000.0);
        assert!(rate.measured);
        assert_eq!(rate.per_second, 250.0 / 30.0);
        assert_eq!(rate.high, 20.0);
        assert_eq!(rate.low, 5.0);
    }

    #[test]
    fn a_young_queue_counts_only_the_time_it_has_run() {
        // Opened 7 s ago: window 0 is whole, window 1 covers 2 s, the rest is before it.
        let rate = admit_rate(&[50, 20, 0, 0, 0, 0], Some(7.0), 1000.0);
        assert_eq!(rate.per_second, 70.0 / 7.0);
        assert_eq!(rate.high, 10.0);
        assert_eq!(rate.low, 10.0);
        // Opened half a second ago: too little to measure.
        assert!(!admit_rate(&[5, 0, 0, 0, 0, 0], Some(0.5), 1000.0).measured);
    }

    #[test]
    fn the_wait_runs_from_the_fastest_to_the_slowest_rate() {
        let rate = AdmitRate {
            per_second: 15.0,
            low: 10.0,
            high: 20.0,
            measured: true,
        };
        assert_eq!(
            wait_range(100, &rate),
            WaitRange {
                min_seconds: 5,
                max_seconds: Some(10)
            }
        );
        assert_eq!(
            wait_range(0, &rate),
            WaitRange {
                min_seconds: 0,
                max_seconds: Some(0)
            }
        );
        let stalled = AdmitRate { low: 0.0, ..rate };
        assert_eq!(wait_range(100, &stalled).max_seconds, None);
    }
}

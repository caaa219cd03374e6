//! Property tests (issue 16): the policy arithmetic, the notify-line parser and the control
//! protocol's request parser, over generated inputs.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use vigil_actors::exit::{Exit, ExitReason};
use vigil_actors::policy::{BackoffCounter, RestartWindow, should_restart};
use vigil_actors::spec::{BackoffSpec, RestartType};

fn backoff(initial_ms: u64, max_ms: u64, multiplier: f64, jitter: f64) -> BackoffSpec {
    BackoffSpec {
        initial: Duration::from_millis(initial_ms.min(max_ms)),
        max: Duration::from_millis(max_ms),
        multiplier,
        jitter,
        reset_after: Duration::from_secs(60),
    }
}

proptest! {
    /// Without jitter the delay never decreases with the attempt, and never passes max.
    #[test]
    fn backoff_is_monotone_up_to_its_cap(
        initial in 0u64..10_000,
        max in 0u64..1_000_000,
        multiplier in 1.0f64..1000.0,
        attempts in proptest::collection::vec(0u32..100_000, 1..20),
    ) {
        let b = backoff(initial, max, multiplier, 0.0);
        let mut attempts = attempts;
        attempts.sort_unstable();
        let mut last = Duration::ZERO;
        for a in attempts {
            let d = b.delay(a, 0.5);
            prop_assert!(d >= last, "attempt {a}: {d:?} < {last:?}");
            prop_assert!(d <= b.max);
            last = d;
        }
    }

    /// With any jitter and any sample (NaN and infinities included), the delay stays within
    /// `[base × (1 - jitter), min(max, base × (1 + jitter))]` and never panics.
    #[test]
    fn jitter_stays_in_its_band(
        initial in 0u64..10_000,
        max in 1u64..1_000_000,
        multiplier in 1.0f64..10.0,
        jitter in 0.0f64..=1.0,
        attempt in 0u32..64,
        sample in prop_oneof![0.0f64..1.0, Just(f64::NAN), Just(f64::INFINITY), Just(-1.0)],
    ) {
        let b = backoff(initial, max, multiplier, jitter);
        let plain = backoff(initial, max, multiplier, 0.0).delay(attempt, 0.5);
        let d = b.delay(attempt, sample);
        prop_assert!(d <= b.max);
        let low = plain.as_secs_f64() * (1.0 - jitter);
        prop_assert!(d.as_secs_f64() >= low - 1e-6, "{d:?} below {low}");
    }

    /// Hostile specs (what validation refuses) still give a delay, never a panic.
    #[test]
    fn any_spec_gives_a_delay(
        initial in any::<u64>(),
        max in any::<u64>(),
        multiplier in any::<f64>(),
        jitter in any::<f64>(),
        attempt in any::<u32>(),
        sample in any::<f64>(),
    ) {
        let b = BackoffSpec {
            initial: Duration::from_millis(initial),
            max: Duration::from_millis(max),
            multiplier,
            jitter,
            reset_after: Duration::from_secs(1),
        };
        let _ = b.delay(attempt, sample);
    }

    /// The counter counts consecutive restarts and a stable run starts it again.
    #[test]
    fn the_counter_resets_after_a_stable_run(uptimes in proptest::collection::vec(0u64..120, 1..50)) {
        let reset_after = Duration::from_secs(60);
        let mut c = BackoffCounter::default();
        let mut expected = 0u32;
        for up in uptimes {
            if up >= 60 {
                expected = 0;
            }
            prop_assert_eq!(c.next_attempt(Duration::from_secs(up), reset_after), expected);
            expected += 1;
        }
    }

    /// The window's count is exactly the restarts within `period` of the last one.
    #[test]
    fn the_intensity_window_counts_the_recent_restarts(
        gaps in proptest::collection::vec(0u64..5_000, 1..100),
        period_ms in 1u64..20_000,
    ) {
        let period = Duration::from_millis(period_ms);
        let start = Instant::now();
        let mut w = RestartWindow::default();
        let mut times = Vec::new();
        let mut t = 0u64;
        for g in gaps {
            t += g;
            times.push(t);
            let n = w.add(start + Duration::from_millis(t), period);
            let expected = times.iter().filter(|&&x| t - x <= period_ms).count() as u32;
            prop_assert_eq!(n, expected);
        }
    }

    /// The restart-type table: Permanent always, Temporary never, Transient unless clean.
    #[test]
    fn the_restart_type_table(code in proptest::option::of(-1i32..256), signal in proptest::option::of(1i32..65)) {
        let exit = Exit { code, signal, core_dumped: false, reason: ExitReason::Exited };
        prop_assert!(should_restart(RestartType::Permanent, &exit));
        prop_assert!(!should_restart(RestartType::Temporary, &exit));
        let clean = code == Some(0) && signal.is_none();
        prop_assert_eq!(should_restart(RestartType::Transient, &exit), !clean);
    }

    /// Any bytes on a notify line: an event or nothing, never a panic.
    #[test]
    fn notify_lines_never_panic(line in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = vigil_actors::notify::parse_line(&line);
    }

    /// Any bytes as a control request: a request or an error reply, never a panic; the error
    /// renders as one line.
    #[test]
    fn control_requests_never_panic(line in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Err(e) = vigil_actors::protocol::parse_request(&line) {
            let reply = vigil_actors::protocol::Reply::failure(e);
            let text = reply.to_line();
            prop_assert_eq!(text.matches('\n').count(), 1, "{}", text);
        }
    }

    /// JSON-shaped garbage too.
    #[test]
    fn json_shaped_requests_never_panic(cmd in "[a-z_]{0,12}", worker in ".{0,20}", extra in ".{0,20}") {
        let line = format!("{{\"cmd\":{cmd:?},\"worker\":{worker:?},{extra}}}");
        let _ = vigil_actors::protocol::parse_request(line.as_bytes());
    }
}

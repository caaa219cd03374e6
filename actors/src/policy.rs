//! Restart decisions as pure functions: backoff delay, restart intensity window, restart type.
//!
//! Owns the arithmetic of OTP-style supervision: `min(max, initial × multiplier^n)` with jitter,
//! the sliding restart window of OTP's `add_restart/3`, and the restart-type decision. Nothing
//! here reads a clock, a random source or the process table: callers pass `now` and the jitter
//! sample, so every decision is reproducible and unit-tested beside the code.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::exit::Exit;
use crate::spec::{BackoffSpec, RestartPolicy, RestartType};
use crate::worker_type::ExitVerdict;

/// The longest delay a backoff can produce, whatever the spec says (guards float overflow).
const DELAY_CEILING: Duration = Duration::from_secs(365 * 24 * 3600);

impl BackoffSpec {
    /// The delay before restart number `attempt` (0 for the first restart after a stable run).
    ///
    /// `jitter_sample` is a uniform sample in `[0, 1)`; it scales the delay by a factor in
    /// `[1 - jitter, 1 + jitter]`. The result never exceeds `max` and never panics: the
    /// exponent saturates, and NaN or infinity collapse to `max`.
    pub fn delay(&self, attempt: u32, jitter_sample: f64) -> Duration {
        let max = self.max.min(DELAY_CEILING);
        let initial = self.initial.min(max).as_secs_f64();
        let multiplier = if self.multiplier.is_finite() && self.multiplier >= 1.0 {
            self.multiplier
        } else {
            1.0
        };
        // powi saturates to +inf for large exponents; clamp before building a Duration.
        let exponent = i32::try_from(attempt).unwrap_or(i32::MAX);
        let raw = initial * multiplier.powi(exponent);
        let base = if raw.is_finite() {
            raw.min(max.as_secs_f64())
        } else {
            max.as_secs_f64()
        };
        let jitter = if self.jitter.is_finite() {
            self.jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let sample = if jitter_sample.is_finite() {
            jitter_sample.clamp(0.0, 1.0)
        } else {
            0.5
        };
        let factor = 1.0 - jitter + 2.0 * jitter * sample;
        let jittered = (base * factor).clamp(0.0, max.as_secs_f64());
        Duration::try_from_secs_f64(jittered).unwrap_or(max)
    }
}

/// Consecutive-restart counter for the backoff exponent, reset by a stable run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackoffCounter {
    attempt: u32,
}

impl BackoffCounter {
    /// The exponent for the next delay, after a run that lasted `uptime`: a run of at least
    /// `reset_after` starts the sequence again at 0. Advances the counter (saturating).
    pub fn next_attempt(&mut self, uptime: Duration, reset_after: Duration) -> u32 {
        if uptime >= reset_after {
            self.attempt = 0;
        }
        let n = self.attempt;
        self.attempt = self.attempt.saturating_add(1);
        n
    }

    /// Forget the sequence (an operator's `start` or `restart`).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// OTP's restart intensity as a sliding window: the restarts newer than `now - period`.
///
/// Restarts spaced wider than the window never trip it (OTP's `multiple_restarts` case).
#[derive(Clone, Debug, Default)]
pub struct RestartWindow {
    restarts: VecDeque<Instant>,
}

impl RestartWindow {
    /// Record a restart at `now` and drop those older than `period`. Returns how many restarts
    /// are inside the window now, this one included. The caller compares it with the limit:
    /// more than `max_restarts` is an escalation.
    pub fn add(&mut self, now: Instant, period: Duration) -> u32 {
        self.prune(now, period);
        self.restarts.push_back(now);
        u32::try_from(self.restarts.len()).unwrap_or(u32::MAX)
    }

    /// How many restarts lie inside the window ending at `now` (for the dump).
    pub fn count(&self, now: Instant, period: Duration) -> u32 {
        let n = self
            .restarts
            .iter()
            .filter(|t| now.saturating_duration_since(**t) <= period)
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    fn prune(&mut self, now: Instant, period: Duration) {
        while let Some(oldest) = self.restarts.front() {
            if now.saturating_duration_since(*oldest) > period {
                self.restarts.pop_front();
            } else {
                break;
            }
        }
    }
}

/// Whether an exit is followed by a restart under `restart` (OTP meanings): `Permanent`
/// always, `Transient` unless the exit was clean (code 0), `Temporary` never.
pub fn should_restart(restart: RestartType, exit: &Exit) -> bool {
    match restart {
        RestartType::Permanent => true,
        RestartType::Transient => !exit.is_clean(),
        RestartType::Temporary => false,
    }
}

/// What asked the process to end, as far as the restart decision cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// Nothing: it ended by itself (or the kernel killed it).
    Own,
    /// `vigil stop`.
    Operator,
    /// `vigil restart`.
    Restart,
    /// Server shutdown.
    Shutdown,
    /// The watchdog (no heartbeat in time): decided like an exit of its own.
    Watchdog,
}

/// One ended run, as the decision sees it.
#[derive(Clone, Copy, Debug)]
pub struct Ended<'a> {
    /// How it ended.
    pub exit: &'a Exit,
    /// What the worker type says about that exit.
    pub verdict: ExitVerdict,
    /// Who asked for the end, if anyone.
    pub cause: Cause,
    /// How long it ran.
    pub uptime: Duration,
    /// The server is shutting down.
    pub terminating: bool,
}

/// The restart decision for one ended run.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Spawn the next generation after `delay`.
    Restart {
        /// The backoff (or the verdict's floor, when longer).
        delay: Duration,
    },
    /// Stay stopped, and why.
    Stop(String),
    /// Too many restarts: `restarts` inside the window exceed the policy's limit.
    Escalate {
        /// Restarts inside the window, this one included.
        restarts: u32,
    },
}

/// What a decision changes in the counters, for the caller to apply ([`Update::apply`]):
/// [`decide`] itself only reads them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Update {
    /// A restart to count in the restart window, at this instant (also for an escalation: the
    /// restart that tripped the limit is counted).
    pub count_restart: Option<Instant>,
    /// The backoff counter afterwards.
    pub counter: BackoffCounter,
}

impl Update {
    /// Apply the update: count the restart in `window` (whose period is `within`, the policy's
    /// intensity window) and replace `counter`.
    pub fn apply(self, window: &mut RestartWindow, counter: &mut BackoffCounter, within: Duration) {
        if let Some(at) = self.count_restart {
            window.add(at, within);
        }
        *counter = self.counter;
    }
}

/// A decision and the counter updates that go with it.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// What follows the exit.
    pub decision: Decision,
    /// What changes in the window and the counter.
    pub update: Update,
}

/// The exit decision as a pure function: OTP's restart semantics over `policy`, the worker
/// type's `verdict`, what caused the end, the restart `window` and the backoff `counter` as
/// they are, at `now`, with `jitter` a uniform sample in `[0, 1)`. Reads no clock and no random
/// source, and changes nothing: the counters' updates come back in the [`Outcome`] for the
/// caller to apply. `kind` names the worker type in a "do not restart" reason.
pub fn decide(
    policy: &RestartPolicy,
    kind: &str,
    ended: Ended<'_>,
    window: &RestartWindow,
    counter: BackoffCounter,
    now: Instant,
    jitter: f64,
) -> Outcome {
    let unchanged = Update {
        count_restart: None,
        counter,
    };
    let outcome = |decision, update| Outcome { decision, update };
    let shutting_down = || outcome(Decision::Stop("server shutting down".into()), unchanged);
    match ended.cause {
        Cause::Operator => {
            return outcome(Decision::Stop("stopped by operator".into()), unchanged);
        }
        Cause::Shutdown => return shutting_down(),
        Cause::Restart if !ended.terminating => {
            return outcome(
                Decision::Restart {
                    delay: Duration::ZERO,
                },
                Update {
                    count_restart: None,
                    counter: BackoffCounter::default(),
                },
            );
        }
        Cause::Restart => return shutting_down(),
        Cause::Watchdog | Cause::Own => {}
    }
    if ended.terminating {
        return shutting_down();
    }
    let floor = match ended.verdict {
        ExitVerdict::DoNotRestart => {
            return outcome(
                Decision::Stop(format!("{kind} says do not restart")),
                unchanged,
            );
        }
        ExitVerdict::RetryAfter(d) => d,
        ExitVerdict::UsePolicy => {
            if !should_restart(policy.restart, ended.exit) {
                return outcome(
                    Decision::Stop(format!("{:?} worker", policy.restart).to_lowercase()),
                    unchanged,
                );
            }
            Duration::ZERO
        }
    };
    // This restart, counted with those still inside the window.
    let in_window = window.count(now, policy.intensity.within).saturating_add(1);
    let counted = Update {
        count_restart: Some(now),
        counter,
    };
    if in_window > policy.intensity.max_restarts {
        return outcome(
            Decision::Escalate {
                restarts: in_window,
            },
            counted,
        );
    }
    let mut counter = counter;
    let attempt = counter.next_attempt(ended.uptime, policy.backoff.reset_after);
    let delay = policy.backoff.delay(attempt, jitter).max(floor);
    outcome(Decision::Restart { delay }, Update { counter, ..counted })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::ExitReason;

    fn spec(initial_ms: u64, max_ms: u64, multiplier: f64, jitter: f64) -> BackoffSpec {
        BackoffSpec {
            initial: Duration::from_millis(initial_ms),
            max: Duration::from_millis(max_ms),
            multiplier,
            jitter,
            reset_after: Duration::from_secs(60),
        }
    }

    #[test]
    fn grows_and_caps() {
        let b = spec(100, 1000, 2.0, 0.0);
        let got: Vec<u64> = (0..6).map(|n| b.delay(n, 0.5).as_millis() as u64).collect();
        assert_eq!(got, vec![100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn jitter_stays_within_bounds_and_under_max() {
        let b = spec(1000, 10_000, 2.0, 0.2);
        assert_eq!(b.delay(0, 0.0), Duration::from_millis(800));
        assert_eq!(b.delay(0, 1.0), Duration::from_millis(1200));
        // At the cap, jitter may only go down.
        assert!(b.delay(10, 1.0) <= Duration::from_millis(10_000));
        assert!(b.delay(10, 0.0) >= Duration::from_millis(8_000));
    }

    #[test]
    fn hundred_thousand_consecutive_restarts_saturate() {
        let b = spec(100, 30_000, 2.0, 0.1);
        let mut counter = BackoffCounter::default();
        let mut last = Duration::ZERO;
        for i in 0..100_000u32 {
            let n = counter.next_attempt(Duration::from_millis(1), b.reset_after);
            assert_eq!(n, i);
            last = b.delay(n, (i % 7) as f64 / 7.0);
            assert!(last <= b.max);
        }
        assert!(last >= Duration::from_millis(27_000));
        // Extreme specs: huge multiplier, u32::MAX attempts, absurd max.
        let wild = BackoffSpec {
            max: Duration::MAX,
            multiplier: 1e300,
            ..b
        };
        assert_eq!(wild.delay(u32::MAX, 0.5), DELAY_CEILING);
        let nan = BackoffSpec {
            multiplier: f64::NAN,
            jitter: f64::NAN,
            ..b
        };
        assert_eq!(nan.delay(5, f64::NAN), Duration::from_millis(100));
    }

    #[test]
    fn zero_initial_means_immediate() {
        let b = spec(0, 1000, 2.0, 0.5);
        assert_eq!(b.delay(50, 0.9), Duration::ZERO);
    }

    #[test]
    fn stable_run_resets_the_exponent() {
        let mut c = BackoffCounter::default();
        let reset = Duration::from_secs(10);
        assert_eq!(c.next_attempt(Duration::from_secs(1), reset), 0);
        assert_eq!(c.next_attempt(Duration::from_secs(1), reset), 1);
        assert_eq!(c.next_attempt(Duration::from_secs(1), reset), 2);
        assert_eq!(c.next_attempt(Duration::from_secs(10), reset), 0);
        assert_eq!(c.next_attempt(Duration::from_secs(1), reset), 1);
    }

    #[test]
    fn window_counts_only_recent_restarts() {
        let t0 = Instant::now();
        let period = Duration::from_secs(10);
        let mut w = RestartWindow::default();
        assert_eq!(w.add(t0, period), 1);
        assert_eq!(w.add(t0 + Duration::from_secs(5), period), 2);
        assert_eq!(w.add(t0 + Duration::from_secs(9), period), 3);
        // t0 falls out of the window.
        assert_eq!(w.add(t0 + Duration::from_secs(11), period), 3);
        assert_eq!(w.count(t0 + Duration::from_secs(30), period), 0);
    }

    #[test]
    fn restarts_spaced_just_past_the_window_never_trip_it() {
        // OTP multiple_restarts: intensity 1 within 10 s; restarts every 10.001 s.
        let t0 = Instant::now();
        let period = Duration::from_secs(10);
        let mut w = RestartWindow::default();
        for i in 0..1000u32 {
            let now = t0 + (period + Duration::from_millis(1)) * i;
            assert_eq!(w.add(now, period), 1, "restart {i} tripped the window");
        }
    }

    #[test]
    fn restart_types() {
        let clean = Exit {
            code: Some(0),
            signal: None,
            core_dumped: false,
            reason: ExitReason::Exited,
        };
        let crash = Exit {
            code: None,
            signal: Some(9),
            core_dumped: false,
            reason: ExitReason::Killed,
        };
        let failed = Exit {
            code: Some(3),
            signal: None,
            core_dumped: false,
            reason: ExitReason::Exited,
        };
        assert!(should_restart(RestartType::Permanent, &clean));
        assert!(should_restart(RestartType::Permanent, &crash));
        assert!(!should_restart(RestartType::Transient, &clean));
        assert!(should_restart(RestartType::Transient, &crash));
        assert!(should_restart(RestartType::Transient, &failed));
        assert!(!should_restart(RestartType::Temporary, &crash));
        assert!(!should_restart(RestartType::Temporary, &failed));
    }

    /// Every row of the restart semantics: (restart type, verdict, cause, terminating, exit
    /// code, signal, restarts already in the window) → the decision. The policy: backoff 100 ms
    /// doubling, no jitter, at most 2 restarts within 60 s.
    #[test]
    fn decide_table() {
        use crate::spec::{IntensitySpec, ShutdownSpec};
        use Cause::*;
        use RestartType::*;
        let ms = Duration::from_millis;
        let restart = |d: u64| Decision::Restart { delay: ms(d) };
        let stop = |s: &str| Decision::Stop(s.to_string());
        let retry = ExitVerdict::RetryAfter(ms(5000));
        let no = ExitVerdict::DoNotRestart;
        let usep = ExitVerdict::UsePolicy;
        type Row = (
            RestartType,
            ExitVerdict,
            Cause,
            bool,
            Option<i32>,
            Option<i32>,
            usize,
            Decision,
        );
        #[rustfmt::skip]
        let rows: &[Row] = &[
            // Restart types on an exit of its own.
            (Permanent, usep, Own, false, Some(0), None, 0, restart(100)),
            (Permanent, usep, Own, false, Some(1), None, 0, restart(100)),
            (Permanent, usep, Own, false, None, Some(9), 0, restart(100)),
            (Transient, usep, Own, false, Some(0), None, 0, stop("transient worker")),
            (Transient, usep, Own, false, Some(1), None, 0, restart(100)),
            (Transient, usep, Own, false, None, Some(15), 0, restart(100)),
            (Temporary, usep, Own, false, Some(1), None, 0, stop("temporary worker")),
            (Temporary, usep, Own, false, None, Some(9), 0, stop("temporary worker")),
            // The backoff grows with earlier restarts (the counter follows the window here).
            (Permanent, usep, Own, false, Some(1), None, 1, restart(200)),
            // Intensity: a third restart within the window escalates.
            (Permanent, usep, Own, false, Some(1), None, 2, Decision::Escalate { restarts: 3 }),
            (Transient, usep, Own, false, Some(0), None, 2, stop("transient worker")),
            // The watchdog is decided like an exit of its own.
            (Permanent, usep, Watchdog, false, None, Some(6), 0, restart(100)),
            (Temporary, usep, Watchdog, false, None, Some(6), 0, stop("temporary worker")),
            // Operator and shutdown causes win over everything.
            (Permanent, usep, Operator, false, None, Some(15), 0, stop("stopped by operator")),
            (Permanent, usep, Shutdown, false, None, Some(15), 0, stop("server shutting down")),
            (Temporary, usep, Restart, false, None, Some(15), 2, restart(0)),
            (Permanent, usep, Restart, true, None, Some(15), 0, stop("server shutting down")),
            (Permanent, usep, Own, true, Some(1), None, 0, stop("server shutting down")),
            // The worker type's verdict.
            (Permanent, no, Own, false, Some(1), None, 0, stop("test says do not restart")),
            (Temporary, retry, Own, false, Some(1), None, 0, restart(5000)),
            (Permanent, retry, Own, false, Some(1), None, 2, Decision::Escalate { restarts: 3 }),
        ];
        for (n, (rt, verdict, cause, terminating, code, signal, earlier, expected)) in
            rows.iter().enumerate()
        {
            let policy = RestartPolicy {
                restart: *rt,
                backoff: spec(100, 10_000, 2.0, 0.0),
                intensity: IntensitySpec {
                    max_restarts: 2,
                    within: Duration::from_secs(60),
                },
                shutdown: ShutdownSpec {
                    signal: crate::signal::Signal::TERM,
                    grace: Duration::from_secs(1),
                },
                start_secs: Duration::ZERO,
                heartbeat_timeout: None,
            };
            let now = Instant::now();
            let mut window = RestartWindow::default();
            let mut counter = BackoffCounter::default();
            for _ in 0..*earlier {
                window.add(now, policy.intensity.within);
                counter.next_attempt(Duration::ZERO, policy.backoff.reset_after);
            }
            let exit = Exit {
                code: *code,
                signal: *signal,
                core_dumped: false,
                reason: ExitReason::Exited,
            };
            let ended = Ended {
                exit: &exit,
                verdict: *verdict,
                cause: *cause,
                uptime: Duration::ZERO,
                terminating: *terminating,
            };
            let got = decide(&policy, "test", ended, &window, counter, now, 0.5).decision;
            assert_eq!(&got, expected, "row {n}");
        }
    }

    fn policy(
        restart: RestartType,
        backoff: BackoffSpec,
        max_restarts: u32,
        within_s: u64,
    ) -> RestartPolicy {
        use crate::spec::{IntensitySpec, ShutdownSpec};
        RestartPolicy {
            restart,
            backoff,
            intensity: IntensitySpec {
                max_restarts,
                within: Duration::from_secs(within_s),
            },
            shutdown: ShutdownSpec {
                signal: crate::signal::Signal::TERM,
                grace: Duration::from_secs(1),
            },
            start_secs: Duration::ZERO,
            heartbeat_timeout: None,
        }
    }

    fn exit(code: Option<i32>, signal: Option<i32>) -> Exit {
        Exit {
            code,
            signal,
            core_dumped: false,
            reason: ExitReason::Exited,
        }
    }

    fn own(exit: &Exit, uptime: Duration) -> Ended<'_> {
        Ended {
            exit,
            verdict: ExitVerdict::UsePolicy,
            cause: Cause::Own,
            uptime,
            terminating: false,
        }
    }

    /// Restart type × normal (code 0) / abnormal (code 1, SIGKILL) exit: the decision, and
    /// the counter updates that go with it (a restart is counted, a stop changes nothing).
    #[test]
    fn decide_restart_type_by_exit_table() {
        use RestartType::*;
        let ms = Duration::from_millis;
        let restart = Decision::Restart { delay: ms(100) };
        let normal = exit(Some(0), None);
        let failed = exit(Some(1), None);
        let killed = exit(None, Some(9));
        #[rustfmt::skip]
        let rows: &[(RestartType, &Exit, Decision)] = &[
            (Permanent, &normal, restart.clone()),
            (Permanent, &failed, restart.clone()),
            (Permanent, &killed, restart.clone()),
            (Transient, &normal, Decision::Stop("transient worker".into())),
            (Transient, &failed, restart.clone()),
            (Transient, &killed, restart.clone()),
            (Temporary, &normal, Decision::Stop("temporary worker".into())),
            (Temporary, &failed, Decision::Stop("temporary worker".into())),
            (Temporary, &killed, Decision::Stop("temporary worker".into())),
        ];
        for (n, (rt, exit, expected)) in rows.iter().enumerate() {
            let p = policy(*rt, spec(100, 10_000, 2.0, 0.0), 5, 60);
            let now = Instant::now();
            let window = RestartWindow::default();
            let counter = BackoffCounter::default();
            let got = decide(
                &p,
                "test",
                own(exit, Duration::ZERO),
                &window,
                counter,
                now,
                0.5,
            );
            assert_eq!(&got.decision, expected, "row {n}");
            let restarted = matches!(expected, Decision::Restart { .. });
            assert_eq!(
                got.update.count_restart,
                restarted.then_some(now),
                "row {n}: counted"
            );
            let mut advanced = BackoffCounter::default();
            if restarted {
                advanced.next_attempt(Duration::ZERO, p.backoff.reset_after);
            }
            assert_eq!(got.update.counter, advanced, "row {n}: counter");
        }
    }

    /// A sequence of exits through `decide`, each update applied as the supervisor applies it:
    /// (seconds since the first exit, uptime of the run in seconds) → the decision. Backoff
    /// 100 ms doubling up to 1 s, reset after a 60 s run; at most 3 restarts within 10 s.
    #[test]
    fn decide_sequence_table() {
        let ms = Duration::from_millis;
        let restart = |d: u64| Decision::Restart { delay: ms(d) };
        let mut b = spec(100, 1000, 2.0, 0.0);
        b.reset_after = Duration::from_secs(60);
        let p = policy(RestartType::Permanent, b, 3, 10);
        #[rustfmt::skip]
        let rows: &[(u64, u64, Decision)] = &[
            // Backoff grows with each restart of a short run ...
            (0, 1, restart(100)),
            (11, 1, restart(200)),
            (22, 1, restart(400)),
            (33, 1, restart(800)),
            // ... up to its max ...
            (44, 1, restart(1000)),
            (55, 1, restart(1000)),
            // ... and starts again after a run of at least `reset_after`.
            (200, 60, restart(100)),
            (211, 1, restart(200)),
            // Intensity: restarts 2 and 3 inside the window are allowed, the 4th escalates.
            (212, 1, restart(400)),
            (213, 1, restart(800)),
            (214, 1, Decision::Escalate { restarts: 4 }),
        ];
        let t0 = Instant::now();
        let mut window = RestartWindow::default();
        let mut counter = BackoffCounter::default();
        let crash = exit(None, Some(9));
        for (n, (at, uptime, expected)) in rows.iter().enumerate() {
            let now = t0 + Duration::from_secs(*at);
            let ended = own(&crash, Duration::from_secs(*uptime));
            let got = decide(&p, "test", ended, &window, counter, now, 0.5);
            assert_eq!(&got.decision, expected, "row {n}");
            got.update
                .apply(&mut window, &mut counter, p.intensity.within);
        }
    }

    /// The jitter sample scales the delay within `[1 - jitter, 1 + jitter]`, never past `max`,
    /// and the same inputs always give the same decision.
    #[test]
    fn decide_jitter_bounds_table() {
        let ms = Duration::from_millis;
        #[rustfmt::skip]
        let rows: &[(u64, f64, f64, u64)] = &[
            // (initial ms, jitter, sample, expected delay ms)
            (1000, 0.0, 0.0, 1000),
            (1000, 0.0, 0.99, 1000),
            (1000, 0.2, 0.0, 800),
            (1000, 0.2, 0.5, 1000),
            (1000, 0.2, 1.0, 1200),
            (1000, 1.0, 0.0, 0),
            // At the cap, jitter may only go down.
            (5000, 0.5, 1.0, 5000),
            (5000, 0.5, 0.0, 2500),
        ];
        let crash = exit(Some(1), None);
        for (n, (initial, jitter, sample, expected)) in rows.iter().enumerate() {
            let p = policy(
                RestartType::Permanent,
                spec(*initial, 5000, 2.0, *jitter),
                10,
                60,
            );
            let now = Instant::now();
            let window = RestartWindow::default();
            let counter = BackoffCounter::default();
            let got = decide(
                &p,
                "t",
                own(&crash, Duration::ZERO),
                &window,
                counter,
                now,
                *sample,
            );
            let again = decide(
                &p,
                "t",
                own(&crash, Duration::ZERO),
                &window,
                counter,
                now,
                *sample,
            );
            assert_eq!(
                got.decision,
                Decision::Restart {
                    delay: ms(*expected)
                },
                "row {n}"
            );
            assert_eq!(got, again, "row {n}: not reproducible");
        }
    }

    /// An operator's restart resets the backoff and is not counted; a stop changes nothing.
    #[test]
    fn decide_updates_for_requested_ends() {
        let p = policy(RestartType::Permanent, spec(100, 1000, 2.0, 0.0), 3, 10);
        let now = Instant::now();
        let mut window = RestartWindow::default();
        window.add(now, p.intensity.within);
        let mut counter = BackoffCounter::default();
        counter.next_attempt(Duration::ZERO, p.backoff.reset_after);
        let crash = exit(None, Some(15));
        let with = |cause| Ended {
            cause,
            ..own(&crash, Duration::ZERO)
        };
        let got = decide(&p, "t", with(Cause::Restart), &window, counter, now, 0.5);
        assert_eq!(
            got.decision,
            Decision::Restart {
                delay: Duration::ZERO
            }
        );
        assert_eq!(
            got.update,
            Update {
                count_restart: None,
                counter: BackoffCounter::default()
            }
        );
        for cause in [Cause::Operator, Cause::Shutdown] {
            let got = decide(&p, "t", with(cause), &window, counter, now, 0.5);
            assert!(matches!(got.decision, Decision::Stop(_)), "{cause:?}");
            assert_eq!(
                got.update,
                Update {
                    count_restart: None,
                    counter
                },
                "{cause:?}"
            );
        }
    }
}

//! Property tests of the config loader (issue 16): any input gives a config or a one-line
//! error (with a position when RON stopped somewhere), never a panic; generated valid configs
//! parse back to the values they were printed from.

use std::path::Path;
use std::time::Duration;

use proptest::prelude::*;

use super::*;

const FILE: &str = "/cfg/config.ron";

fn parse(text: &str) -> Result<Loaded, ConfigError> {
    parse_text(
        text,
        Path::new(FILE),
        Path::new(FILE),
        Path::new("/cfg"),
        false,
    )
}

const VALID: &str = r#"(
    data_dir: "var",
    root: (backoff: (initial: "1s", max: "30s")),
    workers: [
        (name: "web", kind: Command(argv: ["/bin/sh", "-c", "exec sleep 1"], env: {"A": "b"}),
         restart: Transient, backoff: (initial: "100ms", max: "5s", multiplier: 2.0, jitter: 0.1),
         intensity: (max_restarts: 5, within: "60s"), shutdown: (signal: "SIGINT", grace: "3s"),
         heartbeat_timeout: Some("10s"), log: (max_bytes: 65536, max_files: 3)),
    ],
)"#;

fn check_error(e: &ConfigError) -> Result<(), TestCaseError> {
    let text = e.to_string();
    prop_assert!(!text.contains('\n'), "more than one line: {text}");
    prop_assert!(text.starts_with(FILE), "no file: {text}");
    prop_assert!(text.len() < 2000, "too long: {} bytes", text.len());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Any text at all.
    #[test]
    fn any_text_is_a_config_or_one_line_error(text in ".{0,400}") {
        if let Err(e) = parse(&text) {
            check_error(&e)?;
        }
    }

    /// A valid config with a few bytes replaced, removed or inserted.
    #[test]
    fn a_mutated_config_is_a_config_or_one_line_error(
        edits in proptest::collection::vec((0usize..VALID.len(), 0u8..3, any::<char>()), 1..6),
    ) {
        let mut text: Vec<char> = VALID.chars().collect();
        for (at, op, c) in edits {
            let at = at.min(text.len().saturating_sub(1));
            match op {
                0 => text[at] = c,
                1 => { text.remove(at); }
                _ => text.insert(at, c),
            }
        }
        let text: String = text.into_iter().collect();
        if let Err(e) = parse(&text) {
            check_error(&e)?;
            if let ConfigError::Parse { at, .. } = &e {
                prop_assert!(at.line >= 1 && at.col >= 1, "{e}");
            }
        }
    }

    /// Printed from values, parsed back to the same values.
    #[test]
    fn valid_configs_round_trip(
        name in "[a-z][a-z0-9_-]{0,20}",
        initial_ms in 0u64..10_000,
        extra_ms in 0u64..100_000,
        multiplier in 1.0f64..100.0,
        jitter in 0.0f64..=1.0,
        max_restarts in 0u32..1000,
        within_s in 1u64..3600,
        grace_ms in 0u64..60_000,
        max_bytes in 4096u64..(1 << 30),
        max_files in 1u32..1000,
        args in proptest::collection::vec("[ -~]{0,20}", 0..4),
    ) {
        prop_assume!(name != "vigil");
        let argv: Vec<String> = std::iter::once("/bin/prog".to_string()).chain(args.clone()).collect();
        let text = format!(
            "(workers: [(name: {name:?}, kind: Command(argv: {argv:?}), \
             backoff: (initial: \"{initial_ms}ms\", max: \"{}ms\", multiplier: {multiplier:?}, jitter: {jitter:?}), \
             intensity: (max_restarts: {max_restarts}, within: \"{within_s}s\"), \
             shutdown: (grace: \"{grace_ms}ms\"), log: (max_bytes: {max_bytes}, max_files: {max_files}))])",
            initial_ms + extra_ms
        );
        let loaded = match parse(&text) {
            Ok(l) => l,
            Err(e) => return Err(TestCaseError::fail(format!("{e}\n{text}"))),
        };
        let w = &loaded.tree.workers[0];
        prop_assert_eq!(&w.name, &name);
        let p = w.policy;
        prop_assert_eq!(p.backoff.initial, Duration::from_millis(initial_ms));
        prop_assert_eq!(p.backoff.max, Duration::from_millis(initial_ms + extra_ms));
        prop_assert_eq!(p.backoff.multiplier, multiplier);
        prop_assert_eq!(p.backoff.jitter, jitter);
        prop_assert_eq!(p.intensity.max_restarts, max_restarts);
        prop_assert_eq!(p.intensity.within, Duration::from_secs(within_s));
        prop_assert_eq!(p.shutdown.grace, Duration::from_millis(grace_ms));
        prop_assert_eq!(w.log.max_bytes, max_bytes);
        prop_assert_eq!(w.log.max_files, max_files);
    }
}

/// The mutation test's starting point is itself valid.
#[test]
fn the_mutated_config_starts_valid() {
    if let Err(e) = parse(VALID) {
        panic!("{e}");
    }
}

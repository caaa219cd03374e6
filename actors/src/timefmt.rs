//! Times as vigil writes them everywhere (history, events, the dump): timestamps in RFC 3339,
//! UTC, with milliseconds (`2026-12-02T16:24:54.982Z`), and durations as whole milliseconds.
//!
//! A leaf: imports nothing of the tree, so every module may use it without a cycle.

use std::time::{Duration, SystemTime};

/// `t` as RFC 3339 in UTC with milliseconds (the epoch for a time jiff cannot represent).
pub fn rfc3339(t: SystemTime) -> String {
    match jiff::Timestamp::try_from(t) {
        Ok(ts) => format!("{ts:.3}"),
        Err(_) => "1970-01-01T00:00:00.000Z".to_string(),
    }
}

/// Now, as [`rfc3339`].
pub fn now_rfc3339() -> String {
    rfc3339(SystemTime::now())
}

/// A stored RFC 3339 time shortened to whole seconds in UTC, `2026-11-28T22:10:03Z`; the text
/// itself when it does not parse.
pub fn whole_seconds(rfc3339: &str) -> String {
    match rfc3339.parse::<jiff::Timestamp>() {
        Ok(t) => t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        Err(_) => rfc3339.to_string(),
    }
}

/// `d` in whole milliseconds, as the dump and history fields (`*_ms`) carry it; saturates.
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn milliseconds_always() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_millis(1_764_692_694_982)),
            "2025-12-02T16:24:54.982Z"
        );
        assert!(now_rfc3339().ends_with('Z'));
        assert_eq!(
            whole_seconds("2026-11-28T22:10:03.123456Z"),
            "2026-11-28T22:10:03Z"
        );
        assert_eq!(whole_seconds("not a time"), "not a time");
    }
}

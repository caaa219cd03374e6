//! Experiment flags (temporary).
#![allow(missing_docs)]
use std::sync::OnceLock;
pub fn flag(name: &str) -> u64 {
    static CACHE: OnceLock<std::collections::HashMap<String, u64>> = OnceLock::new();
    let m = CACHE.get_or_init(|| std::env::vars().filter(|(k, _)| k.starts_with("VIGIL_X_")).map(|(k, v)| (k, v.parse().unwrap_or(0))).collect());
    m.get(name).copied().unwrap_or(0)
}

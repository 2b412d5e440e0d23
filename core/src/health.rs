//! The node's health board: components report a failure that stops them
//! from doing their job (an object or volume store that refuses writes
//! after a failed fdatasync, a Raft core that stopped), and clear it when
//! they recover. `/healthz` and `/readyz` answer 503 with the list while
//! anything is reported, so a load balancer or an operator sees it.
//!
//! Process-wide on purpose: it is written only when a component changes
//! state (never per request) and read per health probe, so a mutex behind a
//! `OnceLock` costs nothing on the data path.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

fn board() -> &'static Mutex<BTreeMap<String, String>> {
    static BOARD: OnceLock<Mutex<BTreeMap<String, String>>> = OnceLock::new();
    BOARD.get_or_init(Mutex::default)
}

/// `component` (e.g. `s3 store shard 1`) has failed for `reason`.
pub fn report_failed(component: &str, reason: &str) {
    let mut board = board().lock().unwrap_or_else(|e| e.into_inner());
    if board.get(component).map(String::as_str) != Some(reason) {
        tracing::error!(
            component,
            reason,
            "component failed: the node reports unhealthy"
        );
        board.insert(component.to_owned(), reason.to_owned());
    }
}

/// `component` works again.
pub fn clear(component: &str) {
    let mut board = board().lock().unwrap_or_else(|e| e.into_inner());
    if board.remove(component).is_some() {
        tracing::info!(component, "component recovered");
    }
}

/// Every failed component and why, by name.
pub fn failures() -> Vec<(String, String)> {
    let board = board().lock().unwrap_or_else(|e| e.into_inner());
    board.iter().map(|(c, r)| (c.clone(), r.clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_are_listed_until_cleared() {
        report_failed("test component", "disk full");
        assert!(failures().contains(&("test component".into(), "disk full".into())));
        clear("test component");
        assert!(!failures().iter().any(|(c, _)| c == "test component"));
    }
}

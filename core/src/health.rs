//! The node's health board (and the one test for "the disk is full" that
//! every store's error mapping uses): components report a failure that stops them
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

/// Whether an error, or any of its causes, is ENOSPC (a full disk). Looks
/// inside `std::io::Error`s that wrap another error, as glommio's do.
pub fn is_no_space(e: &(dyn std::error::Error + 'static)) -> bool {
    const ENOSPC: i32 = 28;
    let mut cause = Some(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::StorageFull || io.raw_os_error() == Some(ENOSPC) {
                return true;
            }
            if let Some(inner) = io.get_ref() {
                cause = Some(inner as &(dyn std::error::Error + 'static));
                continue;
            }
        }
        cause = c.source();
    }
    false
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

    #[test]
    fn enospc_is_found_through_wrapping() {
        let full = std::io::Error::from_raw_os_error(28);
        assert!(is_no_space(&full));
        let wrapped = std::io::Error::other(full);
        assert!(is_no_space(&wrapped));
        assert!(!is_no_space(&std::io::Error::other("short read")));
    }
}

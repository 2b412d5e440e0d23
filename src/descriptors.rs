//! The open-file budget of a node. At start photon raises its soft
//! RLIMIT_NOFILE (to `limits.open_files`, or the hard limit), keeps a
//! reserve for its own files (segments, journals, the Raft log, sockets
//! between shards) and splits the rest between its listeners: the
//! per-listener connection limits are cut to what the descriptors allow, so
//! a connection flood meets a limit of ours, never EMFILE inside a store.

use anyhow::Context;
use photon_core::config::LimitsConfig;

/// Descriptors kept for files and internal sockets, besides connections.
const FILES_RESERVE: u64 = 1024;

/// Raises the soft open-file limit to `wanted` (0: the hard limit) and
/// returns the limit now in force.
pub fn raise_open_files(wanted: u64) -> anyhow::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass and nothing else.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("getrlimit(RLIMIT_NOFILE)");
    }
    let target = if wanted == 0 {
        limit.rlim_max
    } else {
        wanted.min(limit.rlim_max)
    };
    if target > limit.rlim_cur {
        let raised = libc::rlimit {
            rlim_cur: target,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we pass.
        let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("setrlimit(RLIMIT_NOFILE, {target})"));
        }
        return Ok(target);
    }
    Ok(limit.rlim_cur)
}

/// Cuts the per-listener connection limits so that `listeners` listeners
/// at their limits fit in `open_files` beside the reserve. Returns whether
/// anything was cut.
pub fn fit_connections(limits: &mut LimitsConfig, open_files: u64, listeners: usize) -> bool {
    let budget = open_files
        .saturating_sub(FILES_RESERVE)
        .max(listeners as u64);
    let per_listener = (budget / listeners.max(1) as u64).max(1) as usize;
    if limits.connections_per_listener <= per_listener {
        return false;
    }
    limits.connections_per_listener = per_listener;
    limits.unauthenticated_per_listener = limits.unauthenticated_per_listener.min(per_listener);
    limits.unauthenticated_per_source = limits.unauthenticated_per_source.min(per_listener);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_split_between_listeners() {
        let mut limits = LimitsConfig::default();
        assert!(!fit_connections(&mut limits, 1_048_576, 4));
        assert_eq!(limits.connections_per_listener, 10_000);
        assert!(fit_connections(&mut limits, 1024 + 4 * 500, 4));
        assert_eq!(limits.connections_per_listener, 500);
        assert_eq!(limits.unauthenticated_per_listener, 500);
        assert!(limits.unauthenticated_per_source <= 500);
        let mut tiny = LimitsConfig::default();
        fit_connections(&mut tiny, 10, 4);
        assert_eq!(tiny.connections_per_listener, 1);
    }

    #[test]
    fn the_soft_limit_goes_up_to_the_hard_one() {
        let now = raise_open_files(0).unwrap();
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct we pass.
        let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
        assert_eq!(rc, 0);
        assert_eq!(now, limit.rlim_cur);
        assert_eq!(limit.rlim_cur, limit.rlim_max);
    }
}

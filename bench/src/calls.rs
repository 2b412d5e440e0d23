//! The request/reply measurement loops shared by every runtime under test:
//! the same loop drives photon's mesh and tokio's channels.

use std::future::Future;
use std::time::Instant;

use crate::report::{new_histogram, Latency};

/// One caller, one call at a time: `warmup` unmeasured calls, then `calls`
/// measured round trips. `call(n)` must answer `Some(2 * n)`.
pub async fn sequential<F, Fut>(mut call: F, warmup: usize, calls: usize) -> Latency
where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = Option<u64>>,
{
    let mut hist = new_histogram();
    for i in 0..(warmup + calls) as u64 {
        let started = Instant::now();
        let reply = call(i).await;
        assert_eq!(reply, Some(i * 2), "wrong reply to call {i}");
        if i >= warmup as u64 {
            let _ = hist.record((started.elapsed().as_nanos() as u64 / 1000).max(1));
        }
    }
    Latency::from_histogram(&hist)
}

/// One of many concurrent callers: calls until `stop` or the first failure;
/// returns how many calls completed.
pub async fn closed_loop<F, Fut>(mut call: F, stop: Instant) -> u64
where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = Option<u64>>,
{
    let mut n = 0u64;
    while Instant::now() < stop {
        if call(n).await.is_none() {
            break;
        }
        n += 1;
    }
    n
}

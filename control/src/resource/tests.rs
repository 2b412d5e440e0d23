//! The guarded read-modify-write loop on a real single-node control plane:
//! conflicting writers all land (each retried on the newer state), a limit
//! counted with `none_created_after` holds exactly under concurrent
//! writers, and refusals and contention come back typed.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use super::txn::{self, CommitError, Plan, ATTEMPTS_MAX};
use crate::node::{ControlNode, ControlNodeConfig};
use crate::proposer::Proposer;

#[derive(Debug, PartialEq, thiserror::Error)]
enum TestError {
    #[error("the limit of {0} is reached")]
    Full(usize),
    #[error(transparent)]
    Commit(#[from] CommitError),
}

fn free_port() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Runs `test` against a fresh single-node control plane.
fn with_node<F, Fut>(name: &str, test: F)
where
    F: FnOnce(Proposer) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let dir = std::env::temp_dir().join(format!("photon-resource-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        let mut config = ControlNodeConfig::single(
            free_port(),
            dir.clone(),
            photon_iam::seal::ClusterKey::generate(),
        );
        config.reserve_bytes = 0;
        config.tell_stderr = false;
        let node = ControlNode::start(config).await.unwrap();
        node.raft
            .wait(Some(Duration::from_secs(10)))
            .metrics(|m| m.current_leader == Some(1), "leads")
            .await
            .unwrap();
        test(node.proposer.clone()).await;
        node.shutdown().await;
    });
    let _ = std::fs::remove_dir_all(&dir);
}

fn counter(state: &crate::raft::KvStateMachine) -> (Option<crate::kv::KeyValue>, u64) {
    match state.get_local(b"test/counter") {
        Some(kv) => {
            let n = std::str::from_utf8(&kv.value).unwrap().parse().unwrap();
            (Some(kv), n)
        }
        None => (None, 0),
    }
}

#[test]
fn conflicting_writers_are_retried_on_the_newer_state_and_all_land() {
    with_node("conflict", |proposer| async move {
        const WRITERS: usize = 6;
        let plans = Rc::new(Cell::new(0usize));
        let mut tasks = Vec::new();
        for _ in 0..WRITERS {
            let (proposer, plans) = (proposer.clone(), plans.clone());
            tasks.push(tokio::task::spawn_local(async move {
                txn::update(&proposer, "the counter", |state| {
                    plans.set(plans.get() + 1);
                    let (kv, n) = counter(state);
                    let guard = match &kv {
                        Some(kv) => txn::unchanged(kv),
                        None => txn::absent(b"test/counter"),
                    };
                    let put = txn::put(&b"test/counter"[..], (n + 1).to_string());
                    Ok::<_, TestError>(Plan::write(vec![guard], vec![put], n + 1))
                })
                .await
            }));
        }
        let mut seen = Vec::new();
        for task in tasks {
            seen.push(task.await.unwrap().unwrap());
        }
        seen.sort_unstable();
        // Every writer saw the value the one before it wrote: no increment
        // was lost, and each landed exactly once.
        assert_eq!(seen, (1..=WRITERS as u64).collect::<Vec<_>>());
        assert_eq!(counter(&proposer.state_machine).1, WRITERS as u64);
        // They all read the same state first, so some had to plan again.
        assert!(
            plans.get() > WRITERS,
            "{} plans for {WRITERS} writers: no conflict was exercised",
            plans.get()
        );
    });
}

#[test]
fn a_counted_limit_holds_exactly_under_concurrent_writers() {
    with_node("limit", |proposer| async move {
        const LIMIT: usize = 5;
        const WRITERS: usize = 16;
        let prefix = b"test/items/";
        let mut tasks = Vec::new();
        for i in 0..WRITERS {
            let proposer = proposer.clone();
            tasks.push(tokio::task::spawn_local(async move {
                let key = format!("test/items/{i:02}");
                txn::update(&proposer, "the items", |state| {
                    let all = state.scan_prefix_local(prefix);
                    if all.len() >= LIMIT {
                        return Err(TestError::Full(LIMIT));
                    }
                    Ok(Plan::write(
                        vec![
                            txn::absent(&key),
                            txn::none_created_after(prefix, txn::newest_creation(&all)),
                        ],
                        vec![txn::put(key.clone(), "x")],
                        (),
                    ))
                })
                .await
            }));
        }
        let (mut landed, mut full, mut contended) = (0, 0, 0);
        for task in tasks {
            match task.await.unwrap() {
                Ok(()) => landed += 1,
                Err(TestError::Full(_)) => full += 1,
                Err(TestError::Commit(CommitError::Contended { .. })) => contended += 1,
                Err(e) => panic!("{e}"),
            }
        }
        let stored = proposer.state_machine.scan_prefix_local(prefix).len();
        assert_eq!(stored, LIMIT, "the limit overshot or was not reached");
        assert_eq!(landed, LIMIT);
        assert_eq!(landed + full + contended, WRITERS);
        assert!(full > 0, "no writer was refused by the limit");
    });
}

#[test]
fn a_write_that_keeps_losing_gives_up_naming_what_changed() {
    with_node("contended", |proposer| async move {
        let plans = Cell::new(0usize);
        // The compare can never hold: the key is absent and must hold "y".
        let outcome: Result<(), TestError> = txn::update(&proposer, "the thing", |_| {
            plans.set(plans.get() + 1);
            Ok(Plan::write(
                vec![txn::holds(b"test/never", b"y")],
                vec![txn::put(&b"test/never"[..], "z")],
                (),
            ))
        })
        .await;
        assert_eq!(plans.get(), ATTEMPTS_MAX);
        let e = outcome.unwrap_err();
        assert!(matches!(
            &e,
            TestError::Commit(CommitError::Contended { what }) if what == "the thing"
        ));
        assert!(e.to_string().contains("retry"), "{e}");
        assert!(proposer.state_machine.get_local(b"test/never").is_none());
        // A plan that needs no write commits nothing and answers at once.
        let done: Result<u8, TestError> = txn::update(&proposer, "x", |_| Ok(Plan::Done(7))).await;
        assert_eq!(done, Ok(7));
    });
}

//! Crate-internal tests that look at the store's private state: live-bytes
//! accounting, lock maps, a crash in the middle of a compaction, and the
//! order of syncs and acknowledgements (sync rounds held open).

use photon_core::testing::crash::copy_image;
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use photon_core::local_sync::Signal;

use crate::{no_precondition, Store, StoreConfig};

/// Holds every sync round until opened; counts the rounds that arrived.
#[derive(Default)]
pub(crate) struct SyncHold {
    open: Cell<bool>,
    arrived: Cell<u64>,
    opened: Signal,
}

impl SyncHold {
    pub(crate) async fn wait(&self) {
        self.arrived.set(self.arrived.get() + 1);
        loop {
            let opened = self.opened.listen();
            if self.open.get() {
                return;
            }
            opened.await;
        }
    }

    fn release(&self) {
        self.open.set(true);
        self.opened.notify_all();
    }
}

/// Runs `write` while sync rounds are held: it must not complete until the
/// hold is released, and must complete after.
async fn acknowledged_only_after_sync<F: std::future::Future<Output = ()> + 'static>(
    store: &Rc<Store>,
    what: &str,
    write: F,
) {
    let hold = Rc::new(SyncHold::default());
    store.sync.borrow_mut().hold = Some(hold.clone());
    let done = Rc::new(Cell::new(false));
    let flag = done.clone();
    let task = glommio::spawn_local(async move {
        write.await;
        flag.set(true);
    });
    for _ in 0..2_000 {
        if hold.arrived.get() > 0 {
            break;
        }
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
    assert!(hold.arrived.get() > 0, "{what}: no sync round started");
    glommio::timer::sleep(Duration::from_millis(50)).await;
    assert!(!done.get(), "{what}: acknowledged before its fdatasync");
    store.sync.borrow_mut().hold = None;
    hold.release();
    task.await;
    assert!(done.get(), "{what}: never acknowledged");
}

#[test]
fn nothing_is_acknowledged_before_the_sync_that_covers_it() {
    let dir = TempDir::new("sync-order");
    let config = config(&dir.0);
    glommio::LocalExecutorBuilder::default()
        .make()
        .unwrap()
        .run(async move {
            let (store, _) = Store::open(config).await.unwrap();
            let s = store.clone();
            acknowledged_only_after_sync(&store, "put_object", async move {
                s.put_object(1, "k", b"m".to_vec(), b"inline", no_precondition)
                    .await
                    .unwrap();
            })
            .await;
            let s = store.clone();
            acknowledged_only_after_sync(&store, "put_chunk", async move {
                s.put_chunk(7, 0, &[5u8; 4096]).await.unwrap();
            })
            .await;
            let s = store.clone();
            acknowledged_only_after_sync(&store, "delete_object", async move {
                s.delete_object(1, "k").await.unwrap();
            })
            .await;
            store.close().await.unwrap();
        });
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("photon-object-unit-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn config(dir: &Path) -> StoreConfig {
    StoreConfig {
        dir: dir.to_path_buf(),
        segment_bytes: 256 << 10,
        inline_bytes_max: 32 << 10,
        chunk_bytes_max: 32 << 10,
        meta_bytes_max: 64,
        checkpoint_every_bytes: 0,
        compact_live_ratio_max: 0.6,
        reserve_bytes: 0,
    }
}

fn data(key: &str, version: u64, len: usize) -> Vec<u8> {
    let seed = crc32c::crc32c(key.as_bytes()) as u64 ^ version.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (0..len)
        .map(|i| (seed.wrapping_add(i as u64 * 31) >> 3) as u8)
        .collect()
}

fn assert_accounting(store: &Store) {
    let index = store.index.borrow();
    assert_eq!(
        index
            .recount_live_bytes()
            .into_iter()
            .filter(|(_, v)| *v > 0)
            .collect::<std::collections::HashMap<_, _>>(),
        index.live_bytes_map()
    );
    assert_eq!(store.writer.borrow().in_flight, 0);
    assert_eq!(store.object_locks.len(), 0, "key locks leak");
    assert_eq!(store.chunk_locks.len(), 0, "key locks leak");
}

/// Overwrites keys until at least one sealed segment is below the ratio.
async fn churn(store: &Rc<Store>, rounds: u64) {
    for version in 0..rounds {
        for i in 0..12u64 {
            let key = format!("k{i}");
            store
                .put_object(
                    1,
                    &key,
                    version.to_le_bytes().to_vec(),
                    &data(&key, version, 9000),
                    no_precondition,
                )
                .await
                .unwrap();
        }
        store
            .put_chunk(7, (version % 3) as u32, &data("chunk", version, 20_000))
            .await
            .unwrap();
        if version % 4 == 3 {
            store.delete_object(1, "k5").await.unwrap();
            store.delete_chunks(&[(7, 0)]).await.unwrap();
        }
    }
}

async fn assert_contents(store: &Store, rounds: u64) {
    let last = rounds - 1;
    for i in 0..12u64 {
        let key = format!("k{i}");
        let handle = store.get_object(1, &key);
        if key == "k5" && last % 4 == 3 {
            assert!(handle.is_none());
            continue;
        }
        let handle = handle.unwrap();
        let version = u64::from_le_bytes(handle.meta().try_into().unwrap());
        assert_eq!(version, last);
        assert_eq!(
            store.read_inline(&handle, 0, 9000).await.unwrap(),
            data(&key, last, 9000)
        );
    }
}

#[test]
fn live_bytes_accounting_and_locks_stay_exact() {
    let dir = TempDir::new("accounting");
    let config = config(&dir.0);
    glommio::LocalExecutorBuilder::default()
        .make()
        .unwrap()
        .run(async move {
            let (store, _) = Store::open(config.clone()).await.unwrap();
            churn(&store, 10).await;
            assert_accounting(&store);
            while store.compact_once().await.unwrap().victim.is_some() {
                assert_accounting(&store);
            }
            assert!(store.stats().compactions > 0);
            store.close().await.unwrap();
            let (store, _) = Store::open(config).await.unwrap();
            assert_accounting(&store);
            assert_contents(&store, 10).await;
            store.close().await.unwrap();
        });
}

#[test]
fn crash_after_compaction_copies_before_second_checkpoint() {
    let dir = TempDir::new("compaction-crash");
    let config = config(&dir.0.join("store"));
    let crashed = dir.0.join("crashed");
    glommio::LocalExecutorBuilder::default()
        .make()
        .unwrap()
        .run(async move {
            let (store, _) = Store::open(config.clone()).await.unwrap();
            churn(&store, 10).await;
            // Steps 1-3 of compaction, then a crash: copies are durable but
            // only the first checkpoint exists.
            let first = store.checkpoint_now().await.unwrap();
            let active = store.writer.borrow().active.id;
            let victim = store
                .segments
                .borrow()
                .range(..first.replay_segment)
                .map(|(_, s)| s.clone())
                .find(|s| s.id != active && store.index.borrow().live_bytes(s.id) > 0)
                .unwrap();
            let records = store.index.borrow().records_in(victim.id);
            let mut report = crate::CompactReport::default();
            store.copy_records(records, &mut report).await.unwrap();
            assert_eq!(store.index.borrow().live_bytes(victim.id), 0);
            copy_image(&config.dir, &crashed);
            drop(store);

            let (store, report) = Store::open(StoreConfig {
                dir: crashed.clone(),
                ..config
            })
            .await
            .unwrap();
            assert!(
                report.records_skipped > 0,
                "copies must be skipped on replay: {report:?}"
            );
            assert_accounting(&store);
            assert_contents(&store, 10).await;
            // The victim is still there and still referenced; compacting again works.
            while store.compact_once().await.unwrap().victim.is_some() {}
            assert_contents(&store, 10).await;
            store.close().await.unwrap();
        });
}

#[test]
fn a_full_disk_refuses_puts_but_takes_deletes_and_compaction_then_recovers() {
    let dir = TempDir::new("full-disk");
    let disk = photon_core::testing::SmallDisk::mount(dir.0.join("disk"), 8);
    let mut config = config(&disk.path().join("store"));
    config.reserve_bytes = config.segment_bytes + (512 << 10);
    glommio::LocalExecutorBuilder::default()
        .make()
        .unwrap()
        .run(async move {
            let (store, _) = Store::open(config.clone()).await.unwrap();
            let body = |i: u64| data(&format!("o{i}"), 0, 30_000);
            let mut stored = 0u64;
            let full = loop {
                let key = format!("o{stored}");
                match store
                    .put_object(1, &key, vec![], &body(stored), no_precondition)
                    .await
                {
                    Ok(_) => stored += 1,
                    Err(e) => break e,
                }
                assert!(stored < 1000, "an 8 MiB disk took 30 MB");
            };
            assert!(photon_core::health::is_no_space(&full), "{full}");
            // The reserve is out; puts stay refused, deletes go through.
            let again = store
                .put_object(1, "more", vec![], &body(0), no_precondition)
                .await
                .unwrap_err();
            assert!(photon_core::health::is_no_space(&again), "{again}");
            assert!(!store.maintain_reserve(), "the disk is still full");
            // Tombstones take space too: compaction (every few deletes, as
            // the service runs it while the reserve is out) frees dead
            // segments as the deletes make them.
            let mut freed = 0;
            for i in 1..stored {
                store.delete_object(1, &format!("o{i}")).await.unwrap();
                if i % 4 == 0 {
                    while store.compact_once().await.unwrap().victim.is_some() {
                        freed += 1;
                    }
                }
            }
            while store.compact_once().await.unwrap().victim.is_some() {
                freed += 1;
            }
            // The reserve comes back and puts work again, all without
            // reopening the store.
            assert!(freed > 0, "nothing compacted");
            assert!(store.maintain_reserve(), "space did not come back");
            store
                .put_object(1, "after", vec![], &body(99), no_precondition)
                .await
                .unwrap();
            store.close().await.unwrap();
            let (store, _) = Store::open(config).await.unwrap();
            let read = |key: &str| store.get_object(1, key);
            let o0 = read("o0").unwrap();
            assert_eq!(store.read_inline(&o0, 0, 30_000).await.unwrap(), body(0));
            assert!(read("o1").is_none());
            let after = read("after").unwrap();
            assert_eq!(
                store.read_inline(&after, 0, 30_000).await.unwrap(),
                body(99)
            );
            store.close().await.unwrap();
        });
    drop(disk);
}

/// Concurrent writers put and delete their own keys (compaction and
/// checkpoints run beside them) while, at random moments, the directory is
/// copied and a simulated power loss applied to the copy (every write no
/// completed fdatasync covers is kept, lost or torn). The copy must open,
/// and every key must hold what its last acknowledged operation left, or
/// the result of the one operation in flight on it.
#[test]
fn every_acknowledged_write_survives_simulated_power_loss() {
    use photon_core::testing::crash::WriteTrace;
    use std::cell::RefCell;
    use std::collections::HashMap;

    /// What a key may hold after a crash: the acknowledged state, and the
    /// state the operation in flight would leave (None: deleted).
    #[derive(Clone, Default)]
    struct KeyState {
        acked: Option<Vec<u8>>,
        in_flight: Option<Option<Vec<u8>>>,
    }
    const WRITERS: u64 = 4;
    const KEYS_PER_WRITER: u64 = 6;

    let dir = TempDir::new("power-loss");
    let mut config = config(&dir.0.join("store"));
    config.checkpoint_every_bytes = 64 << 10;
    glommio::LocalExecutorBuilder::default()
        .make()
        .unwrap()
        .run(async move {
            let (store, _) = Store::open(config.clone()).await.unwrap();
            let trace = std::sync::Arc::new(WriteTrace::default());
            store.sync.borrow_mut().trace = Some(trace.clone());
            let keys: Rc<RefCell<HashMap<String, KeyState>>> = Rc::default();
            let stop = Rc::new(Cell::new(false));
            let writers: Vec<_> = (0..WRITERS)
                .map(|w| {
                    let (store, keys, stop) = (store.clone(), keys.clone(), stop.clone());
                    glommio::spawn_local(async move {
                        let mut seed = 0x9e37_79b9_7f4a_7c15u64.wrapping_mul(w + 1);
                        let mut version = 0u64;
                        while !stop.get() {
                            seed ^= seed << 13;
                            seed ^= seed >> 7;
                            seed ^= seed << 17;
                            version += 1;
                            let key = format!("w{w}-k{}", seed % KEYS_PER_WRITER);
                            let value = (!seed.is_multiple_of(5))
                                .then(|| data(&key, version, 100 + (seed % 20_000) as usize));
                            keys.borrow_mut().entry(key.clone()).or_default().in_flight =
                                Some(value.clone());
                            match &value {
                                Some(v) => {
                                    store
                                        .put_object(1, &key, vec![], v, no_precondition)
                                        .await
                                        .unwrap();
                                }
                                None => {
                                    store.delete_object(1, &key).await.unwrap();
                                }
                            }
                            let mut keys = keys.borrow_mut();
                            let state = keys.get_mut(&key).unwrap();
                            state.acked = value;
                            state.in_flight = None;
                        }
                    })
                })
                .collect();
            let compactor = {
                let (store, stop) = (store.clone(), stop.clone());
                glommio::spawn_local(async move {
                    while !stop.get() {
                        store.compact_once().await.unwrap();
                        glommio::timer::sleep(Duration::from_millis(3)).await;
                    }
                })
            };
            let (mut crashes, mut undone, mut looked) = (0, 0, 0);
            let mut seed = 0x0dd_ba11u64;
            for crash in 0..40 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                glommio::timer::sleep(Duration::from_micros(200 + seed % 3000)).await;
                looked += usize::from(
                    trace
                        .until_unsynced(std::time::Duration::from_secs(2))
                        .await,
                );
                // The copy and the expectations are taken at the same instant
                // (nothing else runs on this thread meanwhile).
                let image = dir.0.join(format!("crash-{crash}"));
                copy_image(&dir.0.join("store"), &image);
                let expected = keys.borrow().clone();
                let mut rand = |n: u64| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed % n.max(1)
                };
                undone += trace.power_loss(&dir.0.join("store"), &image, &mut rand);
                crashes += 1;
                let (crashed, _) = Store::open(StoreConfig {
                    dir: image.clone(),
                    checkpoint_every_bytes: 0,
                    ..config.clone()
                })
                .await
                .unwrap_or_else(|e| panic!("crash {crash}: the image does not open: {e}"));
                for (key, state) in &expected {
                    let got = match crashed.get_object(1, key) {
                        Some(h) => Some(
                            crashed
                                .read_inline(&h, 0, h.info().inline_len)
                                .await
                                .unwrap(),
                        ),
                        None => None,
                    };
                    let ok =
                        got == state.acked || state.in_flight.as_ref().is_some_and(|f| *f == got);
                    assert!(
                        ok,
                        "crash {crash}: key {key} holds {:?} bytes, acknowledged {:?}",
                        got.as_ref().map(Vec::len),
                        state.acked.as_ref().map(Vec::len)
                    );
                }
                crashed.close().await.unwrap();
                let _ = std::fs::remove_dir_all(&image);
            }
            stop.set(true);
            for w in writers {
                w.await;
            }
            compactor.await;
            assert!(
                looked * 4 >= crashes * 3 && undone * 10 > crashes,
                "{crashes} crashes, {looked} with writes in flight, undid {undone} writes: \
                 the test does not look"
            );
            store.close().await.unwrap();
        });
}

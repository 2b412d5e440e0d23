//! Crate-internal tests that look at the store's private state: live-bytes
//! accounting, lock maps, a crash in the middle of a compaction, and the
//! order of syncs and acknowledgements (sync rounds held open).

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
    }
}

fn data(key: &str, version: u64, len: usize) -> Vec<u8> {
    let seed = crc32c::crc32c(key.as_bytes()) as u64 ^ version.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (0..len)
        .map(|i| (seed.wrapping_add(i as u64 * 31) >> 3) as u8)
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
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
            copy_dir(&config.dir, &crashed);
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

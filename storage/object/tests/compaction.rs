//! Group commit and compaction, including compaction under concurrent reads
//! and overwrites.

mod common;

use std::cell::Cell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use common::{content, run, segment_files, small_config, TempDir};
use photon_object::{no_precondition, run_compactor, CompactReport, ObjectHandle, Store};

#[test]
fn concurrent_puts_share_fdatasyncs() {
    let dir = TempDir::new("group-commit");
    let config = small_config(dir.path());
    run(async move {
        let (store, _) = Store::open(config).await.unwrap();
        let tasks: Vec<_> = (0..64u64)
            .map(|i| {
                let store = store.clone();
                glommio::spawn_local(async move {
                    let key = format!("k{i}");
                    store
                        .put_object(
                            1,
                            &key,
                            Vec::new(),
                            &content(&key, 1, 4000),
                            no_precondition,
                        )
                        .await
                        .unwrap();
                })
            })
            .collect();
        for task in tasks {
            task.await;
        }
        let stats = store.stats();
        println!(
            "group commit: {} records, {} fdatasync rounds",
            stats.records_written, stats.syncs
        );
        assert_eq!(stats.records_written, 64);
        assert!(stats.syncs < stats.records_written, "{stats:?}");
        assert!(stats.syncs <= stats.records_written / 2, "{stats:?}");
        assert_eq!(store.list_objects(1, "", None, 100).len(), 64);
        store.close().await.unwrap();
    });
}

/// Object payload for a key at a version; the version is also the meta.
fn object_data(key: &str, version: u64) -> Vec<u8> {
    content(key, version, 20_000 + (version as usize % 7) * 1000)
}

/// Chunk data carrying its version in the first 8 bytes.
fn chunk_data(index: u32, version: u64) -> Vec<u8> {
    let mut data = version.to_le_bytes().to_vec();
    data.extend(content(&format!("c{index}"), version, 40_000));
    data
}

/// Writes 60 objects and 10 chunks, then overwrites or deletes most of them
/// so the first segments fall below the live ratio. Returns the model (key →
/// version) and handles to k00 (stays live) and k02 (overwritten) taken
/// before the churn.
async fn fill_and_churn(store: &Store) -> (BTreeMap<String, u64>, ObjectHandle, ObjectHandle) {
    let mut objects = BTreeMap::new();
    for i in 0..60u64 {
        let key = format!("k{i:02}");
        store
            .put_object(
                1,
                &key,
                1u64.to_le_bytes().to_vec(),
                &object_data(&key, 1),
                no_precondition,
            )
            .await
            .unwrap();
        objects.insert(key, 1u64);
    }
    for index in 0..10u32 {
        store
            .put_chunk(2, index, &chunk_data(index, 1))
            .await
            .unwrap();
    }
    let live_handle = store.get_object(1, "k00").unwrap();
    let dead_handle = store.get_object(1, "k02").unwrap();
    // Overwrite or delete most of what the first segments hold.
    for i in 0..60u64 {
        let key = format!("k{i:02}");
        match i % 5 {
            0 => {}
            1 => {
                store.delete_object(1, &key).await.unwrap();
                objects.remove(&key);
            }
            _ => {
                let meta = 2u64.to_le_bytes().to_vec();
                store
                    .put_object(1, &key, meta, &object_data(&key, 2), no_precondition)
                    .await
                    .unwrap();
                objects.insert(key, 2);
            }
        }
    }
    store
        .delete_chunks(&(0..8).map(|i| (2, i)).collect::<Vec<_>>())
        .await
        .unwrap();
    (objects, live_handle, dead_handle)
}

#[test]
fn compaction_frees_dead_segments_and_keeps_live_data() {
    let dir = TempDir::new("compaction");
    let config = small_config(dir.path());
    run(async move {
        let (store, _) = Store::open(config.clone()).await.unwrap();
        // Handles taken before the churn: one of a version that stays live,
        // one of a version about to be overwritten. Both pin segment 1.
        let (objects, live_handle, dead_handle) = fill_and_churn(&store).await;
        let before = store.stats();
        let files_before = segment_files(dir.path());
        let report = store.compact_once().await.unwrap();
        println!("{report:?}\nbefore {before:?}\nafter  {:?}", store.stats());
        let victim = report.victim.expect("a segment qualifies");
        assert!(report.live_ratio < 0.5);
        assert!(report.records_copied > 0);
        assert!(
            !dir.join(&format!("seg-{victim:016x}.log")).exists(),
            "victim file removed"
        );
        assert_eq!(
            segment_files(dir.path()).len(),
            files_before.len() - 1 + usize::from(store.stats().segments > before.segments)
        );
        // The victim is unlinked, yet handles resolved before still read it.
        for handle in [&live_handle, &dead_handle] {
            let data = store
                .read_inline(handle, 0, handle.inline_len())
                .await
                .unwrap();
            assert!(data == object_data(handle.key(), 1));
        }
        while store.compact_once().await.unwrap().victim.is_some() {}
        let after = store.stats();
        println!("all compacted {after:?}");
        assert!(
            after.segment_bytes < before.segment_bytes,
            "{before:?} -> {after:?}"
        );
        assert!(after.compactions >= 1);
        assert_eq!(after.live_bytes, before.live_bytes);
        check_contents(&store, &objects).await;
        store.close().await.unwrap();

        let (store, report) = Store::open(config).await.unwrap();
        println!("{report:?}");
        check_contents(&store, &objects).await;
        store.close().await.unwrap();
    });
}

async fn check_contents(store: &Store, objects: &BTreeMap<String, u64>) {
    let listed: Vec<String> = store
        .list_objects(1, "", None, 1000)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(listed, objects.keys().cloned().collect::<Vec<_>>());
    for (key, version) in objects {
        let handle = store.get_object(1, key).unwrap();
        let data = store
            .read_inline(&handle, 0, handle.inline_len())
            .await
            .unwrap();
        assert!(data == object_data(key, *version), "{key} differs");
    }
    assert_eq!(store.chunk_ids(), [(2, 8), (2, 9)]);
    for index in [8, 9] {
        let data = store
            .read_chunk(2, index, 0, store.chunk_len(2, index).unwrap())
            .await
            .unwrap();
        assert!(data == chunk_data(index, 1));
    }
}

const CONCURRENT_KEYS: u64 = 24;
const LAST_VERSION: u64 = 12;

/// Writes version `version` of every object and chunk concurrently.
async fn write_version(store: &Rc<Store>, version: u64) {
    let writes: Vec<_> = (0..CONCURRENT_KEYS)
        .map(|i| {
            let store = store.clone();
            glommio::spawn_local(async move {
                let key = format!("k{i}");
                let meta = version.to_le_bytes().to_vec();
                let data = object_data(&key, version);
                store
                    .put_object(1, &key, meta, &data, no_precondition)
                    .await
                    .unwrap();
                let chunk = chunk_data(i as u32, version);
                store.put_chunk(3, i as u32, &chunk).await.unwrap();
            })
        })
        .collect();
    for write in writes {
        write.await;
    }
}

/// Reads object and chunk `i` and checks every byte against the version
/// the data claims.
async fn read_and_verify(store: &Store, i: u64) {
    let key = format!("k{i}");
    let handle = store
        .get_object(1, &key)
        .expect("objects are never deleted here");
    let version = u64::from_le_bytes(handle.meta().try_into().unwrap());
    let data = store
        .read_inline(&handle, 0, handle.inline_len())
        .await
        .unwrap();
    assert!(
        data == object_data(&key, version),
        "wrong bytes for {key} v{version}"
    );
    let len = store.chunk_len(3, i as u32).unwrap();
    let chunk = store.read_chunk(3, i as u32, 0, len).await.unwrap();
    let version = u64::from_le_bytes(chunk[..8].try_into().unwrap());
    assert!(
        chunk == chunk_data(i as u32, version),
        "wrong chunk bytes {i} v{version}"
    );
    // A ranged read mid-chunk: it may see a newer version than the read above.
    let part = store.read_chunk(3, i as u32, 30_000, 5_000).await.unwrap();
    let matches = (version..=LAST_VERSION).any(|v| part == chunk_data(i as u32, v)[30_000..35_000]);
    assert!(
        matches,
        "wrong bytes in chunk {i} range (v{version} or later)"
    );
}

/// Runs `compact_once` in a loop until `stop`; returns the reports of the
/// compactions that freed a segment.
async fn compact_until(store: Rc<Store>, stop: Rc<Cell<bool>>) -> Vec<CompactReport> {
    let mut reports = Vec::new();
    while !stop.get() {
        let report = store.compact_once().await.unwrap();
        if report.victim.is_some() {
            reports.push(report);
        } else {
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
    }
    reports
}

/// Readers verify every byte they get while writers overwrite and the
/// compactor moves records: never a wrong byte, never an error.
#[test]
fn compaction_under_concurrent_reads_and_overwrites() {
    let dir = TempDir::new("compaction-concurrent");
    let config = small_config(dir.path());
    run(async move {
        let (store, _) = Store::open(config).await.unwrap();
        write_version(&store, 0).await;
        let stop = Rc::new(Cell::new(false));
        let reads = Rc::new(Cell::new(0u64));
        let readers: Vec<_> = (0..4u64)
            .map(|reader| {
                let (store, stop, reads) = (store.clone(), stop.clone(), reads.clone());
                glommio::spawn_local(async move {
                    let mut i = reader;
                    while !stop.get() {
                        i = (i + 7) % CONCURRENT_KEYS;
                        read_and_verify(&store, i).await;
                        reads.set(reads.get() + 1);
                    }
                })
            })
            .collect();
        let compactor = glommio::spawn_local(compact_until(store.clone(), stop.clone()));
        for version in 1..=LAST_VERSION {
            write_version(&store, version).await;
        }
        // Let the compactor catch up with the last overwrites.
        glommio::timer::sleep(Duration::from_millis(50)).await;
        stop.set(true);
        let compactions = compactor.await;
        for reader in readers {
            reader.await;
        }
        let stats = store.stats();
        println!(
            "{} reads, {} compactions, {stats:?}",
            reads.get(),
            compactions.len()
        );
        assert!(reads.get() > 0);
        assert!(!compactions.is_empty(), "no compaction ran");
        for i in 0..CONCURRENT_KEYS {
            read_and_verify(&store, i).await;
        }
        store.close().await.unwrap();
    });
}

#[test]
fn background_compactor_runs_until_close() {
    let dir = TempDir::new("compaction-background");
    let config = small_config(dir.path());
    run(async move {
        let (store, _) = Store::open(config).await.unwrap();
        let compactor =
            glommio::spawn_local(run_compactor(store.clone(), Duration::from_millis(2)));
        for version in 0..10u64 {
            for i in 0..20u64 {
                let key = format!("k{i}");
                store
                    .put_object(
                        1,
                        &key,
                        Vec::new(),
                        &object_data(&key, version),
                        no_precondition,
                    )
                    .await
                    .unwrap();
            }
        }
        glommio::timer::sleep(Duration::from_millis(30)).await;
        let stats = store.stats();
        println!("{stats:?}");
        assert!(stats.compactions > 0, "{stats:?}");
        store.close().await.unwrap();
        compactor.await;
    });
}

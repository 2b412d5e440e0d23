//! Recovery: reopen after close and after a crash, torn and corrupt tails,
//! holes before later records, forged headers in user data, checkpoints.

mod common;

use std::collections::BTreeMap;
use std::rc::Rc;

use common::{
    checkpoint_files, content, copy_dir, patch_file, read_file_at, records_in_file, run,
    segment_files, small_config, TempDir,
};
use photon_object::record::{self, RecordKind, SegmentHeader};
use photon_object::{no_precondition, ReadError, Store};

/// Writes `count` objects `k0..` of `len` bytes one after another (one
/// record each, in file order) and returns the store.
async fn write_sequence(store: &Store, count: u64, len: usize) {
    for i in 0..count {
        let key = format!("k{i}");
        store
            .put_object(
                1,
                &key,
                i.to_le_bytes().to_vec(),
                &content(&key, 1, len),
                no_precondition,
            )
            .await
            .unwrap();
    }
}

async fn assert_object(store: &Store, key: &str, expected: &[u8]) {
    let handle = store
        .get_object(1, key)
        .unwrap_or_else(|| panic!("{key} missing"));
    let data = store
        .read_inline(&handle, 0, handle.inline_len())
        .await
        .unwrap();
    assert!(data == expected, "{key}: content differs");
}

#[test]
fn reopen_after_close_keeps_everything() {
    let dir = TempDir::new("recovery-close");
    let config = small_config(dir.path());
    run(async move {
        let (store, _) = Store::open(config.clone()).await.unwrap();
        write_sequence(&store, 30, 20_000).await;
        store
            .put_chunk(5, 0, &content("c", 1, 100_000))
            .await
            .unwrap();
        store.put_chunk(5, 1, &content("c", 2, 10)).await.unwrap();
        store.delete_object(1, "k3").await.unwrap();
        store.delete_chunks(&[(5, 1)]).await.unwrap();
        store.close().await.unwrap();
        assert_eq!(checkpoint_files(dir.path()).len(), 1);

        let (store, report) = Store::open(config).await.unwrap();
        println!("{report:?}");
        assert!(report.checkpoint_seq.is_some());
        assert_eq!(report.records_replayed, 0);
        assert_eq!((report.objects, report.chunks), (29, 1));
        for i in (0..30u64).filter(|i| *i != 3) {
            let key = format!("k{i}");
            assert_object(&store, &key, &content(&key, 1, 20_000)).await;
            assert_eq!(store.get_object(1, &key).unwrap().meta(), i.to_le_bytes());
        }
        assert!(store.get_object(1, "k3").is_none());
        assert_eq!(
            store.read_chunk(5, 0, 0, 100_000).await.unwrap(),
            content("c", 1, 100_000)
        );
        assert!(matches!(
            store.read_chunk(5, 1, 0, 1).await,
            Err(ReadError::NotFound)
        ));
        store.close().await.unwrap();
    });
}

/// Concurrent writers; the directory is copied while the store is live (what
/// kill -9 leaves), and every write that returned Ok must read back.
fn crash_copy_case(name: &str, checkpoint_every_bytes: u64) {
    let dir = TempDir::new(name);
    let crashed = TempDir::new(&format!("{name}-copy"));
    let config = photon_object::StoreConfig {
        checkpoint_every_bytes,
        ..small_config(dir.path())
    };
    let crashed_config = photon_object::StoreConfig {
        dir: crashed.join("store"),
        ..config.clone()
    };
    run(async move {
        let (store, _) = Store::open(config).await.unwrap();
        let acked = Rc::new(std::cell::RefCell::new(BTreeMap::new()));
        let mut tasks = Vec::new();
        for writer in 0..8u64 {
            let (store, acked) = (store.clone(), acked.clone());
            tasks.push(glommio::spawn_local(async move {
                for round in 0..12u64 {
                    let key = format!("w{writer}/{}", round % 5);
                    let len = (round as usize * 7919 + writer as usize * 104_729) % 30_000;
                    let data = content(&key, round, len);
                    store
                        .put_object(
                            1,
                            &key,
                            round.to_le_bytes().to_vec(),
                            &data,
                            no_precondition,
                        )
                        .await
                        .unwrap();
                    acked.borrow_mut().insert(key.clone(), Some(data));
                    if round % 4 == 3 {
                        store.delete_object(1, &key).await.unwrap();
                        acked.borrow_mut().insert(key, None);
                    }
                }
            }));
        }
        for task in tasks {
            task.await;
        }
        copy_dir(dir.path(), &crashed_config.dir);
        let stats = store.stats();
        drop(store);

        let (copy, report) = Store::open(crashed_config).await.unwrap();
        println!("{report:?} {stats:?}");
        let acked = acked.borrow().clone();
        for (key, data) in acked.iter() {
            match data {
                Some(data) => assert_object(&copy, key, data).await,
                None => assert!(copy.get_object(1, key).is_none(), "{key} resurrected"),
            }
        }
        let live = acked.values().filter(|d| d.is_some()).count();
        assert_eq!(copy.list_objects(1, "", None, 1000).len(), live);
        copy.close().await.unwrap();
    });
}

#[test]
fn crash_copy_keeps_every_acknowledged_write() {
    crash_copy_case("recovery-crash", 0);
}

#[test]
fn crash_copy_with_automatic_checkpoints() {
    crash_copy_case("recovery-crash-checkpoints", 256 << 10);
}

#[test]
fn torn_tail_loses_only_the_torn_record() {
    let dir = TempDir::new("recovery-torn");
    let config = small_config(dir.path());
    run(async move {
        let (store, _) = Store::open(config.clone()).await.unwrap();
        write_sequence(&store, 5, 20_000).await;
        drop(store);
        let segment = segment_files(dir.path()).remove(0);
        let records = records_in_file(&segment);
        assert_eq!(records.len(), 5);
        let (last, _) = records[4];
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&segment)
            .unwrap();
        file.set_len(last + 8192).unwrap();
        drop(file);

        let (store, report) = Store::open(config.clone()).await.unwrap();
        println!("{report:?}");
        assert!(report.bytes_invalid >= 8192, "{report:?}");
        for i in 0..4 {
            let key = format!("k{i}");
            assert_object(&store, &key, &content(&key, 1, 20_000)).await;
        }
        assert!(store.get_object(1, "k4").is_none());
        // Appending after a torn tail works and survives another reopen.
        store
            .put_object(1, "after", Vec::new(), b"new", no_precondition)
            .await
            .unwrap();
        drop(store);
        let (store, _) = Store::open(config).await.unwrap();
        assert_object(&store, "after", b"new").await;
        assert_object(&store, "k3", &content("k3", 1, 20_000)).await;
        store.close().await.unwrap();
    });
}

#[test]
fn flipped_payload_byte_drops_that_record_only() {
    let dir = TempDir::new("recovery-flip");
    let config = small_config(dir.path());
    run(async move {
        let (store, _) = Store::open(config.clone()).await.unwrap();
        write_sequence(&store, 5, 20_000).await;
        drop(store);
        let segment = segment_files(dir.path()).remove(0);
        let (offset, _) = records_in_file(&segment)[2];
        let at = offset + 5000;
        let mut byte = read_file_at(&segment, at, 1);
        byte[0] ^= 0x40;
        patch_file(&segment, at, &byte);

        let (store, report) = Store::open(config).await.unwrap();
        println!("{report:?}");
        assert!(report.bytes_invalid > 0);
        assert!(
            store.get_object(1, "k2").is_none(),
            "a corrupt record must not be served"
        );
        for i in [0, 1, 3, 4] {
            let key = format!("k{i}");
            assert_object(&store, &key, &content(&key, 1, 20_000)).await;
        }
        store.close().await.unwrap();
    });
}

#[test]
fn corruption_under_a_live_store_is_a_read_error() {
    let dir = TempDir::new("recovery-live-corrupt");
    let config = small_config(dir.path());
    run(async move {
        let (store, _) = Store::open(config).await.unwrap();
        write_sequence(&store, 2, 20_000).await;
        let chunk = content("chunk", 1, 128 << 10);
        store.put_chunk(3, 0, &chunk).await.unwrap();
        let segment = segment_files(dir.path()).remove(0);
        let records = records_in_file(&segment);
        let (object_at, _) = records[1];
        patch_file(&segment, object_at + 10_000, &[0xAA; 3]);
        let (chunk_at, chunk_header) = records[2];
        assert_eq!(chunk_header.kind, RecordKind::ChunkPut);
        let chunk_data_at = chunk_at + 40 + record::chunk_prefix_bytes(chunk.len()) as u64;
        let mut byte = read_file_at(&segment, chunk_data_at + 70_000, 1);
        byte[0] ^= 1;
        patch_file(&segment, chunk_data_at + 70_000, &byte);

        let handle = store.get_object(1, "k1").unwrap();
        let read = store.read_inline(&handle, 0, 20_000).await;
        assert!(
            matches!(read, Err(ReadError::Corrupt { segment: 1, .. })),
            "{read:?}"
        );
        // Blocks the range does not touch are verified on their own.
        assert_eq!(
            store.read_chunk(3, 0, 0, 65_536).await.unwrap(),
            &chunk[..65_536]
        );
        let read = store.read_chunk(3, 0, 65_536, 10).await;
        assert!(matches!(read, Err(ReadError::Corrupt { .. })), "{read:?}");
        let read = store.read_chunk(3, 0, 0, chunk.len() as u64).await;
        assert!(matches!(read, Err(ReadError::Corrupt { .. })), "{read:?}");
        assert_object(&store, "k0", &content("k0", 1, 20_000)).await;
        store.close().await.unwrap();
    });
}

#[test]
fn hole_before_a_later_record_does_not_stop_recovery() {
    let dir = TempDir::new("recovery-hole");
    let config = small_config(dir.path());
    run(async move {
        let (store, _) = Store::open(config.clone()).await.unwrap();
        write_sequence(&store, 6, 20_000).await;
        drop(store);
        let segment = segment_files(dir.path()).remove(0);
        let records = records_in_file(&segment);
        // A reserved but never written record (k2, entirely zero) and a block
        // zeroed at the header of k4: later records must still be found.
        let (k2, k2_header) = records[2];
        patch_file(&segment, k2, &vec![0u8; k2_header.record_bytes() as usize]);
        let (k4, _) = records[4];
        patch_file(&segment, k4, &[0u8; 4096]);

        let (store, report) = Store::open(config).await.unwrap();
        println!("{report:?}");
        assert!(report.bytes_unwritten >= k2_header.record_bytes());
        for i in [0, 1, 3, 5] {
            let key = format!("k{i}");
            assert_object(&store, &key, &content(&key, 1, 20_000)).await;
        }
        assert!(store.get_object(1, "k2").is_none());
        assert!(store.get_object(1, "k4").is_none());
        store.close().await.unwrap();
    });
}

#[test]
fn record_copies_inside_user_data_are_not_records() {
    let other = TempDir::new("recovery-forge-source");
    let dir = TempDir::new("recovery-forge");
    let (other_config, config) = (small_config(other.path()), small_config(dir.path()));
    run(async move {
        // A perfectly valid record of another store (its own nonce).
        let (source, _) = Store::open(other_config).await.unwrap();
        source
            .put_object(1, "forged", Vec::new(), b"evil", no_precondition)
            .await
            .unwrap();
        let source_segment = segment_files(other.path()).remove(0);
        let (at, header) = records_in_file(&source_segment)[0];
        let forged = read_file_at(&source_segment, at, header.record_bytes() as usize);
        let source_nonce = SegmentHeader::decode(&read_file_at(&source_segment, 0, 4096))
            .unwrap()
            .nonce;
        source.close().await.unwrap();

        // User data carrying that record at a 4096 boundary of the file, and
        // a record claiming nonce 0.
        let (key, meta_len, data_len) = ("carrier", 0usize, 40_000usize);
        let data_start = 40 + record::object_prefix_bytes(key.len(), meta_len, data_len);
        let pad = (4096 - data_start % 4096) % 4096;
        let mut data = content(key, 1, data_len);
        data[pad..pad + forged.len()].copy_from_slice(&forged);
        let mut zero_nonce = forged.clone();
        record::restamp_nonce(&mut zero_nonce, 0);
        data[pad + 8192..pad + 8192 + zero_nonce.len()].copy_from_slice(&zero_nonce);

        let (store, _) = Store::open(config.clone()).await.unwrap();
        store
            .put_object(1, key, Vec::new(), &data, no_precondition)
            .await
            .unwrap();
        store
            .put_object(1, "after", Vec::new(), b"ok", no_precondition)
            .await
            .unwrap();
        drop(store);
        let segment = segment_files(dir.path()).remove(0);
        let nonce = SegmentHeader::decode(&read_file_at(&segment, 0, 4096))
            .unwrap()
            .nonce;
        assert_ne!(nonce, 0);
        // Break the carrier's own header so the scan walks block by block
        // through its payload.
        let (carrier_at, _) = records_in_file(&segment)[0];
        let embedded_at = carrier_at + (data_start + pad) as u64;
        assert_eq!(
            embedded_at % 4096,
            0,
            "the copy must sit where the scan looks"
        );
        let embedded = read_file_at(&segment, embedded_at, forged.len());
        assert!(
            record::decode_record(&embedded, source_nonce).is_ok(),
            "the copy is a valid record elsewhere"
        );
        patch_file(&segment, carrier_at, &[0xFF; 8]);

        let (store, report) = Store::open(config).await.unwrap();
        println!("{report:?}");
        assert!(
            store.get_object(1, "forged").is_none(),
            "user data taken as a record"
        );
        assert!(store.get_object(1, key).is_none());
        assert_object(&store, "after", b"ok").await;
        store.close().await.unwrap();
    });
}

#[test]
fn checkpoint_then_tail_replays_only_the_tail() {
    let dir = TempDir::new("recovery-checkpoint");
    let crashed = TempDir::new("recovery-checkpoint-copy");
    let config = small_config(dir.path());
    let crashed_config = photon_object::StoreConfig {
        dir: crashed.join("store"),
        ..config.clone()
    };
    run(async move {
        let (store, _) = Store::open(config).await.unwrap();
        let mut model = BTreeMap::new();
        for i in 0..40u64 {
            let key = format!("k{i:02}");
            let data = content(&key, 1, 10_000);
            store
                .put_object(1, &key, Vec::new(), &data, no_precondition)
                .await
                .unwrap();
            model.insert(key, data);
        }
        store.put_chunk(1, 1, b"chunk one").await.unwrap();
        store.checkpoint().await.unwrap();
        let mut tail = 0;
        for i in (0..40u64).step_by(3) {
            let key = format!("k{i:02}");
            let data = content(&key, 2, 5_000);
            store
                .put_object(1, &key, Vec::new(), &data, no_precondition)
                .await
                .unwrap();
            model.insert(key, data);
            tail += 1;
        }
        for i in (1..40u64).step_by(7) {
            let key = format!("k{i:02}");
            if model.remove(&key).is_some() {
                store.delete_object(1, &key).await.unwrap();
                tail += 1;
            }
        }
        store.delete_chunks(&[(1, 1)]).await.unwrap();
        tail += 1;
        copy_dir(dir.path(), &crashed_config.dir);
        drop(store);

        let (copy, report) = Store::open(crashed_config).await.unwrap();
        println!("{report:?}");
        assert!(report.checkpoint_seq.is_some());
        assert_eq!(report.records_replayed, tail);
        assert_eq!(report.objects, model.len() as u64);
        assert_eq!(report.chunks, 0);
        let listed: Vec<String> = copy
            .list_objects(1, "", None, 1000)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(listed, model.keys().cloned().collect::<Vec<_>>());
        for (key, data) in &model {
            assert_object(&copy, key, data).await;
        }
        copy.close().await.unwrap();
    });
}

#[test]
fn damaged_checkpoint_falls_back_to_a_full_scan() {
    let dir = TempDir::new("recovery-bad-checkpoint");
    let config = small_config(dir.path());
    run(async move {
        let (store, _) = Store::open(config.clone()).await.unwrap();
        write_sequence(&store, 10, 3_000).await;
        store.delete_object(1, "k4").await.unwrap();
        store.close().await.unwrap();
        let checkpoint = checkpoint_files(dir.path()).remove(0);
        let mut byte = read_file_at(&checkpoint, 10, 1);
        byte[0] ^= 0xFF;
        patch_file(&checkpoint, 10, &byte);

        let (store, report) = Store::open(config).await.unwrap();
        println!("{report:?}");
        assert_eq!(report.checkpoints_rejected, 1);
        assert_eq!(report.checkpoint_seq, None);
        assert_eq!(report.records_replayed, 11);
        assert!(store.get_object(1, "k4").is_none());
        for i in (0..10).filter(|i| *i != 4) {
            let key = format!("k{i}");
            assert_object(&store, &key, &content(&key, 1, 3_000)).await;
        }
        store.close().await.unwrap();
    });
}

#[test]
fn invalid_segment_header_refuses_to_open() {
    let dir = TempDir::new("recovery-bad-segment");
    let config = small_config(dir.path());
    run(async move {
        let (store, _) = Store::open(config.clone()).await.unwrap();
        write_sequence(&store, 1, 100).await;
        store.close().await.unwrap();
        let segment = segment_files(dir.path()).remove(0);
        patch_file(&segment, 20, &[0xFF]);
        let opened = Store::open(config).await;
        assert!(
            matches!(opened, Err(photon_object::OpenStoreError::Segment(_))),
            "{opened:?}"
        );
    });
}

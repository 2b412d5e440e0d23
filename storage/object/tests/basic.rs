//! Round trips of the public API: objects, listing, preconditions, chunks,
//! limits.

mod common;

use common::{content, run, small_config, TempDir};
use photon_object::{no_precondition, PutObjectError, ReadError, Store, WriteError};

#[test]
fn object_put_get_read_delete_round_trip() {
    let dir = TempDir::new("basic-objects");
    let config = small_config(dir.path());
    run(async move {
        let (store, report) = Store::open(config).await.unwrap();
        assert_eq!(report.objects, 0);
        let data = content("a/b", 1, 64 << 10);
        let outcome = store
            .put_object(7, "a/b", b"meta-1".to_vec(), &data, no_precondition)
            .await
            .unwrap();
        assert_eq!(outcome.previous, None);

        let handle = store.get_object(7, "a/b").unwrap();
        assert_eq!(handle.meta(), b"meta-1");
        assert_eq!(handle.seq(), outcome.seq);
        assert_eq!(handle.inline_len(), data.len() as u64);
        assert_eq!(
            store
                .read_inline(&handle, 0, data.len() as u64)
                .await
                .unwrap(),
            data
        );
        assert_eq!(
            store.read_inline(&handle, 1000, 5000).await.unwrap(),
            &data[1000..6000]
        );
        assert_eq!(
            store.read_inline(&handle, 65_000, 536).await.unwrap(),
            &data[65_000..]
        );
        assert!(store.read_inline(&handle, 0, 0).await.unwrap().is_empty());
        let beyond = store.read_inline(&handle, 1, data.len() as u64).await;
        assert!(
            matches!(beyond, Err(ReadError::OutOfRange { .. })),
            "{beyond:?}"
        );

        let second = store
            .put_object(7, "a/b", b"meta-2".to_vec(), b"short", no_precondition)
            .await
            .unwrap();
        assert_eq!(second.previous.as_ref().map(|p| p.seq), Some(outcome.seq));
        assert!(second.seq > outcome.seq);
        // The old handle still reads the old version (its record is still there).
        assert_eq!(
            store.read_inline(&handle, 0, 10).await.unwrap(),
            &data[..10]
        );
        let handle = store.get_object(7, "a/b").unwrap();
        assert_eq!(store.read_inline(&handle, 0, 5).await.unwrap(), b"short");

        let empty = store
            .put_object(7, "empty", Vec::new(), b"", no_precondition)
            .await
            .unwrap();
        assert_eq!(store.get_object(7, "empty").unwrap().seq(), empty.seq);

        let removed = store.delete_object(7, "a/b").await.unwrap().unwrap();
        assert_eq!(&*removed.meta, b"meta-2");
        assert!(store.get_object(7, "a/b").is_none());
        let records = store.stats().records_written;
        assert_eq!(store.delete_object(7, "a/b").await.unwrap(), None);
        assert_eq!(
            store.stats().records_written,
            records,
            "deleting an absent key writes nothing"
        );
        store.close().await.unwrap();
    });
}

#[test]
fn list_order_prefix_after_limit_and_buckets() {
    let dir = TempDir::new("basic-list");
    let config = small_config(dir.path());
    run(async move {
        let (store, _) = Store::open(config).await.unwrap();
        for key in ["b", "a/2", "a/10", "a/1", "c", "a", "a/1/x", "é"] {
            store
                .put_object(1, key, Vec::new(), key.as_bytes(), no_precondition)
                .await
                .unwrap();
        }
        store
            .put_object(2, "z", Vec::new(), b"", no_precondition)
            .await
            .unwrap();
        let keys = |v: Vec<(String, photon_object::ObjectInfo)>| {
            v.into_iter().map(|(k, _)| k).collect::<Vec<_>>()
        };
        assert_eq!(
            keys(store.list_objects(1, "", None, 100)),
            ["a", "a/1", "a/1/x", "a/10", "a/2", "b", "c", "é"]
        );
        assert_eq!(
            keys(store.list_objects(1, "a/", None, 100)),
            ["a/1", "a/1/x", "a/10", "a/2"]
        );
        assert_eq!(
            keys(store.list_objects(1, "a/", Some("a/1/x"), 100)),
            ["a/10", "a/2"]
        );
        assert_eq!(
            keys(store.list_objects(1, "a/", Some("0"), 2)),
            ["a/1", "a/1/x"]
        );
        assert_eq!(
            keys(store.list_objects(1, "a/", Some("b"), 10)),
            Vec::<String>::new()
        );
        assert_eq!(keys(store.list_objects(1, "", Some("c"), 10)), ["é"]);
        assert_eq!(
            keys(store.list_objects(1, "", None, 0)),
            Vec::<String>::new()
        );
        let (_, info) = &store.list_objects(1, "b", None, 1)[0];
        assert_eq!(info.inline_len, 1);
        assert_eq!(store.buckets(), [1, 2]);
        assert!(!store.bucket_is_empty(2));
        store.delete_object(2, "z").await.unwrap();
        assert!(store.bucket_is_empty(2));
        assert!(store.bucket_is_empty(3));
        assert_eq!(store.buckets(), [1]);
        store.close().await.unwrap();
    });
}

#[test]
fn precondition_refuses_without_writing() {
    let dir = TempDir::new("basic-precondition");
    let config = small_config(dir.path());
    run(async move {
        let (store, _) = Store::open(config).await.unwrap();
        let if_absent = |current: Option<&photon_object::ObjectInfo>| match current {
            None => Ok(()),
            Some(info) => Err(format!("exists at seq {}", info.seq)),
        };
        store
            .put_object(1, "k", b"v1".to_vec(), b"one", if_absent)
            .await
            .unwrap();
        let before = store.stats();
        let refused = store
            .put_object(1, "k", b"v2".to_vec(), b"two", if_absent)
            .await;
        match refused {
            Err(PutObjectError::Precondition(message)) => assert!(message.starts_with("exists")),
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert_eq!(store.stats().records_written, before.records_written);
        assert_eq!(store.stats().bytes_written, before.bytes_written);
        let handle = store.get_object(1, "k").unwrap();
        assert_eq!(handle.meta(), b"v1");
        // If-Match style: succeeds when the seq matches.
        let seq = handle.seq();
        let if_match = move |current: Option<&photon_object::ObjectInfo>| {
            if current.map(|c| c.seq) == Some(seq) {
                Ok(())
            } else {
                Err("changed")
            }
        };
        store
            .put_object(1, "k", b"v3".to_vec(), b"three", if_match)
            .await
            .unwrap();
        assert_eq!(store.get_object(1, "k").unwrap().meta(), b"v3");
        store.close().await.unwrap();
    });
}

#[test]
fn chunks_round_trip_ranges_and_deletes() {
    let dir = TempDir::new("basic-chunks");
    let config = small_config(dir.path());
    run(async move {
        let (store, _) = Store::open(config).await.unwrap();
        let big = content("chunk", 1, 128 << 10);
        store.put_chunk(9, 0, &big).await.unwrap();
        store.put_chunk(9, 1, b"tail").await.unwrap();
        store.put_chunk(10, 0, b"").await.unwrap();
        assert_eq!(store.chunk_len(9, 0), Some(big.len() as u64));
        assert_eq!(store.chunk_len(10, 0), Some(0));
        assert_eq!(store.chunk_len(9, 2), None);
        assert_eq!(
            store.read_chunk(9, 0, 0, big.len() as u64).await.unwrap(),
            big
        );
        for (offset, len) in [
            (0u64, 1u64),
            (65_535, 2),
            (70_000, 60_000),
            (131_071, 1),
            (100_000, 0),
        ] {
            let got = store.read_chunk(9, 0, offset, len).await.unwrap();
            assert_eq!(
                got,
                &big[offset as usize..(offset + len) as usize],
                "range {offset}+{len}"
            );
        }
        assert!(matches!(
            store.read_chunk(9, 0, 131_000, 1000).await,
            Err(ReadError::OutOfRange { .. })
        ));
        assert!(matches!(
            store.read_chunk(9, 5, 0, 1).await,
            Err(ReadError::NotFound)
        ));
        assert_eq!(store.chunk_ids(), [(9, 0), (9, 1), (10, 0)]);

        let replaced = content("chunk", 2, 1000);
        store.put_chunk(9, 0, &replaced).await.unwrap();
        assert_eq!(store.read_chunk(9, 0, 0, 1000).await.unwrap(), replaced);

        let deleted = store
            .delete_chunks(&[(9, 0), (9, 0), (42, 1), (10, 0)])
            .await
            .unwrap();
        assert_eq!(deleted, 2);
        assert_eq!(store.chunk_ids(), [(9, 1)]);
        let records = store.stats().records_written;
        assert_eq!(store.delete_chunks(&[(42, 1)]).await.unwrap(), 0);
        assert_eq!(store.stats().records_written, records);
        store.close().await.unwrap();
    });
}

#[test]
fn limits_are_enforced_and_closed_store_refuses() {
    let dir = TempDir::new("basic-limits");
    let config = small_config(dir.path());
    run(async move {
        let (store, _) = Store::open(config).await.unwrap();
        let long_key = "k".repeat(1025);
        let too_long = store
            .put_object(1, &long_key, Vec::new(), b"", no_precondition)
            .await;
        assert!(matches!(
            too_long,
            Err(PutObjectError::Write(WriteError::TooLarge {
                what: "key",
                ..
            }))
        ));
        let big_meta = store
            .put_object(1, "k", vec![0; 1025], b"", no_precondition)
            .await;
        assert!(matches!(
            big_meta,
            Err(PutObjectError::Write(WriteError::TooLarge {
                what: "meta",
                ..
            }))
        ));
        let big_inline = store
            .put_object(
                1,
                "k",
                Vec::new(),
                &vec![0; (64 << 10) + 1],
                no_precondition,
            )
            .await;
        assert!(matches!(
            big_inline,
            Err(PutObjectError::Write(WriteError::TooLarge { .. }))
        ));
        let big_chunk = store.put_chunk(1, 0, &vec![0; (128 << 10) + 1]).await;
        assert!(matches!(
            big_chunk,
            Err(WriteError::TooLarge { what: "chunk", .. })
        ));
        assert_eq!(store.stats().records_written, 0);

        store
            .put_object(1, "k", Vec::new(), b"x", no_precondition)
            .await
            .unwrap();
        let handle = store.get_object(1, "k").unwrap();
        store.close().await.unwrap();
        assert!(store.is_closed());
        let after = store
            .put_object(1, "k2", Vec::new(), b"x", no_precondition)
            .await;
        assert!(matches!(
            after,
            Err(PutObjectError::Write(WriteError::Closed))
        ));
        assert!(matches!(
            store.read_inline(&handle, 0, 1).await,
            Err(ReadError::Closed)
        ));
        store.close().await.unwrap();
    });
}

#[test]
fn segments_roll_when_full() {
    let dir = TempDir::new("basic-roll");
    let config = small_config(dir.path());
    run(async move {
        let (store, _) = Store::open(config.clone()).await.unwrap();
        for i in 0..40u64 {
            let key = format!("k{i:03}");
            store
                .put_object(
                    1,
                    &key,
                    Vec::new(),
                    &content(&key, 1, 60_000),
                    no_precondition,
                )
                .await
                .unwrap();
        }
        let stats = store.stats();
        assert!(stats.segments >= 3, "{stats:?}");
        for i in 0..40u64 {
            let key = format!("k{i:03}");
            let handle = store.get_object(1, &key).unwrap();
            assert_eq!(
                store.read_inline(&handle, 0, 60_000).await.unwrap(),
                content(&key, 1, 60_000)
            );
        }
        store.close().await.unwrap();
        let (store, report) = Store::open(config).await.unwrap();
        assert_eq!(report.objects, 40);
        assert_eq!(report.segments, stats.segments);
        store.close().await.unwrap();
    });
}

#[test]
fn concurrent_conditional_creates_admit_exactly_one() {
    let dir = TempDir::new("basic-race");
    let config = small_config(dir.path());
    run(async move {
        let (store, _) = Store::open(config).await.unwrap();
        let tasks: Vec<_> = (0..8u8)
            .map(|writer| {
                let store = store.clone();
                glommio::spawn_local(async move {
                    let if_absent = |current: Option<&photon_object::ObjectInfo>| match current {
                        None => Ok(()),
                        Some(_) => Err("exists"),
                    };
                    let result = store
                        .put_object(1, "once", vec![writer], b"x", if_absent)
                        .await;
                    match result {
                        Ok(_) => Some(writer),
                        Err(PutObjectError::Precondition("exists")) => None,
                        Err(other) => panic!("{other:?}"),
                    }
                })
            })
            .collect();
        let mut winners = Vec::new();
        for task in tasks {
            winners.extend(task.await);
        }
        assert_eq!(winners.len(), 1, "{winners:?}");
        assert_eq!(store.get_object(1, "once").unwrap().meta(), [winners[0]]);
        assert_eq!(store.stats().records_written, 1);
        store.close().await.unwrap();
    });
}

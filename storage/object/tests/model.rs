//! Property test: random sequences of puts, deletes, chunk writes,
//! checkpoints, compactions, clean reopens and crashes against a BTreeMap
//! model. Small segments, so rolls and compactions happen.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;

use common::{content, copy_dir, run, TempDir};
use photon_object::{no_precondition, Store, StoreConfig};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Put { key: u8, len: u16 },
    Delete { key: u8 },
    PutChunk { blob: u8, index: u8, len: u16 },
    DeleteChunks(Vec<(u8, u8)>),
    Checkpoint,
    Compact,
    Reopen,
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..8u8, 0..20_000u16).prop_map(|(key, len)| Op::Put { key, len }),
        2 => (0..8u8).prop_map(|key| Op::Delete { key }),
        3 => (0..3u8, 0..3u8, 0..40_000u16).prop_map(|(blob, index, len)| Op::PutChunk { blob, index, len }),
        1 => proptest::collection::vec((0..3u8, 0..3u8), 1..4).prop_map(Op::DeleteChunks),
        1 => Just(Op::Checkpoint),
        2 => Just(Op::Compact),
        1 => Just(Op::Reopen),
        1 => Just(Op::Crash),
    ]
}

fn config(dir: PathBuf) -> StoreConfig {
    StoreConfig {
        dir,
        segment_bytes: 256 << 10,
        inline_bytes_max: 32 << 10,
        chunk_bytes_max: 48 << 10,
        meta_bytes_max: 64,
        checkpoint_every_bytes: 160 << 10,
        compact_live_ratio_max: 0.6,
        reserve_bytes: 0,
    }
}

#[derive(Default)]
struct Model {
    objects: BTreeMap<String, (Vec<u8>, Vec<u8>)>,
    chunks: BTreeMap<(u64, u32), Vec<u8>>,
}

async fn check(store: &Store, model: &Model) {
    let listed: Vec<String> = store
        .list_objects(1, "", None, 100)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(listed, model.objects.keys().cloned().collect::<Vec<_>>());
    for (key, (meta, data)) in &model.objects {
        let handle = store.get_object(1, key).unwrap();
        assert_eq!(handle.meta(), &meta[..]);
        let read = store
            .read_inline(&handle, 0, handle.inline_len())
            .await
            .unwrap();
        assert!(read == *data, "{key} differs");
    }
    assert_eq!(
        store.chunk_ids(),
        model.chunks.keys().copied().collect::<Vec<_>>()
    );
    for ((blob, index), data) in &model.chunks {
        let read = store
            .read_chunk(*blob, *index, 0, data.len() as u64)
            .await
            .unwrap();
        assert!(read == *data, "chunk {blob}/{index} differs");
    }
}

/// Applies `op` to the store and the model; returns 1 if it compacted a segment.
async fn apply(
    store: &mut Rc<Store>,
    dir: &mut PathBuf,
    root: &TempDir,
    model: &mut Model,
    op: Op,
    step: u64,
) -> u64 {
    match op {
        Op::Put { key, len } => {
            let key = format!("key-{key}");
            let (meta, data) = (
                step.to_le_bytes().to_vec(),
                content(&key, step, len as usize),
            );
            store
                .put_object(1, &key, meta.clone(), &data, no_precondition)
                .await
                .unwrap();
            model.objects.insert(key, (meta, data));
        }
        Op::Delete { key } => {
            let key = format!("key-{key}");
            let removed = store.delete_object(1, &key).await.unwrap();
            assert_eq!(removed.is_some(), model.objects.remove(&key).is_some());
        }
        Op::PutChunk { blob, index, len } => {
            let data = content("chunk", step, len as usize);
            store
                .put_chunk(u64::from(blob), u32::from(index), &data)
                .await
                .unwrap();
            model
                .chunks
                .insert((u64::from(blob), u32::from(index)), data);
        }
        Op::DeleteChunks(ids) => {
            let ids: Vec<(u64, u32)> = ids
                .into_iter()
                .map(|(b, i)| (u64::from(b), u32::from(i)))
                .collect();
            let deleted = store.delete_chunks(&ids).await.unwrap();
            let mut expected = 0;
            for id in ids {
                expected += usize::from(model.chunks.remove(&id).is_some());
            }
            assert_eq!(deleted, expected);
        }
        Op::Checkpoint => store.checkpoint().await.unwrap(),
        Op::Compact => return u64::from(store.compact_once().await.unwrap().victim.is_some()),
        Op::Reopen => {
            store.close().await.unwrap();
            *store = Store::open(config(dir.clone())).await.unwrap().0;
            check(store, model).await;
        }
        Op::Crash => {
            let copy = root.join(&format!("crash-{step}"));
            copy_dir(dir, &copy);
            *dir = copy;
            *store = Store::open(config(dir.clone())).await.unwrap().0;
            check(store, model).await;
        }
    }
    0
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_model(ops in proptest::collection::vec(op(), 1..80)) {
        let root = TempDir::new("model");
        run(async move {
            let mut dir = root.join("store");
            let mut store = Store::open(config(dir.clone())).await.unwrap().0;
            let mut model = Model::default();
            let mut compactions = 0;
            for (step, op) in ops.into_iter().enumerate() {
                compactions += apply(&mut store, &mut dir, &root, &mut model, op, step as u64).await;
            }
            check(&store, &model).await;
            println!("model case: {compactions} compactions, {} objects, {} chunks", model.objects.len(), model.chunks.len());
            store.close().await.unwrap();
            let (store, report) = Store::open(config(dir.clone())).await.unwrap();
            assert_eq!(report.records_replayed, 0, "close leaves nothing to replay");
            check(&store, &model).await;
            store.close().await.unwrap();
        });
    }
}

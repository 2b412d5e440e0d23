//! The store against a model: reads, holes, snapshots, clones, deletes,
//! and reopening after a simulated crash (files copied while unflushed
//! metadata is still in memory, as kill -9 would leave them).

use photon_core::testing::crash::copy_image;
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;

use crate::layout::{EXTENT_BYTES, PAGE_BYTES};
use crate::{Chunk, Store, StoreConfig};

fn run<F: std::future::Future<Output = ()> + 'static>(f: impl FnOnce() -> F + Send + 'static) {
    glommio::LocalExecutorBuilder::default()
        .spawn(move || async move { f().await })
        .unwrap()
        .join()
        .unwrap();
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "photon-volume-{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn write(store: &Store, map: u64, offset: u64, len: u64, fill: u8) {
    let mut buf = store.alloc_buffer(len as usize);
    buf.as_bytes_mut().fill(fill);
    store.write(map, offset, buf).await.unwrap();
}

async fn read(store: &Store, map: u64, offset: u64, len: u64) -> Vec<u8> {
    let mut out = vec![0xeeu8; len as usize];
    for chunk in store.read(map, offset, len).await.unwrap() {
        let at = chunk.offset() as usize;
        match chunk {
            Chunk::Data { data, .. } => out[at..at + data.len()].copy_from_slice(&data),
            Chunk::Zero { len, .. } => out[at..at + len as usize].fill(0),
        }
    }
    out
}

/// A volume as plain bytes.
#[derive(Clone, Default)]
struct Model {
    maps: HashMap<u64, Vec<u8>>,
}

impl Model {
    fn bytes(&mut self, map: u64, size: u64) -> &mut Vec<u8> {
        self.maps
            .entry(map)
            .or_insert_with(|| vec![0; size as usize])
    }
}

#[test]
fn holes_read_as_zeroes_and_zeroing_gives_space_back() {
    run(|| async {
        let dir = temp_dir("holes");
        let store = Store::open(StoreConfig::new(&dir)).await.unwrap();
        assert_eq!(
            read(&store, 1, 0, 3 * EXTENT_BYTES).await,
            vec![0; 3 * EXTENT_BYTES as usize]
        );
        write(&store, 1, PAGE_BYTES, 2 * PAGE_BYTES, 0xab).await;
        write(&store, 1, EXTENT_BYTES - PAGE_BYTES, 2 * PAGE_BYTES, 0xcd).await;
        let alloc = store.allocation(1, 0, 2 * EXTENT_BYTES);
        assert_eq!(
            alloc,
            vec![
                (PAGE_BYTES, false),
                (2 * PAGE_BYTES, true),
                (EXTENT_BYTES - 4 * PAGE_BYTES, false),
                (2 * PAGE_BYTES, true),
                (EXTENT_BYTES - PAGE_BYTES, false)
            ]
        );
        let got = read(&store, 1, 0, 4 * PAGE_BYTES).await;
        assert!(got[..4096].iter().all(|&b| b == 0));
        assert!(got[4096..12288].iter().all(|&b| b == 0xab));
        assert_eq!(store.stats().slots_used, 2);
        store.zero(1, 0, EXTENT_BYTES).await.unwrap();
        store.zero(1, EXTENT_BYTES, PAGE_BYTES).await.unwrap();
        assert_eq!(store.allocated_bytes(1), 0);
        assert_eq!(store.stats().slots_used, 0);
        assert!(read(&store, 1, 0, 2 * EXTENT_BYTES)
            .await
            .iter()
            .all(|&b| b == 0));
        store.flush().await.unwrap();
        store.maintain().await.unwrap();
        let _ = std::fs::remove_dir_all(dir);
    });
}

#[test]
fn snapshots_keep_old_data_and_clones_diverge() {
    run(|| async {
        let dir = temp_dir("snap");
        let store = Store::open(StoreConfig::new(&dir)).await.unwrap();
        write(&store, 1, 0, EXTENT_BYTES, 0xa1).await;
        store.copy_map(1, 2).await.unwrap(); // snapshot
        write(&store, 1, PAGE_BYTES, PAGE_BYTES, 0xb2).await;
        assert_eq!(store.stats().cow_copies, 1);
        let vol = read(&store, 1, 0, 2 * PAGE_BYTES).await;
        assert!(vol[..4096].iter().all(|&b| b == 0xa1) && vol[4096..].iter().all(|&b| b == 0xb2));
        assert!(read(&store, 2, 0, EXTENT_BYTES)
            .await
            .iter()
            .all(|&b| b == 0xa1));
        store.copy_map(2, 3).await.unwrap(); // clone of the snapshot
        write(&store, 3, 0, PAGE_BYTES, 0xc3).await;
        assert!(read(&store, 2, 0, PAGE_BYTES)
            .await
            .iter()
            .all(|&b| b == 0xa1));
        assert!(read(&store, 1, 0, PAGE_BYTES)
            .await
            .iter()
            .all(|&b| b == 0xa1));
        assert!(read(&store, 3, 0, PAGE_BYTES)
            .await
            .iter()
            .all(|&b| b == 0xc3));
        // Deleting the volume and the snapshot keeps what the clone uses.
        store.drop_map(1).await.unwrap();
        store.drop_map(2).await.unwrap();
        assert!(store.write(1, 0, store.alloc_buffer(4096)).await.is_err());
        assert!(read(&store, 3, PAGE_BYTES, PAGE_BYTES)
            .await
            .iter()
            .all(|&b| b == 0xa1));
        store.maintain().await.unwrap();
        assert_eq!(store.stats().slots_used, 1);
        drop(store);
        let store = Store::open(StoreConfig::new(&dir)).await.unwrap();
        assert!(read(&store, 3, PAGE_BYTES, PAGE_BYTES)
            .await
            .iter()
            .all(|&b| b == 0xa1));
        assert!(read(&store, 3, 0, PAGE_BYTES)
            .await
            .iter()
            .all(|&b| b == 0xc3));
        assert_eq!(store.map_ids(), vec![3]);
        let _ = std::fs::remove_dir_all(dir);
    });
}

#[test]
fn flushed_writes_survive_a_crash_and_torn_journal_tails_are_ignored() {
    run(|| async {
        let dir = temp_dir("crash");
        let store = Store::open(StoreConfig::new(&dir)).await.unwrap();
        write(&store, 7, 0, 8 * PAGE_BYTES, 0x11).await;
        write(&store, 7, 3 * EXTENT_BYTES, PAGE_BYTES, 0x22).await;
        store.flush().await.unwrap();
        // Not flushed: may or may not survive, but never as wrong bytes.
        write(&store, 7, 5 * EXTENT_BYTES, PAGE_BYTES, 0x33).await;
        let crashed = dir.with_extension("crashed");
        copy_image(&dir, &crashed);
        drop(store);
        let store = Store::open(StoreConfig::new(&crashed)).await.unwrap();
        assert!(read(&store, 7, 0, 8 * PAGE_BYTES)
            .await
            .iter()
            .all(|&b| b == 0x11));
        assert!(read(&store, 7, 3 * EXTENT_BYTES, PAGE_BYTES)
            .await
            .iter()
            .all(|&b| b == 0x22));
        assert!(read(&store, 7, 5 * EXTENT_BYTES, PAGE_BYTES)
            .await
            .iter()
            .all(|&b| b == 0));
        assert!(!store.stats().torn_tail_at_open);
        drop(store);
        // Damage the last batch: the state before it comes back.
        let journal = std::fs::read_dir(&crashed)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "log"))
            .unwrap();
        let mut bytes = std::fs::read(&journal).unwrap();
        let last = bytes.len() - 4096;
        bytes[last + 40] ^= 0x5a;
        std::fs::write(&journal, &bytes).unwrap();
        let store = Store::open(StoreConfig::new(&crashed)).await.unwrap();
        assert!(store.stats().torn_tail_at_open);
        // The damaged batch held the 0x22 extent's record (the second
        // flush had none): the first write is intact, the rest reads zero.
        let first = read(&store, 7, 0, 8 * PAGE_BYTES).await;
        assert!(first.iter().all(|&b| b == 0x11) || first.iter().all(|&b| b == 0));
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
        let _ = std::fs::remove_dir_all(crashed);
    });
}

#[test]
fn random_operations_match_a_model_across_checkpoints_and_reopens() {
    run(|| async {
        let dir = temp_dir("model");
        let size = 16 * EXTENT_BYTES;
        let mut config = StoreConfig::new(&dir);
        config.journal_bytes_max = 64 << 10; // rotate often
        let mut store = Store::open(config.clone()).await.unwrap();
        let mut model = Model::default();
        let mut live: Vec<u64> = vec![1];
        let mut next_map = 2;
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rand = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for step in 0..600u32 {
            let map = live[rand(live.len() as u64) as usize];
            let page = rand(size / PAGE_BYTES - 1);
            let pages = 1 + rand(((size / PAGE_BYTES) - page).min(80));
            let (offset, len) = (page * PAGE_BYTES, pages * PAGE_BYTES);
            match rand(10) {
                0..=4 => {
                    let fill = (step % 251) as u8 + 1;
                    write(&store, map, offset, len, fill).await;
                    model.bytes(map, size)[offset as usize..(offset + len) as usize].fill(fill);
                }
                5 => {
                    store.zero(map, offset, len).await.unwrap();
                    model.bytes(map, size)[offset as usize..(offset + len) as usize].fill(0);
                }
                6 if live.len() < 6 => {
                    store.copy_map(map, next_map).await.unwrap();
                    let copy = model.bytes(map, size).clone();
                    model.maps.insert(next_map, copy);
                    live.push(next_map);
                    next_map += 1;
                }
                7 if live.len() > 1 => {
                    store.drop_map(map).await.unwrap();
                    model.maps.remove(&map);
                    live.retain(|&m| m != map);
                }
                8 => {
                    store.flush().await.unwrap();
                    store.maintain().await.unwrap();
                }
                9 if step % 7 == 0 => {
                    store.flush().await.unwrap();
                    drop(store);
                    store = Store::open(config.clone()).await.unwrap();
                }
                _ => {}
            }
            if model.maps.contains_key(&map) {
                let want =
                    model.bytes(map, size)[offset as usize..(offset + len) as usize].to_vec();
                assert_eq!(
                    read(&store, map, offset, len).await,
                    want,
                    "step {step} map {map}"
                );
            } else {
                assert!(
                    store.read(map, offset, len).await.is_err(),
                    "a deleted map reads"
                );
            }
        }
        store.flush().await.unwrap();
        drop(store);
        let store = Store::open(config.clone()).await.unwrap();
        assert!(store.stats().checkpoints == 0, "fresh stats after open");
        for map in live {
            let want = model.bytes(map, size).clone();
            assert_eq!(
                read(&store, map, 0, size).await,
                want,
                "map {map} after reopen"
            );
        }
        let _ = std::fs::remove_dir_all(dir);
    });
}

#[test]
fn concurrent_flushes_share_syncs() {
    run(|| async {
        let dir = temp_dir("group");
        let store = Store::open(StoreConfig::new(&dir)).await.unwrap();
        let tasks: Vec<_> = (0..32u64)
            .map(|i| {
                let store: Rc<Store> = store.clone();
                glommio::spawn_local(async move {
                    write(&store, 1, i * EXTENT_BYTES, PAGE_BYTES, i as u8).await;
                    store.flush().await.unwrap();
                })
            })
            .collect();
        for t in tasks {
            t.await;
        }
        let syncs = store.stats().syncs;
        assert!(syncs < 32, "32 flushes took {syncs} syncs");
        assert_eq!(store.stats().records_written, 32);
        let _ = std::fs::remove_dir_all(dir);
    });
}

/// Pattern `fill` in `pages` pages at `offset` of `map`, as read back.
async fn reads_as(store: &Store, map: u64, offset: u64, pages: u64, fill: u8) -> bool {
    read(store, map, offset, pages * PAGE_BYTES)
        .await
        .iter()
        .all(|&b| b == fill)
}

#[test]
fn a_full_disk_is_enospc_and_trim_frees_space_without_a_restart() {
    run(|| async {
        let base = temp_dir("full");
        let disk = photon_core::testing::SmallDisk::mount(base.join("disk"), 16);
        let mut config = StoreConfig::new(disk.path().join("store"));
        config.journal_bytes_max = 16 << 10; // rotation falls back to the reserve
        let store = Store::open(config.clone()).await.unwrap();
        write(&store, 1, 0, EXTENT_BYTES, 0x11).await;
        store.flush().await.unwrap();
        // Map 2 takes the rest of the disk, one extent at a time.
        let mut written = 0;
        let err = loop {
            let mut buf = store.alloc_buffer(EXTENT_BYTES as usize);
            buf.as_bytes_mut().fill(0x22);
            match store.write(2, written * EXTENT_BYTES, buf).await {
                Ok(()) => written += 1,
                Err(e) => break e,
            }
            assert!(written < 64, "a 16 MiB disk took 16 MiB");
        };
        assert!(matches!(&err, crate::StoreError::Io(io) if photon_core::health::is_no_space(io)));
        // What was written and flushed reads back; the records of the
        // writes that did land reach the journal's reserve.
        store.flush().await.unwrap();
        assert!(!store.has_failed() && !store.is_full());
        assert!(reads_as(&store, 1, 0, 64, 0x11).await);
        // TRIM journals into the reserve and gives the space back.
        store.zero(2, 0, written * EXTENT_BYTES).await.unwrap();
        store.flush().await.unwrap();
        store.maintain().await.unwrap();
        for ext in 0..4 {
            write(&store, 3, ext * EXTENT_BYTES, EXTENT_BYTES, 0x33).await;
        }
        store.flush().await.unwrap();
        drop(store);
        let store = Store::open(config).await.unwrap();
        assert!(reads_as(&store, 1, 0, 64, 0x11).await);
        assert!(reads_as(&store, 2, 0, written * 64, 0).await);
        assert!(reads_as(&store, 3, 0, 4 * 64, 0x33).await);
        drop(store);
        drop(disk);
        let _ = std::fs::remove_dir_all(base);
    });
}

#[test]
fn a_journal_without_room_keeps_its_records_until_space_returns() {
    run(|| async {
        let base = temp_dir("full-journal");
        let disk = photon_core::testing::SmallDisk::mount(base.join("disk"), 8);
        let mut config = StoreConfig::new(disk.path().join("store"));
        config.journal_reserve_bytes = 0; // no reserve: the append itself fails
        let store = Store::open(config.clone()).await.unwrap();
        write(&store, 1, 0, 8 * PAGE_BYTES, 0x11).await;
        store.flush().await.unwrap();
        let ballast = disk.fill("ballast");
        // A snapshot is only a record; with no space it stays pending.
        let err = store.copy_map(1, 2).await.unwrap_err();
        assert!(matches!(err, crate::StoreError::NoSpace), "{err}");
        assert!(store.is_full() && !store.has_failed());
        assert!(matches!(
            store.flush().await,
            Err(crate::StoreError::NoSpace)
        ));
        assert!(reads_as(&store, 1, 0, 8, 0x11).await);
        std::fs::remove_file(ballast).unwrap();
        store.flush().await.unwrap();
        assert!(!store.is_full());
        write(&store, 1, 0, 8 * PAGE_BYTES, 0x44).await;
        store.flush().await.unwrap();
        drop(store);
        let store = Store::open(config).await.unwrap();
        assert!(reads_as(&store, 1, 0, 8, 0x44).await);
        assert!(
            reads_as(&store, 2, 0, 8, 0x11).await,
            "the snapshot is durable"
        );
        drop(store);
        drop(disk);
        let _ = std::fs::remove_dir_all(base);
    });
}

/// Writers (one map each) write, TRIM and flush pages concurrently while,
/// at random moments, the store's directory is copied and a simulated power
/// loss applied to the copy (every write no completed fdatasync covers is
/// kept, lost or torn). The copy must open, and every page must read as
/// what it held at its last acknowledged flush, or as one of the values
/// written to it since (those may or may not have reached the disk).
#[test]
fn every_flushed_write_survives_simulated_power_loss() {
    use photon_core::testing::crash::WriteTrace;
    use std::cell::{Cell, RefCell};

    const WRITERS: u64 = 3;
    const PAGES: u64 = 3 * 64; // three extents per map
    /// Per map and page: the value at the last acknowledged flush, and
    /// every value written since.
    type Pages = HashMap<(u64, u64), (u8, Vec<u8>)>;

    run(|| async {
        let dir = temp_dir("power-loss");
        let mut config = StoreConfig::new(dir.join("store"));
        config.journal_bytes_max = 32 << 10; // checkpoints too
        let store = Store::open(config.clone()).await.unwrap();
        let trace = std::sync::Arc::new(WriteTrace::default());
        *store.trace.borrow_mut() = Some(trace.clone());
        let pages: Rc<RefCell<Pages>> = Rc::default();
        let stop = Rc::new(Cell::new(false));
        let writers: Vec<_> = (1..=WRITERS)
            .map(|map| {
                let (store, pages, stop) = (store.clone(), pages.clone(), stop.clone());
                glommio::spawn_local(async move {
                    let mut seed = 0x2545_f491_4f6c_dd1du64.wrapping_mul(map);
                    let mut step = 0u64;
                    while !stop.get() {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        step += 1;
                        let first = seed % PAGES;
                        let count = 1 + (seed >> 20) % (PAGES - first).min(16);
                        let (offset, len) = (first * PAGE_BYTES, count * PAGE_BYTES);
                        let fill = match (seed >> 40) % 8 {
                            0 => 0, // TRIM
                            _ => (step % 250) as u8 + 1,
                        };
                        // Recorded before the call: in flight counts as written.
                        for p in first..first + count {
                            pages.borrow_mut().entry((map, p)).or_default().1.push(fill);
                        }
                        if fill == 0 {
                            store.zero(map, offset, len).await.unwrap();
                        } else {
                            write(&store, map, offset, len, fill).await;
                        }
                        if (seed >> 50) % 3 == 0 {
                            // Everything written before this flush began is durable.
                            let snapshot: Vec<((u64, u64), u8)> = pages
                                .borrow()
                                .iter()
                                .filter(|((m, _), _)| *m == map)
                                .filter_map(|(k, (_, since))| since.last().map(|v| (*k, *v)))
                                .collect();
                            store.flush().await.unwrap();
                            let mut pages = pages.borrow_mut();
                            for (k, v) in snapshot {
                                let entry = pages.get_mut(&k).unwrap();
                                entry.0 = v;
                                // Keep what was written while the flush ran.
                                let at = entry.1.iter().rposition(|x| *x == v).unwrap();
                                entry.1.drain(..=at);
                            }
                        }
                    }
                })
            })
            .collect();
        let (mut crashes, mut undone, mut looked) = (0, 0, 0);
        let mut seed = 0xfeed_beefu64;
        for crash in 0..30 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            glommio::timer::sleep(std::time::Duration::from_micros(300 + seed % 4000)).await;
            looked += usize::from(
                trace
                    .until_unsynced(std::time::Duration::from_secs(2))
                    .await,
            );
            let image = dir.join(format!("crash-{crash}"));
            copy_image(&dir.join("store"), &image);
            let expected = pages.borrow().clone();
            let mut rand = |n: u64| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed % n.max(1)
            };
            undone += trace.power_loss(&dir.join("store"), &image, &mut rand);
            crashes += 1;
            let crashed = Store::open(StoreConfig {
                dir: image.clone(),
                ..config.clone()
            })
            .await
            .unwrap_or_else(|e| panic!("crash {crash}: the image does not open: {e}"));
            for map in 1..=WRITERS {
                let bytes = read(&crashed, map, 0, PAGES * PAGE_BYTES).await;
                for p in 0..PAGES {
                    let page = &bytes[(p * PAGE_BYTES) as usize..((p + 1) * PAGE_BYTES) as usize];
                    let (durable, since) = expected.get(&(map, p)).cloned().unwrap_or_default();
                    // An unflushed write may be torn: each sector on its own.
                    for (s, sector) in page.chunks(512).enumerate() {
                        let value = sector[0];
                        assert!(
                            sector.iter().all(|&b| b == value)
                                && (value == durable || since.contains(&value)),
                            "crash {crash}: map {map} page {p} sector {s} reads {value:#x}, \
                             flushed {durable:#x}, written since {since:?}"
                        );
                    }
                }
            }
            drop(crashed);
            let _ = std::fs::remove_dir_all(&image);
        }
        stop.set(true);
        for w in writers {
            w.await;
        }
        assert!(
            looked * 4 >= crashes * 3 && undone * 10 > crashes,
            "{crashes} crashes, {looked} with writes in flight, undid {undone} writes: \
             the test does not look"
        );
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    });
}

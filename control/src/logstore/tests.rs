use photon_core::testing::crash::copy_image;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use super::*;

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("photon-log-{name}-{}-{n}", std::process::id()));
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

fn small_config(dir: &TempDir) -> LogConfig {
    LogConfig {
        segment_bytes_max: 4096,
        record_bytes_max: 512,
        batch_bytes_max: 1024,
        batch_requests_max: 64,
        queue_depth: 4096,
        ..LogConfig::new(&dir.0)
    }
}

fn payload(i: u64) -> Vec<u8> {
    format!("entry {i} {}", "x".repeat((i % 37) as usize)).into_bytes()
}

fn entries(range: std::ops::Range<u64>) -> Vec<(u64, Vec<u8>)> {
    range.map(|i| (i, payload(i))).collect()
}

fn segment_files(dir: &TempDir) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files
}

#[test]
fn append_read_reopen_across_segments() {
    let dir = TempDir::new("basic");
    let (mut log, recovery) = LogStore::open(small_config(&dir)).unwrap();
    assert_eq!((recovery.first_index, recovery.last_index), (1, 0));
    log.append(&entries(1..301)).unwrap();
    log.sync().unwrap();
    assert!(segment_files(&dir).len() > 3, "small segments roll");
    assert_eq!(log.read(120..123).unwrap(), entries(120..123));
    drop(log);

    let (log, recovery) = LogStore::open(small_config(&dir)).unwrap();
    assert_eq!((recovery.first_index, recovery.last_index), (1, 300));
    assert!(recovery.torn_tail.is_none());
    assert_eq!(log.read(1..301).unwrap(), entries(1..301));
    assert!(matches!(
        log.read(300..302),
        Err(LogError::Missing { index: 301, .. })
    ));
}

#[test]
fn appends_must_be_contiguous_and_within_limits() {
    let dir = TempDir::new("limits");
    let (mut log, _) = LogStore::open(small_config(&dir)).unwrap();
    log.append(&entries(1..3)).unwrap();
    assert!(matches!(
        log.append(&entries(4..5)),
        Err(LogError::NonContiguous {
            expected: 3,
            got: 4
        })
    ));
    assert!(matches!(
        log.append(&[(3, vec![0; 513])]),
        Err(LogError::RecordTooLarge {
            index: 3,
            bytes: 513,
            max: 512
        })
    ));
    log.append(&entries(3..4)).unwrap();
}

/// Writes 1..=40 durably, then 41..=48 as the final (unsynced-window) batch,
/// and returns the newest segment's path and its length before that batch.
fn log_with_final_batch(dir: &TempDir) -> (PathBuf, u64) {
    let (mut log, _) = LogStore::open(small_config(dir)).unwrap();
    log.append(&entries(1..41)).unwrap();
    log.sync().unwrap();
    let last = segment_files(dir).pop().unwrap();
    let durable_len = std::fs::metadata(&last).unwrap().len();
    log.append(&entries(41..49)).unwrap();
    log.sync().unwrap();
    (last, durable_len)
}

#[test]
fn recovery_cuts_a_torn_tail_at_every_byte() {
    let dir = TempDir::new("torn");
    let (last, durable_len) = log_with_final_batch(&dir);
    let full = std::fs::read(&last).unwrap();
    let backup: Vec<(PathBuf, Vec<u8>)> = segment_files(&dir)
        .into_iter()
        .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
        .collect();
    // Where each record of the final batch ends.
    let mut ends = Vec::new();
    let mut at = durable_len as usize;
    while let Ok(Some((_, used))) = decode_record(&full[at..]) {
        at += used;
        ends.push(at as u64);
    }
    assert_eq!(ends.len(), 8);
    for cut in durable_len..=full.len() as u64 {
        for (p, bytes) in &backup {
            std::fs::write(p, bytes).unwrap();
        }
        std::fs::write(&last, &full[..cut as usize]).unwrap();
        let (mut log, recovery) = LogStore::open(small_config(&dir)).unwrap();
        let complete = ends.iter().filter(|e| **e <= cut).count() as u64;
        assert_eq!(recovery.last_index, 40 + complete, "cut at {cut}");
        let on_boundary = cut == durable_len || ends.contains(&cut);
        assert_eq!(recovery.torn_tail.is_some(), !on_boundary, "cut at {cut}");
        let kept = recovery.last_index;
        assert_eq!(
            log.read(1..kept + 1).unwrap(),
            entries(1..kept + 1),
            "cut at {cut}"
        );
        // The log takes appends again right after the kept prefix.
        log.append(&entries(kept + 1..kept + 2)).unwrap();
        log.sync().unwrap();
    }
}

#[test]
fn garbage_in_the_final_window_is_torn_but_earlier_damage_is_refused() {
    let dir = TempDir::new("corrupt");
    let (last, durable_len) = log_with_final_batch(&dir);
    let full = std::fs::read(&last).unwrap();

    // Zeroes over the final batch (unwritten pages after a crash): torn.
    let mut zeroed = full.clone();
    for b in &mut zeroed[durable_len as usize + 20..] {
        *b = 0;
    }
    std::fs::write(&last, &zeroed).unwrap();
    let (_, recovery) = LogStore::open(small_config(&dir)).unwrap();
    let torn = recovery.torn_tail.expect("torn tail reported");
    assert!(recovery.last_index >= 40 && recovery.last_index < 48);
    assert!(torn.bytes_dropped > 0);

    // A flipped byte in the first segment's first record: refused by name.
    let first = segment_files(&dir)[0].clone();
    let mut bytes = std::fs::read(&first).unwrap();
    bytes[16 + 20] ^= 0xff;
    std::fs::write(&first, &bytes).unwrap();
    match LogStore::open(small_config(&dir)) {
        Err(LogError::Corrupt { path, offset, .. }) => {
            assert_eq!(path, first);
            assert_eq!(offset, 16);
        }
        other => panic!("expected corruption, got {:?}", other.map(|(_, r)| r)),
    }
}

#[test]
fn a_missing_middle_segment_is_refused() {
    let dir = TempDir::new("gap");
    let (mut log, _) = LogStore::open(small_config(&dir)).unwrap();
    log.append(&entries(1..301)).unwrap();
    log.sync().unwrap();
    drop(log);
    let files = segment_files(&dir);
    std::fs::remove_file(&files[1]).unwrap();
    let err = LogStore::open(small_config(&dir)).map(|_| ()).unwrap_err();
    assert!(err.to_string().contains("a segment is missing"), "{err}");
}

#[test]
fn truncation_is_durable_and_the_log_continues() {
    let dir = TempDir::new("truncate");
    let (mut log, _) = LogStore::open(small_config(&dir)).unwrap();
    log.append(&entries(1..201)).unwrap();
    log.sync().unwrap();
    log.truncate(57).unwrap();
    assert_eq!(log.last_index(), 56);
    drop(log);
    let (mut log, recovery) = LogStore::open(small_config(&dir)).unwrap();
    assert_eq!(recovery.last_index, 56);
    let replacement: Vec<(u64, Vec<u8>)> = (57..70)
        .map(|i| (i, format!("term 2 entry {i}").into_bytes()))
        .collect();
    log.append(&replacement).unwrap();
    log.sync().unwrap();
    assert_eq!(log.read(55..70).unwrap()[2..], replacement[..]);
    assert_eq!(log.read(55..57).unwrap(), entries(55..57));
}

#[test]
fn purge_removes_old_segments_and_survives_reopen() {
    let dir = TempDir::new("purge");
    let (mut log, _) = LogStore::open(small_config(&dir)).unwrap();
    log.append(&entries(1..301)).unwrap();
    log.sync().unwrap();
    let before = segment_files(&dir).len();
    log.purge(150, b"log id 150".to_vec()).unwrap();
    assert!(segment_files(&dir).len() < before);
    assert!(matches!(
        log.read(150..151),
        Err(LogError::Purged {
            index: 150,
            first: 151
        })
    ));
    assert_eq!(log.read(151..153).unwrap(), entries(151..153));
    drop(log);

    let (mut log, recovery) = LogStore::open(small_config(&dir)).unwrap();
    assert_eq!((recovery.first_index, recovery.last_index), (151, 300));
    assert_eq!(recovery.meta.purged.as_deref(), Some(&b"log id 150"[..]));

    // A snapshot past the end of the log: the log restarts after it.
    log.purge(1000, b"log id 1000".to_vec()).unwrap();
    assert_eq!((log.first_index(), log.last_index()), (1001, 1000));
    log.append(&entries(1001..1003)).unwrap();
    log.sync().unwrap();
    drop(log);
    let (log, recovery) = LogStore::open(small_config(&dir)).unwrap();
    assert_eq!((recovery.first_index, recovery.last_index), (1001, 1002));
    assert_eq!(log.read(1001..1003).unwrap(), entries(1001..1003));
}

#[test]
fn vote_and_committed_persist_atomically() {
    let dir = TempDir::new("meta");
    let (mut log, _) = LogStore::open(small_config(&dir)).unwrap();
    log.save_meta(Some(b"vote t5 n2".to_vec()), None).unwrap();
    log.save_meta(None, Some(b"committed 9".to_vec())).unwrap();
    // A crash during a later save leaves a stray temporary file behind.
    std::fs::write(dir.0.join("meta.tmp"), b"half").unwrap();
    drop(log);
    let (_, recovery) = LogStore::open(small_config(&dir)).unwrap();
    assert_eq!(recovery.meta.vote.as_deref(), Some(&b"vote t5 n2"[..]));
    assert_eq!(
        recovery.meta.committed.as_deref(),
        Some(&b"committed 9"[..])
    );
}

#[test]
fn queued_appends_share_one_fdatasync() {
    let dir = TempDir::new("group");
    let config = LogConfig {
        batch_bytes_max: 1 << 20,
        segment_bytes_max: 64 << 20,
        ..small_config(&dir)
    };
    let (store, _) = LogStore::open(config.clone()).unwrap();
    let writer = LogWriter::start(store, config.queue_depth, 1000).unwrap();
    let release = writer.hold();
    let (acks, acked) = crossbeam_channel::unbounded();
    for i in 1..=500u64 {
        let acks = acks.clone();
        writer
            .append(vec![(i, payload(i))], Box::new(move |r| drop(acks.send(r))))
            .unwrap();
    }
    assert!(
        acked.is_empty(),
        "nothing is acknowledged before its fdatasync"
    );
    drop(release);
    for _ in 0..500 {
        acked
            .recv_timeout(std::time::Duration::from_secs(30))
            .unwrap()
            .unwrap();
    }
    let state = block_on(writer.state()).unwrap();
    assert_eq!(state.last_index, 500);
    assert_eq!(state.stats.append_requests, 500);
    assert_eq!(state.stats.syncs, 1, "500 queued appends, one group commit");
    assert_eq!(block_on(writer.read(499..501)).unwrap(), entries(499..501));
    writer.shutdown();
    let (_, recovery) = LogStore::open(config).unwrap();
    assert_eq!(recovery.last_index, 500);
}

#[test]
fn writer_reports_failed_appends_and_keeps_going() {
    let dir = TempDir::new("writer-errors");
    let (store, _) = LogStore::open(small_config(&dir)).unwrap();
    let writer = LogWriter::start(store, 16, 16).unwrap();
    writer.append_and_wait(entries(1..4)).unwrap();
    let err = writer.append_and_wait(entries(7..8)).unwrap_err();
    assert!(matches!(
        err,
        LogError::NonContiguous {
            expected: 4,
            got: 7
        }
    ));
    writer.append_and_wait(entries(4..6)).unwrap();
    block_on(writer.truncate(5)).unwrap();
    assert_eq!(block_on(writer.state()).unwrap().last_index, 4);
    writer.shutdown();
}

#[test]
fn appends_are_acknowledged_only_after_their_fdatasync() {
    let dir = TempDir::new("ack-after-sync");
    let config = small_config(&dir);
    let (mut store, _) = LogStore::open(config.clone()).unwrap();
    let (release, gate) = crossbeam_channel::bounded::<()>(0);
    store.sync_gate = Some(gate);
    let writer = LogWriter::start(store, config.queue_depth, 16).unwrap();
    let (acks, acked) = crossbeam_channel::unbounded();
    writer
        .append(entries(1..4), Box::new(move |r| drop(acks.send(r))))
        .unwrap();
    // The writer appends, then waits in its fdatasync.
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert!(
        acked.is_empty(),
        "an append was acknowledged while its fdatasync had not run"
    );
    drop(release);
    acked
        .recv_timeout(std::time::Duration::from_secs(30))
        .unwrap()
        .unwrap();
    writer.shutdown();
    let (_, recovery) = LogStore::open(config).unwrap();
    assert_eq!(recovery.last_index, 3);
}

/// Randomized appends, syncs, truncations and purges; at random points a
/// simulated power loss (every write no completed fdatasync covers is kept,
/// lost or torn) and a reopen of that image: the log must open, and hold
/// every entry acknowledged (synced) and not truncated since, unchanged.
#[test]
fn every_acknowledged_entry_survives_simulated_power_loss() {
    use photon_core::testing::crash::WriteTrace;
    let mut seed: u64 = std::env::var("PHOTON_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_1095);
    let mut rand = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n.max(1)
    };
    let dir = TempDir::new("power-loss");
    let config = small_config(&dir);
    let trace = std::sync::Arc::new(WriteTrace::default());
    let (mut log, _) = LogStore::open(config.clone()).unwrap();
    log.trace = Some(trace.clone());
    // What the log must hold after a crash: acknowledged entries by index,
    // and what it may hold beyond them (written, not yet acknowledged).
    let mut acked: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut written: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut first = 1u64;
    let (mut crashes, mut undone) = (0, 0);
    for step in 0..1500u64 {
        let next = log.last_index() + 1;
        match rand(20) {
            0..=11 => {
                let batch: Vec<(u64, Vec<u8>)> = (next..next + 1 + rand(6))
                    .map(|i| {
                        (
                            i,
                            format!("s{step} i{i} {}", "p".repeat(rand(300) as usize)).into_bytes(),
                        )
                    })
                    .collect();
                log.append(&batch).unwrap();
                written.extend(batch);
            }
            12..=15 => {
                log.sync().unwrap();
                acked = written.clone();
            }
            16 if next > first + 2 => {
                // A Raft conflict: truncation is durable on return.
                let from = first + 1 + rand(next - first - 1);
                log.truncate(from).unwrap();
                written.retain(|(i, _)| *i < from);
                acked.retain(|(i, _)| *i < from);
            }
            17 if next > first + 10 => {
                let upto = first + rand(next - first - 5);
                log.sync().unwrap();
                log.purge(upto, upto.to_le_bytes().to_vec()).unwrap();
                first = upto + 1;
                acked = written.clone();
                acked.retain(|(i, _)| *i >= first);
                written.retain(|(i, _)| *i >= first);
            }
            18 | 19 => {
                crashes += 1;
                let image = dir.0.with_extension(format!("crash{step}"));
                let _ = std::fs::remove_dir_all(&image);
                copy_image(&dir.0, &image);
                undone += trace.power_loss(&dir.0, &image, &mut rand);
                let (crashed, recovery) = LogStore::open(LogConfig {
                    dir: image.clone(),
                    ..config.clone()
                })
                .unwrap_or_else(|e| panic!("step {step}: the crashed log does not open: {e}"));
                assert_eq!(recovery.first_index, first, "step {step}");
                let last = acked.last().map_or(first - 1, |(i, _)| *i);
                assert!(
                    recovery.last_index >= last,
                    "step {step}: acknowledged entries up to {last} lost (log ends at {})",
                    recovery.last_index
                );
                let got = crashed.read(first..recovery.last_index + 1).unwrap();
                let want: Vec<_> = written
                    .iter()
                    .filter(|(i, _)| *i <= recovery.last_index)
                    .cloned()
                    .collect();
                assert_eq!(got, want, "step {step}: entries differ after the crash");
                drop(crashed);
                let _ = std::fs::remove_dir_all(&image);
            }
            _ => {}
        }
    }
    assert!(
        crashes > 50 && undone > 50,
        "{crashes} crashes, {undone} writes undone"
    );
}

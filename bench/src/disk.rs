//! The raw disk under a benchmark, measured in the same run: sequential
//! write and read throughput and 4 KiB random-read IOPS on one file, with
//! glommio's `DmaFile` (O_DIRECT through io_uring, so the page cache is out
//! of the picture). This is the ceiling a storage service on the same
//! filesystem is compared against.
//!
//! The file is written with `--disk-block-size` writes, `--disk-queue-depth`
//! of them in flight, then made durable with one fdatasync (counted in the
//! write time); read back the same way; then read at random offsets, 4 KiB at
//! a time with `--disk-random-queue-depth` reads in flight, for a fixed time.
//! The file is deleted at the end, also when a step fails.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use glommio::io::DmaFile;
use glommio::{LocalExecutorBuilder, Placement};
use serde_json::json;

use crate::report::{new_histogram, Latency};

/// Size of one random read (the small-object page of the comparison).
pub const RANDOM_READ_BYTES: usize = 4096;
/// Largest probe file.
pub const FILE_BYTES_MAX: u64 = 256 << 30;
/// Largest sequential block.
pub const BLOCK_BYTES_MAX: u64 = 64 << 20;
/// Most I/Os in flight in any pass.
pub const QUEUE_DEPTH_MAX: usize = 1024;
/// glommio's own default of registered I/O memory; the probe asks for more
/// when its sequential passes need it.
pub const IO_MEMORY_MIN: usize = 10 << 20;
/// Longest random-read pass.
pub const RANDOM_DURATION_MAX_S: f64 = 600.0;

/// A byte count written with an optional binary suffix: `4096`, `4k`,
/// `1m`, `2g` (also `4KiB`, `1MiB`, `2GiB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let lower = text.trim().to_ascii_lowercase();
        let digits_end = lower
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(lower.len());
        let (digits, suffix) = lower.split_at(digits_end);
        let number: u64 = digits
            .parse()
            .map_err(|_| format!("{text:?} is not a size like 4096, 4k, 1m or 2g"))?;
        let shift = match suffix.trim() {
            "" | "b" => 0,
            "k" | "kib" => 10,
            "m" | "mib" => 20,
            "g" | "gib" => 30,
            "t" | "tib" => 40,
            other => return Err(format!("unknown size suffix {other:?} in {text:?}")),
        };
        number
            .checked_mul(1u64 << shift)
            .map(ByteSize)
            .ok_or_else(|| format!("{text:?} is too large"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let units = [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")];
        for (shift, unit) in units {
            if self.0 >= 1 << shift && self.0.is_multiple_of(1 << shift) {
                return write!(f, "{} {unit}", self.0 >> shift);
            }
        }
        write!(f, "{} B", self.0)
    }
}

#[derive(Debug, Clone, Args)]
pub struct DiskArgs {
    /// Size of the disk probe file (written, read back, read at random, deleted).
    #[arg(long, default_value = "2g")]
    pub disk_file_size: ByteSize,
    /// Size of each sequential write and read.
    #[arg(long, default_value = "1m")]
    pub disk_block_size: ByteSize,
    /// Sequential writes (and reads) in flight.
    #[arg(long, default_value_t = 8)]
    pub disk_queue_depth: usize,
    /// 4 KiB random reads in flight.
    #[arg(long, default_value_t = 128)]
    pub disk_random_queue_depth: usize,
    /// Seconds of 4 KiB random reads.
    #[arg(long, default_value_t = 3.0)]
    pub disk_random_s: f64,
    /// Skip the raw disk baseline (no "vs disk" figures).
    #[arg(long)]
    pub skip_disk: bool,
}

impl DiskArgs {
    pub fn validate(&self) -> anyhow::Result<()> {
        let block = self.disk_block_size.0;
        if block < RANDOM_READ_BYTES as u64
            || block > BLOCK_BYTES_MAX
            || !block.is_multiple_of(4096)
        {
            bail!("--disk-block-size must be a multiple of 4 KiB up to {BLOCK_BYTES_MAX} bytes");
        }
        let file = self.disk_file_size.0;
        if file < block || file > FILE_BYTES_MAX || !file.is_multiple_of(block) {
            bail!(
                "--disk-file-size must be a multiple of --disk-block-size, at most {FILE_BYTES_MAX}"
            );
        }
        for depth in [self.disk_queue_depth, self.disk_random_queue_depth] {
            if depth == 0 || depth > QUEUE_DEPTH_MAX {
                bail!("disk queue depths must be in 1..={QUEUE_DEPTH_MAX}");
            }
        }
        if !(self.disk_random_s > 0.0 && self.disk_random_s <= RANDOM_DURATION_MAX_S) {
            bail!("--disk-random-s must be in (0, {RANDOM_DURATION_MAX_S}]");
        }
        Ok(())
    }
}

/// What the disk did in one run.
#[derive(Debug, Clone)]
pub struct DiskBaseline {
    pub dir: PathBuf,
    pub file_bytes: u64,
    pub block_bytes: u64,
    pub queue_depth: usize,
    pub random_queue_depth: usize,
    /// Sequential writes plus the final fdatasync.
    pub write_elapsed: Duration,
    pub read_elapsed: Duration,
    pub random_reads: u64,
    pub random_elapsed: Duration,
    pub random_latency: Latency,
}

impl DiskBaseline {
    pub fn write_bytes_per_s(&self) -> f64 {
        self.file_bytes as f64 / self.write_elapsed.as_secs_f64()
    }

    pub fn read_bytes_per_s(&self) -> f64 {
        self.file_bytes as f64 / self.read_elapsed.as_secs_f64()
    }

    pub fn random_reads_per_s(&self) -> f64 {
        self.random_reads as f64 / self.random_elapsed.as_secs_f64()
    }

    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "dir": self.dir.display().to_string(),
            "file_bytes": self.file_bytes,
            "block_bytes": self.block_bytes,
            "queue_depth": self.queue_depth,
            "random_queue_depth": self.random_queue_depth,
            "write_bytes_per_s": self.write_bytes_per_s(),
            "read_bytes_per_s": self.read_bytes_per_s(),
            "random_read_bytes": RANDOM_READ_BYTES,
            "random_reads_per_s": self.random_reads_per_s(),
            "random_read_latency_us": self.random_latency.to_json(),
        })
    }
}

impl fmt::Display for DiskBaseline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "O_DIRECT (glommio DmaFile) on a {} file in {}: sequential write {:.0} MB/s \
             ({} blocks, {} in flight, fdatasync included), sequential read {:.0} MB/s, \
             4 KiB random reads {:.0}/s at QD {} ({})",
            ByteSize(self.file_bytes),
            self.dir.display(),
            self.write_bytes_per_s() / 1e6,
            ByteSize(self.block_bytes),
            self.queue_depth,
            self.read_bytes_per_s() / 1e6,
            self.random_reads_per_s(),
            self.random_queue_depth,
            self.random_latency
        )
    }
}

/// Measures the disk under `dir` on a glommio executor of its own thread.
pub fn measure(dir: &Path, args: &DiskArgs) -> anyhow::Result<DiskBaseline> {
    args.validate()?;
    let path = dir.join(format!("photon-bench-disk-{}", std::process::id()));
    let _remove = RemoveOnDrop(path.clone());
    let block = args.disk_block_size.0 as usize;
    let io_memory = IO_MEMORY_MIN.max((args.disk_queue_depth + 2) * block);
    let probe = Probe {
        path: path.clone(),
        file_bytes: args.disk_file_size.0,
        block_bytes: block,
        queue_depth: args.disk_queue_depth,
        random_queue_depth: args.disk_random_queue_depth,
        random_duration: Duration::from_secs_f64(args.disk_random_s),
    };
    let handle = LocalExecutorBuilder::new(Placement::Unbound)
        .name("disk-probe")
        .io_memory(io_memory)
        .spawn(move || async move { probe.run().await })
        .map_err(|e| anyhow::anyhow!("cannot start the disk probe's executor: {e}"))?;
    let (write_elapsed, read_elapsed, random_reads, random_elapsed, random_latency) = handle
        .join()
        .map_err(|e| anyhow::anyhow!("the disk probe's executor failed: {e}"))?
        .with_context(|| format!("disk probe on {}", path.display()))?;
    Ok(DiskBaseline {
        dir: dir.to_path_buf(),
        file_bytes: args.disk_file_size.0,
        block_bytes: block as u64,
        queue_depth: args.disk_queue_depth,
        random_queue_depth: args.disk_random_queue_depth,
        write_elapsed,
        read_elapsed,
        random_reads,
        random_elapsed,
        random_latency,
    })
}

/// Deletes the probe file whatever happens.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Write time, read time, random reads, random time, random-read latency.
type ProbeResult = (Duration, Duration, u64, Duration, Latency);

struct Probe {
    path: PathBuf,
    file_bytes: u64,
    block_bytes: usize,
    queue_depth: usize,
    random_queue_depth: usize,
    random_duration: Duration,
}

impl Probe {
    /// Writes through a write-only handle, then reads through a read-only
    /// one. glommio probes the device for iopoll with a read when a file is
    /// opened readable; on an empty file that read succeeds (EOF), glommio
    /// then wrongly sends every read to the poll ring and they fail with
    /// EOPNOTSUPP on virtio disks. Opened write-only the probe fails and the
    /// poll ring stays off; reopened once written, the probe reads real data.
    async fn run(self) -> anyhow::Result<ProbeResult> {
        let file = DmaFile::create(&self.path)
            .await
            .map_err(glommio_error)
            .context("cannot create the probe file")?;
        let file = Rc::new(file);
        let started = Instant::now();
        self.sequential(&file, true).await?;
        file.fdatasync()
            .await
            .map_err(glommio_error)
            .context("fdatasync")?;
        let write_elapsed = started.elapsed();
        close(file).await;
        let file = DmaFile::open(&self.path)
            .await
            .map_err(glommio_error)
            .context("cannot reopen the probe file")?;
        let file = Rc::new(file);
        let started = Instant::now();
        self.sequential(&file, false).await?;
        let read_elapsed = started.elapsed();
        let (reads, random_elapsed, latency) = self.random_reads(&file).await?;
        close(file).await;
        Ok((write_elapsed, read_elapsed, reads, random_elapsed, latency))
    }

    /// Writes (or reads back) the whole file in blocks, `queue_depth` in
    /// flight: each worker takes the next block offset until none is left.
    async fn sequential(&self, file: &Rc<DmaFile>, write: bool) -> anyhow::Result<()> {
        let next = Rc::new(Cell::new(0u64));
        let workers: Vec<_> = (0..self.queue_depth)
            .map(|_| {
                let (file, next) = (file.clone(), next.clone());
                let (total, block) = (self.file_bytes, self.block_bytes);
                glommio::spawn_local(async move {
                    loop {
                        let at = next.get();
                        if at >= total {
                            return anyhow::Ok(());
                        }
                        next.set(at + block as u64);
                        if write {
                            let mut buffer = file.alloc_dma_buffer(block);
                            // Not zeroes: no layer below may skip or compress them.
                            buffer.as_bytes_mut().fill((at >> 20) as u8 | 1);
                            let written = file.write_at(buffer, at).await.map_err(glommio_error)?;
                            check_length("write", at, written, block)?;
                        } else {
                            let read = file
                                .read_at_aligned(at, block)
                                .await
                                .map_err(glommio_error)?;
                            check_length("read", at, read.len(), block)?;
                        }
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.await?;
        }
        Ok(())
    }

    /// 4 KiB reads at uniformly random aligned offsets for the set time.
    async fn random_reads(&self, file: &Rc<DmaFile>) -> anyhow::Result<(u64, Duration, Latency)> {
        let pages = self.file_bytes / RANDOM_READ_BYTES as u64;
        let histogram = Rc::new(RefCell::new(new_histogram()));
        let started = Instant::now();
        let stop = started + self.random_duration;
        let workers: Vec<_> = (0..self.random_queue_depth)
            .map(|worker| {
                let (file, histogram) = (file.clone(), histogram.clone());
                glommio::spawn_local(async move {
                    let mut random = SplitMix64(0x5eed ^ worker as u64);
                    let mut reads = 0u64;
                    while Instant::now() < stop {
                        let at = (random.next() % pages) * RANDOM_READ_BYTES as u64;
                        let sent = Instant::now();
                        let read = file
                            .read_at_aligned(at, RANDOM_READ_BYTES)
                            .await
                            .map_err(glommio_error)?;
                        check_length("random read", at, read.len(), RANDOM_READ_BYTES)?;
                        let us = (sent.elapsed().as_micros() as u64).max(1);
                        let _ = histogram.borrow_mut().record(us);
                        reads += 1;
                    }
                    anyhow::Ok(reads)
                })
            })
            .collect();
        let mut reads = 0;
        for worker in workers {
            reads += worker.await?;
        }
        let elapsed = started.elapsed();
        let latency = Latency::from_histogram(&histogram.borrow());
        Ok((reads, elapsed, latency))
    }
}

/// Closes a file whose workers have all finished (the last reference).
async fn close(file: Rc<DmaFile>) {
    if let Ok(file) = Rc::try_unwrap(file) {
        let _ = file.close().await;
    }
}

/// glommio's errors are not `Sync`; keep their text.
fn glommio_error(e: glommio::GlommioError<()>) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

fn check_length(what: &str, at: u64, got: usize, wanted: usize) -> anyhow::Result<()> {
    if got != wanted {
        bail!("short {what} at byte {at}: {got} of {wanted} bytes");
    }
    Ok(())
}

/// SplitMix64: a small deterministic generator, one per worker.
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!("4096".parse::<ByteSize>(), Ok(ByteSize(4096)));
        assert_eq!("4k".parse::<ByteSize>(), Ok(ByteSize(4096)));
        assert_eq!("1MiB".parse::<ByteSize>(), Ok(ByteSize(1 << 20)));
        assert_eq!("64m".parse::<ByteSize>(), Ok(ByteSize(64 << 20)));
        assert_eq!("2G".parse::<ByteSize>(), Ok(ByteSize(2 << 30)));
        assert!("".parse::<ByteSize>().is_err());
        assert!("4x".parse::<ByteSize>().is_err());
        assert!("99999999999999t".parse::<ByteSize>().is_err());
    }

    #[test]
    fn sizes_print_in_the_largest_exact_unit() {
        assert_eq!(ByteSize(4096).to_string(), "4 KiB");
        assert_eq!(ByteSize(64 << 20).to_string(), "64 MiB");
        assert_eq!(ByteSize(1536).to_string(), "1536 B");
    }

    #[test]
    fn a_tiny_probe_writes_reads_and_deletes_its_file() {
        let dir = std::env::temp_dir().join(format!("disk-probe-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        struct RemoveDir(PathBuf);
        impl Drop for RemoveDir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
        let _cleanup = RemoveDir(dir.clone());
        let args = DiskArgs {
            disk_file_size: ByteSize(4 << 20),
            disk_block_size: ByteSize(1 << 20),
            disk_queue_depth: 2,
            disk_random_queue_depth: 4,
            disk_random_s: 0.1,
            skip_disk: false,
        };
        let baseline = measure(&dir, &args).unwrap();
        assert!(baseline.write_bytes_per_s() > 0.0);
        assert!(baseline.read_bytes_per_s() > 0.0);
        assert!(baseline.random_reads > 0);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    }
}

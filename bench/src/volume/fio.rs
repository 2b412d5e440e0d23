//! fio as the load generator of `bench volume`: the job specs (`randread-4k-qd32`),
//! the command line for each engine, a run under a deadline, and the parse of
//! its `--output-format=json` result. fio computes its own latency histograms;
//! the percentiles reported are fio's completion latency (clat) percentiles.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::json;

use super::target::Stop;
use crate::child::{log_tail, Proc};
use crate::disk::ByteSize;

/// Largest block of one I/O: NBD's usual request limit (32 MiB).
pub const BLOCK_BYTES_MAX: u64 = 32 << 20;
/// Most I/Os in flight in one job.
pub const QUEUE_DEPTH_MAX: u32 = 1024;
/// Block size of the pre-fill pass.
pub const FILL_BLOCK_BYTES: u64 = 1 << 20;
/// I/Os in flight during the pre-fill pass.
pub const FILL_QUEUE_DEPTH: u32 = 8;
/// Time fio may take beyond its ramp and runtime (start, connect, exit).
pub const RUN_GRACE: Duration = Duration::from_secs(60);
/// Longest pre-fill pass (1 MiB writes over the whole test area).
pub const FILL_TIMEOUT: Duration = Duration::from_secs(1800);
/// The clat percentiles asked of fio and read back from its JSON.
pub const PERCENTILE_LIST: &str = "50:99:99.9";

/// An I/O pattern, as fio's `--rw`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pattern {
    RandRead,
    RandWrite,
    Read,
    Write,
}

impl Pattern {
    pub fn as_str(self) -> &'static str {
        match self {
            Pattern::RandRead => "randread",
            Pattern::RandWrite => "randwrite",
            Pattern::Read => "read",
            Pattern::Write => "write",
        }
    }

    pub fn writes(self) -> bool {
        matches!(self, Pattern::RandWrite | Pattern::Write)
    }
}

/// One fio job: a pattern, a block size and a queue depth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Job {
    pub pattern: Pattern,
    pub block_bytes: u64,
    pub queue_depth: u32,
}

impl FromStr for Job {
    type Err = String;

    /// `PATTERN-SIZE-qdN`, e.g. `randread-4k-qd32`, `write-1m-qd8`.
    fn from_str(text: &str) -> Result<Self, String> {
        let usage = || format!("{text:?} is not a job like randread-4k-qd32 or write-1m-qd8");
        let mut parts = text.trim().split('-');
        let (Some(pattern), Some(size), Some(depth), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(usage());
        };
        let pattern = match pattern.to_ascii_lowercase().as_str() {
            "randread" => Pattern::RandRead,
            "randwrite" => Pattern::RandWrite,
            "read" => Pattern::Read,
            "write" => Pattern::Write,
            _ => return Err(usage()),
        };
        let block_bytes = size.parse::<ByteSize>()?.0;
        if !(512..=BLOCK_BYTES_MAX).contains(&block_bytes) || !block_bytes.is_multiple_of(512) {
            return Err(format!(
                "{text:?}: the block size must be a multiple of 512 up to {}",
                ByteSize(BLOCK_BYTES_MAX)
            ));
        }
        let queue_depth: u32 = depth
            .to_ascii_lowercase()
            .strip_prefix("qd")
            .and_then(|d| d.parse().ok())
            .ok_or_else(usage)?;
        if queue_depth == 0 || queue_depth > QUEUE_DEPTH_MAX {
            return Err(format!(
                "{text:?}: the queue depth must be in 1..={QUEUE_DEPTH_MAX}"
            ));
        }
        Ok(Self {
            pattern,
            block_bytes,
            queue_depth,
        })
    }
}

impl fmt::Display for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-{}-qd{}",
            self.pattern.as_str(),
            short_size(self.block_bytes),
            self.queue_depth
        )
    }
}

/// `4k`, `1m`, `1g`, or bytes: the size as fio and the job names write it.
pub fn short_size(bytes: u64) -> String {
    for (shift, unit) in [(30, "g"), (20, "m"), (10, "k")] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

/// How fio reaches a target.
#[derive(Debug, Clone)]
pub enum Engine {
    /// A file on the local filesystem: io_uring, O_DIRECT.
    RawFile(PathBuf),
    /// An NBD export through fio's libnbd engine.
    Nbd(String),
}

impl Engine {
    fn args(&self) -> Vec<String> {
        match self {
            Engine::RawFile(path) => vec![
                "--ioengine=io_uring".into(),
                "--direct=1".into(),
                format!("--filename={}", path.display()),
            ],
            Engine::Nbd(uri) => vec!["--ioengine=nbd".into(), format!("--uri={uri}")],
        }
    }
}

/// What one measured run asks of fio.
#[derive(Debug, Clone)]
pub struct RunSettings {
    pub size_bytes: u64,
    pub runtime_s: u64,
    pub ramp_s: u64,
    /// fio's `--fsync=N` on write jobs (a flush every N writes), 0 for none.
    pub fsync_every: u32,
}

/// The arguments of a measured job (after the `fio` binary).
pub fn job_args(job: Job, engine: &Engine, settings: &RunSettings, output: &Path) -> Vec<String> {
    let mut args = vec![
        format!("--name={job}"),
        format!("--rw={}", job.pattern.as_str()),
        format!("--bs={}", job.block_bytes),
        format!("--iodepth={}", job.queue_depth),
        format!("--size={}", settings.size_bytes),
        "--numjobs=1".into(),
        "--time_based=1".into(),
        format!("--runtime={}", settings.runtime_s),
        format!("--ramp_time={}", settings.ramp_s),
    ];
    if job.pattern.writes() && settings.fsync_every > 0 {
        args.push(format!("--fsync={}", settings.fsync_every));
    }
    args.extend(engine.args());
    args.extend(output_args(output));
    args
}

/// The arguments of the pre-fill pass: 1 MiB sequential writes over the
/// whole area, made durable by a flush at the end.
pub fn fill_args(engine: &Engine, size_bytes: u64, output: &Path) -> Vec<String> {
    let mut args = vec![
        "--name=fill".into(),
        "--rw=write".into(),
        format!("--bs={FILL_BLOCK_BYTES}"),
        format!("--iodepth={FILL_QUEUE_DEPTH}"),
        format!("--size={size_bytes}"),
        "--numjobs=1".into(),
        "--end_fsync=1".into(),
    ];
    args.extend(engine.args());
    args.extend(output_args(output));
    args
}

fn output_args(output: &Path) -> Vec<String> {
    // The nbd engine prints "connected to NBD server" on stdout, so the JSON
    // goes to its own file.
    vec![
        "--output-format=json".into(),
        format!("--output={}", output.display()),
        format!("--percentile_list={PERCENTILE_LIST}"),
    ]
}

/// Runs `fio ARGS` with its console output in `log`; kills it after
/// `timeout` or on `stop`. Returns the parsed JSON document fio wrote to
/// `output`.
pub fn run(
    fio: &Path,
    args: &[String],
    output: &Path,
    log: PathBuf,
    timeout: Duration,
    stop: &Stop,
) -> anyhow::Result<serde_json::Value> {
    let _ = std::fs::remove_file(output);
    let mut command = Command::new(fio);
    command.args(args);
    let mut process = Proc::spawn("fio".into(), &mut command, log)?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = process.child.try_wait()? {
            break status;
        }
        stop.check()?;
        if started.elapsed() > timeout {
            bail!(
                "fio did not finish in {timeout:?} (killed); end of its log {}:\n{}",
                process.log.display(),
                log_tail(&process.log)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    if !status.success() {
        bail!(
            "fio failed ({status}); end of its log {}:\n{}",
            process.log.display(),
            log_tail(&process.log)
        );
    }
    let text = std::fs::read_to_string(output)
        .with_context(|| format!("fio wrote no {}", output.display()))?;
    serde_json::from_str(&text).with_context(|| format!("cannot parse {}", output.display()))
}

/// One job's result, in the units of the report.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Measurement {
    pub iops: f64,
    pub bytes_per_s: f64,
    /// I/Os completed in the measured time (fio's clat samples).
    pub total_ios: u64,
    pub runtime_ms: u64,
    pub clat_mean_us: f64,
    pub clat_p50_us: f64,
    pub clat_p99_us: f64,
    pub clat_p999_us: f64,
    pub clat_max_us: f64,
    /// fio's own CPU use (user + system, % of one core).
    pub fio_cpu_percent: f64,
}

impl Measurement {
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "iops": self.iops, "bytes_per_s": self.bytes_per_s, "total_ios": self.total_ios,
            "runtime_ms": self.runtime_ms,
            "clat_us": {"mean": self.clat_mean_us, "p50": self.clat_p50_us,
                        "p99": self.clat_p99_us, "p999": self.clat_p999_us,
                        "max": self.clat_max_us},
            "fio_cpu_percent": self.fio_cpu_percent,
        })
    }
}

/// Reads the single job of a fio JSON document; `writes` picks its `write`
/// section, else `read`.
pub fn parse(doc: &serde_json::Value, writes: bool) -> anyhow::Result<Measurement> {
    let jobs = doc["jobs"].as_array().context("fio JSON has no jobs")?;
    let [job] = jobs.as_slice() else {
        bail!("fio JSON has {} jobs, expected 1", jobs.len());
    };
    let error = job["error"].as_i64().unwrap_or(0);
    if error != 0 {
        bail!("fio job {} ended with error {error}", job["jobname"]);
    }
    let side = &job[if writes { "write" } else { "read" }];
    let number = |v: &serde_json::Value, what: &str| {
        v.as_f64()
            .with_context(|| format!("fio JSON has no {what}"))
    };
    let clat = &side["clat_ns"];
    let percentile = |p: &str| number(&clat["percentile"][p], &format!("clat {p} percentile"));
    let total_ios = number(&side["total_ios"], "total_ios")? as u64;
    if total_ios == 0 {
        bail!("fio completed no I/O in the measured time");
    }
    Ok(Measurement {
        iops: number(&side["iops"], "iops")?,
        bytes_per_s: number(&side["bw_bytes"], "bw_bytes")?,
        total_ios,
        runtime_ms: number(&side["runtime"], "runtime")? as u64,
        clat_mean_us: number(&clat["mean"], "clat mean")? / 1e3,
        clat_p50_us: percentile("50.000000")? / 1e3,
        clat_p99_us: percentile("99.000000")? / 1e3,
        clat_p999_us: percentile("99.900000")? / 1e3,
        clat_max_us: number(&clat["max"], "clat max")? / 1e3,
        fio_cpu_percent: number(&job["usr_cpu"], "usr_cpu")? + number(&job["sys_cpu"], "sys_cpu")?,
    })
}

/// `fio --version`, or an error naming the package to install.
pub fn version(fio: &Path) -> anyhow::Result<String> {
    let output = Command::new(fio)
        .arg("--version")
        .output()
        .with_context(|| format!("cannot run {} (apt-get install fio)", fio.display()))?;
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Whether this fio has the libnbd engine (Debian's has; a build without
/// libnbd does not).
pub fn has_nbd_engine(fio: &Path) -> bool {
    Command::new(fio)
        .arg("--enghelp=nbd")
        .output()
        .map(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("uri"))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_parse_and_print_back() {
        let job: Job = "randread-4k-qd32".parse().unwrap();
        assert_eq!(job.pattern, Pattern::RandRead);
        assert_eq!(job.block_bytes, 4096);
        assert_eq!(job.queue_depth, 32);
        assert_eq!(job.to_string(), "randread-4k-qd32");
        let job: Job = "Write-1M-QD8".parse().unwrap();
        assert_eq!(job.to_string(), "write-1m-qd8");
        assert!(job.pattern.writes());
        for bad in [
            "randread-4k",
            "randread-4k-32",
            "trim-4k-qd1",
            "read-100-qd1",
            "read-64m-qd1",
            "read-4k-qd0",
            "read-4k-qd1-x",
        ] {
            assert!(bad.parse::<Job>().is_err(), "{bad}");
        }
    }

    #[test]
    fn job_arguments_name_the_engine_and_the_json_file() {
        let settings = RunSettings {
            size_bytes: 1 << 30,
            runtime_s: 10,
            ramp_s: 2,
            fsync_every: 16,
        };
        let engine = Engine::Nbd("nbd://127.0.0.1:1/x".into());
        let args = job_args(
            "randwrite-4k-qd1".parse().unwrap(),
            &engine,
            &settings,
            Path::new("/o.json"),
        );
        for want in [
            "--rw=randwrite",
            "--bs=4096",
            "--iodepth=1",
            "--size=1073741824",
            "--runtime=10",
            "--ramp_time=2",
            "--fsync=16",
            "--ioengine=nbd",
            "--uri=nbd://127.0.0.1:1/x",
            "--output=/o.json",
            "--output-format=json",
        ] {
            assert!(args.iter().any(|a| a == want), "{want} in {args:?}");
        }
        let reads = job_args(
            "read-1m-qd8".parse().unwrap(),
            &Engine::RawFile("/f".into()),
            &settings,
            Path::new("/o.json"),
        );
        assert!(reads.iter().any(|a| a == "--direct=1"));
        assert!(!reads.iter().any(|a| a.starts_with("--fsync")));
        let fill = fill_args(&engine, 1 << 30, Path::new("/o.json"));
        assert!(fill.iter().any(|a| a == "--end_fsync=1"));
    }

    #[test]
    fn fio_json_parses_into_report_units() {
        let doc = serde_json::json!({"jobs": [{
            "jobname": "randread-4k-qd32", "error": 0, "usr_cpu": 15.5, "sys_cpu": 70.0,
            "read": {"iops": 67847.5, "bw_bytes": 277903672u64, "total_ios": 135763,
                     "runtime": 2001,
                     "clat_ns": {"min": 141501, "max": 12922462, "mean": 463683.3,
                                 "percentile": {"50.000000": 436224, "99.000000": 1171456,
                                                "99.900000": 3260416}}},
            "write": {"iops": 0.0, "bw_bytes": 0, "total_ios": 0, "runtime": 0,
                      "clat_ns": {"min": 0, "max": 0, "mean": 0.0}}
        }]});
        let m = parse(&doc, false).unwrap();
        assert_eq!(m.total_ios, 135763);
        assert!((m.iops - 67847.5).abs() < 1e-9);
        assert!((m.clat_p50_us - 436.224).abs() < 1e-9);
        assert!((m.clat_p99_us - 1171.456).abs() < 1e-9);
        assert!((m.fio_cpu_percent - 85.5).abs() < 1e-9);
        assert!(parse(&doc, true).is_err(), "no writes completed");
        let failed = serde_json::json!({"jobs": [{"jobname": "x", "error": 5}]});
        assert!(parse(&failed, false).is_err());
    }
}

//! The load of `bench metrics`: simulated hosts that each expose the same
//! 100 node-exporter series (CPU seconds per CPU and mode, memory, network,
//! filesystems, disks, load, a few kernel counters), scraped every 15 s of
//! simulated time and sent the way Prometheus' remote write sends them.
//!
//! Values evolve as node exporter's do: counters grow by random amounts in
//! their own units (CPU seconds in 1/100 s ticks, bytes in bytes), gauges
//! wander within bounds (memory in 4 KiB pages), a few stay constant. Every
//! series has its own generator seeded by its index, so the data is the
//! same in every run and for every target.
//!
//! Series are spread over the connections ("shards") by index and stay on
//! theirs, so that one series' samples arrive in order, as Prometheus' queue
//! manager guarantees; each sample is its own `TimeSeries` in a request of
//! at most `batch` samples, as Prometheus encodes them. Every body is
//! encoded (protobuf + snappy) before the clock starts.

use bytes::Bytes;
use photon_metrics_wire::{encode_remote_write_v1, SeriesSamples};
use photon_tsdb::{Labels, Sample};

/// Series each simulated host exposes.
pub const SERIES_PER_HOST: usize = 100;
/// Simulated time between two scrapes of a host.
pub const SCRAPE_INTERVAL_MS: i64 = 15_000;
/// The host label's port, as node exporter's.
const NODE_EXPORTER_PORT: u16 = 9100;
const CPUS: usize = 4;
const CPU_MODES: [&str; 8] = [
    "idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user",
];
/// Each mode's CPU seconds per scrape interval (15 s), low and high.
const CPU_MODE_SECONDS: [(f64, f64); 8] = [
    (9.0, 14.5),
    (0.0, 0.4),
    (0.0, 0.02),
    (0.0, 0.05),
    (0.0, 0.12),
    (0.0, 0.05),
    (0.2, 1.5),
    (0.5, 4.0),
];
const PAGE_BYTES: f64 = 4096.0;
const GIB: f64 = (1u64 << 30) as f64;

/// How a series' value evolves from one scrape to the next.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Model {
    /// Grows by a random amount in `[low, high)` per scrape, rounded to `quantum`.
    Counter { low: f64, high: f64, quantum: f64 },
    /// Moves by up to `step` either way per scrape within `[min, max]`,
    /// rounded to `quantum`.
    Gauge {
        min: f64,
        max: f64,
        step: f64,
        quantum: f64,
    },
    /// Never changes (sizes, totals, boot time).
    Constant,
    /// The scrape's own time in seconds (`node_time_seconds`).
    Clock,
}

/// One series of one host: its labels, its first value and how it moves.
#[derive(Debug, Clone)]
pub struct SeriesDef {
    pub labels: Labels,
    pub start: f64,
    pub model: Model,
}

/// A small deterministic generator (xorshift64*): the data must be the same
/// for every target and every run, and cost little to make.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        // splitmix64 of the seed: neighbouring seeds give unrelated streams.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Self((z ^ (z >> 31)) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn between(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.unit()
    }
}

fn round_to(value: f64, quantum: f64) -> f64 {
    if quantum > 0.0 {
        (value / quantum).round() * quantum
    } else {
        value
    }
}

impl Model {
    /// The value after one more scrape.
    fn step(&self, value: f64, t_ms: i64, rng: &mut Rng) -> f64 {
        match *self {
            Model::Counter { low, high, quantum } => {
                round_to(value + rng.between(low, high), quantum)
            }
            Model::Gauge {
                min,
                max,
                step,
                quantum,
            } => round_to((value + rng.between(-step, step)).clamp(min, max), quantum),
            Model::Constant => value,
            Model::Clock => t_ms as f64 / 1000.0,
        }
    }
}

/// The `instance` label of host `host`.
pub fn instance(host: usize) -> String {
    format!("host-{host:04}:{NODE_EXPORTER_PORT}")
}

fn labels(host: usize, name: &str, extra: &[(&str, &str)]) -> Labels {
    let mut pairs = vec![
        ("__name__".to_owned(), name.to_owned()),
        ("instance".to_owned(), instance(host)),
        ("job".to_owned(), "node".to_owned()),
    ];
    pairs.extend(
        extra
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned())),
    );
    Labels::new(pairs)
}

/// The 100 series of host `host`; `rng` picks its sizes (memory, disks).
pub fn host_series(host: usize, rng: &mut Rng) -> Vec<SeriesDef> {
    let mut out = Vec::with_capacity(SERIES_PER_HOST);
    let mut add = |name: &str, extra: &[(&str, &str)], start: f64, model: Model| {
        out.push(SeriesDef {
            labels: labels(host, name, extra),
            start,
            model,
        });
    };
    let counter = |low: f64, high: f64, quantum: f64| Model::Counter { low, high, quantum };
    let gauge = |min: f64, max: f64, step: f64, quantum: f64| Model::Gauge {
        min,
        max,
        step,
        quantum,
    };
    let uptime_s = rng.between(3600.0, 90.0 * 86400.0).round();
    for cpu in 0..CPUS {
        let cpu = cpu.to_string();
        for (mode, &(low, high)) in CPU_MODES.iter().zip(&CPU_MODE_SECONDS) {
            let start = round_to(uptime_s * (low + high) / 2.0 / 15.0, 0.01);
            add(
                "node_cpu_seconds_total",
                &[("cpu", &cpu), ("mode", mode)],
                start,
                counter(low, high, 0.01),
            );
        }
    }
    let total = [8.0, 16.0, 32.0, 64.0][(rng.next_u64() % 4) as usize] * GIB;
    let page = PAGE_BYTES;
    add("node_memory_MemTotal_bytes", &[], total, Model::Constant);
    let memory_gauges: [(&str, f64, f64); 9] = [
        ("node_memory_MemFree_bytes", 0.05, 0.6),
        ("node_memory_MemAvailable_bytes", 0.2, 0.9),
        ("node_memory_Buffers_bytes", 0.005, 0.03),
        ("node_memory_Cached_bytes", 0.1, 0.6),
        ("node_memory_Active_bytes", 0.1, 0.5),
        ("node_memory_Inactive_bytes", 0.05, 0.4),
        ("node_memory_Dirty_bytes", 0.0, 0.002),
        ("node_memory_Slab_bytes", 0.01, 0.05),
        ("node_memory_Shmem_bytes", 0.001, 0.02),
    ];
    for (name, low, high) in memory_gauges {
        let (min, max) = (total * low, total * high);
        let start = round_to(rng.between(min, max), page);
        add(name, &[], start, gauge(min, max, (max - min) / 200.0, page));
    }
    let swap = total / 4.0;
    add("node_memory_SwapTotal_bytes", &[], swap, Model::Constant);
    add(
        "node_memory_SwapFree_bytes",
        &[],
        round_to(swap * 0.95, page),
        gauge(swap * 0.8, swap, swap / 1000.0, page),
    );
    for (device, scale) in [("eth0", 1.0), ("lo", 0.1)] {
        for direction in ["receive", "transmit"] {
            let bytes = 5e6 * scale;
            add(
                &format!("node_network_{direction}_bytes_total"),
                &[("device", device)],
                (uptime_s * bytes / 15.0).round(),
                counter(bytes * 0.2, bytes * 1.8, 1.0),
            );
            let packets = bytes / 800.0;
            add(
                &format!("node_network_{direction}_packets_total"),
                &[("device", device)],
                (uptime_s * packets / 15.0).round(),
                counter(packets * 0.2, packets * 1.8, 1.0),
            );
            for what in ["errs", "drop"] {
                add(
                    &format!("node_network_{direction}_{what}_total"),
                    &[("device", device)],
                    0.0,
                    counter(0.0, 0.52, 1.0),
                );
            }
        }
    }
    let mounts = [
        ("/", "/dev/sda1", "ext4", 50.0),
        ("/boot", "/dev/sda2", "vfat", 0.5),
        ("/var", "/dev/sdb1", "xfs", 200.0),
        ("/home", "/dev/sdb2", "ext4", 500.0),
    ];
    for (mountpoint, device, fstype, size_gib) in mounts {
        let extra = [
            ("device", device),
            ("fstype", fstype),
            ("mountpoint", mountpoint),
        ];
        let size = size_gib * GIB;
        let free = round_to(size * rng.between(0.2, 0.9), page);
        add("node_filesystem_size_bytes", &extra, size, Model::Constant);
        add(
            "node_filesystem_free_bytes",
            &extra,
            free,
            gauge(0.0, size, size / 20_000.0, page),
        );
        add(
            "node_filesystem_avail_bytes",
            &extra,
            round_to(free - size * 0.05, page),
            gauge(0.0, size, size / 20_000.0, page),
        );
        let files = (size / 16384.0).round();
        add("node_filesystem_files", &extra, files, Model::Constant);
        add(
            "node_filesystem_files_free",
            &extra,
            (files * 0.9).round(),
            gauge(files * 0.5, files, 50.0, 1.0),
        );
    }
    for device in ["sda", "sdb"] {
        let extra = [("device", device)];
        let disk_counters: [(&str, f64, f64); 5] = [
            ("node_disk_read_bytes_total", 0.0, 2e7),
            ("node_disk_written_bytes_total", 1e5, 5e7),
            ("node_disk_reads_completed_total", 0.0, 500.0),
            ("node_disk_writes_completed_total", 10.0, 2000.0),
            ("node_disk_io_time_seconds_total", 0.0, 3.0),
        ];
        for (name, low, high) in disk_counters {
            let quantum = if name.ends_with("seconds_total") {
                0.001
            } else if name.ends_with("bytes_total") {
                512.0
            } else {
                1.0
            };
            let start = round_to(uptime_s * (low + high) / 30.0, quantum);
            add(name, &extra, start, counter(low, high, quantum));
        }
    }
    for name in ["node_load1", "node_load5", "node_load15"] {
        let load = round_to(rng.between(0.1, 3.0), 0.01);
        add(name, &[], load, gauge(0.0, 16.0, 0.3, 0.01));
    }
    let now_s = crate::metrics::now_ms() as f64 / 1000.0;
    let kernel: [(&str, f64, f64); 3] = [
        ("node_context_switches_total", 2e4, 2e5),
        ("node_intr_total", 1e4, 1e5),
        ("node_forks_total", 10.0, 500.0),
    ];
    for (name, low, high) in kernel {
        let start = (uptime_s * (low + high) / 30.0).round();
        add(name, &[], start, counter(low, high, 1.0));
    }
    add("node_procs_running", &[], 2.0, gauge(1.0, 12.0, 2.0, 1.0));
    add("node_procs_blocked", &[], 0.0, gauge(0.0, 3.0, 1.0, 1.0));
    add(
        "node_boot_time_seconds",
        &[],
        (now_s - uptime_s).round(),
        Model::Constant,
    );
    add("node_time_seconds", &[], now_s, Model::Clock);
    out
}

/// What to send: how many hosts, scrapes and connections, and how large a request.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub hosts: usize,
    pub rounds: usize,
    pub connections: usize,
    pub batch_samples: usize,
    /// Timestamp of the first scrape (ms since the epoch).
    pub start_ms: i64,
}

impl Shape {
    pub fn series(&self) -> usize {
        self.hosts * SERIES_PER_HOST
    }

    pub fn samples(&self) -> u64 {
        (self.series() * self.rounds) as u64
    }

    /// Timestamp of round `round` of host `host`: hosts are spread over
    /// the interval (as Prometheus spreads its targets' scrapes) and a
    /// scrape is now and then a few ms late (Prometheus aligns timestamps
    /// within 2 ms; a busy scrape misses that).
    pub fn timestamp_ms(&self, host: usize, round: usize) -> i64 {
        let offset = (host as i64 * 7919) % SCRAPE_INTERVAL_MS;
        let mut rng = Rng::new(((host as u64) << 32) ^ round as u64);
        let jitter = if rng.next_u64().is_multiple_of(10) {
            1 + (rng.next_u64() % 5) as i64
        } else {
            0
        };
        self.start_ms + round as i64 * SCRAPE_INTERVAL_MS + offset + jitter
    }

    /// Newest timestamp of the data set.
    pub fn end_ms(&self) -> i64 {
        self.start_ms + self.rounds as i64 * SCRAPE_INTERVAL_MS
    }
}

/// One encoded remote-write request.
#[derive(Debug, Clone)]
pub struct Body {
    pub bytes: Bytes,
    pub samples: u32,
    /// The scrape round of its first sample (connections keep within a few
    /// rounds of each other, as they do when scrapes come in real time).
    pub round: u32,
}

/// Every connection's requests, in the order it sends them.
#[derive(Debug)]
pub struct Dataset {
    pub shape: Shape,
    pub connections: Vec<Vec<Body>>,
    pub body_bytes: u64,
}

/// Builds and encodes the whole data set, one thread per connection group
/// (every series' state is its own, so connections are independent).
pub fn build(shape: Shape, threads: usize) -> Dataset {
    assert!(shape.connections > 0 && shape.batch_samples > 0);
    let mut host_rng = Rng::new(0x6e69_6768_746c_6967);
    let defs: Vec<(usize, SeriesDef)> = (0..shape.hosts)
        .flat_map(|host| {
            let defs = host_series(host, &mut host_rng);
            assert_eq!(defs.len(), SERIES_PER_HOST);
            defs.into_iter().map(move |d| (host, d))
        })
        .collect();
    let threads = threads.clamp(1, shape.connections);
    let mut connections: Vec<Vec<Body>> = vec![Vec::new(); shape.connections];
    std::thread::scope(|scope| {
        let defs = &defs;
        let handles: Vec<_> = (0..threads)
            .map(|thread| {
                scope.spawn(move || {
                    (thread..shape.connections)
                        .step_by(threads)
                        .map(|c| (c, encode_connection(shape, defs, c)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for handle in handles {
            for (c, bodies) in handle.join().expect("an encoder thread panicked") {
                connections[c] = bodies;
            }
        }
    });
    let body_bytes = connections
        .iter()
        .flatten()
        .map(|b| b.bytes.len() as u64)
        .sum();
    Dataset {
        shape,
        connections,
        body_bytes,
    }
}

/// The requests of connection `connection`: its series (every
/// `connections`-th), scrape after scrape, cut every `batch_samples`.
fn encode_connection(shape: Shape, defs: &[(usize, SeriesDef)], connection: usize) -> Vec<Body> {
    let mine: Vec<&(usize, SeriesDef)> = defs
        .iter()
        .skip(connection)
        .step_by(shape.connections)
        .collect();
    let mut values: Vec<f64> = mine.iter().map(|(_, d)| d.start).collect();
    let mut rngs: Vec<Rng> = (0..mine.len())
        .map(|i| Rng::new((connection + i * shape.connections) as u64))
        .collect();
    let mut bodies = Vec::new();
    let mut pending: Vec<SeriesSamples> = Vec::with_capacity(shape.batch_samples);
    let mut pending_round = 0;
    for round in 0..shape.rounds {
        for (i, (host, def)) in mine.iter().enumerate() {
            let t = shape.timestamp_ms(*host, round);
            if round > 0 {
                values[i] = def.model.step(values[i], t, &mut rngs[i]);
            } else if def.model == Model::Clock {
                values[i] = t as f64 / 1000.0;
            }
            if pending.is_empty() {
                pending_round = round;
            }
            pending.push(SeriesSamples {
                labels: def.labels.clone(),
                samples: vec![Sample { t, v: values[i] }],
            });
            if pending.len() == shape.batch_samples {
                bodies.push(encode(&mut pending, pending_round));
            }
        }
    }
    if !pending.is_empty() {
        bodies.push(encode(&mut pending, pending_round));
    }
    bodies
}

fn encode(pending: &mut Vec<SeriesSamples>, round: usize) -> Body {
    let body = Body {
        bytes: Bytes::from(encode_remote_write_v1(pending)),
        samples: pending.len() as u32,
        round: round as u32,
    };
    pending.clear();
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_host_has_its_hundred_distinct_series() {
        let mut rng = Rng::new(1);
        let defs = host_series(7, &mut rng);
        assert_eq!(defs.len(), SERIES_PER_HOST);
        let distinct: std::collections::HashSet<String> =
            defs.iter().map(|d| format!("{:?}", d.labels)).collect();
        assert_eq!(distinct.len(), SERIES_PER_HOST);
    }

    #[test]
    fn counters_never_decrease_and_gauges_stay_in_bounds() {
        let mut rng = Rng::new(3);
        for def in host_series(0, &mut rng) {
            let mut value = def.start;
            for round in 1..200 {
                let next = def.model.step(value, round * SCRAPE_INTERVAL_MS, &mut rng);
                match def.model {
                    Model::Counter { .. } => assert!(next >= value, "{:?}", def.labels),
                    Model::Gauge { min, max, .. } => {
                        assert!(next >= min - 4096.0 && next <= max + 4096.0)
                    }
                    Model::Constant => assert_eq!(next, value),
                    Model::Clock => {}
                }
                value = next;
            }
        }
    }

    #[test]
    fn the_data_set_has_every_sample_once_and_in_order_per_connection() {
        let shape = Shape {
            hosts: 3,
            rounds: 5,
            connections: 4,
            batch_samples: 64,
            start_ms: 1_000_000,
        };
        let data = build(shape, 2);
        let mut seen = std::collections::HashMap::new();
        for bodies in &data.connections {
            let mut last_round = 0;
            for body in bodies {
                assert!(body.round >= last_round);
                last_round = body.round;
                let batch = photon_metrics_wire::decode_remote_write(
                    photon_metrics_wire::RemoteWriteVersion::V1,
                    &body.bytes,
                    &photon_metrics_wire::Limits::default(),
                )
                .unwrap();
                assert_eq!(batch.series.len(), body.samples as usize);
                for s in batch.series {
                    let key = format!("{:?}", s.labels);
                    let t = s.samples[0].t;
                    let previous = seen.insert(key.clone(), t);
                    assert!(previous.is_none_or(|p| p < t), "{key}");
                }
            }
        }
        assert_eq!(seen.len(), shape.series());
        let total: u64 = data
            .connections
            .iter()
            .flatten()
            .map(|b| u64::from(b.samples))
            .sum();
        assert_eq!(total, shape.samples());
    }
}

//! The NBD service's metrics on one shard (`/metrics` merges the shards).

use photon_core::metrics::{Counter, Gauge, LatencyHistogram, ShardMetrics};

pub struct NbdMetrics {
    pub connections: Gauge,
    pub handshakes_refused: Counter,
    pub handoffs: Counter,
    pub reads: Counter,
    pub writes: Counter,
    pub flushes: Counter,
    pub zeroes: Counter,
    pub errors: Counter,
    pub read_bytes: Counter,
    pub write_bytes: Counter,
    pub read_latency: LatencyHistogram,
    pub write_latency: LatencyHistogram,
    pub flush_latency: LatencyHistogram,
    pub store_syncs: Counter,
    pub store_records: Counter,
    pub store_cow_copies: Counter,
    pub store_slots_used: Gauge,
}

impl NbdMetrics {
    pub fn new(m: &ShardMetrics) -> Self {
        let op = |name: &'static str| [("op", name)];
        Self {
            connections: m.gauge(
                "photon_nbd_connections",
                "NBD connections in the transmission phase",
                &[],
            ),
            handshakes_refused: m.counter(
                "photon_nbd_handshakes_refused_total",
                "NBD handshakes refused (bad or expired attach token, protocol errors)",
                &[],
            ),
            handoffs: m.counter(
                "photon_nbd_handoffs_total",
                "NBD connections moved to their volume's owner shard after the handshake",
                &[],
            ),
            reads: m.counter(
                "photon_nbd_requests_total",
                "NBD requests served",
                &op("read"),
            ),
            writes: m.counter(
                "photon_nbd_requests_total",
                "NBD requests served",
                &op("write"),
            ),
            flushes: m.counter(
                "photon_nbd_requests_total",
                "NBD requests served",
                &op("flush"),
            ),
            zeroes: m.counter(
                "photon_nbd_requests_total",
                "NBD requests served",
                &op("zero"),
            ),
            errors: m.counter(
                "photon_nbd_errors_total",
                "NBD requests answered with an error",
                &[],
            ),
            read_bytes: m.counter(
                "photon_nbd_bytes_total",
                "NBD payload bytes",
                &[("dir", "read")],
            ),
            write_bytes: m.counter(
                "photon_nbd_bytes_total",
                "NBD payload bytes",
                &[("dir", "write")],
            ),
            read_latency: m.histogram(
                "photon_nbd_request_seconds",
                "NBD request latency",
                &op("read"),
            ),
            write_latency: m.histogram(
                "photon_nbd_request_seconds",
                "NBD request latency",
                &op("write"),
            ),
            flush_latency: m.histogram(
                "photon_nbd_request_seconds",
                "NBD request latency",
                &op("flush"),
            ),
            store_syncs: m.counter(
                "photon_volume_store_syncs_total",
                "sync rounds of the volume store (flushes share them)",
                &[],
            ),
            store_records: m.counter(
                "photon_volume_store_records_written_total",
                "metadata journal records written",
                &[],
            ),
            store_cow_copies: m.counter(
                "photon_volume_store_cow_copies_total",
                "extents copied on write after a snapshot or clone",
                &[],
            ),
            store_slots_used: m.gauge(
                "photon_volume_store_slots_used",
                "256 KiB data slots in use",
                &[],
            ),
        }
    }
}

//! `photon bench lb`: what FiberLB's XDP path costs per packet, beside the
//! floor measured in the same run: `fiberlb_floor`, a program that only
//! swaps the MACs and sends the frame back (XDP_TX).
//!
//! Part 1 (`BPF_PROG_TEST_RUN`, see [`testrun`]): one data plane with one
//! IPv4 TCP VIP and three backends. Every case is one test-run call of
//! `--repeat` runs per round, the cases take turns for `--rounds` rounds
//! (after one warm-up round), and each round's kernel-reported ns/packet
//! goes into a histogram. Paths that rewrite the packet (the VIP paths)
//! run under `fiberlb_bench`, which restores the packet and tail-calls the
//! program under test; the same wrapper tail-calling `fiberlb_pass` is
//! measured too and subtracted. Every run's verdict and counters are
//! checked, and once per case the output bytes; any mismatch aborts.
//! New flows: the wrapper writes a new 16-bit source port each run, so a
//! round is at most 65,536 runs and uses a new client address; every run
//! is a new 5-tuple (checked: the VIP's `new_flows` moves by the run
//! count). The flow table (65,536 entries) is full after the warm-up
//! round, so every insert also evicts: a busy balancer's steady state.
//!
//! Part 2 (live frames, see [`live`]): two network namespaces joined by a
//! veth pair; `fiberlb_gen` (a `BPF_F_TEST_XDP_LIVE_FRAMES` test run in the
//! generator's namespace) sends frames into the veth, the far end runs the
//! load balancer (or the floor) in native mode and sends them back. Cases:
//! floor, one existing flow, 65,536 flows (a new port per frame: the
//! ports cycle, so these are mostly flow-table hits over a table that does
//! not fit in cache) and new flows (also a new client address per call of
//! at most 65,536 frames: every frame a new 5-tuple). The rate is what the
//! balancing side's counters saw per second while the generator ran.

mod live;
mod testrun;

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{ensure, Context};
use clap::Args;
use fiberlb::dataplane::{BackendSpec, Dataplane, NodeSpec, Proto, ServiceSpec, VipAddr};
use fiberlb_common::BENCH_BYTES;
use hdrhistogram::Histogram;
use serde_json::json;

use crate::report::Table;

/// Most test-run rounds of one case.
pub const ROUNDS_MAX: usize = 1_000;
/// Most repeats of one test-run call (~1 s of the slowest case).
pub const REPEAT_MAX: u32 = 10_000_000;
/// Longest live measurement of one case.
pub const LIVE_SECONDS_MAX: f64 = 60.0;
/// Most turns the live cases take.
pub const LIVE_ROUNDS_MAX: usize = 20;
/// Most frames of one live-frames call.
pub const LIVE_CHUNK_MAX: u32 = 4 << 20;
/// The goal: the VIP path costs at most this many times the floor.
pub const GOAL_VERSUS_FLOOR: f64 = 2.0;

/// The VIP every VIP case sends to.
const VIP_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
const VIP_PORT: u16 = 80;
/// A destination no VIP uses (the non-VIP case).
const OTHER_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 5);
/// The client of the existing-flow case.
const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);
const CLIENT_PORT: u16 = 40_000;
/// The load balancer's outer source address.
const LB_V4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
/// The backends. Their last two octets are 0x08 0x00 on purpose: the
/// live-frames generator (`fiberlb_gen`) does not restore its frame, and
/// the kernel recycles the generator's pages with whatever the balancer
/// wrote in them. Encapsulation moves the head 20 bytes back, so the
/// original Ethernet header ends up holding the outer IPv4 header's last
/// 14 bytes, its EtherType the backend's last two octets. With these
/// addresses a recycled frame is still an IPv4 frame to the VIP (only the
/// MACs differ, which the balancer does not read); with others the live
/// VIP cases measure `pass_not_ip` after the first few hundred frames.
const BACKENDS_V4: [Ipv4Addr; 3] = [
    Ipv4Addr::new(10, 1, 8, 0),
    Ipv4Addr::new(10, 2, 8, 0),
    Ipv4Addr::new(10, 3, 8, 0),
];

#[derive(Debug, Clone, Args)]
pub struct LbArgs {
    /// Measured rounds of every BPF_PROG_TEST_RUN case (after one warm-up
    /// round); the cases take turns round by round.
    #[arg(long, default_value_t = 30)]
    pub rounds: usize,
    /// Runs per round (the test run's repeat count). The new-flow case uses
    /// at most 65,536: its source port is 16 bits.
    #[arg(long, default_value_t = 200_000)]
    pub repeat: u32,
    /// Seconds of live frames per live case (floor, existing flow, 65,536
    /// flows, new flows), split over --live-rounds turns; 0 skips the live
    /// part.
    #[arg(long, default_value_t = 3.0)]
    pub live_seconds: f64,
    /// Turns the live cases take (each turn runs every case once).
    #[arg(long, default_value_t = 3)]
    pub live_rounds: usize,
    /// Frames per live-frames call (the new-flows case: at most 65,536).
    /// Each call has a fixed cost of tens of ms, left out of the rate.
    #[arg(long, default_value_t = 1_048_576)]
    pub live_chunk: u32,
    /// Pin the measuring thread to this CPU (default: the CPU it starts
    /// on; the flow table is per CPU, so the thread must not move).
    #[arg(long)]
    pub pin_cpu: Option<usize>,
    /// Print one JSON object instead of the table; with a path, print the
    /// table and write the JSON object to that file.
    #[arg(long, num_args = 0..=1, value_name = "PATH")]
    pub json: Option<Option<PathBuf>>,
}

pub fn run(args: LbArgs) -> anyhow::Result<()> {
    check_args(&args)?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A caught signal makes the running test run return EINTR, so the
        // namespaces are still deleted on the way out.
        signal_hook::flag::register(signal, stop.clone())
            .context("cannot install a signal handler")?;
    }
    let cpu = match args.pin_cpu {
        Some(cpu) => cpu,
        // SAFETY: no arguments; returns the CPU or -1.
        None => usize::try_from(unsafe { libc::sched_getcpu() }).context("sched_getcpu failed")?,
    };
    crate::pin_current_thread(cpu)?;
    let mut dp = Dataplane::load().context(
        "cannot load FiberLB's XDP programs (needs root and the objects of scripts/build-ebpf.sh)",
    )?;
    dp.apply(&node(testrun::NEXT_HOP_MAC), &services())
        .context("cannot program the test VIP")?;
    let cases = testrun::measure(&mut dp, &args, &stop)?;
    let summary = Summary::of(&cases);
    let live = if args.live_seconds > 0.0 {
        Some(live::measure(&mut dp, &args, &stop)?)
    } else {
        None
    };
    let doc = to_json(&args, cpu, &cases, &summary, live.as_ref());
    match &args.json {
        Some(None) => println!("{}", serde_json::to_string_pretty(&doc)?),
        Some(Some(path)) => {
            print_report(&args, cpu, &cases, &summary, live.as_ref());
            std::fs::write(path, serde_json::to_vec_pretty(&doc)?)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        None => print_report(&args, cpu, &cases, &summary, live.as_ref()),
    }
    Ok(())
}

fn check_args(args: &LbArgs) -> anyhow::Result<()> {
    ensure!(
        (1..=ROUNDS_MAX).contains(&args.rounds),
        "--rounds must be 1 to {ROUNDS_MAX}"
    );
    ensure!(
        (1..=REPEAT_MAX).contains(&args.repeat),
        "--repeat must be 1 to {REPEAT_MAX}"
    );
    ensure!(
        (0.0..=LIVE_SECONDS_MAX).contains(&args.live_seconds),
        "--live-seconds must be 0 to {LIVE_SECONDS_MAX}"
    );
    ensure!(
        (1..=LIVE_ROUNDS_MAX).contains(&args.live_rounds),
        "--live-rounds must be 1 to {LIVE_ROUNDS_MAX}"
    );
    ensure!(
        (1..=LIVE_CHUNK_MAX).contains(&args.live_chunk),
        "--live-chunk must be 1 to {LIVE_CHUNK_MAX}"
    );
    Ok(())
}

/// The load balancer's side of the tunnels: static next hop, no FIB.
fn node(next_hop: [u8; 6]) -> NodeSpec {
    NodeSpec {
        src_v4: Some(LB_V4),
        src_v6: None,
        mtu: 1500,
        fib: false,
        neigh_mac: Some(next_hop),
    }
}

fn vip() -> VipAddr {
    VipAddr {
        addr: IpAddr::V4(VIP_V4),
        port: VIP_PORT,
        proto: Proto::Tcp,
    }
}

fn services() -> Vec<ServiceSpec> {
    vec![ServiceSpec {
        vip: vip(),
        backends: BACKENDS_V4
            .iter()
            .map(|a| BackendSpec {
                addr: IpAddr::V4(*a),
                weight: 100,
                healthy: true,
            })
            .collect(),
    }]
}

/// A TCP SYN of exactly [`BENCH_BYTES`] (10 payload bytes), every length
/// and checksum right, so the wrapper can restore it byte for byte.
fn tcp_syn(
    macs: ([u8; 6], [u8; 6]),
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
) -> [u8; BENCH_BYTES] {
    const PAYLOAD: &[u8; 10] = b"photon-lb!";
    let mut f = [0u8; BENCH_BYTES];
    f[0..6].copy_from_slice(&macs.1);
    f[6..12].copy_from_slice(&macs.0);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip_len = (BENCH_BYTES - 14) as u16;
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[6] = 0x40; // DF
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&src.0.octets());
    ip[16..20].copy_from_slice(&dst.0.octets());
    let sum = !ones_sum(ip, 0);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    let tcp = &mut f[34..54];
    tcp[0..2].copy_from_slice(&src.1.to_be_bytes());
    tcp[2..4].copy_from_slice(&dst.1.to_be_bytes());
    tcp[4..8].copy_from_slice(&1000u32.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = 0x02; // SYN
    tcp[14..16].copy_from_slice(&65535u16.to_be_bytes());
    f[54..].copy_from_slice(PAYLOAD);
    // Pseudo header: addresses, protocol, TCP length.
    let mut pseudo = [0u8; 12];
    pseudo[0..4].copy_from_slice(&src.0.octets());
    pseudo[4..8].copy_from_slice(&dst.0.octets());
    pseudo[9] = 6;
    pseudo[10..12].copy_from_slice(&(ip_len - 20).to_be_bytes());
    let sum = !ones_sum(&f[34..], u32::from(ones_sum(&pseudo, 0)));
    f[50..52].copy_from_slice(&sum.to_be_bytes());
    f
}

/// One's-complement sum of `bytes` folded to 16 bits (0xffff over data
/// that carries its correct checksum).
fn ones_sum(bytes: &[u8], mut sum: u32) -> u16 {
    for pair in bytes.chunks(2) {
        let hi = u32::from(pair[0]);
        let lo = u32::from(*pair.get(1).unwrap_or(&0));
        sum += (hi << 8) | lo;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Histogram of ns/packet in hundredths of a nanosecond (the kernel
/// reports whole ns; the unit leaves room for finer sources).
fn ns_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 10_000_000_000, 3).expect("constant bounds are valid")
}

/// Percentiles of an [`ns_histogram`], in ns.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct NsStats {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl NsStats {
    fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ns = |v: u64| h.lowest_equivalent(v) as f64 / 100.0;
        Self {
            count: h.len(),
            mean: h.mean() / 100.0,
            p50: ns(h.value_at_quantile(0.5)),
            p90: ns(h.value_at_quantile(0.9)),
            p99: ns(h.value_at_quantile(0.99)),
            max: ns(h.max()),
        }
    }

    fn to_json(self) -> serde_json::Value {
        json!({"rounds": self.count, "mean": self.mean, "p50": self.p50, "p90": self.p90,
               "p99": self.p99, "max": self.max})
    }
}

/// The test-run part's derived figures (all from p50s).
#[derive(Debug, Clone, Copy)]
struct Summary {
    floor: f64,
    pass: f64,
    wrapper: f64,
    existing: f64,
    new_flow: f64,
}

impl Summary {
    fn of(cases: &[testrun::CaseResult]) -> Self {
        let p50 = |c: testrun::Case| {
            cases
                .iter()
                .find(|r| r.case == c)
                .map(|r| NsStats::of(&r.kernel).p50)
                .unwrap_or(f64::NAN)
        };
        Self {
            floor: p50(testrun::Case::Floor),
            pass: p50(testrun::Case::Pass),
            wrapper: p50(testrun::Case::Wrapper),
            existing: p50(testrun::Case::Existing),
            new_flow: p50(testrun::Case::NewFlow),
        }
    }

    /// Wrapped case minus the wrapper (restore + tail call + fiberlb_pass).
    fn net(&self, wrapped: f64) -> f64 {
        wrapped - self.wrapper
    }

    /// Wrapped case minus restore + tail call only: what the program would
    /// cost run directly, the test-run loop included like the floor's.
    fn direct(&self, wrapped: f64) -> f64 {
        wrapped - (self.wrapper - self.pass)
    }

    fn rows(&self) -> [(&'static str, f64); 2] {
        [
            ("existing flow", self.existing),
            ("new flow", self.new_flow),
        ]
    }
}

fn print_report(
    args: &LbArgs,
    cpu: usize,
    cases: &[testrun::CaseResult],
    summary: &Summary,
    live: Option<&live::LiveReport>,
) {
    println!(
        "== FiberLB XDP, BPF_PROG_TEST_RUN: {} rounds x {} repeats per case (new flow: {}), CPU {cpu} ==",
        args.rounds,
        args.repeat,
        testrun::new_flow_repeats(args.repeat)
    );
    let mut table = Table::new(&["case", "mean ns", "p50 ns", "p90 ns", "p99 ns", "max ns"]);
    for r in cases {
        let k = NsStats::of(&r.kernel);
        table.row(vec![
            r.case.describe().to_string(),
            format!("{:.2}", k.mean),
            format!("{:.2}", k.p50),
            format!("{:.2}", k.p90),
            format!("{:.2}", k.p99),
            format!("{:.2}", k.max),
        ]);
    }
    print!("{table}");
    println!(
        "ns/packet of each round as the kernel reports it (its loop time / repeats, whole ns), \
         percentiles over rounds."
    );
    let s = summary;
    let mut ratios = Table::new(&[
        "VIP path (p50)",
        "wrapped ns",
        "net ns",
        "net/floor",
        "direct ns",
        "direct/floor",
        "wrapped/floor",
    ]);
    for (name, wrapped) in s.rows() {
        ratios.row(vec![
            name.to_string(),
            format!("{wrapped:.2}"),
            format!("{:.2}", s.net(wrapped)),
            format!("{:.2}", s.net(wrapped) / s.floor),
            format!("{:.2}", s.direct(wrapped)),
            format!("{:.2}", s.direct(wrapped) / s.floor),
            format!("{:.2}", wrapped / s.floor),
        ]);
    }
    print!("{ratios}");
    println!(
        "floor {:.2} ns, fiberlb_pass {:.2} ns, wrapper {:.2} ns (restore + tail call = {:.2} ns). \
         net = wrapped - wrapper; direct = wrapped - (wrapper - pass), i.e. the VIP program with \
         the test-run loop's own per-packet cost, like the floor. Goal: VIP path <= {GOAL_VERSUS_FLOOR}x \
         the floor: net {}, direct {}.",
        s.floor,
        s.pass,
        s.wrapper,
        s.wrapper - s.pass,
        verdict(s.rows().iter().all(|(_, w)| s.net(*w) / s.floor <= GOAL_VERSUS_FLOOR)),
        verdict(s.rows().iter().all(|(_, w)| s.direct(*w) / s.floor <= GOAL_VERSUS_FLOOR)),
    );
    if let Some(live) = live {
        live::print_report(live);
    }
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "NOT met"
    }
}

fn to_json(
    args: &LbArgs,
    cpu: usize,
    cases: &[testrun::CaseResult],
    summary: &Summary,
    live: Option<&live::LiveReport>,
) -> serde_json::Value {
    let rows: Vec<serde_json::Value> = cases
        .iter()
        .map(|r| {
            json!({
                "case": r.case.key(),
                "name": r.case.describe(),
                "program": r.case.program(),
                "repeats_per_round": r.repeats,
                "kernel_ns": NsStats::of(&r.kernel).to_json(),
            })
        })
        .collect();
    let s = summary;
    let vip_paths: Vec<serde_json::Value> = s
        .rows()
        .iter()
        .map(|(name, wrapped)| {
            json!({
                "path": name,
                "wrapped_p50_ns": wrapped,
                "net_p50_ns": s.net(*wrapped),
                "direct_p50_ns": s.direct(*wrapped),
                "net_over_floor": s.net(*wrapped) / s.floor,
                "direct_over_floor": s.direct(*wrapped) / s.floor,
                "wrapped_over_floor": wrapped / s.floor,
            })
        })
        .collect();
    json!({
        "bench": "lb",
        "settings": {
            "rounds": args.rounds,
            "repeat": args.repeat,
            "new_flow_repeat": testrun::new_flow_repeats(args.repeat),
            "live_seconds": args.live_seconds,
            "live_rounds": args.live_rounds,
            "live_chunk": args.live_chunk,
            "cpu": cpu,
        },
        "test_run": rows,
        "floor_p50_ns": s.floor,
        "pass_p50_ns": s.pass,
        "wrapper_p50_ns": s.wrapper,
        "vip_paths": vip_paths,
        "goal_versus_floor": GOAL_VERSUS_FLOOR,
        "live": live.map(live::to_json),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crafted_syn_has_right_lengths_and_checksums() {
        let f = tcp_syn(
            ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]),
            (CLIENT_V4, 1234),
            (VIP_V4, 80),
        );
        assert_eq!(
            u16::from_be_bytes([f[16], f[17]]) as usize,
            BENCH_BYTES - 14
        );
        assert_eq!(ones_sum(&f[14..34], 0), 0xffff, "IPv4 header checksum");
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&f[26..34]);
        pseudo.extend_from_slice(&[0, 6, 0, (BENCH_BYTES - 34) as u8]);
        let sum = ones_sum(&f[34..], u32::from(ones_sum(&pseudo, 0)));
        assert_eq!(sum, 0xffff, "TCP checksum");
        assert_eq!(u16::from_be_bytes([f[34], f[35]]), 1234);
    }

    #[test]
    fn arguments_out_of_range_are_refused() {
        let args = LbArgs {
            rounds: 30,
            repeat: 200_000,
            live_seconds: 3.0,
            live_rounds: 3,
            live_chunk: 1_048_576,
            pin_cpu: None,
            json: None,
        };
        assert!(check_args(&args).is_ok());
        assert!(check_args(&LbArgs {
            rounds: 0,
            ..args.clone()
        })
        .is_err());
        assert!(check_args(&LbArgs {
            repeat: REPEAT_MAX + 1,
            ..args.clone()
        })
        .is_err());
        assert!(check_args(&LbArgs {
            live_seconds: -1.0,
            ..args
        })
        .is_err());
    }
}

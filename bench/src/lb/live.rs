//! The live part: packets/s through a veth pair between two namespaces the
//! benchmark creates (`flbench-gen`, `flbench-lb`) and always deletes.
//!
//! `fiberlb_gen` runs as a `BPF_F_TEST_XDP_LIVE_FRAMES` test run from this
//! thread while it is in the generator's namespace: every frame is
//! redirected to the generator's veth, i.e. sent to its peer, where the
//! balancing side's program runs in native mode (`fiberlb_lb`, or
//! `fiberlb_floor` for the floor) and sends it back with XDP_TX. The
//! generator's veth carries `fiberlb_pass` so those frames are received
//! (native XDP_TX on veth needs an XDP program on the peer), and its stack
//! drops them (the neighbour MAC is the generator's, so floor and VIP
//! frames come back the same way).
//!
//! The rate is the balancing veth's `rx_packets` (frames its XDP program
//! got) per second of wall time, read from `/proc/thread-self/net/dev`
//! inside its namespace; for the VIP cases the VIP's own packet counter
//! must agree with it.

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use aya::maps::Array;
use aya::programs::{TestRun, TestRunAttrs, TestRunOptions, Xdp};
use fiberlb::dataplane::{Dataplane, XdpMode};
use hdrhistogram::Histogram;
use serde_json::json;

use super::{LbArgs, CLIENT_PORT, CLIENT_V4, VIP_PORT, VIP_V4};
use crate::report::Table;

pub const NS_GEN: &str = "flbench-gen";
pub const NS_LB: &str = "flbench-lb";
const IF_GEN: &str = "flbench-g";
const IF_LB: &str = "flbench-l";
const MAC_GEN: [u8; 6] = [0x02, 0xfb, 0, 0, 0, 0x01];
const MAC_LB: [u8; 6] = [0x02, 0xfb, 0, 0, 0, 0x02];
const ADDR_GEN: &str = "10.250.0.1/24";
const ADDR_LB: &str = "10.250.0.2/24";
/// First client address of the live new-flows case; every live-frames
/// call uses the next one (the test-run part uses 100.64.0.0 onwards).
const NEW_FLOW_CLIENTS: Ipv4Addr = Ipv4Addr::new(100, 96, 0, 0);
/// Frames the kernel runs the generator on per batch.
const LIVE_BATCH: u32 = 64;
/// Frames sent before every measured turn (not counted).
const WARM_UP_FRAMES: u32 = 32_768;
/// The VIP's packet counter may differ from the device's by this fraction
/// (frames still in flight when a counter is read; the stack's own
/// packets, e.g. IPv6 router solicitations, on the device counter).
const COUNTER_SLACK: f64 = 0.01;
/// Highest packets/s a histogram holds.
const PPS_MAX: u64 = 1_000_000_000;
/// How often the sampler reads the balancing veth's counter.
const SAMPLE_INTERVAL: Duration = Duration::from_millis(10);
/// Most samples of one turn (bounds the sampler's memory).
const SAMPLES_MAX: usize = 100_000;
/// Calls of [`LIVE_BATCH`] frames timed to find the fixed cost of a call.
const FIXED_COST_CALLS: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveCase {
    Floor,
    Existing,
    ManyFlows,
    NewFlows,
}

impl LiveCase {
    const ALL: [LiveCase; 4] = [
        LiveCase::Floor,
        LiveCase::Existing,
        LiveCase::ManyFlows,
        LiveCase::NewFlows,
    ];

    fn key(self) -> &'static str {
        match self {
            LiveCase::Floor => "floor",
            LiveCase::Existing => "existing_flow",
            LiveCase::ManyFlows => "flows_65536",
            LiveCase::NewFlows => "new_flows",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            LiveCase::Floor => "floor: fiberlb_floor",
            LiveCase::Existing => "existing flow: fiberlb_lb, 1 flow",
            LiveCase::ManyFlows => "65,536 flows: fiberlb_lb, port per frame",
            LiveCase::NewFlows => "new flows: fiberlb_lb, new 5-tuple per frame",
        }
    }

    fn program(self) -> &'static str {
        match self {
            LiveCase::Floor => "fiberlb_floor",
            _ => "fiberlb_lb",
        }
    }

    fn vary_port(self) -> bool {
        matches!(self, LiveCase::ManyFlows | LiveCase::NewFlows)
    }

    /// Frames per call: the new-flows case changes the client address per
    /// call, so one call may not wrap the 16-bit port.
    fn chunk(self, chunk: u32) -> u32 {
        match self {
            LiveCase::NewFlows => chunk.min(super::testrun::FLOW_PORTS),
            _ => chunk,
        }
    }
}

/// One live case over all its turns.
pub struct LiveResult {
    case: LiveCase,
    /// Frames the generator made.
    generated: u64,
    /// Frames the balancing veth's XDP program got.
    received: u64,
    /// Frames back at the generator's veth (sent by XDP_TX).
    returned: u64,
    /// Frames the balancing veth dropped (its receive ring was full).
    dropped: u64,
    vip_packets: u64,
    new_flows: u64,
    /// The whole turns: every call's fixed cost included.
    elapsed: Duration,
    /// Frames and time of the sampled intervals inside calls.
    steady_frames: u64,
    steady_time: Duration,
    /// Packets/s per sampled interval.
    samples: Histogram<u64>,
}

impl LiveResult {
    /// Frames per second while the generator runs.
    fn pps(&self) -> f64 {
        self.steady_frames as f64 / self.steady_time.as_secs_f64()
    }

    /// Frames per second of the whole turns (calls' fixed cost included).
    fn wall_pps(&self) -> f64 {
        self.received as f64 / self.elapsed.as_secs_f64()
    }
}

pub struct LiveReport {
    cases: Vec<LiveResult>,
    seconds_per_case: f64,
    turns: usize,
    chunk: u32,
    /// Longest time of a call of [`LIVE_BATCH`] frames.
    call_fixed_cost: Duration,
}

impl LiveReport {
    fn pps(&self, case: LiveCase) -> f64 {
        self.cases
            .iter()
            .find(|r| r.case == case)
            .map(LiveResult::pps)
            .unwrap_or(f64::NAN)
    }
}

/// The two namespaces and the veth pair; deleted on drop (also what a
/// killed earlier run left).
struct Topology;

impl Topology {
    fn create() -> anyhow::Result<Self> {
        Self::remove();
        let topology = Topology;
        ip(&["netns", "add", NS_GEN])?;
        ip(&["netns", "add", NS_LB])?;
        let (mac_gen, mac_lb) = (mac(MAC_GEN), mac(MAC_LB));
        ip(&[
            "-n", NS_GEN, "link", "add", IF_GEN, "address", &mac_gen, "type", "veth", "peer",
            "name", IF_LB, "address", &mac_lb, "netns", NS_LB,
        ])?;
        for (ns, iface, addr) in [(NS_GEN, IF_GEN, ADDR_GEN), (NS_LB, IF_LB, ADDR_LB)] {
            ip(&["-n", ns, "addr", "add", addr, "dev", iface])?;
            ip(&["-n", ns, "link", "set", iface, "up"])?;
        }
        Ok(topology)
    }

    fn remove() {
        for ns in [NS_GEN, NS_LB] {
            if Path::new("/run/netns").join(ns).exists() {
                let _ = Command::new("ip").args(["netns", "del", ns]).status();
            }
        }
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        Self::remove();
    }
}

fn mac(m: [u8; 6]) -> String {
    m.map(|b| format!("{b:02x}")).join(":")
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("cannot run ip (iproute2)")?;
    ensure!(
        out.status.success(),
        "ip {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// This thread inside another network namespace until dropped (the
/// network namespace is per thread).
struct InNetns {
    home: File,
}

impl InNetns {
    fn enter(ns: &str) -> anyhow::Result<Self> {
        let home = File::open("/proc/thread-self/ns/net")
            .context("cannot open this thread's network namespace")?;
        let path = Path::new("/run/netns").join(ns);
        let target =
            File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
        // SAFETY: a valid namespace fd; affects only this thread.
        if unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("setns into {ns}"));
        }
        Ok(Self { home })
    }
}

impl Drop for InNetns {
    fn drop(&mut self) {
        // SAFETY: the fd of the namespace this thread came from.
        if unsafe { libc::setns(self.home.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            // Going on in the wrong namespace would attach programs and
            // read counters of the wrong devices.
            eprintln!(
                "cannot return to the original network namespace: {}",
                std::io::Error::last_os_error()
            );
            std::process::abort();
        }
    }
}

/// A device's counters as its namespace's /proc/net/dev shows them.
#[derive(Debug, Clone, Copy, Default)]
struct DevCounters {
    rx_packets: u64,
    rx_dropped: u64,
}

fn dev_counters(ns: &str, iface: &str) -> anyhow::Result<DevCounters> {
    let _in = InNetns::enter(ns)?;
    read_dev(iface)
}

/// `iface`'s counters in this thread's namespace.
fn read_dev(iface: &str) -> anyhow::Result<DevCounters> {
    let text = std::fs::read_to_string("/proc/thread-self/net/dev")
        .context("cannot read /proc/thread-self/net/dev")?;
    let line = text
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(&format!("{iface}:")))
        .with_context(|| format!("no {iface} in this namespace's /proc/net/dev"))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .with_context(|| format!("bad /proc/net/dev line for {iface}"))?;
    ensure!(fields.len() >= 16, "short /proc/net/dev line for {iface}");
    Ok(DevCounters {
        rx_packets: fields[1],
        rx_dropped: fields[3],
    })
}

/// Reads the balancing veth's `rx_packets` every [`SAMPLE_INTERVAL`] from
/// its own thread (inside the balancing namespace) while calls run.
struct Sampler {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<anyhow::Result<Vec<(Instant, u64)>>>,
}

impl Sampler {
    fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let _in = InNetns::enter(NS_LB)?;
            let mut samples = Vec::new();
            while !flag.load(Ordering::Relaxed) && samples.len() < SAMPLES_MAX {
                samples.push((Instant::now(), read_dev(IF_LB)?.rx_packets));
                std::thread::sleep(SAMPLE_INTERVAL);
            }
            Ok(samples)
        });
        Self { stop, handle }
    }

    fn finish(self) -> anyhow::Result<Vec<(Instant, u64)>> {
        self.stop.store(true, Ordering::Relaxed);
        match self.handle.join() {
            Ok(samples) => samples,
            Err(_) => bail!("the counter sampler panicked"),
        }
    }
}

fn xdp_mut<'a>(dp: &'a mut Dataplane, name: &str) -> anyhow::Result<&'a mut Xdp> {
    dp.ebpf_mut()
        .program_mut(name)
        .with_context(|| format!("no program {name}"))?
        .try_into()
        .with_context(|| format!("{name} is not an XDP program"))
}

/// Attaches `program` in native mode to `iface` of namespace `ns`.
fn attach(
    dp: &mut Dataplane,
    program: &str,
    ns: &str,
    iface: &str,
) -> anyhow::Result<aya::programs::xdp::XdpLinkId> {
    let _in = InNetns::enter(ns)?;
    xdp_mut(dp, program)?
        .attach(iface, XdpMode::Driver)
        .with_context(|| format!("cannot attach {program} to {iface} in {ns} (native mode)"))
}

fn ifindex(ns: &str, iface: &str) -> anyhow::Result<u32> {
    let _in = InNetns::enter(ns)?;
    let name = std::ffi::CString::new(iface)?;
    // SAFETY: a NUL-terminated name; returns 0 when there is none.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    ensure!(index != 0, "no interface {iface} in {ns}");
    Ok(index)
}

/// Makes `frames` live frames in the generator's namespace.
fn generate(dp: &Dataplane, frame: &[u8], frames: u32) -> anyhow::Result<()> {
    let _in = InNetns::enter(NS_GEN)?;
    dp.xdp("fiberlb_gen")?
        .test_run(TestRunOptions {
            data_in: Some(frame),
            repeat: frames,
            attrs: TestRunAttrs::new().xdp_live_frames(LIVE_BATCH),
            ..Default::default()
        })
        .context("live-frames run of fiberlb_gen (BPF_F_TEST_XDP_LIVE_FRAMES)")?;
    Ok(())
}

#[derive(Debug, Clone, Default)]
struct Snapshot {
    lb: DevCounters,
    gen: DevCounters,
    vip_packets: u64,
    new_flows: u64,
    reasons: Vec<(&'static str, u64)>,
}

fn snapshot(dp: &mut Dataplane) -> anyhow::Result<Snapshot> {
    let stats = dp
        .stats()
        .context("cannot read the data plane's counters")?;
    let vip = stats.vips.get(&super::vip()).copied().unwrap_or_default();
    Ok(Snapshot {
        lb: dev_counters(NS_LB, IF_LB)?,
        gen: dev_counters(NS_GEN, IF_GEN)?,
        vip_packets: vip.packets,
        new_flows: vip.new_flows,
        reasons: stats.reasons,
    })
}

pub fn measure(dp: &mut Dataplane, args: &LbArgs, stop: &AtomicBool) -> anyhow::Result<LiveReport> {
    let topology = Topology::create()?;
    // Frames come back to the generator's MAC on both paths.
    dp.apply(&super::node(MAC_GEN), &super::services())
        .context("cannot program the VIP for the live part")?;
    let target = ifindex(NS_GEN, IF_GEN)?;
    {
        let map = dp
            .ebpf_mut()
            .map_mut("GEN_TARGET")
            .context("no map GEN_TARGET")?;
        let mut gen_target: Array<_, u32> = Array::try_from(map).context("GEN_TARGET")?;
        gen_target
            .set(0, target, 0)
            .context("cannot write GEN_TARGET[0]")?;
    }
    let gen_link = attach(dp, "fiberlb_pass", NS_GEN, IF_GEN)?;
    let call_fixed_cost = fixed_cost(dp)?;
    let mut results: Vec<LiveResult> = LiveCase::ALL
        .iter()
        .map(|&case| LiveResult {
            case,
            generated: 0,
            received: 0,
            returned: 0,
            dropped: 0,
            vip_packets: 0,
            new_flows: 0,
            elapsed: Duration::ZERO,
            steady_frames: 0,
            steady_time: Duration::ZERO,
            samples: Histogram::new_with_bounds(1, PPS_MAX, 3).expect("constant bounds are valid"),
        })
        .collect();
    let turn = Duration::from_secs_f64(args.live_seconds / args.live_rounds as f64);
    let mut clients = 0u32;
    for _ in 0..args.live_rounds {
        for r in results.iter_mut() {
            let settings = Turn {
                time: turn,
                chunk: r.case.chunk(args.live_chunk),
                margin: call_fixed_cost,
            };
            run_turn(dp, r, &settings, &mut clients, stop)
                .with_context(|| format!("live case {}", r.case.key()))?;
        }
    }
    xdp_mut(dp, "fiberlb_pass")?
        .detach(gen_link)
        .context("cannot detach fiberlb_pass")?;
    drop(topology);
    Ok(LiveReport {
        cases: results,
        seconds_per_case: args.live_seconds,
        turns: args.live_rounds,
        chunk: args.live_chunk,
        call_fixed_cost,
    })
}

/// The longest time a call of [`LIVE_BATCH`] frames takes: a live-frames
/// call of more than one frame swaps the kernel's XDP dispatcher before
/// and after its loop (RCU grace periods, tens of ms here), during which
/// no frame moves. That much of each call's start and end is left out of
/// the sampled rate.
fn fixed_cost(dp: &mut Dataplane) -> anyhow::Result<Duration> {
    let frame = super::tcp_syn(
        (MAC_GEN, MAC_LB),
        (CLIENT_V4, CLIENT_PORT),
        (VIP_V4, VIP_PORT),
    );
    super::testrun::set_bench(dp, &frame, false)?;
    let link = attach(dp, "fiberlb_floor", NS_LB, IF_LB)?;
    let mut longest = Duration::ZERO;
    for _ in 0..FIXED_COST_CALLS {
        let started = Instant::now();
        generate(dp, &frame, LIVE_BATCH)?;
        longest = longest.max(started.elapsed());
    }
    xdp_mut(dp, "fiberlb_floor")?
        .detach(link)
        .context("cannot detach fiberlb_floor")?;
    Ok(longest)
}

struct Turn {
    time: Duration,
    chunk: u32,
    /// Left out at both ends of every call.
    margin: Duration,
}

fn run_turn(
    dp: &mut Dataplane,
    r: &mut LiveResult,
    turn: &Turn,
    clients: &mut u32,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let mut frame_for = |case: LiveCase| {
        let client = if case == LiveCase::NewFlows {
            *clients += 1;
            Ipv4Addr::from(u32::from(NEW_FLOW_CLIENTS) + *clients)
        } else {
            CLIENT_V4
        };
        super::tcp_syn((MAC_GEN, MAC_LB), (client, CLIENT_PORT), (VIP_V4, VIP_PORT))
    };
    let first = frame_for(r.case);
    super::testrun::set_bench(dp, &first, r.case.vary_port())?;
    let link = attach(dp, r.case.program(), NS_LB, IF_LB)?;
    generate(dp, &first, WARM_UP_FRAMES)?;
    let before = snapshot(dp)?;
    let sampler = Sampler::start();
    let started = Instant::now();
    let mut calls = Vec::new();
    while started.elapsed() < turn.time {
        if stop.load(Ordering::Relaxed) {
            let _ = sampler.finish();
            bail!("interrupted");
        }
        let frame = frame_for(r.case);
        let call_started = Instant::now();
        if let Err(e) = generate(dp, &frame, turn.chunk) {
            let _ = sampler.finish();
            return Err(e);
        }
        calls.push((call_started, Instant::now()));
        r.generated += u64::from(turn.chunk);
    }
    let elapsed = started.elapsed();
    let samples = sampler.finish()?;
    let after = snapshot(dp)?;
    xdp_mut(dp, r.case.program())?
        .detach(link)
        .context("cannot detach the balancing side's program")?;
    let steady = steady_intervals(&samples, &calls, turn.margin);
    ensure!(
        !steady.is_empty(),
        "no counter sample fell inside a call past its fixed cost ({:?} at each end); raise \
         --live-chunk or --live-seconds",
        turn.margin
    );
    for (frames, time) in steady {
        r.steady_frames += frames;
        r.steady_time += time;
        r.samples
            .saturating_record((frames as f64 / time.as_secs_f64()) as u64);
    }
    check_turn(r.case, &before, &after)?;
    r.received += after.lb.rx_packets - before.lb.rx_packets;
    r.returned += after.gen.rx_packets - before.gen.rx_packets;
    r.dropped += after.lb.rx_dropped - before.lb.rx_dropped;
    r.vip_packets += after.vip_packets - before.vip_packets;
    r.new_flows += after.new_flows - before.new_flows;
    r.elapsed += elapsed;
    Ok(())
}

/// (frames, time) of each pair of consecutive samples that both fall inside
/// one call, at least `margin` from its start and its end.
fn steady_intervals(
    samples: &[(Instant, u64)],
    calls: &[(Instant, Instant)],
    margin: Duration,
) -> Vec<(u64, Duration)> {
    samples
        .windows(2)
        .filter(|w| {
            calls
                .iter()
                .any(|(start, end)| w[0].0 >= *start + margin && w[1].0 + margin <= *end)
        })
        .map(|w| (w[1].1 - w[0].1, w[1].0 - w[0].0))
        .collect()
}

/// What the counters must show after a turn.
fn check_turn(case: LiveCase, before: &Snapshot, after: &Snapshot) -> anyhow::Result<()> {
    let received = after.lb.rx_packets - before.lb.rx_packets;
    let vip_packets = after.vip_packets - before.vip_packets;
    let new_flows = after.new_flows - before.new_flows;
    ensure!(received > 0, "the balancing veth received nothing");
    if case == LiveCase::Floor {
        ensure!(
            vip_packets == 0,
            "{vip_packets} frames reached fiberlb_lb while the floor was attached"
        );
        return Ok(());
    }
    let other: Vec<String> = after
        .reasons
        .iter()
        .zip(&before.reasons)
        .filter(|(a, b)| a.1 > b.1)
        .map(|(a, b)| format!("{} {}", a.0, a.1 - b.1))
        .collect();
    ensure!(
        (vip_packets as f64 - received as f64).abs() <= COUNTER_SLACK * received as f64,
        "the veth received {received} frames but {vip_packets} reached the VIP path (other \
         verdicts: {})",
        other.join(", ")
    );
    if case == LiveCase::NewFlows {
        ensure!(
            new_flows as f64 >= (1.0 - COUNTER_SLACK) * vip_packets as f64,
            "only {new_flows} of {vip_packets} VIP packets were new flows"
        );
    }
    Ok(())
}

pub fn print_report(report: &LiveReport) {
    println!(
        "== live frames through a veth pair (native XDP both ends): {:.1} s per case in {} turns, \
         {} frames per call ==",
        report.seconds_per_case, report.turns, report.chunk
    );
    let mut table = Table::new(&[
        "case",
        "Mpps",
        "p50",
        "min",
        "max",
        "wall Mpps",
        "received/generated",
        "returned",
        "new flows/pkt",
    ]);
    let mpps = |v: f64| format!("{:.3}", v / 1e6);
    for r in &report.cases {
        table.row(vec![
            r.case.describe().to_string(),
            mpps(r.pps()),
            mpps(r.samples.value_at_quantile(0.5) as f64),
            mpps(r.samples.min() as f64),
            mpps(r.samples.max() as f64),
            mpps(r.wall_pps()),
            format!("{:.3}", r.received as f64 / r.generated.max(1) as f64),
            format!("{:.3}", r.returned as f64 / r.received.max(1) as f64),
            if r.case == LiveCase::Floor {
                "-".into()
            } else {
                format!("{:.3}", r.new_flows as f64 / r.vip_packets.max(1) as f64)
            },
        ]);
    }
    print!("{table}");
    let floor = report.pps(LiveCase::Floor);
    let ratio = |case| format!("{:.2}x", floor / report.pps(case));
    println!(
        "Mpps = frames the balancing veth's XDP program got per second while the generator ran \
         ({} ms samples, {:.0} ms left out at both ends of each call: its fixed cost); p50/min/max \
         over samples; wall = all frames / whole turns. \"returned\" = frames back at the \
         generator per frame received. Floor rate / VIP rate: existing flow {}, 65,536 flows {}, \
         new flows {} (goal <= {}x).",
        SAMPLE_INTERVAL.as_millis(),
        report.call_fixed_cost.as_secs_f64() * 1e3,
        ratio(LiveCase::Existing),
        ratio(LiveCase::ManyFlows),
        ratio(LiveCase::NewFlows),
        super::GOAL_VERSUS_FLOOR
    );
}

pub fn to_json(report: &LiveReport) -> serde_json::Value {
    let floor = report.pps(LiveCase::Floor);
    let cases: Vec<serde_json::Value> = report
        .cases
        .iter()
        .map(|r| {
            json!({
                "case": r.case.key(),
                "name": r.case.describe(),
                "pps": r.pps(),
                "p50_pps": r.samples.value_at_quantile(0.5),
                "min_pps": r.samples.min(),
                "max_pps": r.samples.max(),
                "samples": r.samples.len(),
                "wall_pps": r.wall_pps(),
                "generated": r.generated,
                "received": r.received,
                "returned": r.returned,
                "dropped": r.dropped,
                "vip_packets": r.vip_packets,
                "new_flows": r.new_flows,
                "seconds": r.elapsed.as_secs_f64(),
                "floor_over_this": floor / r.pps(),
            })
        })
        .collect();
    json!({
        "seconds_per_case": report.seconds_per_case,
        "turns": report.turns,
        "frames_per_call": report.chunk,
        "call_fixed_cost_ms": report.call_fixed_cost.as_secs_f64() * 1e3,
        "sample_interval_ms": SAMPLE_INTERVAL.as_millis() as u64,
        "cases": cases,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_samples_inside_a_call_past_its_margins_count() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let samples: Vec<(Instant, u64)> = (0..=10).map(|i| (at(i * 10), i * 1000)).collect();
        // One call from 5 ms to 85 ms, 20 ms margins: samples at 30..=60 ms.
        let calls = [(at(5), at(85))];
        let steady = steady_intervals(&samples, &calls, Duration::from_millis(20));
        assert_eq!(steady.len(), 3);
        assert!(steady
            .iter()
            .all(|&(frames, time)| frames == 1000 && time == Duration::from_millis(10)));
        assert!(steady_intervals(&samples, &calls, Duration::from_millis(40)).is_empty());
    }
}

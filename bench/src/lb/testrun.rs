//! The `BPF_PROG_TEST_RUN` part: ns/packet of every case, many repeats per
//! call, the cases taking turns round by round.
//!
//! Repeats of a test run reuse the buffer the previous run left, so a
//! program that rewrites the packet cannot be repeated directly: the VIP
//! cases run `fiberlb_bench`, which restores the `BENCH` packet (and, for
//! new flows, writes the next source port) and tail-calls `JUMP[0]`. The
//! floor (MAC swap twice is the original), `fiberlb_pass` and the non-VIP
//! case (packet untouched) are repeated directly.
//!
//! The kernel reports a call's loop time divided by its repeats, in whole
//! nanoseconds (`duration` is already per repeat); that is what the
//! histograms hold. The syscall's own wall time is no use here: an XDP
//! test run of more than one repeat swaps the kernel's XDP dispatcher
//! before and after its loop, ~20 ms of RCU grace periods per call on
//! this machine, more than the loop itself.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, ensure, Context};
use aya::maps::{Array, ProgramArray};
use aya::programs::{TestRun, TestRunOptions};
use fiberlb::dataplane::Dataplane;
use fiberlb_common::{BenchPacket, BENCH_BYTES};
use hdrhistogram::Histogram;

use super::{LbArgs, BACKENDS_V4, CLIENT_PORT, CLIENT_V4, LB_V4, OTHER_V4, VIP_PORT, VIP_V4};

pub(super) const XDP_PASS: u32 = 2;
pub(super) const XDP_TX: u32 = 3;
/// Distinct source ports: the most new-flow runs one call can make
/// without a 5-tuple coming back.
pub const FLOW_PORTS: u32 = 1 << 16;

/// MACs of the crafted frames and the static next hop of the test run.
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const LB_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
pub(super) const NEXT_HOP_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x99];
/// First client address of the new-flow case; each call uses the next one,
/// so no 5-tuple repeats over the whole case.
const NEW_FLOW_CLIENTS: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 0);
/// Bytes of the IPv4 outer header the VIP path adds.
const OUTER_BYTES: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    Floor,
    Pass,
    NonVip,
    Wrapper,
    Existing,
    NewFlow,
}

impl Case {
    pub const ALL: [Case; 6] = [
        Case::Floor,
        Case::Pass,
        Case::NonVip,
        Case::Wrapper,
        Case::Existing,
        Case::NewFlow,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Case::Floor => "floor",
            Case::Pass => "pass",
            Case::NonVip => "non_vip",
            Case::Wrapper => "wrapper",
            Case::Existing => "existing_flow",
            Case::NewFlow => "new_flow",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Case::Floor => "floor: fiberlb_floor (MAC swap, XDP_TX)",
            Case::Pass => "fiberlb_pass (XDP_PASS only)",
            Case::NonVip => "non-VIP: fiberlb_lb, TCP to another address (PASS)",
            Case::Wrapper => "wrapper: fiberlb_bench -> fiberlb_pass",
            Case::Existing => "existing flow: fiberlb_bench -> fiberlb_lb",
            Case::NewFlow => "new flow: fiberlb_bench -> fiberlb_lb, new 5-tuple",
        }
    }

    pub fn program(self) -> &'static str {
        match self {
            Case::Floor => "fiberlb_floor",
            Case::Pass => "fiberlb_pass",
            Case::NonVip => "fiberlb_lb",
            Case::Wrapper | Case::Existing | Case::NewFlow => "fiberlb_bench",
        }
    }

    fn verdict(self) -> u32 {
        match self {
            Case::Floor | Case::Existing | Case::NewFlow => XDP_TX,
            Case::Pass | Case::NonVip | Case::Wrapper => XDP_PASS,
        }
    }
}

/// One case's rounds.
pub struct CaseResult {
    pub case: Case,
    pub repeats: u32,
    /// Kernel-reported ns/packet per round, in 0.01 ns.
    pub kernel: Histogram<u64>,
}

pub fn new_flow_repeats(repeat: u32) -> u32 {
    repeat.min(FLOW_PORTS)
}

/// The counters a case's runs must move.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    vip_packets: u64,
    new_flows: u64,
    pass_not_vip: u64,
}

fn counts(dp: &mut Dataplane) -> anyhow::Result<Counts> {
    let stats = dp
        .stats()
        .context("cannot read the data plane's counters")?;
    let vip = stats.vips.get(&super::vip()).copied().unwrap_or_default();
    let pass_not_vip = stats
        .reasons
        .iter()
        .find(|(label, _)| *label == "pass_not_vip")
        .map(|(_, n)| *n)
        .context("no pass_not_vip counter")?;
    Ok(Counts {
        vip_packets: vip.packets,
        new_flows: vip.new_flows,
        pass_not_vip,
    })
}

/// Points `JUMP[0]` (the wrapper's tail call) at `target`.
pub(super) fn set_jump(dp: &mut Dataplane, target: &str) -> anyhow::Result<()> {
    let fd = dp
        .xdp(target)?
        .fd()
        .with_context(|| format!("{target} is not loaded"))?
        .try_clone()
        .context("cannot duplicate a program fd")?;
    let map = dp.ebpf_mut().map_mut("JUMP").context("no map JUMP")?;
    let mut jump = ProgramArray::try_from(map).context("JUMP is not a program array")?;
    jump.set(0, &fd, 0).context("cannot write JUMP[0]")?;
    Ok(())
}

/// Writes the packet the wrapper restores (and the generator's port flag).
pub(super) fn set_bench(
    dp: &mut Dataplane,
    frame: &[u8; BENCH_BYTES],
    vary_port: bool,
) -> anyhow::Result<()> {
    let map = dp.ebpf_mut().map_mut("BENCH").context("no map BENCH")?;
    let mut bench: Array<_, BenchPacket> = Array::try_from(map).context("BENCH is not an array")?;
    let value = BenchPacket {
        len: BENCH_BYTES as u32,
        vary_port: u32::from(vary_port),
        bytes: *frame,
    };
    bench.set(0, value, 0).context("cannot write BENCH[0]")?;
    Ok(())
}

struct Run {
    verdict: u32,
    kernel_ns: u64,
    out_len: usize,
}

fn test_run(
    dp: &Dataplane,
    program: &str,
    frame: &[u8],
    repeat: u32,
    out: Option<&mut [u8]>,
) -> anyhow::Result<Run> {
    let prog = dp.xdp(program)?;
    let result = prog
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: out,
            repeat,
            ..Default::default()
        })
        .with_context(|| format!("BPF_PROG_TEST_RUN of {program}"))?;
    Ok(Run {
        verdict: result.return_value,
        kernel_ns: result.duration.as_nanos() as u64,
        out_len: result.data_size_out as usize,
    })
}

/// Sets the maps a case needs and returns the frame to run it on.
fn prepare(dp: &mut Dataplane, case: Case, client: &mut u32) -> anyhow::Result<[u8; BENCH_BYTES]> {
    let macs = (CLIENT_MAC, LB_MAC);
    let to_vip = super::tcp_syn(macs, (CLIENT_V4, CLIENT_PORT), (VIP_V4, VIP_PORT));
    Ok(match case {
        Case::Floor | Case::Pass => to_vip,
        Case::NonVip => super::tcp_syn(macs, (CLIENT_V4, CLIENT_PORT), (OTHER_V4, VIP_PORT)),
        Case::Wrapper | Case::Existing => {
            let target = if case == Case::Wrapper {
                "fiberlb_pass"
            } else {
                "fiberlb_lb"
            };
            set_jump(dp, target)?;
            set_bench(dp, &to_vip, false)?;
            to_vip
        }
        Case::NewFlow => {
            let src = Ipv4Addr::from(u32::from(NEW_FLOW_CLIENTS) + *client);
            *client += 1;
            let frame = super::tcp_syn(macs, (src, CLIENT_PORT), (VIP_V4, VIP_PORT));
            set_jump(dp, "fiberlb_lb")?;
            set_bench(dp, &frame, true)?;
            frame
        }
    })
}

/// One run with the output captured, checked byte for byte.
fn check_output(dp: &mut Dataplane, case: Case, client: &mut u32) -> anyhow::Result<()> {
    let frame = prepare(dp, case, client)?;
    let mut out = [0u8; BENCH_BYTES + 256];
    let run = test_run(dp, case.program(), &frame, 1, Some(&mut out))?;
    ensure!(
        run.verdict == case.verdict(),
        "{}: verdict {} (expected {})",
        case.key(),
        run.verdict,
        case.verdict()
    );
    let out = &out[..run.out_len];
    match case {
        Case::Floor => {
            let mut want = frame;
            want[0..6].copy_from_slice(&frame[6..12]);
            want[6..12].copy_from_slice(&frame[0..6]);
            ensure!(
                out == want,
                "floor: output is not the frame with MACs swapped"
            );
        }
        Case::Pass | Case::NonVip | Case::Wrapper => {
            ensure!(out == frame, "{}: the frame changed", case.key());
        }
        Case::Existing | Case::NewFlow => check_encapsulated(case, &frame, out)?,
    }
    Ok(())
}

/// An IPv4-in-IPv4 frame from us to one of the backends, next hop's MAC,
/// right outer checksum, the original IP packet inside.
fn check_encapsulated(case: Case, frame: &[u8], out: &[u8]) -> anyhow::Result<()> {
    let key = case.key();
    ensure!(
        out.len() == frame.len() + OUTER_BYTES,
        "{key}: {} bytes out for {} in (expected a 20-byte outer header)",
        out.len(),
        frame.len()
    );
    ensure!(
        out[0..6] == NEXT_HOP_MAC,
        "{key}: destination MAC is not the next hop"
    );
    ensure!(out[6..12] == LB_MAC, "{key}: source MAC is not ours");
    ensure!(
        out[12..14] == [0x08, 0x00],
        "{key}: outer EtherType is not IPv4"
    );
    let ip = &out[14..34];
    ensure!(
        ip[0] == 0x45,
        "{key}: outer header is not IPv4 without options"
    );
    ensure!(
        ip[9] == 4,
        "{key}: outer protocol {} (expected 4, IP-in-IP)",
        ip[9]
    );
    ensure!(
        ip[12..16] == LB_V4.octets(),
        "{key}: outer source is not ours"
    );
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    ensure!(
        BACKENDS_V4.contains(&dst),
        "{key}: outer destination {dst} is not a backend"
    );
    ensure!(
        super::ones_sum(ip, 0) == 0xffff,
        "{key}: outer checksum is wrong"
    );
    // The new-flow wrapper wrote its own source port (inner offset 20).
    let inner = &out[34..];
    let original = &frame[14..];
    let same = if case == Case::NewFlow {
        inner[..20] == original[..20] && inner[22..] == original[22..]
    } else {
        inner == original
    };
    ensure!(same, "{key}: the inner packet changed");
    Ok(())
}

/// Checks what one round's runs did to the counters.
fn check_counts(case: Case, before: Counts, after: Counts, repeats: u32) -> anyhow::Result<()> {
    let n = u64::from(repeats);
    let packets = after.vip_packets - before.vip_packets;
    let new_flows = after.new_flows - before.new_flows;
    let not_vip = after.pass_not_vip - before.pass_not_vip;
    let key = case.key();
    match case {
        Case::Existing => {
            ensure!(
                packets == n,
                "{key}: {packets} VIP packets counted for {n} runs"
            );
            // The new-flow rounds between two existing-flow rounds insert
            // 65,536 flows into this CPU's table and may evict this flow:
            // the round's first packet then inserts it again.
            ensure!(
                new_flows <= 1,
                "{key}: {new_flows} new flows (expected at most the first packet)"
            );
        }
        Case::NewFlow => {
            ensure!(
                packets == n,
                "{key}: {packets} VIP packets counted for {n} runs"
            );
            ensure!(new_flows == n, "{key}: {new_flows} new flows for {n} runs");
        }
        Case::NonVip => {
            ensure!(
                not_vip == n,
                "{key}: pass_not_vip moved {not_vip} for {n} runs"
            );
            ensure!(packets == 0, "{key}: {packets} packets reached the VIP");
        }
        Case::Floor | Case::Pass | Case::Wrapper => {
            ensure!(
                packets == 0 && not_vip == 0,
                "{key}: fiberlb_lb ran ({packets} VIP packets, {not_vip} not-VIP)"
            );
        }
    }
    Ok(())
}

/// Runs every case `--rounds` times (after a warm-up round) and returns the
/// per-round ns/packet histograms, in [`Case::ALL`] order.
pub fn measure(
    dp: &mut Dataplane,
    args: &LbArgs,
    stop: &AtomicBool,
) -> anyhow::Result<Vec<CaseResult>> {
    let mut client = 0u32;
    for case in Case::ALL {
        check_output(dp, case, &mut client)?;
    }
    let mut results: Vec<CaseResult> = Case::ALL
        .iter()
        .map(|&case| CaseResult {
            case,
            repeats: if case == Case::NewFlow {
                new_flow_repeats(args.repeat)
            } else {
                args.repeat
            },
            kernel: super::ns_histogram(),
        })
        .collect();
    for round in 0..=args.rounds {
        for r in results.iter_mut() {
            if stop.load(Ordering::Relaxed) {
                bail!("interrupted");
            }
            let frame = prepare(dp, r.case, &mut client)?;
            let before = counts(dp)?;
            let run = test_run(dp, r.case.program(), &frame, r.repeats, None)?;
            let after = counts(dp)?;
            if run.verdict != r.case.verdict() {
                bail!(
                    "{}: verdict {} (expected {}) in round {round}",
                    r.case.key(),
                    run.verdict,
                    r.case.verdict()
                );
            }
            check_counts(r.case, before, after, r.repeats)
                .with_context(|| format!("round {round}"))?;
            if round == 0 {
                continue; // warm-up: caches, the JIT image, a full flow table
            }
            r.kernel
                .record(run.kernel_ns.max(1) * 100)
                .context("ns/packet out of the histogram's range")?;
        }
    }
    Ok(results)
}

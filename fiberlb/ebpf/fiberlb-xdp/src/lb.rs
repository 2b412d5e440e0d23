//! FiberLB's load balancer (`fiberlb_lb`) and the small programs around it:
//! `fiberlb_floor` (MAC swap + XDP_TX, the cost floor the benchmark
//! compares with), `fiberlb_pass` (XDP_PASS, for veth peers), and the
//! benchmark's `fiberlb_bench` (restores a packet, tail-calls the program
//! under test) and `fiberlb_gen` (live-frames generator).
//!
//! Per packet: Ethernet (one 802.1Q/802.1ad tag at most), IPv4/IPv6,
//! TCP/UDP → VIP lookup (open-addressed array) → connection table (per-CPU
//! LRU) or, for a new flow, the service's Maglev ring → IP-in-IP toward the
//! backend → XDP_TX (or XDP_REDIRECT when the FIB names another device).
//! Everything not for a VIP is XDP_PASS. What is dropped and why is counted
//! in `REASONS` (see fiberlb_common::Reason).
#![no_std]
#![no_main]

mod packet;

use aya_ebpf::bindings::{bpf_fib_lookup as FibParams, xdp_action};
use aya_ebpf::helpers::generated as gen;
use aya_ebpf::macros::{map, xdp};
use aya_ebpf::maps::{Array, PerCpuArray, ProgramArray};
use aya_ebpf::programs::XdpContext;
use fiberlb_common::*;
use packet::*;

#[map(name = "ACTIVE")]
static ACTIVE: Array<u32> = Array::with_max_entries(1, 0);
#[map(name = "CONFIG")]
static CONFIG: Array<Config> = Array::with_max_entries(GENERATIONS, 0);
#[map(name = "VIPS")]
static VIPS: Array<Vip> = Array::with_max_entries(GENERATIONS * VIP_SLOTS, 0);
#[map(name = "BACKENDS")]
static BACKENDS: Array<Backend> = Array::with_max_entries(GENERATIONS * BACKEND_SLOTS, 0);
#[map(name = "RINGS")]
static RINGS: Array<u32> = Array::with_max_entries(SERVICES_MAX * RING_COPIES * RING_SIZE, 0);
#[map(name = "FLOWS")]
static FLOWS: PerCpuArray<FlowSet> = PerCpuArray::with_max_entries(FLOW_SETS, 0);
#[map(name = "VIP_STATS")]
static VIP_STATS: PerCpuArray<Counters> = PerCpuArray::with_max_entries(SERVICES_MAX, 0);
#[map(name = "BACKEND_STATS")]
static BACKEND_STATS: PerCpuArray<Counters> = PerCpuArray::with_max_entries(BACKEND_SLOTS, 0);
#[map(name = "REASONS")]
static REASON_COUNTS: PerCpuArray<u64> = PerCpuArray::with_max_entries(REASONS, 0);
#[map(name = "FIB_SCRATCH")]
static FIB_SCRATCH: PerCpuArray<[u64; 8]> = PerCpuArray::with_max_entries(1, 0);
const _: () = assert!(core::mem::size_of::<FibParams>() == 64);
#[map(name = "BENCH")]
static BENCH: Array<BenchPacket> = Array::with_max_entries(1, 0);
#[map(name = "BENCH_SEQ")]
static BENCH_SEQ: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);
#[map(name = "JUMP")]
static JUMP: ProgramArray = ProgramArray::with_max_entries(1, 0);
#[map(name = "GEN_TARGET")]
static GEN_TARGET: Array<u32> = Array::with_max_entries(1, 0);

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const IPPROTO_IPIP: u8 = 4;
const IPPROTO_IPV6: u8 = 41;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_ICMPV6: u8 = 58;
const OUTER_TTL: u8 = 64;
/// Bytes of the invoking packet an ICMPv6 packet-too-big carries (its IPv6
/// header and the first 48 bytes after it; well under the 1280 minimum MTU).
const PTB6_QUOTE: usize = 88;

#[inline(always)]
fn count(reason: Reason) {
    if let Some(c) = REASON_COUNTS.get_ptr_mut(reason as u32) {
        // SAFETY: per-CPU slot, only this CPU writes it.
        unsafe { *c += 1 };
    }
}

#[inline(always)]
fn pass(reason: Reason) -> u32 {
    count(reason);
    xdp_action::XDP_PASS
}

#[inline(always)]
fn drop(reason: Reason) -> u32 {
    count(reason);
    xdp_action::XDP_DROP
}

#[xdp]
pub fn fiberlb_lb(ctx: XdpContext) -> u32 {
    let Some(ethertype) = load_be16(&ctx, 12) else {
        return pass(Reason::PassTruncated);
    };
    if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        match load_be16(&ctx, 16) {
            Some(inner) => balance::<18>(&ctx, inner),
            None => pass(Reason::PassTruncated),
        }
    } else {
        balance::<14>(&ctx, ethertype)
    }
}

/// What the parser learnt of a packet that may be for a VIP.
struct Parsed {
    family: u8,
    proto: u8,
    src: [u32; 4],
    dst: [u32; 4],
    sport: u16,
    dport: u16,
    /// The IP packet's length (header included), from its header.
    ip_len: u32,
    /// IPv4 DF bit.
    dont_fragment: bool,
    /// Traffic class / TOS, copied to the outer header.
    tos: u8,
}

enum Parse {
    Packet(Parsed),
    /// Verdict already taken (and counted).
    Done(u32),
}

#[inline(always)]
fn balance<const L3: usize>(ctx: &XdpContext, ethertype: u16) -> u32 {
    let parsed = match ethertype {
        ETH_P_IP => parse_v4::<L3>(ctx),
        ETH_P_IPV6 => parse_v6::<L3>(ctx),
        _ => return pass(Reason::PassNotIp),
    };
    let p = match parsed {
        Parse::Packet(p) => p,
        Parse::Done(verdict) => return verdict,
    };
    let gen = match ACTIVE.get(0) {
        Some(g) => *g & (GENERATIONS - 1),
        None => return pass(Reason::PassNotVip),
    };
    let Some(vip) = find_vip(gen, &p.dst, p.dport, p.proto, p.family, VIP_USED) else {
        return pass(Reason::PassNotVip);
    };
    let service = vip.service;
    let ring = vip.ring;
    let frame_len = (ctx.data_end() - ctx.data()) as u64;
    let vip_stats = VIP_STATS.get_ptr_mut(service);
    if let Some(s) = vip_stats {
        // SAFETY: per-CPU slot, only this CPU writes it.
        unsafe {
            (*s).packets += 1;
            (*s).bytes += frame_len;
        }
    }
    let Some(config) = CONFIG.get(gen) else {
        return drop(Reason::DropInternal);
    };
    let flow = FlowKey {
        src: p.src,
        dst: p.dst,
        sport: p.sport,
        dport: p.dport,
        proto: p.proto,
        family: p.family,
        _pad: [0; 2],
    };
    let hash = flow_hash(&flow);
    let Some((slot, backend)) = pick_backend(gen, service, ring, &flow, hash, vip_stats) else {
        return drop(Reason::DropNoBackend);
    };
    if let Some(s) = BACKEND_STATS.get_ptr_mut(slot) {
        // SAFETY: per-CPU slot, only this CPU writes it.
        unsafe {
            (*s).packets += 1;
            (*s).bytes += frame_len;
        }
    }
    let overhead: u32 = if backend.family == FAMILY_V4 { 20 } else { 40 };
    if p.ip_len + overhead > config.mtu {
        return too_big::<L3>(ctx, &p, config.mtu - overhead);
    }
    encapsulate::<L3>(ctx, &p, &backend, config, hash)
}

#[inline(always)]
fn parse_v4<const L3: usize>(ctx: &XdpContext) -> Parse {
    let Some(ip) = ptr_at::<[u32; 5]>(ctx, L3) else {
        return Parse::Done(pass(Reason::PassTruncated));
    };
    // SAFETY: ptr_at checked the 20 bytes are inside the packet.
    let w = unsafe { *ip };
    let b0 = u32::from_be(w[0]);
    let b2 = u32::from_be(w[2]);
    let version = b0 >> 28;
    let ihl = (b0 >> 24) & 0xf;
    let tos = (b0 >> 16) as u8;
    let ip_len = b0 & 0xffff;
    let flags_frag = u32::from_be(w[1]) & 0x3fff;
    let dont_fragment = u32::from_be(w[1]) & 0x4000 != 0;
    let proto = (b2 >> 16) as u8;
    let src = [w[3], 0, 0, 0];
    let dst = [w[4], 0, 0, 0];
    if version != 4 || ihl < 5 {
        return Parse::Done(pass(Reason::PassTruncated));
    }
    let is_l4 = proto == PROTO_TCP || proto == PROTO_UDP;
    if ihl != 5 || flags_frag != 0 || !is_l4 {
        return Parse::Done(odd_packet(ctx, &dst, FAMILY_V4, ihl != 5, flags_frag != 0));
    }
    let l4_min: u32 = if proto == PROTO_TCP { 20 } else { 8 };
    let frame_ip = (ctx.data_end() - ctx.data() - L3) as u32;
    let Some(ports) = ptr_at::<u32>(ctx, L3 + 20) else {
        return Parse::Done(bad_length(ctx, &dst, FAMILY_V4));
    };
    if ip_len < 20 + l4_min || ip_len > frame_ip {
        return Parse::Done(bad_length(ctx, &dst, FAMILY_V4));
    }
    // SAFETY: ptr_at checked the 4 bytes are inside the packet.
    let ports = unsafe { *ports };
    Parse::Packet(Parsed {
        family: FAMILY_V4,
        proto,
        src,
        dst,
        sport: ports as u16,
        dport: (ports >> 16) as u16,
        ip_len,
        dont_fragment,
        tos,
    })
}

#[inline(always)]
fn parse_v6<const L3: usize>(ctx: &XdpContext) -> Parse {
    let Some(ip) = ptr_at::<[u32; 10]>(ctx, L3) else {
        return Parse::Done(pass(Reason::PassTruncated));
    };
    // SAFETY: ptr_at checked the 40 bytes are inside the packet.
    let w = unsafe { *ip };
    let b0 = u32::from_be(w[0]);
    let b1 = u32::from_be(w[1]);
    let version = b0 >> 28;
    let tos = (b0 >> 20) as u8;
    let payload_len = b1 >> 16;
    let next = (b1 >> 8) as u8;
    let src = [w[2], w[3], w[4], w[5]];
    let dst = [w[6], w[7], w[8], w[9]];
    if version != 6 {
        return Parse::Done(pass(Reason::PassTruncated));
    }
    if next != PROTO_TCP && next != PROTO_UDP {
        let fragment = next == 44;
        let extension = matches!(next, 0 | 43 | 51 | 60 | 135 | 139 | 140);
        return Parse::Done(odd_packet(ctx, &dst, FAMILY_V6, extension, fragment));
    }
    let l4_min: u32 = if next == PROTO_TCP { 20 } else { 8 };
    let frame_ip = (ctx.data_end() - ctx.data() - L3) as u32;
    let Some(ports) = ptr_at::<u32>(ctx, L3 + 40) else {
        return Parse::Done(bad_length(ctx, &dst, FAMILY_V6));
    };
    if payload_len < l4_min || payload_len + 40 > frame_ip {
        return Parse::Done(bad_length(ctx, &dst, FAMILY_V6));
    }
    // SAFETY: ptr_at checked the 4 bytes are inside the packet.
    let ports = unsafe { *ports };
    Parse::Packet(Parsed {
        family: FAMILY_V6,
        proto: next,
        src,
        dst,
        sport: ports as u16,
        dport: (ports >> 16) as u16,
        ip_len: payload_len + 40,
        dont_fragment: true,
        tos,
    })
}

/// A fragment, a packet with options / extension headers, or not TCP/UDP:
/// dropped when sent to a VIP's address, passed otherwise.
#[inline(always)]
fn odd_packet(_ctx: &XdpContext, dst: &[u32; 4], family: u8, options: bool, fragment: bool) -> u32 {
    if !(options || fragment) || !is_vip_address(dst, family) {
        return pass(Reason::PassNotVip);
    }
    if fragment {
        drop(Reason::DropFragment)
    } else {
        drop(Reason::DropIpOptions)
    }
}

/// Lengths that disagree with the frame: dropped when sent to a VIP's
/// address (never forwarded), passed otherwise (the kernel drops it too).
#[inline(always)]
fn bad_length(_ctx: &XdpContext, dst: &[u32; 4], family: u8) -> u32 {
    if is_vip_address(dst, family) {
        drop(Reason::DropBadLength)
    } else {
        pass(Reason::PassTruncated)
    }
}

#[inline(always)]
fn is_vip_address(dst: &[u32; 4], family: u8) -> bool {
    let gen = match ACTIVE.get(0) {
        Some(g) => *g & (GENERATIONS - 1),
        None => return false,
    };
    find_vip(gen, dst, 0, 0, family, VIP_ADDR_ONLY).is_some()
}

#[inline(always)]
fn find_vip(
    gen: u32,
    addr: &[u32; 4],
    port: u16,
    proto: u8,
    family: u8,
    kind: u32,
) -> Option<&'static Vip> {
    let key = VipKey {
        addr: *addr,
        port,
        proto,
        family,
    };
    let home = vip_slot(&key);
    let base = gen * VIP_SLOTS;
    let mut i = 0;
    while i < VIP_PROBES {
        let vip = VIPS.get(base + ((home + i) & (VIP_SLOTS - 1)))?;
        if vip.flags == 0 {
            return None;
        }
        if vip.flags & kind != 0
            && vip.key.addr[0] == addr[0]
            && vip.key.addr[1] == addr[1]
            && vip.key.addr[2] == addr[2]
            && vip.key.addr[3] == addr[3]
            && vip.key.port == port
            && vip.key.proto == proto
            && vip.key.family == family
        {
            return Some(vip);
        }
        i += 1;
    }
    None
}

/// The flow's backend: the one it was sent to before while that backend is
/// alive, else a new pick from the ring (remembered in the flow table).
#[inline(always)]
fn pick_backend(
    gen: u32,
    service: u32,
    ring: u32,
    flow: &FlowKey,
    hash: u32,
    vip_stats: Option<*mut Counters>,
) -> Option<(u32, Backend)> {
    let base = gen * BACKEND_SLOTS;
    let set = FLOWS.get_ptr_mut(flow_set(hash));
    if let Some(set) = set {
        // SAFETY: this CPU's copy of the set; only this CPU touches it.
        let set = unsafe { &mut *set };
        if let Some(way) = find_flow(set, flow) {
            let known = set.ways[way].flow;
            if known.id != 0 && known.slot < BACKEND_SLOTS {
                if let Some(b) = BACKENDS.get(base + known.slot) {
                    if b.id == known.id && b.flags & BACKEND_ALIVE != 0 {
                        set.clock += 1;
                        set.ways[way].used = set.clock;
                        return Some((known.slot, *b));
                    }
                }
            }
        }
    }
    let index = (service * RING_COPIES + (ring & 1)) * RING_SIZE + hash % RING_SIZE;
    let entry = RINGS.get(index).copied().unwrap_or(0);
    let backend = if entry == 0 || entry > BACKEND_SLOTS {
        None
    } else {
        BACKENDS.get(base + entry - 1).copied()
    };
    let Some(backend) = backend.filter(|b| b.flags & BACKEND_ALIVE != 0) else {
        if let Some(s) = vip_stats {
            // SAFETY: per-CPU slot, only this CPU writes it.
            unsafe { (*s).misses += 1 };
        }
        return None;
    };
    let slot = entry - 1;
    if let Some(set) = set {
        // SAFETY: as above.
        let set = unsafe { &mut *set };
        // The flow's own way if it is there (its backend died), else the
        // least recently used one (an empty way has `used` 0).
        let way = find_flow(set, flow).unwrap_or_else(|| oldest_way(set));
        set.clock += 1;
        set.ways[way] = FlowWay {
            key: *flow,
            flow: Flow {
                slot,
                id: backend.id,
            },
            used: set.clock,
        };
    }
    if let Some(s) = vip_stats {
        // SAFETY: per-CPU slot, only this CPU writes it.
        unsafe { (*s).new_flows += 1 };
    }
    if let Some(s) = BACKEND_STATS.get_ptr_mut(slot) {
        // SAFETY: per-CPU slot, only this CPU writes it.
        unsafe { (*s).new_flows += 1 };
    }
    Some((slot, backend))
}

#[inline(always)]
fn same_flow(a: &FlowKey, b: &FlowKey) -> bool {
    a.src[0] == b.src[0]
        && a.src[1] == b.src[1]
        && a.src[2] == b.src[2]
        && a.src[3] == b.src[3]
        && a.dst[0] == b.dst[0]
        && a.dst[1] == b.dst[1]
        && a.dst[2] == b.dst[2]
        && a.dst[3] == b.dst[3]
        && a.sport == b.sport
        && a.dport == b.dport
        && a.proto == b.proto
        && a.family == b.family
}

/// The way of `set` that holds `flow`.
#[inline(always)]
fn find_flow(set: &FlowSet, flow: &FlowKey) -> Option<usize> {
    let mut i = 0;
    while i < FLOW_WAYS {
        if set.ways[i].used != 0 && same_flow(&set.ways[i].key, flow) {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// The least recently used way of `set` (an empty one first).
#[inline(always)]
fn oldest_way(set: &FlowSet) -> usize {
    let mut oldest = 0;
    let mut i = 1;
    while i < FLOW_WAYS {
        if set.ways[i].used < set.ways[oldest].used {
            oldest = i;
        }
        i += 1;
    }
    oldest
}

/// Source and destination MAC for a packet to `backend`, and the device to
/// send it from (0: the one it came in on).
#[inline(always)]
fn next_hop(
    ctx: &XdpContext,
    backend: &Backend,
    config: &Config,
    ip_len: u32,
    our_mac: [u8; 6],
) -> Option<([u8; 6], [u8; 6], u32)> {
    let ingress = ctx.ingress_ifindex() as u32;
    if config.flags & CONFIG_FIB != 0 {
        // The parameters live in a per-CPU scratch slot, zeroed word by
        // word: a zeroed struct on the stack becomes a call to a byte-loop
        // memset subprogram here.
        let Some(scratch) = FIB_SCRATCH.get_ptr_mut(0) else {
            return None;
        };
        let w = scratch as *mut u64;
        let mut i = 0;
        while i < 8 {
            // SAFETY: i < 8 words of this CPU's 64-byte scratch slot.
            unsafe { core::ptr::write_volatile(w.add(i), 0) };
            i += 1;
        }
        // SAFETY: 64 zeroed bytes are a valid bpf_fib_lookup; the slot is
        // this CPU's and lives as long as the program run.
        let params: &mut FibParams = unsafe { &mut *(scratch as *mut FibParams) };
        params.ifindex = ingress;
        params.__bindgen_anon_1.tot_len = ip_len as u16;
        if backend.family == FAMILY_V4 {
            params.family = AF_INET;
            params.__bindgen_anon_3.ipv4_src = config.src_v4;
            params.__bindgen_anon_4.ipv4_dst = backend.addr[0];
        } else {
            params.family = AF_INET6;
            // Word by word (an array assignment becomes a memcpy call).
            // SAFETY: plain u32 stores into the unions' IPv6 arms.
            unsafe {
                let src = &mut params.__bindgen_anon_3.ipv6_src;
                src[0] = config.src_v6[0];
                src[1] = config.src_v6[1];
                src[2] = config.src_v6[2];
                src[3] = config.src_v6[3];
                let dst = &mut params.__bindgen_anon_4.ipv6_dst;
                dst[0] = backend.addr[0];
                dst[1] = backend.addr[1];
                dst[2] = backend.addr[2];
                dst[3] = backend.addr[3];
            }
        }
        // SAFETY: params is a valid, initialized struct of the size given.
        let rc = unsafe {
            gen::bpf_fib_lookup(
                ctx.ctx as *mut _,
                params as *mut FibParams,
                core::mem::size_of::<FibParams>() as i32,
                0,
            )
        };
        if rc == 0 {
            let out = if params.ifindex == ingress {
                0
            } else {
                params.ifindex
            };
            return Some((params.smac, params.dmac, out));
        }
    }
    if config.flags & CONFIG_NEIGH != 0 {
        return Some((our_mac, config.neigh_mac, 0));
    }
    None
}

#[inline(always)]
fn encapsulate<const L3: usize>(
    ctx: &XdpContext,
    p: &Parsed,
    backend: &Backend,
    config: &Config,
    hash: u32,
) -> u32 {
    let Some(eth) = ptr_at::<EthVlan>(ctx, 0) else {
        return drop(Reason::DropInternal);
    };
    // SAFETY: ptr_at checked the Ethernet header (and tag) are in the packet.
    let old = unsafe { *eth };
    let overhead: u32 = if backend.family == FAMILY_V4 { 20 } else { 40 };
    let Some((smac, dmac, out)) = next_hop(ctx, backend, config, p.ip_len + overhead, old.dst)
    else {
        return drop(Reason::DropNoRoute);
    };
    // SAFETY: the helper checks the new head against the headroom.
    if unsafe { gen::bpf_xdp_adjust_head(ctx.ctx, -(overhead as i32)) } != 0 {
        return drop(Reason::DropInternal);
    }
    let inner_proto = if p.family == FAMILY_V4 {
        IPPROTO_IPIP
    } else {
        IPPROTO_IPV6
    };
    if backend.family == FAMILY_V4 {
        let Some(ip) = ptr_at::<[u32; 5]>(ctx, L3) else {
            return drop(Reason::DropInternal);
        };
        let mut h = [
            u32::to_be(0x4500_0000 | ((p.tos as u32) << 16) | (p.ip_len + 20)),
            0,
            u32::to_be(((OUTER_TTL as u32) << 24) | ((inner_proto as u32) << 16)),
            config.src_v4,
            backend.addr[0],
        ];
        h[2] |= (ipv4_checksum(&h) as u32) << 16;
        // SAFETY: ptr_at checked the 20 bytes are inside the packet.
        unsafe { *ip = h };
    } else {
        let Some(ip) = ptr_at::<[u32; 10]>(ctx, L3) else {
            return drop(Reason::DropInternal);
        };
        let label = hash & 0xf_ffff;
        // SAFETY: ptr_at checked the 40 bytes are inside the packet.
        unsafe {
            *ip = [
                u32::to_be(0x6000_0000 | ((p.tos as u32) << 20) | label),
                u32::to_be((p.ip_len << 16) | ((inner_proto as u32) << 8) | OUTER_TTL as u32),
                config.src_v6[0],
                config.src_v6[1],
                config.src_v6[2],
                config.src_v6[3],
                backend.addr[0],
                backend.addr[1],
                backend.addr[2],
                backend.addr[3],
            ]
        };
    }
    let ethertype = if backend.family == FAMILY_V4 {
        ETH_P_IP
    } else {
        ETH_P_IPV6
    };
    if !write_eth::<L3>(ctx, dmac, smac, &old, ethertype) {
        return drop(Reason::DropInternal);
    }
    if out != 0 {
        // SAFETY: plain helper call.
        return unsafe { gen::bpf_redirect(out, 0) } as u32;
    }
    xdp_action::XDP_TX
}

/// Rewrites the Ethernet header (keeping the VLAN tag when `L3` is 18).
#[inline(always)]
fn write_eth<const L3: usize>(
    ctx: &XdpContext,
    dst: [u8; 6],
    src: [u8; 6],
    old: &EthVlan,
    ethertype: u16,
) -> bool {
    let Some(eth) = ptr_at::<EthVlan>(ctx, 0) else {
        return false;
    };
    let mut new = *old;
    new.dst = dst;
    new.src = src;
    if L3 == 18 {
        new.inner_type = ethertype.to_be();
    } else {
        new.ethertype = ethertype.to_be();
    }
    if L3 == 18 {
        // SAFETY: ptr_at checked the 18 bytes are inside the packet.
        unsafe { *eth = new };
    } else {
        let Some(eth14) = ptr_at::<Eth>(ctx, 0) else {
            return false;
        };
        // SAFETY: ptr_at checked the 14 bytes are inside the packet.
        unsafe {
            *eth14 = Eth {
                dst: new.dst,
                src: new.src,
                ethertype: new.ethertype,
            }
        };
    }
    true
}

/// Too big to encapsulate: ICMP "fragmentation needed" (IPv4 with DF) or
/// ICMPv6 "packet too big", sent back to the client from the VIP, with
/// `mtu` as the largest packet it may send. IPv4 without DF is dropped:
/// XDP cannot fragment.
#[inline(always)]
fn too_big<const L3: usize>(ctx: &XdpContext, p: &Parsed, mtu: u32) -> u32 {
    if p.family == FAMILY_V4 && !p.dont_fragment {
        return drop(Reason::DropTooBigNoDf);
    }
    let Some(eth) = ptr_at::<EthVlan>(ctx, 0) else {
        return drop(Reason::DropInternal);
    };
    // SAFETY: ptr_at checked the Ethernet header (and tag) are in the packet.
    let old = unsafe { *eth };
    let frame = (ctx.data_end() - ctx.data()) as i32;
    // New headers in front of the invoking packet's IP header, then cut
    // the tail to what the error quotes.
    let (grow, keep) = if p.family == FAMILY_V4 {
        (28i32, (L3 + 20 + 8 + 28) as i32)
    } else {
        (48i32, (L3 + 40 + 8 + PTB6_QUOTE) as i32)
    };
    // SAFETY: the helpers check the new head and tail against the buffer.
    unsafe {
        if gen::bpf_xdp_adjust_head(ctx.ctx, -grow) != 0 {
            return drop(Reason::DropInternal);
        }
        if gen::bpf_xdp_adjust_tail(ctx.ctx, keep - (frame + grow)) != 0 {
            return drop(Reason::DropInternal);
        }
    }
    if p.family == FAMILY_V4 {
        let Some(msg) = ptr_at::<[u32; 14]>(ctx, L3) else {
            return drop(Reason::DropInternal);
        };
        let mut ip = [
            u32::to_be(0x4500_0000 | 56),
            0,
            u32::to_be(((OUTER_TTL as u32) << 24) | ((IPPROTO_ICMP as u32) << 16)),
            p.dst[0],
            p.src[0],
        ];
        ip[2] |= (ipv4_checksum(&ip) as u32) << 16;
        // SAFETY: ptr_at checked the 56 bytes are inside the packet.
        unsafe {
            (*msg)[0] = ip[0];
            (*msg)[1] = ip[1];
            (*msg)[2] = ip[2];
            (*msg)[3] = ip[3];
            (*msg)[4] = ip[4];
            (*msg)[5] = u32::to_be(0x0304_0000);
            (*msg)[6] = u32::to_be(mtu & 0xffff);
        }
        let Some(icmp) = ptr_at::<[u32; 9]>(ctx, L3 + 20) else {
            return drop(Reason::DropInternal);
        };
        let sum = fold(csum_words(icmp as *const u32, 36, 0));
        // SAFETY: in bounds as checked above.
        unsafe { (*msg)[5] |= (sum as u32) << 16 };
    } else {
        let Some(msg) = ptr_at::<[u32; 12]>(ctx, L3) else {
            return drop(Reason::DropInternal);
        };
        let len = (8 + PTB6_QUOTE) as u32;
        // SAFETY: ptr_at checked the 48 bytes are inside the packet.
        unsafe {
            (*msg)[0] = u32::to_be(0x6000_0000);
            (*msg)[1] = u32::to_be((len << 16) | ((IPPROTO_ICMPV6 as u32) << 8) | OUTER_TTL as u32);
            (*msg)[2] = p.dst[0];
            (*msg)[3] = p.dst[1];
            (*msg)[4] = p.dst[2];
            (*msg)[5] = p.dst[3];
            (*msg)[6] = p.src[0];
            (*msg)[7] = p.src[1];
            (*msg)[8] = p.src[2];
            (*msg)[9] = p.src[3];
            (*msg)[10] = u32::to_be(0x0200_0000);
            (*msg)[11] = u32::to_be(mtu);
        }
        // Pseudo-header: addresses (in the packet), length, next header.
        let Some(addrs) = ptr_at::<[u32; 8]>(ctx, L3 + 8) else {
            return drop(Reason::DropInternal);
        };
        let Some(icmp) = ptr_at::<[u32; 24]>(ctx, L3 + 40) else {
            return drop(Reason::DropInternal);
        };
        let mut tail = [u32::to_be(len), u32::to_be(IPPROTO_ICMPV6 as u32)];
        let mut sum = csum_words(addrs as *const u32, 32, 0);
        sum = csum_words(tail.as_mut_ptr(), 8, sum);
        sum = csum_words(icmp as *const u32, 96, sum);
        // SAFETY: in bounds as checked above.
        unsafe { (*msg)[10] |= (fold(sum) as u32) << 16 };
    }
    let ethertype = if p.family == FAMILY_V4 {
        ETH_P_IP
    } else {
        ETH_P_IPV6
    };
    if !write_eth::<L3>(ctx, old.src, old.dst, &old, ethertype) {
        return drop(Reason::DropInternal);
    }
    count(Reason::IcmpTooBig);
    xdp_action::XDP_TX
}

/// The floor: swap MACs, send back.
#[xdp]
pub fn fiberlb_floor(ctx: XdpContext) -> u32 {
    let Some(eth) = ptr_at::<Eth>(&ctx, 0) else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY: ptr_at checked the 14 bytes are inside the packet.
    unsafe {
        let e = *eth;
        (*eth).dst = e.src;
        (*eth).src = e.dst;
    }
    xdp_action::XDP_TX
}

/// For the peers of veths that carry an XDP program in native mode.
#[xdp]
pub fn fiberlb_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// Benchmark wrapper: puts the `BENCH` packet back (the previous run may
/// have rewritten or moved it), optionally with a new source port, then
/// tail-calls `JUMP[0]`.
#[xdp]
pub fn fiberlb_bench(ctx: XdpContext) -> u32 {
    let Some(bench) = BENCH.get(0) else {
        return xdp_action::XDP_ABORTED;
    };
    let frame = (ctx.data_end() - ctx.data()) as i32;
    let delta = frame - BENCH_BYTES as i32;
    if delta != 0 {
        // SAFETY: the helper checks the new head against the buffer.
        if unsafe { gen::bpf_xdp_adjust_head(ctx.ctx, delta) } != 0 {
            return xdp_action::XDP_ABORTED;
        }
    }
    let Some(pkt) = ptr_at::<[u64; BENCH_BYTES / 8]>(&ctx, 0) else {
        return xdp_action::XDP_ABORTED;
    };
    let src = bench.bytes.as_ptr() as *const u64;
    let dst = pkt as *mut u64;
    // Word by word: a struct copy becomes a byte-loop memmove call here.
    let mut i = 0;
    while i < BENCH_BYTES / 8 {
        // SAFETY: both are BENCH_BYTES long; the map value's bytes start 8
        // bytes in (8-byte aligned), the packet is checked above.
        unsafe { core::ptr::write_volatile(dst.add(i), core::ptr::read_volatile(src.add(i))) };
        i += 1;
    }
    if bench.vary_port != 0 {
        if let Some(seq) = BENCH_SEQ.get_ptr_mut(0) {
            // SAFETY: per-CPU slot; ptr_at checks the port's bytes.
            unsafe {
                *seq = (*seq).wrapping_add(1);
                if let Some(port) = ptr_at::<u16>(&ctx, 34) {
                    *port = (*seq as u16).to_be();
                }
            }
        }
    }
    // SAFETY: tail call into the program under test.
    unsafe { JUMP.tail_call(&ctx, 0) };
    xdp_action::XDP_ABORTED
}

/// Live-frames generator: sends every frame to `GEN_TARGET[0]` (an
/// ifindex), with a new source port each time when `BENCH.vary_port`.
#[xdp]
pub fn fiberlb_gen(ctx: XdpContext) -> u32 {
    let vary = BENCH.get(0).map(|b| b.vary_port).unwrap_or(0);
    if vary != 0 {
        if let Some(seq) = BENCH_SEQ.get_ptr_mut(0) {
            // SAFETY: per-CPU slot; ptr_at checks the port's bytes.
            unsafe {
                *seq = (*seq).wrapping_add(1);
                if let Some(port) = ptr_at::<u16>(&ctx, 34) {
                    *port = (*seq as u16).to_be();
                }
            }
        }
    }
    let target = GEN_TARGET.get(0).copied().unwrap_or(0);
    // SAFETY: plain helper call.
    unsafe { gen::bpf_redirect(target, 0) as u32 }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

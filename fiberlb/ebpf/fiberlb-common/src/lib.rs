//! What FiberLB's XDP program and its userspace agree on: the maps' keys
//! and values (`repr(C)`, no padding left implicit), their sizes, and the
//! hashes both sides compute (VIP slot, flow → Maglev entry).
//!
//! Table layout (docs/design/0008-fiberlb.md): everything the packet path
//! reads is an array, probed by the program (array lookups are inlined by
//! the JIT; hash-map lookups are calls). Userspace writes a whole new
//! generation of VIPs, backends and rings into the inactive copy and then
//! flips [`ACTIVE`](Config) in one 4-byte store, so no packet sees a
//! half-written table.
#![no_std]

/// Copies of the VIP, backend and config tables (active + being written).
pub const GENERATIONS: u32 = 2;
/// VIP hash-table slots per generation (power of two, open addressing).
pub const VIP_SLOTS: u32 = 256;
/// Slots probed for a VIP before giving up (userspace refuses to place a
/// VIP further than this from its home slot).
pub const VIP_PROBES: u32 = 8;
/// Services (VIPs) at most; a VIP's service index also indexes its counters.
pub const SERVICES_MAX: u32 = 64;
/// Maglev lookup-table size of every service (prime).
pub const RING_SIZE: u32 = 65537;
/// Ring copies per service (one active, one being written).
pub const RING_COPIES: u32 = 2;
/// Backend slots per generation; a backend keeps its slot while it exists.
pub const BACKEND_SLOTS: u32 = 4096;
/// Connection-table sets per CPU (power of two); each holds [`FLOW_WAYS`]
/// flows with least-recently-used replacement inside the set.
pub const FLOW_SETS: u32 = 16384;
/// Flows per set.
pub const FLOW_WAYS: usize = 4;
/// Connection-table entries per CPU.
pub const FLOWS_MAX: u32 = FLOW_SETS * FLOW_WAYS as u32;

/// `Vip::flags`: the slot holds a VIP.
pub const VIP_USED: u32 = 1;
/// `Vip::flags`: an address-only entry (port and protocol 0): the address
/// belongs to some VIP, so fragments and packets with options sent to it
/// are dropped (and counted) instead of passed to the kernel.
pub const VIP_ADDR_ONLY: u32 = 2;
/// `Backend::flags`: existing flows may keep using this backend.
pub const BACKEND_ALIVE: u32 = 1;

/// `Config::flags`: find the next hop with `bpf_fib_lookup`.
pub const CONFIG_FIB: u32 = 1;
/// `Config::flags`: a static next-hop MAC is configured (used when the FIB
/// has no answer, or always without [`CONFIG_FIB`]).
pub const CONFIG_NEIGH: u32 = 2;

pub const FAMILY_V4: u8 = 4;
pub const FAMILY_V6: u8 = 6;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// A virtual service: address (IPv4 in `addr[0]`, the rest zero), port and
/// protocol, all in network byte order as they sit in the packet.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VipKey {
    pub addr: [u32; 4],
    pub port: u16,
    pub proto: u8,
    pub family: u8,
}

/// One slot of the VIP table.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Vip {
    pub key: VipKey,
    /// [`VIP_USED`] or 0.
    pub flags: u32,
    /// Service index: counters, and with `ring` the Maglev table.
    pub service: u32,
    /// Which copy of the service's ring is current.
    pub ring: u32,
}

/// One backend slot of a generation.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backend {
    /// Outer destination (IPv4 in `addr[0]`), network byte order.
    pub addr: [u32; 4],
    /// Serial of the backend that owns the slot: flows remember it, so a
    /// reused slot is never mistaken for the old backend.
    pub id: u32,
    /// [`BACKEND_ALIVE`] or 0.
    pub flags: u32,
    pub family: u8,
    pub _pad: [u8; 3],
}

/// The node's side of the tunnel, per generation.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    pub flags: u32,
    /// Largest IP packet the path to the backends carries (the link MTU).
    pub mtu: u32,
    /// Outer source addresses, network byte order.
    pub src_v4: u32,
    pub src_v6: [u32; 4],
    /// Next hop's MAC when [`CONFIG_NEIGH`] is set.
    pub neigh_mac: [u8; 6],
    pub _pad: [u8; 2],
}

/// The benchmark wrapper's packet (`BENCH` map): restored before every
/// run, so a path that rewrites the packet can be timed with many repeats.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BenchPacket {
    /// Bytes of `bytes` that make the frame (at most [`BENCH_BYTES`]).
    pub len: u32,
    /// Non-zero: write a new TCP/UDP source port before every run (each
    /// run is a new flow).
    pub vary_port: u32,
    pub bytes: [u8; BENCH_BYTES],
}

/// Largest frame the benchmark wrapper restores.
pub const BENCH_BYTES: usize = 64;

/// Connection-table key: the client's 5-tuple as it sits in the packet.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowKey {
    pub src: [u32; 4],
    pub dst: [u32; 4],
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub family: u8,
    pub _pad: [u8; 2],
}

/// Connection-table value: the backend a flow was sent to.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flow {
    pub slot: u32,
    pub id: u32,
}

/// One flow of a set.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowWay {
    pub key: FlowKey,
    pub flow: Flow,
    /// The set's clock when last used (0: empty).
    pub used: u64,
}

/// One set of the per-CPU connection table (a per-CPU array: lookups are
/// inlined by the JIT, where a hash map's are calls).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowSet {
    pub ways: [FlowWay; FLOW_WAYS],
    pub clock: u64,
}

/// The set of a flow (other bits of the hash than the ring index uses).
#[inline(always)]
pub fn flow_set(hash: u32) -> u32 {
    hash.rotate_left(16) & (FLOW_SETS - 1)
}

/// Per-CPU counters of a VIP or a backend.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub packets: u64,
    pub bytes: u64,
    pub new_flows: u64,
    /// Packets for the VIP that found no backend (empty or drained pool).
    pub misses: u64,
}

/// Per-CPU counters of what happened to packets that are not sent to a
/// backend (index into the `REASONS` map).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// XDP_PASS: not IPv4/IPv6 (ARP, LLDP, ...), or an EtherType we do not parse.
    PassNotIp = 0,
    /// XDP_PASS: IP but not for a VIP (or not TCP/UDP).
    PassNotVip = 1,
    /// XDP_PASS: shorter than its headers claim (the kernel drops it too).
    PassTruncated = 2,
    /// XDP_DROP: for a VIP but a fragment (no ports to hash).
    DropFragment = 3,
    /// XDP_DROP: for a VIP with IPv4 options or IPv6 extension headers.
    DropIpOptions = 4,
    /// XDP_DROP: for a VIP with a length field that disagrees with the frame.
    DropBadLength = 5,
    /// XDP_DROP: for a VIP whose pool has no backend.
    DropNoBackend = 6,
    /// XDP_TX: too big to encapsulate, answered with ICMP frag-needed / packet-too-big.
    IcmpTooBig = 7,
    /// XDP_DROP: too big and IPv4 without DF (we cannot fragment).
    DropTooBigNoDf = 8,
    /// XDP_DROP: no next hop (FIB had no answer and no static neighbour).
    DropNoRoute = 9,
    /// XDP_DROP: a helper failed (adjust head/tail).
    DropInternal = 10,
    /// decap: IP-in-IP removed, XDP_PASS.
    Decapsulated = 11,
    /// decap: IP-in-IP with outer IPv4 options or a bogus length, XDP_DROP.
    DecapMalformed = 12,
}

/// Number of [`Reason`]s (the `REASONS` map's size).
pub const REASONS: u32 = 13;

impl Reason {
    /// Every reason, in index order, with its metric label.
    pub const ALL: [(Reason, &'static str); REASONS as usize] = [
        (Reason::PassNotIp, "pass_not_ip"),
        (Reason::PassNotVip, "pass_not_vip"),
        (Reason::PassTruncated, "pass_truncated"),
        (Reason::DropFragment, "drop_fragment"),
        (Reason::DropIpOptions, "drop_ip_options"),
        (Reason::DropBadLength, "drop_bad_length"),
        (Reason::DropNoBackend, "drop_no_backend"),
        (Reason::IcmpTooBig, "icmp_too_big"),
        (Reason::DropTooBigNoDf, "drop_too_big_no_df"),
        (Reason::DropNoRoute, "drop_no_route"),
        (Reason::DropInternal, "drop_internal"),
        (Reason::Decapsulated, "decapsulated"),
        (Reason::DecapMalformed, "decap_malformed"),
    ];
}

#[inline(always)]
fn mix(h: u32, w: u32) -> u32 {
    let k = w
        .wrapping_mul(0xcc9e_2d51)
        .rotate_left(15)
        .wrapping_mul(0x1b87_3593);
    (h ^ k)
        .rotate_left(13)
        .wrapping_mul(5)
        .wrapping_add(0xe654_6b64)
}

#[inline(always)]
fn finish(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// Home slot of a VIP in the VIP table (probing goes on linearly).
#[inline(always)]
pub fn vip_slot(key: &VipKey) -> u32 {
    let mut h = 0x9747_b28c;
    h = mix(h, key.addr[0]);
    h = mix(h, key.addr[1]);
    h = mix(h, key.addr[2]);
    h = mix(h, key.addr[3]);
    h = mix(
        h,
        (key.port as u32) | ((key.proto as u32) << 16) | ((key.family as u32) << 24),
    );
    finish(h) & (VIP_SLOTS - 1)
}

/// Hash of a flow's 5-tuple: its new backend is `ring[hash % RING_SIZE]`.
#[inline(always)]
pub fn flow_hash(key: &FlowKey) -> u32 {
    let mut h = 0x3c6e_f372;
    h = mix(h, key.src[0]);
    h = mix(h, key.src[1]);
    h = mix(h, key.src[2]);
    h = mix(h, key.src[3]);
    h = mix(h, key.dst[0]);
    h = mix(h, key.dst[1]);
    h = mix(h, key.dst[2]);
    h = mix(h, key.dst[3]);
    h = mix(h, (key.sport as u32) | ((key.dport as u32) << 16));
    h = mix(h, (key.proto as u32) | ((key.family as u32) << 8));
    finish(h)
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: every type is repr(C), Copy, with explicit padding fields so
    // that any bit pattern is valid and no byte is uninitialized.
    unsafe impl aya::Pod for super::VipKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Vip {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Backend {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Config {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::FlowKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Flow {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::FlowWay {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::FlowSet {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Counters {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::BenchPacket {}
}

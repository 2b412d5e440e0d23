//! FiberLB's XDP programs run on crafted packets through the kernel's
//! `BPF_PROG_TEST_RUN`: verdicts, output bytes (outer headers, checksums,
//! the inner packet untouched) and counters for every path. Needs root
//! (CAP_BPF) and the objects built by scripts/build-ebpf.sh; CI has both.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use aya::programs::TestRun;
use aya::programs::TestRunOptions;
use etherparse::PacketBuilder;
use fiberlb::dataplane::{
    BackendSpec, Dataplane, NodeSpec, Proto, ServiceSpec, Stats, Totals, VipAddr,
};
use fiberlb::decap::Decap;

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;

const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const LB_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const NEXT_HOP: [u8; 6] = [0x02, 0, 0, 0, 0, 0x99];
const LB_V4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const CLIENT_V4: [u8; 4] = [192, 0, 2, 7];
const VIP_V4: [u8; 4] = [198, 51, 100, 10];
const CLIENT_V6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7];
const VIP_V6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

fn lb_v6() -> Ipv6Addr {
    "fd00::1".parse().unwrap()
}

fn node() -> NodeSpec {
    NodeSpec {
        src_v4: Some(LB_V4),
        src_v6: Some(lb_v6()),
        mtu: 1500,
        fib: false,
        neigh_mac: Some(NEXT_HOP),
    }
}

fn vip4(port: u16, proto: Proto) -> VipAddr {
    VipAddr {
        addr: IpAddr::from(VIP_V4),
        port,
        proto,
    }
}

fn vip6(port: u16) -> VipAddr {
    VipAddr {
        addr: IpAddr::from(VIP_V6),
        port,
        proto: Proto::Tcp,
    }
}

fn backend(addr: &str, weight: u32) -> BackendSpec {
    BackendSpec {
        addr: addr.parse().unwrap(),
        weight,
        healthy: true,
    }
}

/// Pins the calling thread to the CPU it runs on: the flow table is per
/// CPU, so a test that moved between CPUs would see another table.
fn pin_to_this_cpu() {
    // SAFETY: plain libc calls on a zeroed cpu_set_t of this thread.
    unsafe {
        let cpu = libc::sched_getcpu();
        assert!(cpu >= 0, "sched_getcpu");
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu as usize, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set),
            0,
            "sched_setaffinity"
        );
    }
}

fn load() -> Dataplane {
    pin_to_this_cpu();
    match Dataplane::load() {
        Ok(dp) => dp,
        Err(e) => panic!(
            "cannot load the XDP program (these tests need root and scripts/build-ebpf.sh): {e}"
        ),
    }
}

fn run(dp: &Dataplane, prog: &str, packet: &[u8]) -> (u32, Vec<u8>) {
    run_xdp(dp.xdp(prog).unwrap(), packet)
}

/// One `BPF_PROG_TEST_RUN` of `prog` on `packet`: verdict and output frame.
fn run_xdp(prog: &aya::programs::Xdp, packet: &[u8]) -> (u32, Vec<u8>) {
    let mut out = vec![0u8; packet.len() + 256];
    let result = prog
        .test_run(TestRunOptions {
            data_in: Some(packet),
            data_out: Some(&mut out),
            ..Default::default()
        })
        .expect("BPF_PROG_TEST_RUN");
    out.truncate(result.data_size_out as usize);
    (result.return_value, out)
}

/// Programs `dp` with one service per `(vip, backend address)`, weight 1.
fn serve(dp: &mut Dataplane, services: &[(VipAddr, &str)]) {
    let specs: Vec<ServiceSpec> = services
        .iter()
        .map(|&(vip, addr)| ServiceSpec {
            vip,
            backends: vec![backend(addr, 1)],
        })
        .collect();
    dp.apply(&node(), &specs).unwrap();
}

fn tcp4(sport: u16, dst: [u8; 4], dport: u16, payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(CLIENT_MAC, LB_MAC)
        .ipv4(CLIENT_V4, dst, 61)
        .tcp(sport, dport, 1000, 65535)
        .syn();
    let mut v = Vec::new();
    b.write(&mut v, payload).unwrap();
    v
}

fn udp4(sport: u16, dst: [u8; 4], dport: u16, payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(CLIENT_MAC, LB_MAC)
        .ipv4(CLIENT_V4, dst, 61)
        .udp(sport, dport);
    let mut v = Vec::new();
    b.write(&mut v, payload).unwrap();
    v
}

fn tcp6(sport: u16, dst: [u8; 16], dport: u16, payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(CLIENT_MAC, LB_MAC)
        .ipv6(CLIENT_V6, dst, 61)
        .tcp(sport, dport, 1000, 65535)
        .syn();
    let mut v = Vec::new();
    b.write(&mut v, payload).unwrap();
    v
}

/// One's-complement sum of `bytes` (0xffff over data with a correct checksum).
fn ones_sum(bytes: &[u8], mut sum: u32) -> u16 {
    for pair in bytes.chunks(2) {
        let hi = pair[0] as u32;
        let lo = *pair.get(1).unwrap_or(&0) as u32;
        sum += (hi << 8) | lo;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Checks an IPv4-in-IPv4 frame toward `backend` carrying `inner` (the
/// original frame) and returns nothing: panics with what differs.
fn assert_ipip4(out: &[u8], inner: &[u8], backend: Ipv4Addr, inner_proto: u8) {
    assert_eq!(&out[0..6], &NEXT_HOP, "dst MAC is the next hop");
    assert_eq!(&out[6..12], &LB_MAC, "src MAC is ours");
    assert_eq!(be16(out, 12), 0x0800);
    let ip = &out[14..34];
    assert_eq!(ip[0], 0x45, "version 4, no options");
    assert_eq!(
        be16(ip, 2) as usize,
        inner.len() - 14 + 20,
        "outer total length"
    );
    assert_eq!(ip[8], 64, "outer TTL");
    assert_eq!(ip[9], inner_proto);
    assert_eq!(&ip[12..16], &LB_V4.octets());
    assert_eq!(&ip[16..20], &backend.octets());
    assert_eq!(ones_sum(ip, 0), 0xffff, "outer header checksum");
    assert_eq!(&out[34..], &inner[14..], "inner packet untouched");
}

fn assert_ipip6(out: &[u8], inner: &[u8], backend: Ipv6Addr, inner_proto: u8) {
    assert_eq!(&out[0..6], &NEXT_HOP);
    assert_eq!(&out[6..12], &LB_MAC);
    assert_eq!(be16(out, 12), 0x86dd);
    let ip = &out[14..54];
    assert_eq!(ip[0] >> 4, 6);
    assert_eq!(be16(ip, 4) as usize, inner.len() - 14, "payload length");
    assert_eq!(ip[6], inner_proto, "next header");
    assert_eq!(ip[7], 64, "hop limit");
    assert_eq!(&ip[8..24], &lb_v6().octets());
    assert_eq!(&ip[24..40], &backend.octets());
    assert_eq!(&out[54..], &inner[14..], "inner packet untouched");
}

fn reason(stats: &Stats, label: &str) -> u64 {
    stats
        .reasons
        .iter()
        .find(|(l, _)| *l == label)
        .unwrap_or_else(|| panic!("no reason {label}"))
        .1
}

fn backend_totals(stats: &Stats, vip: VipAddr, addr: &str) -> Totals {
    stats.backends[&(vip, addr.parse().unwrap())]
}

/// The backend (outer destination) an IPv4-in-IPv4 frame goes to.
fn outer_dst4(out: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(out[30], out[31], out[32], out[33])
}

#[test]
fn ipv4_tcp_to_a_vip_is_encapsulated_toward_its_backend() {
    let mut dp = load();
    let vip = vip4(80, Proto::Tcp);
    dp.apply(
        &node(),
        &[ServiceSpec {
            vip,
            backends: vec![backend("10.1.0.11", 100)],
        }],
    )
    .unwrap();
    let pkt = tcp4(40000, VIP_V4, 80, b"GET / HTTP/1.1\r\n\r\n");
    let (verdict, out) = run(&dp, "fiberlb_lb", &pkt);
    assert_eq!(verdict, XDP_TX);
    assert_ipip4(&out, &pkt, "10.1.0.11".parse().unwrap(), 4);
    let stats = dp.stats().unwrap();
    let v = stats.vips[&vip];
    assert_eq!((v.packets, v.new_flows, v.misses), (1, 1, 0));
    assert_eq!(v.bytes, pkt.len() as u64);
    let b = backend_totals(&stats, vip, "10.1.0.11");
    assert_eq!((b.packets, b.new_flows), (1, 1));
    // The same flow again: not new.
    let (verdict, _) = run(&dp, "fiberlb_lb", &pkt);
    assert_eq!(verdict, XDP_TX);
    let stats = dp.stats().unwrap();
    assert_eq!(stats.vips[&vip].packets, 2);
    assert_eq!(stats.vips[&vip].new_flows, 1);
}

#[test]
fn udp_and_other_ports_and_protocols() {
    let mut dp = load();
    let udp = vip4(53, Proto::Udp);
    serve(&mut dp, &[(udp, "10.1.0.12")]);
    let pkt = udp4(5353, VIP_V4, 53, b"query");
    let (verdict, out) = run(&dp, "fiberlb_lb", &pkt);
    assert_eq!(verdict, XDP_TX);
    assert_ipip4(&out, &pkt, "10.1.0.12".parse().unwrap(), 4);
    // TCP to the UDP VIP's port, and UDP to another port: not for a VIP.
    for pkt in [tcp4(1, VIP_V4, 53, b""), udp4(1, VIP_V4, 54, b"")] {
        let (verdict, out) = run(&dp, "fiberlb_lb", &pkt);
        assert_eq!(verdict, XDP_PASS);
        assert_eq!(out, pkt, "passed packets are untouched");
    }
    assert_eq!(reason(&dp.stats().unwrap(), "pass_not_vip"), 2);
}

#[test]
fn ipv6_vip_is_encapsulated_ipv6_in_ipv6_and_ipv4_vip_may_use_ipv6_backends() {
    let mut dp = load();
    let v6 = vip6(443);
    let v4 = vip4(80, Proto::Tcp);
    serve(&mut dp, &[(v6, "fd00::11"), (v4, "fd00::12")]);
    let pkt = tcp6(40000, VIP_V6, 443, b"hello");
    let (verdict, out) = run(&dp, "fiberlb_lb", &pkt);
    assert_eq!(verdict, XDP_TX);
    assert_ipip6(&out, &pkt, "fd00::11".parse().unwrap(), 41);
    let pkt = tcp4(40000, VIP_V4, 80, b"hello");
    let (verdict, out) = run(&dp, "fiberlb_lb", &pkt);
    assert_eq!(verdict, XDP_TX);
    assert_ipip6(&out, &pkt, "fd00::12".parse().unwrap(), 4);
}

#[test]
fn vlan_tag_is_kept() {
    let mut dp = load();
    serve(&mut dp, &[(vip4(80, Proto::Tcp), "10.1.0.11")]);
    let b = PacketBuilder::ethernet2(CLIENT_MAC, LB_MAC)
        .single_vlan(etherparse::VlanId::try_new(42).unwrap())
        .ipv4(CLIENT_V4, VIP_V4, 61)
        .tcp(40000, 80, 1, 1000);
    let mut pkt = Vec::new();
    b.write(&mut pkt, b"tagged").unwrap();
    let (verdict, out) = run(&dp, "fiberlb_lb", &pkt);
    assert_eq!(verdict, XDP_TX);
    assert_eq!(&out[0..6], &NEXT_HOP);
    assert_eq!(&out[12..16], &pkt[12..16], "TPID and TCI kept");
    assert_eq!(be16(&out, 16), 0x0800);
    assert_eq!(out[18], 0x45);
    assert_eq!(ones_sum(&out[18..38], 0), 0xffff);
    assert_eq!(&out[38..], &pkt[18..], "inner packet untouched");
}

#[test]
fn not_for_a_vip_passes_untouched_and_is_counted() {
    let mut dp = load();
    serve(&mut dp, &[(vip4(80, Proto::Tcp), "10.1.0.11")]);
    let other = tcp4(40000, [198, 51, 100, 11], 80, b"x");
    let mut arp = vec![0u8; 42];
    arp[0..6].copy_from_slice(&[0xff; 6]);
    arp[6..12].copy_from_slice(&CLIENT_MAC);
    arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    let mut truncated = tcp4(40000, VIP_V4, 80, b"");
    truncated.truncate(30); // Ethernet + 16 of the 20 IPv4 header bytes
    let mut icmp = tcp4(1, VIP_V4, 80, b"");
    icmp[23] = 1; // protocol ICMP (checksum now wrong: we do not care)
    for (pkt, label) in [
        (&other, "pass_not_vip"),
        (&arp, "pass_not_ip"),
        (&truncated, "pass_truncated"),
        (&icmp, "pass_not_vip"),
    ] {
        let before = reason(&dp.stats().unwrap(), label);
        let (verdict, out) = run(&dp, "fiberlb_lb", pkt);
        assert_eq!(verdict, XDP_PASS, "{label}");
        assert_eq!(&out, pkt, "{label}: untouched");
        assert_eq!(reason(&dp.stats().unwrap(), label), before + 1, "{label}");
    }
}

#[test]
fn fragments_options_and_bogus_lengths_to_a_vip_are_dropped_elsewhere_passed() {
    let mut dp = load();
    serve(&mut dp, &[(vip4(80, Proto::Tcp), "10.1.0.11")]);
    let base = tcp4(40000, VIP_V4, 80, b"0123456789abcdef");
    // More-fragments set; then a non-first fragment (offset 8 bytes).
    let mut frag = base.clone();
    frag[20] |= 0x20;
    let mut later = base.clone();
    later[21] = 1;
    // IPv4 options: IHL 6 and a NOP option word in front of TCP.
    let mut opts = base[..34].to_vec();
    opts[14] = 0x46;
    let tot = be16(&base, 16) + 4;
    opts[16..18].copy_from_slice(&tot.to_be_bytes());
    opts.extend_from_slice(&[1, 1, 1, 0]);
    opts.extend_from_slice(&base[34..]);
    // Total length beyond the frame; and shorter than IP + TCP headers.
    let mut long = base.clone();
    long[16..18].copy_from_slice(&2000u16.to_be_bytes());
    let mut short = base.clone();
    short[16..18].copy_from_slice(&30u16.to_be_bytes());
    for (pkt, label) in [
        (&frag, "drop_fragment"),
        (&later, "drop_fragment"),
        (&opts, "drop_ip_options"),
        (&long, "drop_bad_length"),
        (&short, "drop_bad_length"),
    ] {
        let before = reason(&dp.stats().unwrap(), label);
        let (verdict, _) = run(&dp, "fiberlb_lb", pkt);
        assert_eq!(verdict, XDP_DROP, "{label}");
        assert_eq!(reason(&dp.stats().unwrap(), label), before + 1, "{label}");
        // The same packet to an address that is no VIP: the kernel's business.
        let mut elsewhere = pkt.clone();
        elsewhere[33] = 99;
        let (verdict, out) = run(&dp, "fiberlb_lb", &elsewhere);
        assert_eq!(verdict, XDP_PASS, "{label} elsewhere");
        assert_eq!(out, elsewhere);
    }
    // IPv6 with a fragment header to the IPv6 VIP's address.
    serve(&mut dp, &[(vip6(443), "fd00::11")]);
    let mut frag6 = tcp6(40000, VIP_V6, 443, b"0123456789abcdef");
    frag6[20] = 44;
    let (verdict, _) = run(&dp, "fiberlb_lb", &frag6);
    assert_eq!(verdict, XDP_DROP);
    assert_eq!(reason(&dp.stats().unwrap(), "drop_fragment"), 3);
}

#[test]
fn too_big_ipv4_with_df_gets_frag_needed_without_df_is_dropped() {
    let mut dp = load();
    let vip = vip4(80, Proto::Tcp);
    serve(&mut dp, &[(vip, "10.1.0.11")]);
    // 1500-byte IP packet: 20 more bytes of outer header do not fit.
    let mut pkt = tcp4(40000, VIP_V4, 80, &[7u8; 1460]);
    assert_eq!(be16(&pkt, 16), 1500);
    pkt[20] |= 0x40; // DF
    pkt[24] = 0;
    pkt[25] = 0;
    let c = !ones_sum(&pkt[14..34], 0);
    pkt[24..26].copy_from_slice(&c.to_be_bytes());
    let (verdict, out) = run(&dp, "fiberlb_lb", &pkt);
    assert_eq!(verdict, XDP_TX);
    assert_eq!(out.len(), 14 + 56, "IP + ICMP + quoted header + 8 bytes");
    assert_eq!(&out[0..6], &CLIENT_MAC, "back to the client");
    assert_eq!(&out[6..12], &LB_MAC);
    let ip = &out[14..34];
    assert_eq!(ip[0], 0x45);
    assert_eq!(be16(ip, 2), 56);
    assert_eq!(ip[9], 1, "ICMP");
    assert_eq!(&ip[12..16], &VIP_V4, "from the VIP");
    assert_eq!(&ip[16..20], &CLIENT_V4);
    assert_eq!(ones_sum(ip, 0), 0xffff);
    let icmp = &out[34..];
    assert_eq!(
        (icmp[0], icmp[1]),
        (3, 4),
        "destination unreachable, fragmentation needed"
    );
    assert_eq!(
        be16(icmp, 6),
        1480,
        "next-hop MTU leaves room for the outer header"
    );
    assert_eq!(ones_sum(icmp, 0), 0xffff, "ICMP checksum");
    assert_eq!(
        &icmp[8..36],
        &pkt[14..42],
        "quotes the IP header and 8 bytes"
    );
    let stats = dp.stats().unwrap();
    assert_eq!(reason(&stats, "icmp_too_big"), 1);
    // Without DF: dropped (XDP cannot fragment).
    let mut nodf = tcp4(40001, VIP_V4, 80, &[7u8; 1460]);
    nodf[20] &= !0x40;
    let (verdict, _) = run(&dp, "fiberlb_lb", &nodf);
    assert_eq!(verdict, XDP_DROP);
    assert_eq!(reason(&dp.stats().unwrap(), "drop_too_big_no_df"), 1);
    // 1480 bytes fit exactly.
    let fits = tcp4(40002, VIP_V4, 80, &[7u8; 1440]);
    let (verdict, out) = run(&dp, "fiberlb_lb", &fits);
    assert_eq!(verdict, XDP_TX);
    assert_eq!(be16(&out, 16), 1500);
}

#[test]
fn too_big_ipv6_gets_packet_too_big() {
    let mut dp = load();
    serve(&mut dp, &[(vip6(443), "fd00::11")]);
    let pkt = tcp6(40000, VIP_V6, 443, &[9u8; 1440]); // 1500-byte IPv6 packet
    let (verdict, out) = run(&dp, "fiberlb_lb", &pkt);
    assert_eq!(verdict, XDP_TX);
    assert_eq!(out.len(), 14 + 40 + 8 + 88);
    assert_eq!(&out[0..6], &CLIENT_MAC);
    assert_eq!(be16(&out, 12), 0x86dd);
    let ip = &out[14..54];
    assert_eq!(be16(ip, 4), 96, "payload length");
    assert_eq!(ip[6], 58, "ICMPv6");
    assert_eq!(&ip[8..24], &VIP_V6);
    assert_eq!(&ip[24..40], &CLIENT_V6);
    let icmp = &out[54..];
    assert_eq!((icmp[0], icmp[1]), (2, 0), "packet too big");
    assert_eq!(
        u32::from_be_bytes([icmp[4], icmp[5], icmp[6], icmp[7]]),
        1460
    );
    assert_eq!(&icmp[8..], &pkt[14..14 + 88], "quotes the invoking packet");
    // Checksum over the pseudo-header and the message.
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&ip[8..40]);
    pseudo.extend_from_slice(&96u32.to_be_bytes());
    pseudo.extend_from_slice(&58u32.to_be_bytes());
    pseudo.extend_from_slice(icmp);
    assert_eq!(ones_sum(&pseudo, 0), 0xffff, "ICMPv6 checksum");
}

#[test]
fn existing_flows_keep_their_backend_when_the_pool_changes() {
    let mut dp = load();
    let vip = vip4(80, Proto::Tcp);
    let with = |backends: Vec<BackendSpec>| [ServiceSpec { vip, backends }];
    dp.apply(&node(), &with(vec![backend("10.1.0.11", 1)]))
        .unwrap();
    let flows: Vec<Vec<u8>> = (0..200).map(|p| tcp4(20000 + p, VIP_V4, 80, b"")).collect();
    for f in &flows {
        let (verdict, out) = run(&dp, "fiberlb_lb", f);
        assert_eq!(verdict, XDP_TX);
        assert_eq!(outer_dst4(&out), Ipv4Addr::new(10, 1, 0, 11));
    }
    // Two more backends: the old flows stay, new flows spread.
    dp.apply(
        &node(),
        &with(vec![
            backend("10.1.0.11", 1),
            backend("10.1.0.12", 1),
            backend("10.1.0.13", 1),
        ]),
    )
    .unwrap();
    for f in &flows {
        let (_, out) = run(&dp, "fiberlb_lb", f);
        assert_eq!(
            outer_dst4(&out),
            Ipv4Addr::new(10, 1, 0, 11),
            "established flow moved"
        );
    }
    let mut moved = 0;
    for p in 0..300 {
        let (_, out) = run(&dp, "fiberlb_lb", &tcp4(30000 + p, VIP_V4, 80, b""));
        if outer_dst4(&out) != Ipv4Addr::new(10, 1, 0, 11) {
            moved += 1;
        }
    }
    assert!(moved > 120, "new flows use the new backends ({moved}/300)");
    // Drained (weight 0): existing flows stay; no new flow goes there.
    dp.apply(
        &node(),
        &with(vec![
            backend("10.1.0.11", 0),
            backend("10.1.0.12", 1),
            backend("10.1.0.13", 1),
        ]),
    )
    .unwrap();
    for f in &flows {
        let (_, out) = run(&dp, "fiberlb_lb", f);
        assert_eq!(outer_dst4(&out), Ipv4Addr::new(10, 1, 0, 11));
    }
    for p in 0..200 {
        let (_, out) = run(&dp, "fiberlb_lb", &tcp4(50000 + p, VIP_V4, 80, b""));
        assert_ne!(
            outer_dst4(&out),
            Ipv4Addr::new(10, 1, 0, 11),
            "drained got a new flow"
        );
    }
    // Unhealthy: its flows move to the others.
    let mut down = backend("10.1.0.11", 1);
    down.healthy = false;
    dp.apply(
        &node(),
        &with(vec![down, backend("10.1.0.12", 1), backend("10.1.0.13", 1)]),
    )
    .unwrap();
    for f in &flows {
        let (verdict, out) = run(&dp, "fiberlb_lb", f);
        assert_eq!(verdict, XDP_TX);
        assert_ne!(
            outer_dst4(&out),
            Ipv4Addr::new(10, 1, 0, 11),
            "sent to a dead backend"
        );
    }
}

#[test]
fn weighted_pool_spreads_new_flows_by_weight() {
    let mut dp = load();
    let vip = vip4(80, Proto::Tcp);
    dp.apply(
        &node(),
        &[ServiceSpec {
            vip,
            backends: vec![
                backend("10.1.0.11", 1),
                backend("10.1.0.12", 2),
                backend("10.1.0.13", 1),
            ],
        }],
    )
    .unwrap();
    let mut counts = std::collections::HashMap::new();
    let n = 4000u16;
    for p in 0..n {
        let (verdict, out) = run(&dp, "fiberlb_lb", &tcp4(10000 + p, VIP_V4, 80, b""));
        assert_eq!(verdict, XDP_TX);
        *counts.entry(outer_dst4(&out)).or_insert(0u32) += 1;
    }
    let share = |a: [u8; 4]| counts.get(&Ipv4Addr::from(a)).copied().unwrap_or(0) as f64 / n as f64;
    for (addr, want) in [
        ([10, 1, 0, 11], 0.25),
        ([10, 1, 0, 12], 0.5),
        ([10, 1, 0, 13], 0.25),
    ] {
        let got = share(addr);
        assert!(
            (got - want).abs() < 0.04,
            "{addr:?}: {got:.3} of flows, want {want}"
        );
    }
    let stats = dp.stats().unwrap();
    assert_eq!(stats.vips[&vip].new_flows, n as u64);
    let per_backend: u64 = stats.backends.values().map(|t| t.new_flows).sum();
    assert_eq!(per_backend, n as u64);
}

#[test]
fn empty_pool_drops_and_counts_misses() {
    let mut dp = load();
    let vip = vip4(80, Proto::Tcp);
    dp.apply(
        &node(),
        &[ServiceSpec {
            vip,
            backends: vec![],
        }],
    )
    .unwrap();
    let (verdict, _) = run(&dp, "fiberlb_lb", &tcp4(1, VIP_V4, 80, b""));
    assert_eq!(verdict, XDP_DROP);
    let stats = dp.stats().unwrap();
    assert_eq!(stats.vips[&vip].misses, 1);
    assert_eq!(reason(&stats, "drop_no_backend"), 1);
    // Removing the VIP: its packets pass to the kernel.
    dp.apply(&node(), &[]).unwrap();
    let (verdict, _) = run(&dp, "fiberlb_lb", &tcp4(1, VIP_V4, 80, b""));
    assert_eq!(verdict, XDP_PASS);
}

#[test]
fn decap_restores_the_original_packet() {
    let mut dp = load();
    serve(
        &mut dp,
        &[(vip4(80, Proto::Tcp), "10.1.0.11"), (vip6(443), "fd00::11")],
    );
    let decap = Decap::load().expect("load the decap program");
    for pkt in [
        tcp4(40000, VIP_V4, 80, b"four"),
        tcp6(40000, VIP_V6, 443, b"six"),
    ] {
        let (verdict, tunneled) = run(&dp, "fiberlb_lb", &pkt);
        assert_eq!(verdict, XDP_TX);
        let (verdict, out) = run_xdp(decap.xdp(), &tunneled);
        assert_eq!(verdict, XDP_PASS);
        assert_eq!(&out[0..12], &tunneled[0..12], "MACs as received");
        assert_eq!(
            &out[12..],
            &pkt[12..],
            "EtherType and inner packet restored"
        );
    }
    // Plain traffic passes untouched.
    let plain = tcp4(1, [10, 1, 0, 11], 22, b"ssh");
    let (verdict, out) = run_xdp(decap.xdp(), &plain);
    assert_eq!(verdict, XDP_PASS);
    assert_eq!(out, plain);
    assert_eq!(decap.counts().unwrap(), (2, 0));
}

#[test]
fn garbage_never_yields_a_malformed_packet() {
    let mut dp = load();
    serve(
        &mut dp,
        &[(vip4(80, Proto::Tcp), "10.1.0.11"), (vip6(443), "fd00::11")],
    );
    // Deterministic pseudo-random mutations of valid VIP packets.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let bases = [
        tcp4(40000, VIP_V4, 80, &[1u8; 64]),
        tcp6(40000, VIP_V6, 443, &[1u8; 64]),
    ];
    let mut sent = 0;
    for i in 0..3000 {
        let mut pkt = bases[i % 2].clone();
        let cut = 14 + (next() as usize % (pkt.len() - 13));
        if next() % 3 == 0 {
            pkt.truncate(cut);
        }
        for _ in 0..(next() % 4) {
            let at = 12 + next() as usize % (pkt.len() - 12);
            pkt[at] = next() as u8;
        }
        let (verdict, out) = run(&dp, "fiberlb_lb", &pkt);
        match verdict {
            XDP_PASS => assert_eq!(out, pkt, "passed packets are untouched"),
            XDP_DROP => {}
            XDP_TX => {
                sent += 1;
                // Either a tunnel packet with a valid outer header around the
                // untouched input, or an ICMP error.
                match be16(&out, 12) {
                    0x0800 if out[23] == 4 || out[23] == 41 => {
                        assert_eq!(ones_sum(&out[14..34], 0), 0xffff);
                        assert_eq!(be16(&out, 16), be16(&out, 36) + 20, "outer length");
                        assert_eq!(&out[34..], &pkt[14..pkt.len().min(14 + out.len() - 34)]);
                    }
                    0x86dd if out[20] == 4 || out[20] == 41 => {
                        assert_eq!(be16(&out, 18), be16(&out, 58) + 40, "payload length");
                        assert_eq!(&out[54..], &pkt[14..pkt.len().min(14 + out.len() - 54)]);
                    }
                    t => panic!("unexpected XDP_TX frame, EtherType {t:#x}: {out:?}"),
                }
            }
            v => panic!("verdict {v}"),
        }
    }
    assert!(sent > 100, "some mutations still reach a backend ({sent})");
}

/// The kernel's flow key of `tcp4(sport, VIP_V4, 80, ..)`.
fn flow_key4(sport: u16) -> fiberlb_common::FlowKey {
    fiberlb_common::FlowKey {
        src: [u32::from_ne_bytes(CLIENT_V4), 0, 0, 0],
        dst: [u32::from_ne_bytes(VIP_V4), 0, 0, 0],
        sport: sport.to_be(),
        dport: 80u16.to_be(),
        proto: 6,
        family: 4,
        _pad: [0; 2],
    }
}

#[test]
fn flow_table_replaces_the_least_recently_used_flow_of_a_full_set() {
    use fiberlb_common::{flow_hash, flow_set, FLOW_WAYS};
    // FLOW_WAYS + 1 client ports whose flows share one set.
    let home = flow_set(flow_hash(&flow_key4(1000)));
    let ports: Vec<u16> = (1000..u16::MAX)
        .filter(|&p| flow_set(flow_hash(&flow_key4(p))) == home)
        .take(FLOW_WAYS + 1)
        .collect();
    assert_eq!(ports.len(), FLOW_WAYS + 1);
    let mut dp = load();
    let vip = vip4(80, Proto::Tcp);
    let a = Ipv4Addr::new(10, 1, 0, 11);
    serve(&mut dp, &[(vip, "10.1.0.11")]);
    let send = |dp: &Dataplane, port: u16| {
        let (verdict, out) = run(dp, "fiberlb_lb", &tcp4(port, VIP_V4, 80, b""));
        assert_eq!(verdict, XDP_TX);
        outer_dst4(&out)
    };
    for &p in &ports[..FLOW_WAYS] {
        assert_eq!(send(&dp, p), a);
    }
    send(&dp, ports[0]); // the first flow is now the most recently used
                         // A drained: its flows stay, new flows go to B.
    dp.apply(
        &node(),
        &[ServiceSpec {
            vip,
            backends: vec![backend("10.1.0.11", 0), backend("10.1.0.12", 1)],
        }],
    )
    .unwrap();
    let b = Ipv4Addr::new(10, 1, 0, 12);
    assert_eq!(
        send(&dp, ports[FLOW_WAYS]),
        b,
        "a new flow into the full set"
    );
    assert_eq!(send(&dp, ports[0]), a, "recently used: kept");
    for &p in &ports[2..FLOW_WAYS] {
        assert_eq!(send(&dp, p), a, "port {p}: kept");
    }
    // Last: as a new flow it replaces another way in turn.
    assert_eq!(
        send(&dp, ports[1]),
        b,
        "least recently used: replaced, so rescheduled"
    );
}

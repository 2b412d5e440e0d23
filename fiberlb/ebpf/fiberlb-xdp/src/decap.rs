//! FiberLB's backend side (`fiberlb_decap`): this kernel has no ipip
//! module, so backends strip the load balancer's IP-in-IP header in XDP and
//! pass the inner packet (for the VIP on their loopback) to the stack,
//! which answers the client directly (direct server return).
//!
//! Every IPv4 packet with protocol 4 (IPv4) or 41 (IPv6) and every IPv6
//! packet with next header 4 or 41 arriving on the interface is
//! decapsulated; outer IPv4 options or a bogus outer length drop it; all
//! else passes untouched. Counts in `REASONS` (Decapsulated,
//! DecapMalformed).
#![no_std]
#![no_main]

#[allow(dead_code)] // the checksum helpers serve fiberlb-lb only
mod packet;

use aya_ebpf::bindings::xdp_action;
use aya_ebpf::helpers::generated as gen;
use aya_ebpf::macros::{map, xdp};
use aya_ebpf::maps::PerCpuArray;
use aya_ebpf::programs::XdpContext;
use fiberlb_common::{Reason, REASONS};
use packet::*;

#[map(name = "REASONS")]
static REASON_COUNTS: PerCpuArray<u64> = PerCpuArray::with_max_entries(REASONS, 0);

const IPPROTO_IPIP: u8 = 4;
const IPPROTO_IPV6: u8 = 41;

#[inline(always)]
fn count(reason: Reason) {
    if let Some(c) = REASON_COUNTS.get_ptr_mut(reason as u32) {
        // SAFETY: per-CPU slot, only this CPU writes it.
        unsafe { *c += 1 };
    }
}

#[xdp]
pub fn fiberlb_decap(ctx: XdpContext) -> u32 {
    let Some(ethertype) = load_be16(&ctx, 12) else {
        return xdp_action::XDP_PASS;
    };
    if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        match load_be16(&ctx, 16) {
            Some(inner) => decap::<18>(&ctx, inner),
            None => xdp_action::XDP_PASS,
        }
    } else {
        decap::<14>(&ctx, ethertype)
    }
}

#[inline(always)]
fn decap<const L3: usize>(ctx: &XdpContext, ethertype: u16) -> u32 {
    let frame_ip = (ctx.data_end() - ctx.data() - L3) as u32;
    let (outer, inner_proto) = match ethertype {
        ETH_P_IP => {
            let Some(ip) = ptr_at::<[u32; 5]>(ctx, L3) else {
                return xdp_action::XDP_PASS;
            };
            // SAFETY: ptr_at checked the 20 bytes are inside the packet.
            let w = unsafe { *ip };
            let b0 = u32::from_be(w[0]);
            let proto = (u32::from_be(w[2]) >> 16) as u8;
            if b0 >> 28 != 4 || (proto != IPPROTO_IPIP && proto != IPPROTO_IPV6) {
                return xdp_action::XDP_PASS;
            }
            let len = b0 & 0xffff;
            let frag = u32::from_be(w[1]) & 0x3fff;
            if (b0 >> 24) & 0xf != 5 || frag != 0 || len < 40 || len > frame_ip {
                count(Reason::DecapMalformed);
                return xdp_action::XDP_DROP;
            }
            (20u32, proto)
        }
        ETH_P_IPV6 => {
            let Some(ip) = ptr_at::<[u32; 10]>(ctx, L3) else {
                return xdp_action::XDP_PASS;
            };
            // SAFETY: ptr_at checked the 40 bytes are inside the packet.
            let w = unsafe { *ip };
            let b1 = u32::from_be(w[1]);
            let next = (b1 >> 8) as u8;
            if u32::from_be(w[0]) >> 28 != 6 || (next != IPPROTO_IPIP && next != IPPROTO_IPV6) {
                return xdp_action::XDP_PASS;
            }
            let payload = b1 >> 16;
            if payload < 20 || payload + 40 > frame_ip {
                count(Reason::DecapMalformed);
                return xdp_action::XDP_DROP;
            }
            (40u32, next)
        }
        _ => return xdp_action::XDP_PASS,
    };
    let Some(eth) = ptr_at::<EthVlan>(ctx, 0) else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY: ptr_at checked the 18 bytes are inside the packet.
    let old = unsafe { *eth };
    // SAFETY: the helper checks the new head against the packet.
    if unsafe { gen::bpf_xdp_adjust_head(ctx.ctx, outer as i32) } != 0 {
        count(Reason::DecapMalformed);
        return xdp_action::XDP_DROP;
    }
    let inner_type = if inner_proto == IPPROTO_IPIP {
        ETH_P_IP
    } else {
        ETH_P_IPV6
    };
    if L3 == 18 {
        let Some(eth) = ptr_at::<EthVlan>(ctx, 0) else {
            return xdp_action::XDP_DROP;
        };
        let mut new = old;
        new.inner_type = inner_type.to_be();
        // SAFETY: ptr_at checked the 18 bytes are inside the packet.
        unsafe { *eth = new };
    } else {
        let Some(eth) = ptr_at::<Eth>(ctx, 0) else {
            return xdp_action::XDP_DROP;
        };
        // SAFETY: ptr_at checked the 14 bytes are inside the packet.
        unsafe {
            *eth = Eth {
                dst: old.dst,
                src: old.src,
                ethertype: inner_type.to_be(),
            }
        };
    }
    count(Reason::Decapsulated);
    xdp_action::XDP_PASS
}

/// XDP_PASS, for the veth peer of an interface whose native XDP program
/// sends frames back with XDP_TX (veth delivers them only when the peer
/// has an XDP program too). Ships here, in the small object.
#[xdp]
pub fn fiberlb_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

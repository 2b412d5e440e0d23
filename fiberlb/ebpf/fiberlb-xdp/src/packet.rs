//! Bounds-checked packet access and checksums shared by the programs.

use aya_ebpf::helpers::generated as gen;
use aya_ebpf::programs::XdpContext;

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Eth {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    /// Network byte order.
    pub ethertype: u16,
}

/// Ethernet header with one VLAN tag (`ethertype` is then the tag's TPID).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EthVlan {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    pub ethertype: u16,
    pub tci: u16,
    pub inner_type: u16,
}

/// A pointer to a `T` at `offset`, if the whole `T` lies inside the packet.
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*mut T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + core::mem::size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *mut T)
}

/// The big-endian u16 at `offset`.
#[inline(always)]
pub fn load_be16(ctx: &XdpContext, offset: usize) -> Option<u16> {
    let p = ptr_at::<u16>(ctx, offset)?;
    // SAFETY: ptr_at checked the two bytes are inside the packet.
    Some(u16::from_be(unsafe { *p }))
}

/// One's-complement partial sum of `len` bytes at `ptr` (a multiple of 4,
/// already bounds-checked by the caller), added to `seed`.
#[inline(always)]
pub fn csum_words(ptr: *const u32, len: u32, seed: u64) -> u64 {
    // SAFETY: the caller checked `len` bytes at `ptr`; the helper only reads.
    let sum = unsafe { gen::bpf_csum_diff(core::ptr::null_mut(), 0, ptr as *mut u32, len, 0) };
    seed + (sum as u64 & 0xffff_ffff)
}

/// Folds a partial sum into the 16-bit checksum to store, in memory order
/// (store it with a native-endian write of the words that were summed).
#[inline(always)]
pub fn fold(mut sum: u64) -> u16 {
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// The IPv4 header checksum of `h` (its checksum field zero), in memory
/// order: `h[2] |= (c as u32) << 16` puts it in place.
#[inline(always)]
pub fn ipv4_checksum(h: &[u32; 5]) -> u16 {
    let mut sum: u64 = 0;
    sum += (h[0] & 0xffff) as u64 + (h[0] >> 16) as u64;
    sum += (h[1] & 0xffff) as u64 + (h[1] >> 16) as u64;
    sum += (h[2] & 0xffff) as u64 + (h[2] >> 16) as u64;
    sum += (h[3] & 0xffff) as u64 + (h[3] >> 16) as u64;
    sum += (h[4] & 0xffff) as u64 + (h[4] >> 16) as u64;
    fold(sum)
}

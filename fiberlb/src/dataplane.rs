//! The XDP data plane from userspace: loads `fiberlb-lb.o`, attaches it,
//! and programs its maps from a list of services.
//!
//! One owner ([`Dataplane`]) keeps a mirror of every table the kernel
//! holds. [`Dataplane::apply`] computes the next generation (VIP table,
//! backend slots, each changed service's Maglev ring in its inactive copy),
//! writes only the entries that differ from what that copy holds, and then
//! flips `ACTIVE` with one 4-byte store: a packet sees the old generation
//! or the new one, never a mix. A generation just left is not rewritten
//! for [`FLIP_GAP`], far longer than any packet's run through the program.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use aya::maps::{Array, MapData, PerCpuArray, PerCpuValues};
use aya::programs::Xdp;
pub use aya::programs::XdpMode;
use aya::Ebpf;
use fiberlb_common::{
    Backend as KBackend, Config, Counters, Reason, Vip, VipKey, BACKEND_ALIVE, BACKEND_SLOTS,
    CONFIG_FIB, CONFIG_NEIGH, FAMILY_V4, FAMILY_V6, GENERATIONS, REASONS, RING_COPIES, RING_SIZE,
    SERVICES_MAX, VIP_ADDR_ONLY, VIP_PROBES, VIP_SLOTS, VIP_USED,
};

use crate::maglev;

/// Least time between two flips of the active generation.
pub const FLIP_GAP: Duration = Duration::from_millis(20);
/// Smallest MTU accepted (IPv6's minimum; ICMPv6 errors quote 136 bytes).
pub const MTU_MIN: u32 = 1280;

/// Why the data plane could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("this photon binary was built without FiberLB's XDP objects; run scripts/build-ebpf.sh, then rebuild")]
    NotBuilt,
    #[error("loading the XDP program needs root (CAP_BPF, CAP_NET_ADMIN): {0}")]
    Load(String),
    #[error("attaching XDP to {iface}: {reason}")]
    Attach { iface: String, reason: String },
    #[error("map {map}: {reason}")]
    Map { map: &'static str, reason: String },
    #[error("invalid data-plane config: {0}")]
    Invalid(String),
}

type Result<T> = std::result::Result<T, DataplaneError>;

/// The load balancer's object file, if this binary carries it.
pub fn lb_object() -> Result<&'static [u8]> {
    #[cfg(fiberlb_bpf)]
    {
        Ok(aya::include_bytes_aligned!(env!("FIBERLB_LB_OBJ")))
    }
    #[cfg(not(fiberlb_bpf))]
    {
        Err(DataplaneError::NotBuilt)
    }
}

/// The backends' decapsulation object file, if this binary carries it.
pub fn decap_object() -> Result<&'static [u8]> {
    #[cfg(fiberlb_bpf)]
    {
        Ok(aya::include_bytes_aligned!(env!("FIBERLB_DECAP_OBJ")))
    }
    #[cfg(not(fiberlb_bpf))]
    {
        Err(DataplaneError::NotBuilt)
    }
}

/// Transport protocol of a VIP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    fn number(self) -> u8 {
        match self {
            Proto::Tcp => fiberlb_common::PROTO_TCP,
            Proto::Udp => fiberlb_common::PROTO_UDP,
        }
    }
}

/// A VIP as the data plane sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VipAddr {
    pub addr: IpAddr,
    pub port: u16,
    pub proto: Proto,
}

/// One backend of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendSpec {
    pub addr: IpAddr,
    /// Share of new flows (0: drained — existing flows stay, no new ones).
    pub weight: u32,
    /// Passing its health checks; an unhealthy backend gets no packets and
    /// its flows move to the others.
    pub healthy: bool,
}

/// A VIP and its pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    pub vip: VipAddr,
    pub backends: Vec<BackendSpec>,
}

/// This node's end of the tunnels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    /// Outer source addresses (a family without one cannot reach backends
    /// of that family).
    pub src_v4: Option<Ipv4Addr>,
    pub src_v6: Option<Ipv6Addr>,
    /// Link MTU toward the backends.
    pub mtu: u32,
    /// Find next hops with the kernel's FIB.
    pub fib: bool,
    /// Static next-hop MAC (used when the FIB has no answer, or always
    /// without `fib`).
    pub neigh_mac: Option<[u8; 6]>,
}

impl Default for NodeSpec {
    fn default() -> Self {
        Self {
            src_v4: None,
            src_v6: None,
            mtu: 1500,
            fib: true,
            neigh_mac: None,
        }
    }
}

/// Counters of one VIP or backend, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub packets: u64,
    pub bytes: u64,
    pub new_flows: u64,
    pub misses: u64,
}

/// Everything the data plane counts.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub vips: BTreeMap<VipAddr, Totals>,
    /// Per (VIP, backend address).
    pub backends: BTreeMap<(VipAddr, IpAddr), Totals>,
    /// Per [`Reason`] label.
    pub reasons: Vec<(&'static str, u64)>,
}

#[derive(Debug, Clone, Copy)]
struct ServiceState {
    index: u32,
    /// Ring copy the active generation uses.
    ring: u32,
}

#[derive(Debug, Clone, Copy)]
struct SlotState {
    slot: u32,
    id: u32,
}

/// The loaded load balancer and the mirror of its maps.
pub struct Dataplane {
    ebpf: Ebpf,
    active: u32,
    last_flip: Option<Instant>,
    services: HashMap<VipAddr, ServiceState>,
    slots: HashMap<(VipAddr, IpAddr), SlotState>,
    next_id: u32,
    /// Per generation: what the kernel's VIP, backend and config tables hold.
    vips: [Vec<Vip>; 2],
    backends: [Vec<KBackend>; 2],
    configs: [Config; 2],
    /// Per (service index, copy): what the kernel's ring holds.
    rings: HashMap<(u32, u32), Vec<u32>>,
    attached: Option<String>,
}

impl std::fmt::Debug for Dataplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataplane")
            .field("active", &self.active)
            .field("services", &self.services.len())
            .field("backends", &self.slots.len())
            .field("attached", &self.attached)
            .finish()
    }
}

fn map_err(map: &'static str) -> impl Fn(aya::maps::MapError) -> DataplaneError {
    move |e| DataplaneError::Map {
        map,
        reason: e.to_string(),
    }
}

fn words(addr: IpAddr) -> ([u32; 4], u8) {
    match addr {
        IpAddr::V4(a) => ([u32::from_ne_bytes(a.octets()), 0, 0, 0], FAMILY_V4),
        IpAddr::V6(a) => {
            let o = a.octets();
            let w = |i: usize| u32::from_ne_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
            ([w(0), w(4), w(8), w(12)], FAMILY_V6)
        }
    }
}

/// The kernel's key for `vip` (addresses and port in network order).
pub fn vip_key(vip: &VipAddr) -> VipKey {
    let (addr, family) = words(vip.addr);
    VipKey {
        addr,
        port: vip.port.to_be(),
        proto: vip.proto.number(),
        family,
    }
}

fn addr_key(addr: IpAddr) -> VipKey {
    let (addr, family) = words(addr);
    VipKey {
        addr,
        port: 0,
        proto: 0,
        family,
    }
}

impl Dataplane {
    /// Loads the load balancer (not attached yet).
    pub fn load() -> Result<Self> {
        let ebpf = Ebpf::load(lb_object()?).map_err(|e| DataplaneError::Load(e.to_string()))?;
        let mut dp = Self {
            ebpf,
            active: 0,
            last_flip: None,
            services: HashMap::new(),
            slots: HashMap::new(),
            next_id: 1,
            vips: [
                vec![Vip::default(); VIP_SLOTS as usize],
                vec![Vip::default(); VIP_SLOTS as usize],
            ],
            backends: [
                vec![KBackend::default(); BACKEND_SLOTS as usize],
                vec![KBackend::default(); BACKEND_SLOTS as usize],
            ],
            configs: [Config::default(); 2],
            rings: HashMap::new(),
            attached: None,
        };
        for name in [
            "fiberlb_lb",
            "fiberlb_floor",
            "fiberlb_pass",
            "fiberlb_bench",
            "fiberlb_gen",
        ] {
            dp.xdp_mut(name)?
                .load()
                .map_err(|e| DataplaneError::Load(format!("{name}: {e}")))?;
        }
        Ok(dp)
    }

    /// One of the object's programs (`fiberlb_lb`, `fiberlb_floor`,
    /// `fiberlb_pass`, `fiberlb_bench`, `fiberlb_gen`).
    pub fn xdp(&self, name: &str) -> Result<&Xdp> {
        self.ebpf
            .program(name)
            .and_then(|p| p.try_into().ok())
            .ok_or_else(|| DataplaneError::Load(format!("no XDP program {name}")))
    }

    fn xdp_mut(&mut self, name: &str) -> Result<&mut Xdp> {
        self.ebpf
            .program_mut(name)
            .and_then(|p| p.try_into().ok())
            .ok_or_else(|| DataplaneError::Load(format!("no XDP program {name}")))
    }

    /// The loaded object, for tests and benchmarks that drive other maps.
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    /// Attaches the load balancer to `iface` (`XdpMode::Driver` is native
    /// mode; `Default` lets the kernel choose). Stays attached until this
    /// value is dropped.
    pub fn attach(&mut self, iface: &str, mode: XdpMode) -> Result<()> {
        let prog = self.xdp_mut("fiberlb_lb")?;
        prog.attach(iface, mode)
            .map_err(|e| DataplaneError::Attach {
                iface: iface.to_owned(),
                reason: e.to_string(),
            })?;
        self.attached = Some(iface.to_owned());
        Ok(())
    }

    /// Where the program is attached, if anywhere.
    pub fn attached(&self) -> Option<&str> {
        self.attached.as_deref()
    }

    fn array<T: aya::Pod>(&mut self, name: &'static str) -> Result<Array<&mut MapData, T>> {
        let map = self.ebpf.map_mut(name).ok_or_else(|| DataplaneError::Map {
            map: name,
            reason: "missing".into(),
        })?;
        Array::try_from(map).map_err(map_err(name))
    }

    fn percpu<T: aya::Pod>(&mut self, name: &'static str) -> Result<PerCpuArray<&mut MapData, T>> {
        let map = self.ebpf.map_mut(name).ok_or_else(|| DataplaneError::Map {
            map: name,
            reason: "missing".into(),
        })?;
        PerCpuArray::try_from(map).map_err(map_err(name))
    }

    /// Makes the kernel's tables describe `services`, atomically (see the
    /// module docs). Refuses (changing nothing) what the tables cannot hold.
    pub fn apply(&mut self, node: &NodeSpec, services: &[ServiceSpec]) -> Result<()> {
        check(node, services)?;
        let next = 1 - self.active;
        // Stable service indexes and backend slots: keep those still wanted.
        let wanted: HashMap<VipAddr, &ServiceSpec> = services.iter().map(|s| (s.vip, s)).collect();
        self.services.retain(|vip, _| wanted.contains_key(vip));
        self.slots.retain(|(vip, addr), _| {
            wanted
                .get(vip)
                .is_some_and(|s| s.backends.iter().any(|b| b.addr == *addr))
        });
        let mut fresh_services = Vec::new();
        let mut fresh_slots = Vec::new();
        // check() bounds the totals, so the free lists cannot run out.
        let mut free_services = free_indexes(self.services.values().map(|s| s.index), SERVICES_MAX);
        let mut free_slots = free_indexes(self.slots.values().map(|s| s.slot), BACKEND_SLOTS);
        for spec in services {
            if let Entry::Vacant(e) = self.services.entry(spec.vip) {
                let index = free_services.next().expect("check() bounds the VIPs");
                e.insert(ServiceState { index, ring: 0 });
                fresh_services.push(index);
            }
            for b in &spec.backends {
                if let Entry::Vacant(e) = self.slots.entry((spec.vip, b.addr)) {
                    let slot = free_slots.next().expect("check() bounds the backends");
                    let id = self.next_id;
                    self.next_id = self.next_id.wrapping_add(1).max(1);
                    e.insert(SlotState { slot, id });
                    fresh_slots.push(slot);
                }
            }
        }
        // Counters of reused indexes start from zero.
        self.zero_counters("VIP_STATS", &fresh_services)?;
        self.zero_counters("BACKEND_STATS", &fresh_slots)?;

        // Backends of the next generation.
        let mut backends = vec![KBackend::default(); BACKEND_SLOTS as usize];
        for spec in services {
            for b in &spec.backends {
                let s = self.slots[&(spec.vip, b.addr)];
                let (addr, family) = words(b.addr);
                backends[s.slot as usize] = KBackend {
                    addr,
                    id: s.id,
                    flags: if b.healthy { BACKEND_ALIVE } else { 0 },
                    family,
                    _pad: [0; 3],
                };
            }
        }
        // Rings: rebuilt per service; a changed one goes to its other copy.
        let mut vip_entries = Vec::new();
        for spec in services {
            let state = self.services[&spec.vip];
            let ring = self.ring_for(spec)?;
            let current = self.rings.get(&(state.index, state.ring));
            let copy = if current == Some(&ring) {
                state.ring
            } else {
                let other = 1 - state.ring;
                self.write_ring(state.index, other, ring)?;
                other
            };
            self.services.get_mut(&spec.vip).expect("kept above").ring = copy;
            vip_entries.push((vip_key(&spec.vip), VIP_USED, state.index, copy));
        }
        let mut addrs: Vec<IpAddr> = services.iter().map(|s| s.vip.addr).collect();
        addrs.sort();
        addrs.dedup();
        for a in addrs {
            vip_entries.push((addr_key(a), VIP_ADDR_ONLY, 0, 0));
        }
        let vips = place_vips(&vip_entries)?;
        let config = kernel_config(node);

        self.write_table("VIPS", next, VIP_SLOTS, &vips, |d| &mut d.vips)?;
        self.write_table("BACKENDS", next, BACKEND_SLOTS, &backends, |d| {
            &mut d.backends
        })?;
        if self.configs[next as usize] != config {
            self.array::<Config>("CONFIG")?
                .set(next, config, 0)
                .map_err(map_err("CONFIG"))?;
            self.configs[next as usize] = config;
        }
        if let Some(last) = self.last_flip {
            let since = last.elapsed();
            if since < FLIP_GAP {
                std::thread::sleep(FLIP_GAP - since);
            }
        }
        self.array::<u32>("ACTIVE")?
            .set(0, next, 0)
            .map_err(map_err("ACTIVE"))?;
        self.active = next;
        self.last_flip = Some(Instant::now());
        Ok(())
    }

    fn ring_for(&self, spec: &ServiceSpec) -> Result<Vec<u32>> {
        let live: Vec<&BackendSpec> = spec
            .backends
            .iter()
            .filter(|b| b.healthy && b.weight > 0)
            .collect();
        if live.is_empty() {
            return Ok(vec![0; RING_SIZE as usize]);
        }
        let pool: Vec<maglev::Backend> = live
            .iter()
            .map(|b| maglev::Backend {
                name: b.addr.to_string(),
                weight: b.weight,
            })
            .collect();
        let table = maglev::build(&pool, RING_SIZE)
            .map_err(|e| DataplaneError::Invalid(format!("VIP {:?}: {e}", spec.vip)))?;
        Ok(table
            .into_iter()
            .map(|i| self.slots[&(spec.vip, live[i as usize].addr)].slot + 1)
            .collect())
    }

    fn write_ring(&mut self, index: u32, copy: u32, ring: Vec<u32>) -> Result<()> {
        let base = (index * RING_COPIES + copy) * RING_SIZE;
        let old = self
            .rings
            .remove(&(index, copy))
            .unwrap_or_else(|| vec![0; RING_SIZE as usize]);
        let mut map = self.array::<u32>("RINGS")?;
        for (i, (new, was)) in ring.iter().zip(old.iter()).enumerate() {
            if new != was {
                map.set(base + i as u32, new, 0).map_err(map_err("RINGS"))?;
            }
        }
        self.rings.insert((index, copy), ring);
        Ok(())
    }

    fn write_table<T: aya::Pod + PartialEq>(
        &mut self,
        name: &'static str,
        gen: u32,
        slots: u32,
        new: &[T],
        mirror: impl Fn(&mut Self) -> &mut [Vec<T>; 2],
    ) -> Result<()> {
        let old = std::mem::take(&mut mirror(self)[gen as usize]);
        let mut map = self.array::<T>(name)?;
        for (i, (n, o)) in new.iter().zip(old.iter()).enumerate() {
            if n != o {
                map.set(gen * slots + i as u32, n, 0)
                    .map_err(map_err(name))?;
            }
        }
        mirror(self)[gen as usize] = new.to_vec();
        Ok(())
    }

    fn zero_counters(&mut self, name: &'static str, indexes: &[u32]) -> Result<()> {
        if indexes.is_empty() {
            return Ok(());
        }
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| DataplaneError::Map {
            map: name,
            reason: e.to_string(),
        })?;
        let mut map = self.percpu::<Counters>(name)?;
        for &i in indexes {
            let zero = PerCpuValues::try_from(vec![Counters::default(); cpus]).map_err(|e| {
                DataplaneError::Map {
                    map: name,
                    reason: e.to_string(),
                }
            })?;
            map.set(i, zero, 0).map_err(map_err(name))?;
        }
        Ok(())
    }

    /// Counters summed over CPUs.
    pub fn stats(&mut self) -> Result<Stats> {
        let mut stats = Stats::default();
        let services: Vec<(VipAddr, u32)> =
            self.services.iter().map(|(v, s)| (*v, s.index)).collect();
        let slots: Vec<((VipAddr, IpAddr), u32)> =
            self.slots.iter().map(|(k, s)| (*k, s.slot)).collect();
        let vip_stats = self.percpu::<Counters>("VIP_STATS")?;
        for (vip, index) in services {
            stats.vips.insert(vip, sum(&vip_stats, index)?);
        }
        let backend_stats = self.percpu::<Counters>("BACKEND_STATS")?;
        for (key, slot) in slots {
            stats.backends.insert(key, sum(&backend_stats, slot)?);
        }
        let reasons = self.percpu::<u64>("REASONS")?;
        for (reason, label) in Reason::ALL {
            let v = reasons
                .get(&(reason as u32), 0)
                .map_err(map_err("REASONS"))?;
            stats.reasons.push((label, v.iter().sum()));
        }
        debug_assert_eq!(stats.reasons.len(), REASONS as usize);
        Ok(stats)
    }
}

fn sum(map: &PerCpuArray<&mut MapData, Counters>, index: u32) -> Result<Totals> {
    let values = map.get(&index, 0).map_err(map_err("counters"))?;
    let mut t = Totals::default();
    for v in values.iter() {
        t.packets += v.packets;
        t.bytes += v.bytes;
        t.new_flows += v.new_flows;
        t.misses += v.misses;
    }
    Ok(t)
}

/// The indexes below `max` that `used` does not hold, in order.
fn free_indexes(used: impl Iterator<Item = u32>, max: u32) -> std::vec::IntoIter<u32> {
    let mut taken = vec![false; max as usize];
    for i in used {
        taken[i as usize] = true;
    }
    let free: Vec<u32> = (0..max).filter(|&i| !taken[i as usize]).collect();
    free.into_iter()
}

fn kernel_config(node: &NodeSpec) -> Config {
    let mut flags = 0;
    if node.fib {
        flags |= CONFIG_FIB;
    }
    if node.neigh_mac.is_some() {
        flags |= CONFIG_NEIGH;
    }
    Config {
        flags,
        mtu: node.mtu,
        src_v4: node
            .src_v4
            .map(|a| u32::from_ne_bytes(a.octets()))
            .unwrap_or(0),
        src_v6: node
            .src_v6
            .map(|a| words(IpAddr::V6(a)).0)
            .unwrap_or([0; 4]),
        neigh_mac: node.neigh_mac.unwrap_or([0; 6]),
        _pad: [0; 2],
    }
}

fn check(node: &NodeSpec, services: &[ServiceSpec]) -> Result<()> {
    let bad = |m: String| Err(DataplaneError::Invalid(m));
    if node.mtu < MTU_MIN || node.mtu > 65535 {
        return bad(format!("mtu {} (expected {MTU_MIN}..=65535)", node.mtu));
    }
    if !node.fib && node.neigh_mac.is_none() {
        return bad(
            "no way to find next hops: enable the FIB lookup or give a neighbour MAC".into(),
        );
    }
    if services.len() > SERVICES_MAX as usize {
        return bad(format!("{} VIPs (at most {SERVICES_MAX})", services.len()));
    }
    let backends: usize = services.iter().map(|s| s.backends.len()).sum();
    if backends > BACKEND_SLOTS as usize {
        return bad(format!("{backends} backends (at most {BACKEND_SLOTS})"));
    }
    let mut seen = std::collections::HashSet::new();
    for s in services {
        if !seen.insert(s.vip) {
            return bad(format!("VIP {:?} listed twice", s.vip));
        }
        for b in &s.backends {
            let missing = match b.addr {
                IpAddr::V4(_) => node.src_v4.is_none(),
                IpAddr::V6(_) => node.src_v6.is_none(),
            };
            if missing {
                return bad(format!(
                    "backend {} needs an outer source address of its family",
                    b.addr
                ));
            }
        }
    }
    Ok(())
}

/// Places VIP entries (key, flags, service, ring copy) in an open-addressed
/// table the way the program probes it.
fn place_vips(entries: &[(VipKey, u32, u32, u32)]) -> Result<Vec<Vip>> {
    let mut table = vec![Vip::default(); VIP_SLOTS as usize];
    for &(key, flags, service, ring) in entries {
        let home = fiberlb_common::vip_slot(&key);
        let free = (0..VIP_PROBES)
            .map(|i| ((home + i) & (VIP_SLOTS - 1)) as usize)
            .find(|&i| table[i].flags == 0)
            .ok_or_else(|| {
                DataplaneError::Invalid(format!(
                    "VIP table: no free slot within {VIP_PROBES} of {home}"
                ))
            })?;
        table[free] = Vip {
            key,
            flags,
            service,
            ring,
        };
    }
    Ok(table)
}

const _: () = assert!(GENERATIONS == 2);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vip_placement_finds_what_the_program_probes() {
        let entries: Vec<(VipKey, u32, u32, u32)> = (0..128u32)
            .map(|i| {
                let vip = VipAddr {
                    addr: IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)),
                    port: 80,
                    proto: Proto::Tcp,
                };
                (vip_key(&vip), VIP_USED, i % SERVICES_MAX, 0)
            })
            .collect();
        let table = place_vips(&entries).expect("128 VIPs fit in 256 slots");
        for (key, _, service, _) in &entries {
            let home = fiberlb_common::vip_slot(key);
            let found = (0..VIP_PROBES)
                .map(|i| &table[((home + i) & (VIP_SLOTS - 1)) as usize])
                .find(|v| v.key == *key)
                .expect("within the probe limit");
            assert_eq!(found.service, *service);
        }
    }

    #[test]
    fn node_checks() {
        let node = NodeSpec {
            src_v4: Some(Ipv4Addr::new(10, 0, 0, 1)),
            ..NodeSpec::default()
        };
        let svc = |addr: IpAddr| ServiceSpec {
            vip: VipAddr {
                addr: IpAddr::V4(Ipv4Addr::new(10, 9, 9, 9)),
                port: 80,
                proto: Proto::Tcp,
            },
            backends: vec![BackendSpec {
                addr,
                weight: 1,
                healthy: true,
            }],
        };
        assert!(check(&node, &[svc("10.0.0.2".parse().unwrap())]).is_ok());
        let err = check(&node, &[svc("fd00::2".parse().unwrap())]).unwrap_err();
        assert!(err.to_string().contains("outer source"), "{err}");
        let small = NodeSpec {
            mtu: 1000,
            ..node.clone()
        };
        assert!(check(&small, &[]).unwrap_err().to_string().contains("mtu"));
    }
}

//! The edge agent: owns the data plane of this node. It takes the VIP and
//! backend records (fed from the control plane's KV by the node), checks
//! every backend's health, and whenever the set of healthy backends or the
//! records change it programs the XDP maps ([`Dataplane::apply`]: a new
//! generation, flipped atomically). Every second it publishes counters and
//! health as a [`StatsSnapshot`] (the `lb stats` API) and as Prometheus
//! text (the node's `/metrics`).
//!
//! Without an interface, or without the rights to load XDP, it steers and
//! probes nothing, and says in `attached` why.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aya::programs::XdpMode;

use crate::dataplane::{BackendSpec, Dataplane, NodeSpec, Proto, ServiceSpec, Stats, VipAddr};
use crate::health::{probe, Health};
use crate::spec::{BackendRecord, BackendStats, Protocol, StatsSnapshot, VipRecord, VipStats};

/// How often the agent wakes to run due checks and apply changes.
const TICK: Duration = Duration::from_millis(50);
/// How often counters are published.
const PUBLISH_EVERY: Duration = Duration::from_secs(1);
/// Health checks running at once.
const PROBES_PARALLEL_MAX: usize = 64;

/// How the agent runs on this node (from the `[lb]` config section).
#[derive(Debug, Clone)]
pub struct AgentOptions {
    pub node_name: String,
    /// Interface to attach to; `None`: health checks and stats only.
    pub interface: Option<String>,
    pub mode: XdpMode,
    pub src_v4: Option<Ipv4Addr>,
    pub src_v6: Option<Ipv6Addr>,
    /// 0: the interface's MTU.
    pub mtu: u32,
    pub fib: bool,
    pub neigh_mac: Option<[u8; 6]>,
}

#[derive(Default)]
struct Records {
    version: u64,
    vips: Vec<VipRecord>,
    backends: Vec<BackendRecord>,
}

struct Shared {
    records: Mutex<Records>,
    wake: Condvar,
    stop: AtomicBool,
    metrics: Mutex<String>,
}

/// The running agent; stops (and detaches XDP) when dropped.
pub struct Agent {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent").finish_non_exhaustive()
    }
}

impl Agent {
    /// Starts the agent's thread; snapshots go to `stats`.
    pub fn start(
        options: AgentOptions,
        stats: Arc<Mutex<Option<StatsSnapshot>>>,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            records: Mutex::new(Records::default()),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
            metrics: Mutex::new(String::new()),
        });
        let worker = shared.clone();
        let thread = std::thread::Builder::new()
            .name("photon-lb-agent".into())
            .spawn(move || run(options, worker, stats))?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    /// Replaces the records the agent serves.
    pub fn set_records(&self, vips: Vec<VipRecord>, backends: Vec<BackendRecord>) {
        if let Ok(mut r) = self.shared.records.lock() {
            r.version += 1;
            r.vips = vips;
            r.backends = backends;
        }
        self.shared.wake.notify_all();
    }

    /// Renders the latest counters as Prometheus text.
    pub fn metrics_source(&self) -> impl Fn() -> String + Send + Sync + 'static {
        let shared = self.shared.clone();
        move || shared.metrics.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Identity of a backend across record updates.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct BackendId {
    owner: String,
    name: String,
    address: IpAddr,
}

struct Check {
    health: Health,
    due: Instant,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn vip_addr(v: &VipRecord) -> VipAddr {
    VipAddr {
        addr: v.address,
        port: v.port,
        proto: match v.protocol {
            Protocol::Tcp => Proto::Tcp,
            Protocol::Udp => Proto::Udp,
        },
    }
}

fn run(options: AgentOptions, shared: Arc<Shared>, stats_out: Arc<Mutex<Option<StatsSnapshot>>>) {
    let (mut dataplane, node, attached) = setup(&options);
    match &dataplane {
        Some(_) => tracing::info!(%attached, "load balancer attached"),
        None => tracing::warn!(%attached, "load balancer data plane not running"),
    }
    let mut checks: HashMap<BackendId, Check> = HashMap::new();
    let mut applied: Option<Vec<ServiceSpec>> = None;
    let mut apply_error = String::new();
    let mut last_publish = Instant::now() - PUBLISH_EVERY;
    let mut seen_version = u64::MAX;
    let (mut vips, mut backends) = (Vec::new(), Vec::new());
    while !shared.stop.load(Ordering::SeqCst) {
        {
            let Ok(records) = shared.records.lock() else {
                return;
            };
            let records = match shared.wake.wait_timeout(records, TICK) {
                Ok((r, _)) => r,
                Err(_) => return,
            };
            if records.version != seen_version {
                seen_version = records.version;
                vips = records.vips.clone();
                backends = records.backends.clone();
            }
        }
        let by_owner: HashMap<String, &VipRecord> = vips.iter().map(|v| (v.owner(), v)).collect();
        // Checks of backends that no longer exist go; new ones are due now.
        let wanted: Vec<(BackendId, &BackendRecord, &VipRecord)> = backends
            .iter()
            .filter_map(|b| {
                let owner = crate::spec::owner(&b.tenant, &b.project, &b.vip);
                let vip = by_owner.get(&owner)?;
                Some((
                    BackendId {
                        owner,
                        name: b.name.clone(),
                        address: b.address,
                    },
                    b,
                    *vip,
                ))
            })
            .collect();
        let wanted_ids: std::collections::HashSet<&BackendId> =
            wanted.iter().map(|(id, _, _)| id).collect();
        checks.retain(|id, _| wanted_ids.contains(id));
        let now = Instant::now();
        // No data plane, no probes: nothing would use their verdict, and a
        // node that steers no packet sends none to the backends either.
        let probing = dataplane.is_some();
        let due: Vec<(BackendId, SocketAddr, &VipRecord)> = wanted
            .iter()
            .filter(|_| probing)
            .filter(|(id, _, _)| checks.get(id).is_none_or(|c| c.due <= now))
            .map(|(id, b, v)| {
                let port = v.health.port.unwrap_or(v.port);
                (id.clone(), SocketAddr::new(b.address, port), *v)
            })
            .collect();
        for chunk in due.chunks(PROBES_PARALLEL_MAX) {
            let results: Vec<Result<(), String>> = std::thread::scope(|s| {
                let handles: Vec<_> = chunk
                    .iter()
                    .map(|(_, addr, vip)| {
                        let timeout = Duration::from_millis(vip.health.timeout_ms as u64);
                        s.spawn(move || probe(*addr, &vip.health.kind, timeout))
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|_| Err("check panicked".into())))
                    .collect()
            });
            for ((id, addr, vip), result) in chunk.iter().zip(results) {
                let check = checks.entry(id.clone()).or_insert_with(|| Check {
                    health: Health::default(),
                    due: now,
                });
                if check
                    .health
                    .record(result, vip.health.rise, vip.health.fall)
                {
                    tracing::info!(
                        vip = %id.owner, backend = %id.name, %addr,
                        healthy = check.health.is_healthy(),
                        error = %check.health.last_error,
                        "backend health changed"
                    );
                }
                check.due = Instant::now() + Duration::from_millis(vip.health.interval_ms as u64);
            }
        }
        // The services as they should be now.
        let mut services: Vec<ServiceSpec> = vips
            .iter()
            .map(|v| ServiceSpec {
                vip: vip_addr(v),
                backends: Vec::new(),
            })
            .collect();
        let index: HashMap<String, usize> = vips
            .iter()
            .enumerate()
            .map(|(i, v)| (v.owner(), i))
            .collect();
        for (id, b, _) in &wanted {
            let healthy = checks.get(id).is_some_and(|c| c.health.is_healthy());
            if let Some(&i) = index.get(&id.owner) {
                services[i].backends.push(BackendSpec {
                    addr: b.address,
                    weight: b.weight,
                    healthy,
                });
            }
        }
        if let Some(dp) = dataplane.as_mut() {
            if applied.as_ref() != Some(&services) {
                match dp.apply(&node, &services) {
                    Ok(()) => {
                        apply_error.clear();
                        applied = Some(services.clone());
                    }
                    Err(e) => {
                        if apply_error != e.to_string() {
                            tracing::warn!(error = %e, "cannot program the load balancer");
                        }
                        apply_error = e.to_string();
                    }
                }
            }
        }
        if last_publish.elapsed() >= PUBLISH_EVERY {
            last_publish = Instant::now();
            let counters = dataplane.as_mut().and_then(|dp| dp.stats().ok());
            let mut note = attached.clone();
            if !apply_error.is_empty() {
                note = format!("{note}; last update refused: {apply_error}");
            }
            let snapshot = snapshot(&options.node_name, note, &vips, &wanted, &checks, counters);
            if let Ok(mut m) = shared.metrics.lock() {
                *m = render_metrics(&snapshot, dataplane.is_some());
            }
            if let Ok(mut s) = stats_out.lock() {
                *s = Some(snapshot);
            }
        }
    }
}

/// Loads and attaches the data plane when configured; says why not otherwise.
fn setup(options: &AgentOptions) -> (Option<Dataplane>, NodeSpec, String) {
    let mut node = NodeSpec {
        src_v4: options.src_v4,
        src_v6: options.src_v6,
        mtu: if options.mtu == 0 { 1500 } else { options.mtu },
        fib: options.fib,
        neigh_mac: options.neigh_mac,
    };
    let Some(iface) = options.interface.clone() else {
        return (
            None,
            node,
            "not attached: no lb.interface configured (the API works; no packet is steered and no backend is probed)".into(),
        );
    };
    let (v4, v6) = interface_addrs(&iface);
    node.src_v4 = node.src_v4.or(v4);
    node.src_v6 = node.src_v6.or(v6);
    if options.mtu == 0 {
        if let Some(mtu) = std::fs::read_to_string(format!("/sys/class/net/{iface}/mtu"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            node.mtu = mtu;
        }
    }
    let mode_name = match options.mode {
        XdpMode::Driver => "native",
        XdpMode::Skb => "generic",
        _ => "auto",
    };
    let mut dp = match Dataplane::load() {
        Ok(dp) => dp,
        Err(e) => return (None, node, format!("not attached: {e}")),
    };
    if let Err(e) = dp.attach(&iface, options.mode) {
        return (None, node, format!("not attached: {e}"));
    }
    let mut attached = format!("xdp {mode_name} on {iface}");
    if options.fib {
        // bpf_fib_lookup answers only where the kernel would forward.
        let off: Vec<&str> = ["ipv4", "ipv6"]
            .into_iter()
            .filter(|family| {
                std::fs::read_to_string(format!("/proc/sys/net/{family}/conf/{iface}/forwarding"))
                    .map(|v| v.trim() == "0")
                    .unwrap_or(false)
            })
            .collect();
        if !off.is_empty() && node.neigh_mac.is_none() {
            let keys: Vec<String> = off
                .iter()
                .map(|f| format!("net.{f}.conf.{iface}.forwarding=1"))
                .collect();
            attached.push_str(&format!(
                "; warning: forwarding is off, so FIB lookups fail and packets are dropped (drop_no_route): set {}",
                keys.join(" ")
            ));
        }
    }
    (Some(dp), node, attached)
}

/// The first IPv4 and first global IPv6 address of `iface`.
pub fn interface_addrs(iface: &str) -> (Option<Ipv4Addr>, Option<Ipv6Addr>) {
    let mut v4 = None;
    let mut v6 = None;
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list`, freed below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return (None, None);
    }
    let mut cur = list;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned.
        let entry = unsafe { &*cur };
        cur = entry.ifa_next;
        if entry.ifa_addr.is_null() || entry.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { std::ffi::CStr::from_ptr(entry.ifa_name) };
        if name.to_bytes() != iface.as_bytes() {
            continue;
        }
        // SAFETY: ifa_addr points to a sockaddr of the family it names.
        let family = unsafe { (*entry.ifa_addr).sa_family } as i32;
        if family == libc::AF_INET && v4.is_none() {
            // SAFETY: AF_INET: a sockaddr_in.
            let sin = unsafe { &*(entry.ifa_addr as *const libc::sockaddr_in) };
            v4 = Some(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
        } else if family == libc::AF_INET6 && v6.is_none() {
            // SAFETY: AF_INET6: a sockaddr_in6.
            let sin6 = unsafe { &*(entry.ifa_addr as *const libc::sockaddr_in6) };
            let a = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            if a.segments()[0] & 0xffc0 != 0xfe80 {
                v6 = Some(a);
            }
        }
    }
    // SAFETY: `list` came from getifaddrs.
    unsafe { libc::freeifaddrs(list) };
    (v4, v6)
}

/// Parses "aa:bb:cc:dd:ee:ff".
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

fn snapshot(
    node: &str,
    attached: String,
    vips: &[VipRecord],
    backends: &[(BackendId, &BackendRecord, &VipRecord)],
    checks: &HashMap<BackendId, Check>,
    counters: Option<Stats>,
) -> StatsSnapshot {
    let counters = counters.unwrap_or_default();
    let mut out = StatsSnapshot {
        node: node.to_owned(),
        attached,
        taken_ms: now_ms(),
        ..StatsSnapshot::default()
    };
    for v in vips {
        let t = counters.vips.get(&vip_addr(v)).copied().unwrap_or_default();
        out.vips.push(VipStats {
            tenant: v.tenant.clone(),
            project: v.project.clone(),
            name: v.name.clone(),
            packets: t.packets,
            bytes: t.bytes,
            new_flows: t.new_flows,
            misses: t.misses,
        });
    }
    for (id, b, v) in backends {
        let t = counters
            .backends
            .get(&(vip_addr(v), b.address))
            .copied()
            .unwrap_or_default();
        let healthy = checks.get(id).is_some_and(|c| c.health.is_healthy());
        out.backends.push(BackendStats {
            tenant: b.tenant.clone(),
            project: b.project.clone(),
            vip: b.vip.clone(),
            name: b.name.clone(),
            healthy,
            in_table: healthy && b.weight > 0,
            packets: t.packets,
            bytes: t.bytes,
            new_flows: t.new_flows,
        });
    }
    for (label, n) in counters.reasons {
        if label.starts_with("decap") {
            continue; // the backends' program counts these, not this one
        }
        if label.starts_with("pass") {
            out.pass += n;
        } else {
            out.drops.push((label.to_owned(), n));
        }
    }
    out
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Prometheus text of a snapshot.
pub fn render_metrics(s: &StatsSnapshot, attached: bool) -> String {
    let mut families: BTreeMap<&str, (&str, &str, Vec<String>)> = BTreeMap::new();
    let mut add =
        |name: &'static str, kind: &'static str, help: &'static str, labels: String, v: u64| {
            families
                .entry(name)
                .or_insert((kind, help, Vec::new()))
                .2
                .push(if labels.is_empty() {
                    format!("{name} {v}")
                } else {
                    format!("{name}{{{labels}}} {v}")
                });
        };
    add(
        "photon_lb_attached",
        "gauge",
        "1 when the XDP program is attached and steering packets",
        String::new(),
        attached as u64,
    );
    for v in &s.vips {
        let l = format!(
            "tenant=\"{}\",project=\"{}\",vip=\"{}\"",
            escape(&v.tenant),
            escape(&v.project),
            escape(&v.name)
        );
        add(
            "photon_lb_vip_packets_total",
            "counter",
            "Packets for the VIP sent to a backend or missed",
            l.clone(),
            v.packets,
        );
        add(
            "photon_lb_vip_bytes_total",
            "counter",
            "Bytes of the VIP's packets",
            l.clone(),
            v.bytes,
        );
        add(
            "photon_lb_vip_new_flows_total",
            "counter",
            "Flows the VIP scheduled to a backend",
            l.clone(),
            v.new_flows,
        );
        add(
            "photon_lb_vip_misses_total",
            "counter",
            "Packets for the VIP that found no backend",
            l,
            v.misses,
        );
    }
    for b in &s.backends {
        let l = format!(
            "tenant=\"{}\",project=\"{}\",vip=\"{}\",backend=\"{}\"",
            escape(&b.tenant),
            escape(&b.project),
            escape(&b.vip),
            escape(&b.name)
        );
        add(
            "photon_lb_backend_packets_total",
            "counter",
            "Packets sent to the backend",
            l.clone(),
            b.packets,
        );
        add(
            "photon_lb_backend_bytes_total",
            "counter",
            "Bytes sent to the backend",
            l.clone(),
            b.bytes,
        );
        add(
            "photon_lb_backend_new_flows_total",
            "counter",
            "Flows scheduled to the backend",
            l.clone(),
            b.new_flows,
        );
        add(
            "photon_lb_backend_healthy",
            "gauge",
            "1 while the backend passes its health checks",
            l,
            b.healthy as u64,
        );
    }
    add(
        "photon_lb_passed_packets_total",
        "counter",
        "Packets passed to the kernel (not for a VIP)",
        String::new(),
        s.pass,
    );
    for (reason, n) in &s.drops {
        add(
            "photon_lb_packets_total",
            "counter",
            "Packets not sent to a backend, by what happened to them",
            format!("reason=\"{}\"", escape(reason)),
            *n,
        );
    }
    let mut text = String::new();
    for (name, (kind, help, lines)) in families {
        text.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for line in lines {
            text.push_str(&line);
            text.push('\n');
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs() {
        assert_eq!(parse_mac("02:00:0a:ff:00:01"), Some([2, 0, 10, 255, 0, 1]));
        assert_eq!(parse_mac("02:00:0a:ff:00"), None);
        assert_eq!(parse_mac("02:00:0a:ff:00:01:02"), None);
        assert_eq!(parse_mac("zz:00:0a:ff:00:01"), None);
    }

    #[test]
    fn metrics_text() {
        let s = StatsSnapshot {
            vips: vec![VipStats {
                tenant: "acme".into(),
                project: "web".into(),
                name: "front".into(),
                packets: 7,
                ..VipStats::default()
            }],
            pass: 3,
            drops: vec![("drop_fragment".into(), 2)],
            ..StatsSnapshot::default()
        };
        let text = render_metrics(&s, true);
        assert!(text.contains("photon_lb_attached 1\n"), "{text}");
        assert!(text.contains(
            "photon_lb_vip_packets_total{tenant=\"acme\",project=\"web\",vip=\"front\"} 7\n"
        ));
        assert!(text.contains("photon_lb_passed_packets_total 3\n"));
        assert!(text.contains("photon_lb_packets_total{reason=\"drop_fragment\"} 2\n"));
        assert_eq!(
            text.matches("# TYPE photon_lb_vip_packets_total counter")
                .count(),
            1
        );
    }
}

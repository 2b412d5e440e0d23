//! What FiberLB keeps in the replicated KV and what its edge agent reports,
//! with the checks every record passes before it is written. No I/O: the
//! control plane (`photon_control::lb`) writes these records, the agent
//! reads them.
//!
//! Keys (all under [`LB_PREFIX`]):
//!
//! * `lb/vip/<tenant>/<project>/<name>`: a [`VipRecord`];
//! * `lb/backend/<tenant>/<project>/<vip>/<name>`: a [`BackendRecord`];
//! * `lb/addr/<tcp|udp>/<ip>/<port>`: the claim of one address, port and
//!   protocol, whose value is `<tenant>/<project>/<name>` of the VIP holding
//!   it, so no two VIPs of the cluster (in any tenant) share one.
//!
//! Backends have no port: FiberLB forwards with direct server return over
//! IP-in-IP, so a backend serves the VIP's own address and port (the VIP is
//! on its loopback) and answers clients directly.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use crate::maglev::WEIGHT_MAX;

/// Prefix of every FiberLB record in the KV.
pub const LB_PREFIX: &str = "lb/";
/// Prefix of VIP records.
pub const VIP_PREFIX: &str = "lb/vip/";
/// Prefix of backend records.
pub const BACKEND_PREFIX: &str = "lb/backend/";
/// Prefix of address claims.
pub const ADDRESS_PREFIX: &str = "lb/addr/";

/// VIPs in the whole cluster: the data plane's VIP table has this many slots.
pub const VIPS_MAX: usize = 64;
/// Backends of one VIP (its Maglev table stays accurate well past this).
pub const BACKENDS_PER_VIP_MAX: usize = 256;
/// Longest VIP or backend name.
pub const NAME_BYTES_MAX: usize = 63;
/// Longest HTTP health-check path.
pub const HTTP_PATH_BYTES_MAX: usize = 256;
/// Weight of a backend added without one.
pub const WEIGHT_DEFAULT: u32 = 100;

/// Health-check interval: default and allowed range.
pub const INTERVAL_MS_DEFAULT: u32 = 1000;
pub const INTERVAL_MS_MIN: u32 = 100;
pub const INTERVAL_MS_MAX: u32 = 60_000;
/// Health-check timeout: default and smallest (the largest is the interval).
pub const TIMEOUT_MS_DEFAULT: u32 = 500;
pub const TIMEOUT_MS_MIN: u32 = 50;
/// Consecutive results that flip a backend's health: default and range.
pub const THRESHOLD_DEFAULT: u8 = 2;
pub const THRESHOLD_MIN: u8 = 1;
pub const THRESHOLD_MAX: u8 = 10;

/// Why a field of a record is refused; the message names the field and what
/// it may hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct SpecError {
    pub field: &'static str,
    pub reason: String,
}

fn refuse<T>(field: &'static str, reason: impl Into<String>) -> Result<T, SpecError> {
    Err(SpecError {
        field,
        reason: reason.into(),
    })
}

/// The transport protocol a VIP balances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }

    /// Parses `tcp` or `udp` (field `field` names it in the error).
    pub fn parse(field: &'static str, text: &str) -> Result<Self, SpecError> {
        match text {
            "tcp" => Ok(Protocol::Tcp),
            "udp" => Ok(Protocol::Udp),
            other => refuse(
                field,
                format!("{other:?} is not a protocol; use tcp or udp"),
            ),
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a backend's health is probed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum HealthKind {
    /// A TCP connection that opens in time.
    Tcp,
    /// `GET path` answered with a 2xx or 3xx status in time.
    Http { path: String },
}

impl HealthKind {
    pub fn name(&self) -> &'static str {
        match self {
            HealthKind::Tcp => "tcp",
            HealthKind::Http { .. } => "http",
        }
    }
}

fn interval_ms_default() -> u32 {
    INTERVAL_MS_DEFAULT
}
fn timeout_ms_default() -> u32 {
    TIMEOUT_MS_DEFAULT
}
fn threshold_default() -> u8 {
    THRESHOLD_DEFAULT
}

/// A VIP's health check, run against each of its backends. A backend turns
/// healthy after `rise` passing checks in a row and unhealthy after `fall`
/// failing ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    pub kind: HealthKind,
    /// The port probed on the backend; `None`: the VIP's port.
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default = "interval_ms_default")]
    pub interval_ms: u32,
    #[serde(default = "timeout_ms_default")]
    pub timeout_ms: u32,
    #[serde(default = "threshold_default")]
    pub rise: u8,
    #[serde(default = "threshold_default")]
    pub fall: u8,
}

impl Default for HealthCheck {
    fn default() -> Self {
        Self {
            kind: HealthKind::Tcp,
            port: None,
            interval_ms: INTERVAL_MS_DEFAULT,
            timeout_ms: TIMEOUT_MS_DEFAULT,
            rise: THRESHOLD_DEFAULT,
            fall: THRESHOLD_DEFAULT,
        }
    }
}

impl HealthCheck {
    /// Checks every field against its allowed range.
    pub fn check(&self) -> Result<(), SpecError> {
        if let HealthKind::Http { path } = &self.kind {
            check_http_path(path)?;
        }
        if self.port == Some(0) {
            return refuse(
                "health port",
                "0 is not a port; give 1-65535, or none to probe the VIP's port",
            );
        }
        if !(INTERVAL_MS_MIN..=INTERVAL_MS_MAX).contains(&self.interval_ms) {
            return refuse(
                "health interval_ms",
                format!(
                    "{} is outside {INTERVAL_MS_MIN}..={INTERVAL_MS_MAX}",
                    self.interval_ms
                ),
            );
        }
        if !(TIMEOUT_MS_MIN..=self.interval_ms).contains(&self.timeout_ms) {
            return refuse(
                "health timeout_ms",
                format!(
                    "{} is outside {TIMEOUT_MS_MIN}..={} (at least {TIMEOUT_MS_MIN}, at most the interval)",
                    self.timeout_ms, self.interval_ms
                ),
            );
        }
        for (field, value) in [("health rise", self.rise), ("health fall", self.fall)] {
            if !(THRESHOLD_MIN..=THRESHOLD_MAX).contains(&value) {
                return refuse(
                    field,
                    format!("{value} is outside {THRESHOLD_MIN}..={THRESHOLD_MAX}"),
                );
            }
        }
        Ok(())
    }

    /// One line for people: `http GET /healthz on port 8080 every 1000 ms, ...`.
    pub fn describe(&self) -> String {
        let what = match &self.kind {
            HealthKind::Tcp => "tcp connect".to_owned(),
            HealthKind::Http { path } => format!("http GET {path}"),
        };
        let port = match self.port {
            Some(p) => format!("port {p}"),
            None => "the VIP's port".to_owned(),
        };
        format!(
            "{what} on {port} every {} ms, timeout {} ms, rise {}, fall {}",
            self.interval_ms, self.timeout_ms, self.rise, self.fall
        )
    }
}

fn check_http_path(path: &str) -> Result<(), SpecError> {
    if !path.starts_with('/') {
        return refuse("health http path", format!("{path:?} must start with '/'"));
    }
    if path.len() > HTTP_PATH_BYTES_MAX {
        return refuse(
            "health http path",
            format!("is {} bytes, more than {HTTP_PATH_BYTES_MAX}", path.len()),
        );
    }
    if !path.bytes().all(|b| b.is_ascii_graphic()) {
        return refuse(
            "health http path",
            format!("{path:?} may hold only printable ASCII without spaces"),
        );
    }
    Ok(())
}

/// A change to a [`HealthCheck`]: `None` keeps a field (or, applied to the
/// default check, takes the default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthUpdate {
    /// `tcp` or `http`.
    pub kind: Option<String>,
    pub http_path: Option<String>,
    /// `Some(None)`: probe the VIP's port again.
    pub port: Option<Option<u16>>,
    pub interval_ms: Option<u32>,
    pub timeout_ms: Option<u32>,
    pub rise: Option<u8>,
    pub fall: Option<u8>,
}

/// The path an HTTP check probes when none is given.
pub const HTTP_PATH_DEFAULT: &str = "/";

impl HealthUpdate {
    /// `base` with this update applied, checked.
    pub fn apply(&self, base: &HealthCheck) -> Result<HealthCheck, SpecError> {
        let kind_name = self.kind.as_deref().unwrap_or(base.kind.name());
        let kind = match kind_name {
            "tcp" => {
                if self.http_path.is_some() {
                    return refuse(
                        "health http path",
                        "only an http check has a path (give the http check kind too)",
                    );
                }
                HealthKind::Tcp
            }
            "http" => {
                let path = match (&self.http_path, &base.kind) {
                    (Some(p), _) => p.clone(),
                    (None, HealthKind::Http { path }) => path.clone(),
                    (None, HealthKind::Tcp) => HTTP_PATH_DEFAULT.to_owned(),
                };
                HealthKind::Http { path }
            }
            other => {
                return refuse(
                    "health check",
                    format!("{other:?} is not a check kind; use tcp or http"),
                )
            }
        };
        let check = HealthCheck {
            kind,
            port: self.port.unwrap_or(base.port),
            interval_ms: self.interval_ms.unwrap_or(base.interval_ms),
            timeout_ms: self.timeout_ms.unwrap_or(base.timeout_ms),
            rise: self.rise.unwrap_or(base.rise),
            fall: self.fall.unwrap_or(base.fall),
        };
        check.check()?;
        Ok(check)
    }
}

/// One VIP: an address, port and protocol whose new flows FiberLB spreads
/// over the VIP's backends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipRecord {
    pub tenant: String,
    pub project: String,
    pub name: String,
    pub address: IpAddr,
    pub port: u16,
    pub protocol: Protocol,
    #[serde(default)]
    pub health: HealthCheck,
    pub created_ms: u64,
}

impl VipRecord {
    pub fn key(&self) -> String {
        vip_key(&self.tenant, &self.project, &self.name)
    }

    /// The record's KV key and JSON value.
    pub fn to_kv(&self) -> (String, Vec<u8>) {
        (self.key(), serde_json::to_vec(self).unwrap_or_default())
    }

    /// Parses a record read from the KV; `None` when damaged.
    pub fn from_json(value: &[u8]) -> Option<Self> {
        serde_json::from_slice(value).ok()
    }

    /// The key that claims this VIP's address, port and protocol.
    pub fn address_key(&self) -> String {
        address_key(self.protocol, self.address, self.port)
    }

    /// The value of the claim: which VIP holds the address.
    pub fn owner(&self) -> String {
        owner(&self.tenant, &self.project, &self.name)
    }

    /// The resource name IAM checks (`lb/vip/<name>`).
    pub fn resource(&self) -> String {
        vip_resource(&self.name)
    }

    /// `tcp 10.0.0.1:80` or `udp [2001:db8::1]:53`.
    pub fn endpoint(&self) -> String {
        format!(
            "{} {}",
            self.protocol,
            std::net::SocketAddr::new(self.address, self.port)
        )
    }

    /// Checks every field (the name, the address, the port, the health check).
    pub fn check(&self) -> Result<(), SpecError> {
        check_name("name", &self.name)?;
        check_vip_address(self.address)?;
        check_port("port", self.port)?;
        self.health.check()
    }
}

/// One backend of a VIP: a server with the VIP's address on its loopback,
/// reached through an IP-in-IP tunnel to `address`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendRecord {
    pub tenant: String,
    pub project: String,
    pub vip: String,
    pub name: String,
    pub address: IpAddr,
    /// Relative share of new flows, 0..=[`WEIGHT_MAX`]; 0 drains the backend
    /// (its existing flows stay, it gets no new ones).
    #[serde(default = "weight_default")]
    pub weight: u32,
    pub created_ms: u64,
}

fn weight_default() -> u32 {
    WEIGHT_DEFAULT
}

impl BackendRecord {
    pub fn key(&self) -> String {
        backend_key(&self.tenant, &self.project, &self.vip, &self.name)
    }

    pub fn to_kv(&self) -> (String, Vec<u8>) {
        (self.key(), serde_json::to_vec(self).unwrap_or_default())
    }

    pub fn from_json(value: &[u8]) -> Option<Self> {
        serde_json::from_slice(value).ok()
    }

    /// The resource name IAM checks (`lb/vip/<vip>/backend/<name>`).
    pub fn resource(&self) -> String {
        backend_resource(&self.vip, &self.name)
    }

    /// Checks the names, the address and the weight.
    pub fn check(&self) -> Result<(), SpecError> {
        check_name("vip", &self.vip)?;
        check_name("backend name", &self.name)?;
        check_backend_address(self.address)?;
        check_weight(self.weight)
    }
}

/// The KV key of VIP `name` of a project.
pub fn vip_key(tenant: &str, project: &str, name: &str) -> String {
    format!("{VIP_PREFIX}{tenant}/{project}/{name}")
}

/// The prefix of a project's VIP records.
pub fn vip_prefix(tenant: &str, project: &str) -> String {
    format!("{VIP_PREFIX}{tenant}/{project}/")
}

/// The KV key of backend `name` of VIP `vip`.
pub fn backend_key(tenant: &str, project: &str, vip: &str, name: &str) -> String {
    format!("{BACKEND_PREFIX}{tenant}/{project}/{vip}/{name}")
}

/// The prefix of one VIP's backend records.
pub fn backend_prefix(tenant: &str, project: &str, vip: &str) -> String {
    format!("{BACKEND_PREFIX}{tenant}/{project}/{vip}/")
}

/// The key claiming `address`:`port` for `protocol` (the address in its
/// canonical text form, so one address has one key).
pub fn address_key(protocol: Protocol, address: IpAddr, port: u16) -> String {
    format!("{ADDRESS_PREFIX}{protocol}/{address}/{port}")
}

/// The value of an address claim.
pub fn owner(tenant: &str, project: &str, name: &str) -> String {
    format!("{tenant}/{project}/{name}")
}

/// The IAM resource of VIP `name`.
pub fn vip_resource(name: &str) -> String {
    format!("lb/vip/{name}")
}

/// The IAM resource of backend `name` of VIP `vip`.
pub fn backend_resource(vip: &str, name: &str) -> String {
    format!("lb/vip/{vip}/backend/{name}")
}

/// Checks a VIP or backend name: 1-63 of `a-z 0-9 . _ -`, starting with a
/// letter or digit (the rules of volume names, without snapshots' `@`).
pub fn check_name(field: &'static str, name: &str) -> Result<(), SpecError> {
    if name.is_empty() || name.len() > NAME_BYTES_MAX {
        return refuse(field, format!("{name:?} must be 1-{NAME_BYTES_MAX} bytes"));
    }
    let bytes = name.as_bytes();
    let ok_first = bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit();
    let ok_rest = bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'));
    if !ok_first || !ok_rest {
        return refuse(
            field,
            format!("{name:?} may hold a-z, 0-9, '.', '_', '-' (starting with a letter or digit)"),
        );
    }
    Ok(())
}

/// Parses an IP address in its usual text form.
pub fn parse_address(field: &'static str, text: &str) -> Result<IpAddr, SpecError> {
    text.trim().parse().or_else(|_| {
        refuse(
            field,
            format!("{text:?} is not an IP address (like 203.0.113.10 or 2001:db8::10)"),
        )
    })
}

/// Why `address` cannot be a unicast address of a VIP or backend, if so.
fn not_unicast(address: IpAddr) -> Option<String> {
    let kind = match address {
        IpAddr::V4(a) => {
            if a.is_unspecified() {
                "unspecified"
            } else if a.is_multicast() {
                "multicast"
            } else if a == Ipv4Addr::BROADCAST {
                "broadcast"
            } else if a.is_loopback() {
                "loopback"
            } else if a.is_link_local() {
                "link-local"
            } else {
                return None;
            }
        }
        IpAddr::V6(a) => {
            if let Some(v4) = a.to_ipv4_mapped() {
                return Some(format!(
                    "{address} is an IPv4-mapped IPv6 address; write the IPv4 form {v4}"
                ));
            }
            if a.is_unspecified() {
                "unspecified"
            } else if a.is_multicast() {
                "multicast"
            } else if a.is_loopback() {
                "loopback"
            } else if is_unicast_link_local(a) {
                "link-local"
            } else {
                return None;
            }
        }
    };
    Some(format!(
        "{address} is a {kind} address; give a unicast address"
    ))
}

/// fe80::/10 (`Ipv6Addr::is_unicast_link_local` is not stable).
fn is_unicast_link_local(a: Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

/// Checks a VIP's address: a unicast address that is neither unspecified,
/// multicast, broadcast, loopback, link-local nor IPv4-mapped IPv6.
pub fn check_vip_address(address: IpAddr) -> Result<(), SpecError> {
    match not_unicast(address) {
        Some(reason) => refuse("address", reason),
        None => Ok(()),
    }
}

/// Checks a backend's address (the same rules as a VIP's).
pub fn check_backend_address(address: IpAddr) -> Result<(), SpecError> {
    match not_unicast(address) {
        Some(reason) => refuse("backend address", reason),
        None => Ok(()),
    }
}

/// Checks a port: 1-65535.
pub fn check_port(field: &'static str, port: u16) -> Result<(), SpecError> {
    if port == 0 {
        return refuse(field, "0 is not a port; give 1-65535");
    }
    Ok(())
}

/// Checks a backend weight: 0 (drained) to [`WEIGHT_MAX`].
pub fn check_weight(weight: u32) -> Result<(), SpecError> {
    if weight > WEIGHT_MAX {
        return refuse(
            "weight",
            format!("{weight} is more than {WEIGHT_MAX}; give 0 (drained) to {WEIGHT_MAX}"),
        );
    }
    Ok(())
}

/// Counters of one VIP on one edge node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipStats {
    pub tenant: String,
    pub project: String,
    pub name: String,
    pub packets: u64,
    pub bytes: u64,
    pub new_flows: u64,
    /// Packets of new flows the VIP had no backend for.
    pub misses: u64,
}

/// State and counters of one backend on one edge node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendStats {
    pub tenant: String,
    pub project: String,
    pub vip: String,
    pub name: String,
    /// As the node's health checks see it.
    pub healthy: bool,
    /// Whether the VIP's lookup table holds entries for it.
    pub in_table: bool,
    pub packets: u64,
    pub bytes: u64,
    pub new_flows: u64,
}

/// What an edge node's agent last read from its data plane.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsSnapshot {
    pub node: String,
    /// How the program is attached (`xdp native on eth0`), or why it is not.
    pub attached: String,
    pub vips: Vec<VipStats>,
    pub backends: Vec<BackendStats>,
    /// Packets the program passed to the kernel (not for a VIP). Node-wide.
    pub pass: u64,
    /// Dropped packets by reason. Node-wide.
    pub drops: Vec<(String, u64)>,
    pub taken_ms: u64,
}

impl StatsSnapshot {
    /// What `tenant`/`project` may see: its own VIPs and backends only. The
    /// node-wide counters (`pass`, `drops`), which mix every tenant's
    /// traffic, stay only when `node_wide` (for cluster administrators).
    pub fn for_project(&self, tenant: &str, project: &str, node_wide: bool) -> StatsSnapshot {
        // Destructured in full, so a field added later must be decided on here.
        let StatsSnapshot {
            node,
            attached,
            vips,
            backends,
            pass,
            drops,
            taken_ms,
        } = self;
        StatsSnapshot {
            node: node.clone(),
            attached: attached.clone(),
            vips: vips
                .iter()
                .filter(|v| v.tenant == tenant && v.project == project)
                .cloned()
                .collect(),
            backends: backends
                .iter()
                .filter(|b| b.tenant == tenant && b.project == project)
                .cloned()
                .collect(),
            pass: if node_wide { *pass } else { 0 },
            drops: if node_wide { drops.clone() } else { Vec::new() },
            taken_ms: *taken_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vip() -> VipRecord {
        VipRecord {
            tenant: "acme".into(),
            project: "web".into(),
            name: "front".into(),
            address: "203.0.113.10".parse().unwrap(),
            port: 443,
            protocol: Protocol::Tcp,
            health: HealthCheck::default(),
            created_ms: 7,
        }
    }

    fn backend() -> BackendRecord {
        BackendRecord {
            tenant: "acme".into(),
            project: "web".into(),
            vip: "front".into(),
            name: "b1".into(),
            address: "10.0.0.5".parse().unwrap(),
            weight: WEIGHT_DEFAULT,
            created_ms: 8,
        }
    }

    #[test]
    fn records_round_trip_with_their_keys() {
        let mut v = vip();
        v.health.kind = HealthKind::Http {
            path: "/healthz".into(),
        };
        v.health.port = Some(8080);
        let (key, value) = v.to_kv();
        assert_eq!(key, "lb/vip/acme/web/front");
        assert_eq!(VipRecord::from_json(&value), Some(v.clone()));
        assert_eq!(v.address_key(), "lb/addr/tcp/203.0.113.10/443");
        assert_eq!(v.owner(), "acme/web/front");
        assert_eq!(v.resource(), "lb/vip/front");
        assert_eq!(v.endpoint(), "tcp 203.0.113.10:443");
        let b = backend();
        let (key, value) = b.to_kv();
        assert_eq!(key, "lb/backend/acme/web/front/b1");
        assert!(key.starts_with(&backend_prefix("acme", "web", "front")));
        assert_eq!(BackendRecord::from_json(&value), Some(b.clone()));
        assert_eq!(b.resource(), "lb/vip/front/backend/b1");
        assert_eq!(BackendRecord::from_json(b"{not json"), None);
    }

    #[test]
    fn wire_form_is_stable() {
        let v = vip();
        let json: serde_json::Value = serde_json::from_slice(&v.to_kv().1).unwrap();
        assert_eq!(json["protocol"], "tcp");
        assert_eq!(json["address"], "203.0.113.10");
        assert_eq!(json["health"]["kind"]["type"], "tcp");
        // Missing optional fields take their defaults.
        let sparse = r#"{"tenant":"a","project":"p","name":"n","address":"2001:db8::1",
            "port":53,"protocol":"udp","health":{"kind":{"type":"http","path":"/"}},"created_ms":1}"#;
        let v = VipRecord::from_json(sparse.as_bytes()).unwrap();
        assert_eq!(v.protocol, Protocol::Udp);
        assert_eq!(v.health.interval_ms, INTERVAL_MS_DEFAULT);
        assert_eq!(v.health.fall, THRESHOLD_DEFAULT);
        assert_eq!(v.endpoint(), "udp [2001:db8::1]:53");
        assert_eq!(v.address_key(), "lb/addr/udp/2001:db8::1/53");
        let b = r#"{"tenant":"a","project":"p","vip":"n","name":"b","address":"10.1.1.1","created_ms":1}"#;
        assert_eq!(
            BackendRecord::from_json(b.as_bytes()).unwrap().weight,
            WEIGHT_DEFAULT
        );
    }

    #[test]
    fn names_follow_volume_rules() {
        for good in ["web", "0", "a.b_c-d", &"x".repeat(63)] {
            assert_eq!(check_name("name", good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "Web",
            "-web",
            "_x",
            "a/b",
            "a@b",
            "a b",
            &"x".repeat(64),
        ] {
            let e = check_name("name", bad).unwrap_err();
            assert_eq!(e.field, "name");
            assert!(e.to_string().starts_with("name: "), "{e}");
        }
    }

    #[test]
    fn addresses_must_be_unicast() {
        for good in [
            "203.0.113.10",
            "10.0.0.1",
            "192.168.1.1",
            "2001:db8::1",
            "fd00::1",
        ] {
            let a: IpAddr = good.parse().unwrap();
            assert_eq!(check_vip_address(a), Ok(()), "{good}");
            assert_eq!(check_backend_address(a), Ok(()), "{good}");
        }
        let bad = [
            ("0.0.0.0", "unspecified"),
            ("::", "unspecified"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.250", "multicast"),
            ("ff02::1", "multicast"),
            ("255.255.255.255", "broadcast"),
            ("127.0.0.1", "loopback"),
            ("127.8.9.10", "loopback"),
            ("::1", "loopback"),
            ("169.254.1.1", "link-local"),
            ("fe80::1", "link-local"),
            ("febf::1", "link-local"),
            ("::ffff:10.0.0.1", "write the IPv4 form 10.0.0.1"),
        ];
        for (text, why) in bad {
            let a: IpAddr = text.parse().unwrap();
            let e = check_vip_address(a).unwrap_err();
            assert_eq!(e.field, "address");
            assert!(e.reason.contains(why), "{text}: {e}");
            assert_eq!(
                check_backend_address(a).unwrap_err().field,
                "backend address"
            );
        }
        assert!(parse_address("address", "10.0.0").is_err());
        assert!(parse_address("address", "host.example").is_err());
        assert_eq!(
            parse_address("address", " 10.0.0.9 ").unwrap(),
            IpAddr::from([10, 0, 0, 9])
        );
    }

    #[test]
    fn records_check_every_field() {
        assert_eq!(vip().check(), Ok(()));
        let mut v = vip();
        v.port = 0;
        assert_eq!(v.check().unwrap_err().field, "port");
        let mut v = vip();
        v.name = "Front".into();
        assert_eq!(v.check().unwrap_err().field, "name");
        let mut v = vip();
        v.health.rise = 0;
        assert_eq!(v.check().unwrap_err().field, "health rise");
        assert_eq!(backend().check(), Ok(()));
        let mut b = backend();
        b.weight = 0;
        assert_eq!(b.check(), Ok(()), "weight 0 drains");
        b.weight = WEIGHT_MAX;
        assert_eq!(b.check(), Ok(()));
        b.weight = WEIGHT_MAX + 1;
        assert_eq!(b.check().unwrap_err().field, "weight");
        let mut b = backend();
        b.address = "0.0.0.0".parse().unwrap();
        assert_eq!(b.check().unwrap_err().field, "backend address");
        assert_eq!(Protocol::parse("protocol", "udp"), Ok(Protocol::Udp));
        assert_eq!(
            Protocol::parse("protocol", "sctp").unwrap_err().field,
            "protocol"
        );
    }

    #[test]
    fn health_ranges() {
        let ok = HealthCheck::default();
        assert_eq!(ok.check(), Ok(()));
        let with = |f: &dyn Fn(&mut HealthCheck)| {
            let mut h = HealthCheck::default();
            f(&mut h);
            h.check()
        };
        assert!(with(&|h| h.interval_ms = 99).is_err());
        assert!(with(&|h| {
            h.interval_ms = 100;
            h.timeout_ms = 100;
        })
        .is_ok());
        assert!(with(&|h| h.interval_ms = 60_000).is_ok());
        assert!(with(&|h| h.interval_ms = 60_001).is_err());
        assert!(with(&|h| h.timeout_ms = 49).is_err());
        assert!(with(&|h| h.timeout_ms = 50).is_ok());
        assert!(with(&|h| h.timeout_ms = 1001).is_err());
        assert!(with(&|h| h.rise = 10).is_ok());
        assert!(with(&|h| h.rise = 11).is_err());
        assert!(with(&|h| h.fall = 0).is_err());
        assert!(with(&|h| h.port = Some(0)).is_err());
        assert!(with(&|h| h.port = Some(8080)).is_ok());
        for (path, good) in [
            ("/", true),
            ("/healthz?full=1", true),
            ("healthz", false),
            ("/a b", false),
            ("/\u{e9}", false),
        ] {
            let r = with(&|h| {
                h.kind = HealthKind::Http {
                    path: path.to_owned(),
                }
            });
            assert_eq!(r.is_ok(), good, "{path}: {r:?}");
        }
        let long = format!("/{}", "a".repeat(HTTP_PATH_BYTES_MAX));
        assert!(with(&|h| h.kind = HealthKind::Http { path: long.clone() }).is_err());
        let e = with(&|h| h.timeout_ms = 2000).unwrap_err();
        assert_eq!(e.field, "health timeout_ms");
        assert!(e.reason.contains("50..=1000"), "{e}");
    }

    #[test]
    fn health_updates_keep_what_they_do_not_name() {
        let base = HealthCheck::default();
        let http = HealthUpdate {
            kind: Some("http".into()),
            ..Default::default()
        }
        .apply(&base)
        .unwrap();
        assert_eq!(
            http.kind,
            HealthKind::Http {
                path: HTTP_PATH_DEFAULT.into()
            }
        );
        let tuned = HealthUpdate {
            http_path: Some("/ready".into()),
            port: Some(Some(9000)),
            fall: Some(5),
            ..Default::default()
        }
        .apply(&http)
        .unwrap();
        assert_eq!(
            tuned.kind,
            HealthKind::Http {
                path: "/ready".into()
            }
        );
        assert_eq!((tuned.port, tuned.fall, tuned.rise), (Some(9000), 5, 2));
        // Only fall changes; the path stays.
        let again = HealthUpdate {
            fall: Some(3),
            ..Default::default()
        }
        .apply(&tuned)
        .unwrap();
        assert_eq!(again.kind, tuned.kind);
        assert_eq!(again.port, Some(9000));
        let back = HealthUpdate {
            kind: Some("tcp".into()),
            port: Some(None),
            ..Default::default()
        }
        .apply(&again)
        .unwrap();
        assert_eq!((back.kind, back.port), (HealthKind::Tcp, None));
        let path_on_tcp = HealthUpdate {
            http_path: Some("/x".into()),
            ..Default::default()
        };
        assert_eq!(
            path_on_tcp.apply(&base).unwrap_err().field,
            "health http path"
        );
        let bad_kind = HealthUpdate {
            kind: Some("icmp".into()),
            ..Default::default()
        };
        assert_eq!(bad_kind.apply(&base).unwrap_err().field, "health check");
        let too_fast = HealthUpdate {
            interval_ms: Some(200),
            ..Default::default()
        };
        assert_eq!(
            too_fast.apply(&base).unwrap_err().field,
            "health timeout_ms",
            "the default timeout (500) exceeds a 200 ms interval"
        );
    }

    #[test]
    fn stats_show_a_project_only_its_own() {
        let vs = |tenant: &str, name: &str| VipStats {
            tenant: tenant.into(),
            project: "default".into(),
            name: name.into(),
            packets: 10,
            ..Default::default()
        };
        let bs = |tenant: &str, vip: &str| BackendStats {
            tenant: tenant.into(),
            project: "default".into(),
            vip: vip.into(),
            name: "b".into(),
            healthy: true,
            ..Default::default()
        };
        let all = StatsSnapshot {
            node: "edge-1".into(),
            attached: "xdp native on eth0".into(),
            vips: vec![vs("acme", "web"), vs("globex", "api")],
            backends: vec![bs("acme", "web"), bs("globex", "api")],
            pass: 99,
            drops: vec![("malformed".into(), 3)],
            taken_ms: 5,
        };
        let acme = all.for_project("acme", "default", false);
        assert_eq!(acme.vips, vec![vs("acme", "web")]);
        assert_eq!(acme.backends, vec![bs("acme", "web")]);
        assert_eq!((acme.pass, acme.drops.len()), (0, 0));
        assert_eq!(acme.attached, all.attached);
        assert!(all.for_project("acme", "other", false).vips.is_empty());
        let admin = all.for_project("system", "default", true);
        assert!(admin.vips.is_empty());
        assert_eq!((admin.pass, admin.drops.clone()), (99, all.drops.clone()));
        let json = serde_json::to_string(&all).unwrap();
        assert_eq!(serde_json::from_str::<StatsSnapshot>(&json).unwrap(), all);
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    fn address() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<[u8; 4]>().prop_map(IpAddr::from),
            any::<[u16; 8]>().prop_map(IpAddr::from),
        ]
    }

    proptest! {
        #[test]
        fn vip_records_round_trip(
            address in address(),
            port in any::<u16>(),
            udp in any::<bool>(),
            http in proptest::option::of("/[a-z0-9/]{0,20}"),
            check_port in proptest::option::of(any::<u16>()),
            interval_ms in any::<u32>(),
            timeout_ms in any::<u32>(),
            rise in any::<u8>(),
            fall in any::<u8>(),
            created_ms in any::<u64>(),
        ) {
            let v = VipRecord {
                tenant: "t".into(),
                project: "p".into(),
                name: "n".into(),
                address,
                port,
                protocol: if udp { Protocol::Udp } else { Protocol::Tcp },
                health: HealthCheck {
                    kind: http.map_or(HealthKind::Tcp, |path| HealthKind::Http { path }),
                    port: check_port,
                    interval_ms,
                    timeout_ms,
                    rise,
                    fall,
                },
                created_ms,
            };
            prop_assert_eq!(VipRecord::from_json(&v.to_kv().1), Some(v.clone()));
            // One address has one claim key, whatever text it was parsed from.
            let again: IpAddr = v.address.to_string().parse().unwrap();
            prop_assert_eq!(address_key(v.protocol, again, port), v.address_key());
        }

        #[test]
        fn backend_records_round_trip(
            address in address(),
            weight in any::<u32>(),
            created_ms in any::<u64>(),
        ) {
            let b = BackendRecord {
                tenant: "t".into(),
                project: "p".into(),
                vip: "v".into(),
                name: "b".into(),
                address,
                weight,
                created_ms,
            };
            prop_assert_eq!(BackendRecord::from_json(&b.to_kv().1), Some(b.clone()));
            prop_assert_eq!(check_weight(weight).is_ok(), weight <= WEIGHT_MAX);
        }
    }
}

//! The node's VM network (`compute.bridge`, `compute.network`): a Linux
//! bridge holding the network's first address (the VMs' gateway), one tap
//! device per VM on it, and an address per VM from the rest of the range,
//! kept in `addresses.json` so a VM keeps its address across restarts of
//! photon and of the VM. Tenant networks come later (PrismNet); this is
//! the per-node range the issue asks for.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// The node's VM network.
#[derive(Debug)]
pub struct NodeNetwork {
    pub bridge: String,
    pub network: Ipv4Addr,
    pub prefix_len: u8,
    /// The bridge's address: the VMs' default route.
    pub gateway: Ipv4Addr,
    file: PathBuf,
    addresses: Mutex<BTreeMap<u64, Ipv4Addr>>,
}

/// Parses `10.213.0.0/24` (the network's address and prefix, 8 to 30).
pub fn parse_cidr(text: &str) -> Result<(Ipv4Addr, u8), String> {
    let (address, prefix) = text
        .split_once('/')
        .ok_or_else(|| format!("{text:?} is not an IPv4 network like 10.213.0.0/24"))?;
    let address: Ipv4Addr = address
        .parse()
        .map_err(|_| format!("{text:?}: {address:?} is not an IPv4 address"))?;
    let prefix: u8 = prefix
        .parse()
        .ok()
        .filter(|p| (8..=30).contains(p))
        .ok_or_else(|| format!("{text:?}: the prefix must be 8 to 30"))?;
    let mask = u32::MAX << (32 - prefix);
    if u32::from(address) & !mask != 0 {
        return Err(format!("{text:?} has host bits set"));
    }
    Ok((address, prefix))
}

impl NodeNetwork {
    /// The network `cidr` on bridge `bridge`; addresses kept in `dir`.
    pub fn new(bridge: &str, cidr: &str, dir: &Path) -> Result<Self, String> {
        if bridge.is_empty() || bridge.len() > 15 || bridge.contains(['/', ' ']) {
            return Err(format!(
                "bridge name {bridge:?} must be 1-15 bytes without '/' or spaces"
            ));
        }
        let (network, prefix_len) = parse_cidr(cidr)?;
        let file = dir.join("addresses.json");
        let addresses = std::fs::read(&file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Ok(Self {
            bridge: bridge.to_owned(),
            network,
            prefix_len,
            gateway: Ipv4Addr::from(u32::from(network) + 1),
            file,
            addresses: Mutex::new(addresses),
        })
    }

    /// Makes the bridge (if missing), gives it the gateway address and
    /// brings it up.
    pub fn ensure_bridge(&self) -> Result<(), String> {
        if !Path::new("/sys/class/net").join(&self.bridge).exists() {
            ip(&["link", "add", &self.bridge, "type", "bridge"])?;
        }
        let gateway = format!("{}/{}", self.gateway, self.prefix_len);
        let shown = ip(&["-4", "addr", "show", "dev", &self.bridge])?;
        if !shown.contains(&format!("inet {gateway}")) {
            ip(&["addr", "add", &gateway, "dev", &self.bridge])?;
        }
        ip(&["link", "set", &self.bridge, "up"]).map(drop)
    }

    /// The tap device of VM `id` (at most 15 bytes, as Linux requires).
    pub fn tap_name(id: u64) -> String {
        format!("pvm{:012x}", id & 0xffff_ffff_ffff)
    }

    /// Creates VM `id`'s tap on the bridge (again if it exists) and
    /// returns its name.
    pub fn create_tap(&self, id: u64) -> Result<String, String> {
        let tap = Self::tap_name(id);
        if !Path::new("/sys/class/net").join(&tap).exists() {
            ip(&["tuntap", "add", "dev", &tap, "mode", "tap"])?;
        }
        ip(&["link", "set", &tap, "master", &self.bridge, "up"])?;
        Ok(tap)
    }

    /// Removes VM `id`'s tap and gives its address back.
    pub fn release(&self, id: u64) {
        let tap = Self::tap_name(id);
        if Path::new("/sys/class/net").join(&tap).exists() {
            if let Err(e) = ip(&["link", "del", &tap]) {
                tracing::warn!(tap, error = %e, "cannot remove a VM's tap");
            }
        }
        if let Ok(mut addresses) = self.addresses.lock() {
            if addresses.remove(&id).is_some() {
                self.save(&addresses);
            }
        }
    }

    /// VM `id`'s address, if it has one.
    pub fn known(&self, id: u64) -> Option<Ipv4Addr> {
        self.addresses.lock().ok()?.get(&id).copied()
    }

    /// VM `id`'s address: the one it had, or the lowest free one.
    pub fn address_of(&self, id: u64) -> Result<Ipv4Addr, String> {
        let mut addresses = self.addresses.lock().map_err(|e| e.to_string())?;
        if let Some(a) = addresses.get(&id) {
            return Ok(*a);
        }
        let base = u32::from(self.network);
        let hosts = (1u32 << (32 - self.prefix_len)) - 1;
        let taken: std::collections::HashSet<Ipv4Addr> = addresses.values().copied().collect();
        // .0 is the network, .1 the gateway, the last the broadcast.
        let free = (2..hosts)
            .map(|i| Ipv4Addr::from(base + i))
            .find(|a| !taken.contains(a))
            .ok_or_else(|| {
                format!(
                    "no free address in {}/{} for another VM",
                    self.network, self.prefix_len
                )
            })?;
        addresses.insert(id, free);
        self.save(&addresses);
        Ok(free)
    }

    fn save(&self, addresses: &BTreeMap<u64, Ipv4Addr>) {
        let tmp = self.file.with_extension("json.tmp");
        let ok = std::fs::write(&tmp, serde_json::to_vec(addresses).unwrap_or_default())
            .and_then(|()| std::fs::rename(&tmp, &self.file));
        if let Err(e) = ok {
            tracing::warn!(file = %self.file.display(), error = %e, "cannot save VM addresses");
        }
    }
}

/// Runs `ip ARGS`, returning its stdout or its stderr as the error.
fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip (iproute2): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_allocated_once_kept_and_given_back() {
        let dir = std::env::temp_dir().join(format!("photon-net-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let net = NodeNetwork::new("pbr0", "10.213.0.0/29", &dir).unwrap();
        assert_eq!(net.gateway, Ipv4Addr::new(10, 213, 0, 1));
        let a = net.address_of(7).unwrap();
        assert_eq!(a, Ipv4Addr::new(10, 213, 0, 2));
        assert_eq!(net.address_of(7).unwrap(), a);
        let got: Vec<Ipv4Addr> = (8..12).map(|id| net.address_of(id).unwrap()).collect();
        assert_eq!(got.last(), Some(&Ipv4Addr::new(10, 213, 0, 6)));
        assert!(net.address_of(99).unwrap_err().contains("no free address"));
        // Kept across a restart of the agent.
        let again = NodeNetwork::new("pbr0", "10.213.0.0/29", &dir).unwrap();
        assert_eq!(again.address_of(7).unwrap(), a);
        again.addresses.lock().unwrap().remove(&7);
        assert_eq!(again.address_of(99).unwrap(), a);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(parse_cidr("10.0.0.1/24").is_err());
        assert!(parse_cidr("10.0.0.0/31").is_err());
        assert!(NodeNetwork::tap_name(u64::MAX).len() <= 15);
    }
}

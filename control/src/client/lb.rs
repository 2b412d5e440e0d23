//! The FiberLB API: VIPs, their backends, and the counters of a node's
//! load balancer.

use fiberlb::spec::StatsSnapshot;
use photon_schema::lb_capnp::{backend, health_check, lb, vip};

use super::{reply, text, unit_call, Attempt, CallError, Caps, Client, ClientError};

/// A VIP's health check as stored: every field set.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HealthCheck {
    /// `tcp` or `http`.
    #[serde(rename = "check")]
    pub kind: String,
    /// The path an http check requests (`None` for a tcp check).
    pub http_path: Option<String>,
    /// The port probed on each backend; `None`: the VIP's own port.
    pub port: Option<u16>,
    pub interval_ms: u32,
    pub timeout_ms: u32,
    /// Passing checks in a row that make a backend healthy.
    pub rise: u8,
    /// Failing checks in a row that make a backend unhealthy.
    pub fall: u8,
}

/// A change to a health check: fields left `None` keep their value
/// ([`Client::set_vip_health`]) or take the default ([`Client::create_vip`]:
/// tcp, the VIP's port, 1000 ms, 500 ms, rise 2, fall 2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthChange {
    /// `tcp` or `http`.
    pub kind: Option<String>,
    pub http_path: Option<String>,
    /// 1-65535, or 0: the VIP's own port.
    pub port: Option<u16>,
    /// 100-60000.
    pub interval_ms: Option<u32>,
    /// 50 to the interval.
    pub timeout_ms: Option<u32>,
    /// 1-10.
    pub rise: Option<u8>,
    /// 1-10.
    pub fall: Option<u8>,
}

/// A virtual IP: an address, port and protocol balanced over backends.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Vip {
    pub name: String,
    /// `203.0.113.10` or `2001:db8::10`.
    pub address: String,
    pub port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
    pub health: HealthCheck,
    pub tenant: String,
    pub project: String,
    pub created_ms: u64,
    pub backend_count: u32,
}

/// A VIP with its backends.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VipInfo {
    #[serde(flatten)]
    pub vip: Vip,
    pub backends: Vec<Backend>,
}

/// A server behind a VIP (it has the VIP's address on its loopback).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Backend {
    pub vip: String,
    pub name: String,
    pub address: String,
    /// 0 (drained: keeps its flows, gets no new ones) to 65536.
    pub weight: u32,
    pub tenant: String,
    pub project: String,
    pub created_ms: u64,
}

/// The counters of the load balancer of the node the client talks to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LbStats {
    /// Whether the node runs a load-balancer agent.
    pub running: bool,
    /// Why not, when it does not.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// The control-plane node that answered.
    pub node: u64,
    /// The caller's VIPs and backends (and node-wide counters for cluster
    /// administrators), when the agent runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<StatsSnapshot>,
}

/// A reply that does not follow the schema.
fn malformed(what: String) -> CallError {
    CallError::Capnp(capnp::Error::failed(what))
}

/// A stored number that must fit `T` (the server keeps it in range).
fn stored<T: TryFrom<i64>>(value: i64, field: &str) -> Attempt<T> {
    T::try_from(value).map_err(|_| malformed(format!("health {field} {value} is out of range")))
}

fn read_health(h: health_check::Reader<'_>) -> Attempt<HealthCheck> {
    let path = text(h.get_http_path())?;
    let port = match h.get_port() {
        p if p <= 0 => None,
        p => Some(stored(i64::from(p), "port")?),
    };
    Ok(HealthCheck {
        kind: text(h.get_kind())?,
        http_path: (!path.is_empty()).then_some(path),
        port,
        interval_ms: stored(h.get_interval_ms(), "interval_ms")?,
        timeout_ms: stored(h.get_timeout_ms(), "timeout_ms")?,
        rise: stored(i64::from(h.get_rise()), "rise")?,
        fall: stored(i64::from(h.get_fall()), "fall")?,
    })
}

/// Writes the fields `h` sets; the others stay unset ("" and -1).
fn write_health(h: &HealthChange, mut out: health_check::Builder<'_>) {
    if let Some(kind) = &h.kind {
        out.set_kind(kind);
    }
    if let Some(path) = &h.http_path {
        out.set_http_path(path);
    }
    if let Some(port) = h.port {
        out.set_port(i32::from(port));
    }
    if let Some(ms) = h.interval_ms {
        out.set_interval_ms(i64::from(ms));
    }
    if let Some(ms) = h.timeout_ms {
        out.set_timeout_ms(i64::from(ms));
    }
    if let Some(n) = h.rise {
        out.set_rise(i32::from(n));
    }
    if let Some(n) = h.fall {
        out.set_fall(i32::from(n));
    }
}

fn read_vip(v: vip::Reader<'_>) -> Attempt<Vip> {
    Ok(Vip {
        name: text(v.get_name())?,
        address: text(v.get_address())?,
        port: v.get_port(),
        protocol: text(v.get_protocol())?,
        health: read_health(v.get_health()?)?,
        tenant: text(v.get_tenant())?,
        project: text(v.get_project())?,
        created_ms: v.get_created_ms(),
        backend_count: v.get_backend_count(),
    })
}

fn read_backend(b: backend::Reader<'_>) -> Attempt<Backend> {
    Ok(Backend {
        vip: text(b.get_vip())?,
        name: text(b.get_name())?,
        address: text(b.get_address())?,
        weight: b.get_weight(),
        tenant: text(b.get_tenant())?,
        project: text(b.get_project())?,
        created_ms: b.get_created_ms(),
    })
}

fn read_backends(list: capnp::struct_list::Reader<'_, backend::Owned>) -> Attempt<Vec<Backend>> {
    list.iter().map(read_backend).collect()
}

fn lb_api(caps: &Caps) -> lb::Client {
    caps.session().lb_request().send().pipeline.get_lb()
}

impl Client {
    /// The project's VIPs.
    pub async fn list_vips(&mut self) -> Result<Vec<Vip>, ClientError> {
        self.with_session(|caps| async move {
            let reply = lb_api(&caps).list_vips_request().send().promise.await?;
            reply!(reply.get()?)
                .get_vips()?
                .iter()
                .map(read_vip)
                .collect()
        })
        .await
    }

    /// Creates a VIP; its address, port and protocol (`tcp`, `udp`; "":
    /// tcp) must be free in the whole cluster.
    pub async fn create_vip(
        &mut self,
        name: &str,
        address: &str,
        port: u16,
        protocol: &str,
        health: &HealthChange,
    ) -> Result<Vip, ClientError> {
        self.with_session(|caps| async move {
            let mut call = lb_api(&caps).create_vip_request();
            let mut p = call.get();
            p.set_name(name);
            p.set_address(address);
            p.set_port(port);
            p.set_protocol(protocol);
            write_health(health, p.init_health());
            let reply = call.send().promise.await?;
            read_vip(reply!(reply.get()?).get_vip()?)
        })
        .await
    }

    /// A VIP and its backends.
    pub async fn vip_info(&mut self, name: &str) -> Result<VipInfo, ClientError> {
        self.with_session(|caps| async move {
            let mut call = lb_api(&caps).vip_info_request();
            call.get().set_name(name);
            let reply = call.send().promise.await?;
            let r = reply!(reply.get()?);
            Ok(VipInfo {
                vip: read_vip(r.get_vip()?)?,
                backends: read_backends(r.get_backends()?)?,
            })
        })
        .await
    }

    /// Changes a VIP's health check (fields `health` leaves out keep their
    /// value).
    pub async fn set_vip_health(
        &mut self,
        name: &str,
        health: &HealthChange,
    ) -> Result<Vip, ClientError> {
        self.with_session(|caps| async move {
            let mut call = lb_api(&caps).set_health_request();
            call.get().set_name(name);
            write_health(health, call.get().init_health());
            let reply = call.send().promise.await?;
            read_vip(reply!(reply.get()?).get_vip()?)
        })
        .await
    }

    /// Deletes a VIP (refused while it has backends).
    pub async fn delete_vip(&mut self, name: &str) -> Result<(), ClientError> {
        unit_call!(self, lb_api, delete_vip_request, |p| {
            p.set_name(name);
        })
    }

    /// Adds a backend to a VIP (`weight` `None`: 100).
    pub async fn add_backend(
        &mut self,
        vip: &str,
        name: &str,
        address: &str,
        weight: Option<u32>,
    ) -> Result<Backend, ClientError> {
        self.with_session(|caps| async move {
            let mut call = lb_api(&caps).add_backend_request();
            let mut p = call.get();
            p.set_vip(vip);
            p.set_name(name);
            p.set_address(address);
            if let Some(w) = weight {
                p.set_weight(w);
            }
            let reply = call.send().promise.await?;
            read_backend(reply!(reply.get()?).get_backend()?)
        })
        .await
    }

    /// A VIP's backends.
    pub async fn list_backends(&mut self, vip: &str) -> Result<Vec<Backend>, ClientError> {
        self.with_session(|caps| async move {
            let mut call = lb_api(&caps).list_backends_request();
            call.get().set_vip(vip);
            let reply = call.send().promise.await?;
            read_backends(reply!(reply.get()?).get_backends()?)
        })
        .await
    }

    /// Changes a backend's weight; 0 drains it (its flows stay, it gets no
    /// new ones).
    pub async fn set_backend_weight(
        &mut self,
        vip: &str,
        name: &str,
        weight: u32,
    ) -> Result<Backend, ClientError> {
        self.with_session(|caps| async move {
            let mut call = lb_api(&caps).set_weight_request();
            let mut p = call.get();
            p.set_vip(vip);
            p.set_name(name);
            p.set_weight(weight);
            let reply = call.send().promise.await?;
            read_backend(reply!(reply.get()?).get_backend()?)
        })
        .await
    }

    /// Removes a backend from a VIP.
    pub async fn remove_backend(&mut self, vip: &str, name: &str) -> Result<(), ClientError> {
        unit_call!(self, lb_api, remove_backend_request, |p| {
            p.set_vip(vip);
            p.set_name(name);
        })
    }

    /// The counters of the answering node's load balancer, for the caller's
    /// VIPs and backends.
    pub async fn lb_stats(&mut self) -> Result<LbStats, ClientError> {
        self.with_session(|caps| async move {
            let reply = lb_api(&caps).stats_request().send().promise.await?;
            let r = reply!(reply.get()?);
            let running = r.get_running();
            let snapshot = if running {
                let json = text(r.get_snapshot_json())?;
                Some(serde_json::from_str(&json).map_err(|e| {
                    malformed(format!(
                        "the node sent load-balancer counters this client cannot read: {e}"
                    ))
                })?)
            } else {
                None
            };
            Ok(LbStats {
                running,
                reason: text(r.get_reason())?,
                node: r.get_node(),
                snapshot,
            })
        })
        .await
    }
}

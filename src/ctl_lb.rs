//! `photon ctl lb`: FiberLB VIPs and backends of the caller's project, and
//! the counters of the node's load balancer.

use anyhow::Context;
use clap::{Args, Subcommand};
use control_schema::lb_capnp::{backend, health_check, vip};
use fiberlb::spec::StatsSnapshot;
use photon_control::client::Client;
use serde_json::{json, Value};

#[derive(Debug, Subcommand)]
pub enum LbCommand {
    /// Virtual IPs: an address, port and protocol balanced over backends.
    #[command(subcommand)]
    Vip(VipCommand),
    /// The servers behind a VIP (each has the VIP's address on its loopback).
    #[command(subcommand)]
    Backend(BackendCommand),
    /// Packet and flow counters of this node's load balancer, for the
    /// project's VIPs and backends.
    Stats,
}

#[derive(Debug, Subcommand)]
pub enum VipCommand {
    /// Create a VIP (its address, port and protocol must be free in the cluster).
    Create {
        name: String,
        /// The VIP's address (IPv4 or IPv6).
        #[arg(long)]
        address: String,
        #[arg(long)]
        port: u16,
        #[arg(long, default_value = "tcp", value_parser = ["tcp", "udp"])]
        protocol: String,
        #[command(flatten)]
        health: HealthArgs,
    },
    /// List the project's VIPs.
    Ls,
    /// Show a VIP, its health check and its backends.
    Info { name: String },
    /// Change a VIP's health check (flags not given keep their value).
    SetHealth {
        name: String,
        #[command(flatten)]
        health: HealthArgs,
    },
    /// Delete a VIP (remove its backends first).
    Rm { name: String },
}

#[derive(Debug, Subcommand)]
pub enum BackendCommand {
    /// Add a backend to a VIP.
    Add {
        vip: String,
        name: String,
        /// The backend server's address (the VIP's address family).
        #[arg(long)]
        address: String,
        /// Share of new flows, 0 (drained) to 65536; default 100.
        #[arg(long)]
        weight: Option<u32>,
    },
    /// List a VIP's backends.
    Ls { vip: String },
    /// Change a backend's weight; 0 drains it (existing flows stay, no new ones).
    SetWeight {
        vip: String,
        name: String,
        weight: u32,
    },
    /// Remove a backend from a VIP.
    Rm { vip: String, name: String },
}

/// Health-check flags; those not given keep their value (`set-health`) or
/// take the default (`create`: tcp, the VIP's port, 1000 ms, 500 ms, 2, 2).
#[derive(Debug, Args)]
pub struct HealthArgs {
    /// Health check: tcp (a connection opens) or http (GET answered 2xx/3xx).
    #[arg(long, value_parser = ["tcp", "http"])]
    check: Option<String>,
    /// Path an http check requests (default /).
    #[arg(long, value_parser = non_empty)]
    http_path: Option<String>,
    /// Port probed on each backend; 0: the VIP's port (the default).
    #[arg(long)]
    check_port: Option<u16>,
    /// Time between checks, 100 to 60000 ms.
    #[arg(long)]
    interval_ms: Option<u32>,
    /// Time a check may take, 50 ms to the interval.
    #[arg(long)]
    timeout_ms: Option<u32>,
    /// Passing checks in a row that make a backend healthy (1-10).
    #[arg(long)]
    rise: Option<u8>,
    /// Failing checks in a row that make a backend unhealthy (1-10).
    #[arg(long)]
    fall: Option<u8>,
}

fn non_empty(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Err("must not be empty (an http check's path starts with /)".into());
    }
    Ok(text.to_owned())
}

impl HealthArgs {
    fn write(&self, mut out: health_check::Builder<'_>) {
        if let Some(kind) = &self.check {
            out.set_kind(kind);
        }
        if let Some(path) = &self.http_path {
            out.set_http_path(path);
        }
        if let Some(port) = self.check_port {
            out.set_port(i32::from(port));
        }
        if let Some(ms) = self.interval_ms {
            out.set_interval_ms(i64::from(ms));
        }
        if let Some(ms) = self.timeout_ms {
            out.set_timeout_ms(i64::from(ms));
        }
        if let Some(n) = self.rise {
            out.set_rise(i32::from(n));
        }
        if let Some(n) = self.fall {
            out.set_fall(i32::from(n));
        }
    }
}

fn text(t: capnp::Result<capnp::text::Reader<'_>>) -> capnp::Result<String> {
    Ok(t?.to_string().unwrap_or_default())
}

fn health_json(h: health_check::Reader<'_>) -> capnp::Result<Value> {
    let path = text(h.get_http_path())?;
    let port = h.get_port();
    Ok(json!({
        "check": text(h.get_kind())?,
        "http_path": if path.is_empty() { Value::Null } else { Value::String(path) },
        "port": if port > 0 { json!(port) } else { Value::Null },
        "interval_ms": h.get_interval_ms(),
        "timeout_ms": h.get_timeout_ms(),
        "rise": h.get_rise(),
        "fall": h.get_fall(),
    }))
}

fn vip_json(v: vip::Reader<'_>) -> capnp::Result<Value> {
    Ok(json!({
        "name": text(v.get_name())?,
        "address": text(v.get_address())?,
        "port": v.get_port(),
        "protocol": text(v.get_protocol())?,
        "health": health_json(v.get_health()?)?,
        "tenant": text(v.get_tenant())?,
        "project": text(v.get_project())?,
        "created_ms": v.get_created_ms(),
        "backend_count": v.get_backend_count(),
    }))
}

fn backend_json(b: backend::Reader<'_>) -> capnp::Result<Value> {
    Ok(json!({
        "vip": text(b.get_vip())?,
        "name": text(b.get_name())?,
        "address": text(b.get_address())?,
        "weight": b.get_weight(),
        "tenant": text(b.get_tenant())?,
        "project": text(b.get_project())?,
        "created_ms": b.get_created_ms(),
    }))
}

fn backends_json(
    list: capnp::struct_list::Reader<'_, backend::Owned>,
) -> capnp::Result<Vec<Value>> {
    list.iter().map(backend_json).collect()
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// `tcp 203.0.113.10:80` or `udp [2001:db8::1]:53`.
fn endpoint(v: &Value) -> String {
    let address = s(&v["address"]);
    let port = &v["port"];
    if address.contains(':') {
        format!("{} [{address}]:{port}", s(&v["protocol"]))
    } else {
        format!("{} {address}:{port}", s(&v["protocol"]))
    }
}

/// `http GET /healthz on port 8080 every 1000 ms, timeout 500 ms, rise 2, fall 2`.
fn describe_health(h: &Value) -> String {
    let what = match h["http_path"].as_str() {
        Some(path) => format!("http GET {path}"),
        None => "tcp connect".to_owned(),
    };
    let port = match h["port"].as_u64() {
        Some(p) => format!("port {p}"),
        None => "the VIP's port".to_owned(),
    };
    format!(
        "{what} on {port} every {} ms, timeout {} ms, rise {}, fall {}",
        h["interval_ms"], h["timeout_ms"], h["rise"], h["fall"]
    )
}

fn weight_note(weight: u64) -> &'static str {
    if weight == 0 {
        " (drained: keeps its flows, gets no new ones)"
    } else {
        ""
    }
}

fn print_backends(backends: &[Value]) {
    println!("{:<24} {:<40} {:>7}", "BACKEND", "ADDRESS", "WEIGHT");
    for b in backends {
        let weight = b["weight"].as_u64().unwrap_or(0);
        println!(
            "{:<24} {:<40} {:>7}{}",
            s(&b["name"]),
            s(&b["address"]),
            weight,
            if weight == 0 { " drained" } else { "" }
        );
    }
}

pub async fn run(client: &mut Client, cmd: LbCommand, as_json: bool) -> anyhow::Result<()> {
    match cmd {
        LbCommand::Vip(cmd) => vip_command(client, cmd, as_json).await,
        LbCommand::Backend(cmd) => backend_command(client, cmd, as_json).await,
        LbCommand::Stats => stats(client, as_json).await,
    }
}

async fn vip_command(client: &mut Client, cmd: VipCommand, as_json: bool) -> anyhow::Result<()> {
    match cmd {
        VipCommand::Create {
            name,
            address,
            port,
            protocol,
            health,
        } => {
            let v = client
                .with_lb(|api| {
                    let (name, address, protocol) =
                        (name.clone(), address.clone(), protocol.clone());
                    let health = &health;
                    async move {
                        let mut call = api.create_vip_request();
                        let mut p = call.get();
                        p.set_name(&name);
                        p.set_address(&address);
                        p.set_port(port);
                        p.set_protocol(&protocol);
                        health.write(p.init_health());
                        let reply = call.send().promise.await?;
                        vip_json(reply.get()?.get_vip()?)
                    }
                })
                .await?;
            if as_json {
                println!("{v}");
            } else {
                println!(
                    "created vip {}: {} (health: {})",
                    s(&v["name"]),
                    endpoint(&v),
                    describe_health(&v["health"])
                );
            }
        }
        VipCommand::Ls => {
            let all = client
                .with_lb(|api| async move {
                    let reply = api.list_vips_request().send().promise.await?;
                    reply
                        .get()?
                        .get_vips()?
                        .iter()
                        .map(vip_json)
                        .collect::<capnp::Result<Vec<_>>>()
                })
                .await?;
            if as_json {
                println!("{}", Value::Array(all));
            } else {
                println!("{:<24} {:<50} {:>8} HEALTH", "NAME", "ENDPOINT", "BACKENDS");
                for v in all {
                    let h = &v["health"];
                    let check = match h["http_path"].as_str() {
                        Some(path) => format!("http {path}"),
                        None => "tcp".to_owned(),
                    };
                    println!(
                        "{:<24} {:<50} {:>8} {check}",
                        s(&v["name"]),
                        endpoint(&v),
                        v["backend_count"]
                    );
                }
            }
        }
        VipCommand::Info { name } => {
            let (v, backends) = client
                .with_lb(|api| {
                    let name = name.clone();
                    async move {
                        let mut call = api.vip_info_request();
                        call.get().set_name(&name);
                        let reply = call.send().promise.await?;
                        let r = reply.get()?;
                        Ok((vip_json(r.get_vip()?)?, backends_json(r.get_backends()?)?))
                    }
                })
                .await?;
            if as_json {
                let mut v = v;
                v["backends"] = Value::Array(backends);
                println!("{v}");
            } else {
                println!("{:<12} {}", "name", s(&v["name"]));
                println!("{:<12} {}", "endpoint", endpoint(&v));
                println!("{:<12} {}", "tenant", s(&v["tenant"]));
                println!("{:<12} {}", "project", s(&v["project"]));
                println!("{:<12} {}", "health", describe_health(&v["health"]));
                println!(
                    "{:<12} {}",
                    "created",
                    crate::ctl::utc_time(v["created_ms"].as_u64().unwrap_or(0))
                );
                println!("{:<12} {}", "backends", backends.len());
                if !backends.is_empty() {
                    print_backends(&backends);
                }
            }
        }
        VipCommand::SetHealth { name, health } => {
            let v = client
                .with_lb(|api| {
                    let name = name.clone();
                    let health = &health;
                    async move {
                        let mut call = api.set_health_request();
                        call.get().set_name(&name);
                        health.write(call.get().init_health());
                        let reply = call.send().promise.await?;
                        vip_json(reply.get()?.get_vip()?)
                    }
                })
                .await?;
            if as_json {
                println!("{v}");
            } else {
                println!(
                    "vip {}: health {}",
                    s(&v["name"]),
                    describe_health(&v["health"])
                );
            }
        }
        VipCommand::Rm { name } => {
            client
                .with_lb(|api| {
                    let name = name.clone();
                    async move {
                        let mut call = api.delete_vip_request();
                        call.get().set_name(&name);
                        call.send().promise.await?;
                        Ok(())
                    }
                })
                .await?;
            if as_json {
                println!("{}", json!({"deleted": name}));
            } else {
                println!("deleted vip {name}");
            }
        }
    }
    Ok(())
}

async fn backend_command(
    client: &mut Client,
    cmd: BackendCommand,
    as_json: bool,
) -> anyhow::Result<()> {
    match cmd {
        BackendCommand::Add {
            vip,
            name,
            address,
            weight,
        } => {
            let b = client
                .with_lb(|api| {
                    let (vip, name, address) = (vip.clone(), name.clone(), address.clone());
                    async move {
                        let mut call = api.add_backend_request();
                        let mut p = call.get();
                        p.set_vip(&vip);
                        p.set_name(&name);
                        p.set_address(&address);
                        if let Some(w) = weight {
                            p.set_weight(w);
                        }
                        let reply = call.send().promise.await?;
                        backend_json(reply.get()?.get_backend()?)
                    }
                })
                .await?;
            if as_json {
                println!("{b}");
            } else {
                let weight = b["weight"].as_u64().unwrap_or(0);
                println!(
                    "added backend {} ({}, weight {weight}) to vip {}{}",
                    s(&b["name"]),
                    s(&b["address"]),
                    s(&b["vip"]),
                    if weight == 0 {
                        "; weight 0 drains it: it gets no new flows"
                    } else {
                        ""
                    }
                );
            }
        }
        BackendCommand::Ls { vip } => {
            let all = client
                .with_lb(|api| {
                    let vip = vip.clone();
                    async move {
                        let mut call = api.list_backends_request();
                        call.get().set_vip(&vip);
                        let reply = call.send().promise.await?;
                        backends_json(reply.get()?.get_backends()?)
                    }
                })
                .await?;
            if as_json {
                println!("{}", Value::Array(all));
            } else {
                print_backends(&all);
            }
        }
        BackendCommand::SetWeight { vip, name, weight } => {
            let b = client
                .with_lb(|api| {
                    let (vip, name) = (vip.clone(), name.clone());
                    async move {
                        let mut call = api.set_weight_request();
                        call.get().set_vip(&vip);
                        call.get().set_name(&name);
                        call.get().set_weight(weight);
                        let reply = call.send().promise.await?;
                        backend_json(reply.get()?.get_backend()?)
                    }
                })
                .await?;
            if as_json {
                println!("{b}");
            } else {
                let weight = b["weight"].as_u64().unwrap_or(0);
                println!(
                    "backend {} of vip {}: weight {weight}{}",
                    s(&b["name"]),
                    s(&b["vip"]),
                    weight_note(weight)
                );
            }
        }
        BackendCommand::Rm { vip, name } => {
            client
                .with_lb(|api| {
                    let (vip, name) = (vip.clone(), name.clone());
                    async move {
                        let mut call = api.remove_backend_request();
                        call.get().set_vip(&vip);
                        call.get().set_name(&name);
                        call.send().promise.await?;
                        Ok(())
                    }
                })
                .await?;
            if as_json {
                println!("{}", json!({"removed": name, "vip": vip}));
            } else {
                println!("removed backend {name} from vip {vip}");
            }
        }
    }
    Ok(())
}

/// What `stats` answered.
struct StatsReply {
    running: bool,
    reason: String,
    node: u64,
    snapshot: String,
}

async fn stats(client: &mut Client, as_json: bool) -> anyhow::Result<()> {
    let reply = client
        .with_lb(|api| async move {
            let reply = api.stats_request().send().promise.await?;
            let r = reply.get()?;
            Ok(StatsReply {
                running: r.get_running(),
                reason: text(r.get_reason())?,
                node: r.get_node(),
                snapshot: text(r.get_snapshot_json())?,
            })
        })
        .await?;
    if !reply.running {
        if as_json {
            println!(
                "{}",
                json!({"running": false, "node": reply.node, "reason": reply.reason})
            );
        } else {
            println!("{}", reply.reason);
        }
        return Ok(());
    }
    let snapshot: StatsSnapshot = serde_json::from_str(&reply.snapshot)
        .context("the node sent load-balancer counters this photon cannot read")?;
    if as_json {
        println!(
            "{}",
            json!({"running": true, "node": reply.node, "snapshot": snapshot})
        );
        return Ok(());
    }
    print_stats(reply.node, &snapshot);
    Ok(())
}

fn print_stats(node: u64, s: &StatsSnapshot) {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let age_s = now_ms.saturating_sub(s.taken_ms) as f64 / 1000.0;
    println!(
        "node {} (control node {node}): {}; counters taken {age_s:.1} s ago",
        s.node, s.attached
    );
    println!(
        "{:<24} {:>14} {:>16} {:>12} {:>10}",
        "VIP", "PACKETS", "BYTES", "NEW_FLOWS", "MISSES"
    );
    let mut vips = s.vips.clone();
    vips.sort_by(|a, b| a.name.cmp(&b.name));
    for v in &vips {
        println!(
            "{:<24} {:>14} {:>16} {:>12} {:>10}",
            v.name, v.packets, v.bytes, v.new_flows, v.misses
        );
    }
    if vips.is_empty() {
        println!("(no VIP of this project on this node)");
    }
    let mut backends = s.backends.clone();
    backends.sort_by(|a, b| (&a.vip, &a.name).cmp(&(&b.vip, &b.name)));
    if !backends.is_empty() {
        println!();
        println!(
            "{:<24} {:<24} {:<9} {:<9} {:>14} {:>16} {:>12}",
            "VIP", "BACKEND", "HEALTHY", "IN_TABLE", "PACKETS", "BYTES", "NEW_FLOWS"
        );
        let yes = |b: bool| if b { "yes" } else { "no" };
        for b in &backends {
            println!(
                "{:<24} {:<24} {:<9} {:<9} {:>14} {:>16} {:>12}",
                b.vip,
                b.name,
                yes(b.healthy),
                yes(b.in_table),
                b.packets,
                b.bytes,
                b.new_flows
            );
        }
    }
    // Node-wide counters come only to cluster administrators.
    if s.pass > 0 || !s.drops.is_empty() {
        println!();
        println!("node-wide: {} packets passed to the kernel", s.pass);
        for (reason, count) in &s.drops {
            println!("  dropped {count:>14} {reason}");
        }
    }
}

//! `photon ctl lb`: FiberLB VIPs and backends of the caller's project, and
//! the counters of the node's load balancer.

use std::fmt::Write as _;

use clap::{Args, Subcommand};
use fiberlb::spec::StatsSnapshot;
use photon_control::client::{Backend, Client, HealthChange, HealthCheck, LbStats, Vip, VipInfo};
use serde_json::json;

use crate::ctl::output::{Output, Table};
use crate::ctl::utc_time;

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
    /// The change these flags ask for.
    fn change(self) -> HealthChange {
        HealthChange {
            kind: self.check,
            http_path: self.http_path,
            port: self.check_port,
            interval_ms: self.interval_ms,
            timeout_ms: self.timeout_ms,
            rise: self.rise,
            fall: self.fall,
        }
    }
}

/// `tcp 203.0.113.10:80` or `udp [2001:db8::1]:53`.
fn endpoint(v: &Vip) -> String {
    if v.address.contains(':') {
        format!("{} [{}]:{}", v.protocol, v.address, v.port)
    } else {
        format!("{} {}:{}", v.protocol, v.address, v.port)
    }
}

/// `http GET /healthz on port 8080 every 1000 ms, timeout 500 ms, rise 2, fall 2`.
fn describe_health(h: &HealthCheck) -> String {
    let what = match &h.http_path {
        Some(path) => format!("http GET {path}"),
        None => "tcp connect".to_owned(),
    };
    let port = match h.port {
        Some(p) => format!("port {p}"),
        None => "the VIP's port".to_owned(),
    };
    format!(
        "{what} on {port} every {} ms, timeout {} ms, rise {}, fall {}",
        h.interval_ms, h.timeout_ms, h.rise, h.fall
    )
}

/// `tcp` or `http /healthz`.
fn short_health(h: &HealthCheck) -> String {
    match &h.http_path {
        Some(path) => format!("http {path}"),
        None => "tcp".to_owned(),
    }
}

fn weight_note(weight: u32) -> &'static str {
    if weight == 0 {
        " (drained: keeps its flows, gets no new ones)"
    } else {
        ""
    }
}

const BACKEND_HEADERS: [&str; 3] = ["BACKEND", "ADDRESS", "WEIGHT"];

fn backend_cells(b: &Backend) -> [String; 3] {
    let drained = if b.weight == 0 { " drained" } else { "" };
    [
        b.name.clone(),
        b.address.clone(),
        format!("{}{drained}", b.weight),
    ]
}

pub async fn run(client: &mut Client, cmd: LbCommand, out: Output) -> anyhow::Result<()> {
    match cmd {
        LbCommand::Vip(cmd) => vip_command(client, cmd, out).await,
        LbCommand::Backend(cmd) => backend_command(client, cmd, out).await,
        LbCommand::Stats => stats(client, out).await,
    }
}

async fn vip_command(client: &mut Client, cmd: VipCommand, out: Output) -> anyhow::Result<()> {
    match cmd {
        VipCommand::Create {
            name,
            address,
            port,
            protocol,
            health,
        } => {
            let vip = client
                .create_vip(&name, &address, port, &protocol, &health.change())
                .await?;
            out.show(&vip, |v| {
                format!(
                    "created vip {}: {} (health: {})",
                    v.name,
                    endpoint(v),
                    describe_health(&v.health)
                )
            });
        }
        VipCommand::Ls => {
            let vips = client.list_vips().await?;
            out.list(&vips, ["NAME", "ENDPOINT", "BACKENDS", "HEALTH"], |v| {
                [
                    v.name.clone(),
                    endpoint(v),
                    v.backend_count.to_string(),
                    short_health(&v.health),
                ]
            });
        }
        VipCommand::Info { name } => {
            let info = client.vip_info(&name).await?;
            out.show(&info, vip_info_text);
        }
        VipCommand::SetHealth { name, health } => {
            let vip = client.set_vip_health(&name, &health.change()).await?;
            out.show(&vip, |v| {
                format!("vip {}: health {}", v.name, describe_health(&v.health))
            });
        }
        VipCommand::Rm { name } => {
            client.delete_vip(&name).await?;
            out.done(json!({"deleted": name}), format!("deleted vip {name}"));
        }
    }
    Ok(())
}

/// `vip info` for people: the VIP, then its backends.
fn vip_info_text(info: &VipInfo) -> String {
    let v = &info.vip;
    let mut text = String::new();
    let mut line = |key: &str, value: String| {
        let _ = writeln!(text, "{key:<12} {value}");
    };
    line("name", v.name.clone());
    line("endpoint", endpoint(v));
    line("tenant", v.tenant.clone());
    line("project", v.project.clone());
    line("health", describe_health(&v.health));
    line("created", utc_time(v.created_ms));
    line("backends", info.backends.len().to_string());
    if !info.backends.is_empty() {
        let mut table = Table::new(BACKEND_HEADERS);
        for b in &info.backends {
            table.row(backend_cells(b));
        }
        text.push_str(&table.to_string());
    }
    text
}

async fn backend_command(
    client: &mut Client,
    cmd: BackendCommand,
    out: Output,
) -> anyhow::Result<()> {
    match cmd {
        BackendCommand::Add {
            vip,
            name,
            address,
            weight,
        } => {
            let backend = client.add_backend(&vip, &name, &address, weight).await?;
            out.show(&backend, |b| {
                let drains = if b.weight == 0 {
                    "; weight 0 drains it: it gets no new flows"
                } else {
                    ""
                };
                format!(
                    "added backend {} ({}, weight {}) to vip {}{drains}",
                    b.name, b.address, b.weight, b.vip
                )
            });
        }
        BackendCommand::Ls { vip } => {
            let backends = client.list_backends(&vip).await?;
            out.list(&backends, BACKEND_HEADERS, backend_cells);
        }
        BackendCommand::SetWeight { vip, name, weight } => {
            let backend = client.set_backend_weight(&vip, &name, weight).await?;
            out.show(&backend, |b| {
                format!(
                    "backend {} of vip {}: weight {}{}",
                    b.name,
                    b.vip,
                    b.weight,
                    weight_note(b.weight)
                )
            });
        }
        BackendCommand::Rm { vip, name } => {
            client.remove_backend(&vip, &name).await?;
            out.done(
                json!({"removed": name, "vip": vip}),
                format!("removed backend {name} from vip {vip}"),
            );
        }
    }
    Ok(())
}

async fn stats(client: &mut Client, out: Output) -> anyhow::Result<()> {
    let stats = client.lb_stats().await?;
    out.show(&stats, |s: &LbStats| match &s.snapshot {
        Some(snapshot) if s.running => stats_text(s.node, snapshot),
        _ => s.reason.clone(),
    });
    Ok(())
}

/// `lb stats` for people: where the counters come from, the VIPs, the
/// backends, and the node-wide counters (cluster administrators only).
fn stats_text(node: u64, s: &StatsSnapshot) -> String {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let age_s = now_ms.saturating_sub(s.taken_ms) as f64 / 1000.0;
    let mut text = format!(
        "node {} (control node {node}): {}; counters taken {age_s:.1} s ago\n",
        s.node, s.attached
    );
    text.push_str(&vip_stats_table(s));
    if !s.backends.is_empty() {
        text.push('\n');
        text.push_str(&backend_stats_table(s));
    }
    // Node-wide counters come only to cluster administrators.
    if s.pass > 0 || !s.drops.is_empty() {
        let _ = writeln!(text, "\nnode-wide: {} packets passed to the kernel", s.pass);
        for (reason, count) in &s.drops {
            let _ = writeln!(text, "  dropped {count:>14} {reason}");
        }
    }
    text
}

fn vip_stats_table(s: &StatsSnapshot) -> String {
    let mut vips: Vec<_> = s.vips.iter().collect();
    vips.sort_by(|a, b| a.name.cmp(&b.name));
    let mut table = Table::new(["VIP", "PACKETS", "BYTES", "NEW_FLOWS", "MISSES"]);
    for v in &vips {
        table.row([
            v.name.clone(),
            v.packets.to_string(),
            v.bytes.to_string(),
            v.new_flows.to_string(),
            v.misses.to_string(),
        ]);
    }
    let mut text = table.to_string();
    if vips.is_empty() {
        text.push_str("(no VIP of this project on this node)\n");
    }
    text
}

fn backend_stats_table(s: &StatsSnapshot) -> String {
    let mut backends: Vec<_> = s.backends.iter().collect();
    backends.sort_by(|a, b| (&a.vip, &a.name).cmp(&(&b.vip, &b.name)));
    let yes = |b: bool| if b { "yes" } else { "no" }.to_owned();
    let mut table = Table::new([
        "VIP",
        "BACKEND",
        "HEALTHY",
        "IN_TABLE",
        "PACKETS",
        "BYTES",
        "NEW_FLOWS",
    ]);
    for b in backends {
        table.row([
            b.vip.clone(),
            b.name.clone(),
            yes(b.healthy),
            yes(b.in_table),
            b.packets.to_string(),
            b.bytes.to_string(),
            b.new_flows.to_string(),
        ]);
    }
    table.to_string()
}

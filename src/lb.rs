//! FiberLB on a node: the edge agent (XDP data plane, health checks) fed
//! with the `lb/` records of the KV, and `photon lb decap`, the backends'
//! side of the tunnel.

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use fiberlb::agent::{parse_mac, Agent, AgentOptions};
use fiberlb::spec::{
    BackendRecord, StatsSnapshot, VipRecord, BACKEND_PREFIX, LB_PREFIX, VIP_PREFIX,
};
use photon_control::raft::KvStateMachine;

use crate::config::Config;

/// The agent's options from the node's `[lb]` section.
pub fn agent_options(config: &Config) -> anyhow::Result<AgentOptions> {
    let lb = &config.lb;
    let neigh_mac = match &lb.neighbour_mac {
        Some(text) => Some(parse_mac(text).with_context(|| {
            format!("lb.neighbour_mac: `{text}` is not a MAC address (aa:bb:cc:dd:ee:ff)")
        })?),
        None => None,
    };
    if !lb.fib && neigh_mac.is_none() {
        bail!("lb.fib is off and lb.neighbour_mac is not set: the load balancer could not find any next hop");
    }
    Ok(AgentOptions {
        node_name: config.node.name.clone(),
        interface: (!lb.interface.is_empty()).then(|| lb.interface.clone()),
        mode: xdp_mode(&lb.xdp_mode),
        src_v4: lb.src_v4,
        src_v6: lb.src_v6,
        mtu: lb.mtu,
        fib: lb.fib,
        neigh_mac,
    })
}

fn xdp_mode(name: &str) -> fiberlb::dataplane::XdpMode {
    match name {
        "native" => fiberlb::dataplane::XdpMode::Driver,
        "generic" => fiberlb::dataplane::XdpMode::Skb,
        _ => fiberlb::dataplane::XdpMode::Default,
    }
}

/// The agent of an edge node and where its counters go.
pub struct LbLink {
    pub agent: Arc<Agent>,
    pub stats: Arc<Mutex<Option<StatsSnapshot>>>,
}

/// Starts the agent of this node.
pub fn start(config: &Config) -> anyhow::Result<LbLink> {
    let stats = Arc::new(Mutex::new(None));
    let agent = Agent::start(agent_options(config)?, stats.clone())
        .context("cannot start the load-balancer agent")?;
    Ok(LbLink {
        agent: Arc::new(agent),
        stats,
    })
}

/// Keeps the agent's records equal to the applied `lb/` records.
pub async fn follow_lb(state_machine: KvStateMachine, agent: Arc<Agent>) {
    let feed = move |sm: &KvStateMachine| {
        let all = sm.scan_prefix_local(LB_PREFIX.as_bytes());
        let mut vips = Vec::new();
        let mut backends = Vec::new();
        for kv in &all {
            if kv.key.starts_with(VIP_PREFIX.as_bytes()) {
                vips.extend(VipRecord::from_json(&kv.value));
            } else if kv.key.starts_with(BACKEND_PREFIX.as_bytes()) {
                backends.extend(BackendRecord::from_json(&kv.value));
            }
        }
        agent.set_records(vips, backends);
    };
    let feed = std::rc::Rc::new(feed);
    let on_reset = feed.clone();
    let sm = state_machine.clone();
    photon_control::raft::follow_prefix(
        state_machine,
        LB_PREFIX.as_bytes(),
        move |sm| on_reset(sm),
        // A change anywhere under lb/: read the (small) prefix again.
        move |_changes| feed(&sm),
    )
    .await
}

#[derive(Debug, Subcommand)]
pub enum LbCommand {
    /// Backend side: strip FiberLB's IP-in-IP on an interface (XDP) until
    /// stopped. Put the VIP on the loopback: `ip addr add VIP/32 dev lo`.
    Decap(DecapArgs),
    /// Attach an XDP_PASS program until stopped: on the veth peer of an
    /// interface whose native XDP program sends frames back (XDP_TX), which
    /// veth delivers only when the peer carries an XDP program too.
    XdpPass(DecapArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Mode {
    Native,
    Generic,
    Auto,
}

#[derive(Debug, Args)]
pub struct DecapArgs {
    /// Interface the tunnelled packets arrive on.
    #[arg(long)]
    interface: String,
    /// XDP mode.
    #[arg(long, value_enum, default_value = "native")]
    mode: Mode,
    /// Print counters this often (seconds; 0: never).
    #[arg(long, default_value_t = 0)]
    report_every: u64,
}

pub fn run(command: LbCommand) -> ExitCode {
    let result = match command {
        LbCommand::Decap(args) => hold(args, false),
        LbCommand::XdpPass(args) => hold(args, true),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Attaches the decapsulation (or pass) program and keeps it until SIGINT/SIGTERM.
fn hold(args: DecapArgs, pass_only: bool) -> anyhow::Result<()> {
    let mode = match args.mode {
        Mode::Native => fiberlb::dataplane::XdpMode::Driver,
        Mode::Generic => fiberlb::dataplane::XdpMode::Skb,
        Mode::Auto => fiberlb::dataplane::XdpMode::Default,
    };
    let mut prog = if pass_only {
        fiberlb::decap::Decap::load_pass()?
    } else {
        fiberlb::decap::Decap::load()?
    };
    prog.attach(&args.interface, mode)?;
    let what = if pass_only {
        "XDP_PASS"
    } else {
        "decapsulating FiberLB tunnels"
    };
    println!("{what} on {} (ctrl-c to stop)", args.interface);
    let term = Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, term.clone()).context("cannot handle signals")?;
    }
    let mut ticks = 0u64;
    while !term.load(std::sync::atomic::Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        ticks += 1;
        if args.report_every > 0 && ticks.is_multiple_of(args.report_every * 10) {
            let (ok, bad) = prog.counts()?;
            println!("decapsulated {ok}, malformed {bad}");
        }
    }
    let (ok, bad) = prog.counts()?;
    println!("stopped: decapsulated {ok}, malformed {bad}");
    Ok(())
}

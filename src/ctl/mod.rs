//! `photon ctl`: the control plane's command line, over the Cap'n Proto
//! client library. Output is a table, or JSON with `--json`.

mod auth;
mod bucket;
mod cluster;
mod fetch;
mod iam;
mod kv;
mod lb;
mod metrics;
mod output;
mod vm;
mod volume;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use photon_control::client::Client;

use crate::ctl::cluster::ClusterCommand;
use crate::ctl::kv::{KvCommand, LeaseCommand};

#[derive(Debug, Args)]
pub struct CtlArgs {
    /// Control-plane endpoints (host:port, comma-separated). Default: the
    /// `control` endpoint in DATA_DIR/endpoints.json, else 127.0.0.1:9500.
    #[arg(long, env = "PHOTON_ENDPOINTS", value_delimiter = ',', global = true)]
    endpoints: Vec<SocketAddr>,
    /// Data directory of a local node whose endpoints.json names the endpoint.
    #[arg(long, global = true, default_value = "./photon-data")]
    data_dir: PathBuf,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// Token to present instead of the one `photon ctl login` stored.
    #[arg(long, env = "PHOTON_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    #[command(subcommand)]
    command: CtlCommand,
}

#[derive(Debug, Subcommand)]
enum CtlCommand {
    /// Log in and store a token for the other commands. Without --user: as
    /// the cluster administrator of the `photon dev` in --data-dir.
    Login {
        #[arg(long)]
        tenant: Option<String>,
        /// User or service-account name.
        #[arg(long)]
        user: Option<String>,
        /// Project the token acts in (default: "default").
        #[arg(long, default_value = "")]
        project: String,
        /// Read the password (or service-account secret) from stdin.
        #[arg(long)]
        password_stdin: bool,
        /// Token lifetime in seconds (default: the cluster's, 1 hour).
        #[arg(long, default_value_t = 0)]
        ttl: u32,
    },
    /// Revoke the stored token and forget it.
    Logout,
    /// Who the stored token speaks for.
    Whoami,
    /// Identity and access management.
    #[command(subcommand)]
    Iam(crate::ctl::iam::IamCommand),
    /// S3 buckets of the token's project.
    #[command(subcommand)]
    Bucket(crate::ctl::bucket::BucketCommand),
    /// CoronaFS block volumes of the token's project (NBD).
    #[command(subcommand)]
    Volume(crate::ctl::volume::VolumeCommand),
    /// PlasmaVMC virtual machines of the token's project.
    #[command(subcommand)]
    Vm(crate::ctl::vm::VmCommand),
    /// Images VMs start from (imported into CoronaFS volumes).
    #[command(subcommand)]
    Image(crate::ctl::vm::ImageCommand),
    /// FiberLB load balancers of the token's project: VIPs, backends, counters.
    #[command(subcommand)]
    Lb(crate::ctl::lb::LbCommand),
    /// NightLight metrics: PromQL queries, series and labels of the token's project.
    #[command(subcommand)]
    Metrics(crate::ctl::metrics::MetricsCommand),
    /// Keys and values.
    #[command(subcommand)]
    Kv(KvCommand),
    /// Leases: keys that disappear unless kept alive.
    #[command(subcommand)]
    Lease(LeaseCommand),
    /// Members of the control-plane cluster.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// The node registry: every node, its roles, endpoints and state.
    #[command(subcommand)]
    Node(crate::ctl::cluster::NodeCommand),
}

pub fn run(args: CtlArgs) -> ExitCode {
    // Like other Unix tools, end quietly when the reader of the output goes
    // (`photon ctl vm info x | head -3`) instead of panicking on EPIPE.
    // SAFETY: sets a signal disposition; no other thread runs yet.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let local = tokio::task::LocalSet::new();
    match local.block_on(&runtime, run_async(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            crate::ctl::output::exit_code(&e)
        }
    }
}

fn endpoints(args: &CtlArgs) -> anyhow::Result<Vec<SocketAddr>> {
    if !args.endpoints.is_empty() {
        return Ok(args.endpoints.clone());
    }
    let from_data_dir = args.data_dir.join(crate::node::ENDPOINTS_FILE).exists();
    if !from_data_dir && !matches!(args.command, CtlCommand::Login { .. }) {
        if let Some(stored) = crate::ctl::auth::stored_endpoints() {
            return Ok(stored);
        }
    }
    let file = args.data_dir.join(crate::node::ENDPOINTS_FILE);
    if let Ok(text) = std::fs::read_to_string(&file) {
        let doc: crate::node::EndpointsFile = serde_json::from_str(&text)
            .with_context(|| format!("cannot parse {}", file.display()))?;
        if let Some(addr) = doc.endpoints.get(crate::control_plane::CONTROL_ENDPOINT) {
            return Ok(vec![*addr]);
        }
    }
    Ok(vec![SocketAddr::from(([127, 0, 0, 1], 9500))])
}

async fn run_async(args: CtlArgs) -> anyhow::Result<()> {
    let endpoints = endpoints(&args)?;
    let out = crate::ctl::output::Output::new(args.json);
    if let CtlCommand::Login {
        tenant,
        user,
        project,
        password_stdin,
        ttl,
    } = args.command
    {
        let request = crate::ctl::auth::LoginRequest {
            endpoints,
            data_dir: args.data_dir,
            tenant,
            user,
            project,
            password_stdin,
            ttl_seconds: ttl,
        };
        return crate::ctl::auth::login(request, out).await;
    }
    let token = crate::ctl::auth::token_for(args.token.clone(), &endpoints).await?;
    let mut client = Client::with_token(endpoints, token.clone())?;
    match args.command {
        CtlCommand::Login { .. } => unreachable!("handled above"),
        CtlCommand::Logout => crate::ctl::auth::logout(&mut client, out).await,
        CtlCommand::Whoami => crate::ctl::auth::whoami(&mut client, out).await,
        CtlCommand::Iam(cmd) => crate::ctl::iam::run(&mut client, cmd, out).await,
        CtlCommand::Bucket(cmd) => crate::ctl::bucket::run(&mut client, cmd, out).await,
        CtlCommand::Volume(cmd) => crate::ctl::volume::run(&mut client, cmd, out).await,
        CtlCommand::Lb(cmd) => crate::ctl::lb::run(&mut client, cmd, out).await,
        CtlCommand::Vm(cmd) => crate::ctl::vm::run(&mut client, cmd, out).await,
        CtlCommand::Image(cmd) => crate::ctl::vm::run_image(&mut client, cmd, out).await,
        CtlCommand::Metrics(cmd) => crate::ctl::metrics::run(&mut client, &token, cmd, out).await,
        CtlCommand::Kv(cmd) => crate::ctl::kv::kv(&mut client, cmd, out).await,
        CtlCommand::Lease(cmd) => crate::ctl::kv::lease(&mut client, cmd, out).await,
        CtlCommand::Cluster(cmd) => crate::ctl::cluster::run(&mut client, cmd, out).await,
        CtlCommand::Node(cmd) => crate::ctl::cluster::run_node(&mut client, cmd, out).await,
    }
}

/// A time in milliseconds since the epoch as UTC, `2026-12-07T10:31:05Z`,
/// for tables (`--json` keeps the milliseconds): S3's timestamp format
/// without its milliseconds.
pub fn utc_time(ms: u64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    let stamp = photon_s3::xml::format_timestamp(time);
    // `YYYY-MM-DDTHH:MM:SS.mmmZ`: drop `.mmm`.
    format!("{}Z", &stamp[..19])
}

#[cfg(test)]
mod tests {
    use super::utc_time;

    #[test]
    fn utc_time_prints_civil_dates() {
        assert_eq!(utc_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_time(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(utc_time(1_709_251_199_999), "2024-02-29T23:59:59Z");
        assert_eq!(utc_time(1_796_645_090_110), "2026-12-07T12:04:50Z");
        assert_eq!(utc_time(4_102_444_800_000), "2100-01-01T00:00:00Z");
    }
}

//! `photon`: the one PhotonCloud binary. `dev` runs every role in one process,
//! `node` runs a node from a config file, `bench` runs the load generators.

mod api_cmd;
mod config;
mod control_plane;
mod ctl;
mod data_dir;
mod descriptors;
mod lb;
mod node;
mod registry;
mod storage;
mod vms;
mod volumes;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "photon",
    version,
    about = "PhotonCloud: a small thread-per-core cloud in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run an all-in-one node on 127.0.0.1 with an embedded data directory.
    Dev(node::DevArgs),
    /// Run a node from a config file.
    Node(node::NodeArgs),
    /// Talk to the control plane (KV, leases, cluster membership).
    Ctl(ctl::CtlArgs),
    /// FiberLB tools for backends (the tunnel's far end).
    #[command(subcommand)]
    Lb(lb::LbCommand),
    /// Print the version.
    Version,
    /// Print shell completions.
    Completions {
        /// bash, zsh, fish, elvish or powershell
        shell: clap_complete::Shell,
    },
    /// For clients in other languages: the control plane's Cap'n Proto schemas.
    #[command(subcommand)]
    Api(api_cmd::ApiCommand),
    /// Run a load generator with its same-run baselines.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Cross-shard call latency and small-request HTTP throughput, against tokio.
    Engine(photon_bench::engine::EngineArgs),
    /// The replicated KV (control plane) against etcd: puts and gets, 1 and 3 nodes.
    Kv(photon_bench::kv::KvArgs),
    /// IAM request checks: token verification (cold, cached, raw Ed25519 floor) and authorization.
    Iam(photon_bench::iam::IamArgs),
    /// The S3 service against Garage and the raw disk: PUT/GET of 4 KiB, 1 MiB, 64 MiB, mixed.
    S3(Box<photon_bench::s3::S3Args>),
    /// CoronaFS block volumes (NBD) with fio against raw io_uring, nbdkit memory and qemu-nbd.
    Volume(photon_bench::volume::VolumeArgs),
    /// PlasmaVMC VMs: create-to-ready time and memory per VM, against plain QEMU booting the same guest.
    Vm(photon_bench::vm::VmArgs),
    /// NightLight's remote_write ingestion, bytes per sample, dashboard queries and memory per series, against Prometheus and VictoriaMetrics.
    Metrics(photon_bench::metrics::MetricsArgs),
    /// FiberLB's XDP path per packet (BPF_PROG_TEST_RUN) and live through a veth, against a MAC-swap floor.
    Lb(photon_bench::lb::LbArgs),
    /// A closed-loop HTTP/1.1 load generator (used by `bench engine` as a child process).
    Http(photon_bench::loadgen::LoadArgs),
    /// Serve the benchmark's HTTP response (photon or tokio) for outside tools.
    Serve(photon_bench::engine::ServeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Dev(args) => node::run_dev(args),
        Command::Node(args) => node::run_node(args),
        Command::Ctl(args) => ctl::run(args),
        Command::Lb(command) => lb::run(command),
        Command::Api(command) => report(api_cmd::run(command)),
        Command::Version => {
            println!("photon {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "photon", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Bench(BenchCommand::Engine(args)) => report(photon_bench::engine::run(args)),
        Command::Bench(BenchCommand::Kv(args)) => report(photon_bench::kv::run(args)),
        Command::Bench(BenchCommand::Iam(args)) => report(photon_bench::iam::run(args)),
        Command::Bench(BenchCommand::S3(args)) => report(photon_bench::s3::run(*args)),
        Command::Bench(BenchCommand::Volume(args)) => report(photon_bench::volume::run(args)),
        Command::Bench(BenchCommand::Vm(args)) => report(photon_bench::vm::run(args)),
        Command::Bench(BenchCommand::Metrics(args)) => report(photon_bench::metrics::run(args)),
        Command::Bench(BenchCommand::Lb(args)) => report(photon_bench::lb::run(args)),
        Command::Bench(BenchCommand::Http(args)) => report(photon_bench::loadgen::run_cli(args)),
        Command::Bench(BenchCommand::Serve(args)) => report(photon_bench::engine::serve(args)),
    }
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

//! `meshsync-bench`: runs whole scenarios side by side — meshsync, Calico's Typha, `etcd
//! grpc-proxy`, direct etcd watches and a bare TCP floor, or two builds of meshsync
//! (`meshsync-baseline`) — as real processes on loopback, in one invocation, with the same data,
//! agents and writes, and reports time-to-in-sync, write→agent latency, server CPU per delivered
//! update and server memory per agent — the figures BENCHMARKS.md reports.

mod agents;
mod charts;
mod child;
mod floor;
mod frame;
mod model;
mod orchestrator;
mod procs;
mod report;
mod workload;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "meshsync-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a scenario against every system and write results under --out.
    Run(orchestrator::RunArgs),
    /// (internal) The simulated agents: N clients of one system in this process.
    Agents(agents::AgentsArgs),
    /// (internal) The floor: one etcd watch, the same frames written to N plain TCP sockets.
    Floor(floor::FloorArgs),
    /// Re-render the Markdown table and charts from a results JSON file.
    Report(report::ReportArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("MESHSYNC_BENCH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("meshsync-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Run(args) => orchestrator::run(args).await,
            Command::Agents(args) => agents::run(args).await,
            Command::Floor(args) => floor::run(args).await,
            Command::Report(args) => report::run(args),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("meshsync-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

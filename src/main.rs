//! `meshsync`: a Typha-style datastore fan-out cache for multi-cluster Kubernetes networking.
//!
//! Subcommands: `serve` (the cache and gRPC server, optionally with the federation controller),
//! `agent` (a reference node agent), `status` (ask a server how it is doing), `selector` (Calico
//! selector canonical form, ID and evaluation), `eval` (the endpoints of the whole mesh a selector
//! matches, as `calicoq eval`) and `federate` (the federated services controller). Each is one
//! file in `cli/`; what several print alike is in `cli/common.rs`.

mod cli;
mod config;
mod logging;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::logging::LogFormat;

#[derive(Parser, Debug)]
#[command(name = "meshsync", version, about, propagate_version = true)]
struct Cli {
    /// Log format: human-readable text or JSON lines (logs go to stderr).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "MESHSYNC_LOG_FORMAT")]
    log_format: LogFormat,
    /// Log filter, e.g. `info` or `meshsync_cache=debug,info`. The one-shot commands (`status`,
    /// `selector`, `eval`) log only warnings and errors unless it is given.
    #[arg(
        long,
        global = true,
        default_value = "info",
        env = "MESHSYNC_LOG_LEVEL"
    )]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the cache and serve agents over gRPC.
    Serve(Box<cli::serve::ServeArgs>),
    /// Subscribe to a server as a node agent and keep a local mirror.
    Agent(cli::agent::AgentArgs),
    /// Print a server's overall and per-cluster status.
    Status(cli::status::StatusArgs),
    /// Parse a Calico selector: canonical form, unique ID, and its value for --labels.
    Selector(cli::selector::SelectorArgs),
    /// List every WorkloadEndpoint and HostEndpoint in the mesh a selector matches (as calicoq eval).
    Eval(cli::eval::EvalArgs),
    /// Run the federated services controller against a server and a local datastore.
    Federate(cli::federate::FederateArgs),
    /// Connect two Kubernetes clusters into a mesh, both ways (RBAC, tokens, Secrets, RCCs).
    #[command(long_about = cli::connect::LONG_ABOUT)]
    Connect(cli::connect::ConnectArgs),
}

impl Command {
    /// Commands that print one result and exit: like `kubectl` and `calicoq`, they keep stderr
    /// quiet unless something is wrong, so their default log level is `warn`.
    fn is_one_shot(&self) -> bool {
        matches!(
            self,
            Command::Status(_) | Command::Selector(_) | Command::Eval(_) | Command::Connect(_)
        )
    }
}

fn main() -> std::process::ExitCode {
    let command = Cli::command();
    let (argv, file) = match config::merged_args(&command, std::env::args_os().collect()) {
        Ok(merged) => merged,
        Err(e) => {
            eprintln!("meshsync: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    let matches = match command.clone().try_get_matches_from(&argv) {
        Ok(m) => m,
        Err(e) => {
            if let Some((path, _)) = &file {
                eprintln!("meshsync: (with settings from {})", path.display());
            }
            e.exit();
        }
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    if let Command::Serve(args) = &cli.command
        && args.print_config()
        && let Some(("serve", sub)) = matches.subcommand()
    {
        print!("{}", config::print_config(&command, sub, file.as_ref()));
        return std::process::ExitCode::SUCCESS;
    }
    let log_level = match matches.value_source("log_level") {
        Some(clap::parser::ValueSource::DefaultValue) if cli.command.is_one_shot() => {
            logging::ONE_SHOT_LEVEL
        }
        _ => cli.log_level.as_str(),
    };
    if let Err(e) = logging::init(cli.log_format, log_level) {
        eprintln!("meshsync: {e:#}");
        return std::process::ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("meshsync: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => cli::serve::run(*args).await,
            Command::Agent(args) => cli::agent::run(args).await,
            Command::Status(args) => cli::status::run(args).await,
            Command::Selector(args) => cli::selector::run(args),
            Command::Eval(args) => cli::eval::run(args).await,
            Command::Federate(args) => cli::federate::run(args).await,
            Command::Connect(args) => cli::connect::run(args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("meshsync: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

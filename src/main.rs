//! The `rtctl` binary: parse, pick the runtime, dispatch, turn the outcome into an exit code.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rtctl::cmd;

#[derive(Debug, Parser)]
#[command(name = "rtctl", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Measure delivery latency, loss and throughput of a hub under load
    Bench(cmd::bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Bench(args) => cmd::bench::run(args).await.map(ExitCode::from),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

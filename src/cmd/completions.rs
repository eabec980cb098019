//! `rtctl completions SHELL`: the completion script for a shell, generated from the same clap
//! definition as the parser, so it never lags behind the flags. `completions/` holds committed copies.

use clap::CommandFactory;

use crate::cli::Cli;
use crate::cli::completions::CompletionsArgs;

pub fn run(args: CompletionsArgs) -> anyhow::Result<u8> {
    let mut command = Cli::command();
    clap_complete::generate(args.shell, &mut command, "rtctl", &mut std::io::stdout());
    Ok(0)
}

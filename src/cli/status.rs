//! `rtctl status`'s flags.

use clap::Args;

use super::ClientArgs;

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub client: ClientArgs,

    /// Print one JSON object with the three answers
    #[arg(long)]
    pub json: bool,

    /// Redraw every second until Ctrl-C
    #[arg(long, short)]
    pub watch: bool,
}

//! `rtctl config check`: resolves the hub's settings exactly as `rtctl serve` does, without creating a
//! config file, binding or starting anything, and prints them with every secret masked.

use std::path::Path;

use anyhow::bail;

use crate::cli::config::{ConfigArgs, ConfigCommand};
use crate::config::FileConfig;

pub fn run(config_path: &Path, args: ConfigArgs) -> anyhow::Result<u8> {
    let ConfigCommand::Check(serve) = args.command;
    let file = match FileConfig::load(config_path)? {
        Some(file) => file,
        // `rtctl serve` would create it; a check must not, and says what would happen.
        None if !config_path.exists() => {
            eprintln!(
                "rtctl: note: config file {} does not exist; `rtctl serve` would create it with a new JWT \
                 secret and API key",
                config_path.display()
            );
            FileConfig::default()
        }
        None => bail!("cannot read config file {}", config_path.display()),
    };
    let config = super::serve::settings(*serve).resolve(&file)?;
    // HubConfig's Debug masks the JWT secret, the API key and the passwords in database and Redis URLs.
    println!("config file: {}", config_path.display());
    println!("{config:#?}");
    println!("ok: the settings are valid");
    Ok(0)
}

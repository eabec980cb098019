//! The `rtctl` binary: parse arguments, set up logging, run the subcommand, turn the result into an
//! exit code. Everything else lives in the library.

use std::process::ExitCode;

use rtctl::cmd::UsageError;

fn main() -> ExitCode {
    let cli = rtctl::cli::parse();
    rtctl::cmd::init_logging(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("rtctl: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(rtctl::cmd::dispatch(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("rtctl: {error:#}");
            if error.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(UsageError::EXIT_CODE)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// A closed stdout (`rtctl ... | head`) is how a reader says it has enough: not an error.
fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error
        .chain()
        .any(|cause| cause.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe))
}

//! `gearpump-setup`: install and configure a gearpump-master cluster over ssh (src/setup).

use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use gearpump_master::cli::SetupArgs;
use gearpump_master::setup::{inventory, run, ssh::SshTransport, SetupError};

/// Where scripts/build-packages.sh leaves the packages.
const DEFAULT_PACKAGE_DIR: &str = "target/packages";

fn main() -> ExitCode {
    let args = SetupArgs::parse();
    match setup(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gearpump-setup: {e:#}");
            // 2: refused before anything was touched, as clap does for its own errors
            match e.downcast_ref::<SetupError>() {
                Some(SetupError::Arguments(_)) => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

fn setup(args: &SetupArgs) -> anyhow::Result<()> {
    let inventory = inventory::from_args(args, Path::new(DEFAULT_PACKAGE_DIR))?;
    let transport = SshTransport { options: inventory.ssh.clone() };
    let mut stdout = std::io::stdout();
    run::run(&inventory, &transport, &mut stdout)?;
    Ok(())
}

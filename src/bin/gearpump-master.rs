//! `gearpump-master`: parse the command line, load gear.conf, run the master.

use std::process::ExitCode;

use clap::Parser;
use gearpump_master::cli::{normalize_gearpump_flags, MasterArgs};
use gearpump_master::config::{self, Overrides};
use gearpump_master::daemon;

/// glibc gives every thread that allocates its own arena (up to 8 per core); memory freed in one
/// arena is not reused by another, so a busy multi-threaded server's RSS grows to several times
/// its live heap. Two arenas keep the master's footprint close to what it actually holds.
fn limit_malloc_arenas() {
    // SAFETY: mallopt only sets an allocator tunable; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

fn main() -> ExitCode {
    limit_malloc_arenas();
    let args = MasterArgs::parse_from(normalize_gearpump_flags(std::env::args(), usize::MAX));
    let overrides = Overrides { ip: args.ip.clone(), port: args.port, state_dir: args.state_dir.clone() };
    let config = match config::load(args.config.as_deref(), &overrides) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("gearpump-master: configuration error: {error}");
            return ExitCode::from(error.exit_code() as u8);
        }
    };
    if args.check_config {
        print!("{}", config.explain());
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("gearpump-master: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(daemon::run(config, args.config, overrides)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error}");
            eprintln!("gearpump-master: {error}");
            ExitCode::from(error.exit_code() as u8)
        }
    }
}

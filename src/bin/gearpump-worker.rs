//! `gearpump-worker`: parse the command line, load gear.conf, run the worker. Also the fence
//! helper it starts for each attempt (`gearpump-worker __fence ...`, see `worker::fence`).

use std::process::ExitCode;

use clap::Parser;
use gearpump_master::cli::{normalize_gearpump_flags, WorkerArgs};
use gearpump_master::config;
use gearpump_master::worker;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("__fence") {
        return ExitCode::from(worker::fence::main(&argv[2..]) as u8);
    }
    let args = WorkerArgs::parse_from(normalize_gearpump_flags(argv, usize::MAX));
    let config = match config::load_worker(args.config.as_deref(), args.state_dir.clone()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("gearpump-worker: configuration error: {error}");
            return ExitCode::from(error.exit_code() as u8);
        }
    };
    if args.check_config {
        print!("{}", config.explain());
        return ExitCode::SUCCESS;
    }
    let filter = std::env::var("GEARPUMP_LOG").unwrap_or_else(|_| "info".into());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("gearpump-worker: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(worker::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error}");
            eprintln!("gearpump-worker: {error}");
            ExitCode::from(error.exit_code() as u8)
        }
    }
}

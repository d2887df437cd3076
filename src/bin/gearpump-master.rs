//! `gearpump-master`: parse the command line, load gear.conf, run the master.

use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use gearpump_master::cli::{normalize_gearpump_flags, MasterArgs, MasterCommand};
use gearpump_master::config::{self, MasterConfig, Overrides};
use gearpump_master::daemon::{self, offline};

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
    let node = match &args.command {
        Some(MasterCommand::Restore { node, .. } | MasterCommand::Recover { node, .. }) => node,
        None => &args.node,
    };
    let overrides = Overrides { ip: node.ip.clone(), port: node.port, state_dir: node.state_dir.clone() };
    let config_path = node.config.clone();
    let config = match config::load(config_path.as_deref(), &overrides) {
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
    let offline = match args.command {
        None => {
            return match runtime.block_on(daemon::run(config, config_path, overrides)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    tracing::error!("{error}");
                    eprintln!("gearpump-master: {error}");
                    ExitCode::from(error.exit_code() as u8)
                }
            }
        }
        Some(MasterCommand::Restore { from, .. }) => runtime
            .block_on(offline::restore(&from, &config))
            .map(|restored| print_restored(&from, &config, &restored)),
        Some(MasterCommand::Recover { yes_i_know, .. }) => runtime
            .block_on(offline::recover(&config, yes_i_know))
            .map(|recovered| print_recovered(&config, &recovered)),
    };
    match offline {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("gearpump-master: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

fn print_restored(from: &Path, config: &MasterConfig, restored: &offline::Restored) {
    let backup = &restored.backup;
    let state = &backup.master_state;
    let masters: Vec<String> = config.masters.iter().map(ToString::to_string).collect();
    println!(
        "restored {} into {}: log index {} (term {} of the backed-up cluster), {} applications, next application id {}, {} application data keys, {} jars",
        from.display(),
        config.state_dir.display(),
        backup.origin.applied_index,
        backup.origin.applied_term,
        state.apps.len(),
        state.max_app_id.saturating_add(1),
        state.app_data.values().map(|data| data.len()).sum::<usize>(),
        state.jars.len(),
    );
    println!(
        "new cluster: {} (gearpump.cluster.masters); restore every one of them from this same file, then start them",
        masters.join(", ")
    );
    if restored.missing_jars.is_empty() {
        println!(
            "jar store {}: all {} referenced jars are present",
            restored.jar_store, restored.jars_checked
        );
    } else {
        println!(
            "jar store {}: {} of {} referenced jars are MISSING (not fatal: the restore is done, but the applications using them cannot run until the jars are back in the store, e.g. copied from the old store):",
            restored.jar_store,
            restored.missing_jars.len(),
            restored.jars_checked
        );
        for (key, why) in &restored.missing_jars {
            println!("  {key}: {why}");
        }
    }
}

fn print_recovered(config: &MasterConfig, recovered: &gearpump_master::cluster::offline::Recovered) {
    let me = config.this_master.to_string();
    let removed: Vec<&String> = recovered.old_voters.iter().filter(|voter| **voter != me).collect();
    println!(
        "recovered {}: {me} is now the only member of a new one-master cluster, with every entry it had up to log index {} (term {})",
        config.state_dir.display(),
        recovered.last_index,
        recovered.last_term
    );
    if recovered.beyond_committed > 0 {
        println!(
            "note: {} of those entries were not known to be committed; they are kept (a client may have been told they succeeded)",
            recovered.beyond_committed
        );
    }
    println!(
        "removed from the membership: {}",
        removed.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(", ")
    );
    println!(
        "next: start this master, then bring the others back with EMPTY state directories, one at a time: start one, then \
         POST /api/v1.0/master/members {{\"add\": \"HOST:PORT\"}} (or run gearpump-setup); see docs/OPERATIONS.md"
    );
}

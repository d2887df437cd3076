//! `gear`: Gearpump's client verbs against any master of the cluster.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use clap::Parser;
use gearpump_master::backup::Backup;
use gearpump_master::cli::{normalize_gearpump_flags, GearArgs, GearCommand, SnapshotCommand};
use gearpump_master::client::credentials::{self, Sources};
use gearpump_master::client::{cell, health, ClientError, Credentials, MasterClient};
use gearpump_master::config;
use gearpump_master::state::AttemptOutcome;
use gearpump_master::wire::{AppList, AppState, MasterAnswer, WorkerList};

fn main() -> ExitCode {
    let args = GearArgs::parse_from(normalize_gearpump_flags(std::env::args(), 2));
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("gear: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("gear: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn masters(args: &GearArgs, credentials: &Credentials) -> Result<Vec<String>> {
    if let Some(list) = args.master.as_ref().or(credentials.masters.as_ref()) {
        let masters: Vec<String> =
            list.split(',').map(str::trim).filter(|m| !m.is_empty()).map(str::to_string).collect();
        for master in &masters {
            config::HostPort::parse(master).map_err(|why| anyhow::anyhow!("--master {master:?}: {why}"))?;
        }
        if masters.is_empty() {
            bail!("--master names no master; write --master host:port[,host:port...]");
        }
        return Ok(masters);
    }
    let masters = config::load_masters(args.config.as_deref()).context("reading the masters list")?;
    Ok(masters.iter().map(ToString::to_string).collect())
}

async fn run(args: GearArgs) -> Result<()> {
    // Reading a backup needs no master (nor a gear.conf).
    if let GearCommand::Snapshot { action: SnapshotCommand::Status { file } } = &args.command {
        return snapshot_status(file, args.json);
    }
    let credentials = credentials::resolve(&Sources::standard(args.ca.clone(), args.token_file.clone()))?;
    let client = MasterClient::with_credentials(
        masters(&args, &credentials)?,
        Duration::from_secs(args.timeout),
        &credentials,
    )?;
    command(&args, &client).await.map_err(|error| explain_refusal(error, &credentials))
}

/// A 401 or 403 says which token was sent, so the operator knows what to fix.
fn explain_refusal(error: anyhow::Error, credentials: &Credentials) -> anyhow::Error {
    let Some(ClientError::Api { status, .. }) = error.downcast_ref::<ClientError>() else { return error };
    if status.as_u16() != 401 && status.as_u16() != 403 {
        return error;
    }
    let hint = match &credentials.token_source {
        Some(source) => format!("the token came from {source}"),
        None => format!(
            "no token was sent: give --token-file FILE, set {}, or write token-file in ~/.config/gearpump/client.conf",
            credentials::TOKEN_ENV
        ),
    };
    error.context(hint)
}

async fn command(args: &GearArgs, client: &MasterClient) -> Result<()> {
    match &args.command {
        GearCommand::App { jar, name_prefix, user, slots, main_class, args: app_args } => {
            let user =
                user.clone().or_else(|| std::env::var("USER").ok()).unwrap_or_else(|| "anonymous".into());
            let prefix = name_prefix.as_deref();
            let answer = client.submit_with_slots(jar, main_class, app_args, prefix, &user, *slots).await?;
            if args.json {
                print_json(&answer)?;
            } else {
                println!(
                    "Submitted application {} (jar {} , {} bytes, sha256 {})",
                    answer.app_id, answer.jar, answer.size, answer.sha256
                );
            }
        }
        GearCommand::Info => {
            let answer = client.app_list().await?;
            if args.json {
                print_json(&answer)?;
            } else {
                print_apps(&answer);
            }
        }
        GearCommand::Kill { appid } => {
            let answer = client.kill(*appid).await?;
            if args.json {
                print_json(&answer)?;
            } else {
                println!("Application {appid} killed");
            }
        }
        GearCommand::Masters => {
            let answer = client.master().await?;
            if args.json {
                print_json(&answer)?;
            } else {
                print_masters(&answer);
            }
        }
        GearCommand::Health { wait, same_state, version } => {
            let expect = health::Expect { same_state: *same_state, version: version.clone() };
            let verdict = client.health(&expect, Duration::from_secs(*wait)).await;
            if args.json {
                print_json(&verdict)?;
            } else {
                print!("{}", health::health_table(&verdict));
            }
            if !verdict.healthy {
                bail!("the cluster is not healthy: {}", verdict.problems.join("; "));
            }
        }
        GearCommand::Workers => {
            let list = client.workers().await?;
            if args.json {
                print_json(&list)?;
            } else {
                print_workers(&list);
            }
        }
        GearCommand::Log { appid, attempt, tail } => {
            print!("{}", client.log(*appid, *attempt, *tail).await?);
        }
        GearCommand::Restart { appid } => {
            let answer = client.restart(*appid).await?;
            if args.json {
                print_json(&answer)?;
            } else if answer.restarted {
                println!("Application {appid}: attempt stopped, a new one is being placed");
            } else {
                println!("Application {appid} had no running attempt; it is waiting for a worker");
            }
        }
        GearCommand::Snapshot { action: SnapshotCommand::Save { file } } => {
            let (bytes, backup) = client.snapshot().await?;
            // Mode 0600: a backup holds every application's data.
            gearpump_master::fsutil::write_atomically(file, &bytes, 0o600)
                .with_context(|| format!("cannot write {}", file.display()))?;
            if args.json {
                print_json(
                    &backup.summary(bytes.len() as u64, &Backup::body_sha256(&bytes).unwrap_or_default()),
                )?;
            } else {
                println!(
                    "Saved {} ({} bytes): log index {}, term {}, {} applications, next application id {}, from {}",
                    file.display(),
                    bytes.len(),
                    backup.origin.applied_index,
                    backup.origin.applied_term,
                    backup.master_state.apps.len(),
                    backup.master_state.max_app_id.saturating_add(1),
                    backup.origin.taken_from
                );
            }
        }
        GearCommand::Snapshot { action: SnapshotCommand::Status { file } } => {
            snapshot_status(file, args.json)?
        }
        GearCommand::Download { file, output } => {
            let size = client.download(file, output).await?;
            if args.json {
                println!("{}", serde_json::json!({ "file": file, "output": output, "size": size }));
            } else {
                println!("Downloaded {file} ({size} bytes, SHA-256 verified) to {}", output.display());
            }
        }
    }
    Ok(())
}

/// `gear snapshot status`: checks the file and prints what it holds.
fn snapshot_status(file: &Path, json: bool) -> Result<()> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let backup =
        Backup::decode(&bytes).with_context(|| format!("{} is not a usable backup", file.display()))?;
    let summary = backup.summary(bytes.len() as u64, &Backup::body_sha256(&bytes).unwrap_or_default());
    if json {
        return print_json(&summary);
    }
    println!("{}: checksum OK (SHA-256 {})", file.display(), summary.sha256);
    let rows: [(&str, String); 11] = [
        ("format", summary.origin.format.to_string()),
        ("written by", summary.origin.written_by.clone()),
        ("created at (ms)", summary.origin.created_at_ms.to_string()),
        ("taken from", summary.origin.taken_from.clone()),
        ("leader", cell(summary.origin.leader.as_deref())),
        ("log index", summary.origin.applied_index.to_string()),
        ("term", summary.origin.applied_term.to_string()),
        ("applications", summary.applications.to_string()),
        ("next app id", summary.next_app_id.to_string()),
        ("app data keys", summary.app_data_keys.to_string()),
        ("size (bytes)", summary.size.to_string()),
    ];
    for (label, value) in rows {
        println!("  {label:<16} {value}");
    }
    println!("  {:<16} {}", "voters", summary.origin.voters.join(", "));
    println!("  {:<16} {}", "learners", summary.origin.learners.join(", "));
    println!("  {:<16} {}", "jars", summary.jars.len());
    for jar in &summary.jars {
        println!("    {} ({} bytes, sha256 {})", jar.name, jar.size, jar.sha256);
    }
    Ok(())
}

/// `--json`: the answer as one line, its keys sorted as gear has always printed them.
fn print_json<T: serde::Serialize>(answer: &T) -> Result<()> {
    println!("{}", serde_json::to_value(answer)?);
    Ok(())
}

fn print_apps(answer: &AppList) {
    let apps = &answer.app_masters;
    println!(
        "{:<6} {:<28} {:<11} {:<10} {:<14} {:<7} {:<7} {:<8} JAR",
        "APPID", "NAME", "STATUS", "USER", "SUBMITTED(ms)", "WORKER", "ATTEMPT", "PID"
    );
    for app in apps {
        let last = app.attempts.last();
        println!(
            "{:<6} {:<28} {:<11} {:<10} {:<14} {:<7} {:<7} {:<8} {}",
            app.app_id,
            app.app_name,
            app.status.name(),
            app.user,
            app.submission_time,
            cell(last.map(|a| a.worker_id)),
            cell(last.map(|a| a.attempt)),
            cell(last.and_then(|a| a.pid)),
            app.jar.name
        );
        // Why the last attempt ended, when it failed: the JVM's own words.
        let why = match last.and_then(|a| a.outcome.as_ref()) {
            Some(AttemptOutcome::Exited { message, .. }) => message.clone(),
            Some(AttemptOutcome::Failed { cause }) => Some(cause.clone()),
            _ => None,
        };
        if let Some(why) = why.filter(|_| app.status != AppState::Succeeded) {
            for line in why.lines() {
                println!("       | {line}");
            }
        }
    }
    if apps.is_empty() {
        println!("(no applications)");
    }
}

fn print_workers(list: &WorkerList) {
    println!(
        "{:<7} {:<16} {:>6} {:>6} {:<7} {:>9} {:<22} ATTEMPTS",
        "WORKER", "HOST", "SLOTS", "FREE", "STATE", "SEEN(ms)", "LOG SERVER"
    );
    for worker in &list.workers {
        let attempts: Vec<String> =
            worker.attempts.iter().map(|(app, attempt)| format!("app {app}#{attempt}")).collect();
        println!(
            "{:<7} {:<16} {:>6} {:>6} {:<7} {:>9} {:<22} {}",
            worker.worker_id,
            worker.host,
            worker.slots,
            worker.free_slots,
            worker.state,
            worker.last_heartbeat_ms_ago,
            worker.log_address,
            if attempts.is_empty() { "-".to_string() } else { attempts.join(", ") }
        );
    }
    if list.workers.is_empty() {
        println!("(no workers)");
    }
}

fn print_masters(answer: &MasterAnswer) {
    print!("{}", gearpump_master::client::masters_table(answer));
}

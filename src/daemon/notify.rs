//! The systemd notify protocol: READY once in a quorum, STATUS kept current, the start timeout
//! extended while waiting for peers, and watchdog pings only while the master is healthy.
//! Outside systemd (no NOTIFY_SOCKET) every call is a no-op.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sd_notify::NotifyState;

use crate::cluster::Cluster;

pub(crate) fn send(states: &[NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "could not notify systemd");
    }
}

pub(crate) fn stopping(status: &str) {
    send(&[NotifyState::Stopping, NotifyState::Status(status)]);
}

pub(crate) fn status(text: &str) {
    send(&[NotifyState::Status(text)]);
}

/// One line an operator reads in `systemctl status`.
pub(crate) async fn status_line(cluster: &Cluster) -> String {
    let status = cluster.status();
    if !cluster.is_ready() {
        return cluster.bootstrap_state().to_string();
    }
    match status.role {
        crate::wire::Role::Leader => {
            let statuses = cluster.all_statuses().await;
            let up = statuses.iter().filter(|(_, _, status)| status.is_some()).count();
            format!("leader, term {}, {up}/{} masters", status.term, statuses.len())
        }
        role => match &status.leader {
            Some(leader) => format!("{role} of {leader}, term {}", status.term),
            None => format!("{role}, term {}, no leader", status.term),
        },
    }
}

/// Waits for a quorum (extending systemd's start timeout up to `startup_timeout`), sends
/// READY=1, then keeps STATUS current. Returns never; runs as a task.
pub(crate) async fn report(cluster: Arc<Cluster>, startup_timeout: Duration) {
    let started = Instant::now();
    let step = Duration::from_secs(1);
    let mut last_status = String::new();
    while !cluster.is_ready() {
        let line = status_line(&cluster).await;
        if started.elapsed() < startup_timeout {
            // Ask for a little more than the next step each time, so systemd never times out
            // while we are still within our own bound.
            let extend = u32::try_from((step * 5).as_micros()).unwrap_or(u32::MAX);
            send(&[NotifyState::Status(&line), NotifyState::ExtendTimeoutUsec(extend)]);
        } else if line != last_status {
            send(&[NotifyState::Status(&line)]);
        }
        last_status = line;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let line = status_line(&cluster).await;
    tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "ready: {line}");
    send(&[NotifyState::Ready, NotifyState::Status(&line)]);
    last_status = line;
    loop {
        tokio::time::sleep(step).await;
        let line = status_line(&cluster).await;
        if line != last_status {
            status(&line);
            last_status = line;
        }
    }
}

/// Pings the watchdog at half its interval, but only while the master is healthy: a hung
/// master stops pinging and systemd kills and restarts it.
pub(crate) async fn watchdog(cluster: Arc<Cluster>, state_dir: std::path::PathBuf) {
    let Some(interval) = sd_notify::watchdog_enabled() else { return };
    let period = interval / 2;
    tracing::info!(?interval, "systemd watchdog enabled");
    loop {
        tokio::time::sleep(period).await;
        match super::health::check(&cluster, &state_dir, period).await {
            Ok(()) => send(&[NotifyState::Watchdog]),
            Err(problem) => tracing::error!("not pinging the watchdog: {problem}"),
        }
    }
}

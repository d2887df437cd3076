//! `gearpump-worker`: registers with the masters, heartbeats, and runs the attempts the
//! replicated state assigns to it as child JVMs.
//!
//! Level-triggered, as in Nomad: every heartbeat answer lists the attempts assigned here; the
//! worker starts those it never started and kills those it runs that are no longer listed. It
//! repeats start and exit reports until the leader acknowledges them, so a lost answer or a
//! master fail-over loses nothing. An attempt is started at most once per worker (its folder
//! under the state dir remembers it across restarts), and a worker that cannot get a heartbeat
//! acknowledged by a leader with quorum for `fence-timeout` kills its attempts (see `fence.rs`).

pub mod fence;
mod launch;
pub mod protocol;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::api::now_ms;
use crate::cluster::SECRET_HEADER;
use crate::config::WorkerConfig;
use crate::state::{AppId, AttemptOutcome, WorkerId};
use protocol::{
    AssignedAttempt, AttemptRef, ExitReport, Heartbeat, HeartbeatAnswer, LogQuery, RunningAttempt,
};

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("no Java runtime: `{java} -version` failed: {cause}\n  fix: install a JRE, or set gearpump.worker.java to the java binary")]
    NoJava { java: String, cause: String },
    #[error("cluster secret file {path}: {cause}\n  fix: use the masters' gearpump.master.secret-file, readable by this user")]
    Secret { path: String, cause: String },
    #[error("state directory {path}: {cause}\n  fix: create it, writable by this user, or set gearpump.worker.state-dir")]
    StateDir { path: String, cause: String },
    #[error("cannot listen on {address} for the log server: {cause}\n  fix: set gearpump.worker.port to a free port (0: any)")]
    Listen { address: String, cause: String },
    #[error("gearpump.worker.tls: {0}")]
    Tls(#[from] crate::tls::TlsError),
}

impl WorkerError {
    /// 78 (EX_CONFIG) for what the configuration must fix, 69 (EX_UNAVAILABLE) otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            WorkerError::NoJava { .. } | WorkerError::Secret { .. } | WorkerError::Tls(_) => 78,
            WorkerError::StateDir { .. } | WorkerError::Listen { .. } => 69,
        }
    }
}

type Key = (AppId, u32);

/// How long the folder (and log) of a finished attempt, and an unused cached jar, are kept.
const KEEP_FINISHED: Duration = Duration::from_secs(7 * 86_400);

struct Running {
    slots: u32,
    /// 0 until the JVM is started.
    pid: u32,
    log_path: String,
    /// Set when the worker stops the attempt, with the reason it reports.
    stop: Option<AttemptOutcome>,
}

#[derive(Default)]
struct Shared {
    worker_id: Option<WorkerId>,
    /// The master that acknowledged the last heartbeat (for systemd's STATUS=).
    master: Option<String>,
    running: BTreeMap<Key, Running>,
    exits: Vec<ExitReport>,
}

struct Worker {
    config: WorkerConfig,
    /// `host:port` of each master, as configured.
    masters: Vec<String>,
    /// The same masters as base URLs: `https://host:port` when the worker has TLS files.
    bases: Vec<String>,
    http: reqwest::Client,
    /// Whether the worker has TLS files: its log port then admits master certificates only.
    tls: bool,
    secret: Option<String>,
    shared: Mutex<Shared>,
    log_address: String,
    lease: PathBuf,
}

impl Worker {
    fn with<T>(&self, f: impl FnOnce(&mut Shared) -> T) -> T {
        match self.shared.lock() {
            Ok(mut shared) => f(&mut shared),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }
}

/// Checks that `java` runs; the worker is useless without it.
pub fn check_java(java: &str) -> Result<(), WorkerError> {
    let error = |cause: String| WorkerError::NoJava { java: java.to_string(), cause };
    let output =
        std::process::Command::new(java).arg("-version").output().map_err(|e| error(e.to_string()))?;
    if !output.status.success() {
        return Err(error(String::from_utf8_lossy(&output.stderr).trim().to_string()));
    }
    Ok(())
}

/// Runs the worker until SIGTERM/SIGINT; its attempts are stopped on the way out.
pub async fn run(config: WorkerConfig) -> Result<(), WorkerError> {
    check_java(&config.java)?;
    // The same checks as a master's files; the certificate must be a worker certificate for
    // this host, so a master refusing it later is not a surprise.
    let tls = match &config.tls {
        Some(files) => Some(crate::tls::WorkerTls::load(
            files,
            &config.hostname,
            config.masters.iter().map(|master| master.host.clone()).collect(),
        )?),
        None => None,
    };
    let state_error =
        |cause: String| WorkerError::StateDir { path: config.state_dir.display().to_string(), cause };
    std::fs::create_dir_all(config.state_dir.join("attempts")).map_err(|e| state_error(e.to_string()))?;
    // Two workers on one state dir would each kill the other's attempts as leftovers.
    let lock_file =
        std::fs::File::create(config.state_dir.join("lock")).map_err(|e| state_error(e.to_string()))?;
    let _lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|(_, e)| state_error(format!("another gearpump-worker uses it ({e})")))?;
    let secret =
        match &config.secret_file {
            Some(path) => Some(std::fs::read_to_string(path).map(|s| s.trim().to_string()).map_err(|e| {
                WorkerError::Secret { path: path.display().to_string(), cause: e.to_string() }
            })?),
            None => None,
        };
    let address = format!("{}:{}", config.hostname, config.port);
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .map_err(|e| WorkerError::Listen { address: address.clone(), cause: e.to_string() })?;
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(config.port);
    let mut http = reqwest::Client::builder().no_proxy().connect_timeout(Duration::from_secs(1));
    let mut scheme = "http";
    let mut log_tls = None;
    if let Some(tls) = tls {
        if let Some(warning) = &tls.expiry_warning {
            tracing::warn!("{warning}");
        }
        http = http.use_preconfigured_tls(tls.client).https_only(true);
        scheme = "https";
        log_tls = Some(tls.server);
    }
    let http = http.build().map_err(|e| state_error(format!("HTTP client: {e}")))?;
    let worker_id =
        std::fs::read_to_string(config.state_dir.join("worker-id")).ok().and_then(|t| t.trim().parse().ok());
    let worker = Arc::new(Worker {
        masters: config.masters.iter().map(ToString::to_string).collect(),
        bases: config.masters.iter().map(|master| format!("{scheme}://{master}")).collect(),
        log_address: format!("{}:{port}", config.hostname),
        lease: config.state_dir.join("lease"),
        http,
        tls: log_tls.is_some(),
        secret,
        shared: Mutex::new(Shared { worker_id, ..Shared::default() }),
        config,
    });
    recover(&worker);
    launch::forget_unused_jars(&worker.config.state_dir, KEEP_FINISHED);
    tracing::info!(
        log_address = %worker.log_address, slots = worker.config.slots, ?worker_id,
        masters = %worker.masters.join(","), "gearpump-worker {} started", crate::wire::PACKAGE_VERSION
    );
    let app = axum::Router::new().route(protocol::WORKER_LOG, get(serve_log)).with_state(worker.clone());
    // The master port's listener: the same connection bounds, and with TLS only masters get
    // past the handshake (`WorkerTls::server`).
    let listener =
        crate::tls::NodeListener::new(listener, log_tls.as_ref(), crate::tls::MAX_CONNECTIONS_PER_IP)
            .map_err(|e| WorkerError::Listen { address: address.clone(), cause: e.to_string() })?;
    let server = tokio::spawn(crate::tls::serve(listener, app, std::future::pending()));
    let beats = tokio::spawn(heartbeat_loop(worker.clone()));
    // SIGHUP's default would kill the worker and, through the fences, its applications.
    crate::daemon::wait_for_stop(|| {
        tracing::info!("SIGHUP: gear.conf changes take effect after a restart of the worker");
    })
    .await;
    crate::daemon::notify::stopping("stopping its attempts and reporting them to the masters");
    beats.abort();
    server.abort();
    stop_attempts(&worker).await;
    tracing::info!("stopped");
    Ok(())
}

/// On a clean stop: kill every attempt and tell the masters at once, so they are restarted
/// elsewhere now rather than after the worker-loss timeout.
async fn stop_attempts(worker: &Worker) {
    let running: Vec<u32> = worker.with(|s| {
        s.running
            .values_mut()
            .map(|r| {
                r.stop = Some(AttemptOutcome::Stopped { reason: "its worker was stopped".into() });
                r.pid
            })
            .collect()
    });
    if running.is_empty() {
        return;
    }
    for pid in running.into_iter().filter(|pid| *pid > 0) {
        let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while worker.with(|s| !s.running.is_empty()) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let heartbeat = Heartbeat { stopping: true, ..build_heartbeat(worker) };
    if let Err(why) = send_heartbeat(worker, &heartbeat, &mut 0).await {
        tracing::warn!(
            "could not report the stopped attempts (the leader will declare this worker lost): {why}"
        );
    }
}

/// After a restart: every attempt folder without an `ended` mark belonged to a process this
/// worker no longer supervises; its process group is killed (if it is still the attempt's) and
/// its end reported. Ends that were never acknowledged are reported again.
fn recover(worker: &Worker) {
    let dir = worker.config.state_dir.join("attempts");
    let Ok(entries) = std::fs::read_dir(&dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((app, attempt)) = parse_attempt_dir(&name) else { continue };
        let path = entry.path();
        if let Ok(reported) = std::fs::metadata(path.join("reported")) {
            // Ended and acknowledged: never assigned again, kept a while for `gear log`.
            let age = reported.modified().ok().and_then(|at| at.elapsed().ok()).unwrap_or_default();
            if age > KEEP_FINISHED {
                let _ = std::fs::remove_dir_all(&path);
            }
            continue;
        }
        let outcome = match std::fs::read_to_string(path.join("ended")) {
            Ok(text) => serde_json::from_str(&text).ok(),
            Err(_) => None,
        };
        let outcome = outcome.unwrap_or_else(|| {
            if let Some(pgid) =
                std::fs::read_to_string(path.join("pgid")).ok().and_then(|t| t.trim().parse::<i32>().ok())
            {
                if process_is_attempt(pgid, app, attempt) {
                    tracing::warn!(
                        app_id = app,
                        attempt,
                        pgid,
                        "stopping an attempt left over from before this worker restarted"
                    );
                    let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
                }
            }
            AttemptOutcome::Failed {
                cause: "the worker restarted while the attempt ran; its process was stopped".into(),
            }
        });
        worker.with(|s| s.exits.push(ExitReport { app_id: app, attempt, outcome, started: None }));
    }
}

fn parse_attempt_dir(name: &str) -> Option<Key> {
    let rest = name.strip_prefix("app-")?;
    let (app, attempt) = rest.split_once("-attempt-")?;
    Some((app.parse().ok()?, attempt.parse().ok()?))
}

/// True when `pid` still runs the JVM of that attempt (not a recycled pid).
fn process_is_attempt(pid: i32, app: AppId, attempt: u32) -> bool {
    let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else { return false };
    let has = |needle: String| environ.split(|b| *b == 0).any(|var| var == needle.as_bytes());
    has(format!("GEARPUMP_APP_ID={app}")) && has(format!("GEARPUMP_ATTEMPT={attempt}"))
}

async fn heartbeat_loop(worker: Arc<Worker>) {
    let timing = worker.config.timing;
    let mut last_ack: Option<Instant> = None;
    let mut preferred = 0usize;
    let mut complained = false;
    let mut systemd = Systemd::default();
    loop {
        let sent_ms = now_ms();
        let sent = Instant::now();
        let heartbeat = build_heartbeat(&worker);
        // Healthy unless the state dir refuses the lease: masters being away is not the
        // worker's fault (restarting it would not help, and the fences already act).
        let mut healthy = true;
        let mut long_poll = false;
        match send_heartbeat(&worker, &heartbeat, &mut preferred).await {
            Ok(answer) => {
                long_poll = answer.long_poll;
                last_ack = Some(sent);
                healthy = write_lease(&worker.lease, sent_ms);
                if complained {
                    tracing::info!("heartbeats are acknowledged again");
                    complained = false;
                }
                let master = worker.masters.get(preferred).cloned();
                worker.with(|s| s.master = master);
                apply_answer(&worker, answer);
            }
            Err(why) => {
                if !complained {
                    tracing::warn!("heartbeat not acknowledged: {why}");
                    complained = true;
                }
                worker.with(|s| s.master = None);
            }
        }
        if last_ack.is_none_or(|at| at.elapsed() > timing.fence) {
            fence_all(&worker, timing.fence);
        }
        systemd.report(&worker, healthy);
        // The leader holds an answer while nothing changes (long poll), so a held beat paces the
        // loop by itself and the next one goes out at once: an assignment committed now finds a
        // beat waiting for it. After an answer that came early with news, or a failure, the loop
        // keeps a short gap (a leader that answers at once every time cannot make it spin); after
        // a failure, or from a leader that does not hold answers, the whole interval.
        let gap =
            if long_poll { (timing.heartbeat / 20).max(Duration::from_millis(10)) } else { timing.heartbeat };
        tokio::time::sleep(gap.saturating_sub(sent.elapsed())).await;
    }
}

/// The systemd notify protocol for `Type=notify`: READY=1 once the masters gave this worker
/// an id, STATUS= with the id, the master it talks to and its slots, and WATCHDOG=1 from the
/// heartbeat loop while it is healthy (a hung loop or an unwritable state dir stops the pings).
/// Outside systemd (no NOTIFY_SOCKET) nothing is sent.
#[derive(Default)]
struct Systemd {
    ready: bool,
    status: String,
}

impl Systemd {
    fn report(&mut self, worker: &Worker, healthy: bool) {
        use sd_notify::NotifyState;
        let line = status_line(worker);
        let registered = worker.with(|s| s.worker_id.is_some());
        if registered && !self.ready {
            self.ready = true;
            tracing::info!("ready: {line}");
            crate::daemon::notify::send(&[NotifyState::Ready, NotifyState::Status(&line)]);
        } else if line != self.status {
            crate::daemon::notify::send(&[NotifyState::Status(&line)]);
        }
        self.status = line;
        if healthy {
            crate::daemon::notify::send(&[NotifyState::Watchdog]);
        } else {
            tracing::error!("not pinging the watchdog: the state dir does not take the fencing lease");
        }
    }
}

/// One line for `systemctl status`: who we are, which master answers, what runs here.
fn status_line(worker: &Worker) -> String {
    worker.with(|s| {
        let used: u32 = s.running.values().map(|r| r.slots).sum();
        let load = format!("{used}/{} slots, {} attempt(s)", worker.config.slots, s.running.len());
        match (s.worker_id, &s.master) {
            (Some(id), Some(master)) => format!("worker {id} via master {master}; {load}"),
            (Some(id), None) => format!("worker {id}; no master acknowledges heartbeats; {load}"),
            (None, _) => format!("registering with {}", worker.masters.join(",")),
        }
    })
}

/// False when the lease cannot be written (the fences will then stop the attempts).
fn write_lease(path: &Path, sent_ms: u64) -> bool {
    let tmp = path.with_extension("tmp");
    if std::fs::write(&tmp, sent_ms.to_string()).and_then(|()| std::fs::rename(&tmp, path)).is_err() {
        tracing::warn!(path = %path.display(), "cannot write the fencing lease; attempts will be fenced");
        return false;
    }
    true
}

fn fence_all(worker: &Worker, fence: Duration) {
    let victims: Vec<u32> = worker.with(|s| {
        s.running
            .values_mut()
            .filter(|r| r.stop.is_none())
            .map(|r| {
                r.stop = Some(AttemptOutcome::Failed {
                    cause: format!("fenced: no leader with a quorum acknowledged this worker for {fence:?}"),
                });
                r.pid
            })
            .collect()
    });
    for pid in victims.into_iter().filter(|pid| *pid > 0) {
        tracing::warn!(pid, "fencing: stopping an attempt, the masters cannot confirm it is still ours");
        let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
}

fn build_heartbeat(worker: &Worker) -> Heartbeat {
    worker.with(|s| {
        let running: Vec<RunningAttempt> = s
            .running
            .iter()
            .filter(|(_, r)| r.pid > 0 && r.stop.is_none())
            .map(|((app_id, attempt), r)| RunningAttempt {
                app_id: *app_id,
                attempt: *attempt,
                pid: r.pid,
                log_path: r.log_path.clone(),
            })
            .collect();
        Heartbeat {
            worker_id: s.worker_id,
            host: worker.config.hostname.clone(),
            slots: worker.config.slots,
            free_slots: worker.config.slots.saturating_sub(s.running.values().map(|r| r.slots).sum()),
            log_address: worker.log_address.clone(),
            running,
            exits: s.exits.clone(),
            preparing: s
                .running
                .iter()
                .filter(|(_, r)| r.pid == 0 && r.stop.is_none())
                .map(|((app_id, attempt), _)| AttemptRef { app_id: *app_id, attempt: *attempt })
                .collect(),
            stopping: false,
            // The leader may hold the answer up to one interval (a long poll, see
            // scheduler::on_heartbeat): the beats keep their pace, news arrives at once.
            wait_ms: u64::try_from(worker.config.timing.heartbeat.as_millis()).unwrap_or(u64::MAX),
        }
    })
}

/// Tries the master that answered last, then the others.
async fn send_heartbeat(
    worker: &Worker,
    heartbeat: &Heartbeat,
    preferred: &mut usize,
) -> Result<HeartbeatAnswer, String> {
    let timeout = (worker.config.timing.fence / 2).max(Duration::from_millis(200));
    let count = worker.masters.len();
    let mut errors = Vec::new();
    for offset in 0..count {
        let index = (*preferred + offset) % count;
        let master = &worker.masters[index];
        let mut request = worker
            .http
            .post(format!("{}{}", worker.bases[index], protocol::HEARTBEAT))
            .json(heartbeat)
            .timeout(timeout);
        if let Some(secret) = &worker.secret {
            request = request.header(SECRET_HEADER, secret);
        }
        match request.send().await {
            Ok(response) if response.status().is_success() => {
                match response.json::<HeartbeatAnswer>().await {
                    Ok(answer) => {
                        *preferred = index;
                        return Ok(answer);
                    }
                    Err(e) => errors.push(format!("{master}: unreadable answer: {e}")),
                }
            }
            Ok(response) => {
                let status = response.status();
                let text = response.text().await.unwrap_or_default();
                errors.push(format!("{master}: {status} {text}"));
            }
            Err(e) => errors.push(format!("{master}: {e}")),
        }
    }
    Err(errors.join("; "))
}

fn apply_answer(worker: &Arc<Worker>, answer: HeartbeatAnswer) {
    let first = worker.with(|s| {
        let first = s.worker_id != Some(answer.worker_id);
        s.worker_id = Some(answer.worker_id);
        s.exits.retain(|e| !answer.acked_exits.contains(&(e.app_id, e.attempt)));
        first
    });
    if first {
        tracing::info!(worker_id = answer.worker_id, "registered with the masters");
        let _ = std::fs::write(worker.config.state_dir.join("worker-id"), answer.worker_id.to_string());
    }
    for (app, attempt) in &answer.acked_exits {
        let _ = std::fs::write(
            launch::attempt_dir(&worker.config.state_dir, *app, *attempt).join("reported"),
            "",
        );
    }
    let assigned: BTreeSet<Key> = answer.assigned.iter().map(|a| (a.app_id, a.attempt)).collect();
    // Stop what is no longer ours (killed, restarted, or declared lost while we were away).
    let unassigned: Vec<u32> = worker.with(|s| {
        s.running
            .iter_mut()
            .filter(|(key, r)| !assigned.contains(key) && r.stop.is_none())
            .map(|(_, r)| {
                r.stop = Some(AttemptOutcome::Stopped { reason: "no longer assigned to this worker".into() });
                r.pid
            })
            .collect()
    });
    for pid in unassigned.into_iter().filter(|pid| *pid > 0) {
        tracing::info!(pid, "stopping an attempt that is no longer assigned here");
        let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
    for spec in answer.assigned {
        let key = (spec.app_id, spec.attempt);
        let dir = launch::attempt_dir(&worker.config.state_dir, spec.app_id, spec.attempt);
        let known = worker
            .with(|s| s.running.contains_key(&key) || s.exits.iter().any(|e| (e.app_id, e.attempt) == key));
        if known {
            continue;
        }
        // An attempt that cannot start here is reported as failed, never run.
        let refuse = |cause: String| {
            let outcome = AttemptOutcome::Failed { cause };
            worker.with(|s| {
                s.exits.push(ExitReport {
                    app_id: spec.app_id,
                    attempt: spec.attempt,
                    outcome,
                    started: None,
                })
            });
        };
        if dir.exists() {
            // Started here before (this worker restarted since): never run an attempt twice.
            refuse("the worker restarted while the attempt ran".into());
            continue;
        }
        if let Err(e) = std::fs::create_dir_all(&dir) {
            refuse(format!("{}: {e}", dir.display()));
            continue;
        }
        let log_path = dir.join("log").display().to_string();
        worker.with(|s| s.running.insert(key, Running { slots: spec.slots, pid: 0, log_path, stop: None }));
        tokio::spawn(run_attempt(worker.clone(), spec, dir));
    }
}

async fn run_attempt(worker: Arc<Worker>, spec: AssignedAttempt, dir: PathBuf) {
    let key = (spec.app_id, spec.attempt);
    let outcome = supervise(&worker, &spec, &dir).await;
    tracing::info!(app_id = spec.app_id, attempt = spec.attempt, ?outcome, "attempt ended");
    if let Ok(text) = serde_json::to_string(&outcome) {
        let _ = std::fs::write(dir.join("ended"), text);
    }
    worker.with(|s| {
        let started = s.running.remove(&key).filter(|r| r.pid > 0).map(|r| RunningAttempt {
            app_id: spec.app_id,
            attempt: spec.attempt,
            pid: r.pid,
            log_path: r.log_path,
        });
        s.exits.push(ExitReport { app_id: spec.app_id, attempt: spec.attempt, outcome, started });
    });
}

async fn supervise(worker: &Worker, spec: &AssignedAttempt, dir: &Path) -> AttemptOutcome {
    let key = (spec.app_id, spec.attempt);
    let log = dir.join("log");
    let jar = match launch::fetch_jar(&worker.http, &worker.bases, &spec.jar, &worker.config.state_dir).await
    {
        Ok(jar) => jar,
        Err(cause) => {
            let _ = std::fs::write(&log, format!("{cause}\n"));
            return AttemptOutcome::Failed { cause };
        }
    };
    if let Some(stop) = worker.with(|s| s.running.get(&key).and_then(|r| r.stop.clone())) {
        return stop;
    }
    let launch = launch::Launch {
        java: &worker.config.java,
        vmargs: &worker.config.vmargs,
        extra_classpath: &worker.config.extra_classpath,
        jar: &jar,
        main_class: &spec.main_class,
        args: &spec.args,
        env: vec![
            ("GEARPUMP_APP_ID", spec.app_id.to_string()),
            ("GEARPUMP_ATTEMPT", spec.attempt.to_string()),
            ("GEARPUMP_MASTERS", worker.masters.join(",")),
        ],
        log: &log,
    };
    let mut child = match launch::spawn_java(&launch) {
        Ok(child) => child,
        Err(cause) => {
            let _ = std::fs::write(&log, format!("{cause}\n"));
            return AttemptOutcome::Failed { cause };
        }
    };
    let pid = child.id().unwrap_or(0);
    let _ = std::fs::write(dir.join("pgid"), pid.to_string());
    // Without its fence an attempt could outlive a frozen worker: better not run it.
    let fence = match pid {
        0 => Err("the JVM's pid is unknown".to_string()),
        pid => launch::spawn_fence(&worker.lease, worker.config.timing.fence, pid),
    };
    let mut fence = match fence {
        Ok(fence) => fence,
        Err(cause) => {
            if pid > 0 {
                let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
            let _ = child.wait().await;
            tracing::error!("{cause}; the attempt is not run");
            return AttemptOutcome::Failed { cause };
        }
    };
    let stop = worker.with(|s| {
        s.running.get_mut(&key).and_then(|r| {
            r.pid = pid;
            r.stop.clone()
        })
    });
    if stop.is_some() && pid > 0 {
        let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
    tracing::info!(app_id = spec.app_id, attempt = spec.attempt, pid, "attempt started");
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            () = tokio::time::sleep(Duration::from_secs(1)) => launch::rotate_if_large(&log, worker.config.log_max_size),
        }
    };
    // Whatever the JVM left behind in its group goes with it.
    if pid > 0 {
        let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
    let _ = fence.wait().await;
    if let Some(stop) = worker.with(|s| s.running.get(&key).and_then(|r| r.stop.clone())) {
        return stop;
    }
    let message = || {
        let tail = launch::tail(&log, 2048).unwrap_or_default();
        let lines: Vec<&str> = tail.lines().rev().take(5).collect::<Vec<_>>().into_iter().rev().collect();
        Some(lines.join("\n")).filter(|m| !m.is_empty())
    };
    match status {
        Ok(status) => match status.code() {
            Some(0) => AttemptOutcome::Exited { code: 0, message: None },
            Some(code) => AttemptOutcome::Exited { code, message: message() },
            None => {
                use std::os::unix::process::ExitStatusExt;
                let signal = status.signal().unwrap_or(0);
                let cause = match message() {
                    Some(tail) => format!("killed by signal {signal}; log ends with:\n{tail}"),
                    None => format!("killed by signal {signal}"),
                };
                AttemptOutcome::Failed { cause }
            }
        },
        Err(e) => AttemptOutcome::Failed { cause: format!("cannot wait for the process: {e}") },
    }
}

/// `GET /log`: only masters ask (application logs may hold anything). With TLS the handshake
/// admitted only a master certificate; without it, the cluster secret is the proof, when one
/// is configured.
async fn serve_log(
    State(worker): State<Arc<Worker>>,
    ConnectInfo(caller): ConnectInfo<crate::tls::Caller>,
    headers: axum::http::HeaderMap,
    Query(query): Query<LogQuery>,
) -> Result<String, (StatusCode, String)> {
    if worker.tls {
        if caller.node.is_none() {
            return Err((StatusCode::UNAUTHORIZED, "log request without a master certificate".into()));
        }
    } else if let Some(secret) = &worker.secret {
        let given = headers.get(SECRET_HEADER).map(|v| v.as_bytes()).unwrap_or_default();
        if given != secret.as_bytes() {
            return Err((StatusCode::UNAUTHORIZED, "log request without the cluster secret".into()));
        }
    }
    let path = launch::attempt_dir(&worker.config.state_dir, query.app, query.attempt).join("log");
    launch::tail(&path, query.tail.unwrap_or(64 << 10))
        .map_err(|e| (StatusCode::NOT_FOUND, format!("{}: {e}", path.display())))
}

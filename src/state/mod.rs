//! The replicated master state and the commands that change it.
//!
//! `apply` is pure and deterministic: every master applies the same committed commands in the
//! same order and must end in the same state, so nothing here reads a clock, a file or a random
//! number. Times come inside the commands, stamped by the master that proposed them.

pub mod schedule;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

mod requests;
use requests::Seen;
pub use requests::{new_id, validate_id, Proposal, RequestId, RequestWindow, MAX_AGE_MS, MAX_REMEMBERED};

pub type AppId = u32;
pub type WorkerId = u32;

/// Gearpump's application statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AppStatus {
    Pending,
    Active,
    Succeeded,
    Failed,
    Terminated,
}

impl AppStatus {
    pub fn is_terminal(self) -> bool {
        matches!(self, AppStatus::Succeeded | AppStatus::Failed | AppStatus::Terminated)
    }
}

/// Where an application's jar is and what its bytes must hash to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JarRef {
    /// Key inside the jar store.
    pub key: String,
    /// The file name the client uploaded.
    pub file_name: String,
    pub size: u64,
    pub sha256: String,
}

/// Gearpump loses this on fail-over (its restart counters live in one JVM); here it is part of
/// the replicated application record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartPolicy {
    /// How many times the application may be restarted before it is marked FAILED
    /// (`gearpump.application.total-retries`).
    pub max_restarts: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Application {
    pub id: AppId,
    pub name: String,
    pub user: String,
    pub main_class: String,
    pub args: Vec<String>,
    pub jar: JarRef,
    pub status: AppStatus,
    pub submission_time_ms: u64,
    pub start_time_ms: Option<u64>,
    pub finish_time_ms: Option<u64>,
    pub restart_policy: RestartPolicy,
    pub restarts: u32,
    /// Slots the application's AppMaster takes on a worker.
    #[serde(default = "one_slot")]
    pub slots: u32,
    /// Every run of the application on a worker, oldest first; attempt N is `attempts[N - 1]`.
    /// At most one (the last) is live.
    #[serde(default)]
    pub attempts: Vec<Attempt>,
}

fn one_slot() -> u32 {
    1
}

/// One run of an application's AppMaster on a worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    /// 1 for the first run.
    pub attempt: u32,
    pub worker_id: WorkerId,
    pub assigned_ms: u64,
    pub started_ms: Option<u64>,
    pub pid: Option<u32>,
    /// The attempt's log on its worker.
    pub log_path: Option<String>,
    /// `host:port` of the worker's log server, so any master can fetch the log.
    pub log_address: Option<String>,
    pub ended_ms: Option<u64>,
    pub outcome: Option<AttemptOutcome>,
}

impl Attempt {
    pub fn is_live(&self) -> bool {
        self.ended_ms.is_none()
    }
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum AttemptOutcome {
    /// The process exited by itself; `message` is the tail of its log for a non-zero code.
    Exited { code: i32, message: Option<String> },
    /// It could not be started, or died of a signal, or was stopped by its worker's fence.
    Failed { cause: String },
    /// Its worker stopped heartbeating for `worker-loss-timeout`.
    WorkerLost,
    /// `gear kill` or a restart request ended it; the worker stops the process.
    Stopped { reason: String },
}

impl AttemptOutcome {
    /// A crash worth counting against the restart policy.
    fn is_failure(&self) -> bool {
        match self {
            AttemptOutcome::Exited { code, .. } => *code != 0,
            AttemptOutcome::Failed { .. } | AttemptOutcome::WorkerLost => true,
            AttemptOutcome::Stopped { .. } => false,
        }
    }
}

/// A jar the cluster knows about, referenced or not; the retention sweep reads `unreferenced_since_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JarRecord {
    pub size: u64,
    pub sha256: String,
    pub stored_at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewApplication {
    /// Gearpump's `-namePrefix`: the name becomes prefix + id. Without it, the main class.
    pub name_prefix: Option<String>,
    pub user: String,
    pub main_class: String,
    pub args: Vec<String>,
    pub jar: JarRef,
    pub restart_policy: RestartPolicy,
    /// Slots to reserve on a worker (default 1).
    #[serde(default = "one_slot")]
    pub slots: u32,
}

/// Everything that changes the replicated state goes through Raft as one of these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    SubmitApp {
        app: NewApplication,
        now_ms: u64,
    },
    SetStatus {
        app_id: AppId,
        status: AppStatus,
        now_ms: u64,
    },
    KillApp {
        app_id: AppId,
        now_ms: u64,
    },
    /// An AppMaster was relaunched; past the policy's limit the application fails.
    RecordRestart {
        app_id: AppId,
        now_ms: u64,
    },
    PutAppData {
        app_id: AppId,
        key: String,
        value: String,
    },
    AllocateWorkerId,
    /// The retention sweep removed an unreferenced jar from the store.
    ForgetJar {
        key: String,
    },
    /// The leader placed the application's next attempt on a worker. Idempotent by itself:
    /// refused unless `attempt` is the next number and no attempt is live, so a retried or
    /// duplicated command never creates a second live attempt.
    Assign {
        app_id: AppId,
        attempt: u32,
        worker_id: WorkerId,
        now_ms: u64,
    },
    /// The worker started the attempt's process (repeatable: the same report twice is a no-op).
    AttemptStarted {
        app_id: AppId,
        attempt: u32,
        worker_id: WorkerId,
        pid: u32,
        log_path: String,
        log_address: String,
        now_ms: u64,
    },
    /// The attempt is over; the restart policy decides between pending (placed again),
    /// succeeded and failed. A second report of the same end is a no-op.
    AttemptEnded {
        app_id: AppId,
        attempt: u32,
        outcome: AttemptOutcome,
        now_ms: u64,
    },
    /// `POST appmaster/{id}/restart`: stop the live attempt (not counted as a failure) and
    /// place a new one.
    RestartApp {
        app_id: AppId,
        now_ms: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResult {
    Submitted {
        app_id: AppId,
    },
    Done,
    Restarted {
        restarts: u32,
        status: AppStatus,
    },
    WorkerId(WorkerId),
    /// The command was valid Raft traffic but not a valid change of state (unknown id, ...).
    /// Every master reaches the same verdict.
    Rejected(Rejection),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Rejection {
    #[error("application {0} does not exist")]
    UnknownApp(AppId),
    #[error("application {app_id} has already finished with status {status:?}")]
    AlreadyFinished { app_id: AppId, status: AppStatus },
    #[error("jar {0:?} is referenced by a live application")]
    JarInUse(String),
    #[error("application ids are exhausted")]
    IdsExhausted,
    #[error(
        "request id {0:?} was already used for a different request; send a new Idempotency-Key for a new request"
    )]
    RequestIdReused(RequestId),
    #[error("application {app_id} cannot get attempt {attempt}: {why}")]
    AttemptRefused { app_id: AppId, attempt: u32, why: String },
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MasterState {
    /// Gearpump's `maxAppId`: the last id handed out (0 = none yet).
    pub max_app_id: AppId,
    pub next_worker_id: WorkerId,
    pub apps: BTreeMap<AppId, Application>,
    /// Gearpump's per-application key/value data (SaveAppData/GetAppData); deleted when the
    /// application reaches a terminal status.
    pub app_data: BTreeMap<AppId, BTreeMap<String, String>>,
    pub jars: BTreeMap<String, JarRecord>,
    /// Recent request ids and their results, so a retried write is applied once.
    #[serde(default)]
    pub requests: RequestWindow,
}

impl MasterState {
    /// Applies a proposal from the log: a request id seen before answers its first result again
    /// (or a rejection, if the id came with a different command) and changes nothing else.
    pub fn apply_proposal(&mut self, proposal: Proposal) -> CommandResult {
        let Proposal { id, at_ms, command } = proposal;
        // Entries from before request ids (empty id) apply as they always did.
        if id.is_empty() {
            return self.apply(command);
        }
        let fingerprint = command.fingerprint();
        match self.requests.check(&id, fingerprint) {
            Seen::Repeat(result) => result,
            Seen::Conflict => CommandResult::Rejected(Rejection::RequestIdReused(id)),
            Seen::New => {
                let result = self.apply(command);
                self.requests.remember(id, fingerprint, result.clone(), at_ms);
                result
            }
        }
    }

    /// Applies one command; only `apply_proposal` and tests call this directly.
    pub fn apply(&mut self, command: Command) -> CommandResult {
        match command {
            Command::SubmitApp { app, now_ms } => self.submit(app, now_ms),
            Command::SetStatus { app_id, status, now_ms } => self.set_status(app_id, status, now_ms),
            Command::KillApp { app_id, now_ms } => {
                let result = self.set_status(app_id, AppStatus::Terminated, now_ms);
                if let Some(live) = self.apps.get_mut(&app_id).and_then(|app| app.attempts.last_mut()) {
                    if live.is_live() && result == CommandResult::Done {
                        live.ended_ms = Some(now_ms);
                        live.outcome = Some(AttemptOutcome::Stopped { reason: "killed".into() });
                    }
                }
                result
            }
            Command::RecordRestart { app_id, now_ms } => self.record_restart(app_id, now_ms),
            Command::PutAppData { app_id, key, value } => match self.live_app(app_id) {
                Ok(_) => {
                    self.app_data.entry(app_id).or_default().insert(key, value);
                    CommandResult::Done
                }
                Err(rejection) => CommandResult::Rejected(rejection),
            },
            Command::AllocateWorkerId => {
                let id = self.next_worker_id;
                self.next_worker_id = self.next_worker_id.wrapping_add(1);
                CommandResult::WorkerId(id)
            }
            Command::ForgetJar { key } => {
                if self.jar_is_referenced(&key) {
                    return CommandResult::Rejected(Rejection::JarInUse(key));
                }
                self.jars.remove(&key);
                CommandResult::Done
            }
            Command::Assign { app_id, attempt, worker_id, now_ms } => {
                self.assign(app_id, attempt, worker_id, now_ms)
            }
            Command::AttemptStarted { app_id, attempt, worker_id, pid, log_path, log_address, now_ms } => {
                let log = (log_path, log_address);
                self.attempt_started(app_id, attempt, worker_id, pid, log, now_ms)
            }
            Command::AttemptEnded { app_id, attempt, outcome, now_ms } => {
                self.attempt_ended(app_id, attempt, outcome, now_ms)
            }
            Command::RestartApp { app_id, now_ms } => {
                let live = match self.live_app(app_id) {
                    Ok(app) => app.attempts.last().filter(|a| a.is_live()).map(|a| a.attempt),
                    Err(rejection) => return CommandResult::Rejected(rejection),
                };
                if let Some(attempt) = live {
                    let reason = "restart requested".to_string();
                    return self.attempt_ended(app_id, attempt, AttemptOutcome::Stopped { reason }, now_ms);
                }
                CommandResult::Done
            }
        }
    }

    /// The live attempt of every application, with its application.
    pub fn live_attempts(&self) -> impl Iterator<Item = (&Application, &Attempt)> {
        self.apps.values().filter_map(|app| app.attempts.last().filter(|a| a.is_live()).map(|a| (app, a)))
    }

    fn assign(&mut self, app_id: AppId, attempt: u32, worker_id: WorkerId, now_ms: u64) -> CommandResult {
        let app = match self.live_app(app_id) {
            Ok(app) => app,
            Err(rejection) => return CommandResult::Rejected(rejection),
        };
        let refuse =
            |why: String| CommandResult::Rejected(Rejection::AttemptRefused { app_id, attempt, why });
        if let Some(live) = app.attempts.last().filter(|a| a.is_live()) {
            return refuse(format!("attempt {} is still live on worker {}", live.attempt, live.worker_id));
        }
        let next = u32::try_from(app.attempts.len()).unwrap_or(u32::MAX).saturating_add(1);
        if attempt != next {
            return refuse(format!("the next attempt is {next}"));
        }
        let Some(app) = self.apps.get_mut(&app_id) else {
            return CommandResult::Rejected(Rejection::UnknownApp(app_id));
        };
        app.attempts.push(Attempt {
            attempt,
            worker_id,
            assigned_ms: now_ms,
            started_ms: None,
            pid: None,
            log_path: None,
            log_address: None,
            ended_ms: None,
            outcome: None,
        });
        CommandResult::Done
    }

    fn attempt_started(
        &mut self,
        app_id: AppId,
        attempt: u32,
        worker_id: WorkerId,
        pid: u32,
        (log_path, log_address): (String, String),
        now_ms: u64,
    ) -> CommandResult {
        let refuse = |why: &str| {
            CommandResult::Rejected(Rejection::AttemptRefused { app_id, attempt, why: why.to_string() })
        };
        let Some(app) = self.apps.get_mut(&app_id) else {
            return CommandResult::Rejected(Rejection::UnknownApp(app_id));
        };
        let status = app.status;
        let Some(record) = app.attempts.iter_mut().find(|a| a.attempt == attempt) else {
            return refuse("no such attempt");
        };
        if record.worker_id != worker_id {
            return refuse("the attempt is assigned to another worker");
        }
        if !record.is_live() || status.is_terminal() {
            return refuse("the attempt has already ended; stop its process");
        }
        if record.started_ms.is_some() {
            return CommandResult::Done;
        }
        record.started_ms = Some(now_ms);
        record.pid = Some(pid);
        record.log_path = Some(log_path);
        record.log_address = Some(log_address);
        self.set_status(app_id, AppStatus::Active, now_ms)
    }

    fn attempt_ended(
        &mut self,
        app_id: AppId,
        attempt: u32,
        outcome: AttemptOutcome,
        now_ms: u64,
    ) -> CommandResult {
        let Some(app) = self.apps.get_mut(&app_id) else {
            return CommandResult::Rejected(Rejection::UnknownApp(app_id));
        };
        let Some(record) = app.attempts.iter_mut().find(|a| a.attempt == attempt) else {
            return CommandResult::Rejected(Rejection::AttemptRefused {
                app_id,
                attempt,
                why: "no such attempt".into(),
            });
        };
        if !record.is_live() {
            return CommandResult::Done; // reported before: the worker only needs the ack
        }
        record.ended_ms = Some(now_ms);
        let failure = outcome.is_failure();
        let succeeded = matches!(outcome, AttemptOutcome::Exited { code: 0, .. });
        record.outcome = Some(outcome);
        if app.status.is_terminal() {
            return CommandResult::Done; // killed: the end of its process is only recorded
        }
        if succeeded {
            return self.set_status(app_id, AppStatus::Succeeded, now_ms);
        }
        if failure {
            app.restarts += 1;
            if app.restarts > app.restart_policy.max_restarts {
                self.set_status(app_id, AppStatus::Failed, now_ms);
            } else {
                app.status = AppStatus::Pending;
            }
        } else {
            app.status = AppStatus::Pending;
        }
        let (restarts, status) =
            self.apps.get(&app_id).map_or((0, AppStatus::Failed), |a| (a.restarts, a.status));
        CommandResult::Restarted { restarts, status }
    }

    /// True while a non-terminal application uses the jar: such a jar must never be deleted.
    pub fn jar_is_referenced(&self, key: &str) -> bool {
        self.apps.values().any(|app| !app.status.is_terminal() && app.jar.key == key)
    }

    fn submit(&mut self, new: NewApplication, now_ms: u64) -> CommandResult {
        let Some(id) = self.max_app_id.checked_add(1) else {
            return CommandResult::Rejected(Rejection::IdsExhausted);
        };
        self.max_app_id = id;
        let name = match &new.name_prefix {
            Some(prefix) => format!("{prefix}{id}"),
            None => new.main_class.clone(),
        };
        self.jars.entry(new.jar.key.clone()).or_insert_with(|| JarRecord {
            size: new.jar.size,
            sha256: new.jar.sha256.clone(),
            stored_at_ms: now_ms,
        });
        self.apps.insert(
            id,
            Application {
                id,
                name,
                user: new.user,
                main_class: new.main_class,
                args: new.args,
                jar: new.jar,
                status: AppStatus::Pending,
                submission_time_ms: now_ms,
                start_time_ms: None,
                finish_time_ms: None,
                restart_policy: new.restart_policy,
                restarts: 0,
                slots: new.slots,
                attempts: Vec::new(),
            },
        );
        CommandResult::Submitted { app_id: id }
    }

    fn live_app(&self, app_id: AppId) -> Result<&Application, Rejection> {
        let app = self.apps.get(&app_id).ok_or(Rejection::UnknownApp(app_id))?;
        if app.status.is_terminal() {
            return Err(Rejection::AlreadyFinished { app_id, status: app.status });
        }
        Ok(app)
    }

    fn set_status(&mut self, app_id: AppId, status: AppStatus, now_ms: u64) -> CommandResult {
        if let Err(rejection) = self.live_app(app_id) {
            return CommandResult::Rejected(rejection);
        }
        let Some(app) = self.apps.get_mut(&app_id) else {
            return CommandResult::Rejected(Rejection::UnknownApp(app_id));
        };
        app.status = status;
        if status == AppStatus::Active && app.start_time_ms.is_none() {
            app.start_time_ms = Some(now_ms);
        }
        if status.is_terminal() {
            app.finish_time_ms = Some(now_ms);
            // Gearpump deletes the `<appId>` data group on a terminal status.
            self.app_data.remove(&app_id);
        }
        CommandResult::Done
    }

    fn record_restart(&mut self, app_id: AppId, now_ms: u64) -> CommandResult {
        if let Err(rejection) = self.live_app(app_id) {
            return CommandResult::Rejected(rejection);
        }
        let Some(app) = self.apps.get_mut(&app_id) else {
            return CommandResult::Rejected(Rejection::UnknownApp(app_id));
        };
        app.restarts += 1;
        let (restarts, exhausted) = (app.restarts, app.restarts > app.restart_policy.max_restarts);
        if exhausted {
            self.set_status(app_id, AppStatus::Failed, now_ms);
        }
        let status = self.apps.get(&app_id).map_or(AppStatus::Failed, |app| app.status);
        CommandResult::Restarted { restarts, status }
    }
}

#[cfg(test)]
mod tests;

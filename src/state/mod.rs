//! The replicated master state and the commands that change it.
//!
//! `apply` is pure and deterministic: every master applies the same committed commands in the
//! same order and must end in the same state, so nothing here reads a clock, a file or a random
//! number. Times come inside the commands, stamped by the master that proposed them.

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
            Command::KillApp { app_id, now_ms } => self.set_status(app_id, AppStatus::Terminated, now_ms),
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
        }
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

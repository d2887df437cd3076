//! Every body exchanged between workers and masters: heartbeats and the worker's log route.
//! (The REST answers `gear` reads about workers are in `wire`.)

use serde::{Deserialize, Serialize};

use crate::state::{AppId, AttemptOutcome, JarRef, WorkerId};

/// Worker → any master (followers forward to the leader). Carries the cluster secret header.
pub const HEARTBEAT: &str = "/peer/worker/heartbeat";
/// A heartbeat a follower passed on to the leader (never forwarded twice).
pub const HEARTBEAT_FORWARDED: &str = "/peer/worker/heartbeat/forwarded";
/// On the worker's own port: `GET /log?app=N&attempt=M&tail=BYTES`.
pub const WORKER_LOG: &str = "/log";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Heartbeat {
    /// `None` on the first registration; the leader allocates one through Raft.
    pub worker_id: Option<WorkerId>,
    pub host: String,
    pub slots: u32,
    pub free_slots: u32,
    /// `host:port` of this worker's log server.
    pub log_address: String,
    /// Attempts whose process runs (or ran) here; repeated every beat until acknowledged.
    pub running: Vec<RunningAttempt>,
    /// Attempts that ended here; repeated until `acked_exits` lists them.
    pub exits: Vec<ExitReport>,
    /// The worker's last word before a clean stop: place nothing more on it.
    #[serde(default)]
    pub stopping: bool,
    /// Attempts this worker accepted and is preparing (fetching the jar) but whose process has
    /// not started yet: with `running`, everything it already knows it must run.
    #[serde(default)]
    pub preparing: Vec<AttemptRef>,
    /// How long the leader may hold the answer while nothing changes for this worker (a long
    /// poll): an assignment or a kill then reaches the worker as soon as it is committed, not at
    /// its next heartbeat. 0 (and workers from before this field) answer at once.
    #[serde(default)]
    pub wait_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttemptRef {
    pub app_id: AppId,
    pub attempt: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunningAttempt {
    pub app_id: AppId,
    pub attempt: u32,
    pub pid: u32,
    pub log_path: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExitReport {
    pub app_id: AppId,
    pub attempt: u32,
    pub outcome: AttemptOutcome,
    /// The process's pid and log when it did start (an attempt can end before a heartbeat
    /// reported its start).
    pub started: Option<RunningAttempt>,
}

/// The leader's answer: the worker runs exactly `assigned`, starting what it does not run and
/// stopping what it runs that is not listed (level-triggered, as in Nomad).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatAnswer {
    pub worker_id: WorkerId,
    pub assigned: Vec<AssignedAttempt>,
    pub acked_exits: Vec<(AppId, u32)>,
    /// The leader holds answers while nothing changes (`Heartbeat::wait_ms`), so the worker
    /// may send its next beat at once. A leader from before long polls answers at once and
    /// leaves this false: the worker then keeps its interval.
    #[serde(default)]
    pub long_poll: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssignedAttempt {
    pub app_id: AppId,
    pub attempt: u32,
    pub slots: u32,
    pub main_class: String,
    pub args: Vec<String>,
    pub jar: JarRef,
}

/// Query of the worker's log route.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogQuery {
    pub app: AppId,
    pub attempt: u32,
    pub tail: Option<u64>,
}

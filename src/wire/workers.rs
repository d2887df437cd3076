//! Workers as the leader sees them: `GET /api/v1.0/master/workerlist` and
//! `GET /api/v1.0/worker/{id}`. (The heartbeats between workers and masters are not REST;
//! they stay in `worker::protocol`.)

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::state::{AppId, WorkerId};

/// `GET /api/v1.0/master/workerlist`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkerList {
    pub workers: Vec<WorkerSummary>,
}

/// A worker's standing with the leader, from the age of its last heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum WorkerState {
    /// Heard from within the fence timeout: attempts may be placed on it.
    Alive,
    /// Silent for longer than the fence timeout: it has stopped its attempts itself.
    Unreachable,
    /// Silent for longer than the worker-loss timeout: its attempts were restarted elsewhere.
    Lost,
}

impl WorkerState {
    /// The state's name on the wire (a unit test holds it equal to serde's spelling).
    pub fn name(self) -> &'static str {
        match self {
            WorkerState::Alive => "alive",
            WorkerState::Unreachable => "unreachable",
            WorkerState::Lost => "lost",
        }
    }
}

impl std::fmt::Display for WorkerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

/// One worker as the leader sees it (`GET /api/v1.0/worker/{id}` answers one of these).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkerSummary {
    pub worker_id: WorkerId,
    pub host: String,
    pub slots: u32,
    /// Slots not taken by live attempts assigned to it (the replicated view).
    pub free_slots: u32,
    pub log_address: String,
    /// Milliseconds since its last heartbeat reached this leader.
    pub last_heartbeat_ms_ago: u64,
    pub state: WorkerState,
    /// `[appId, attempt]` of the live attempts assigned to it.
    #[schema(value_type = Vec<Vec<u32>>)]
    pub attempts: Vec<(AppId, u32)>,
}

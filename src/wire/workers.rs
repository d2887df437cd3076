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
    /// `alive`; `unreachable` once silent for longer than the fence timeout (it has stopped its
    /// attempts); `lost` after the worker-loss timeout (its attempts were restarted elsewhere).
    pub state: String,
    /// `[appId, attempt]` of the live attempts assigned to it.
    #[schema(value_type = Vec<Vec<u32>>)]
    pub attempts: Vec<(AppId, u32)>,
}

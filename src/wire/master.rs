//! What the masters say about themselves: `GET /api/v1.0/master` (every master's Raft view),
//! the effective configuration, the Raft membership and its changes, the health answers, and
//! the summary of a backup file that `gear snapshot status --json` prints.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Role;

/// `GET /api/v1.0/master`: Gearpump's `masterDescription`, plus the Raft view of every master.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MasterAnswer {
    pub master_description: MasterDescription,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MasterDescription {
    /// The leader's `host:port` as this master knows it; null while there is none.
    pub leader: Option<String>,
    pub this_master: String,
    /// This master's package version.
    pub version: String,
    /// This master's role, with ` (no quorum)` appended while it is not ready.
    pub master_status: String,
    pub term: u64,
    /// Every member of the cluster, as each one answered this master just now.
    pub cluster: Vec<ClusterMember>,
    /// Milliseconds since this master started.
    pub alive_for: u64,
    pub jar_store: String,
    pub jar_store_highly_available: bool,
    /// This master's state directory.
    pub home_directory: String,
    pub bootstrap: String,
    /// The last log index applied to this master's state, and the hash of that state: equal
    /// on two masters at the same index, or the replicas have diverged.
    pub applied_index: u64,
    pub state_hash: String,
    /// Configuration problems worth an operator's attention.
    pub warnings: Vec<String>,
}

/// One master in `MasterDescription::cluster`. An unreachable one has only `address`, `nodeId`,
/// `reachable` (false), `role` (`unreachable`) and `healthy` (false).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterMember {
    pub address: String,
    pub node_id: u64,
    pub reachable: bool,
    pub role: Role,
    /// What a reachable master answered.
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = super::fields_or_none::<MemberProgress>)]
    pub progress: Option<MemberProgress>,
    /// Reachable, not a candidate, and fewer than 1,000 entries behind the leader.
    pub healthy: bool,
}

/// The Raft progress of a master that answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberProgress {
    pub term: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    pub last_log_index: u64,
    /// Log entries behind the leader; null when no master answered as the leader.
    pub lag: Option<u64>,
    /// Its package version (empty from a master older than this field).
    pub version: String,
    /// Its peer protocol version (null from a master older than this field).
    pub protocol: Option<u32>,
}

/// `GET /api/v1.0/master/config`: every setting in force and where its value came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConfigAnswer {
    pub config: BTreeMap<String, ConfigEntry>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConfigEntry {
    pub value: String,
    /// Where the value came from: `built-in default`, `FILE:LINE (key)`, `command line FLAG`, or
    /// how it was derived from another setting.
    pub origin: String,
}

/// `GET` and `POST /api/v1.0/master/members`: the Raft voters and learners.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct MembersView {
    pub voters: Vec<String>,
    pub learners: Vec<String>,
    /// False when nothing had to change (the request was already satisfied).
    pub changed: bool,
}

/// The body of `POST /api/v1.0/master/members`: `{"add": "host:port"}` or
/// `{"remove": "host:port"}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MembershipChange {
    Add(String),
    Remove(String),
}

/// `GET /health/live`: 200 with `live` true, or 503 with `live` false and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Live {
    pub live: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `GET /health/ready`: 200 when this master is in a quorum with a known leader, else 503.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Ready {
    pub ready: bool,
    pub role: Role,
    pub term: u64,
    pub leader: Option<String>,
    pub bootstrap: String,
    pub jar_store: JarStoreReport,
}

/// The jar store's state from the background probe: `ok` and `probeAgeMs` are null until the
/// first probe finished; `error` is there only when the last probe failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JarStoreReport {
    pub store: String,
    pub ha: bool,
    pub ok: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub probe_age_ms: Option<u64>,
}

/// What `gear snapshot status --json` prints about a backup file (not a REST answer: the file
/// comes from `GET /api/v1.0/master/snapshot`, which answers the file itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotSummary {
    /// The backup's own fields, as the file has them.
    #[serde(flatten)]
    pub origin: crate::backup::Origin,
    pub applications: u64,
    pub max_app_id: u32,
    pub next_app_id: u32,
    pub app_data_keys: u64,
    pub jars: Vec<SnapshotJar>,
    /// The file's size and the SHA-256 of its body.
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SnapshotJar {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

/// What `gear health --json` prints: every listed master's own answer (each is asked itself,
/// not through the leader) and the verdict. Not a REST answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterHealth {
    /// True when `problems` is empty.
    pub healthy: bool,
    /// The leader every master names; null unless they all name the same one.
    pub leader: Option<String>,
    /// The term every master is in; null unless they all are in the same one.
    pub term: Option<u64>,
    /// Each one a sentence naming the masters concerned.
    pub problems: Vec<String>,
    pub masters: Vec<MasterHealth>,
}

/// One master's answers to `GET /health/ready` and `GET /api/v1.0/master`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MasterHealth {
    pub address: String,
    /// Why `/health/ready` gave no answer (unreachable, no answer in time, unreadable); the
    /// fields below are then null.
    pub error: Option<String>,
    pub ready: bool,
    pub role: Option<Role>,
    pub leader: Option<String>,
    pub term: Option<u64>,
    /// From `/api/v1.0/master` (read role): null when it was refused or failed, see
    /// `stateError`.
    pub applied_index: Option<u64>,
    pub state_hash: Option<String>,
    pub version: Option<String>,
    pub state_error: Option<String>,
}

//! What masters say to each other besides Raft's own RPCs, and the routes that carry it.

use serde::{Deserialize, Serialize};

use super::types::NodeId;
use crate::state::{CommandResult, Proposal, Rejection};

pub const RAFT_APPEND: &str = "/peer/raft/append";
pub const RAFT_VOTE: &str = "/peer/raft/vote";
pub const RAFT_SNAPSHOT: &str = "/peer/raft/snapshot";
pub const HELLO: &str = "/peer/hello";
pub const STATUS: &str = "/peer/status";
pub const WRITE: &str = "/peer/write";
pub const READ_INDEX: &str = "/peer/read-index";
pub const TAKE_OVER: &str = "/peer/take-over";
pub const MEMBERS: &str = "/peer/members";
pub const PRE_VOTE: &str = "/peer/pre-vote";
/// A leader whose core waits for a slow disk says it is alive (`election`, point 5).
pub const LEADER_ALIVE: &str = "/peer/leader-alive";

/// Answer to `hello`, used before bootstrap to agree on the masters list.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hello {
    pub node_id: NodeId,
    pub address: String,
    pub masters: Vec<String>,
    pub fingerprint: String,
    pub initialized: bool,
}

/// One master's own view, gathered by `GET /api/v1.0/master` from every master.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PeerStatus {
    pub node_id: NodeId,
    pub address: String,
    pub role: crate::wire::Role,
    pub term: u64,
    pub leader: Option<String>,
    pub last_log_index: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    pub snapshot_index: u64,
    pub purged_index: u64,
    /// The master's package version (empty from a master older than this field).
    #[serde(default)]
    pub version: String,
    /// Its peer protocol version (none from a master older than this field).
    #[serde(default)]
    pub protocol: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WriteRequest {
    pub proposal: Proposal,
}

/// A forwarded write's outcome, as the leader saw it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum WriteOutcome {
    Applied(CommandResult),
    /// The receiver is not (or no longer) the leader; the caller retries elsewhere.
    NotLeader {
        leader: Option<String>,
    },
    NoQuorum(String),
    /// Proposed but not known to be committed: retried only as the same proposal.
    Unknown(String),
    Rejected(Rejection),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReadIndex {
    pub index: Option<u64>,
}

//! Raft's outgoing RPCs: one HTTP POST per call to the peer's own master port.

use std::time::{Duration, Instant};

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::peer_protocol::{RAFT_APPEND, RAFT_SNAPSHOT, RAFT_VOTE};
use super::peers::{PeerError, Peers};
use super::throttle::Throttle;
use super::types::{NodeId, TypeConfig};

#[derive(Clone)]
pub(super) struct PeerNetwork {
    peers: Peers,
    retry_after: Duration,
    late: Duration,
}

impl PeerNetwork {
    /// `retry_after`: how long to wait before contacting an unreachable peer again; `late`: a
    /// pause between AppendEntries to a reachable follower, or an answer taking, this long or
    /// more is warned about.
    pub(super) fn new(peers: Peers, retry_after: Duration, late: Duration) -> PeerNetwork {
        PeerNetwork { peers, retry_after, late }
    }
}

pub(super) struct PeerConnection {
    peers: Peers,
    target: NodeId,
    address: String,
    retry_after: Duration,
    late: Duration,
    /// When the last AppendEntries to this follower was answered.
    last_answer: Option<Instant>,
    warnings: Throttle,
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerConnection {
        PeerConnection {
            peers: self.peers.clone(),
            target,
            address: node.addr.clone(),
            retry_after: self.retry_after,
            late: self.late,
            last_answer: None,
            warnings: Throttle::default(),
        }
    }
}

impl PeerConnection {
    async fn call<Req, Resp, E>(
        &self,
        path: &str,
        request: &Req,
        ttl: Duration,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let answer: Result<Result<Resp, RaftError<NodeId, E>>, PeerError> =
            self.peers.post(&self.address, path, request, ttl).await;
        match answer {
            Ok(result) => result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e))),
            // Unreachable makes openraft back off instead of hammering a dead peer.
            Err(e @ PeerError::NotDelivered { .. }) => Err(RPCError::Unreachable(Unreachable::new(&e))),
            Err(e) => Err(RPCError::Network(NetworkError::new(&e))),
        }
    }
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let sent = Instant::now();
        let paused = self.last_answer.map(|at| sent.duration_since(at));
        let answer = self.call(RAFT_APPEND, &rpc, option.hard_ttl()).await;
        let took = sent.elapsed();
        // A follower hears nothing from this leader in either case; say which side held it up
        // (etcd's "leader failed to send out heartbeat on time"). A follower that does not
        // answer at all is a different case, reported by openraft.
        let late = paused.is_some_and(|p| p >= self.late) || took >= self.late;
        if answer.is_ok() && late && self.warnings.due().is_some() {
            tracing::warn!(
                follower = %self.address,
                paused_ms = paused.unwrap_or_default().as_millis() as u64,
                answered_in_ms = took.as_millis() as u64,
                "AppendEntries to a follower were late: paused_ms is how long this leader sent \
                 none (its Raft core was held up, by a slow disk or an overloaded machine), \
                 answered_in_ms how long the follower took to answer"
            );
        }
        self.last_answer = answer.is_ok().then(Instant::now);
        answer
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(RAFT_SNAPSHOT, &rpc, option.hard_ttl()).await
    }

    /// openraft's default waits 500 ms before retrying an unreachable peer. A restarted master
    /// that hears nothing for that long campaigns with its stale log, is refused, and from then
    /// on waits an extra 2x election timeout before every election: keep the retry well under
    /// the fail-over bound instead.
    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::repeat(self.retry_after))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(RAFT_VOTE, &rpc, option.hard_ttl()).await
    }
}

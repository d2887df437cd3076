//! Everything openraft: durable storage, the peer network, bootstrap from the masters list, and
//! the `Cluster` handle through which the rest of the master writes and reads replicated state.

mod bootstrap;
mod election;
mod log_store;
mod membership;
mod network;
pub mod offline;
pub mod peer_protocol;
mod peers;
pub mod state_dir;
mod state_machine;
mod throttle;
mod types;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ServerState, SnapshotPolicy};

use crate::config::{HostPort, MasterConfig};
use crate::state::{new_id, Command, CommandResult, MasterState, Proposal, Rejection, RequestId};
use crate::wire::Role;
pub use bootstrap::BootstrapState;
pub use election::{LeaderAlive, LeaderAliveAnswer, PreVoteAnswer, PreVoteRequest};
pub use membership::{MembersView, MembershipChange};
use peer_protocol::{Hello, PeerStatus, ReadIndex, WriteOutcome, WriteRequest};
pub use peers::{
    check_peer_version, peer_version_header, PeerAuth, PeerError, PeerFailure, Peers, SECRET_HEADER,
};
pub use state_machine::AppliedState;
use state_machine::{SharedState, StateMachineStore};
use types::Raft;
pub use types::{masters_fingerprint, node_id_of, NodeId};

/// What can go wrong with a request to the cluster. Serializable: peer routes send it to the
/// master that called them, so a forwarded request fails exactly as it would have locally.
#[derive(Debug, Clone, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum ClusterError {
    #[error("no quorum: {0}")]
    NoQuorum(String),
    #[error("{0}")]
    Rejected(#[from] Rejection),
    #[error("cannot open the state directory {path}: {cause}")]
    StateDir { path: String, cause: String },
    #[error("the Raft core stopped: {0}")]
    Fatal(String),
    #[error("bad peer request: {0}")]
    BadRequest(String),
    /// This master has no leader to send the request to and is not taking part in an election
    /// that could give it one: the client should try another master now.
    #[error("no quorum (no leader): {message}")]
    NoLeader { message: String, last_leader: Option<String>, reachable: Vec<String>, retry_after_ms: u64 },
    /// A peer refused the call itself (the cluster secret, a body limit, a route it lacks).
    #[error("master {address} refused the call ({status}): {message}")]
    PeerRefused { address: String, status: u16, message: String },
    /// A master of a peer protocol version this one cannot talk to (not the same, not adjacent).
    #[error(
        "peer protocol version {theirs} (gearpump-master {their_package}) of the calling master is not \
         compatible with version {ours} (gearpump-master {our_package}) of this one: masters run together \
         only with the same or an adjacent protocol version; upgrade one version at a time \
         (gearpump-setup --upgrade), every master before the next version"
    )]
    PeerVersion { ours: u32, our_package: String, theirs: u32, their_package: String },
}

/// Milliseconds since the Unix epoch: the time a master stamps on what it proposes.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Which Raft RPC a peer sent; the API layer only moves bytes, this module decodes them.
#[derive(Debug, Clone, Copy)]
pub enum RaftRpc {
    Append,
    Vote,
    Snapshot,
}

pub struct Cluster {
    raft: Raft,
    node_id: NodeId,
    me: HostPort,
    masters: Vec<HostPort>,
    fingerprint: String,
    applied: SharedState,
    peers: Peers,
    failover_timeout: Duration,
    request_timeout: Duration,
    bootstrap: Arc<std::sync::Mutex<BootstrapState>>,
    started_at: Instant,
    contact: election::LeaderContact,
    /// How long the Raft core has been waiting for a log commit (`election`, point 5).
    commit_clock: Arc<log_store::CommitClock>,
    read_index: ReadIndexBatch,
    /// Set while this leader hands leadership over (it is stopping): it takes no new writes,
    /// so a follower can catch up with its log and win the election it is asked to start.
    handing_over: std::sync::atomic::AtomicBool,
    /// Writes between that check and their append (`write_as_leader`): a hand-over waits for
    /// them, or one appended after the successor caught up would cost it the old leader's vote.
    writes_in_flight: std::sync::atomic::AtomicUsize,
}

/// One write between the hand-over check and the end of its append, counted while it lives.
struct InFlight<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> InFlight<'a> {
    fn enter(count: &'a std::sync::atomic::AtomicUsize) -> InFlight<'a> {
        count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        InFlight(count)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Leadership confirmations shared by concurrent reads. A read index is valid for a read when
/// the quorum round that produced it started after the read arrived; one round started after
/// many reads arrived serves them all, so a thousand workers' heartbeats (or a burst of
/// consistent REST reads) cost a round per round trip instead of one each.
#[derive(Default)]
struct ReadIndexBatch {
    /// One round at a time; the others wait for it and then usually find their answer.
    round: tokio::sync::Mutex<()>,
    /// When the last successful round started, and its read index.
    last: std::sync::Mutex<Option<(Instant, Option<u64>)>>,
    /// Rounds run so far (tests check that concurrent reads share them).
    rounds: std::sync::atomic::AtomicU64,
}

impl Cluster {
    /// Opens durable state under `state_dir`, starts the Raft core and the bootstrap task.
    pub async fn start(config: &MasterConfig, auth: PeerAuth) -> Result<Arc<Cluster>, ClusterError> {
        let state_error =
            |cause: String| ClusterError::StateDir { path: config.state_dir.display().to_string(), cause };
        std::fs::create_dir_all(&config.state_dir).map_err(|e| state_error(e.to_string()))?;
        let db_path = config.state_dir.join(state_dir::DATABASE);
        let db = redb::Database::create(&db_path)
            .map_err(|e| state_error(format!("{}: {e}", db_path.display())))?;
        let db = Arc::new(db);
        // A commit longer than a quarter bound is five missed heartbeats: worth a warning.
        let log_store = log_store::LogStore::open(db.clone(), config.failover_timeout / 4)
            .map_err(|e| state_error(e.to_string()))?;
        let commit_clock = log_store.commit_clock();
        let state_machine = StateMachineStore::open(db).map_err(|e| state_error(e.to_string()))?;
        let applied = state_machine.shared();

        let raft_config = raft_config(config).map_err(ClusterError::Fatal)?;
        let peers = Peers::with_auth(config.failover_timeout.min(Duration::from_secs(1)), auth)
            .map_err(|e| ClusterError::Fatal(e.to_string()))?;
        let network = network::PeerNetwork::new(
            peers.clone(),
            config.failover_timeout / 4,
            config.failover_timeout / 4,
        );
        let node_id = node_id_of(&config.this_master);
        let raft = Raft::new(node_id, Arc::new(raft_config), network, log_store, state_machine)
            .await
            .map_err(|e| ClusterError::Fatal(e.to_string()))?;

        // Elections are ours (cluster::election): a pre-vote round first, so a master cut off
        // from the others never raises its term and deposes a healthy leader when it returns.
        // This also keeps a restarted master from campaigning before it could hear the leader.
        raft.runtime_config().elect(false);

        let cluster = Arc::new(Cluster {
            raft,
            node_id,
            me: config.this_master.clone(),
            masters: config.masters.clone(),
            fingerprint: masters_fingerprint(&config.masters),
            applied,
            peers,
            failover_timeout: config.failover_timeout,
            request_timeout: config.request_timeout,
            bootstrap: Arc::new(std::sync::Mutex::new(BootstrapState::Starting)),
            started_at: Instant::now(),
            contact: election::LeaderContact::new(),
            commit_clock,
            read_index: ReadIndexBatch::default(),
            handing_over: std::sync::atomic::AtomicBool::new(false),
            writes_in_flight: std::sync::atomic::AtomicUsize::new(0),
        });
        tokio::spawn(bootstrap::run(cluster.clone()));
        tokio::spawn(election::run(cluster.clone()));
        tokio::spawn(election::follow_quorum_acks(cluster.clone()));
        tokio::spawn(election::beacon(cluster.clone()));
        Ok(cluster)
    }

    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    pub fn me(&self) -> &HostPort {
        &self.me
    }

    pub fn masters(&self) -> &[HostPort] {
        &self.masters
    }

    pub fn uptime(&self) -> Duration {
        self.started_at.elapsed()
    }

    pub fn bootstrap_state(&self) -> BootstrapState {
        self.bootstrap.lock().map(|state| state.clone()).unwrap_or(BootstrapState::Starting)
    }

    /// Reads the applied state without any freshness guarantee (`?stale=true`, or after `read_barrier`).
    pub fn read<T>(&self, read: impl FnOnce(&MasterState) -> T) -> T {
        match self.applied.read() {
            Ok(applied) => read(&applied.state),
            // A panic while applying would have stopped the Raft core; the data is still whole.
            Err(poisoned) => read(&poisoned.into_inner().state),
        }
    }

    /// The applied log index and a SHA-256 of the applied `MasterState` at that index, read
    /// under one lock so the pair is consistent. Every master that applied the same log to the
    /// same index must report the same hash (`apply` is deterministic and the state is made of
    /// ordered maps, so its JSON is too): the nemesis suite compares them after healing.
    pub fn applied_hash(&self) -> (u64, String) {
        use sha2::Digest as _;
        let applied = match self.applied.read() {
            Ok(applied) => applied,
            Err(poisoned) => poisoned.into_inner(),
        };
        let index = applied.last_applied.map_or(0, |log_id| log_id.index);
        // Serializing plain maps, strings and numbers cannot fail; an error would still give a
        // hash that differs from every healthy master's, which is what a reader should see.
        let bytes = serde_json::to_vec(&applied.state).unwrap_or_default();
        (index, hex::encode(sha2::Sha256::digest(&bytes)))
    }

    /// A backup of the applied state, read under one lock so the state, its log position and
    /// the membership belong together. Linearizable when called after `read_barrier`.
    pub fn backup(&self) -> crate::backup::Backup {
        let applied = match self.applied.read() {
            Ok(applied) => applied.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        let (voters, learners) = membership::voters_and_learners(applied.last_membership.membership());
        crate::backup::Backup {
            origin: crate::backup::Origin {
                format: crate::backup::FORMAT,
                written_by: env!("CARGO_PKG_VERSION").to_string(),
                created_at_ms: now_ms(),
                taken_from: self.me.to_string(),
                leader: self.status().leader,
                applied_index: applied.last_applied.map_or(0, |log_id| log_id.index),
                applied_term: applied.last_applied.map_or(0, |log_id| log_id.leader_id.term),
                voters,
                learners,
            },
            master_state: applied.state,
        }
    }

    /// Addresses of the current members, from the Raft membership once there is one.
    pub fn member_addresses(&self) -> BTreeMap<NodeId, String> {
        let metrics = self.raft.metrics().borrow().clone();
        let members: BTreeMap<NodeId, String> =
            metrics.membership_config.nodes().map(|(id, node)| (*id, node.addr.clone())).collect();
        if members.is_empty() {
            self.masters.iter().map(|m| (node_id_of(m), m.to_string())).collect()
        } else {
            members
        }
    }

    fn leader_address(&self, leader: NodeId) -> Option<String> {
        self.member_addresses().get(&leader).cloned()
    }

    /// This master's own view: role, term, indexes.
    pub fn status(&self) -> PeerStatus {
        let metrics = self.raft.metrics().borrow().clone();
        let role = match metrics.state {
            ServerState::Leader => Role::Leader,
            ServerState::Follower => Role::Follower,
            ServerState::Candidate => Role::Candidate,
            ServerState::Learner => Role::Learner,
            ServerState::Shutdown => Role::Shutdown,
        };
        let commit_index = match &metrics.replication {
            Some(replication) if metrics.state == ServerState::Leader => majority_index(replication),
            _ => metrics.last_applied.map_or(0, |l| l.index),
        };
        PeerStatus {
            node_id: self.node_id,
            address: self.me.to_string(),
            role,
            term: metrics.current_term,
            leader: metrics.current_leader.and_then(|id| self.leader_address(id)),
            last_log_index: metrics.last_log_index.unwrap_or(0),
            commit_index,
            applied_index: metrics.last_applied.map_or(0, |l| l.index),
            snapshot_index: metrics.snapshot.map_or(0, |l| l.index),
            purged_index: metrics.purged.map_or(0, |l| l.index),
            version: crate::wire::PACKAGE_VERSION.to_string(),
            protocol: Some(crate::wire::PEER_PROTOCOL_VERSION),
        }
    }

    /// True when this master is in a quorum with a known leader: what `/health/ready` and
    /// systemd's READY=1 mean.
    pub fn is_ready(&self) -> bool {
        let metrics = self.raft.metrics().borrow().clone();
        match (metrics.state, metrics.current_leader) {
            (ServerState::Leader, _) => self.leader_has_quorum(&metrics),
            // openraft keeps naming a leader that died until an election replaces it; with
            // pre-vote a cut-off follower never starts one, so the name alone proves nothing.
            (_, Some(leader)) => leader != self.node_id && self.contact.age() <= self.failover_timeout * 2,
            _ => false,
        }
    }

    fn leader_has_quorum(&self, metrics: &openraft::RaftMetrics<NodeId, BasicNode>) -> bool {
        let members = metrics.membership_config.membership().voter_ids().count();
        if members <= 1 {
            return true;
        }
        // Without a majority's ack for twice the bound, this leader is cut off (check-quorum).
        // Twice, as for a follower's leader: on a saturated machine acks run hundreds of
        // milliseconds late (50 concurrent uploads on two cores were seen at 660 ms), and a
        // leader that refused writes for that would fail clients the cluster could serve. The
        // majority elects a new leader after 0.8-1.0 B; writes the old one accepted meanwhile
        // are given up at 2 B and retried elsewhere under their request id.
        // No ack instant yet while openraft says Leader: `election::follow_quorum_acks` has not
        // seen this leadership yet (it counts winning the vote as the majority's ack once it
        // does). Refusing in that window answered the first writes after an election with 503
        // "has not heard from a majority for 0 ms" (seen after hand-overs under writes).
        metrics.state == ServerState::Leader
            && self.contact.quorum_ack_age().is_none_or(|age| age <= self.failover_timeout * 2)
    }

    /// This master leads and a majority acknowledged it within the fail-over bound: what a
    /// worker's heartbeat acknowledgement must mean for fencing to hold.
    pub fn leads_with_quorum(&self) -> bool {
        let metrics = self.raft.metrics().borrow().clone();
        metrics.state == ServerState::Leader && self.leader_has_quorum(&metrics)
    }

    /// The leader's address when another master leads; `None` when this one does or none is known.
    pub fn leader_elsewhere(&self) -> Option<String> {
        let metrics = self.raft.metrics().borrow().clone();
        metrics.current_leader.filter(|id| *id != self.node_id).and_then(|id| self.leader_address(id))
    }

    /// A call to another master's route through the peer transport (worker routes forward to
    /// the leader): `None` is a GET, a body a POST.
    pub async fn call_peer<Req: serde::Serialize + ?Sized, Resp: serde::de::DeserializeOwned>(
        &self,
        address: &str,
        path: &str,
        body: Option<&Req>,
        timeout: Duration,
    ) -> Result<Resp, PeerError> {
        match body {
            Some(body) => self.peers.post(address, path, body, timeout).await,
            None => self.peers.get(address, path, timeout).await,
        }
    }

    /// Wakes on every change of Raft's metrics (role, leader, indexes).
    pub fn watch_metrics(&self) -> tokio::sync::watch::Receiver<openraft::RaftMetrics<NodeId, BasicNode>> {
        self.raft.metrics()
    }

    pub fn hello(&self) -> Hello {
        let initialized = self.raft.metrics().borrow().membership_config.membership().voter_ids().count() > 0;
        Hello {
            node_id: self.node_id,
            address: self.me.to_string(),
            masters: self.masters.iter().map(ToString::to_string).collect(),
            fingerprint: self.fingerprint.clone(),
            initialized,
        }
    }

    /// Whether this master has a leader worth waiting for: as leader, a majority acknowledged it
    /// within twice the fail-over bound (check-quorum); as follower, the leader's heartbeats or an
    /// election it takes part in are no older than twice the bound. Otherwise requests that need a
    /// leader fail at once (`NoLeader`, a 503 with Retry-After) instead of after the request
    /// timeout, so clients move on to a master on the majority's side.
    pub fn check_leader_is_fresh(&self) -> Result<(), ClusterError> {
        let metrics = self.raft.metrics().borrow().clone();
        let bound = self.failover_timeout;
        let message = if metrics.state == ServerState::Leader {
            if self.leader_has_quorum(&metrics) {
                return Ok(());
            }
            format!(
                "this master leads but has not heard from a majority for {} ms",
                metrics.millis_since_quorum_ack.unwrap_or(0)
            )
        } else {
            // Twice the bound: a healthy fail-over has a new leader (or this master has granted
            // it a vote) within one bound of the old leader's last heartbeat, so only a master
            // that is really cut off gets here — a busy machine's late heartbeat does not.
            let age = self.contact.age();
            if age <= bound * 2 {
                return Ok(());
            }
            format!("this master has not heard from a leader for {} ms", age.as_millis())
        };
        let reachable = self.contact.reachable(bound * 2);
        Err(ClusterError::NoLeader {
            message: format!(
                "{message} (it reaches {}); try another master",
                if reachable.is_empty() { "no other master".to_string() } else { reachable.join(", ") }
            ),
            last_leader: self.contact.last_leader(),
            reachable,
            // The same master may have a leader again once an election had time to finish.
            retry_after_ms: u64::try_from(bound.as_millis()).unwrap_or(u64::MAX),
        })
    }

    /// Proposes a command under a fresh request id (for writes the master starts itself).
    pub async fn write(&self, command: Command) -> Result<CommandResult, ClusterError> {
        self.write_request(new_id(), command).await
    }

    /// Proposes a command and waits for it to be committed and applied, forwarding to the
    /// leader when this master is not it. Every retry carries the same request id, so a write
    /// whose first attempt did commit (a leader that died before answering) is applied once.
    /// Bounded by `request_timeout`: without a quorum the caller gets `NoQuorum`, never a hang.
    pub async fn write_request(
        &self,
        id: RequestId,
        command: Command,
    ) -> Result<CommandResult, ClusterError> {
        let deadline = Instant::now() + self.request_timeout;
        let proposal = Proposal { id, at_ms: now_ms(), command };
        let mut outcome_unknown = false;
        loop {
            if let Err(no_leader) = self.check_leader_is_fresh() {
                return Err(match no_leader {
                    ClusterError::NoLeader { message, last_leader, reachable, retry_after_ms }
                        if outcome_unknown =>
                    {
                        ClusterError::NoLeader {
                            retry_after_ms,
                            message: format!(
                                "{message}; an earlier attempt may still be applied: retry with Idempotency-Key {} to apply it at most once",
                                proposal.id
                            ),
                            last_leader,
                            reachable,
                        }
                    }
                    other => other,
                });
            }
            let outcome = self.try_write_once(&proposal, deadline).await;
            let retry_reason = match outcome {
                Ok(WriteOutcome::Applied(result)) => return Ok(result),
                Ok(WriteOutcome::Rejected(rejection)) => return Err(ClusterError::Rejected(rejection)),
                Ok(WriteOutcome::NotLeader { leader }) => match leader {
                    Some(leader) => format!("leader {leader} is not answering"),
                    None => "no leader is elected".to_string(),
                },
                // The leader itself says it has lost its majority (check-quorum): no point in
                // waiting here, the client should find the majority's side.
                Ok(WriteOutcome::NoQuorum(why)) => return Err(ClusterError::NoQuorum(why)),
                Err(ClusterError::NoQuorum(why)) => why,
                Err(other) => return Err(other),
                Ok(WriteOutcome::Unknown(why)) => {
                    outcome_unknown = true;
                    why
                }
            };
            if let Err(gave_up) = self.pause_before_retry(deadline, retry_reason).await {
                return Err(match gave_up {
                    ClusterError::NoQuorum(why) if outcome_unknown => ClusterError::NoQuorum(format!(
                        "{why}; the write may still be applied: retry with Idempotency-Key {} to apply it at most once",
                        proposal.id
                    )),
                    other => other,
                });
            }
        }
    }

    /// Between attempts of a request that needs a quorum: a short pause, or the final 503 once
    /// the request timeout is spent.
    async fn pause_before_retry(&self, deadline: Instant, reason: String) -> Result<(), ClusterError> {
        const PAUSE: Duration = Duration::from_millis(20);
        if Instant::now() + PAUSE >= deadline {
            return Err(ClusterError::NoQuorum(format!(
                "{reason}; gave up after {:?} (gearpump.master.request-timeout)",
                self.request_timeout
            )));
        }
        tokio::time::sleep(PAUSE).await;
        Ok(())
    }

    /// One attempt; anything but `Applied`, `Rejected` and a non-`NoQuorum` error is retried.
    async fn try_write_once(
        &self,
        proposal: &Proposal,
        deadline: Instant,
    ) -> Result<WriteOutcome, ClusterError> {
        let metrics = self.raft.metrics().borrow().clone();
        if metrics.state == ServerState::Leader {
            return self.write_as_leader(proposal.clone(), deadline).await;
        }
        let Some(leader) = metrics.current_leader.filter(|id| *id != self.node_id) else {
            return Ok(WriteOutcome::NotLeader { leader: None });
        };
        let Some(address) = self.leader_address(leader) else {
            return Ok(WriteOutcome::NotLeader { leader: None });
        };
        self.forward_write(&address, proposal, deadline).await
    }

    /// Called for local proposals and for writes forwarded by other masters.
    pub async fn write_as_leader(
        &self,
        proposal: Proposal,
        deadline: Instant,
    ) -> Result<WriteOutcome, ClusterError> {
        let metrics = self.raft.metrics().borrow().clone();
        if metrics.state != ServerState::Leader {
            let leader = metrics.current_leader.and_then(|id| self.leader_address(id));
            return Ok(WriteOutcome::NotLeader { leader });
        }
        // Counted before the flag is read (both SeqCst), so a hand-over that sets the flag
        // either sees this write in flight or this write sees the flag.
        let _in_flight = InFlight::enter(&self.writes_in_flight);
        if self.handing_over.load(std::sync::atomic::Ordering::SeqCst) {
            // No leader to take it right now: retried (forwarded or local) under the same
            // request id, at the next leader, within a fail-over bound.
            return Ok(WriteOutcome::NotLeader { leader: None });
        }
        if !self.leader_has_quorum(&metrics) {
            return Ok(WriteOutcome::NoQuorum(format!(
                "this leader has not heard from a majority of masters for {} ms",
                metrics.millis_since_quorum_ack.unwrap_or(0)
            )));
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        let committed = tokio::time::timeout(remaining, self.raft.client_write(proposal));
        // A leader cut off after accepting the write gives up on it as soon as check-quorum
        // says it is alone, instead of holding the client for the rest of the request timeout;
        // the client retries elsewhere under the same request id.
        let cut_off = async {
            loop {
                tokio::time::sleep(self.failover_timeout / 4).await;
                let now = self.raft.metrics().borrow().clone();
                if !self.leader_has_quorum(&now) {
                    return;
                }
            }
        };
        let written = tokio::select! {
            written = committed => written,
            () = cut_off => {
                return Ok(WriteOutcome::Unknown(
                    "this leader lost its majority before the write committed".into(),
                ))
            }
        };
        match written {
            // Appended to the log, perhaps replicated: it may still commit.
            Err(_) => Ok(WriteOutcome::Unknown("the write was not committed by a majority in time".into())),
            Ok(Ok(response)) => Ok(match response.data {
                CommandResult::Rejected(rejection) => WriteOutcome::Rejected(rejection),
                result => WriteOutcome::Applied(result),
            }),
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward)))) => {
                Ok(WriteOutcome::NotLeader { leader: forward.leader_node.map(|node| node.addr) })
            }
            Ok(Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e)))) => {
                Err(ClusterError::Fatal(e.to_string()))
            }
            Ok(Err(RaftError::Fatal(fatal))) => Err(ClusterError::Fatal(fatal.to_string())),
        }
    }

    /// Sends a proposal to the leader. What the transport could not deliver is safe to send
    /// anywhere; what it delivered without an answer may have been applied, and is only ever
    /// retried as the same proposal (same request id), which `apply` recognises.
    async fn forward_write(
        &self,
        address: &str,
        proposal: &Proposal,
        deadline: Instant,
    ) -> Result<WriteOutcome, ClusterError> {
        // One attempt waits at most the fail-over bound: a leader that vanished mid-request is
        // given up on as fast as the cluster would replace it, and the retry carries the same
        // request id.
        let remaining = deadline.saturating_duration_since(Instant::now()).min(self.failover_timeout);
        let request = WriteRequest { proposal: proposal.clone() };
        match self.peers.post(address, peer_protocol::WRITE, &request, remaining).await {
            Ok(outcome) => Ok(outcome),
            Err(PeerError::NotDelivered { .. }) => {
                Ok(WriteOutcome::NotLeader { leader: Some(address.to_string()) })
            }
            Err(unknown @ PeerError::NoAnswer { .. }) => Ok(WriteOutcome::Unknown(unknown.to_string())),
            Err(PeerError::Refused(error)) => Err(error),
        }
    }

    /// Waits until this master has applied everything committed before the call (a leader's
    /// read index), so that a read after it is linearizable.
    pub async fn read_barrier(&self) -> Result<(), ClusterError> {
        let deadline = Instant::now() + self.request_timeout;
        loop {
            self.check_leader_is_fresh()?;
            let reason = match self.try_read_barrier(deadline).await {
                Ok(()) => return Ok(()),
                Err(ClusterError::NoQuorum(reason)) => reason,
                Err(other) => return Err(other),
            };
            self.pause_before_retry(deadline, reason).await?;
        }
    }

    async fn try_read_barrier(&self, deadline: Instant) -> Result<(), ClusterError> {
        let metrics = self.raft.metrics().borrow().clone();
        let index = if metrics.state == ServerState::Leader {
            self.read_index().await?
        } else {
            let Some(address) = metrics
                .current_leader
                .filter(|id| *id != self.node_id)
                .and_then(|id| self.leader_address(id))
            else {
                return Err(ClusterError::NoQuorum("no leader is elected".into()));
            };
            let remaining = deadline.saturating_duration_since(Instant::now()).min(self.failover_timeout);
            let read_index: ReadIndex =
                self.peers.post(&address, peer_protocol::READ_INDEX, &(), remaining).await?;
            read_index.index
        };
        let Some(index) = index else { return Ok(()) };
        let remaining = deadline.saturating_duration_since(Instant::now());
        self.raft
            .wait(Some(remaining))
            .applied_index_at_least(Some(index), "read barrier")
            .await
            .map(|_| ())
            .map_err(|e| {
                ClusterError::NoQuorum(format!("this master did not catch up to index {index}: {e}"))
            })
    }

    /// As leader: confirms leadership with a quorum and returns the index reads must wait for.
    /// Concurrent callers share rounds (`ReadIndexBatch`).
    pub async fn read_index(&self) -> Result<Option<u64>, ClusterError> {
        let asked = Instant::now();
        let _round = self.read_index.round.lock().await;
        let last = *self.read_index.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, index)) = last.filter(|(started, _)| *started >= asked) {
            return Ok(index);
        }
        let started = Instant::now();
        self.read_index.rounds.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let index = self.confirm_read_index().await?;
        *self.read_index.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some((started, index));
        Ok(index)
    }

    async fn confirm_read_index(&self) -> Result<Option<u64>, ClusterError> {
        let metrics = self.raft.metrics().borrow().clone();
        if !self.leader_has_quorum(&metrics) {
            return Err(ClusterError::NoQuorum("this leader is cut off from a majority".into()));
        }
        let (read_log_id, _applied) = tokio::time::timeout(self.request_timeout, self.raft.get_read_log_id())
            .await
            .map_err(|_| ClusterError::NoQuorum("leadership was not confirmed by a majority in time".into()))?
            .map_err(|e| ClusterError::NoQuorum(e.to_string()))?;
        Ok(read_log_id.map(|log_id| log_id.index))
    }

    /// Handles a Raft RPC from a peer; the body and the answer are JSON.
    pub async fn handle_raft_rpc(&self, rpc: RaftRpc, body: &[u8]) -> Result<Vec<u8>, ClusterError> {
        let bad = |e: serde_json::Error| ClusterError::BadRequest(e.to_string());
        let encoded = match rpc {
            RaftRpc::Append => {
                let request: openraft::raft::AppendEntriesRequest<types::TypeConfig> =
                    serde_json::from_slice(body).map_err(bad)?;
                // Raft restarts the election timer when a current leader's AppendEntries arrives,
                // not when the core has taken it in: a core waiting for its own disk takes it in
                // late, and the leader was not silent meanwhile.
                if request.vote.is_committed() && request.vote >= self.raft.metrics().borrow().vote {
                    let leader = request.vote.leader_id().voted_for();
                    self.contact.touch(leader.and_then(|id| self.leader_address(id)));
                }
                serde_json::to_vec(&self.raft.append_entries(request).await)
            }
            RaftRpc::Vote => {
                let answer = self.raft.vote(serde_json::from_slice(body).map_err(bad)?).await;
                if matches!(&answer, Ok(response) if response.vote_granted) {
                    // Raft restarts its election timer when it grants a vote.
                    self.contact.touch(None);
                }
                serde_json::to_vec(&answer)
            }
            RaftRpc::Snapshot => serde_json::to_vec(
                &self.raft.install_snapshot(serde_json::from_slice(body).map_err(bad)?).await,
            ),
        };
        encoded.map_err(|e| ClusterError::Fatal(e.to_string()))
    }

    /// A leader stopping cleanly asks an up-to-date follower to take over: the follower starts
    /// an election at once instead of waiting for its timeout, so a planned stop costs almost
    /// no fail-over time.
    pub async fn hand_over_leadership(&self) -> Option<String> {
        use std::sync::atomic::Ordering;
        if self.raft.metrics().borrow().state != ServerState::Leader {
            return None;
        }
        // Raft's leadership transfer: no new writes, wait (at most one fail-over bound) until a
        // follower has the whole log, then ask it to campaign. Under a steady stream of writes
        // a follower is always a few entries behind, and asking it at once found none able to
        // win: the stopping leader then came back as leader after its restart.
        self.handing_over.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + self.failover_timeout;
        // Writes already past the check append after it: wait for them first.
        while self.writes_in_flight.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let mut watch = self.raft.metrics();
        let candidates = loop {
            let metrics = watch.borrow_and_update().clone();
            let last = metrics.last_log_index;
            let mut caught_up: Vec<NodeId> = metrics
                .replication
                .iter()
                .flatten()
                .filter(|(id, matched)| **id != self.node_id && matched.map(|l| l.index) >= last)
                .map(|(id, _)| *id)
                .collect();
            caught_up.sort_unstable();
            if !caught_up.is_empty() || metrics.state != ServerState::Leader {
                break caught_up;
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if !matches!(tokio::time::timeout(remaining, watch.changed()).await, Ok(Ok(()))) {
                break Vec::new();
            }
        };
        for id in candidates {
            let Some(address) = self.leader_address(id) else { continue };
            let answer: Result<(), _> =
                self.peers.post(&address, peer_protocol::TAKE_OVER, &(), self.failover_timeout).await;
            if answer.is_ok() {
                return Some(address);
            }
        }
        self.handing_over.store(false, Ordering::SeqCst);
        None
    }

    /// The follower's side of a hand-over.
    pub async fn take_over(&self) -> Result<(), ClusterError> {
        self.raft.trigger().elect().await.map_err(|e| ClusterError::Fatal(e.to_string()))
    }

    /// Every member's own status, asked concurrently; `None` for a master that did not answer.
    pub async fn all_statuses(&self) -> Vec<(NodeId, String, Option<PeerStatus>)> {
        let members = self.member_addresses();
        let asks = members.into_iter().map(|(id, address)| async move {
            if id == self.node_id {
                return (id, address, Some(self.status()));
            }
            let status = self
                .peers
                .get::<PeerStatus>(&address, peer_protocol::STATUS, Duration::from_millis(500))
                .await;
            (id, address, status.ok())
        });
        futures::future::join_all(asks).await
    }

    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "Raft core did not shut down cleanly");
        }
    }

    /// The Raft core's message loop answers a request (not just: it has not crashed).
    pub async fn core_responds(&self) -> bool {
        self.raft.is_initialized().await.is_ok()
    }

    /// Raft core alive and not stopped by a fatal error: the watchdog's question.
    pub fn core_is_running(&self) -> bool {
        self.raft.metrics().borrow().running_state.is_ok()
    }
}

/// The highest index a majority of voters holds, from a leader's replication progress.
fn majority_index(replication: &BTreeMap<NodeId, Option<types::LogId>>) -> u64 {
    let mut matched: Vec<u64> = replication.values().map(|m| m.map_or(0, |l| l.index)).collect();
    matched.sort_unstable_by(|a, b| b.cmp(a));
    matched.get(matched.len() / 2).copied().unwrap_or(0)
}

/// Raft timings derived from the fail-over bound B. openraft 0.9 has a follower that has seen a
/// leader wait a leader lease (= election_timeout_max) plus a random election timeout before it
/// campaigns, so with max = B/2 and min = 0.3 B a dead leader is noticed between 0.8 B and B.
/// Heartbeats go 20 times per B, so a few late ones on a busy machine do not depose a leader.
fn raft_config(config: &MasterConfig) -> Result<openraft::Config, String> {
    let bound = u64::try_from(config.failover_timeout.as_millis()).unwrap_or(u64::MAX);
    let raft_config = openraft::Config {
        cluster_name: "gearpump-master".into(),
        election_timeout_min: bound * 3 / 10,
        election_timeout_max: bound / 2,
        heartbeat_interval: (bound / 20).max(5),
        install_snapshot_timeout: (bound * 4).max(2000),
        snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_every),
        max_in_snapshot_log_to_keep: config.log_keep,
        ..Default::default()
    };
    raft_config.validate().map_err(|e| e.to_string())
}

#[cfg(test)]
mod read_index_tests {
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    use crate::api::test_support::one_master_context;
    use crate::jarstore::fs::FsJarStore;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_reads_share_leadership_confirmations() {
        let jars = tempfile::tempdir().expect("temp dir");
        let store = Arc::new(FsJarStore::local(jars.path().to_path_buf()));
        let (context, _dir) = one_master_context(store, "").await;
        let cluster = context.cluster.clone();
        cluster.read_barrier().await.expect("a leader");
        let before = cluster.read_index.rounds.load(Ordering::Relaxed);
        // All at once: without sharing each read runs its own round (200); with it, a round
        // serves every read that arrived before it started. How many rounds that takes depends
        // on how the 200 tasks are polled on a busy machine, hence the loose bound.
        let start = Arc::new(tokio::sync::Barrier::new(200));
        let reads: Vec<_> = (0..200)
            .map(|_| {
                let (cluster, start) = (cluster.clone(), start.clone());
                tokio::spawn(async move {
                    start.wait().await;
                    cluster.read_barrier().await
                })
            })
            .collect();
        for read in reads {
            read.await.expect("task").expect("a read barrier");
        }
        let rounds = cluster.read_index.rounds.load(Ordering::Relaxed) - before;
        assert!((1..=100).contains(&rounds), "200 concurrent reads took {rounds} rounds");
    }
}

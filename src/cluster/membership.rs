//! Adding and removing masters of a running cluster: a new master joins as a learner, catches
//! up, and only then becomes a voter, so the quorum never counts a master that has no data.

use std::collections::BTreeSet;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers, Membership, ServerState};

use super::peer_protocol::{Hello, HELLO, MEMBERS};
use super::{node_id_of, Cluster, ClusterError, NodeId, PeerError};
use crate::config::HostPort;

/// How long a new master may take to catch up as a learner before the change is abandoned.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(120);

/// The REST bodies of `/api/v1.0/master/members`, also forwarded to the leader as they are.
pub use crate::wire::{MembersView, MembershipChange};

/// The voters' and the learners' addresses (learners that are not also voters).
pub(super) fn voters_and_learners(membership: &Membership<NodeId, BasicNode>) -> (Vec<String>, Vec<String>) {
    let address = |id: &NodeId| membership.get_node(id).map_or_else(|| id.to_string(), |n| n.addr.clone());
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    let learners =
        membership.learner_ids().filter(|id| !voters.contains(id)).map(|id| address(&id)).collect();
    (voters.iter().map(address).collect(), learners)
}

fn error_text<E: std::fmt::Display>(error: RaftError<u64, E>) -> ClusterError {
    match error {
        RaftError::APIError(e) => ClusterError::BadRequest(e.to_string()),
        RaftError::Fatal(e) => ClusterError::Fatal(e.to_string()),
    }
}

impl Cluster {
    /// Waits until `master` answers `hello` as a master, or says why it does not.
    async fn probe_new_master(&self, master: &HostPort) -> Result<(), ClusterError> {
        let deadline = tokio::time::Instant::now() + self.request_timeout.max(Duration::from_secs(10));
        loop {
            let attempt = self.failover_timeout.max(Duration::from_secs(1));
            let why = match self.peers.get::<Hello>(&master.to_string(), HELLO, attempt).await {
                Ok(_) => return Ok(()),
                // Nothing listens (yet): worth another look until the deadline.
                Err(why @ PeerError::NotDelivered { .. }) => why,
                // It answered, but not as a master of this cluster would (a refused certificate
                // or secret, another program on the port): waiting will not change that.
                Err(why) => return Err(not_a_master(master, &why)),
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(not_a_master(master, &why));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub fn members_view(&self, changed: bool) -> MembersView {
        let metrics = self.raft.metrics().borrow().clone();
        let (voters, learners) = voters_and_learners(metrics.membership_config.membership());
        MembersView { voters, learners, changed }
    }

    /// Applies a membership change, forwarding it to the leader when this master is not it.
    pub async fn change_members(&self, change: MembershipChange) -> Result<MembersView, ClusterError> {
        let address = match &change {
            MembershipChange::Add(a) | MembershipChange::Remove(a) => a.clone(),
        };
        let master = HostPort::parse(&address)
            .map_err(|why| ClusterError::BadRequest(format!("master {address:?} is not host:port: {why}")))?;
        let metrics = self.raft.metrics().borrow().clone();
        if metrics.state != ServerState::Leader {
            let leader = metrics.current_leader.and_then(|id| self.leader_address(id));
            let Some(leader) = leader else {
                return Err(ClusterError::NoQuorum("no leader is elected".into()));
            };
            return self.forward_membership(&leader, &change).await;
        }
        let id = node_id_of(&master);
        let membership = metrics.membership_config.membership().clone();
        let is_voter = membership.voter_ids().any(|v| v == id);
        match change {
            MembershipChange::Add(_) if is_voter => Ok(self.members_view(false)),
            MembershipChange::Add(_) => {
                // Added as a learner, a master that is not running would hold this request for
                // the whole catch-up timeout and stay in the membership as a learner the leader
                // keeps calling. Asking it first fails within seconds and says what to do. A
                // master started a moment ago may not listen yet: it gets the request timeout
                // (at least 10 s) to come up.
                self.probe_new_master(&master).await?;
                let node = BasicNode { addr: master.to_string() };
                tracing::info!(master = %master, "adding a master: learner first");
                tokio::time::timeout(CATCH_UP_TIMEOUT, self.raft.add_learner(id, node, true))
                    .await
                    .map_err(|_| {
                        ClusterError::NoQuorum(format!(
                            "{master} did not catch up within {CATCH_UP_TIMEOUT:?}; is it running?"
                        ))
                    })?
                    .map_err(error_text)?;
                tracing::info!(master = %master, "learner caught up; promoting it to voter");
                self.raft
                    .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
                    .await
                    .map_err(error_text)?;
                Ok(self.members_view(true))
            }
            MembershipChange::Remove(_) => {
                let is_member = is_voter || membership.get_node(&id).is_some();
                if !is_member {
                    return Ok(self.members_view(false));
                }
                if is_voter && membership.voter_ids().count() == 1 {
                    return Err(ClusterError::BadRequest(format!(
                        "{master} is the last master; it cannot be removed"
                    )));
                }
                tracing::info!(master = %master, "removing a master");
                let change = if is_voter {
                    ChangeMembers::RemoveVoters(BTreeSet::from([id]))
                } else {
                    ChangeMembers::RemoveNodes(BTreeSet::from([id]))
                };
                match self.raft.change_membership(change, false).await {
                    Ok(_) => Ok(self.members_view(true)),
                    Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                        Err(ClusterError::NoQuorum("leadership moved during the change; retry".into()))
                    }
                    Err(e) => Err(error_text(e)),
                }
            }
        }
    }

    async fn forward_membership(
        &self,
        leader: &str,
        change: &MembershipChange,
    ) -> Result<MembersView, ClusterError> {
        Ok(self.peers.post(leader, MEMBERS, change, CATCH_UP_TIMEOUT + Duration::from_secs(10)).await?)
    }
}

fn not_a_master(master: &HostPort, why: &PeerError) -> ClusterError {
    ClusterError::BadRequest(format!(
        "{master} does not answer as a master ({why}); start it first, with the new masters list in its \
         gear.conf, then add it"
    ))
}

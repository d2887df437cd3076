//! Forms the cluster from the masters list with no manual step.
//!
//! openraft allows `initialize()` on every node as long as the membership is IDENTICAL (only one
//! leader can win); different memberships could elect two leaders. So a master initializes only
//! when a quorum of masters answers with the same masters list, and never when any peer already
//! belongs to an initialized cluster (a master with a wiped disk rejoins instead of re-forming).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::BasicNode;

use super::peer_protocol::{Hello, HELLO};
use super::{node_id_of, Cluster, ClusterError, PeerError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootstrapState {
    Starting,
    /// Waiting for a quorum of masters to answer.
    WaitingForQuorum {
        reachable: usize,
        needed: usize,
        total: usize,
    },
    /// A peer has another masters list: the one mistake Raft cannot survive, so refuse.
    ListMismatch {
        peer: String,
        ours: Vec<String>,
        theirs: Vec<String>,
    },
    Initialized,
    /// Peers already form a cluster: this master waits to be brought up to date by its leader.
    Joining,
}

impl std::fmt::Display for BootstrapState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BootstrapState::Starting => f.write_str("starting"),
            BootstrapState::WaitingForQuorum { reachable, needed, total } => {
                write!(f, "waiting for quorum: {reachable} of {total} masters reachable, {needed} needed")
            }
            BootstrapState::ListMismatch { peer, ours, theirs } => write!(
                f,
                "master {peer} has a different gearpump.cluster.masters list [{}] than this one [{}]; \
                 make the list identical on every master",
                theirs.join(", "),
                ours.join(", ")
            ),
            BootstrapState::Initialized => f.write_str("cluster formed"),
            BootstrapState::Joining => f.write_str("joining the existing cluster"),
        }
    }
}

const POLL: Duration = Duration::from_millis(200);

pub(super) async fn run(cluster: Arc<Cluster>) {
    let mut last_logged = None;
    loop {
        let next = step(&cluster).await;
        if last_logged.as_ref() != Some(&next) {
            match &next {
                BootstrapState::ListMismatch { .. } => tracing::error!("{next}"),
                _ => tracing::info!("bootstrap: {next}"),
            }
            last_logged = Some(next.clone());
        }
        let done = matches!(next, BootstrapState::Initialized | BootstrapState::Joining);
        if let Ok(mut state) = cluster.bootstrap.lock() {
            *state = next;
        }
        if done {
            return;
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn step(cluster: &Cluster) -> BootstrapState {
    if cluster.hello().initialized {
        return BootstrapState::Initialized;
    }
    let total = cluster.masters.len();
    let needed = total / 2 + 1;
    let peers: Vec<String> =
        cluster.masters.iter().filter(|m| **m != cluster.me).map(ToString::to_string).collect();
    let answers = futures::future::join_all(peers.iter().map(|peer| ask_hello(cluster, peer))).await;
    let mut reachable = 1;
    for (peer, answer) in peers.iter().zip(answers) {
        let Some(hello) = answer else { continue };
        // A running cluster's membership lives in its Raft log; its masters' gear.conf lists
        // may legitimately differ from ours (we are being added). Wait to be added.
        if hello.initialized {
            return BootstrapState::Joining;
        }
        if hello.fingerprint != cluster.fingerprint {
            return BootstrapState::ListMismatch {
                peer: peer.clone(),
                ours: cluster.masters.iter().map(ToString::to_string).collect(),
                theirs: hello.masters,
            };
        }
        reachable += 1;
    }
    if reachable < needed {
        return BootstrapState::WaitingForQuorum { reachable, needed, total };
    }
    let members: BTreeMap<u64, BasicNode> =
        cluster.masters.iter().map(|m| (node_id_of(m), BasicNode { addr: m.to_string() })).collect();
    match cluster.raft.initialize(members).await {
        Ok(()) => BootstrapState::Initialized,
        // NotAllowed: another path initialized it already (a peer's leader reached us first).
        Err(e) => {
            tracing::debug!(error = %e, "initialize was not needed");
            BootstrapState::Initialized
        }
    }
}

async fn ask_hello(cluster: &Cluster, peer: &str) -> Option<Hello> {
    match cluster.peers.get(peer, HELLO, Duration::from_millis(500)).await {
        Ok(hello) => Some(hello),
        Err(PeerError::Refused(ClusterError::PeerRefused { status: 401, .. })) => {
            tracing::warn!(
                peer,
                "peer refused our cluster secret; check gearpump.master.secret-file on both"
            );
            None
        }
        Err(_) => None,
    }
}

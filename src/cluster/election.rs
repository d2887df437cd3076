//! Elections with a pre-vote, and what a master knows about its leader.
//!
//! openraft 0.9 has no Pre-Vote (it arrives with the 0.10 line, not stable yet). Without it a
//! follower cut off from the others keeps starting elections, each with a higher term; when it
//! comes back, the leader sees that term in an AppendEntries answer and steps down — a healthy
//! cluster loses its leader because one follower had a bad minute (etcd turned Pre-Vote on by
//! default for this, its issue #9333). So openraft's own election timer is off
//! (`runtime_config().elect(false)`) and this task decides when to campaign:
//!
//! 1. A voter that has heard nothing from a leader (no AppendEntries, no vote it granted) for a
//!    random 0.8–1.0 × the fail-over bound asks every other voter `/peer/pre-vote`.
//! 2. A voter says yes only if it, too, has heard nothing from a leader for half the bound (the
//!    leader lease openraft enforces on real votes) and the candidate's log is not behind its own.
//! 3. With a majority of yeses (counting itself) the master starts a real election
//!    (`trigger().elect()`); otherwise its term stays where it is and it asks again later.
//!
//! 4. A master that was itself not running — not scheduled by an overloaded machine, or
//!    stopped — cannot tell a silent leader from heartbeats still waiting in its sockets. Its
//!    election loop notices the gap between its ticks, warns, and for a moment afterwards
//!    neither campaigns nor grants a pre-vote, so the queued heartbeats are read first
//!    (Lifeguard's "local health awareness", as in Consul's failure detector). One such pardon
//!    per two bounds at most: after one, a silence of a whole election timeout can still be
//!    seen before the next is allowed, so on a machine that never runs it on time elections
//!    still happen, about one bound late.
//!
//! 5. A leader's Raft core sends nothing while it waits for a commit of its own log: openraft
//!    0.9 awaits every fsync inside the core. A commit on a busy disk can outlast the election
//!    timeout, and the followers then depose a leader that is alive and will have the same disk
//!    trouble after it (the leader changes of the disk-load nemesis replays, RELIABILITY.md's
//!    anomaly 2). So while the core has been waiting for a commit for an eighth of the bound or
//!    more, the leader's beacon tells every voter each tick that it is alive, with its vote
//!    (`/peer/leader-alive`); a voter whose own vote is that leader's counts it as contact. A
//!    commit still running after the request timeout is a hung disk, not a slow one: the beacon
//!    stops, and the followers elect a leader that can write. (hashicorp/raft, under Consul and
//!    Nomad, sends its heartbeats from a task of their own for the same reason, its replication
//!    being liable to wait on the disk, but with no limit; etcd sends none while it syncs, and
//!    is known to change leaders on slow disks.)
//!
//! The timings are the ones openraft's own timer had (lease B/2, then a random 0.3–0.5 B), so
//! fail-over stays within the bound. The same bookkeeping tells the API whether this master has
//! a leader worth forwarding to (`Cluster::leader_is_fresh`), so a master cut off from the others
//! answers 503 at once instead of holding clients for the request timeout.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use openraft::{ServerState, Vote};
use serde::{Deserialize, Serialize};

use super::peer_protocol::{LEADER_ALIVE, PRE_VOTE};
use super::throttle::Throttle;
use super::types::NodeId;
use super::Cluster;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PreVoteRequest {
    pub candidate: String,
    pub term: u64,
    pub last_log_index: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PreVoteAnswer {
    pub granted: bool,
    pub reason: String,
}

/// When this master last heard from a leader, and from which masters recently.
pub(super) struct LeaderContact {
    inner: Mutex<ContactState>,
}

struct ContactState {
    /// Last AppendEntries arrived from a current leader, its beacon counted, vote granted, or
    /// election started by us.
    last: Instant,
    last_leader: Option<String>,
    /// Masters this one exchanged a message with, and when.
    heard_from: BTreeMap<String, Instant>,
    /// As leader: when a majority last acknowledged it.
    quorum_ack: Option<Instant>,
    /// The end of the last stall of this master's own election loop that was pardoned (see
    /// the module doc, point 4): silence before it is not held against the leader.
    awake_since: Option<Instant>,
    /// When the election loop last went to sleep until its next tick; None while it is awake
    /// (deciding, or waiting for pre-vote answers, which is not a stall).
    asleep_since: Option<Instant>,
}

impl LeaderContact {
    pub(super) fn new() -> LeaderContact {
        // A master that just started counts its start as contact: it waits one bound for a
        // leader's heartbeat before it campaigns (a restarted master would otherwise disrupt).
        LeaderContact {
            inner: Mutex::new(ContactState {
                last: Instant::now(),
                last_leader: None,
                heard_from: BTreeMap::new(),
                quorum_ack: None,
                awake_since: None,
                asleep_since: None,
            }),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut ContactState) -> T) -> T {
        match self.inner.lock() {
            Ok(mut state) => f(&mut state),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// A current leader's AppendEntries arrived or its beacon was counted (or a vote was
    /// granted, or our own election began).
    pub(super) fn touch(&self, leader: Option<String>) {
        self.with(|state| {
            state.last = Instant::now();
            if let Some(leader) = leader {
                state.heard_from.insert(leader.clone(), Instant::now());
                state.last_leader = Some(leader);
            }
        });
    }

    pub(super) fn heard_from(&self, master: &str) {
        self.with(|state| {
            state.heard_from.insert(master.to_string(), Instant::now());
        });
    }

    pub(super) fn age(&self) -> Duration {
        self.with(|state| state.last.elapsed())
    }

    /// How long the leader has been silent *while this master was running*: the contact age,
    /// but no more than the time since the last pardoned stall of this master.
    pub(super) fn silence(&self) -> Duration {
        self.with(|state| {
            let age = state.last.elapsed();
            state.awake_since.map_or(age, |awake| age.min(awake.elapsed()))
        })
    }

    /// This master's election loop was not run for `gap`: pardon the silence so far, unless the
    /// last pardon is younger than `at_most_every` (a machine that never runs it on time must
    /// not stop elections). True when pardoned.
    pub(super) fn stalled(&self, at_most_every: Duration) -> bool {
        self.with(|state| {
            if state.awake_since.is_some_and(|awake| awake.elapsed() < at_most_every) {
                return false;
            }
            state.awake_since = Some(Instant::now());
            true
        })
    }

    /// The election loop goes to sleep for one tick.
    pub(super) fn sleeping(&self) {
        self.with(|state| state.asleep_since = Some(Instant::now()));
    }

    /// The election loop woke up; returns how long it slept.
    pub(super) fn woke(&self) -> Duration {
        self.with(|state| state.asleep_since.take().map_or(Duration::ZERO, |since| since.elapsed()))
    }

    /// How long the election loop has been asleep so far (zero while it is awake): more than a
    /// tick and the stall threshold means this master is not being run on time right now.
    pub(super) fn asleep_for(&self) -> Duration {
        self.with(|state| state.asleep_since.map_or(Duration::ZERO, |since| since.elapsed()))
    }

    pub(super) fn last_leader(&self) -> Option<String> {
        self.with(|state| state.last_leader.clone())
    }

    /// A majority acknowledged this leader's beacon sent at `at` (never moves the ack back).
    pub(super) fn quorum_acked(&self, at: Instant) {
        self.with(|state| state.quorum_ack = Some(state.quorum_ack.map_or(at, |known| known.max(at))));
    }

    /// How long ago a majority acknowledged this master as leader; `None` when it does not lead.
    pub(super) fn quorum_ack_age(&self) -> Option<Duration> {
        self.with(|state| state.quorum_ack.map(|at| at.elapsed()))
    }

    /// Masters heard from within `within`.
    pub(super) fn reachable(&self, within: Duration) -> Vec<String> {
        self.with(|state| {
            state.heard_from.iter().filter(|(_, at)| at.elapsed() <= within).map(|(m, _)| m.clone()).collect()
        })
    }
}

/// How often the election loop looks: 20 times per bound.
fn tick_of(bound: Duration) -> Duration {
    (bound / 20).max(Duration::from_millis(5))
}

/// A gap between two ticks of the election loop longer than a tick plus this is a stall of
/// this master: a quarter of the bound (100 ms by default), five missed heartbeats.
fn stall_threshold(bound: Duration) -> Duration {
    bound / 4
}

/// A random election timeout in [0.8, 1.0] × the bound, as openraft's lease + timeout gave.
fn election_timeout(bound: Duration) -> Duration {
    let millis = u64::try_from(bound.as_millis()).unwrap_or(u64::MAX);
    let low = millis * 8 / 10;
    Duration::from_millis(low + rand::random::<u64>() % (millis - low).max(1))
}

/// Turns openraft's `millis_since_quorum_ack` into an instant. The metric is computed when
/// openraft publishes metrics, and a leader whose followers are all gone may publish nothing for
/// a long time: read as it stands, a stale "12 ms ago" would keep a cut-off leader believing it
/// leads. An instant ages by itself.
pub(super) async fn follow_quorum_acks(cluster: Arc<Cluster>) {
    let mut metrics = cluster.raft.metrics();
    loop {
        let (leads, acked) = {
            let current = metrics.borrow_and_update();
            (current.state == ServerState::Leader, current.millis_since_quorum_ack)
        };
        let at = match (leads, acked) {
            (true, Some(ms)) => Instant::now().checked_sub(Duration::from_millis(ms)),
            _ => None,
        };
        cluster.contact.with(|state| {
            state.quorum_ack = match (leads, at, state.quorum_ack) {
                // Never move backwards: a late metrics message must not make the ack older.
                (true, Some(at), Some(known)) => Some(known.max(at)),
                (true, Some(at), None) => Some(at),
                // Just elected, no replication ack reported yet: winning the vote was the
                // majority's acknowledgement.
                (true, None, None) => Some(Instant::now()),
                (true, None, known) => known,
                (false, _, _) => None,
            };
        });
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

pub(super) async fn run(cluster: Arc<Cluster>) {
    let bound = cluster.failover_timeout;
    let tick = tick_of(bound);
    let mut timeout = election_timeout(bound);
    let mut stall_warnings = Throttle::default();
    loop {
        // Only the oversleep counts as a stall: waiting for pre-vote answers is not one.
        cluster.contact.sleeping();
        tokio::time::sleep(tick).await;
        let gap = cluster.contact.woke();
        if !cluster.core_is_running() {
            return;
        }
        if gap >= tick + stall_threshold(bound) {
            let pardoned = cluster.contact.stalled(bound * 2);
            // etcd warns the same way ("leader failed to send out heartbeat on time"); at most
            // once a second, with a count of the stalls in between.
            if let Some(unwarned) = stall_warnings.due() {
                tracing::warn!(
                    stalled_ms = gap.saturating_sub(tick).as_millis() as u64,
                    pardoned,
                    stalls_since_last_warning = unwarned,
                    "this master was not run on time (an overloaded machine, or a stopped process); \
                     pardoned: the leader's silence until now is not held against it"
                );
            }
        }
        let metrics = cluster.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership().clone();
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        if metrics.state == ServerState::Leader || !voters.contains(&cluster.node_id) {
            continue;
        }
        let silent = cluster.contact.silence();
        if silent < timeout {
            continue;
        }
        timeout = election_timeout(bound);
        let request = PreVoteRequest {
            candidate: cluster.me.to_string(),
            term: metrics.current_term,
            last_log_index: metrics.last_log_index.unwrap_or(0),
        };
        let others = other_voters(&membership, cluster.node_id);
        let mut asks: futures::stream::FuturesUnordered<_> = others
            .iter()
            .map(|address| {
                let (cluster, request) = (&cluster, &request);
                async move {
                    let answer: Result<PreVoteAnswer, _> =
                        cluster.peers.post(address, PRE_VOTE, request, bound / 2).await;
                    if answer.is_ok() {
                        cluster.contact.heard_from(address);
                    }
                    answer.is_ok_and(|answer| answer.granted)
                }
            })
            .collect();
        // Decide as soon as a majority said yes: a peer that is cut off would otherwise hold
        // the election back for the whole ask timeout.
        let mut granted = 1;
        while granted * 2 <= voters.len() {
            match asks.next().await {
                Some(true) => granted += 1,
                Some(false) => {}
                None => break,
            }
        }
        if granted * 2 > voters.len() {
            // Why this master campaigns, for telling a dead leader from a slow one afterwards
            // (RELIABILITY.md, anomaly 2): how long it heard nothing, and from whom it last did.
            tracing::info!(
                term = metrics.current_term,
                granted,
                voters = voters.len(),
                silent_ms = silent.as_millis() as u64,
                last_leader = cluster.contact.last_leader().as_deref().unwrap_or("none"),
                "pre-vote won; starting an election"
            );
            cluster.contact.touch(None);
            if let Err(e) = cluster.raft.trigger().elect().await {
                tracing::warn!(error = %e, "could not start an election");
            }
        } else {
            tracing::debug!(
                granted,
                voters = voters.len(),
                "pre-vote lost; keeping term {}",
                metrics.current_term
            );
        }
    }
}

/// The leader's beacon (module doc, point 5): while its core waits for a log commit that has
/// run for an eighth of the bound and less than the request timeout, it tells every other voter
/// each tick that it is alive.
pub(super) async fn beacon(cluster: Arc<Cluster>) {
    let bound = cluster.failover_timeout;
    let tick = tick_of(bound);
    loop {
        tokio::time::sleep(tick).await;
        if !cluster.core_is_running() {
            return;
        }
        let Some(waited) = cluster.commit_clock.running_for() else { continue };
        if waited < bound / 8 || waited >= cluster.request_timeout {
            continue;
        }
        // The metrics the core published before it began waiting: it cannot have changed its
        // role or vote since, as it has done nothing else.
        let metrics = cluster.raft.metrics().borrow().clone();
        if metrics.state != ServerState::Leader {
            continue;
        }
        let beacon = LeaderAlive { vote: metrics.vote };
        let others = other_voters(metrics.membership_config.membership(), cluster.node_id);
        // Each tick's beacons are sent together and given a tick to arrive: a follower that
        // is slow to answer one must not delay the next to the others.
        let sent = Instant::now();
        let sends = others.iter().map(|address| {
            let (cluster, beacon) = (&cluster, &beacon);
            async move {
                let answer: Result<LeaderAliveAnswer, _> =
                    cluster.peers.post(address, LEADER_ALIVE, beacon, tick).await;
                answer.is_ok_and(|answer| answer.counted)
            }
        });
        let counted = futures::future::join_all(sends).await.into_iter().filter(|counted| *counted).count();
        // A majority that counted it still follows this leader in this term, as a heartbeat's
        // acknowledgement says: the leader is not cut off (check-quorum), and does not give up
        // the writes waiting for its disk before the request timeout.
        if (counted + 1) * 2 > others.len() + 1 {
            cluster.contact.quorum_acked(sent);
        }
    }
}

/// The addresses of the voters other than `me`: whom pre-votes and beacons go to.
fn other_voters(membership: &openraft::Membership<NodeId, openraft::BasicNode>, me: NodeId) -> Vec<String> {
    membership
        .voter_ids()
        .filter(|id| *id != me)
        .filter_map(|id| membership.get_node(&id).map(|node| node.addr.clone()))
        .collect()
}

/// A leader's beacon: it is alive, its core waiting for its disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaderAlive {
    pub vote: Vote<NodeId>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaderAliveAnswer {
    /// The beacon was from this master's own leader and counted as contact.
    pub counted: bool,
}

impl Cluster {
    /// A leader's beacon counts as contact only when it carries this master's own vote, the
    /// vote of the leader it follows: an old leader's beacon, or a candidate's, does not.
    pub fn leader_alive(&self, beacon: &LeaderAlive) -> LeaderAliveAnswer {
        let ours = self.raft.metrics().borrow().vote;
        let counted = beacon.vote.is_committed() && beacon.vote == ours;
        if counted {
            let leader = beacon.vote.leader_id().voted_for();
            self.contact.touch(leader.and_then(|id| self.leader_address(id)));
        }
        LeaderAliveAnswer { counted }
    }

    /// A peer's pre-vote: yes only when this master has also lost its leader and the
    /// candidate's log is not behind.
    pub fn pre_vote(&self, request: &PreVoteRequest) -> PreVoteAnswer {
        self.contact.heard_from(&request.candidate);
        let metrics = self.raft.metrics().borrow().clone();
        let refuse = |reason: String| PreVoteAnswer { granted: false, reason };
        if metrics.state == ServerState::Leader && self.leader_has_quorum(&metrics) {
            return refuse("this master leads with a quorum".into());
        }
        // A voter that has not been run on time itself (its election loop oversleeps) may have
        // its leader's heartbeats still unread: it pardons the silence, as the loop would.
        let bound = self.failover_timeout;
        if self.contact.asleep_for() >= tick_of(bound) + stall_threshold(bound) {
            self.contact.stalled(bound * 2);
        }
        let age = self.contact.silence();
        if metrics.state != ServerState::Leader && age < bound / 2 {
            return refuse(format!(
                "this master heard from its leader {} ms ago (or was itself not run on time until then)",
                age.as_millis()
            ));
        }
        if request.term < metrics.current_term {
            return refuse(format!("candidate term {} is behind {}", request.term, metrics.current_term));
        }
        let mine = metrics.last_log_index.unwrap_or(0);
        if request.last_log_index < mine {
            return refuse(format!("candidate log ends at {} before {mine}", request.last_log_index));
        }
        tracing::info!(
            candidate = %request.candidate,
            silent_ms = age.as_millis() as u64,
            last_leader = self.contact.last_leader().as_deref().unwrap_or("none"),
            "granted a pre-vote"
        );
        PreVoteAnswer { granted: true, reason: String::new() }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::LeaderContact;

    #[test]
    fn a_pardoned_stall_caps_the_silence_and_pardons_are_spaced() {
        let contact = LeaderContact::new();
        std::thread::sleep(Duration::from_millis(60));
        assert!(contact.silence() >= Duration::from_millis(60), "no stall yet: silence is the contact age");
        assert!(contact.stalled(Duration::from_secs(3600)), "the first stall is pardoned");
        // The silence now counts from the pardon, 60 ms or more after the last contact.
        assert!(contact.silence() + Duration::from_millis(60) <= contact.age());
        assert!(!contact.stalled(Duration::from_secs(3600)), "no second pardon within the spacing");
        assert!(contact.stalled(Duration::ZERO), "pardoned again once the spacing has passed");
    }

    #[test]
    fn only_the_loops_sleep_is_measured_not_its_waits_for_answers() {
        let contact = LeaderContact::new();
        std::thread::sleep(Duration::from_millis(30)); // awake: deciding, or asking peers
        assert_eq!(contact.asleep_for(), Duration::ZERO);
        contact.sleeping();
        std::thread::sleep(Duration::from_millis(30));
        assert!(contact.asleep_for() >= Duration::from_millis(30));
        assert!(contact.woke() >= Duration::from_millis(30));
        assert_eq!(contact.asleep_for(), Duration::ZERO, "awake again");
    }
}

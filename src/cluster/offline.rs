// openraft's storage traits fix the error type (StorageError, ~224 bytes).
#![allow(clippy::result_large_err)]

//! A stopped master's state directory, rewritten in place: seeding it from a backup
//! (`gearpump-master restore`) and making it a one-master cluster after the loss of a majority
//! (`gearpump-master recover --force-new-cluster`).
//!
//! Both end the same way: the Raft log is replaced by one snapshot at some log position, with a
//! membership chosen here, as if every entry before it had been applied and purged. openraft
//! starts from such a directory exactly as from one that took a snapshot itself.
//!
//! - Restore: every master of the new cluster is seeded from the same file with the same
//!   position (`LogId { term 0, node 0, index: the backup's applied index }`) and the same
//!   membership (gear.conf's masters list), so their logs agree by construction — the way
//!   openraft's own `initialize` writes one identical membership entry at term 0 on every node.
//!   Their first election (term 1) then appends after it.
//! - Recover: every entry this master has is applied on top of its snapshot — those not known to
//!   be committed too, as etcd's `--force-new-cluster` does: they may never have been
//!   acknowledged to a client, but dropping them could drop one that was — and the result
//!   becomes the snapshot at the last entry's own position, with this master as the only voter.
//!   The vote keeps its term (so the next election moves past every entry) but is no longer a
//!   committed leader, so the master starts as a follower and elects itself through the usual
//!   path.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::{BasicNode, CommittedLeaderId, Membership, Vote};

use super::log_store::LogStore;
use super::state_dir::{self, StateDirError, DATABASE};
use super::state_machine::{AppliedState, StateMachineStore};
use super::types::{LogId, StoredMembership};
use super::{node_id_of, NodeId};
use crate::backup::Backup;
use crate::config::HostPort;

#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    #[error(
        "the state directory {} is in use: a gearpump-master is running on it\n  fix: stop it first (systemctl stop gearpump-master)",
        .dir.display()
    )]
    Running { dir: PathBuf },
    #[error(
        "the state directory {} is not empty ({entries}); a restore only seeds an empty one\n  fix: move it aside (mv {0} {0}.old) or give --state-dir an empty directory",
        .dir.display()
    )]
    NotEmpty { dir: PathBuf, entries: String },
    #[error("the state directory {} holds no cluster state (no {DATABASE} or an uninitialized one); there is nothing to recover\n  fix: run recover on the master that still has the cluster's data", .dir.display())]
    NothingToRecover { dir: PathBuf },
    #[error("{0}")]
    StateDir(#[from] StateDirError),
    #[error("the masters list is empty; set gearpump.cluster.masters")]
    NoMasters,
    #[error("{}: {cause}", .path.display())]
    Storage { path: PathBuf, cause: String },
}

impl OfflineError {
    /// sysexits: 75 (EX_TEMPFAIL) while the master runs (stop it and run again), 73
    /// (EX_CANTCREAT) for a restore into a used directory, 78 for configuration, 74 (EX_IOERR)
    /// when the storage cannot be read or written.
    pub fn exit_code(&self) -> u8 {
        match self {
            OfflineError::Running { .. } => 75,
            OfflineError::NotEmpty { .. } => 73,
            OfflineError::NothingToRecover { .. } | OfflineError::NoMasters => 78,
            OfflineError::StateDir(StateDirError::Io { .. }) => 74,
            OfflineError::StateDir(_) => 78,
            OfflineError::Storage { .. } => 74,
        }
    }
}

/// A stopped master's storage, opened and locked (redb holds an exclusive lock on the file, so
/// a master cannot start on it meanwhile, and this fails while one runs).
pub struct OfflineStore {
    path: PathBuf,
    logs: LogStore,
    machine: StateMachineStore,
}

/// What `recover` found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// The old membership (voters), for the probe and the report.
    pub old_voters: Vec<String>,
    pub last_index: u64,
    pub last_term: u64,
    /// Entries past the last index this master knew to be committed: kept, but no majority may
    /// ever have held them.
    pub beyond_committed: u64,
}

impl OfflineStore {
    /// Opens `dir`'s database after checking its format (a newer one is refused untouched).
    pub fn open(dir: &Path) -> Result<OfflineStore, OfflineError> {
        if let Some(found) = state_dir::read_format(dir)? {
            if found > state_dir::STATE_FORMAT {
                return Err(StateDirError::Newer { dir: dir.to_path_buf(), found }.into());
            }
        }
        let path = dir.join(DATABASE);
        if !path.exists() {
            return Err(OfflineError::NothingToRecover { dir: dir.to_path_buf() });
        }
        OfflineStore::create(dir)
    }

    fn create(dir: &Path) -> Result<OfflineStore, OfflineError> {
        let path = dir.join(DATABASE);
        let storage = |cause: String| OfflineError::Storage { path: path.clone(), cause };
        let db = match redb::Database::create(&path) {
            Ok(db) => Arc::new(db),
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(OfflineError::Running { dir: dir.to_path_buf() })
            }
            Err(e) => return Err(storage(e.to_string())),
        };
        let logs = LogStore::open(db.clone(), std::time::Duration::from_secs(1))
            .map_err(|e| storage(e.to_string()))?;
        let machine = StateMachineStore::open(db).map_err(|e| storage(e.to_string()))?;
        Ok(OfflineStore { path, logs, machine })
    }

    fn storage(&self, cause: impl std::fmt::Display) -> OfflineError {
        OfflineError::Storage { path: self.path.clone(), cause: cause.to_string() }
    }

    /// The state this master would have after replaying every entry it holds, committed or
    /// not, and how many of them were past its commit index.
    fn replay_everything(&self) -> Result<(AppliedState, u64), OfflineError> {
        let mut applied = self.machine.snapshot_state().map_err(|e| self.storage(e))?;
        let entries = self.logs.read_all().map_err(|e| self.storage(e))?;
        let (_, committed) = self.logs.vote_and_committed().map_err(|e| self.storage(e))?;
        let committed = committed.map_or(0, |log_id| log_id.index);
        let mut beyond_committed = 0;
        for entry in entries {
            if Some(entry.log_id) <= applied.last_applied {
                continue;
            }
            if entry.log_id.index > committed {
                beyond_committed += 1;
            }
            applied.apply(entry);
        }
        Ok((applied, beyond_committed))
    }

    /// The voters of the membership this master would start with (its last membership entry,
    /// committed or not), by address.
    pub fn voters(&self) -> Result<Vec<String>, OfflineError> {
        let (applied, _) = self.replay_everything()?;
        Ok(voter_addresses(&applied.last_membership))
    }

    /// `--force-new-cluster`: this master alone, with everything it has.
    pub fn force_new_cluster(&self, me: &HostPort) -> Result<Recovered, OfflineError> {
        let (mut applied, beyond_committed) = self.replay_everything()?;
        let Some(last) = applied.last_applied else {
            return Err(OfflineError::NothingToRecover { dir: self.dir() });
        };
        let old_voters = voter_addresses(&applied.last_membership);
        if old_voters.is_empty() {
            return Err(OfflineError::NothingToRecover { dir: self.dir() });
        }
        applied.last_membership = one_membership(last, std::slice::from_ref(me));
        let (vote, _) = self.logs.vote_and_committed().map_err(|e| self.storage(e))?;
        let term = vote.map_or(0, |v| v.leader_id.term).max(last.leader_id.term);
        self.machine.install_offline(&applied, "recover").map_err(|e| self.storage(e))?;
        self.logs
            .reset_to_snapshot(last, Some(Vote::new(term, node_id_of(me))))
            .map_err(|e| self.storage(e))?;
        Ok(Recovered { old_voters, last_index: last.index, last_term: last.leader_id.term, beyond_committed })
    }

    fn dir(&self) -> PathBuf {
        self.path.parent().map(Path::to_path_buf).unwrap_or_default()
    }
}

/// Seeds the empty `dir` with `backup` as the state of a new cluster of `masters` (the same on
/// every master of it). Refuses a directory that holds anything.
pub fn restore(backup: &Backup, dir: &Path, masters: &[HostPort]) -> Result<(), OfflineError> {
    if masters.is_empty() {
        return Err(OfflineError::NoMasters);
    }
    let io = |e: std::io::Error| StateDirError::Io { dir: dir.to_path_buf(), cause: e.to_string() };
    if dir.exists() {
        let entries: Vec<String> = std::fs::read_dir(dir)
            .map_err(io)?
            .filter_map(|entry| entry.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect();
        if !entries.is_empty() {
            let mut shown: Vec<String> = entries.iter().take(5).cloned().collect();
            if entries.len() > 5 {
                shown.push(format!("and {} more", entries.len() - 5));
            }
            return Err(OfflineError::NotEmpty { dir: dir.to_path_buf(), entries: shown.join(", ") });
        }
    }
    state_dir::prepare(dir)?;
    let store = OfflineStore::create(dir)?;
    let at = LogId::new(CommittedLeaderId::new(0, NodeId::default()), backup.origin.applied_index);
    let applied = AppliedState {
        last_applied: Some(at),
        last_membership: one_membership(at, masters),
        state: backup.master_state.clone(),
    };
    store.machine.install_offline(&applied, "restore").map_err(|e| store.storage(e))?;
    store.logs.reset_to_snapshot(at, None).map_err(|e| store.storage(e))?;
    Ok(())
}

/// A membership of `masters` as voters, recorded at `at`.
fn one_membership(at: LogId, masters: &[HostPort]) -> StoredMembership {
    let nodes: BTreeMap<NodeId, BasicNode> =
        masters.iter().map(|m| (node_id_of(m), BasicNode { addr: m.to_string() })).collect();
    let voters: BTreeSet<NodeId> = nodes.keys().copied().collect();
    StoredMembership::new(Some(at), Membership::new(vec![voters], nodes))
}

fn voter_addresses(membership: &StoredMembership) -> Vec<String> {
    super::membership::voters_and_learners(membership.membership()).0
}

#[cfg(test)]
mod tests {
    use openraft::{Entry, EntryPayload};

    use super::*;
    use crate::state::{Command, Proposal};

    fn hp(text: &str) -> HostPort {
        HostPort::parse(text).expect("host:port")
    }

    fn log_id(term: u64, leader: NodeId, index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(term, leader), index)
    }

    /// A master that crashed with entries past its commit index: `recover` keeps them all and
    /// leaves it the only voter, as a follower that will elect itself past every entry's term.
    #[test]
    fn force_new_cluster_keeps_uncommitted_entries_and_leaves_one_voter() {
        let dir = tempfile::tempdir().expect("dir");
        let masters = [hp("a:1"), hp("b:1"), hp("c:1")];
        let leader = node_id_of(&masters[0]);
        let initial = one_membership(log_id(0, 0, 0), &masters).membership().clone();
        let mut entries = vec![
            Entry { log_id: log_id(0, 0, 0), payload: EntryPayload::Membership(initial) },
            Entry { log_id: log_id(1, leader, 1), payload: EntryPayload::Blank },
        ];
        for index in 2..=4 {
            let proposal =
                Proposal { id: format!("r{index}"), at_ms: index, command: Command::AllocateWorkerId };
            entries.push(Entry { log_id: log_id(1, leader, index), payload: EntryPayload::Normal(proposal) });
        }
        state_dir::prepare(dir.path()).expect("marked");
        let store = OfflineStore::create(dir.path()).expect("created");
        store.logs.write_for_test(&entries, log_id(1, leader, 3), Vote::new_committed(1, leader));
        drop(store);

        let store = OfflineStore::open(dir.path()).expect("opened");
        assert!(
            matches!(OfflineStore::open(dir.path()), Err(OfflineError::Running { .. })),
            "locked while open"
        );
        let mut old: Vec<String> = masters.iter().map(ToString::to_string).collect();
        let mut voters = store.voters().expect("voters");
        old.sort();
        voters.sort();
        assert_eq!(voters, old);
        let recovered = store.force_new_cluster(&masters[1]).expect("recovered");
        assert_eq!((recovered.last_index, recovered.last_term, recovered.beyond_committed), (4, 1, 1));
        drop(store);

        let store = OfflineStore::open(dir.path()).expect("reopened");
        let applied = store.machine.snapshot_state().expect("snapshot");
        assert_eq!(applied.state.next_worker_id, 3, "all three allocations, the uncommitted one too");
        assert_eq!(applied.last_applied, Some(log_id(1, leader, 4)));
        assert_eq!(store.voters().expect("voters"), vec!["b:1".to_string()]);
        assert!(store.logs.read_all().expect("log").is_empty());
        let (vote, committed) = store.logs.vote_and_committed().expect("meta");
        assert_eq!(vote, Some(Vote::new(1, node_id_of(&masters[1]))));
        assert_eq!(committed, Some(log_id(1, leader, 4)));
    }

    #[test]
    fn restore_seeds_the_same_position_and_membership_everywhere_and_refuses_a_used_directory() {
        let dir = tempfile::tempdir().expect("dir");
        let masters = [hp("a:1"), hp("b:1")];
        let backup = Backup {
            origin: crate::backup::Origin {
                format: crate::backup::FORMAT,
                written_by: "test".into(),
                created_at_ms: 0,
                taken_from: "x:1".into(),
                leader: None,
                applied_index: 17,
                applied_term: 4,
                voters: vec!["x:1".into()],
                learners: vec![],
            },
            master_state: crate::state::MasterState { max_app_id: 9, ..Default::default() },
        };
        let snapshots: Vec<AppliedState> = ["one", "two"]
            .iter()
            .map(|name| {
                let state_dir = dir.path().join(name);
                restore(&backup, &state_dir, &masters).expect("restored");
                let store = OfflineStore::open(&state_dir).expect("open");
                store.machine.snapshot_state().expect("snapshot")
            })
            .collect();
        assert_eq!(snapshots[0].last_applied, Some(log_id(0, 0, 17)));
        assert_eq!(snapshots[0].state.max_app_id, 9);
        assert_eq!(
            serde_json::to_string(&snapshots[0]).expect("json"),
            serde_json::to_string(&snapshots[1]).expect("json"),
            "every master of the new cluster starts from the same snapshot"
        );
        let error = restore(&backup, &dir.path().join("one"), &masters).expect_err("used directory");
        assert!(matches!(error, OfflineError::NotEmpty { .. }), "{error}");
        assert_eq!(error.exit_code(), 73);
    }
}

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
        let logs = LogStore::open(db.clone()).map_err(|e| storage(e.to_string()))?;
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
    let at = LogId::new(CommittedLeaderId::new(0, NodeId::default()), backup.applied_index);
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

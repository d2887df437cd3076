// openraft's storage traits fix the error type (StorageError, ~224 bytes); boxing it in our
// helpers would only add conversions at every trait boundary.
#![allow(clippy::result_large_err)]

//! The state machine: `MasterState` in memory, rebuilt at start from the last snapshot (durable
//! in redb) plus the committed log that openraft replays after it.

use std::io::Cursor;
use std::sync::{Arc, RwLock};

use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{AnyError, BasicNode, Entry, EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError};
use redb::{Database, TableDefinition};
use serde::{Deserialize, Serialize};

use super::types::{LogId, NodeId, StorageError, StoredMembership, TypeConfig};
use crate::state::{CommandResult, MasterState};

const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshot");
// Meta and data apart: serde_json would write the data bytes as a list of numbers, four times
// their size.
const KEY_META: &str = "current_meta";
const KEY_DATA: &str = "current_data";

/// What the API reads: the state and how far it is applied.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct AppliedState {
    pub last_applied: Option<LogId>,
    pub last_membership: StoredMembership,
    pub state: MasterState,
}

impl AppliedState {
    /// Applies one log entry: the only place entries change the state, online and offline.
    pub(super) fn apply(&mut self, entry: Entry<TypeConfig>) -> CommandResult {
        self.last_applied = Some(entry.log_id);
        match entry.payload {
            EntryPayload::Blank => CommandResult::Done,
            EntryPayload::Normal(proposal) => self.state.apply_proposal(proposal),
            EntryPayload::Membership(membership) => {
                self.last_membership = StoredMembership::new(Some(entry.log_id), membership);
                CommandResult::Done
            }
        }
    }
}

pub(super) type SharedState = Arc<RwLock<AppliedState>>;

struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, BasicNode>,
    data: Vec<u8>,
}

#[derive(Clone)]
pub(super) struct StateMachineStore {
    db: Arc<Database>,
    shared: SharedState,
}

fn sm_read_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::read_state_machine(AnyError::new(&e)).into()
}

fn snapshot_write_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_snapshot(None, AnyError::new(&e)).into()
}

fn snapshot_read_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::read_snapshot(None, AnyError::new(&e)).into()
}

fn poisoned() -> StorageError {
    StorageIOError::read_state_machine(AnyError::error("state lock poisoned by a panic")).into()
}

impl StateMachineStore {
    /// Opens the store and loads the last durable snapshot, if any.
    pub(super) fn open(db: Arc<Database>) -> Result<StateMachineStore, StorageError> {
        let txn = db.begin_write().map_err(snapshot_write_err)?;
        txn.open_table(SNAPSHOT).map_err(snapshot_write_err)?;
        txn.commit().map_err(snapshot_write_err)?;
        let store = StateMachineStore { db, shared: SharedState::default() };
        if let Some(stored) = store.read_stored()? {
            let applied: AppliedState = serde_json::from_slice(&stored.data).map_err(snapshot_read_err)?;
            *store.shared.write().map_err(|_| poisoned())? = applied;
        }
        Ok(store)
    }

    pub(super) fn shared(&self) -> SharedState {
        self.shared.clone()
    }

    fn read_stored(&self) -> Result<Option<StoredSnapshot>, StorageError> {
        let txn = self.db.begin_read().map_err(snapshot_read_err)?;
        let table = txn.open_table(SNAPSHOT).map_err(snapshot_read_err)?;
        let Some(meta) = table.get(KEY_META).map_err(snapshot_read_err)? else { return Ok(None) };
        let meta = serde_json::from_slice(meta.value()).map_err(snapshot_read_err)?;
        let Some(data) = table.get(KEY_DATA).map_err(snapshot_read_err)? else { return Ok(None) };
        Ok(Some(StoredSnapshot { meta, data: data.value().to_vec() }))
    }

    fn write_stored(&self, stored: &StoredSnapshot) -> Result<(), StorageError> {
        let meta = serde_json::to_vec(&stored.meta).map_err(snapshot_write_err)?;
        let txn = self.db.begin_write().map_err(snapshot_write_err)?;
        {
            let mut table = txn.open_table(SNAPSHOT).map_err(snapshot_write_err)?;
            table.insert(KEY_META, meta.as_slice()).map_err(snapshot_write_err)?;
            table.insert(KEY_DATA, stored.data.as_slice()).map_err(snapshot_write_err)?;
        }
        txn.commit().map_err(snapshot_write_err)
    }
}

/// Offline access for `gearpump-master restore` and `recover` (the master is stopped).
impl StateMachineStore {
    /// The state as the last snapshot left it (the default state when there is none).
    pub(super) fn snapshot_state(&self) -> Result<AppliedState, StorageError> {
        Ok(self.shared.read().map_err(|_| poisoned())?.clone())
    }

    /// Makes `applied` the current snapshot, at `applied.last_applied`.
    pub(super) fn install_offline(&self, applied: &AppliedState, origin: &str) -> Result<(), StorageError> {
        let data = serde_json::to_vec(applied).map_err(snapshot_write_err)?;
        let snapshot_id = match applied.last_applied {
            Some(log_id) => format!("{origin}-{}-{}-{}", log_id.leader_id.term, log_id.index, now_millis()),
            None => format!("{origin}-empty-{}", now_millis()),
        };
        let meta = SnapshotMeta {
            last_log_id: applied.last_applied,
            last_membership: applied.last_membership.clone(),
            snapshot_id,
        };
        self.write_stored(&StoredSnapshot { meta, data })
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let (data, last_applied, membership) = {
            let applied = self.shared.read().map_err(|_| poisoned())?;
            let data = serde_json::to_vec(&*applied).map_err(sm_read_err)?;
            (data, applied.last_applied, applied.last_membership.clone())
        };
        let snapshot_id = match last_applied {
            Some(log_id) => format!("{}-{}-{}", log_id.leader_id.term, log_id.index, now_millis()),
            None => format!("empty-{}", now_millis()),
        };
        let meta = SnapshotMeta { last_log_id: last_applied, last_membership: membership, snapshot_id };
        let stored = StoredSnapshot { meta: meta.clone(), data };
        self.write_stored(&stored)?;
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(stored.data)) })
    }
}

fn now_millis() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis())
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = StateMachineStore;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let applied = self.shared.read().map_err(|_| poisoned())?;
        Ok((applied.last_applied, applied.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResult>, StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut applied = self.shared.write().map_err(|_| poisoned())?;
        Ok(entries.into_iter().map(|entry| applied.apply(entry)).collect())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let mut installed: AppliedState = serde_json::from_slice(&data).map_err(snapshot_read_err)?;
        installed.last_applied = meta.last_log_id;
        installed.last_membership = meta.last_membership.clone();
        self.write_stored(&StoredSnapshot { meta: meta.clone(), data })?;
        *self.shared.write().map_err(|_| poisoned())? = installed;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        Ok(self
            .read_stored()?
            .map(|stored| Snapshot { meta: stored.meta, snapshot: Box::new(Cursor::new(stored.data)) }))
    }
}

// openraft's storage traits fix the error type (StorageError, ~224 bytes); boxing it in our
// helpers would only add conversions at every trait boundary.
#![allow(clippy::result_large_err)]

//! The Raft log and vote, durable in redb: every append is committed (fsync) before openraft is
//! told it is flushed, so an acknowledged write survives a crash of every master.

use std::fmt::Debug;
use std::ops::RangeBounds;
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, Entry, OptionalSend, RaftLogReader, StorageIOError, Vote};
use redb::{Database, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::types::{LogId, NodeId, StorageError, TypeConfig};

const LOGS: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");

const KEY_VOTE: &str = "vote";
const KEY_COMMITTED: &str = "committed";
const KEY_LAST_PURGED: &str = "last_purged";

#[derive(Clone)]
pub(super) struct LogStore {
    db: Arc<Database>,
}

fn read_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::read_logs(AnyError::new(&e)).into()
}

fn write_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_logs(AnyError::new(&e)).into()
}

impl LogStore {
    pub(super) fn open(db: Arc<Database>) -> Result<LogStore, redb::Error> {
        let txn = db.begin_write()?;
        txn.open_table(LOGS)?;
        txn.open_table(META)?;
        txn.commit()?;
        Ok(LogStore { db })
    }

    fn get_meta<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StorageError> {
        let txn = self.db.begin_read().map_err(read_err)?;
        let table = txn.open_table(META).map_err(read_err)?;
        let Some(bytes) = table.get(key).map_err(read_err)? else { return Ok(None) };
        serde_json::from_slice(bytes.value()).map(Some).map_err(read_err)
    }

    fn put_meta<T: Serialize>(&self, key: &str, value: &T) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec(value).map_err(write_err)?;
        let txn = self.db.begin_write().map_err(write_err)?;
        {
            let mut table = txn.open_table(META).map_err(write_err)?;
            table.insert(key, bytes.as_slice()).map_err(write_err)?;
        }
        txn.commit().map_err(write_err)
    }
}

/// Offline access for `gearpump-master recover` (the master is stopped; redb's file lock proves it).
impl LogStore {
    /// Every entry still in the log, oldest first.
    pub(super) fn read_all(&self) -> Result<Vec<Entry<TypeConfig>>, StorageError> {
        let txn = self.db.begin_read().map_err(read_err)?;
        let table = txn.open_table(LOGS).map_err(read_err)?;
        let mut entries = Vec::new();
        for item in table.iter().map_err(read_err)? {
            let (_, bytes) = item.map_err(read_err)?;
            entries.push(serde_json::from_slice(bytes.value()).map_err(read_err)?);
        }
        Ok(entries)
    }

    /// The vote and the last log id known committed, as saved.
    pub(super) fn vote_and_committed(&self) -> Result<(Option<Vote<NodeId>>, Option<LogId>), StorageError> {
        Ok((self.get_meta(KEY_VOTE)?, self.get_meta::<Option<LogId>>(KEY_COMMITTED)?.flatten()))
    }

    /// Leaves a log that ends at a snapshot taken at `at`: no entries, `at` purged and committed,
    /// and `vote` as the vote. One transaction, so a crash leaves the old log or the new one.
    pub(super) fn reset_to_snapshot(
        &self,
        at: LogId,
        vote: Option<Vote<NodeId>>,
    ) -> Result<(), StorageError> {
        let at_bytes = serde_json::to_vec(&at).map_err(write_err)?;
        let committed = serde_json::to_vec(&Some(at)).map_err(write_err)?;
        let txn = self.db.begin_write().map_err(write_err)?;
        {
            let mut table = txn.open_table(LOGS).map_err(write_err)?;
            remove_range(&mut table, 0..)?;
            let mut meta = txn.open_table(META).map_err(write_err)?;
            meta.insert(KEY_LAST_PURGED, at_bytes.as_slice()).map_err(write_err)?;
            meta.insert(KEY_COMMITTED, committed.as_slice()).map_err(write_err)?;
            match vote {
                Some(vote) => {
                    let vote = serde_json::to_vec(&vote).map_err(write_err)?;
                    meta.insert(KEY_VOTE, vote.as_slice()).map_err(write_err)?;
                }
                None => {
                    meta.remove(KEY_VOTE).map_err(write_err)?;
                }
            }
        }
        txn.commit().map_err(write_err)
    }
}

#[cfg(test)]
impl LogStore {
    /// Writes entries, the committed id and the vote directly, as a crashed master leaves them.
    pub(super) fn write_for_test(&self, entries: &[Entry<TypeConfig>], committed: LogId, vote: Vote<NodeId>) {
        let txn = self.db.begin_write().expect("write");
        {
            let mut table = txn.open_table(LOGS).expect("logs");
            for entry in entries {
                let bytes = serde_json::to_vec(entry).expect("encode");
                table.insert(entry.log_id.index, bytes.as_slice()).expect("insert");
            }
        }
        txn.commit().expect("commit");
        self.put_meta(KEY_COMMITTED, &Some(committed)).expect("committed");
        self.put_meta(KEY_VOTE, &vote).expect("vote");
    }
}

/// Removes the entries in `range` key by key. redb's `retain_in` over thousands of entries held
/// ~50 MiB of memory per purge and grew the file ninefold; plain removes do neither.
fn remove_range(
    table: &mut redb::Table<u64, &[u8]>,
    range: impl RangeBounds<u64> + Clone,
) -> Result<(), StorageError> {
    let keys: Vec<u64> = table
        .range(range)
        .map_err(write_err)?
        .map(|item| item.map(|(key, _)| key.value()))
        .collect::<Result<_, _>>()
        .map_err(write_err)?;
    for key in keys {
        table.remove(key).map_err(write_err)?;
    }
    Ok(())
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError> {
        let txn = self.db.begin_read().map_err(read_err)?;
        let table = txn.open_table(LOGS).map_err(read_err)?;
        let mut entries = Vec::new();
        for item in table.range(range).map_err(read_err)? {
            let (_, bytes) = item.map_err(read_err)?;
            entries.push(serde_json::from_slice(bytes.value()).map_err(read_err)?);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId> = self.get_meta(KEY_LAST_PURGED)?;
        let txn = self.db.begin_read().map_err(read_err)?;
        let table = txn.open_table(LOGS).map_err(read_err)?;
        let last = match table.last().map_err(read_err)? {
            Some((_, bytes)) => {
                let entry: Entry<TypeConfig> = serde_json::from_slice(bytes.value()).map_err(read_err)?;
                Some(entry.log_id)
            }
            None => last_purged_log_id,
        };
        Ok(LogState { last_purged_log_id, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        self.put_meta(KEY_VOTE, vote).map_err(|e| StorageIOError::write_vote(AnyError::new(&e)).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.get_meta(KEY_VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.put_meta(KEY_COMMITTED, &committed)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.get_meta::<Option<LogId>>(KEY_COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let txn = self.db.begin_write().map_err(write_err)?;
        {
            let mut table = txn.open_table(LOGS).map_err(write_err)?;
            for entry in entries {
                let bytes = serde_json::to_vec(&entry).map_err(write_err)?;
                table.insert(entry.log_id.index, bytes.as_slice()).map_err(write_err)?;
            }
        }
        // redb's default durability fsyncs on commit: only then is the entry acknowledged.
        match txn.commit() {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(write_err(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let txn = self.db.begin_write().map_err(write_err)?;
        {
            let mut table = txn.open_table(LOGS).map_err(write_err)?;
            remove_range(&mut table, log_id.index..)?;
        }
        txn.commit().map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec(&log_id).map_err(write_err)?;
        let txn = self.db.begin_write().map_err(write_err)?;
        {
            let mut meta = txn.open_table(META).map_err(write_err)?;
            meta.insert(KEY_LAST_PURGED, bytes.as_slice()).map_err(write_err)?;
            let mut table = txn.open_table(LOGS).map_err(write_err)?;
            remove_range(&mut table, ..=log_id.index)?;
        }
        txn.commit().map_err(write_err)
    }
}

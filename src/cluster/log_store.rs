// openraft's storage traits fix the error type (StorageError, ~224 bytes); boxing it in our
// helpers would only add conversions at every trait boundary.
#![allow(clippy::result_large_err)]

//! The Raft log and vote, durable in redb: every append is committed (fsync) before openraft is
//! told it is flushed, so an acknowledged write survives a crash of every master.
//!
//! `append` puts the entries in `pending` (readable at once, as openraft requires) and queues
//! them for the writer thread, which commits everything queued in one transaction (one fsync
//! for a whole batch) and only then reports them flushed. This honours the `append` contract
//! (return once in memory, report the flush by callback) and batches the fsyncs of concurrent
//! writes. It does *not* take the disk off openraft 0.9's core: `RaftCore::append_to_log`
//! awaits the flush report right after `append` returns, so the core still waits for each
//! fsync, sending no heartbeat meanwhile: the writer's `CommitClock` tells the leader's beacon
//! how long (`election`, point 5; RELIABILITY.md, anomaly 2). Every write goes
//! through the one queue, in order, as openraft's contract asks; `truncate`, `purge` and
//! `save_vote` wait for theirs to be durable, `save_committed` (a hint openraft may lose) does
//! not.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, Entry, OptionalSend, RaftLogReader, StorageIOError, Vote};
use redb::{Database, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;

use super::throttle::Throttle;
use super::types::{LogId, NodeId, StorageError, TypeConfig};

const LOGS: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");

const KEY_VOTE: &str = "vote";
const KEY_COMMITTED: &str = "committed";
const KEY_LAST_PURGED: &str = "last_purged";

#[derive(Clone)]
pub(super) struct LogStore {
    db: Arc<Database>,
    /// Entries queued for the writer and not yet committed, by index. Readers take these
    /// before reading redb, and the writer removes them only after its commit, so an entry
    /// is always in one or the other.
    pending: Arc<Mutex<BTreeMap<u64, Entry<TypeConfig>>>>,
    writer: Arc<Writer>,
    clock: Arc<CommitClock>,
}

/// When the writer's current commit began. openraft 0.9's core waits for every commit, sending
/// nothing meanwhile: a leader's beacon (`election`, point 5) asks how long it has waited.
#[derive(Default)]
pub(super) struct CommitClock(Mutex<Option<Instant>>);

impl CommitClock {
    fn set(&self, began: Option<Instant>) {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = began;
    }

    /// How long the commit under way has been running; None when the writer is idle.
    pub(super) fn running_for(&self) -> Option<Duration> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).map(|at| at.elapsed())
    }
}

/// The writer thread's queue. Dropped with the last `LogStore`, it closes the queue and waits
/// for the thread to write what is queued and let go of the database, so the state directory
/// can be opened again at once (an in-process restart, `recover` after its checks).
struct Writer {
    queue: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        drop(self.queue.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One write for the writer thread, done in queue order.
enum Job {
    Append(Vec<Entry<TypeConfig>>, LogFlushed<TypeConfig>),
    /// A change of the log or meta tables, and where to report its outcome (if anyone waits).
    Write(Change, Option<tokio::sync::oneshot::Sender<Result<(), StorageError>>>),
}

enum Change {
    /// Removes the entries from this index on.
    Truncate(u64),
    /// Removes the entries up to this log id and records it as purged.
    Purge(LogId),
    Meta(&'static str, Vec<u8>),
}

fn read_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::read_logs(AnyError::new(&e)).into()
}

fn write_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_logs(AnyError::new(&e)).into()
}

impl LogStore {
    /// `slow`: a commit taking this long or more is warned about (the disk is too slow for
    /// the fail-over bound: while it lasts, openraft's core sends and takes in nothing).
    pub(super) fn open(db: Arc<Database>, slow: Duration) -> Result<LogStore, redb::Error> {
        let txn = db.begin_write()?;
        txn.open_table(LOGS)?;
        txn.open_table(META)?;
        txn.commit()?;
        let pending = Arc::default();
        let (queue, jobs) = mpsc::channel();
        let clock = Arc::new(CommitClock::default());
        let (thread_db, thread_pending, thread_clock) = (db.clone(), Arc::clone(&pending), clock.clone());
        let thread = std::thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || write_loop(&thread_db, &thread_pending, &jobs, &thread_clock, slow))
            .map_err(redb::Error::Io)?;
        let writer = Arc::new(Writer { queue: Some(queue), thread: Some(thread) });
        Ok(LogStore { db, pending, writer, clock })
    }

    /// The writer's clock: how long its commit under way has been running.
    pub(super) fn commit_clock(&self) -> Arc<CommitClock> {
        self.clock.clone()
    }

    fn queue(&self, job: Job) -> Result<(), StorageError> {
        let sent = self.writer.queue.as_ref().map(|queue| queue.send(job));
        match sent {
            Some(Ok(())) => Ok(()),
            _ => Err(writer_gone()),
        }
    }

    /// Queues `change`; with `wait`, returns once it is durable (or failed).
    async fn write(&self, change: Change, wait: bool) -> Result<(), StorageError> {
        if !wait {
            return self.queue(Job::Write(change, None));
        }
        let (done, outcome) = tokio::sync::oneshot::channel();
        self.queue(Job::Write(change, Some(done)))?;
        outcome.await.map_err(|_| writer_gone())?
    }

    fn get_meta<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StorageError> {
        let txn = self.db.begin_read().map_err(read_err)?;
        let table = txn.open_table(META).map_err(read_err)?;
        let Some(bytes) = table.get(key).map_err(read_err)? else { return Ok(None) };
        serde_json::from_slice(bytes.value()).map(Some).map_err(read_err)
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
    fn put_meta<T: serde::Serialize>(&self, key: &str, value: &T) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec(value).map_err(write_err)?;
        let txn = self.db.begin_write().map_err(write_err)?;
        {
            let mut table = txn.open_table(META).map_err(write_err)?;
            table.insert(key, bytes.as_slice()).map_err(write_err)?;
        }
        txn.commit().map_err(write_err)
    }
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
        // Pending first: an entry the writer commits meanwhile is then found in redb.
        let pending: Vec<Entry<TypeConfig>> =
            lock(&self.pending)?.range(range.clone()).map(|(_, e)| e.clone()).collect();
        let txn = self.db.begin_read().map_err(read_err)?;
        let table = txn.open_table(LOGS).map_err(read_err)?;
        let mut entries = BTreeMap::new();
        for item in table.range(range).map_err(read_err)? {
            let (index, bytes) = item.map_err(read_err)?;
            entries.insert(index.value(), serde_json::from_slice(bytes.value()).map_err(read_err)?);
        }
        entries.extend(pending.into_iter().map(|entry| (entry.log_id.index, entry)));
        Ok(entries.into_values().collect())
    }
}

fn writer_gone() -> StorageError {
    write_err(std::io::Error::other("the log writer thread has stopped"))
}

fn lock<T>(mutex: &Mutex<T>) -> Result<std::sync::MutexGuard<'_, T>, StorageError> {
    mutex
        .lock()
        .map_err(|_| read_err(std::io::Error::other("the pending log entries' lock was poisoned by a panic")))
}

/// The writer thread: takes every job queued, commits them in order in one transaction (so
/// one fsync covers a batch), then reports each. After a failed commit every later job fails
/// too: openraft stops its core on the first storage error, and writing on past a hole would
/// break the log's order.
fn write_loop(
    db: &Database,
    pending: &Mutex<BTreeMap<u64, Entry<TypeConfig>>>,
    jobs: &mpsc::Receiver<Job>,
    clock: &CommitClock,
    slow: Duration,
) {
    let mut failed: Option<String> = None;
    let mut slow_commits = SlowCommits::default();
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        batch.extend(jobs.try_iter());
        let started = Instant::now();
        clock.set(Some(started));
        let outcome = match &failed {
            Some(cause) => Err(cause.clone()),
            None => commit(db, &batch).map_err(|e| e.to_string()),
        };
        clock.set(None);
        slow_commits.took(started.elapsed(), slow);
        if outcome.is_ok() {
            // Committed: readers find these in redb from now on.
            if let Ok(mut pending) = pending.lock() {
                for job in &batch {
                    if let Job::Append(entries, _) = job {
                        for entry in entries {
                            if pending.get(&entry.log_id.index).is_some_and(|p| p.log_id == entry.log_id) {
                                pending.remove(&entry.log_id.index);
                            }
                        }
                    }
                }
            }
        } else if failed.is_none() {
            failed = outcome.clone().err();
        }
        for job in batch {
            let result = outcome.clone();
            match job {
                Job::Append(_, flushed) => flushed.log_io_completed(result.map_err(std::io::Error::other)),
                Job::Write(_, Some(done)) => {
                    let _ = done.send(result.map_err(|e| write_err(std::io::Error::other(e))));
                }
                Job::Write(_, None) => {}
            }
        }
    }
}

/// etcd's "slow fdatasync" warning: a commit at or over the threshold is reported, at most
/// once a second, with how many more there were and the longest since the last report.
#[derive(Default)]
struct SlowCommits {
    warnings: Throttle,
    longest: Duration,
}

impl SlowCommits {
    fn took(&mut self, took: Duration, slow: Duration) {
        if took < slow {
            return;
        }
        self.longest = self.longest.max(took);
        let Some(unwarned) = self.warnings.due() else { return };
        tracing::warn!(
            took_ms = took.as_millis() as u64,
            longest_ms = self.longest.as_millis() as u64,
            slow_since_last_warning = unwarned,
            "slow disk: a commit of the Raft log took {} ms; while it lasts this master sends and \
             takes in no heartbeats (give the state directory a disk of its own, or raise \
             gearpump.master.failover-timeout)",
            took.as_millis()
        );
        self.longest = Duration::ZERO;
    }
}

/// Every job of `batch`, in order, in one durable transaction.
fn commit(db: &Database, batch: &[Job]) -> Result<(), StorageError> {
    let txn = db.begin_write().map_err(write_err)?;
    {
        let mut logs = txn.open_table(LOGS).map_err(write_err)?;
        let mut meta = txn.open_table(META).map_err(write_err)?;
        for job in batch {
            match job {
                Job::Append(entries, _) => {
                    for entry in entries {
                        let bytes = serde_json::to_vec(entry).map_err(write_err)?;
                        logs.insert(entry.log_id.index, bytes.as_slice()).map_err(write_err)?;
                    }
                }
                Job::Write(Change::Truncate(from), _) => remove_range(&mut logs, *from..)?,
                Job::Write(Change::Purge(upto), _) => {
                    let bytes = serde_json::to_vec(upto).map_err(write_err)?;
                    meta.insert(KEY_LAST_PURGED, bytes.as_slice()).map_err(write_err)?;
                    remove_range(&mut logs, ..=upto.index)?;
                }
                Job::Write(Change::Meta(key, bytes), _) => {
                    meta.insert(*key, bytes.as_slice()).map_err(write_err)?;
                }
            }
        }
    }
    // redb's default durability fsyncs on commit: only then is anything reported done.
    txn.commit().map_err(write_err)
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId> = self.get_meta(KEY_LAST_PURGED)?;
        let last_pending = lock(&self.pending)?.last_key_value().map(|(_, entry)| entry.log_id);
        if last_pending.is_some() {
            return Ok(LogState { last_purged_log_id, last_log_id: last_pending });
        }
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
        let bytes = serde_json::to_vec(vote).map_err(write_err)?;
        self.write(Change::Meta(KEY_VOTE, bytes), true)
            .await
            .map_err(|e| StorageIOError::write_vote(AnyError::new(&e)).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.get_meta(KEY_VOTE)
    }

    /// Not waited for: openraft may lose the committed id (it is re-learnt from the leader);
    /// queued behind the appends it covers, it is never durable before them.
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec(&committed).map_err(write_err)?;
        self.write(Change::Meta(KEY_COMMITTED, bytes), false).await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.get_meta::<Option<LogId>>(KEY_COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        lock(&self.pending)?.extend(entries.iter().map(|entry| (entry.log_id.index, entry.clone())));
        self.queue(Job::Append(entries, callback))
    }

    /// Waits until durable: the entries it removes must not be read again, from redb or from
    /// `pending`.
    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        lock(&self.pending)?.retain(|index, _| *index < log_id.index);
        self.write(Change::Truncate(log_id.index), true).await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        lock(&self.pending)?.retain(|index, _| *index > log_id.index);
        self.write(Change::Purge(log_id), true).await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use openraft::storage::RaftLogStorageExt;
    use openraft::testing::{StoreBuilder, Suite};
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;
    use crate::cluster::state_machine::StateMachineStore;

    struct Builder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for Builder {
        async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError> {
            let dir = tempfile::tempdir().map_err(write_err)?;
            let db = Arc::new(Database::create(dir.path().join("raft.redb")).map_err(write_err)?);
            let logs = LogStore::open(db.clone(), Duration::from_secs(1)).map_err(write_err)?;
            Ok((dir, logs, StateMachineStore::open(db)?))
        }
    }

    /// openraft's own conformance suite for a log store and state machine.
    #[test]
    fn openraft_storage_suite_passes() {
        Suite::test_all(Builder).expect("the suite");
    }

    fn blank(index: u64) -> Entry<TypeConfig> {
        Entry { log_id: LogId::new(CommittedLeaderId::new(1, 1), index), payload: EntryPayload::Blank }
    }

    /// While the disk is busy (here: a write transaction held open, so the writer thread
    /// cannot commit), `append` still returns at once and its entries are readable; they are
    /// reported flushed only once written.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn append_does_not_wait_for_the_disk_and_its_entries_are_readable_at_once() {
        let dir = tempfile::tempdir().expect("dir");
        let db = Arc::new(Database::create(dir.path().join("raft.redb")).expect("db"));
        let mut store = LogStore::open(db.clone(), Duration::from_secs(1)).expect("store");
        store.blocking_append([blank(1)]).await.expect("first append");

        let busy = db.begin_write().expect("a write transaction that holds the disk");
        let mut appending = store.clone();
        let flushed = tokio::spawn(async move { appending.blocking_append([blank(2), blank(3)]).await });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!flushed.is_finished(), "reported flushed while the writer could not write");
        let mut reader = store.get_log_reader().await;
        let indexes: Vec<u64> =
            reader.try_get_log_entries(1..4).await.expect("read").iter().map(|e| e.log_id.index).collect();
        assert_eq!(indexes, [1, 2, 3], "appended entries are readable before they are durable");
        assert_eq!(store.get_log_state().await.expect("state").last_log_id.map(|l| l.index), Some(3));

        drop(busy);
        tokio::time::timeout(Duration::from_secs(10), flushed)
            .await
            .expect("flushed once the disk is free")
            .expect("join")
            .expect("append");
        assert!(lock(&store.pending).expect("pending").is_empty(), "written entries leave `pending`");

        // Truncation waits for the disk and removes the entries from both places.
        store.truncate(blank(2).log_id).await.expect("truncate");
        let indexes: Vec<u64> =
            reader.try_get_log_entries(1..4).await.expect("read").iter().map(|e| e.log_id.index).collect();
        assert_eq!(indexes, [1]);
        // The last store let go, the database opens again at once.
        drop((store, reader, db));
        Database::create(dir.path().join("raft.redb")).expect("reopened at once");
    }
}

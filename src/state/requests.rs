//! Exactly-once application of retried writes: Raft's client sessions, in the form etcd, Consul
//! and Stripe-style APIs use — a request id on every write, and a replicated record of what each
//! id's command returned.
//!
//! Why it is needed: a follower forwards a write to the leader; the leader commits it and dies
//! before answering; the follower (or the client) cannot tell "never arrived" from "applied" and
//! retries through the new leader. Without an id the retry is a second command — a second
//! application with the same jar. With one, `apply` finds the id in the window and answers the
//! first result again without changing anything.
//!
//! The window is part of `MasterState`, so it is in every snapshot and every master decides the
//! same way. It is bounded by count and by age; the age is measured with the proposal times
//! carried in the log, never with a clock read here, so eviction is deterministic too.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Command, CommandResult};

/// Ids the window keeps at most. At 4,000 writes/s (above what a 2-core cluster commits) that
/// still covers 12 s of history, longer than any internal retry (bounded by the request timeout)
/// and a client's own retry after a timeout. About 160 bytes each in memory.
pub const MAX_REMEMBERED: usize = 50_000;
/// How long an id is remembered at most. A client that retries later than this gets a new
/// application; every client shipped here retries within seconds.
pub const MAX_AGE_MS: u64 = 10 * 60 * 1000;
/// Longest accepted request id (an `Idempotency-Key` header).
pub(super) const MAX_ID_BYTES: usize = 128;

/// A request id: chosen by the client (`Idempotency-Key`) or by the first master that received
/// the request, and reused by every retry of that request.
pub type RequestId = String;

/// What goes through Raft: the command, who asked (the id) and when the proposing master stamped
/// it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Proposal {
    pub id: RequestId,
    pub at_ms: u64,
    pub command: Command,
}

/// Log entries written before request ids existed were a bare `Command`; they still replay.
impl<'de> Deserialize<'de> for Proposal {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Proposal, D::Error> {
        #[derive(Deserialize)]
        struct Current {
            id: RequestId,
            at_ms: u64,
            command: Command,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Stored {
            Current(Current),
            Legacy(Command),
        }
        Ok(match Stored::deserialize(deserializer)? {
            Stored::Current(Current { id, at_ms, command }) => Proposal { id, at_ms, command },
            Stored::Legacy(command) => Proposal { id: String::new(), at_ms: 0, command },
        })
    }
}

/// Checks a client-chosen id: 1 to 128 visible ASCII characters.
pub fn validate_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_ID_BYTES {
        return Err(format!("a request id must be 1 to {MAX_ID_BYTES} characters, got {}", id.len()));
    }
    if !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("a request id may hold only visible ASCII characters (no spaces)".into());
    }
    Ok(())
}

/// A fresh random id for a request that came without one.
pub fn new_id() -> RequestId {
    hex::encode(rand::random::<[u8; 16]>())
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Remembered {
    /// `Command::fingerprint` of the first command with this id.
    fingerprint: u64,
    result: CommandResult,
    at_ms: u64,
}

/// The replicated record of recent request ids and their results.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestWindow {
    by_id: BTreeMap<RequestId, Remembered>,
    /// Ids in the order they were applied; the front is evicted first.
    order: VecDeque<RequestId>,
    /// Repeated requests answered from the window (exposed in /metrics).
    #[serde(default)]
    pub repeats_answered: u64,
}

/// What the window says about a proposal before it is applied.
pub enum Seen {
    New,
    /// The same request again: answer this, change nothing.
    Repeat(CommandResult),
    /// The id was used for a different command.
    Conflict,
}

impl RequestWindow {
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn check(&mut self, id: &str, fingerprint: u64) -> Seen {
        match self.by_id.get(id) {
            None => Seen::New,
            Some(seen) if seen.fingerprint == fingerprint => {
                self.repeats_answered += 1;
                Seen::Repeat(seen.result.clone())
            }
            Some(_) => Seen::Conflict,
        }
    }

    /// Remembers a new id's result and forgets what is too old or beyond the count limit.
    pub fn remember(&mut self, id: RequestId, fingerprint: u64, result: CommandResult, at_ms: u64) {
        self.order.push_back(id.clone());
        self.by_id.insert(id, Remembered { fingerprint, result, at_ms });
        let oldest_kept = at_ms.saturating_sub(MAX_AGE_MS);
        while let Some(front) = self.order.front() {
            let expired = self.by_id.get(front).is_none_or(|seen| seen.at_ms < oldest_kept);
            if self.by_id.len() <= MAX_REMEMBERED && !expired {
                break;
            }
            if let Some(front) = self.order.pop_front() {
                self.by_id.remove(&front);
            }
        }
    }
}

impl Command {
    /// Identifies what a command asks for, leaving out what a retry may legitimately change: the
    /// time each master stamps, and the store key of a jar uploaded again for the retry (its
    /// name, size and SHA-256 still count). Stable across masters and versions of serde_json,
    /// since it hashes the same struct's JSON.
    pub fn fingerprint(&self) -> u64 {
        let mut normalized = self.clone();
        match &mut normalized {
            Command::SubmitApp { app, now_ms } => {
                app.jar.key.clear();
                *now_ms = 0;
            }
            Command::SetStatus { now_ms, .. }
            | Command::KillApp { now_ms, .. }
            | Command::RecordRestart { now_ms, .. }
            | Command::Assign { now_ms, .. }
            | Command::AttemptStarted { now_ms, .. }
            | Command::AttemptEnded { now_ms, .. }
            | Command::RestartApp { now_ms, .. } => *now_ms = 0,
            Command::PutAppData { .. } | Command::AllocateWorkerId | Command::ForgetJar { .. } => {}
        }
        let bytes = serde_json::to_vec(&normalized).unwrap_or_default();
        let digest = Sha256::digest(&bytes);
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_be_bytes(first)
    }
}

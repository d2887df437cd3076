//! The leader's side of workers: the worker table (in memory only, rebuilt from heartbeats by
//! every new leader), heartbeat handling, and the loop that turns `state::schedule` decisions
//! and worker losses into Raft commands.
//!
//! Registrations and heartbeats are not Raft writes: only what must survive a fail-over (worker
//! ids, assignments, starts and exits) is. A new leader knows no worker until its first
//! heartbeat, so it waits one `worker-loss-timeout` after its election before declaring anyone
//! lost; a worker that hears no leader with quorum for `fence-timeout` (shorter) kills its own
//! attempts, so a replacement never overlaps the original.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::cluster::{Cluster, ClusterError};
use crate::config::WorkerTiming;
use crate::state::schedule::{lost_attempts, schedule, LiveWorker};
use crate::state::{AppId, AttemptOutcome, Command, CommandResult, MasterState, WorkerId};
use crate::wire::{Role, WorkerList, WorkerState, WorkerSummary};
use crate::worker::protocol::{AssignedAttempt, Heartbeat, HeartbeatAnswer};

/// A worker silent for this many loss timeouts leaves the table (and `workerlist`).
const FORGET_AFTER_LOSSES: u32 = 12;

#[derive(Debug, Clone)]
struct Seen {
    host: String,
    slots: u32,
    log_address: String,
    at: Instant,
    /// Its last beat said it is stopping cleanly: listed nowhere and given nothing, but
    /// remembered so that an older beat finishing late cannot bring it back.
    stopped: bool,
    /// Stopped, and the exits its last beat reported are recorded: what it still holds is lost
    /// at once (set after those writes, so its own reports win over `WorkerLost`).
    gone: bool,
}

#[derive(Debug, Default)]
struct Table {
    /// The term this table belongs to; a new term starts empty.
    term: Option<u64>,
    leader_since: Option<Instant>,
    workers: BTreeMap<WorkerId, Seen>,
}

/// The worker table. Only the leader fills it; followers forward heartbeats.
pub struct Registry {
    table: Mutex<Table>,
    timing: WorkerTiming,
    /// Bumped whenever the set of live attempts changes (an assignment, a kill, an end), so
    /// heartbeats held as long polls wake and answer with the news.
    placements: tokio::sync::watch::Sender<u64>,
}

impl Registry {
    pub fn new(timing: WorkerTiming) -> Registry {
        Registry {
            table: Mutex::new(Table::default()),
            timing,
            placements: tokio::sync::watch::Sender::new(0),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Table) -> T) -> T {
        match self.table.lock() {
            Ok(mut table) => f(&mut table),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// Called with the current role and term; a new leadership starts with an empty table.
    fn observe_term(&self, leading_term: Option<u64>) {
        self.with(|table| {
            if table.term != leading_term {
                table.term = leading_term;
                table.leader_since = leading_term.map(|_| Instant::now());
                table.workers.clear();
            }
        });
    }

    /// The table as `workerlist` shows it.
    pub fn list(&self, state: &MasterState) -> WorkerList {
        let (fence, loss) = (self.timing.fence, self.timing.loss);
        let workers = self.with(|table| {
            table
                .workers
                .iter()
                .filter(|(_, seen)| !seen.stopped)
                .map(|(id, seen)| {
                    let attempts: Vec<_> = state
                        .live_attempts()
                        .filter(|(_, a)| a.worker_id == *id)
                        .map(|(app, a)| (app.id, a.attempt, app.slots))
                        .collect();
                    let used: u32 = attempts.iter().map(|(_, _, slots)| *slots).sum();
                    let ago = seen.at.elapsed();
                    WorkerSummary {
                        worker_id: *id,
                        host: seen.host.clone(),
                        slots: seen.slots,
                        free_slots: seen.slots.saturating_sub(used),
                        log_address: seen.log_address.clone(),
                        last_heartbeat_ms_ago: u64::try_from(ago.as_millis()).unwrap_or(u64::MAX),
                        state: if ago < fence {
                            WorkerState::Alive
                        } else if ago < loss {
                            WorkerState::Unreachable
                        } else {
                            WorkerState::Lost
                        },
                        attempts: attempts.into_iter().map(|(app, attempt, _)| (app, attempt)).collect(),
                    }
                })
                .collect()
        });
        WorkerList { workers }
    }
}

/// The host worker `id` is known under: its entry in the leader's table, else the log address
/// of one of its attempts in the replicated state (which a new leader already has).
pub fn host_of(cluster: &Cluster, registry: &Registry, id: WorkerId) -> Option<String> {
    if let Some(host) = registry.with(|table| table.workers.get(&id).map(|seen| seen.host.clone())) {
        return Some(host);
    }
    cluster.read(|state| {
        state.apps.values().flat_map(|app| app.attempts.iter()).filter(|a| a.worker_id == id).find_map(|a| {
            let address = a.log_address.as_deref()?;
            let (host, _) = address.rsplit_once(':')?;
            Some(host.trim_matches(['[', ']']).to_string())
        })
    })
}

/// A heartbeat that reached the leader: allocate an id if needed, record starts and exits
/// through Raft, and answer with what the replicated state assigns to the worker. Fails (so
/// the worker is not acknowledged) unless this master leads with a quorum.
pub async fn on_heartbeat(
    cluster: &Cluster,
    registry: &Registry,
    heartbeat: Heartbeat,
) -> Result<HeartbeatAnswer, ClusterError> {
    let received = Instant::now();
    if !cluster.leads_with_quorum() {
        return Err(ClusterError::NoQuorum("this master is not a leader with a quorum".into()));
    }
    registry.observe_term(Some(cluster.status().term));
    // An id this cluster never handed out (a worker kept its state dir across a new cluster)
    // could collide with another worker's: such a worker registers afresh.
    let known_id = heartbeat.worker_id.filter(|id| cluster.read(|state| *id < state.next_worker_id));
    let worker_id = match known_id {
        Some(id) => id,
        None => match cluster.write(Command::AllocateWorkerId).await? {
            CommandResult::WorkerId(id) => {
                tracing::info!(worker_id = id, host = %heartbeat.host, "worker registered");
                id
            }
            other => {
                return Err(ClusterError::Fatal(format!("unexpected answer to AllocateWorkerId: {other:?}")))
            }
        },
    };
    registry.with(|table| {
        // Recorded before any write below: a stopping worker's exits make its applications
        // pending, and the scheduler must not place them on it again. Heartbeats can overlap
        // (one held as a long poll, or slowed by its Raft writes): only the latest received
        // counts, so an older beat never brings back a worker whose later beat said it stopped.
        if table.workers.get(&worker_id).is_some_and(|seen| seen.at > received) {
            return;
        }
        if heartbeat.stopping {
            tracing::info!(worker_id, "worker stopped cleanly");
        }
        table.workers.insert(
            worker_id,
            Seen {
                host: heartbeat.host.clone(),
                slots: heartbeat.slots,
                log_address: heartbeat.log_address.clone(),
                at: received,
                stopped: heartbeat.stopping,
                gone: false,
            },
        );
    });
    // Registrations and exit reports are answered at once: the worker waits for its id, or for
    // the acknowledgement that stops it repeating the exits.
    let may_hold = known_id.is_some() && !heartbeat.stopping && heartbeat.exits.is_empty();
    let started = heartbeat.running.iter().chain(heartbeat.exits.iter().filter_map(|e| e.started.as_ref()));
    for running in started {
        let unrecorded = cluster.read(|state| {
            state
                .apps
                .get(&running.app_id)
                .and_then(|app| app.attempts.iter().find(|a| a.attempt == running.attempt))
                .is_some_and(|a| a.is_live() && a.worker_id == worker_id && a.started_ms.is_none())
        });
        if unrecorded {
            let command = Command::AttemptStarted {
                app_id: running.app_id,
                attempt: running.attempt,
                worker_id,
                pid: running.pid,
                log_path: running.log_path.clone(),
                log_address: heartbeat.log_address.clone(),
                now_ms: crate::api::now_ms(),
            };
            match cluster.write(command).await {
                Ok(_) | Err(ClusterError::Rejected(_)) => {}
                Err(other) => return Err(other),
            }
        }
    }
    let mut acked_exits = Vec::new();
    for exit in heartbeat.exits {
        // Only a worker's own attempts: a report on another worker's attempt is acknowledged
        // (so it is not repeated) and ignored.
        let owner = cluster.read(|state| {
            state
                .apps
                .get(&exit.app_id)
                .and_then(|app| app.attempts.iter().find(|a| a.attempt == exit.attempt))
                .map(|a| a.worker_id)
        });
        if owner.is_some_and(|owner| owner != worker_id) {
            tracing::warn!(
                worker_id,
                app_id = exit.app_id,
                attempt = exit.attempt,
                ?owner,
                "ignored a worker's report on an attempt of another worker"
            );
            acked_exits.push((exit.app_id, exit.attempt));
            continue;
        }
        let command = Command::AttemptEnded {
            app_id: exit.app_id,
            attempt: exit.attempt,
            outcome: exit.outcome,
            now_ms: crate::api::now_ms(),
        };
        match cluster.write(command).await {
            Ok(result) => {
                tracing::info!(app_id = exit.app_id, attempt = exit.attempt, ?result, "attempt ended");
                acked_exits.push((exit.app_id, exit.attempt));
            }
            Err(ClusterError::Rejected(_)) => acked_exits.push((exit.app_id, exit.attempt)),
            Err(other) => return Err(other),
        }
    }
    if heartbeat.stopping {
        registry.with(|table| {
            if let Some(seen) = table.workers.get_mut(&worker_id).filter(|seen| seen.at == received) {
                seen.gone = true;
            }
        });
    }
    // A long poll: while the leader's assignments for this worker match what it runs or prepares, hold the
    // answer until they change or the wait is over. Subscribed before the first look, so a change
    // between the look and the wait still wakes it.
    let wait = Duration::from_millis(heartbeat.wait_ms).min(max_hold(registry.timing));
    if !wait.is_zero() && may_hold {
        let deadline = tokio::time::Instant::now() + wait;
        let mut changes = registry.placements.subscribe();
        let known: BTreeSet<(AppId, u32)> = heartbeat
            .running
            .iter()
            .map(|r| (r.app_id, r.attempt))
            .chain(heartbeat.preparing.iter().map(|p| (p.app_id, p.attempt)))
            .collect();
        while cluster.read(|state| assigned_to(state, worker_id)) == known {
            if !matches!(tokio::time::timeout_at(deadline, changes.changed()).await, Ok(Ok(()))) {
                break;
            }
        }
    }
    // Confirms leadership with a quorum and makes the read below current.
    cluster.read_barrier().await?;
    let assigned = cluster.read(|state| {
        state
            .live_attempts()
            .filter(|(_, attempt)| attempt.worker_id == worker_id)
            .map(|(app, attempt)| AssignedAttempt {
                app_id: app.id,
                attempt: attempt.attempt,
                slots: app.slots,
                main_class: app.main_class.clone(),
                args: app.args.clone(),
                jar: app.jar.clone(),
            })
            .collect()
    });
    Ok(HeartbeatAnswer { worker_id, assigned, acked_exits, long_poll: true })
}

/// The longest a heartbeat answer is held: well inside the worker's own request timeout (half
/// its fence timeout), so a held answer is never mistaken for a hung master.
fn max_hold(timing: WorkerTiming) -> Duration {
    timing.heartbeat.min(timing.fence / 4)
}

/// The live attempts the replicated state places on `worker_id`.
fn assigned_to(state: &MasterState, worker_id: WorkerId) -> BTreeSet<(AppId, u32)> {
    state
        .live_attempts()
        .filter(|(_, a)| a.worker_id == worker_id)
        .map(|(app, a)| (app.id, a.attempt))
        .collect()
}

/// On the leader: declares silent workers lost and places pending applications. Runs on every
/// master; does nothing while this one does not lead. Besides its period it wakes on every
/// applied write (at most once per `MIN_STEP_GAP`), so a submission is placed within
/// milliseconds of its commit; when the placements change it wakes the held heartbeats.
pub async fn run(cluster: Arc<Cluster>, registry: Arc<Registry>) {
    const MIN_STEP_GAP: Duration = Duration::from_millis(5);
    let timing = registry.timing;
    let period = (timing.heartbeat / 2).max(Duration::from_millis(50));
    let mut metrics = cluster.watch_metrics();
    let mut applied = None;
    let mut live = BTreeSet::new();
    loop {
        let woke = tokio::time::Instant::now();
        let _ = tokio::time::timeout(period, async {
            loop {
                if metrics.changed().await.is_err() {
                    // The Raft core is gone; the daemon is stopping. Keep the period only.
                    std::future::pending::<()>().await;
                }
                let now = metrics.borrow_and_update().last_applied.map(|id| id.index);
                if now != applied {
                    applied = now;
                    return;
                }
            }
        })
        .await;
        tokio::time::sleep_until(woke + MIN_STEP_GAP).await;
        let status = cluster.status();
        let leading = status.role == Role::Leader;
        registry.observe_term(leading.then_some(status.term));
        if !leading || !cluster.leads_with_quorum() {
            continue;
        }
        if let Err(e) = step(&cluster, &registry, timing).await {
            tracing::debug!(error = %e, "worker scheduling step did not complete");
        }
        let now: BTreeSet<(AppId, u32, WorkerId)> = cluster
            .read(|state| state.live_attempts().map(|(app, a)| (app.id, a.attempt, a.worker_id)).collect());
        if now != live {
            live = now;
            registry.placements.send_modify(|generation| *generation += 1);
        }
    }
}

async fn step(cluster: &Cluster, registry: &Registry, timing: WorkerTiming) -> Result<(), ClusterError> {
    let (leading_for, seen): (Duration, BTreeMap<WorkerId, Seen>) = registry.with(|table| {
        // A lost worker stays listed (as lost) for a while, then is forgotten.
        table.workers.retain(|_, seen| seen.at.elapsed() < timing.loss * FORGET_AFTER_LOSSES);
        (table.leader_since.map_or(Duration::ZERO, |since| since.elapsed()), table.workers.clone())
    });
    // A worker that stopped cleanly counts as gone at once, as if never heard from.
    let silent_for: BTreeMap<WorkerId, Duration> =
        seen.iter().filter(|(_, s)| !s.gone).map(|(id, s)| (*id, s.at.elapsed())).collect();
    let lost = cluster.read(|state| lost_attempts(state, &silent_for, leading_for, timing.loss));
    for (app_id, attempt, worker_id) in lost {
        tracing::warn!(app_id, attempt, worker_id, "worker lost: restarting its attempt elsewhere");
        let command = Command::AttemptEnded {
            app_id,
            attempt,
            outcome: AttemptOutcome::WorkerLost,
            now_ms: crate::api::now_ms(),
        };
        match cluster.write(command).await {
            Ok(_) | Err(ClusterError::Rejected(_)) => {}
            Err(other) => return Err(other),
        }
    }
    // Place only on workers heard from within the fence timeout: one silent longer has killed
    // its attempts and would kill a new one too.
    let live: Vec<LiveWorker> = seen
        .iter()
        .filter(|(_, s)| !s.stopped && s.at.elapsed() < timing.fence)
        .map(|(id, s)| LiveWorker { id: *id, slots: s.slots })
        .collect();
    let placements = cluster.read(|state| schedule(state, &live));
    for placement in placements {
        let command = Command::Assign {
            app_id: placement.app_id,
            attempt: placement.attempt,
            worker_id: placement.worker_id,
            now_ms: crate::api::now_ms(),
        };
        match cluster.write(command).await {
            Ok(_) => tracing::info!(
                app_id = placement.app_id,
                attempt = placement.attempt,
                worker_id = placement.worker_id,
                "attempt assigned"
            ),
            Err(ClusterError::Rejected(_)) => {}
            Err(other) => return Err(other),
        }
    }
    Ok(())
}

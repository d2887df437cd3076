//! Where the next attempt of each pending application runs: a pure function of the replicated
//! state and the leader's view of live workers, so it is tested without Raft or processes.
//!
//! The leader turns each placement into a `Command::Assign`; apply refuses one that would make
//! a second live attempt, so a placement computed from a slightly stale view is harmless.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{AppId, AppStatus, AttemptOutcome, MasterState, WorkerId};

/// A worker the leader has heard from recently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveWorker {
    pub id: WorkerId,
    /// `gearpump.worker.slots` of that worker.
    pub slots: u32,
}

/// One decision: run `attempt` of `app_id` on `worker_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub app_id: AppId,
    pub attempt: u32,
    pub worker_id: WorkerId,
}

/// Places every pending application without a live attempt, oldest first. A worker's free
/// slots are its slots minus what the live attempts assigned to it take (the replicated truth,
/// not the worker's last report, which lags). Spreads: the worker with the most free slots wins
/// (ties: the lowest id). Avoids the worker where the application's previous attempt failed
/// while another worker fits.
pub fn schedule(state: &MasterState, workers: &[LiveWorker]) -> Vec<Placement> {
    let mut free: BTreeMap<WorkerId, u32> = workers.iter().map(|w| (w.id, w.slots)).collect();
    for (app, attempt) in state.live_attempts() {
        if let Some(slots) = free.get_mut(&attempt.worker_id) {
            *slots = slots.saturating_sub(app.slots);
        }
    }
    let mut placements = Vec::new();
    for app in state.apps.values() {
        if app.status != AppStatus::Pending || app.attempts.last().is_some_and(|a| a.is_live()) {
            continue;
        }
        let failed_on = app
            .attempts
            .last()
            .filter(|a| !matches!(a.outcome, Some(AttemptOutcome::Stopped { .. })))
            .map(|a| a.worker_id);
        let fits = |(_, slots): &(&WorkerId, &u32)| **slots >= app.slots;
        let best = |avoid: Option<WorkerId>| {
            free.iter()
                .filter(fits)
                .filter(|(id, _)| Some(**id) != avoid)
                // max_by_key keeps the last maximum; reversing the order makes ties go to the lowest id.
                .rev()
                .max_by_key(|(_, slots)| **slots)
                .map(|(id, _)| *id)
        };
        let Some(worker_id) = best(failed_on).or_else(|| best(None)) else { continue };
        if let Some(slots) = free.get_mut(&worker_id) {
            *slots -= app.slots;
        }
        let attempt = u32::try_from(app.attempts.len()).unwrap_or(u32::MAX).saturating_add(1);
        placements.push(Placement { app_id: app.id, attempt, worker_id });
    }
    placements
}

/// The live attempts whose worker must be declared lost: silent for longer than `loss`, or
/// never heard from during this leadership. Nothing while the leadership is younger than
/// `loss`: heartbeats the previous leader acknowledged are unknown here, and the worker's fence
/// only guarantees its attempts are dead a loss timeout after the last of them.
/// `silent_for` maps each worker heard from in this leadership to the time since its last beat.
pub fn lost_attempts(
    state: &MasterState,
    silent_for: &BTreeMap<WorkerId, Duration>,
    leading_for: Duration,
    loss: Duration,
) -> Vec<(AppId, u32, WorkerId)> {
    if leading_for < loss {
        return Vec::new();
    }
    state
        .live_attempts()
        .filter(|(_, a)| silent_for.get(&a.worker_id).is_none_or(|silent| *silent > loss))
        .map(|(app, a)| (app.id, a.attempt, a.worker_id))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Command, CommandResult, JarRef, NewApplication, RestartPolicy};

    fn submit(state: &mut MasterState, slots: u32) -> AppId {
        let app = NewApplication {
            name_prefix: None,
            user: "u".into(),
            main_class: "Main".into(),
            args: vec![],
            jar: JarRef { key: "j".into(), file_name: "j.jar".into(), size: 1, sha256: "00".repeat(32) },
            restart_policy: RestartPolicy { max_restarts: 3 },
            slots,
        };
        match state.apply(Command::SubmitApp { app, now_ms: 1 }) {
            CommandResult::Submitted { app_id } => app_id,
            other => panic!("{other:?}"),
        }
    }

    fn workers(slots: &[(WorkerId, u32)]) -> Vec<LiveWorker> {
        slots.iter().map(|(id, slots)| LiveWorker { id: *id, slots: *slots }).collect()
    }

    fn apply_all(state: &mut MasterState, placements: &[Placement]) {
        for p in placements {
            let command =
                Command::Assign { app_id: p.app_id, attempt: p.attempt, worker_id: p.worker_id, now_ms: 2 };
            assert_eq!(state.apply(command), CommandResult::Done);
        }
    }

    #[test]
    fn spreads_pending_apps_over_workers() {
        let mut state = MasterState::default();
        let (a, b, c) = (submit(&mut state, 1), submit(&mut state, 1), submit(&mut state, 1));
        let placements = schedule(&state, &workers(&[(0, 2), (1, 2)]));
        let on: Vec<(AppId, WorkerId)> = placements.iter().map(|p| (p.app_id, p.worker_id)).collect();
        assert_eq!(on, vec![(a, 0), (b, 1), (c, 0)]);
        assert!(placements.iter().all(|p| p.attempt == 1));
        apply_all(&mut state, &placements);
        assert!(
            schedule(&state, &workers(&[(0, 2), (1, 2)])).is_empty(),
            "live attempts are not placed again"
        );
    }

    #[test]
    fn counts_live_attempts_against_free_slots_and_skips_full_workers() {
        let mut state = MasterState::default();
        let big = submit(&mut state, 3);
        let placements = schedule(&state, &workers(&[(0, 4), (1, 3)]));
        apply_all(&mut state, &placements);
        assert_eq!(state.apps[&big].attempts[0].worker_id, 0);
        let small = submit(&mut state, 2);
        let placements = schedule(&state, &workers(&[(0, 4), (1, 3)]));
        assert_eq!(placements, vec![Placement { app_id: small, attempt: 1, worker_id: 1 }]);
        let huge = submit(&mut state, 5);
        assert!(schedule(&state, &workers(&[(0, 4), (1, 3)])).iter().all(|p| p.app_id != huge));
        assert!(schedule(&state, &[]).is_empty(), "no worker, no placement");
    }

    #[test]
    fn avoids_the_worker_of_the_failed_attempt_unless_it_is_the_only_one() {
        let mut state = MasterState::default();
        let id = submit(&mut state, 1);
        apply_all(&mut state, &[Placement { app_id: id, attempt: 1, worker_id: 0 }]);
        let ended = Command::AttemptEnded {
            app_id: id,
            attempt: 1,
            outcome: AttemptOutcome::Exited { code: 1, message: None },
            now_ms: 3,
        };
        state.apply(ended);
        assert_eq!(
            schedule(&state, &workers(&[(0, 10), (1, 1)])),
            vec![Placement { app_id: id, attempt: 2, worker_id: 1 }]
        );
        assert_eq!(
            schedule(&state, &workers(&[(0, 10)])),
            vec![Placement { app_id: id, attempt: 2, worker_id: 0 }]
        );
    }

    #[test]
    fn a_worker_is_lost_only_after_the_loss_timeout_of_this_leadership() {
        let mut state = MasterState::default();
        let id = submit(&mut state, 1);
        apply_all(&mut state, &[Placement { app_id: id, attempt: 1, worker_id: 7 }]);
        let loss = Duration::from_secs(5);
        let none = BTreeMap::new();
        // A new leader has heard from nobody yet: it waits a full loss timeout.
        assert!(lost_attempts(&state, &none, Duration::from_secs(1), loss).is_empty());
        assert_eq!(lost_attempts(&state, &none, loss, loss), vec![(id, 1, 7)]);
        let recent = BTreeMap::from([(7, Duration::from_secs(1))]);
        assert!(lost_attempts(&state, &recent, Duration::from_secs(60), loss).is_empty());
        let silent = BTreeMap::from([(7, Duration::from_secs(6))]);
        assert_eq!(lost_attempts(&state, &silent, Duration::from_secs(60), loss), vec![(id, 1, 7)]);
    }

    #[test]
    fn finished_apps_are_not_placed() {
        let mut state = MasterState::default();
        let id = submit(&mut state, 1);
        state.apply(Command::KillApp { app_id: id, now_ms: 2 });
        assert!(schedule(&state, &workers(&[(0, 1)])).is_empty());
    }
}

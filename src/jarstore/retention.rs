//! Which jars the retention sweep may delete. A jar used by a live application is never
//! deleted; one no live application uses is deleted once it has been unused for the retention
//! period. Keys start with their upload time in milliseconds, which dates orphans (uploads whose
//! submission never committed) without asking the store.

use std::time::Duration;

use crate::state::MasterState;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    /// Registered, unused since `since_ms`: delete from the store, then forget it through Raft.
    Registered { key: String },
    /// In the store but never registered.
    Orphan { key: String },
}

/// The upload time encoded in a key (`<millis>-<random>-<file name>`, or `<millis>-<file name>`
/// before keys had a random part), if it has one.
pub fn uploaded_at_ms(key: &str) -> Option<u64> {
    key.split_once('-').and_then(|(millis, _)| millis.parse().ok())
}

pub fn plan(state: &MasterState, stored_keys: &[String], now_ms: u64, retention: Duration) -> Vec<Removal> {
    let retention_ms = u64::try_from(retention.as_millis()).unwrap_or(u64::MAX);
    let expired = |since_ms: u64| now_ms.saturating_sub(since_ms) > retention_ms;
    let mut removals = Vec::new();
    for (key, record) in &state.jars {
        if state.jar_is_referenced(key) {
            continue;
        }
        let last_used = state
            .apps
            .values()
            .filter(|app| app.jar.key == *key)
            .filter_map(|app| app.finish_time_ms)
            .max()
            .unwrap_or(record.stored_at_ms);
        if expired(last_used) {
            removals.push(Removal::Registered { key: key.clone() });
        }
    }
    for key in stored_keys {
        if state.jars.contains_key(key) {
            continue;
        }
        // Without a readable upload time the file is not ours to judge: keep it.
        if uploaded_at_ms(key).is_some_and(expired) {
            removals.push(Removal::Orphan { key: key.clone() });
        }
    }
    removals
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Command, JarRef, NewApplication, RestartPolicy};

    const DAY: u64 = 86_400_000;

    fn submit(state: &mut MasterState, key: &str, now_ms: u64) {
        let app = NewApplication {
            name_prefix: None,
            user: "u".into(),
            main_class: "M".into(),
            args: vec![],
            jar: JarRef { key: key.into(), file_name: "x.jar".into(), size: 1, sha256: "00".into() },
            restart_policy: RestartPolicy { max_restarts: 1 },
            slots: 1,
        };
        state.apply(Command::SubmitApp { app, now_ms });
    }

    #[test]
    fn live_jars_stay_and_finished_ones_go_after_retention() {
        let mut state = MasterState::default();
        submit(&mut state, "100-live.jar", 100);
        submit(&mut state, "200-done.jar", 200);
        state.apply(Command::KillApp { app_id: 2, now_ms: DAY });
        let keys = vec!["100-live.jar".to_string(), "200-done.jar".to_string()];
        let week = Duration::from_millis(7 * DAY);
        assert!(plan(&state, &keys, 100 * DAY, week)
            .iter()
            .all(|r| *r != Removal::Registered { key: "100-live.jar".into() }));
        assert!(plan(&state, &keys, 7 * DAY, week).is_empty(), "finished a day ago, kept for a week");
        assert_eq!(
            plan(&state, &keys, 9 * DAY, week),
            vec![Removal::Registered { key: "200-done.jar".into() }]
        );
    }

    #[test]
    fn orphans_are_dated_by_their_key() {
        let state = MasterState::default();
        let keys = vec!["1000-orphan.jar".to_string(), "not-ours.jar".to_string()];
        let week = Duration::from_millis(7 * DAY);
        assert!(plan(&state, &keys, 2 * DAY, week).is_empty());
        assert_eq!(
            plan(&state, &keys, 8 * DAY, week),
            vec![Removal::Orphan { key: "1000-orphan.jar".into() }]
        );
    }
}

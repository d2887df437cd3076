use super::*;

fn jar(key: &str) -> JarRef {
    JarRef { key: key.into(), file_name: "wc.jar".into(), size: 10, sha256: "ab".repeat(32) }
}

fn new_app(prefix: Option<&str>, jar_key: &str) -> NewApplication {
    NewApplication {
        name_prefix: prefix.map(str::to_string),
        user: "alice".into(),
        main_class: "io.x.WordCount".into(),
        args: vec!["-split".into(), "4".into()],
        jar: jar(jar_key),
        restart_policy: RestartPolicy { max_restarts: 2 },
        slots: 1,
    }
}

fn submit(state: &mut MasterState, prefix: Option<&str>, jar_key: &str) -> AppId {
    match state.apply(Command::SubmitApp { app: new_app(prefix, jar_key), now_ms: 100 }) {
        CommandResult::Submitted { app_id } => app_id,
        other => panic!("submit failed: {other:?}"),
    }
}

#[test]
fn submit_assigns_increasing_ids_and_names() {
    let mut state = MasterState::default();
    assert_eq!(submit(&mut state, None, "j1"), 1);
    assert_eq!(submit(&mut state, Some("wc-"), "j1"), 2);
    assert_eq!(state.max_app_id, 2);
    assert_eq!(state.apps[&1].name, "io.x.WordCount");
    assert_eq!(state.apps[&2].name, "wc-2");
    assert_eq!(state.apps[&1].status, AppStatus::Pending);
    assert_eq!(state.apps[&1].submission_time_ms, 100);
    assert_eq!(state.jars.len(), 1, "one record per jar key");
}

#[test]
fn status_transitions_stamp_times_and_terminal_status_drops_app_data() {
    let mut state = MasterState::default();
    let id = submit(&mut state, None, "j1");
    state.apply(Command::PutAppData { app_id: id, key: "START_CLOCK".into(), value: "42".into() });
    assert_eq!(state.app_data[&id]["START_CLOCK"], "42");

    state.apply(Command::SetStatus { app_id: id, status: AppStatus::Active, now_ms: 200 });
    assert_eq!(state.apps[&id].start_time_ms, Some(200));
    assert!(state.jar_is_referenced("j1"));

    assert_eq!(state.apply(Command::KillApp { app_id: id, now_ms: 300 }), CommandResult::Done);
    assert_eq!(state.apps[&id].status, AppStatus::Terminated);
    assert_eq!(state.apps[&id].finish_time_ms, Some(300));
    assert!(!state.app_data.contains_key(&id));
    assert!(!state.jar_is_referenced("j1"));
}

#[test]
fn finished_and_unknown_apps_are_rejected() {
    let mut state = MasterState::default();
    let id = submit(&mut state, None, "j1");
    state.apply(Command::KillApp { app_id: id, now_ms: 1 });
    assert_eq!(
        state.apply(Command::KillApp { app_id: id, now_ms: 2 }),
        CommandResult::Rejected(Rejection::AlreadyFinished { app_id: id, status: AppStatus::Terminated })
    );
    assert_eq!(
        state.apply(Command::PutAppData { app_id: 99, key: "k".into(), value: "v".into() }),
        CommandResult::Rejected(Rejection::UnknownApp(99))
    );
    // A rejected command changes nothing.
    assert_eq!(state.apps[&id].finish_time_ms, Some(1));
}

#[test]
fn restart_policy_survives_and_fails_the_app_past_its_limit() {
    let mut state = MasterState::default();
    let id = submit(&mut state, None, "j1");
    let restart = |state: &mut MasterState| state.apply(Command::RecordRestart { app_id: id, now_ms: 5 });
    assert_eq!(restart(&mut state), CommandResult::Restarted { restarts: 1, status: AppStatus::Pending });
    assert_eq!(restart(&mut state), CommandResult::Restarted { restarts: 2, status: AppStatus::Pending });
    assert_eq!(restart(&mut state), CommandResult::Restarted { restarts: 3, status: AppStatus::Failed });
    assert_eq!(state.apps[&id].finish_time_ms, Some(5));
}

#[test]
fn referenced_jars_cannot_be_forgotten() {
    let mut state = MasterState::default();
    let id = submit(&mut state, None, "j1");
    assert_eq!(
        state.apply(Command::ForgetJar { key: "j1".into() }),
        CommandResult::Rejected(Rejection::JarInUse("j1".into()))
    );
    state.apply(Command::KillApp { app_id: id, now_ms: 1 });
    assert_eq!(state.apply(Command::ForgetJar { key: "j1".into() }), CommandResult::Done);
    assert!(state.jars.is_empty());
}

#[test]
fn worker_ids_increase() {
    let mut state = MasterState::default();
    assert_eq!(state.apply(Command::AllocateWorkerId), CommandResult::WorkerId(0));
    assert_eq!(state.apply(Command::AllocateWorkerId), CommandResult::WorkerId(1));
}

#[test]
fn replaying_the_same_commands_gives_the_same_state() {
    let commands = vec![
        Command::SubmitApp { app: new_app(None, "a"), now_ms: 1 },
        Command::SubmitApp { app: new_app(Some("p"), "b"), now_ms: 2 },
        Command::SetStatus { app_id: 1, status: AppStatus::Active, now_ms: 3 },
        Command::PutAppData { app_id: 2, key: "DAG".into(), value: "{}".into() },
        Command::KillApp { app_id: 1, now_ms: 4 },
        Command::AllocateWorkerId,
    ];
    let mut first = MasterState::default();
    let mut second = MasterState::default();
    for command in &commands {
        first.apply(command.clone());
    }
    for command in commands {
        second.apply(command);
    }
    assert_eq!(first, second);
    let json = serde_json::to_string(&first).expect("state serializes");
    let back: MasterState = serde_json::from_str(&json).expect("state deserializes");
    assert_eq!(back, first);
}

// ------------------------------------------------------------------ request ids (exactly once)

fn proposal(id: &str, at_ms: u64, command: Command) -> Proposal {
    Proposal { id: id.into(), at_ms, command }
}

#[test]
fn a_repeated_request_id_applies_once_and_answers_the_first_result() {
    let mut state = MasterState::default();
    let first = Command::SubmitApp { app: new_app(None, "100-wc.jar"), now_ms: 100 };
    assert_eq!(state.apply_proposal(proposal("r1", 100, first)), CommandResult::Submitted { app_id: 1 });
    // The retry went through another master: a new time stamp and a jar uploaded again under
    // another key. Still the same request.
    let retry = Command::SubmitApp { app: new_app(None, "250-wc.jar"), now_ms: 250 };
    assert_eq!(state.apply_proposal(proposal("r1", 250, retry)), CommandResult::Submitted { app_id: 1 });
    assert_eq!(state.apps.len(), 1, "one application for one request");
    assert_eq!(state.max_app_id, 1);
    assert_eq!(state.requests.repeats_answered, 1);
    // A new request id is a new application.
    let other = Command::SubmitApp { app: new_app(None, "300-wc.jar"), now_ms: 300 };
    assert_eq!(state.apply_proposal(proposal("r2", 300, other)), CommandResult::Submitted { app_id: 2 });
}

#[test]
fn a_repeated_data_write_does_not_overwrite_a_later_one() {
    let mut state = MasterState::default();
    submit(&mut state, None, "j1");
    let put = |value: &str| Command::PutAppData { app_id: 1, key: "k".into(), value: value.into() };
    state.apply_proposal(proposal("a", 1, put("a")));
    state.apply_proposal(proposal("b", 2, put("b")));
    // The retry of "a" that a leader's death used to apply a second time (a, b, a).
    assert_eq!(state.apply_proposal(proposal("a", 3, put("a"))), CommandResult::Done);
    assert_eq!(state.app_data[&1]["k"], "b");
}

#[test]
fn a_request_id_reused_for_another_command_is_refused() {
    let mut state = MasterState::default();
    submit(&mut state, None, "j1");
    let put = |value: &str| Command::PutAppData { app_id: 1, key: "k".into(), value: value.into() };
    state.apply_proposal(proposal("same", 1, put("a")));
    assert_eq!(
        state.apply_proposal(proposal("same", 2, put("b"))),
        CommandResult::Rejected(Rejection::RequestIdReused("same".into()))
    );
    assert_eq!(state.app_data[&1]["k"], "a");
}

#[test]
fn a_rejection_is_remembered_too() {
    let mut state = MasterState::default();
    let kill = Command::KillApp { app_id: 9, now_ms: 1 };
    let rejected = CommandResult::Rejected(Rejection::UnknownApp(9));
    assert_eq!(state.apply_proposal(proposal("k", 1, kill.clone())), rejected);
    submit(&mut state, None, "j1"); // ids move on meanwhile; the answer to "k" does not change
    assert_eq!(state.apply_proposal(proposal("k", 2, kill)), rejected);
}

#[test]
fn the_window_is_bounded_by_count_and_age() {
    let mut state = MasterState::default();
    for i in 0..100_000u64 {
        state.apply_proposal(proposal(&format!("{i:032x}"), 1_000 + i, Command::AllocateWorkerId));
    }
    assert_eq!(state.requests.len(), MAX_REMEMBERED);
    // The oldest ids are forgotten, the newest remembered.
    let bytes = serde_json::to_vec(&state.requests).expect("serializable");
    assert!(bytes.len() < 8 << 20, "window of {} ids is {} bytes in a snapshot", MAX_REMEMBERED, bytes.len());
    let newest = format!("{:032x}", 99_999);
    let before = state.next_worker_id;
    state.apply_proposal(proposal(&newest, 200_000, Command::AllocateWorkerId));
    assert_eq!(state.next_worker_id, before, "a remembered id is not applied again");
    state.apply_proposal(proposal(&format!("{:032x}", 0), 200_001, Command::AllocateWorkerId));
    assert_eq!(state.next_worker_id, before + 1, "an evicted id is a new request");

    // Age: one proposal far later evicts everything older than MAX_AGE_MS.
    state.apply_proposal(proposal("late", 200_002 + MAX_AGE_MS, Command::AllocateWorkerId));
    assert_eq!(state.requests.len(), 1);
}

#[test]
fn log_entries_from_before_request_ids_still_apply() {
    let legacy = serde_json::to_string(&Command::KillApp { app_id: 3, now_ms: 5 }).expect("json");
    let decoded: Proposal = serde_json::from_str(&legacy).expect("a bare command decodes");
    assert_eq!(decoded.id, "");
    assert_eq!(decoded.command, Command::KillApp { app_id: 3, now_ms: 5 });
    let unit: Proposal = serde_json::from_str("\"AllocateWorkerId\"").expect("a unit command decodes");
    assert_eq!(unit.command, Command::AllocateWorkerId);
    let current = proposal("x", 7, Command::AllocateWorkerId);
    let round: Proposal =
        serde_json::from_str(&serde_json::to_string(&current).expect("json")).expect("decodes");
    assert_eq!(round, current);
    // Old snapshots have no window.
    let mut old = serde_json::to_value(MasterState::default()).expect("json");
    old.as_object_mut().expect("object").remove("requests");
    let state: MasterState = serde_json::from_value(old).expect("an old snapshot loads");
    assert!(state.requests.is_empty());
}

#[test]
fn request_ids_are_checked() {
    assert!(validate_id("0f3a-retry-1").is_ok());
    assert!(validate_id(&new_id()).is_ok());
    assert!(validate_id("").is_err());
    assert!(validate_id("has space").is_err());
    assert!(validate_id(&"x".repeat(129)).is_err());
    assert_ne!(new_id(), new_id());
}

fn assign(state: &mut MasterState, app_id: AppId, attempt: u32, worker_id: WorkerId) -> CommandResult {
    state.apply(Command::Assign { app_id, attempt, worker_id, now_ms: 10 })
}

fn started(state: &mut MasterState, app_id: AppId, attempt: u32, worker_id: WorkerId) -> CommandResult {
    state.apply(Command::AttemptStarted {
        app_id,
        attempt,
        worker_id,
        pid: 4242,
        log_path: "/w/log".into(),
        log_address: "127.0.0.1:9".into(),
        now_ms: 11,
    })
}

fn ended(state: &mut MasterState, app_id: AppId, attempt: u32, code: i32) -> CommandResult {
    let outcome = AttemptOutcome::Exited { code, message: None };
    state.apply(Command::AttemptEnded { app_id, attempt, outcome, now_ms: 12 })
}

#[test]
fn assign_refuses_a_second_live_attempt_and_a_wrong_attempt_number() {
    let mut state = MasterState::default();
    let id = submit(&mut state, None, "j1");
    assert!(matches!(
        assign(&mut state, id, 2, 0),
        CommandResult::Rejected(Rejection::AttemptRefused { .. })
    ));
    assert_eq!(assign(&mut state, id, 1, 0), CommandResult::Done);
    // The same command again (a retry, a duplicate) and a competing placement are both refused.
    assert!(matches!(assign(&mut state, id, 1, 0), CommandResult::Rejected(_)));
    assert!(matches!(assign(&mut state, id, 2, 1), CommandResult::Rejected(_)));
    assert_eq!(state.apps[&id].attempts.len(), 1);
    assert_eq!(state.live_attempts().count(), 1);
}

#[test]
fn started_makes_the_app_active_once_and_only_from_its_worker() {
    let mut state = MasterState::default();
    let id = submit(&mut state, None, "j1");
    assign(&mut state, id, 1, 7);
    assert!(matches!(started(&mut state, id, 1, 8), CommandResult::Rejected(_)));
    assert_eq!(started(&mut state, id, 1, 7), CommandResult::Done);
    assert_eq!(started(&mut state, id, 1, 7), CommandResult::Done, "a repeated report is a no-op");
    let app = &state.apps[&id];
    assert_eq!(app.status, AppStatus::Active);
    assert_eq!(app.start_time_ms, Some(11));
    assert_eq!(app.attempts[0].pid, Some(4242));
}

#[test]
fn failed_attempts_restart_until_the_policy_is_exhausted_then_the_app_fails() {
    let mut state = MasterState::default();
    let id = submit(&mut state, None, "j1"); // max_restarts 2: three attempts in all
    for attempt in 1..=3 {
        assert_eq!(assign(&mut state, id, attempt, attempt), CommandResult::Done);
        started(&mut state, id, attempt, attempt);
        let result = ended(&mut state, id, attempt, 1);
        let expected = if attempt < 3 { AppStatus::Pending } else { AppStatus::Failed };
        assert_eq!(result, CommandResult::Restarted { restarts: attempt, status: expected });
        // The same report again only acknowledges.
        assert_eq!(ended(&mut state, id, attempt, 1), CommandResult::Done);
    }
    assert_eq!(state.apps[&id].status, AppStatus::Failed);
    assert!(matches!(assign(&mut state, id, 4, 0), CommandResult::Rejected(_)));
}

#[test]
fn exit_zero_succeeds_and_a_lost_worker_counts_as_a_failure() {
    let mut state = MasterState::default();
    let id = submit(&mut state, None, "j1");
    assign(&mut state, id, 1, 0);
    let lost =
        Command::AttemptEnded { app_id: id, attempt: 1, outcome: AttemptOutcome::WorkerLost, now_ms: 5 };
    assert_eq!(state.apply(lost), CommandResult::Restarted { restarts: 1, status: AppStatus::Pending });
    assign(&mut state, id, 2, 1);
    started(&mut state, id, 2, 1);
    assert_eq!(ended(&mut state, id, 2, 0), CommandResult::Done);
    assert_eq!(state.apps[&id].status, AppStatus::Succeeded);
}

#[test]
fn kill_ends_the_live_attempt_and_a_later_exit_is_only_recorded() {
    let mut state = MasterState::default();
    let id = submit(&mut state, None, "j1");
    assign(&mut state, id, 1, 0);
    started(&mut state, id, 1, 0);
    state.apply(Command::KillApp { app_id: id, now_ms: 20 });
    assert_eq!(state.live_attempts().count(), 0, "the worker stops what is no longer assigned");
    assert_eq!(ended(&mut state, id, 1, 137), CommandResult::Done);
    assert_eq!(state.apps[&id].status, AppStatus::Terminated);
    assert!(matches!(started(&mut state, id, 1, 0), CommandResult::Rejected(_)));
}

#[test]
fn restart_request_stops_the_attempt_without_counting_it() {
    let mut state = MasterState::default();
    let id = submit(&mut state, None, "j1");
    assign(&mut state, id, 1, 0);
    started(&mut state, id, 1, 0);
    let result = state.apply(Command::RestartApp { app_id: id, now_ms: 30 });
    assert_eq!(result, CommandResult::Restarted { restarts: 0, status: AppStatus::Pending });
    assert_eq!(assign(&mut state, id, 2, 0), CommandResult::Done);
}

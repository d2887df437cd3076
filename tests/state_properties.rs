//! Properties of the replicated state machine, over random command sequences (proptest).
//!
//! Raft only keeps masters consistent if `apply` is a function of the log: every master applies
//! the same proposals and must end in the same state, and a master that installs a snapshot and
//! then applies the rest of the log must end where a master that applied the whole log did. The
//! unit tests in src/state check chosen sequences; these check the sequences nobody thought of.
//!
//! The generators draw from small pools of application, worker, attempt and request ids so the
//! sequences keep hitting the interesting paths: repeated and conflicting request ids, commands
//! on finished applications, attempts out of order, and the request window's age eviction (the
//! proposal clock jumps by up to several minutes between entries).
//!
//! `PROPTEST_CASES` sets the number of sequences (default 256 here); a failure prints the
//! smallest sequence proptest could shrink it to.

use gearpump_master::state::{
    AppStatus, AttemptOutcome, Command, CommandResult, JarRef, MasterState, NewApplication, Proposal,
    RestartPolicy,
};
use proptest::prelude::*;

fn jar() -> impl Strategy<Value = JarRef> {
    (0u8..3).prop_map(|n| JarRef {
        key: format!("jar-{n}"),
        file_name: format!("app{n}.jar"),
        size: 100 + u64::from(n),
        sha256: format!("{n:064}"),
    })
}

fn status() -> impl Strategy<Value = AppStatus> {
    prop_oneof![
        Just(AppStatus::Pending),
        Just(AppStatus::Active),
        Just(AppStatus::Succeeded),
        Just(AppStatus::Failed),
        Just(AppStatus::Terminated),
    ]
}

fn outcome() -> impl Strategy<Value = AttemptOutcome> {
    prop_oneof![
        (-2i32..3, proptest::option::of("[a-z]{0,6}"))
            .prop_map(|(code, message)| AttemptOutcome::Exited { code, message }),
        "[a-z]{0,6}".prop_map(|cause| AttemptOutcome::Failed { cause }),
        Just(AttemptOutcome::WorkerLost),
        "[a-z]{0,6}".prop_map(|reason| AttemptOutcome::Stopped { reason }),
    ]
}

/// Commands over applications 1..=6, workers 1..=3 and attempts 1..=4: small enough that most
/// commands name something that exists.
fn command() -> impl Strategy<Value = Command> {
    let app = 1u32..=6;
    let now = 0u64..2_000_000;
    prop_oneof![
        3 => (jar(), proptest::option::of("[a-z]{1,4}"), 0u32..3, 0u32..4, now.clone()).prop_map(
            |(jar, name_prefix, max_restarts, slots, now_ms)| Command::SubmitApp {
                app: NewApplication {
                    name_prefix,
                    user: "prop".into(),
                    main_class: "Main".into(),
                    args: vec!["a".into()],
                    jar,
                    restart_policy: RestartPolicy { max_restarts },
                    slots,
                },
                now_ms,
            }
        ),
        1 => (app.clone(), status(), now.clone())
            .prop_map(|(app_id, status, now_ms)| Command::SetStatus { app_id, status, now_ms }),
        1 => (app.clone(), now.clone()).prop_map(|(app_id, now_ms)| Command::KillApp { app_id, now_ms }),
        1 => (app.clone(), now.clone()).prop_map(|(app_id, now_ms)| Command::RecordRestart { app_id, now_ms }),
        2 => (app.clone(), "[ab]", "[a-z]{0,4}")
            .prop_map(|(app_id, key, value)| Command::PutAppData { app_id, key, value }),
        1 => Just(Command::AllocateWorkerId),
        1 => jar().prop_map(|jar| Command::ForgetJar { key: jar.key }),
        3 => (app.clone(), 1u32..=4, 1u32..=3, now.clone()).prop_map(|(app_id, attempt, worker_id, now_ms)| {
            Command::Assign { app_id, attempt, worker_id, now_ms }
        }),
        3 => (app.clone(), 1u32..=4, 1u32..=3, 1u32..100_000, now.clone()).prop_map(
            |(app_id, attempt, worker_id, pid, now_ms)| Command::AttemptStarted {
                app_id,
                attempt,
                worker_id,
                pid,
                log_path: format!("/var/log/gearpump/{app_id}-{attempt}.log"),
                log_address: "127.0.0.1:3100".into(),
                now_ms,
            }
        ),
        3 => (app.clone(), 1u32..=4, outcome(), now.clone()).prop_map(|(app_id, attempt, outcome, now_ms)| {
            Command::AttemptEnded { app_id, attempt, outcome, now_ms }
        }),
        1 => (app, now).prop_map(|(app_id, now_ms)| Command::RestartApp { app_id, now_ms }),
    ]
}

/// Proposals as the log holds them: ids from a pool of eight (or none, like entries written
/// before request ids), so ids repeat with the same or a different command; `at_ms` never goes
/// back and sometimes jumps past the window's age bound.
fn log() -> impl Strategy<Value = Vec<Proposal>> {
    let entry = (proptest::option::of(0u8..8), prop_oneof![8 => 0u64..2_000, 1 => 0u64..400_000], command());
    proptest::collection::vec(entry, 0..120).prop_map(|entries| {
        let mut at_ms = 1_700_000_000_000u64;
        entries
            .into_iter()
            .map(|(id, step, command)| {
                at_ms += step;
                Proposal { id: id.map(|n| format!("req-{n}")).unwrap_or_default(), at_ms, command }
            })
            .collect()
    })
}

fn replay(state: &mut MasterState, proposals: &[Proposal]) -> Vec<CommandResult> {
    proposals.iter().map(|p| state.apply_proposal(p.clone())).collect()
}

/// What a snapshot holds: the state machine serializes the state with serde_json.
fn through_snapshot(state: &MasterState) -> MasterState {
    let bytes = serde_json::to_vec(state).expect("a state serializes");
    serde_json::from_slice(&bytes).expect("a snapshot deserializes")
}

/// What the masters hash for `GET /api/v1.0/master`'s stateHash (as text, so a failure prints
/// readably).
fn hashed_bytes(state: &MasterState) -> String {
    serde_json::to_string(state).expect("a state serializes")
}

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(256);
    ProptestConfig { cases, ..ProptestConfig::default() }
}

proptest! {
    #![proptest_config(config())]

    /// Two masters applying the same log end in the same state, byte for byte, and gave every
    /// client the same answers.
    #[test]
    fn apply_is_deterministic(log in log()) {
        let (mut a, mut b) = (MasterState::default(), MasterState::default());
        let answers_a = replay(&mut a, &log);
        let answers_b = replay(&mut b, &log);
        prop_assert_eq!(answers_a, answers_b);
        prop_assert_eq!(hashed_bytes(&a), hashed_bytes(&b));
    }

    /// A snapshot after any prefix, plus the rest of the log, gives the state of the whole log;
    /// and the answers to the rest are the same (a retried request id answered from a snapshot
    /// answers what it answered before).
    #[test]
    fn snapshot_then_rest_equals_whole_log(log in log(), cut in any::<prop::sample::Index>()) {
        let cut = cut.index(log.len() + 1);
        let mut whole = MasterState::default();
        let whole_answers = replay(&mut whole, &log);

        let mut prefix = MasterState::default();
        replay(&mut prefix, &log[..cut]);
        let mut restored = through_snapshot(&prefix);
        prop_assert_eq!(&restored, &prefix);
        let rest_answers = replay(&mut restored, &log[cut..]);

        prop_assert_eq!(&rest_answers[..], &whole_answers[cut..]);
        prop_assert_eq!(hashed_bytes(&restored), hashed_bytes(&whole));
    }

    /// A retry that reaches the log right after its first copy (the leader died after committing
    /// and the client retried with the same request id) answers what the first copy answered, and
    /// the log with the duplicate ends in the state of the log without it — except for the
    /// window's own count of answered repeats.
    #[test]
    fn a_retried_proposal_is_applied_once(log in log(), pick in any::<prop::sample::Index>()) {
        let keyed: Vec<usize> = (0..log.len()).filter(|&i| !log[i].id.is_empty()).collect();
        prop_assume!(!keyed.is_empty());
        let i = keyed[pick.index(keyed.len())];
        let mut retried = log.clone();
        retried.insert(i + 1, log[i].clone());

        let mut once = MasterState::default();
        let answers = replay(&mut once, &log);
        let mut twice = MasterState::default();
        let retried_answers = replay(&mut twice, &retried);

        prop_assert_eq!(&retried_answers[i + 1], &retried_answers[i]);
        prop_assert_eq!(&retried_answers[..=i], &answers[..=i]);
        prop_assert_eq!(&retried_answers[i + 2..], &answers[i + 1..]);
        prop_assert_eq!(&twice.apps, &once.apps);
        prop_assert_eq!(&twice.app_data, &once.app_data);
        prop_assert_eq!(&twice.jars, &once.jars);
        prop_assert_eq!((twice.max_app_id, twice.next_worker_id), (once.max_app_id, once.next_worker_id));
        prop_assert_eq!(twice.requests.len(), once.requests.len());
    }
}

//! Backup, restore, disaster recovery and the state directory's format version, with real
//! multi-process clusters on loopback (docs/OPERATIONS.md is the runbook these commands serve).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{make_jar, wire, Options, TestCluster, GEAR_BIN, MASTER_BIN};
use gearpump_master::backup::Backup;
use gearpump_master::wire::{
    AppDetail, AppList, MasterAnswer, MembersView, MembershipChange, SnapshotSummary, SubmitAnswer,
};
use reqwest::multipart;
use serde::de::DeserializeOwned;

/// `data` of an application, as the test writes it.
fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect()
}

async fn submit(cluster: &TestCluster, index: usize, jar: &Path) -> SubmitAnswer {
    let bytes = std::fs::read(jar).expect("read jar");
    let name = jar.file_name().and_then(|n| n.to_str()).expect("jar name").to_string();
    let form = multipart::Form::new()
        .text("mainClass", "io.x.Backup")
        .text("namePrefix", "b")
        .part("jar", multipart::Part::bytes(bytes).file_name(name));
    let (status, body) = cluster.submit_form(index, form).await;
    assert_eq!(status, 200, "submission through master {index}: {body}");
    wire(&body)
}

async fn put_data(cluster: &TestCluster, index: usize, app: u64, key: &str, value: &str) {
    let url = cluster.url(index, &format!("/api/v1.0/appmaster/{app}/data/{key}"));
    let response = cluster.http.put(url).body(value.to_string()).send().await.expect("put app data");
    assert_eq!(response.status().as_u16(), 200, "put {key} on app {app}");
}

async fn get_ok<T: DeserializeOwned>(cluster: &TestCluster, index: usize, path: &str) -> T {
    let (status, body) = cluster.get(index, path).await.expect(path);
    assert_eq!(status, 200, "{path} on master {index}: {body}");
    wire(&body)
}

/// Every application with its data, as master `index` answers (linearizable reads).
async fn apps_and_data(cluster: &TestCluster, index: usize) -> BTreeMap<u32, AppDetail> {
    let list: AppList = get_ok(cluster, index, "/api/v1.0/master/applist").await;
    let mut apps = BTreeMap::new();
    for app in list.app_masters {
        let id = app.app_id;
        apps.insert(id, get_ok(cluster, index, &format!("/api/v1.0/appmaster/{id}")).await);
    }
    apps
}

/// (appliedIndex, stateHash) of master `index`.
async fn state_hash(cluster: &TestCluster, index: usize) -> (u64, String) {
    let master: MasterAnswer = get_ok(cluster, index, "/api/v1.0/master").await;
    let d = master.master_description;
    (d.applied_index, d.state_hash)
}

/// Waits until every running master reports the same state hash at the same applied index.
async fn wait_for_equal_states(cluster: &TestCluster) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut seen = Vec::new();
        for index in (0..cluster.ports.len()).filter(|i| cluster.is_running(*i)) {
            seen.push(state_hash(cluster, index).await);
        }
        if seen.windows(2).all(|pair| pair[0].0 == pair[1].0) {
            assert!(seen.windows(2).all(|pair| pair[0] == pair[1]), "same index, different states: {seen:?}");
            return seen[0].1.clone();
        }
        assert!(Instant::now() < deadline, "no common applied index: {seen:?}\n{}", cluster.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `POST /api/v1.0/master/members` through master `via`: the status.
async fn change_members(cluster: &TestCluster, via: usize, body: MembershipChange) -> u16 {
    let url = cluster.url(via, "/api/v1.0/master/members");
    let response = cluster.http.post(url).json(&body).send().await.expect("membership request");
    response.status().as_u16()
}

fn run(binary: &str, args: &[&str]) -> Output {
    Command::new(binary).args(args).env_remove("NOTIFY_SOCKET").output().expect("run the binary")
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// `gearpump-master SUBCOMMAND ... ` for master `index` of `cluster`.
fn offline(cluster: &TestCluster, index: usize, subcommand: &[&str]) -> Output {
    let port = cluster.ports[index].to_string();
    let state_dir = cluster.state_dir(index);
    let conf = cluster.conf.to_str().expect("utf8").to_string();
    let mut args: Vec<&str> = subcommand.to_vec();
    args.extend(["--config", &conf, "--ip", "127.0.0.1", "--port", &port, "--state-dir"]);
    args.push(state_dir.to_str().expect("utf8"));
    run(MASTER_BIN, &args)
}

fn wipe(cluster: &TestCluster, index: usize) {
    let dir = cluster.state_dir(index);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).expect("wipe the state directory");
    }
}

fn file_under(root: &Path, name: &str) -> PathBuf {
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("list").flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.file_name().is_some_and(|n| n == name) {
                return path;
            }
        }
    }
    panic!("no {name} under {}", root.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_restored_into_three_fresh_masters_holds_everything_and_ids_go_on() {
    let mut cluster = TestCluster::start(Options::default());
    cluster.wait_until_ready(Duration::from_secs(20)).await;
    let mut jar_keys = Vec::new();
    for n in 0..4u8 {
        let jar = make_jar(cluster.dir.path(), &format!("backup{n}.jar"), 3000 + usize::from(n), n);
        let answer = submit(&cluster, usize::from(n) % 3, &jar).await;
        assert_eq!(answer.app_id, u32::from(n) + 1);
        jar_keys.push(answer.jar);
    }
    put_data(&cluster, 0, 1, "offset", "1234").await;
    put_data(&cluster, 1, 1, "owner", "alice").await;
    put_data(&cluster, 2, 3, "checkpoint", "s3://x/y").await;
    let response = cluster.http.delete(cluster.url(1, "/api/v1.0/appmaster/4")).send().await.expect("kill");
    assert_eq!(response.status().as_u16(), 200);
    let before = apps_and_data(&cluster, 2).await;
    assert_eq!(before[&1].data, data(&[("offset", "1234"), ("owner", "alice")]));
    let hash_before = wait_for_equal_states(&cluster).await;

    let file = cluster.dir.path().join("backup.snap");
    let (ok, stdout, stderr) = cluster.gear(&["snapshot", "save", file.to_str().expect("utf8")]);
    assert!(ok, "snapshot save: {stdout}{stderr}");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(std::fs::metadata(&file).expect("saved").permissions().mode() & 0o777, 0o600);
    let (ok, stdout, stderr) = cluster.gear(&["snapshot", "status", file.to_str().expect("utf8"), "--json"]);
    assert!(ok, "snapshot status: {stdout}{stderr}");
    let status: SnapshotSummary = serde_json::from_str(&stdout).expect("status JSON");
    assert_eq!((status.applications, status.next_app_id), (4, 5), "{status:?}");
    assert_eq!(status.origin.voters.len(), 3, "{status:?}");
    assert_eq!(status.jars.len(), 4, "{status:?}");

    // Every node is destroyed; one jar is lost from the store too.
    for index in 0..3 {
        cluster.kill(index);
        wipe(&cluster, index);
    }
    let lost = &jar_keys[2];
    std::fs::remove_file(file_under(&cluster.dir.path().join("jars"), lost)).expect("remove a jar");
    for index in 0..3 {
        let output = offline(&cluster, index, &["restore", "--from", file.to_str().expect("utf8")]);
        let said = text(&output);
        assert!(output.status.success(), "restore of master {index}: {said}");
        assert!(
            said.contains("1 of 4 referenced jars are MISSING") && said.contains(lost.as_str()),
            "{said}"
        );
    }
    for index in 0..3 {
        cluster.restart(index);
    }
    cluster.wait_until_ready(Duration::from_secs(20)).await;
    assert_eq!(wait_for_equal_states(&cluster).await, hash_before, "the restored state is the backed-up one");
    for index in 0..3 {
        assert_eq!(apps_and_data(&cluster, index).await, before, "master {index} after the restore");
    }
    // The id counter came back: a new submission does not collide.
    let jar = make_jar(cluster.dir.path(), "after.jar", 100, 9);
    assert_eq!(submit(&cluster, 1, &jar).await.app_id, 5);
    wait_for_equal_states(&cluster).await;

    // A restore never writes over a used state directory.
    let output = offline(&cluster, 0, &["restore", "--from", file.to_str().expect("utf8")]);
    assert_eq!(output.status.code(), Some(73), "{}", text(&output));
    assert!(text(&output).contains("not empty"), "{}", text(&output));
}

#[test]
fn damaged_backups_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().expect("temp dir");
    let backup = Backup {
        origin: gearpump_master::backup::Origin {
            format: gearpump_master::backup::FORMAT,
            written_by: "test".into(),
            created_at_ms: 0,
            taken_from: "127.0.0.1:1".into(),
            leader: None,
            applied_index: 5,
            applied_term: 2,
            voters: vec!["127.0.0.1:1".into()],
            learners: vec![],
        },
        master_state: Default::default(),
    };
    let good = backup.encode();
    let truncated = dir.path().join("truncated.snap");
    std::fs::write(&truncated, &good[..good.len() - 3]).expect("write");
    let mut flipped = good.clone();
    let last = flipped.len() - 2;
    flipped[last] ^= 0x20;
    let corrupt = dir.path().join("corrupt.snap");
    std::fs::write(&corrupt, &flipped).expect("write");
    for (file, reason) in [(&truncated, "truncated"), (&corrupt, "checksum mismatch")] {
        let output = run(GEAR_BIN, &["snapshot", "status", file.to_str().expect("utf8")]);
        assert!(!output.status.success());
        assert!(text(&output).contains(reason), "{}", text(&output));
        // restore refuses it before creating anything.
        let state = dir.path().join("state");
        let conf = dir.path().join("gear.conf");
        std::fs::write(&conf, "gearpump.cluster.masters = [\"127.0.0.1:1\"]\n").expect("write gear.conf");
        let output = run(
            MASTER_BIN,
            &[
                "restore",
                "--from",
                file.to_str().expect("utf8"),
                "--config",
                conf.to_str().expect("utf8"),
                "--ip",
                "127.0.0.1",
                "--port",
                "1",
                "--state-dir",
                state.to_str().expect("utf8"),
            ],
        );
        assert_eq!(output.status.code(), Some(65), "{}", text(&output));
        assert!(text(&output).contains(reason), "{}", text(&output));
        assert!(!state.exists());
    }
    let good_file = dir.path().join("good.snap");
    std::fs::write(&good_file, &good).expect("write");
    let output = run(GEAR_BIN, &["snapshot", "status", good_file.to_str().expect("utf8")]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("checksum OK"), "{}", text(&output));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_losing_a_majority_the_survivor_recovers_alone_and_grows_back_to_three() {
    let mut cluster = TestCluster::start(Options::default());
    let leader = cluster.wait_until_ready(Duration::from_secs(20)).await;
    for n in 0..3u8 {
        let jar = make_jar(cluster.dir.path(), &format!("dr{n}.jar"), 2000, n);
        submit(&cluster, usize::from(n) % 3, &jar).await;
    }
    put_data(&cluster, 0, 2, "position", "42").await;
    // The survivor is a follower; a linearizable read makes it apply everything acknowledged.
    let survivor = (0..3).find(|i| cluster.address(*i) != leader).expect("a follower");
    let lost: Vec<usize> = (0..3).filter(|i| *i != survivor).collect();
    let before = apps_and_data(&cluster, survivor).await;
    let (_, hash_before) = state_hash(&cluster, survivor).await;
    for index in &lost {
        cluster.kill(*index);
        wipe(&cluster, *index);
    }

    // Refused while the master itself runs on the directory.
    let output = offline(&cluster, survivor, &["recover", "--force-new-cluster"]);
    assert_eq!(output.status.code(), Some(75), "{}", text(&output));
    assert!(text(&output).contains("is in use"), "{}", text(&output));
    cluster.kill(survivor);

    // Refused while a master of the old membership answers.
    cluster.restart(lost[0]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while cluster.get(lost[0], "/health/live").await.is_err() {
        assert!(Instant::now() < deadline, "{}", cluster.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let output = offline(&cluster, survivor, &["recover", "--force-new-cluster"]);
    assert_eq!(output.status.code(), Some(75), "{}", text(&output));
    assert!(text(&output).contains(&cluster.address(lost[0])), "{}", text(&output));
    assert!(text(&output).contains("--yes-i-know"), "{}", text(&output));
    cluster.kill(lost[0]);
    wipe(&cluster, lost[0]);

    let output = offline(&cluster, survivor, &["recover", "--force-new-cluster"]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("now the only member"), "{}", text(&output));
    cluster.restart(survivor);
    cluster.wait_until_ready(Duration::from_secs(20)).await;
    assert_eq!(state_hash(&cluster, survivor).await.1, hash_before, "everything the survivor had");
    assert_eq!(apps_and_data(&cluster, survivor).await, before);
    // It serves writes alone.
    put_data(&cluster, survivor, 2, "after", "recovery").await;
    let jar = make_jar(cluster.dir.path(), "dr-after.jar", 500, 7);
    assert_eq!(submit(&cluster, survivor, &jar).await.app_id, 4);

    // Grown back to three, one fresh master at a time.
    for index in &lost {
        cluster.restart(*index);
        let status = change_members(&cluster, survivor, MembershipChange::Add(cluster.address(*index))).await;
        assert_eq!(status, 200, "{}", cluster.logs());
    }
    let members: MembersView = get_ok(&cluster, survivor, "/api/v1.0/master/members").await;
    assert_eq!(members.voters.len(), 3, "{members:?}");
    cluster.wait_until_ready(Duration::from_secs(20)).await;
    wait_for_equal_states(&cluster).await;
    for index in 0..3 {
        let apps = apps_and_data(&cluster, index).await;
        assert_eq!(apps.len(), 4, "master {index}");
        assert_eq!(apps[&2].data, data(&[("position", "42"), ("after", "recovery")]), "master {index}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_directory_from_a_newer_version_is_refused_untouched() {
    let mut cluster = TestCluster::start(Options { masters: 1, ..Options::default() });
    cluster.wait_until_ready(Duration::from_secs(20)).await;
    let jar = make_jar(cluster.dir.path(), "v.jar", 100, 1);
    submit(&cluster, 0, &jar).await;
    cluster.terminate(0);
    let dir = cluster.state_dir(0);
    let marker = dir.join("state-format");
    assert_eq!(std::fs::read_to_string(&marker).expect("marker written at creation"), "1\n");

    // A newer version wrote this directory; this binary is the downgrade.
    std::fs::write(&marker, "2\n").expect("write a newer format");
    let snapshot = |dir: &Path| -> BTreeMap<String, (Vec<u8>, std::time::SystemTime)> {
        std::fs::read_dir(dir)
            .expect("list")
            .flatten()
            .map(|e| {
                let meta = e.metadata().expect("metadata");
                let modified = meta.modified().expect("mtime");
                (
                    e.file_name().to_string_lossy().into_owned(),
                    (std::fs::read(e.path()).expect("read"), modified),
                )
            })
            .collect()
    };
    let untouched = snapshot(&dir);
    cluster.restart(0);
    let mut child = cluster.children[0].take().expect("started");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the downgraded master did not exit: {}", cluster.logs());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(78), "{}", cluster.logs());
    let log = common::log_tail(&cluster.log_path(0), 10);
    assert!(log.contains(&dir.display().to_string()) && log.contains("format 2"), "{log}");
    assert!(log.contains("restore") && log.contains("install"), "names the fixes: {log}");
    assert_eq!(snapshot(&dir), untouched, "the state directory is unchanged");
    // The offline commands refuse it too.
    let output = offline(&cluster, 0, &["recover", "--force-new-cluster", "--yes-i-know"]);
    assert_eq!(output.status.code(), Some(78), "{}", text(&output));
    assert_eq!(snapshot(&dir), untouched);

    // A directory from before the marker existed is format 1 and keeps working.
    std::fs::remove_file(&marker).expect("remove the marker");
    cluster.restart(0);
    cluster.wait_until_ready(Duration::from_secs(20)).await;
    let list: AppList = get_ok(&cluster, 0, "/api/v1.0/master/applist").await;
    assert_eq!(list.app_masters.len(), 1);
    assert_eq!(std::fs::read_to_string(&marker).expect("marked on start"), "1\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_with_a_new_disk_is_removed_then_added_back_empty() {
    let mut cluster = TestCluster::start(Options::default());
    let leader = cluster.wait_until_ready(Duration::from_secs(20)).await;
    let jar = make_jar(cluster.dir.path(), "disk.jar", 800, 3);
    submit(&cluster, 0, &jar).await;
    put_data(&cluster, 1, 1, "k", "v").await;
    // The runbook's order: take the lost voter out, start it empty, add it back.
    let replaced = (0..3).find(|i| cluster.address(*i) != leader).expect("a follower");
    let via = cluster.index_of(&leader);
    cluster.kill(replaced);
    wipe(&cluster, replaced);
    assert_eq!(change_members(&cluster, via, MembershipChange::Remove(cluster.address(replaced))).await, 200);
    cluster.restart(replaced);
    let status = change_members(&cluster, via, MembershipChange::Add(cluster.address(replaced))).await;
    assert_eq!(status, 200, "{}", cluster.logs());
    let view: MembersView = get_ok(&cluster, via, "/api/v1.0/master/members").await;
    assert_eq!(view.voters.len(), 3, "{view:?}");
    cluster.wait_until_ready(Duration::from_secs(20)).await;
    wait_for_equal_states(&cluster).await;
    let apps = apps_and_data(&cluster, replaced).await;
    assert_eq!(apps[&1].data, data(&[("k", "v")]));
}

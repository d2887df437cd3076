//! A full disk under the jar store: the client gets a clear error naming the store and the
//! cause, no partial file stays, no application is registered, and the master keeps serving.
//! A full disk under a master's state directory: its Raft core stops on the storage error, and
//! the master exits (status 75) so its supervisor restarts it, instead of staying up with a
//! dead core and answering 503 forever (found by the nemesis suite, tests/nemesis.rs).
//! Mounting the small tmpfs that plays the full disk needs root (CI runs as root).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{wire, Options, TestCluster};
use gearpump_master::wire::{AppList, ErrorBody, Ready};
use reqwest::multipart;

struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).expect("mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "gearpump-test"])
            .arg(at)
            .status()
            .expect("run mount");
        assert!(status.success(), "mounting a tmpfs at {} failed: this test needs root", at.display());
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test]
async fn a_full_disk_is_a_clear_error_and_leaves_nothing() {
    let mut cluster = TestCluster::start(Options { masters: 1, ..Options::default() });
    // The harness created <dir>/jars for the file:// store: put a 256 KiB file system there.
    let jars = cluster.dir.path().join("jars");
    let _tmpfs = Tmpfs::mount(&jars, "256k");
    cluster.wait_until_ready(Duration::from_secs(20)).await;

    let form = multipart::Form::new()
        .text("mainClass", "Main")
        .part("jar", multipart::Part::bytes(vec![1u8; 1 << 20]).file_name("big.jar"));
    let (status, body) = cluster.submit_form(0, form).await;
    assert_eq!(status, 503);
    let error = wire::<ErrorBody>(&body).error;
    assert!(error.contains("file://") && error.contains("the disk is full"), "{error}");

    let leftovers: Vec<_> =
        std::fs::read_dir(jars.join(".partial")).map(|d| d.flatten().collect()).unwrap_or_default();
    assert!(leftovers.is_empty(), "partial uploads left: {leftovers:?}");
    let (_, list) = cluster.get(0, "/api/v1.0/master/applist").await.expect("list");
    assert_eq!(wire::<AppList>(&list).app_masters.len(), 0);

    // Small jars still fit: the master kept serving.
    let form = multipart::Form::new()
        .text("mainClass", "Main")
        .part("jar", multipart::Part::bytes(vec![2u8; 1024]).file_name("small.jar"));
    assert_eq!(cluster.submit_form(0, form).await.0, 200);
    cluster.kill(0);
}

#[tokio::test]
async fn a_read_only_store_is_a_clear_error() {
    let mut cluster = TestCluster::start(Options { masters: 1, ..Options::default() });
    let jars = cluster.dir.path().join("jars");
    let _tmpfs = Tmpfs::mount(&jars, "1m");
    let status = Command::new("mount").args(["-o", "remount,ro"]).arg(&jars).status().expect("remount");
    assert!(status.success(), "remounting read-only failed");
    cluster.wait_until_ready(Duration::from_secs(20)).await;

    let form = multipart::Form::new()
        .text("mainClass", "Main")
        .part("jar", multipart::Part::bytes(vec![1u8; 1024]).file_name("ro.jar"));
    let (status, body) = cluster.submit_form(0, form).await;
    assert_eq!(status, 503);
    let error = wire::<ErrorBody>(&body).error;
    assert!(error.contains("file://") && error.contains("read-only"), "{error}");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (status, ready) = cluster.get(0, "/health/ready").await.expect("ready");
        let report = wire::<Ready>(&ready).jar_store;
        if report.ok == Some(false) {
            assert_eq!(status, 200, "the master keeps its quorum: {ready}");
            assert!(report.error.as_deref().is_some_and(|e| e.contains("read-only")), "{ready}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the probe never saw the read-only store: {ready}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    cluster.kill(0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_state_disk_stops_the_master_and_a_restart_recovers_it() {
    let mut cluster = TestCluster::start(Options::default());
    cluster.wait_until_ready(Duration::from_secs(20)).await;
    // Move master 2's state onto a small tmpfs: stop it, mount over its directory, put the
    // files back, start it.
    cluster.kill(2);
    let state = cluster.state_dir(2);
    let aside = cluster.dir.path().join("state-aside");
    std::fs::rename(&state, &aside).expect("move the state aside");
    let _tmpfs = Tmpfs::mount(&state, "32m");
    for entry in std::fs::read_dir(&aside).expect("state files").flatten() {
        std::fs::copy(entry.path(), state.join(entry.file_name())).expect("copy a state file");
    }
    cluster.restart(2);
    cluster.wait_until_ready(Duration::from_secs(20)).await;

    let fill = state.join("fill");
    {
        use std::io::Write as _;
        let mut file = std::fs::File::create(&fill).expect("fill file");
        let chunk = vec![0u8; 1 << 16];
        while file.write_all(&chunk).is_ok() {}
        while file.write_all(&chunk[..512]).is_ok() {}
    }
    // Writes through the leader reach master 2's log, which can no longer grow.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut n = 0;
    let code = loop {
        n += 1;
        let _ = cluster
            .http
            .put(cluster.url(0, "/api/v1.0/appmaster/1/data/k"))
            .body(format!("value {n} {}", "x".repeat(4096)))
            .send()
            .await;
        if let Some(child) = cluster.children[2].as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                break status.code();
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "master 2 kept running on a full disk; logs:\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(code, Some(75), "logs:\n{}", cluster.logs());
    cluster.children[2] = None;

    std::fs::remove_file(&fill).expect("free the disk");
    cluster.restart(2);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !cluster.ready(2).await {
        assert!(std::time::Instant::now() < deadline, "master 2 did not recover; logs:\n{}", cluster.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for index in 0..3 {
        cluster.kill(index);
    }
}

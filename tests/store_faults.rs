//! A full disk under the jar store: the client gets a clear error naming the store and the
//! cause, no partial file stays, no application is registered, and the master keeps serving.
//! Mounting the small tmpfs that plays the full disk needs root (CI runs as root).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Options, TestCluster};
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
    let error = body["error"].as_str().expect("error text");
    assert!(error.contains("file://") && error.contains("the disk is full"), "{error}");

    let leftovers: Vec<_> =
        std::fs::read_dir(jars.join(".partial")).map(|d| d.flatten().collect()).unwrap_or_default();
    assert!(leftovers.is_empty(), "partial uploads left: {leftovers:?}");
    let (_, list) = cluster.get(0, "/api/v1.0/master/applist").await.expect("list");
    assert_eq!(list["appMasters"].as_array().map(Vec::len), Some(0));

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
    let error = body["error"].as_str().expect("error text");
    assert!(error.contains("file://") && error.contains("read-only"), "{error}");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (status, ready) = cluster.get(0, "/health/ready").await.expect("ready");
        if ready["jarStore"]["ok"] == false {
            assert_eq!(status, 200, "the master keeps its quorum: {ready}");
            assert!(ready["jarStore"]["error"].as_str().is_some_and(|e| e.contains("read-only")), "{ready}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the probe never saw the read-only store: {ready}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    cluster.kill(0);
}

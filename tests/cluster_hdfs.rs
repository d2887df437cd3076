//! Three masters whose jar store is a real HDFS (MiniDFSCluster): jars submitted with `gear app`
//! survive the leader's death byte-identical, and HDFS going away is a clear error to clients
//! while the masters keep their quorum. Without java or Maven Central this fails: it never skips.

mod common;

use std::time::Duration;

use common::minihdfs::MiniHdfs;
use common::{make_jar, wire, Options, TestCluster};
use gearpump_master::wire::{AppList, Ready, SubmitAnswer};

fn submit_with_gear(
    cluster: &TestCluster,
    jar: &std::path::Path,
    prefix: &str,
) -> Result<SubmitAnswer, String> {
    let (ok, stdout, stderr) = cluster.gear(&[
        "--json",
        "app",
        "-jar",
        jar.to_str().expect("utf8"),
        "-namePrefix",
        prefix,
        "io.x.Main",
        "-x",
    ]);
    if !ok {
        return Err(format!("{stdout}{stderr}"));
    }
    serde_json::from_str(stdout.trim()).map_err(|e| format!("{e}: {stdout}"))
}

/// Waits until the master's background probe reports the jar store as `ok` (or not).
async fn jar_store_health(cluster: &TestCluster, index: usize, ok: bool) -> Ready {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, ready) = cluster.get(index, "/health/ready").await.expect("ready answers");
        let ready: Ready = wire(&ready);
        if ready.jar_store.ok == Some(ok) {
            return ready;
        }
        assert!(std::time::Instant::now() < deadline, "jar store never reported ok={ok}: {ready:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jars_in_hdfs_survive_the_leader_and_an_hdfs_outage_is_explained() {
    let mut hdfs = MiniHdfs::start();
    let root = format!("{}/gearpump/jars", hdfs.uri());
    let mut cluster = TestCluster::start(Options {
        shared_jar_store: false,
        extra_conf: format!("gearpump.jarstore.rootpath = \"{root}\"\ngearpump.jarstore.timeout = 3s"),
        ..Options::default()
    });
    let leader = cluster.wait_until_ready(Duration::from_secs(30)).await;
    let ready = jar_store_health(&cluster, 0, true).await;
    assert!(ready.jar_store.ha, "{ready:?}");

    let mut submitted = Vec::new();
    for n in 0..3u8 {
        let jar = make_jar(cluster.dir.path(), &format!("h{n}.jar"), 3 << 20, n);
        let answer = submit_with_gear(&cluster, &jar, "hdfs-").unwrap_or_else(|e| panic!("submit: {e}"));
        submitted.push((answer.jar, jar));
    }

    let leader_index = cluster.index_of(&leader);
    cluster.kill(leader_index);
    cluster.wait_until_ready(Duration::from_secs(10)).await;
    for survivor in (0..3).filter(|i| cluster.is_running(*i)) {
        for (name, original) in &submitted {
            let out = cluster.dir.path().join(format!("from-{survivor}-{name}"));
            let output = std::process::Command::new(common::GEAR_BIN)
                .args(["--master", &cluster.address(survivor), "download", "--file", name, "-o"])
                .arg(&out)
                .output()
                .expect("gear download");
            assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
            assert_eq!(std::fs::read(&out).expect("downloaded"), std::fs::read(original).expect("original"));
        }
    }

    hdfs.stop();
    let jar = make_jar(cluster.dir.path(), "during-outage.jar", 1 << 20, 9);
    let error = submit_with_gear(&cluster, &jar, "outage-").expect_err("HDFS is down");
    assert!(error.contains(&root) || error.contains("hdfs://"), "the error names the store: {error}");
    let survivor = (0..3).find(|i| cluster.is_running(*i)).expect("survivor");
    let ready = jar_store_health(&cluster, survivor, false).await;
    let (status, _) = cluster.get(survivor, "/health/ready").await.expect("ready answers");
    assert_eq!(status, 200, "the quorum does not depend on the jar store: {ready:?}");
    assert!(ready.jar_store.error.as_deref().is_some_and(|e| e.contains("hdfs://")), "{ready:?}");
    let (_, list) = cluster.get(survivor, "/api/v1.0/master/applist").await.expect("list");
    assert_eq!(wire::<AppList>(&list).app_masters.len(), 3, "no application for a failed upload");

    hdfs.start_again();
    let retried = submit_with_gear(&cluster, &jar, "after-outage-").unwrap_or_else(|e| panic!("retry: {e}"));
    assert_eq!(retried.app_id, 4);
}

//! `daemon::serve` runs a whole master inside another program: three of them in this test's
//! process form a cluster, replicate a submission and a write made through a follower, hand
//! leadership over when the leader is stopped, and come back from their state directories.

mod common;

use std::time::Duration;

use common::in_process::InProcessCluster;
use gearpump_master::wire::AppDataAnswer;

/// Submits application 1 (a small jar) through master `index`.
async fn submit_through(cluster: &InProcessCluster, index: usize) {
    let jar = common::make_jar(cluster.dir.path(), "app.jar", 2048, 7);
    let form = reqwest::multipart::Form::new()
        .text("mainClass", "app.Main")
        .part("jar", reqwest::multipart::Part::bytes(std::fs::read(jar).expect("jar")).file_name("app.jar"));
    let submitted = cluster
        .http
        .post(cluster.url(index, "/api/v1.0/master/submitapp"))
        .multipart(form)
        .send()
        .await
        .expect("submit");
    assert!(submitted.status().is_success(), "submit through master {index}: {}", submitted.status());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_masters_in_one_process_replicate_hand_over_and_restart() {
    let mut cluster = InProcessCluster::start(3, "");
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    let follower = (0..3).find(|i| cluster.address(*i) != leader).expect("a follower");

    submit_through(&cluster, follower).await;
    let written = cluster
        .http
        .put(cluster.url(follower, "/api/v1.0/appmaster/1/data/colour"))
        .body("green")
        .send()
        .await
        .expect("write");
    assert!(written.status().is_success(), "write through a follower: {}", written.status());
    for index in 0..3 {
        let (status, value) = cluster.get(index, "/api/v1.0/appmaster/1/data/colour").await.expect("read");
        assert_eq!(
            (status, common::wire::<AppDataAnswer>(&value).value.as_str()),
            (200, "green"),
            "master {index}"
        );
    }

    // Stopping the leader is SIGTERM's path: leadership handed over, `serve` returns Ok.
    let old = cluster.index_of(&leader);
    assert_eq!(cluster.stop(old), Ok(()));
    let successor = cluster.wait_for_leader(Duration::from_secs(30)).await;
    assert_ne!(successor, leader, "a surviving master leads");

    // Back from its state directory on the same port, it has the write.
    cluster.restart(old);
    cluster.wait_for_leader(Duration::from_secs(30)).await;
    let (status, value) = cluster.get(old, "/api/v1.0/appmaster/1/data/colour").await.expect("read");
    assert_eq!(
        (status, common::wire::<AppDataAnswer>(&value).value.as_str()),
        (200, "green"),
        "the restarted master"
    );
    for index in 0..3 {
        assert_eq!(cluster.stop(index), Ok(()), "master {index} stops cleanly");
    }
}

/// A leader stopped while writes stream in hands leadership over before it goes (Raft's
/// transfer: no new writes, a follower catches up, then campaigns), so even when it is back at
/// once, as after a package upgrade's restart, another master leads and no write failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_stopped_under_writes_hands_over_even_when_restarted_at_once() {
    let mut cluster = InProcessCluster::start(3, "");
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    let follower = (0..3).find(|i| cluster.address(*i) != leader).expect("a follower");
    submit_through(&cluster, follower).await;

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (http, url, stop) =
                (cluster.http.clone(), cluster.url(follower, "/api/v1.0/appmaster/1/data"), stop.clone());
            tokio::spawn(async move {
                let (mut ok, mut failed) = (0u32, Vec::new());
                for i in 0.. {
                    if stop.load(std::sync::atomic::Ordering::SeqCst) {
                        break;
                    }
                    match http.put(format!("{url}/w{w}-{i}")).body("v").send().await {
                        Ok(answer) if answer.status().is_success() => ok += 1,
                        Ok(answer) => failed.push(format!(
                            "{}: {}",
                            answer.status(),
                            answer.text().await.unwrap_or_default()
                        )),
                        Err(error) => failed.push(error.to_string()),
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let old = cluster.index_of(&leader);
    assert_eq!(cluster.stop(old), Ok(()));
    cluster.restart(old);
    let successor = cluster.wait_for_leader(Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for writer in writers {
        let (ok, failed) = writer.await.expect("writer");
        assert!(ok > 0 && failed.is_empty(), "{ok} writes acknowledged, failed: {failed:?}");
    }
    assert_ne!(successor, leader, "the stopped leader handed over; it does not lead after its restart");
}

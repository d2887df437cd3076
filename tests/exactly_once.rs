//! A retried write is applied once (issue: request ids through Raft).
//!
//! Each round sends submissions and application-data writes to the two followers, so each one is
//! forwarded to the leader, and kills the leader 0-30 ms later (SIGKILL, every third round
//! SIGTERM). A leader that commits a forwarded write and dies before answering makes the
//! follower retry through the next leader: before request ids that created a second
//! application about once in sixteen submissions. Checked at the end:
//! - every acknowledged submission exists exactly once, under the id it was acknowledged with,
//!   and no unacknowledged one exists twice;
//! - every data value (each written by one request only) is never seen again by a reader after
//!   another value replaced it: a value that comes back (a, b, a) is a write applied twice.
//!
//! `EXACTLY_ONCE_ROUNDS` sets the number of rounds (default 100).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{make_jar, wire, Options, TestCluster};
use gearpump_master::wire::{AppDataAnswer, AppList, SubmitAnswer};
use reqwest::multipart;
use tokio::task::JoinSet;

const SUBMISSIONS_PER_ROUND: usize = 6;
const WRITES_PER_ROUND: usize = 4;

fn rounds() -> usize {
    std::env::var("EXACTLY_ONCE_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(100)
}

async fn submit(http: reqwest::Client, url: String, jar: Vec<u8>, marker: String) -> Option<u64> {
    let form = multipart::Form::new()
        .text("mainClass", "io.x.Marker")
        .text("namePrefix", marker)
        .part("jar", multipart::Part::bytes(jar).file_name("marker.jar"));
    let response = http.post(url).multipart(form).send().await.ok()?;
    if response.status() != 200 {
        return None;
    }
    response.json::<SubmitAnswer>().await.ok().map(|answer| u64::from(answer.app_id))
}

async fn put(http: reqwest::Client, url: String, value: String) -> bool {
    matches!(http.put(url).body(value).send().await, Ok(r) if r.status() == 200)
}

/// Polls one key with linearizable reads and records every value seen, in order.
async fn watch(
    http: reqwest::Client,
    urls: Vec<String>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    let mut i = 0;
    while !*stop.borrow() {
        i += 1;
        if let Ok(response) = http.get(&urls[i % urls.len()]).send().await {
            if response.status() == 200 {
                if let Ok(body) = response.json::<AppDataAnswer>().await {
                    if seen.last() != Some(&body.value) {
                        seen.push(body.value);
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_death_during_forwarded_writes_applies_each_request_once() {
    let mut cluster = TestCluster::start(Options::default());
    cluster.wait_until_ready(Duration::from_secs(20)).await;
    let jar_path = make_jar(cluster.dir.path(), "marker.jar", 2048, 7);
    let jar = std::fs::read(&jar_path).expect("read jar");
    // Application 1 holds the data keys.
    let first = submit(
        cluster.http.clone(),
        cluster.url(0, "/api/v1.0/master/submitapp"),
        jar.clone(),
        "data-".into(),
    )
    .await;
    assert_eq!(first, Some(1), "{}", cluster.logs());

    let mut acknowledged: BTreeMap<String, u64> = BTreeMap::new();
    let mut sent_markers = Vec::new();
    let mut histories: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let (mut sigkills, mut sigterms) = (0, 0);
    for round in 0..rounds() {
        let leader = cluster.wait_until_ready(Duration::from_secs(30)).await;
        let leader_index = cluster.index_of(&leader);
        let followers: Vec<usize> = (0..3).filter(|i| *i != leader_index).collect();
        let key = format!("k{round:03}");
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let read_urls: Vec<String> =
            followers.iter().map(|f| cluster.url(*f, &format!("/api/v1.0/appmaster/1/data/{key}"))).collect();
        let watcher = tokio::spawn(watch(cluster.http.clone(), read_urls, stop_rx));

        let mut submissions = JoinSet::new();
        for j in 0..SUBMISSIONS_PER_ROUND {
            let marker = format!("r{round:03}s{j}-");
            sent_markers.push(marker.clone());
            let url = cluster.url(followers[j % 2], "/api/v1.0/master/submitapp");
            let (http, jar) = (cluster.http.clone(), jar.clone());
            submissions.spawn(async move { (marker.clone(), submit(http, url, jar, marker).await) });
        }
        let mut writes = JoinSet::new();
        for j in 0..WRITES_PER_ROUND {
            let url = cluster.url(followers[j % 2], &format!("/api/v1.0/appmaster/1/data/{key}"));
            let (http, value) = (cluster.http.clone(), format!("{key}-v{j}"));
            writes.spawn(async move {
                // Spread the writes over the kill so some land before it, some across it.
                tokio::time::sleep(Duration::from_millis(j as u64 * 8)).await;
                put(http, url, value).await
            });
        }
        tokio::time::sleep(Duration::from_millis(rand::random::<u64>() % 31)).await;
        if round % 3 == 2 {
            cluster.terminate(leader_index);
            sigterms += 1;
        } else {
            cluster.kill(leader_index);
            sigkills += 1;
        }
        while let Some(joined) = submissions.join_next().await {
            let (marker, app_id) = joined.expect("submission task");
            if let Some(app_id) = app_id {
                acknowledged.insert(marker, app_id);
            }
        }
        while writes.join_next().await.is_some() {}
        cluster.restart(leader_index);
        cluster.wait_until_ready(Duration::from_secs(30)).await;
        // Let the readers see the settled value through the new leader too.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _ = stop_tx.send(true);
        histories.insert(key, watcher.await.expect("watcher task"));
    }

    let (status, list) = cluster.get(0, "/api/v1.0/master/applist").await.expect("applist");
    assert_eq!(status, 200, "{list}");
    let mut by_marker: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for app in wire::<AppList>(&list).app_masters {
        let name = app.app_name;
        let id = u64::from(app.app_id);
        if let Some(marker) = sent_markers.iter().find(|m| name == format!("{m}{id}")) {
            by_marker.entry(marker.clone()).or_default().push(id);
        }
    }
    let mut duplicated = Vec::new();
    for marker in &sent_markers {
        let ids = by_marker.get(marker).cloned().unwrap_or_default();
        if ids.len() > 1 {
            duplicated.push(format!("{marker} -> {ids:?}"));
        }
        if let Some(acked) = acknowledged.get(marker) {
            assert_eq!(ids, vec![*acked], "acknowledged submission {marker} must exist once, as {acked}");
        }
    }
    assert!(duplicated.is_empty(), "submissions applied twice: {duplicated:?}");

    let mut reappeared = Vec::new();
    for (key, seen) in &histories {
        for (i, value) in seen.iter().enumerate() {
            if seen[..i].contains(value) {
                reappeared.push(format!("{key}: {seen:?}"));
                break;
            }
        }
    }
    assert!(reappeared.is_empty(), "a data write was applied twice (a, b, a): {reappeared:?}");

    let (_, metrics) = cluster.get(0, "/metrics").await.expect("metrics");
    let repeats = metrics
        .as_str()
        .and_then(|text| text.lines().find(|l| l.starts_with("gearpump_master_repeated_requests_total ")))
        .unwrap_or("gearpump_master_repeated_requests_total ?")
        .to_string();
    println!(
        "{} rounds ({sigkills} SIGKILL, {sigterms} SIGTERM): {} of {} submissions acknowledged, none twice; {} keys watched; {repeats}",
        rounds(),
        acknowledged.len(),
        sent_markers.len(),
        histories.len(),
    );
}

//! Submit → fork: the time from sending `submitapp` to the worker forking the application's JVM
//! (the mtime of the attempt's `pgid` file, written right after the spawn; JVM start-up is not
//! included). One worker, 3 masters on loopback; the application is examples/java/Ticker.java
//! told to exit 0 after its first line, and the next submission waits until it ended.
//! `cargo bench --bench submit_fork -- [--submissions N]` (needs javac and jar)

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use support::*;

struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ticker_jar(dir: &Path) -> std::path::PathBuf {
    let classes = dir.join("classes");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/java/Ticker.java");
    assert!(Command::new("javac").arg("-d").arg(&classes).arg(&source).status().expect("javac").success());
    let jar = dir.join("ticker.jar");
    let status =
        Command::new("jar").arg("--create").arg("--file").arg(&jar).arg("-C").arg(&classes).arg(".").status();
    assert!(status.expect("jar").success());
    jar
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let submissions: usize = arg_value("--submissions").and_then(|r| r.parse().ok()).unwrap_or(100);
    println!("machine: {}; {submissions} submissions, one at a time", machine_line());
    let cluster = TestCluster::start(Options::default());
    cluster.wait_until_ready(Duration::from_secs(30)).await;
    let state = cluster.dir.path().join("worker");
    let log = std::fs::File::create(cluster.dir.path().join("worker.log")).expect("log");
    let _worker = Guard(
        Command::new(env!("CARGO_BIN_EXE_gearpump-worker"))
            .arg("--config")
            .arg(&cluster.conf)
            .arg("--state-dir")
            .arg(&state)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start gearpump-worker"),
    );
    let jar = std::fs::read(ticker_jar(cluster.dir.path())).expect("jar");
    let mut samples = Vec::new();
    for n in 0..submissions {
        let out = cluster.dir.path().join(format!("out-{n}"));
        let args = serde_json::to_string(&[out.display().to_string(), "0".to_string()]).expect("args");
        let form = reqwest::multipart::Form::new()
            .part("jar", reqwest::multipart::Part::bytes(jar.clone()).file_name("ticker.jar"))
            .text("mainClass", "Ticker")
            .text("args", args);
        let sent = SystemTime::now();
        let (status, body) = cluster.submit_form(0, form).await;
        assert_eq!(status, 200, "submit: {body}");
        let id = common::wire::<gearpump_master::wire::SubmitAnswer>(&body).app_id;
        let pgid = state.join("attempts").join(format!("app-{id}-attempt-1")).join("pgid");
        let deadline = Instant::now() + Duration::from_secs(30);
        let forked = loop {
            if let Ok(at) = std::fs::metadata(&pgid).and_then(|m| m.modified()) {
                break at;
            }
            assert!(Instant::now() < deadline, "application {id} was not forked within 30 s");
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        let took = forked.duration_since(sent).unwrap_or_default();
        samples.push(took);
        // one JVM at a time: wait until this one wrote its line and exited
        while !out.exists() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    println!("submit -> fork over {} submissions: {}", samples.len(), p50_p99_max(&mut samples));
}

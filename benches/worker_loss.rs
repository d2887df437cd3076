//! Worker loss → next attempt: SIGKILL the worker that runs an application and measure the time
//! until its next attempt is forked on another worker (the mtime of that attempt's `pgid` file;
//! JVM start-up excluded), against the target of 2 × gearpump.master.worker-loss-timeout.
//! Two workers (the killed one restarted between rounds), 3 masters on loopback, default timings.
//! `cargo bench --bench worker_loss -- [--rounds N]` (needs javac and jar)

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use support::*;

fn ticker_jar(dir: &Path) -> PathBuf {
    let classes = dir.join("classes");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/java/Ticker.java");
    assert!(Command::new("javac").arg("-d").arg(&classes).arg(&source).status().expect("javac").success());
    let jar = dir.join("ticker.jar");
    let status =
        Command::new("jar").arg("--create").arg("--file").arg(&jar).arg("-C").arg(&classes).arg(".").status();
    assert!(status.expect("jar").success());
    jar
}

struct Workers {
    conf: PathBuf,
    dirs: Vec<PathBuf>,
    children: Vec<Option<Child>>,
}

impl Workers {
    fn spawn(&mut self, index: usize) {
        let child = Command::new(env!("CARGO_BIN_EXE_gearpump-worker"))
            .arg("--config")
            .arg(&self.conf)
            .arg("--state-dir")
            .arg(&self.dirs[index])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start gearpump-worker");
        self.children[index] = Some(child);
    }

    /// The newest `pgid` file of `app` under any worker: (attempt, forked at, worker index).
    fn latest_fork(&self, app: u64) -> Option<(u32, SystemTime, usize)> {
        let mut best: Option<(u32, SystemTime, usize)> = None;
        for (index, dir) in self.dirs.iter().enumerate() {
            let Ok(entries) = std::fs::read_dir(dir.join("attempts")) else { continue };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let Some(attempt) = name.strip_prefix(&format!("app-{app}-attempt-")) else { continue };
                let Ok(attempt) = attempt.parse::<u32>() else { continue };
                let Ok(at) = std::fs::metadata(entry.path().join("pgid")).and_then(|m| m.modified()) else {
                    continue;
                };
                if best.is_none_or(|(a, _, _)| attempt > a) {
                    best = Some((attempt, at, index));
                }
            }
        }
        best
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rounds: usize = arg_value("--rounds").and_then(|r| r.parse().ok()).unwrap_or(10);
    println!("machine: {}; {rounds} worker kills, worker-loss-timeout 5 s (default)", machine_line());
    let cluster = TestCluster::start(Options::default());
    cluster.wait_until_ready(Duration::from_secs(30)).await;
    let dirs = (0..2).map(|i| cluster.dir.path().join(format!("worker-{i}"))).collect();
    let mut workers = Workers { conf: cluster.conf.clone(), dirs, children: vec![None, None] };
    workers.spawn(0);
    workers.spawn(1);
    let jar = std::fs::read(ticker_jar(cluster.dir.path())).expect("jar");
    let out = cluster.dir.path().join("ticks");
    let args = serde_json::to_string(&[out.display().to_string()]).expect("args");
    let form = reqwest::multipart::Form::new()
        .part("jar", reqwest::multipart::Part::bytes(jar).file_name("ticker.jar"))
        .text("mainClass", "Ticker")
        .text("args", args);
    let (status, body) = cluster.submit_form(0, form).await;
    assert_eq!(status, 200, "submit: {body}");
    let app = u64::from(common::wire::<gearpump_master::wire::SubmitAnswer>(&body).app_id);
    let mut samples = Vec::new();
    for round in 0..rounds {
        let deadline = Instant::now() + Duration::from_secs(60);
        let (attempt, _, holder) = loop {
            if let Some(fork) = workers.latest_fork(app) {
                if fork.0 as usize > round {
                    break fork;
                }
            }
            assert!(Instant::now() < deadline, "no attempt {} forked", round + 1);
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        let killed = SystemTime::now();
        if let Some(mut child) = workers.children[holder].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let next = loop {
            if let Some(fork) = workers.latest_fork(app) {
                if fork.0 > attempt {
                    break fork;
                }
            }
            assert!(Instant::now() < deadline, "no attempt after {attempt} within 60 s");
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let took = next.1.duration_since(killed).unwrap_or_default();
        eprintln!("  round {}: attempt {} forked on worker {} after {}", round + 1, next.0, next.2, ms(took));
        samples.push(took);
        workers.spawn(holder);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    println!(
        "worker SIGKILL -> next attempt forked, {} kills: {} (target < 10 s)",
        samples.len(),
        p50_p99_max(&mut samples)
    );
}

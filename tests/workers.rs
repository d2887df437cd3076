//! Workers running applications: 3 masters and 2 workers as real processes on loopback, the
//! application a small Java program (examples/java/Ticker.java) that appends a timestamped line
//! every 100 ms, so overlapping attempts would show in its output.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::certs::TlsPaths;
use common::{wire, Options, TestCluster};
use gearpump_master::state::{Attempt, AttemptOutcome};
use gearpump_master::wire::{
    AppDetail, AppState, ErrorBody, MasterAnswer, SubmitAnswer, WorkerList, WorkerSummary,
};
use gearpump_master::worker::protocol::HeartbeatAnswer;
use gearpump_master::worker::protocol::{ExitReport, Heartbeat, HEARTBEAT};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

const WORKER_BIN: &str = env!("CARGO_BIN_EXE_gearpump-worker");

/// Short timings so a loss is declared in seconds: fence 1.5 s, loss 2.5 s (> 1.5 s + 0.2 s).
const TIMING: &str = "gearpump.worker.heartbeat-interval = 200ms\n\
                      gearpump.worker.fence-timeout = 1500ms\n\
                      gearpump.master.worker-loss-timeout = 2500ms\n\
                      gearpump.application.total-retries = 2\n\
                      gearpump.worker.slots = 4\n";

struct Workers {
    children: Vec<Option<Child>>,
    dirs: Vec<PathBuf>,
    /// Each worker's gear.conf.
    confs: Vec<PathBuf>,
    logs: Vec<PathBuf>,
}

impl Workers {
    fn start(cluster: &TestCluster, count: usize) -> Workers {
        Workers::start_with(cluster, vec![cluster.conf.clone(); count])
    }

    /// One worker per configuration file.
    fn start_with(cluster: &TestCluster, confs: Vec<PathBuf>) -> Workers {
        let count = confs.len();
        let mut workers = Workers { children: Vec::new(), dirs: Vec::new(), confs, logs: Vec::new() };
        for index in 0..count {
            workers.dirs.push(cluster.dir.path().join(format!("worker-{index}")));
            workers.logs.push(cluster.dir.path().join(format!("worker-{index}.log")));
            let child = workers.spawn(index);
            workers.children.push(Some(child));
        }
        workers
    }

    fn spawn(&self, index: usize) -> Child {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.logs[index]).expect("log");
        let log_err = log.try_clone().expect("log");
        Command::new(WORKER_BIN)
            .arg("--config")
            .arg(&self.confs[index])
            .arg("--state-dir")
            .arg(&self.dirs[index])
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .spawn()
            .expect("start gearpump-worker")
    }

    fn pid(&self, index: usize) -> Pid {
        Pid::from_raw(self.children[index].as_ref().expect("worker runs").id() as i32)
    }

    fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.children[index].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn restart(&mut self, index: usize) {
        let child = self.spawn(index);
        self.children[index] = Some(child);
    }

    /// Which worker process has this id (from the id file each worker keeps).
    fn index_of(&self, worker_id: u64) -> usize {
        (0..self.dirs.len())
            .find(|i| {
                std::fs::read_to_string(self.dirs[*i].join("worker-id"))
                    .is_ok_and(|t| t.trim() == worker_id.to_string())
            })
            .expect("a worker with that id")
    }

    fn logs(&self) -> String {
        self.logs
            .iter()
            .map(|p| format!("--- {} ---\n{}", p.display(), std::fs::read_to_string(p).unwrap_or_default()))
            .collect()
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGCONT);
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Compiles examples/java/Ticker.java into a jar under `dir`.
fn ticker_jar(dir: &Path) -> PathBuf {
    let classes = dir.join("classes");
    std::fs::create_dir_all(&classes).expect("classes dir");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/java/Ticker.java");
    let status = Command::new("javac").arg("-d").arg(&classes).arg(&source).status().expect("run javac");
    assert!(status.success(), "javac failed");
    let jar = dir.join("ticker.jar");
    let status = Command::new("jar")
        .arg("cf")
        .arg(&jar)
        .arg("-C")
        .arg(&classes)
        .arg("Ticker.class")
        .status()
        .expect("run jar");
    assert!(status.success(), "jar failed");
    jar
}

async fn submit(cluster: &TestCluster, jar: &Path, main_class: &str, args: &[&str]) -> u64 {
    let bytes = std::fs::read(jar).expect("read jar");
    let form = reqwest::multipart::Form::new()
        .part("jar", reqwest::multipart::Part::bytes(bytes).file_name("ticker.jar"))
        .text("mainClass", main_class.to_string())
        .text("args", serde_json::to_string(args).expect("args"));
    let (status, body) = cluster.submit_form(0, form).await;
    assert_eq!(status, 200, "submit: {body}");
    u64::from(wire::<SubmitAnswer>(&body).app_id)
}

/// The application as any running master sees it (`None` while none answers).
async fn app(cluster: &TestCluster, id: u64) -> Option<AppDetail> {
    for index in 0..cluster.ports.len() {
        if !cluster.is_running(index) {
            continue;
        }
        if let Ok((200, body)) = cluster.get(index, &format!("/api/v1.0/appmaster/{id}")).await {
            return Some(wire(&body));
        }
    }
    None
}

async fn wait_for(
    cluster: &TestCluster,
    workers: &Workers,
    id: u64,
    what: &str,
    condition: impl Fn(&AppDetail) -> bool,
) -> AppDetail {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let body = app(cluster, id).await;
        if let Some(body) = body.as_ref().filter(|body| condition(body)) {
            return body.clone();
        }
        if Instant::now() > deadline {
            panic!(
                "application {id}: {what} did not happen; last seen {body:#?}\n{}\n{}",
                cluster.logs(),
                workers.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn attempts(app: &AppDetail) -> &Vec<Attempt> {
    &app.app.attempts
}

/// The attempt's process id (it has started).
fn pid_of(attempt: &Attempt) -> u64 {
    u64::from(attempt.pid.unwrap_or_else(|| panic!("attempt {} has no process", attempt.attempt)))
}

/// The application record as its JSON text, to look for what it says.
fn text(app: &AppDetail) -> String {
    serde_json::to_string(app).expect("serialize")
}

/// Attempt `n` is live and its process started.
fn started(app: &AppDetail, n: usize) -> bool {
    app.app.status == AppState::Active
        && attempts(app).len() == n
        && attempts(app)[n - 1].started_ms.is_some()
        && attempts(app)[n - 1].ended_ms.is_none()
}

fn alive(pid: u64) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}

async fn wait_gone(pid: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while alive(pid) {
        assert!(Instant::now() < deadline, "process {pid} is still running");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// (timestamp, attempt) of every line of the Ticker's output.
fn ticks(path: &Path) -> Vec<(u64, u64)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let ts = fields.next()?.parse().ok()?;
            let _app = fields.next()?;
            let attempt = fields.next()?.parse().ok()?;
            Some((ts, attempt))
        })
        .collect()
}

/// The last line of attempt `a` is older than the first of attempt `b`: no overlap.
fn assert_no_overlap(path: &Path, a: u64, b: u64) {
    let ticks = ticks(path);
    let last_a = ticks.iter().filter(|(_, n)| *n == a).map(|(ts, _)| *ts).max().expect("attempt a wrote");
    let first_b = ticks.iter().filter(|(_, n)| *n == b).map(|(ts, _)| *ts).min().expect("attempt b wrote");
    assert!(
        last_a < first_b,
        "attempts {a} and {b} overlapped: {a} wrote at {last_a}, {b} started at {first_b}"
    );
    println!("gap between attempt {a} and {b}: {} ms", first_b - last_a);
}

async fn wait_ticks(path: &Path, attempt: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ticks(path).iter().any(|(_, n)| *n == attempt) {
        assert!(Instant::now() < deadline, "attempt {attempt} never wrote to {}", path.display());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn start(dir_conf: &str) -> TestCluster {
    TestCluster::start(Options { extra_conf: dir_conf.to_string(), ..Options::default() })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_runs_moves_off_a_killed_worker_survives_master_failover_and_is_killed() {
    let mut cluster = start(TIMING);
    cluster.wait_until_ready(Duration::from_secs(30)).await;
    let mut workers = Workers::start(&cluster, 2);
    let jar = ticker_jar(cluster.dir.path());
    let out = cluster.dir.path().join("ticks.txt");
    let id = submit(&cluster, &jar, "Ticker", &[out.to_str().expect("utf-8")]).await;

    let body = wait_for(&cluster, &workers, id, "attempt 1 active", |a| started(a, 1)).await;
    let first = &attempts(&body)[0];
    let pid1 = pid_of(first);
    assert!(alive(pid1), "the application's process {pid1} runs");
    wait_ticks(&out, 1).await;

    // The worker dies: its fence stops the JVM, the leader restarts it on the other worker.
    let victim = workers.index_of(u64::from(first.worker_id));
    workers.kill(victim);
    let body = wait_for(&cluster, &workers, id, "attempt 2 active", |a| started(a, 2)).await;
    let second = &attempts(&body)[1];
    assert_ne!(second.worker_id, first.worker_id, "attempt 2 runs on the other worker");
    assert_eq!(attempts(&body)[0].outcome, Some(AttemptOutcome::WorkerLost));
    wait_gone(pid1).await;
    wait_ticks(&out, 2).await;
    assert_no_overlap(&out, 1, 2);
    let pid2 = pid_of(second);

    // The leader master dies: the application keeps its process.
    let leader = cluster.wait_until_ready(Duration::from_secs(30)).await;
    let leader_index = cluster.index_of(&leader);
    cluster.kill(leader_index);
    let deadline = Instant::now() + Duration::from_secs(30);
    while cluster.wait_until_ready(Duration::from_secs(30)).await == leader {
        assert!(Instant::now() < deadline, "no new leader");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(alive(pid2), "the application's process survived the master fail-over");
    let body = app(&cluster, id).await.expect("the application");
    assert!(started(&body, 2), "still attempt 2 after the fail-over: {body:#?}");
    assert_eq!(pid_of(&attempts(&body)[1]), pid2, "same process");

    // Its later exit is recorded by the new leader, and the policy restarts it.
    kill(Pid::from_raw(pid2 as i32), Signal::SIGTERM).expect("SIGTERM the application");
    let body = wait_for(&cluster, &workers, id, "attempt 3 active", |a| started(a, 3)).await;
    let outcome = serde_json::to_string(&attempts(&body)[1].outcome).expect("serialize");
    assert!(outcome.contains("143") || outcome.contains("signal"), "{outcome}");
    let pid3 = pid_of(&attempts(&body)[2]);

    // gear kill stops the process.
    let (ok, stdout, stderr) = cluster.gear(&["kill", "-appid", &id.to_string()]);
    assert!(ok, "gear kill: {stdout} {stderr}");
    wait_gone(pid3).await;
    let body = app(&cluster, id).await.expect("the application");
    assert_eq!(body.app.status, AppState::Terminated);
    drop(workers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashing_and_broken_apps_fail_after_total_retries_with_the_jvm_message() {
    // With a cluster secret: heartbeats (a peer route) and log fetches from workers carry it.
    let secret_dir = tempfile::tempdir().expect("dir");
    let secret = secret_dir.path().join("cluster.secret");
    std::fs::write(&secret, "0123456789abcdef-worker-test").expect("secret");
    let cluster = start(&format!("{TIMING}gearpump.master.secret-file = \"{}\"\n", secret.display()));
    cluster.wait_until_ready(Duration::from_secs(30)).await;
    let workers = Workers::start(&cluster, 2);
    let jar = ticker_jar(cluster.dir.path());
    let out = cluster.dir.path().join("crash.txt");
    let crashing = submit(&cluster, &jar, "Ticker", &[out.to_str().expect("utf-8"), "1"]).await;
    let missing = submit(&cluster, &jar, "NoSuchMain", &[]).await;
    let not_a_jar = common::make_jar(cluster.dir.path(), "garbage.jar", 4096, 7);
    let garbage = submit(&cluster, &not_a_jar, "Ticker", &[]).await;

    let body = wait_for(&cluster, &workers, crashing, "failed", |a| a.app.status == AppState::Failed).await;
    assert_eq!(attempts(&body).len(), 3, "total-retries = 2: three attempts");
    for attempt in attempts(&body) {
        assert!(matches!(attempt.outcome, Some(AttemptOutcome::Exited { code: 1, .. })), "{attempt:?}");
    }
    assert!(text(&body).contains("exiting with status 1"), "the log tail is in the record: {body:?}");

    let body = wait_for(&cluster, &workers, missing, "failed", |a| a.app.status == AppState::Failed).await;
    assert_eq!(attempts(&body).len(), 3);
    assert!(text(&body).contains("NoSuchMain"), "the JVM's message names the class: {body:?}");

    let body = wait_for(&cluster, &workers, garbage, "failed", |a| a.app.status == AppState::Failed).await;
    assert_eq!(attempts(&body).len(), 3);
    assert!(text(&body).contains("Could not find or load main class"), "the JVM's message: {body:?}");

    // The log is readable through any master, and through gear.
    let (status, text) =
        cluster.get(1, &format!("/api/v1.0/appmaster/{missing}/log?attempt=1")).await.expect("log");
    assert_eq!(status, 200, "{text}");
    assert!(text.to_string().contains("NoSuchMain"), "{text}");
    let record = app(&cluster, missing).await.expect("the application");
    let worker_log = attempts(&record)[0].log_address.clone().expect("log address");
    let url = format!("http://{worker_log}/log?app={missing}&attempt=1");
    let refused = cluster.http.get(url).send().await.expect("ask the worker directly");
    assert_eq!(refused.status(), 401, "the worker's log server wants the cluster secret");
    let (ok, stdout, stderr) = cluster.gear(&["log", "-appid", &missing.to_string()]);
    assert!(ok && stdout.contains("NoSuchMain"), "gear log: {stdout} {stderr}");
    let (ok, stdout, stderr) = cluster.gear(&["info"]);
    assert!(
        ok && stdout.contains("NoSuchMain") && stdout.contains("exiting with status 1"),
        "gear info: {stdout} {stderr}"
    );

    // Every master answers the worker list (followers ask the leader).
    for index in 0..3 {
        let (status, list) = cluster.get(index, "/api/v1.0/master/workerlist").await.expect("workerlist");
        assert_eq!(status, 200, "{list}");
        assert_eq!(wire::<WorkerList>(&list).workers.len(), 2, "{list}");
    }
    let worker_id = list_worker_id(&cluster).await;
    let (status, worker) = cluster.get(2, &format!("/api/v1.0/worker/{worker_id}")).await.expect("worker");
    assert_eq!(status, 200, "{worker}");
    let worker: WorkerSummary = wire(&worker);
    assert_eq!(u64::from(worker.worker_id), worker_id);
    assert_eq!(worker.slots, 4);
    let (ok, stdout, stderr) = cluster.gear(&["workers"]);
    assert!(ok && stdout.lines().count() == 3, "gear workers: {stdout} {stderr}");

    // More slots than any worker has: refused, naming the largest worker.
    let form = reqwest::multipart::Form::new()
        .part("jar", reqwest::multipart::Part::bytes(std::fs::read(&jar).expect("jar")).file_name("t.jar"))
        .text("mainClass", "Ticker")
        .text("slots", "5");
    let (status, body) = cluster.submit_form(1, form).await;
    assert_eq!(status, 400, "{body}");
    let error = wire::<ErrorBody>(&body).error;
    assert!(error.contains("largest worker") && error.contains("has 4"), "{body}");
    let (ok, stdout, stderr) =
        cluster.gear(&["app", "-jar", jar.to_str().expect("utf-8"), "-slots", "5", "Ticker"]);
    assert!(!ok && stderr.contains("largest worker"), "gear app -slots 5: {stdout} {stderr}");

    // A heartbeat sent to a follower is forwarded to the leader; without the secret it is refused.
    let leader = cluster.wait_until_ready(Duration::from_secs(30)).await;
    let follower = (0..3).find(|i| cluster.address(*i) != leader).expect("a follower");
    let heartbeat = serde_json::json!({
        "workerId": null, "host": "probe", "slots": 1, "freeSlots": 1, "logAddress": "127.0.0.1:9",
        "running": [], "exits": [], "stopping": true
    });
    let url = cluster.url(follower, "/peer/worker/heartbeat");
    let refused = cluster.http.post(&url).json(&heartbeat).send().await.expect("heartbeat");
    assert_eq!(refused.status(), 401);
    let secret_text = std::fs::read_to_string(&secret).expect("secret");
    let answer = cluster
        .http
        .post(&url)
        .header("x-gearpump-cluster-secret", secret_text.trim())
        .json(&heartbeat)
        .send()
        .await
        .expect("heartbeat");
    assert_eq!(answer.status(), 200);
    let answer: HeartbeatAnswer = answer.json().await.expect("answer");
    assert_eq!(answer.worker_id, 2, "a third worker id, allocated through Raft: {answer:?}");
    assert!(answer.assigned.is_empty(), "{answer:?}");
}

async fn list_worker_id(cluster: &TestCluster) -> u64 {
    let (_, list) = cluster.get(0, "/api/v1.0/master/workerlist").await.expect("workerlist");
    let list: WorkerList = wire(&list);
    u64::from(list.workers.first().unwrap_or_else(|| panic!("no worker in {list:?}")).worker_id)
}

/// Runs a worker that is expected to exit by itself: (exit code, stderr).
fn run_worker_once(conf: &Path, state_dir: &Path) -> (Option<i32>, String) {
    let output = Command::new(WORKER_BIN)
        .arg("--config")
        .arg(conf)
        .arg("--state-dir")
        .arg(state_dir)
        .output()
        .expect("run worker");
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn a_worker_without_java_or_with_overlapping_timeouts_exits_78() {
    let dir = tempfile::tempdir().expect("dir");
    let conf = dir.path().join("gear.conf");
    std::fs::write(&conf, "gearpump.worker.java = \"/nonexistent/java\"\n").expect("conf");
    let (code, stderr) = run_worker_once(&conf, &dir.path().join("w"));
    assert_eq!(code, Some(78), "{stderr}");
    assert!(stderr.contains("/nonexistent/java") && stderr.contains("gearpump.worker.java"), "{stderr}");

    // The gearpump-worker { ... } section overlays the base keys for the worker.
    let text = "gearpump.worker.slots = 3\ngearpump-worker { gearpump.worker.slots = 7 }\n";
    std::fs::write(&conf, text).expect("conf");
    let output =
        Command::new(WORKER_BIN).arg("--config").arg(&conf).arg("--check-config").output().expect("run");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("gearpump.worker.slots                = 7"),
        "{stdout}"
    );

    let text = "gearpump.worker.fence-timeout = 3s\ngearpump.master.worker-loss-timeout = 3s\n";
    std::fs::write(&conf, text).expect("conf");
    for binary in [WORKER_BIN, common::MASTER_BIN] {
        let output =
            Command::new(binary).arg("--config").arg(&conf).arg("--check-config").output().expect("run");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(78), "{binary}: {stderr}");
        let at = format!("{}:2:1", conf.display());
        assert!(stderr.contains(&at) && stderr.contains("gearpump.master.worker-loss-timeout"), "{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_worker_fences_itself_and_a_restarted_worker_stops_stale_attempts() {
    let cluster = start(TIMING);
    cluster.wait_until_ready(Duration::from_secs(30)).await;
    let mut workers = Workers::start(&cluster, 2);
    let jar = ticker_jar(cluster.dir.path());
    let out = cluster.dir.path().join("fence.txt");
    let id = submit(&cluster, &jar, "Ticker", &[out.to_str().expect("utf-8")]).await;
    let body = wait_for(&cluster, &workers, id, "attempt 1 active", |a| started(a, 1)).await;
    let first = attempts(&body)[0].clone();
    let pid1 = pid_of(&first);
    wait_ticks(&out, 1).await;

    // SIGSTOP: the worker cannot act, its fence process kills the JVM before the leader gives
    // up on the worker and starts attempt 2 elsewhere.
    let frozen = workers.index_of(u64::from(first.worker_id));
    kill(workers.pid(frozen), Signal::SIGSTOP).expect("SIGSTOP");
    let body = wait_for(&cluster, &workers, id, "attempt 2 active", |a| started(a, 2)).await;
    wait_gone(pid1).await;
    wait_ticks(&out, 2).await;
    assert_no_overlap(&out, 1, 2);
    kill(workers.pid(frozen), Signal::SIGCONT).expect("SIGCONT");
    let second = attempts(&body)[1].clone();
    let pid2 = pid_of(&second);

    // A worker that dies together with its fence leaves the JVM behind; restarted, it stops it.
    let holder = workers.index_of(u64::from(second.worker_id));
    for fence in fence_processes(pid2) {
        let _ = kill(Pid::from_raw(fence), Signal::SIGKILL);
    }
    workers.kill(holder);
    assert!(alive(pid2), "the JVM outlived its worker and fence");
    workers.restart(holder);
    wait_gone(pid2).await;
    let body = wait_for(&cluster, &workers, id, "attempt 3 active", |a| started(a, 3)).await;
    let restarts = body.app.restarts;

    // A restart request and a cleanly stopped worker move the application without counting
    // against its restart policy.
    let (ok, stdout, stderr) = cluster.gear(&["restart", "-appid", &id.to_string()]);
    assert!(ok && stdout.contains("attempt stopped"), "gear restart: {stdout} {stderr}");
    let body = wait_for(&cluster, &workers, id, "attempt 4 active", |a| started(a, 4)).await;
    let outcome = |n: usize| serde_json::to_string(&attempts(&body)[n].outcome).expect("serialize");
    assert!(outcome(2).contains("restart requested"), "{body:#?}");
    let holder = workers.index_of(u64::from(attempts(&body)[3].worker_id));
    let pid4 = pid_of(&attempts(&body)[3]);
    kill(workers.pid(holder), Signal::SIGTERM).expect("SIGTERM the worker");
    let body = wait_for(&cluster, &workers, id, "attempt 5 active", |a| started(a, 5)).await;
    assert!(!alive(pid4));
    let outcome = serde_json::to_string(&attempts(&body)[3].outcome).expect("serialize");
    assert!(outcome.contains("its worker was stopped"), "{body:#?}");
    assert_ne!(attempts(&body)[4].worker_id, attempts(&body)[3].worker_id);
    assert_eq!(body.app.restarts, restarts, "neither counted as a failure");
}

/// Pids of `gearpump-worker __fence` processes guarding process group `pgid`.
fn fence_processes(pgid: u64) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        if args.iter().any(|a| *a == b"__fence")
            && args.get(4).is_some_and(|a| *a == pgid.to_string().as_bytes())
        {
            found.push(pid);
        }
    }
    found
}

/// The heartbeat a worker would send, as JSON.
fn heartbeat(worker_id: Option<u32>, host: &str, exits: Vec<ExitReport>) -> Value {
    let beat = Heartbeat {
        worker_id,
        host: host.into(),
        slots: 4,
        free_slots: 4,
        log_address: format!("{host}:9"),
        running: Vec::new(),
        exits,
        preparing: Vec::new(),
        stopping: false,
        wait_ms: 0,
    };
    serde_json::to_value(beat).expect("heartbeat")
}

/// POSTs `body` with the cluster secret, as a worker of the secured cluster does.
async fn post(client: &reqwest::Client, url: String, body: &Value) -> Result<(u16, Value), String> {
    let request =
        client.post(url).json(body).header(gearpump_master::cluster::SECRET_HEADER, common::certs::SECRET);
    let response = request.send().await.map_err(|e| format!("{e:?}"))?;
    let status = response.status().as_u16();
    Ok((status, response.json().await.unwrap_or(Value::Null)))
}

/// Issue #10 for workers: under TLS a worker with a worker certificate registers and runs an
/// application (downloading its jar without a token); a worker without a certificate, or with
/// one from another CA, never registers; a worker certificate opens no other peer route; a
/// master certificate is no worker; a worker cannot take another worker's id or report on its
/// attempts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_tls_only_worker_certificates_register_and_a_worker_acts_only_as_itself() {
    let cluster = TestCluster::start_secured(TIMING);
    cluster.wait_until_ready(Duration::from_secs(30)).await;
    let (certs_dir, secured) = cluster.secured.as_deref().map(|(d, s)| (d.path(), s)).expect("secured");
    let good = secured.worker(certs_dir, "worker", &["127.0.0.1"]);
    let good_conf = cluster.dir.path().join("worker-tls.conf");
    let base = std::fs::read_to_string(&cluster.conf).expect("conf");
    std::fs::write(&good_conf, format!("{base}{}", good.worker_conf())).expect("worker conf");
    // Worker 1 has no gearpump.worker.tls: plain HTTP to a TLS port.
    let workers = Workers::start_with(&cluster, vec![good_conf, cluster.conf.clone()]);
    let jar = ticker_jar(cluster.dir.path());
    let out = cluster.dir.path().join("ticks.txt");
    let id = submit(&cluster, &jar, "Ticker", &[out.to_str().expect("utf-8")]).await;
    let body = wait_for(&cluster, &workers, id, "attempt 1 active", |a| started(a, 1)).await;
    let good_id = u64::from(attempts(&body)[0].worker_id);
    assert_eq!(workers.index_of(good_id), 0, "the worker with the certificate runs it");
    wait_ticks(&out, 1).await;

    // The log comes through any master, which reads the worker's log port over TLS with its
    // master certificate; the port itself admits no one else.
    let (status, text) = cluster.get(1, &format!("/api/v1.0/appmaster/{id}/log")).await.expect("log");
    assert_eq!(status, 200, "{text}");
    assert!(text.to_string().contains(&format!("Ticker started: app {id}")), "{text}");
    let log_address = attempts(&body)[0].log_address.clone().expect("log address");
    let log_url = |scheme: &str| format!("{scheme}://{log_address}/log?app={id}&attempt=1");
    let asked = |client: reqwest::Client, url: String| async move {
        match client.get(url).send().await {
            Ok(answer) => Ok((answer.status().as_u16(), answer.text().await.unwrap_or_default())),
            Err(error) => Err(error.to_string()),
        }
    };
    let as_master = asked(secured.master.client_trusting_any_server(), log_url("https")).await;
    assert!(
        matches!(&as_master, Ok((200, text)) if text.contains("Ticker started")),
        "a master certificate reads the log: {as_master:?}"
    );
    let anonymous = common::certs::trusting_any_server().build().expect("client");
    for (who, client) in
        [("no certificate", anonymous), ("a worker certificate", good.client_trusting_any_server())]
    {
        let answer = asked(client, log_url("https")).await;
        assert!(answer.is_err(), "{who} got past the log port's handshake: {answer:?}");
    }
    let plain = asked(reqwest::Client::new(), log_url("http")).await;
    assert!(!matches!(&plain, Ok((200, _))), "plain HTTP read the log: {plain:?}");

    let url = |path: &str| cluster.url(0, path);
    let term = |body: &Value| Some(wire::<MasterAnswer>(body).master_description.term);
    let (_, master) = cluster.get(0, "/api/v1.0/master").await.expect("master");
    let term_before = term(&master).expect("term");
    let beat = heartbeat(None, "127.0.0.1", Vec::new());

    // No client certificate: refused even with an admin token.
    let anonymous = cluster.client_builder().build().expect("client");
    let (status, answer) = post(&anonymous, url(HEARTBEAT), &beat).await.expect("an answer");
    assert_eq!(status, 401, "{answer}");
    // A worker certificate from another CA: refused at the handshake.
    let rogue = common::certs::Ca::new("rogue CA");
    let foreign =
        TlsPaths::write(certs_dir, "foreign", &secured.ca.pem(), &rogue.issue_worker(&["127.0.0.1"]));
    let refused = post(&foreign.client(), url(HEARTBEAT), &beat).await;
    assert!(refused.is_err(), "a foreign certificate passed the handshake: {refused:?}");
    // A worker certificate opens no other peer route.
    let vote = serde_json::json!({ "vote": { "leader_id": { "term": term_before + 100, "node_id": 99 }, "committed": false }, "last_log_id": null });
    for path in ["/peer/raft/vote", "/peer/pre-vote", "/peer/raft/append", "/peer/worker/heartbeat/forwarded"]
    {
        let (status, answer) = post(&good.client(), url(path), &vote).await.expect("an answer");
        assert_eq!(status, 401, "{path} with a worker certificate: {answer}");
    }
    // A master certificate is no worker certificate, whatever host it claims.
    for host in ["localhost", "127.0.0.1"] {
        let (status, answer) =
            post(&secured.master.client(), url(HEARTBEAT), &heartbeat(None, host, Vec::new()))
                .await
                .expect("answer");
        assert_eq!(status, 403, "a master certificate registering as worker {host}: {answer}");
    }

    // Another worker (certificate for localhost) can neither claim 127.0.0.1, nor take the
    // good worker's id, nor end its attempt.
    let other = secured.worker(certs_dir, "other", &["localhost"]).client();
    let forged = || {
        vec![ExitReport {
            app_id: id as u32,
            attempt: 1,
            outcome: AttemptOutcome::Failed { cause: "forged".into() },
            started: None,
        }]
    };
    let (status, answer) =
        post(&other, url(HEARTBEAT), &heartbeat(None, "127.0.0.1", forged())).await.expect("answer");
    assert_eq!(status, 403, "a worker certificate for localhost claiming 127.0.0.1: {answer}");
    let claimed = heartbeat(Some(good_id as u32), "localhost", forged());
    let (status, answer) = post(&other, url(HEARTBEAT), &claimed).await.expect("answer");
    assert_eq!(status, 200, "{answer}");
    let answer: HeartbeatAnswer = wire(&answer);
    let other_id = u64::from(answer.worker_id);
    assert_ne!(other_id, good_id, "it was given a new id, not the claimed one");
    assert!(answer.assigned.is_empty(), "nothing of the other worker's: {answer:?}");
    let (status, answer) =
        post(&other, url(HEARTBEAT), &heartbeat(Some(other_id as u32), "localhost", forged()))
            .await
            .expect("answer");
    assert_eq!(status, 200, "{answer}");
    let acked = wire::<HeartbeatAnswer>(&answer).acked_exits;
    assert_eq!(acked, vec![(id as u32, 1)], "acknowledged, so it is not repeated");

    tokio::time::sleep(Duration::from_secs(1)).await;
    let body = app(&cluster, id).await.expect("the application");
    assert!(started(&body, 1), "the forged report ended the attempt: {body:#?}");
    let (_, list) = cluster.get(0, "/api/v1.0/master/workerlist").await.expect("workerlist");
    let workers_seen: WorkerList = wire(&list);
    let hosts: Vec<&str> = workers_seen.workers.iter().map(|w| w.host.as_str()).collect();
    assert_eq!(
        hosts.iter().filter(|h| **h == "127.0.0.1").count(),
        1,
        "only the worker with a certificate: {list}"
    );
    let (_, master) = cluster.get(0, "/api/v1.0/master").await.expect("master");
    // Elections may happen meanwhile on a loaded machine, but a delivered vote would have
    // moved the term by 100.
    let term_after = term(&master).expect("term");
    assert!(
        term_after < term_before + 100,
        "a vote with a worker certificate moved the term to {term_after}"
    );
    let plain_log = std::fs::read_to_string(&workers.logs[1]).expect("log");
    assert!(plain_log.contains("heartbeat not acknowledged"), "{plain_log}");
    let master_logs = cluster.logs();
    assert!(master_logs.contains("refused a TLS connection"), "the foreign handshake is logged");
    assert!(master_logs.contains("claimed another host's worker id"), "the claim is logged");
}

/// A worker's TLS files get the master's checks: each bad one exits 78 naming the file and the fix.
#[test]
fn bad_worker_tls_files_exit_78_naming_the_file_and_the_fix() {
    let dir = tempfile::tempdir().expect("dir");
    let ca = common::certs::Ca::new("cluster CA");
    let other_ca = common::certs::Ca::new("other CA");
    let write =
        |prefix: &str, issued: &common::certs::Issued| TlsPaths::write(dir.path(), prefix, &ca.pem(), issued);
    let good = ca.issue_worker(&["127.0.0.1"]);
    let readable = write("readable", &good);
    common::certs::write_private(&readable.key, &good.key, 0o640);
    let mismatched = write("mismatched", &good);
    common::certs::write_private(&mismatched.key, &ca.issue_worker(&["127.0.0.1"]).key, 0o600);
    let expired = write("expired", &ca.issue_kind(&["127.0.0.1"], -30, -1, true));
    let unsigned = write("unsigned", &other_ca.issue_worker(&["127.0.0.1"]));
    let misnamed = write("misnamed", &ca.issue_worker(&["elsewhere.example"]));
    let master = write("master", &ca.issue(&["127.0.0.1"]));
    let cases = [
        (&readable, &readable.key, "group or others may read it", "chmod 600"),
        (
            &mismatched,
            &mismatched.cert,
            "does not match the key",
            "install the certificate issued for this key",
        ),
        (&expired, &expired.cert, "has expired", "--rotate-certs"),
        (&unsigned, &unsigned.cert, "did not sign this certificate", "fix:"),
        (&misnamed, &misnamed.cert, "does not name this worker's host 127.0.0.1", "subject alternative name"),
        (&master, &master.cert, "not a worker certificate", "gearpump-setup --workers"),
    ];
    for (paths, file, problem, fix) in cases {
        let conf = dir.path().join("worker.conf");
        std::fs::write(&conf, format!("gearpump.hostname = \"127.0.0.1\"\n{}", paths.worker_conf()))
            .expect("conf");
        let (code, stderr) = run_worker_once(&conf, &dir.path().join("state"));
        assert_eq!(code, Some(78), "{problem}: {stderr}");
        assert!(
            stderr.contains(&file.display().to_string()),
            "{problem}: names {}: {stderr}",
            file.display()
        );
        assert!(stderr.contains(problem) && stderr.contains(fix), "{problem} / {fix}:\n{stderr}");
    }
}

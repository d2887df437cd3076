//! A leader with many workers: N simulated workers (default 1,000) heartbeat once a second over
//! HTTP to `/peer/worker/heartbeat` of the leader, as real workers do to the master that last
//! answered. Prints the leader's CPU (share of one core over the window) and RSS, then SIGKILLs
//! the leader and prints the time until a new leader is agreed and until every worker's
//! heartbeat is acknowledged again (each simulated worker tries the masters in turn, as the
//! worker does).
//! `cargo bench --bench workers -- [--workers N] [--seconds S] [--rounds R]`

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gearpump_master::state::WorkerId;
use gearpump_master::worker::protocol::{Heartbeat, HeartbeatAnswer, HEARTBEAT};
use support::*;

fn heartbeat(index: usize, worker_id: Option<WorkerId>) -> Heartbeat {
    Heartbeat {
        worker_id,
        host: format!("sim{index}"),
        slots: 4,
        free_slots: 4,
        log_address: "127.0.0.1:9".into(),
        running: Vec::new(),
        exits: Vec::new(),
        preparing: Vec::new(),
        stopping: false,
        // Answered at once: the simulated workers beat in sequence per sender task. A real
        // worker's held answer (a long poll) is a parked task on the leader, not CPU; the
        // per-request cost measured here is the same.
        wait_ms: 0,
    }
}

/// One heartbeat, trying `first` then the other masters; the id the leader answers with.
async fn beat(http: &reqwest::Client, urls: &[String], first: usize, body: &Heartbeat) -> Option<WorkerId> {
    for offset in 0..urls.len() {
        let url = &urls[(first + offset) % urls.len()];
        if let Ok(response) = http.post(url).json(body).send().await {
            if response.status().is_success() {
                if let Ok(answer) = response.json::<HeartbeatAnswer>().await {
                    return Some(answer.worker_id);
                }
            }
        }
    }
    None
}

/// utime + stime of a process, in clock ticks (100 per second on Linux).
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let workers: usize = arg_value("--workers").and_then(|r| r.parse().ok()).unwrap_or(1000);
    let seconds: u64 = arg_value("--seconds").and_then(|r| r.parse().ok()).unwrap_or(30);
    let rounds: usize = arg_value("--rounds").and_then(|r| r.parse().ok()).unwrap_or(3);
    println!("machine: {}; {workers} simulated workers, 1 heartbeat/s each", machine_line());
    // The simulated workers all come from 127.0.0.1: the port's per-address bound (128 by
    // default, the slowloris guard) would refuse most of them, as it would real workers behind
    // one NAT address; such a site raises it the same way.
    let mut target = Target::Master(TestCluster::start(Options {
        extra_conf: "gearpump.master.max-connections-per-address = 1024".into(),
        ..Options::default()
    }));
    let http = http_client(Duration::from_millis(500));
    let Target::Master(cluster) = &target else { unreachable!() };
    let urls: Vec<String> = (0..cluster.ports.len()).map(|i| cluster.url(i, HEARTBEAT)).collect();
    let leader = target.leader(&http, Duration::from_secs(30)).await.expect("a first leader");

    // Register every worker (ids through Raft), then keep them beating in the background.
    let started = Instant::now();
    let mut ids = Vec::with_capacity(workers);
    let patient = http_client(Duration::from_secs(5));
    for index in 0..workers {
        let mut id = None;
        for _ in 0..10 {
            id = beat(&patient, &urls, leader, &heartbeat(index, None)).await;
            if id.is_some() {
                break;
            }
        }
        ids.push(id.expect("registration (10 tries)"));
    }
    println!("registered {workers} workers in {}", ms(started.elapsed()));
    let acked = Arc::new(AtomicUsize::new(0));
    let mut senders = Vec::new();
    // 50 senders, each beating for its share of the workers spread over the second.
    let per = workers.div_ceil(50);
    for chunk in ids.chunks(per).map(<[WorkerId]>::to_vec).enumerate() {
        let (http, urls, acked) = (http.clone(), urls.clone(), acked.clone());
        senders.push(tokio::spawn(async move {
            let (offset, ids) = chunk;
            let mut preferred = vec![leader; ids.len()];
            let mut next = Instant::now();
            loop {
                for (k, id) in ids.iter().enumerate() {
                    let index = offset * per + k;
                    if beat(&http, &urls, preferred[k], &heartbeat(index, Some(*id))).await.is_some() {
                        acked.fetch_add(1, Ordering::Relaxed);
                    } else {
                        preferred[k] = (preferred[k] + 1) % urls.len();
                    }
                }
                next += Duration::from_secs(1);
                tokio::time::sleep_until(next.into()).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;

    let pid = target.pid(leader).expect("leader pid");
    let (before, at, acked_before) =
        (cpu_ticks(pid).expect("stat"), Instant::now(), acked.load(Ordering::Relaxed));
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let ticks = cpu_ticks(pid).expect("stat") - before;
    let window = at.elapsed().as_secs_f64();
    let rate = (acked.load(Ordering::Relaxed) - acked_before) as f64 / window;
    let rss = target.rss_kib(leader).unwrap_or(0);
    println!(
        "leader with {workers} workers: CPU {:.1} % of one core over {window:.0} s, RSS {:.1} MiB, {rate:.0} heartbeats/s acknowledged",
        ticks as f64 / window,
        rss as f64 / 1024.0
    );

    let mut elections = Vec::new();
    let mut recoveries = Vec::new();
    for round in 0..rounds {
        let leader = target.leader(&http, Duration::from_secs(30)).await.expect("a leader");
        target.kill(leader);
        let killed = Instant::now();
        // The survivors name the dead leader until they elect another: only a different one counts.
        let mut elected = None;
        while elected.is_none() && killed.elapsed() < Duration::from_secs(30) {
            match target.leader(&http, Duration::from_secs(30)).await {
                Some(new) if new != leader => elected = Some(killed.elapsed()),
                _ => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
        // every worker acknowledged again: a full second's worth of heartbeats after the kill
        let mut recovered = None;
        while killed.elapsed() < Duration::from_secs(30) {
            let from = acked.load(Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(100)).await;
            if (acked.load(Ordering::Relaxed) - from) * 10 >= workers * 9 / 10 {
                recovered = Some(killed.elapsed());
                break;
            }
        }
        eprintln!(
            "  round {}: new leader after {elected:?}, heartbeats flowing again after {recovered:?}",
            round + 1
        );
        elections.extend(elected);
        recoveries.extend(recovered);
        target.restart(leader);
        target.leader(&http, Duration::from_secs(30)).await.expect("all members agree again");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    for (name, mut samples) in
        [("new leader agreed", elections), ("heartbeats acknowledged again", recoveries)]
    {
        samples.sort();
        println!(
            "fail-over with {workers} workers, {name}: p50 {}  max {} over {} kills",
            ms(percentile(&samples, 50.0)),
            ms(*samples.last().unwrap_or(&Duration::ZERO)),
            samples.len()
        );
    }
    for sender in senders {
        sender.abort();
    }
}

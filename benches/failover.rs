//! Fail-over: SIGKILL the leader of 3 under a continuous writer; the time from the kill to the
//! first write acknowledged by the new leader. `cargo bench --bench failover -- [--rounds N] [--tls] [--etcd]`
//! (`--tls`: the same rounds again on a cluster secured as gearpump-setup does it)

mod support;

use std::time::{Duration, Instant};

use support::*;

async fn measure(mut target: Target, rounds: usize, request_timeout: Duration) -> Vec<Duration> {
    // A short per-request timeout and an immediate retry, as a client with a deadline does: a
    // request stuck on the dead leader must not hide a new leader that already answers. It
    // also sets the resolution of the measurement (etcd answers a stuck request only after
    // its own internal timeouts).
    let http = target.http_client(request_timeout);
    target.leader(&http, Duration::from_secs(30)).await.expect("a first leader");
    target.prepare(&target.http_client(Duration::from_secs(10))).await;
    let mut samples = Vec::new();
    let mut key = 0u64;
    for round in 0..rounds {
        let leader = target.leader(&http, Duration::from_secs(30)).await.expect("a leader");
        let writer_target = (0..target.members()).find(|i| *i != leader).expect("a follower");
        // Warm the writer's path: a few writes before the kill.
        for _ in 0..5 {
            key += 1;
            let _ = target.write(&http, writer_target, &format!("f{key}")).await;
        }
        target.kill(leader);
        let killed = Instant::now();
        loop {
            key += 1;
            if target.write(&http, writer_target, &format!("f{key}")).await.is_ok() {
                break;
            }
            if killed.elapsed() > Duration::from_secs(60) {
                panic!("{}: no write acknowledged within 60 s of the kill", target.name());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let took = killed.elapsed();
        eprintln!("  {} round {:2}: {}", target.name(), round + 1, ms(took));
        samples.push(took);
        target.restart(leader);
        // Let the restarted member catch up before the next kill.
        target.leader(&http, Duration::from_secs(30)).await.expect("all members agree again");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    samples
}

fn report(name: &str, mut samples: Vec<Duration>) {
    let mean = samples.iter().sum::<Duration>() / samples.len().max(1) as u32;
    println!(
        "{name:16} fail-over over {} kills: {}  mean {}",
        samples.len(),
        p50_p99_max(&mut samples),
        ms(mean)
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rounds: usize = arg_value("--rounds").and_then(|r| r.parse().ok()).unwrap_or(25);
    let timeout_ms: u64 = arg_value("--request-timeout-ms").and_then(|r| r.parse().ok()).unwrap_or(200);
    let request_timeout = Duration::from_millis(timeout_ms);
    println!("machine: {}; client request timeout {timeout_ms} ms, retried at once", machine_line());
    for tls in modes() {
        let target = master_cluster(tls);
        let name = target.name();
        report(name, measure(target, rounds, request_timeout).await);
    }
    if has_flag("--etcd") {
        let etcd = measure(Target::Etcd(EtcdCluster::start(3)), rounds, request_timeout).await;
        report("etcd", etcd);
    }
}

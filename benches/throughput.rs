//! Committed writes per second and latency on 3 loopback members at several client counts,
//! plus idle and loaded memory. `cargo bench --bench throughput -- [--seconds N] [--clients 1,16,64] [--tls] [--etcd] [--soak-seconds N] [--fresh-calls N]`
//! (`--tls`: the same again on a cluster secured as gearpump-setup does it, after the plain one)

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;

struct Run {
    clients: usize,
    writes: usize,
    errors: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

/// `key_space`: each client cycles over this many keys (a state that stops growing), or writes a
/// new key every time (`None`).
async fn load(
    target: Arc<Target>,
    leader: usize,
    clients: usize,
    seconds: u64,
    key_space: Option<u64>,
) -> Run {
    let http = target.http_client(Duration::from_secs(10));
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let (target, http) = (target.clone(), http.clone());
            tokio::spawn(async move {
                let (mut latencies, mut errors, mut n) = (Vec::new(), 0usize, 0u64);
                while Instant::now() < until {
                    n += 1;
                    let sent = Instant::now();
                    let key = match key_space {
                        Some(space) => format!("c{client}-{}", n % space),
                        None => format!("c{client}-{n}"),
                    };
                    match target.write(&http, leader, &key).await {
                        Ok(()) => latencies.push(sent.elapsed()),
                        Err(_) => errors += 1,
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut run = Run { clients, writes: 0, errors: 0, elapsed: Duration::ZERO, latencies: Vec::new() };
    for task in tasks {
        let (latencies, errors) = task.await.expect("client task");
        run.writes += latencies.len();
        run.errors += errors;
        run.latencies.extend(latencies);
    }
    run.elapsed = started.elapsed();
    run.latencies.sort();
    run
}

fn leader_changes(target: &Target, index: usize) -> Option<u64> {
    let Target::Master(cluster) = target else { return None };
    let text = std::process::Command::new("curl")
        .args(["-s", &cluster.url(index, "/metrics")])
        .output()
        .ok()?
        .stdout;
    String::from_utf8_lossy(&text)
        .lines()
        .find_map(|l| l.strip_prefix("gearpump_master_leader_changes_total "))
        .and_then(|v| v.trim().parse().ok())
}

/// What a `gear` command pays before its one request: a new client (reading the CA), a new
/// connection, the TLS handshake when secured, and one GET, `calls` times in a row.
async fn fresh_calls(target: &Target, leader: usize, calls: usize) {
    let Target::Master(cluster) = target else { return };
    let url = cluster.url(leader, "/api/v1.0/version");
    let mut samples = Vec::with_capacity(calls);
    for _ in 0..calls {
        let started = Instant::now();
        let http = cluster.client_builder().pool_max_idle_per_host(0).build().expect("client");
        let response = http.get(&url).send().await.expect("GET version");
        assert!(response.status().is_success(), "GET version: {}", response.status());
        let _ = response.bytes().await;
        samples.push(started.elapsed());
    }
    samples.sort();
    println!(
        "{:16} fresh call (new client + connection{} + GET), {calls} calls: p50 {}  p99 {}",
        target.name(),
        if cluster.client_ca.is_some() { " + TLS handshake" } else { "" },
        ms(percentile(&samples, 50.0)),
        ms(percentile(&samples, 99.0))
    );
}

async fn bench(target: Target, client_counts: &[usize], seconds: u64, soak_seconds: u64) {
    let http = target.http_client(Duration::from_secs(10));
    let leader = target.leader(&http, Duration::from_secs(30)).await.expect("a leader");
    target.prepare(&http).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let calls = arg_value("--fresh-calls").and_then(|n| n.parse().ok()).unwrap_or(300);
    fresh_calls(&target, leader, calls).await;
    let idle: Vec<String> =
        (0..target.members()).map(|i| format!("{} MiB", target.rss_kib(i).unwrap_or(0) / 1024)).collect();
    println!("{:16} idle RSS per member: {}", target.name(), idle.join(", "));
    let target = Arc::new(target);
    for &clients in client_counts {
        let sampler_target = target.clone();
        let peak = tokio::spawn(async move {
            let mut peak = 0;
            for _ in 0..(seconds * 10) {
                for i in 0..sampler_target.members() {
                    peak = peak.max(sampler_target.rss_kib(i).unwrap_or(0));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            peak
        });
        let run = load(target.clone(), leader, clients, seconds, None).await;
        let peak = peak.await.unwrap_or(0);
        println!(
            "{:16} {:3} clients: {:7.0} committed writes/s  p50 {}  p99 {}  errors {}  peak RSS {} MiB",
            target.name(),
            run.clients,
            run.writes as f64 / run.elapsed.as_secs_f64(),
            ms(percentile(&run.latencies, 50.0)),
            ms(percentile(&run.latencies, 99.0)),
            run.errors,
            peak / 1024
        );
    }
    if soak_seconds > 0 {
        soak(&target, leader, soak_seconds).await;
    }
}

/// DESIGN.md's soak: steady load for `seconds`, every member's RSS sampled each 10 s and
/// printed each minute, so growth shows as a trend rather than a single peak; leader changes are
/// counted from the leader's metrics (a healthy cluster under load should have none).
async fn soak(target: &Arc<Target>, leader: usize, seconds: u64) {
    let before = leader_changes(target, leader);
    let sampler_target = target.clone();
    let samples = tokio::spawn(async move {
        let mut samples: Vec<Vec<u64>> = Vec::new();
        for tick in 0..=(seconds / 10) {
            let rss: Vec<u64> = (0..sampler_target.members())
                .map(|i| sampler_target.rss_kib(i).unwrap_or(0) / 1024)
                .collect();
            if tick % 6 == 0 {
                println!(
                    "{:16} soak t={:4} s RSS MiB per member: {:?}",
                    sampler_target.name(),
                    tick * 10,
                    rss
                );
            }
            samples.push(rss);
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
        samples
    });
    // Each client overwrites 100 keys: the replicated state stops growing after the first
    // seconds, so memory that keeps growing is the process's, not the data's.
    let run = load(target.clone(), leader, 64, seconds, Some(100)).await;
    let after = leader_changes(target, leader);
    let samples = samples.await.unwrap_or_default();
    // Growth: the mean of the last minute's samples against the mean of the second minute's (the
    // first minute holds the warm-up: buffers, the request window filling).
    let mean = |rows: &[Vec<u64>]| -> Vec<u64> {
        let members = rows.first().map_or(0, Vec::len);
        (0..members).map(|m| rows.iter().map(|r| r[m]).sum::<u64>() / rows.len().max(1) as u64).collect()
    };
    let (early, late) = if samples.len() >= 18 {
        (mean(&samples[6..12]), mean(&samples[samples.len() - 6..]))
    } else {
        (mean(&samples[..samples.len() / 2]), mean(&samples[samples.len() / 2..]))
    };
    let latencies = &run.latencies;
    println!(
        "{:16} soak {} s at 64 clients: {:.0} writes/s, p50 {} p99 {}, {} errors, leader changes during the soak: {}, \
         RSS MiB second minute {:?} -> last minute {:?}",
        target.name(),
        seconds,
        run.writes as f64 / run.elapsed.as_secs_f64(),
        ms(percentile(latencies, 50.0)),
        ms(percentile(latencies, 99.0)),
        run.errors,
        match (before, after) {
            (Some(b), Some(a)) => (a - b).to_string(),
            _ => "n/a".into(),
        },
        early,
        late
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let seconds: u64 = arg_value("--seconds").and_then(|s| s.parse().ok()).unwrap_or(10);
    let soak: u64 = arg_value("--soak-seconds").and_then(|s| s.parse().ok()).unwrap_or(0);
    let clients: Vec<usize> = arg_value("--clients")
        .map(|c| c.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 16, 64]);
    println!("machine: {}", machine_line());
    for tls in modes() {
        bench(master_cluster(tls), &clients, seconds, soak).await;
    }
    if has_flag("--etcd") {
        bench(Target::Etcd(EtcdCluster::start(3)), &clients, seconds, soak).await;
    }
}

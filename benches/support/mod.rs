//! What the benchmarks share: a three-member cluster of either gearpump-master or etcd on
//! loopback, with the same write and kill operations, so both are measured the same way.

#![allow(dead_code, unreachable_pub)] // shared by benches that each use a part of it

#[path = "../../tests/common/mod.rs"]
pub mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

pub use common::{free_ports, make_jar, Options, TestCluster};

pub enum Target {
    Master(TestCluster),
    Etcd(EtcdCluster),
}

pub struct EtcdCluster {
    dir: tempfile::TempDir,
    client_ports: Vec<u16>,
    peer_ports: Vec<u16>,
    children: Vec<Option<Child>>,
}

impl EtcdCluster {
    pub fn start(members: usize) -> EtcdCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let ports = free_ports(members * 2);
        let (client_ports, peer_ports) = (ports[..members].to_vec(), ports[members..].to_vec());
        let mut cluster = EtcdCluster { dir, client_ports, peer_ports, children: Vec::new() };
        for index in 0..members {
            let child = cluster.spawn(index, true);
            cluster.children.push(Some(child));
        }
        cluster
    }

    fn spawn(&self, index: usize, new: bool) -> Child {
        let initial: Vec<String> =
            self.peer_ports.iter().enumerate().map(|(i, p)| format!("e{i}=http://127.0.0.1:{p}")).collect();
        let client = format!("http://127.0.0.1:{}", self.client_ports[index]);
        let peer = format!("http://127.0.0.1:{}", self.peer_ports[index]);
        Command::new("etcd")
            .args(["--name", &format!("e{index}")])
            .arg("--data-dir")
            .arg(self.dir.path().join(format!("e{index}")))
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &initial.join(",")])
            .args(["--initial-cluster-state", if new { "new" } else { "existing" }])
            .args(["--logger", "zap", "--log-level", "error"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start etcd (apt install etcd-server)")
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn http_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .no_proxy()
        .pool_max_idle_per_host(256)
        .build()
        .expect("client")
}

/// The masters under test: plain, or secured as gearpump-setup installs them (`tls`: TLS
/// between everyone, bearer tokens, the cluster secret).
pub fn master_cluster(tls: bool) -> Target {
    Target::Master(if tls { TestCluster::start_secured("") } else { TestCluster::start(Options::default()) })
}

/// `--tls`: measure the secured cluster after the plain one, in the same run.
pub fn modes() -> Vec<bool> {
    if has_flag("--tls") {
        vec![false, true]
    } else {
        vec![false]
    }
}

impl Target {
    pub fn name(&self) -> &'static str {
        match self {
            Target::Master(c) if c.client_ca.is_some() => "gearpump-master+TLS",
            Target::Master(_) => "gearpump-master",
            Target::Etcd(_) => "etcd",
        }
    }

    /// A pooling client for this target (the cluster CA and a token when it is secured).
    pub fn http_client(&self, timeout: Duration) -> reqwest::Client {
        match self {
            Target::Master(cluster) => {
                cluster.client_builder().timeout(timeout).pool_max_idle_per_host(256).build().expect("client")
            }
            Target::Etcd(_) => http_client(timeout),
        }
    }

    pub fn members(&self) -> usize {
        match self {
            Target::Master(c) => c.ports.len(),
            Target::Etcd(c) => c.client_ports.len(),
        }
    }

    pub fn is_running(&self, index: usize) -> bool {
        match self {
            Target::Master(c) => c.is_running(index),
            Target::Etcd(c) => c.children[index].is_some(),
        }
    }

    pub fn pid(&self, index: usize) -> Option<u32> {
        match self {
            Target::Master(c) => c.children[index].as_ref().map(Child::id),
            Target::Etcd(c) => c.children[index].as_ref().map(Child::id),
        }
    }

    pub fn kill(&mut self, index: usize) {
        match self {
            Target::Master(c) => c.kill(index),
            Target::Etcd(c) => {
                if let Some(mut child) = c.children[index].take() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
    }

    pub fn restart(&mut self, index: usize) {
        match self {
            Target::Master(c) => c.restart(index),
            Target::Etcd(c) => {
                let child = c.spawn(index, false);
                c.children[index] = Some(child);
            }
        }
    }

    /// Prepares the write path (the master needs an application to hold the data keys).
    pub async fn prepare(&self, http: &reqwest::Client) {
        if let Target::Master(cluster) = self {
            let jar = make_jar(cluster.dir.path(), "bench.jar", 1024, 1);
            let form = reqwest::multipart::Form::new().text("mainClass", "bench.Main").part(
                "jar",
                reqwest::multipart::Part::bytes(std::fs::read(jar).expect("jar")).file_name("bench.jar"),
            );
            let url = cluster.url(0, "/api/v1.0/master/submitapp");
            let response = http.post(url).multipart(form).send().await.expect("submit");
            assert!(response.status().is_success(), "submit failed: {}", response.status());
        }
    }

    /// One write through member `index`; Ok only when acknowledged as committed.
    pub async fn write(&self, http: &reqwest::Client, index: usize, key: &str) -> Result<(), String> {
        let response = match self {
            Target::Master(c) => {
                http.put(c.url(index, &format!("/api/v1.0/appmaster/1/data/{key}"))).body("v").send().await
            }
            Target::Etcd(c) => {
                let b64 = base64::engine::general_purpose::STANDARD;
                let body = json!({ "key": b64.encode(key), "value": b64.encode("v") });
                http.post(format!("http://127.0.0.1:{}/v3/kv/put", c.client_ports[index]))
                    .json(&body)
                    .send()
                    .await
            }
        };
        let response = response.map_err(|e| e.to_string())?;
        if response.status().is_success() {
            // etcd's gateway can answer 200 with an error object.
            if let Target::Etcd(_) = self {
                let value: Value = response.json().await.map_err(|e| e.to_string())?;
                if value.get("error").is_some() || value.get("header").is_none() {
                    return Err(value.to_string());
                }
            }
            Ok(())
        } else {
            Err(response.status().to_string())
        }
    }

    /// The index of the current leader as every live member reports it, once they agree.
    pub async fn leader(&self, http: &reqwest::Client, within: Duration) -> Option<usize> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(leader) = self.agreed_leader(http).await {
                return Some(leader);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    async fn agreed_leader(&self, http: &reqwest::Client) -> Option<usize> {
        let mut agreed = None;
        for index in (0..self.members()).filter(|i| self.is_running(*i)) {
            let leader = match self {
                Target::Master(c) => {
                    let (status, body) = c.get(index, "/health/ready").await.ok()?;
                    if status != 200 {
                        return None;
                    }
                    c.index_of(&common::wire::<gearpump_master::wire::Ready>(&body).leader?)
                }
                Target::Etcd(c) => {
                    let url = format!("http://127.0.0.1:{}/v3/maintenance/status", c.client_ports[index]);
                    let body: Value = http.post(url).json(&json!({})).send().await.ok()?.json().await.ok()?;
                    let leader_id = body["leader"].as_str()?.to_string();
                    let mut found = None;
                    for other in (0..c.client_ports.len()).filter(|i| c.children[*i].is_some()) {
                        let url = format!("http://127.0.0.1:{}/v3/maintenance/status", c.client_ports[other]);
                        let status: Value =
                            http.post(url).json(&json!({})).send().await.ok()?.json().await.ok()?;
                        if status["header"]["member_id"].as_str() == Some(leader_id.as_str()) {
                            found = Some(other);
                        }
                    }
                    found?
                }
            };
            if agreed.is_some_and(|a| a != leader) {
                return None;
            }
            agreed = Some(leader);
        }
        agreed
    }

    /// Resident memory of a member, from /proc.
    pub fn rss_kib(&self, index: usize) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid(index)?)).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
    }
}

/// The p-th percentile (0..=100) of sorted samples, nearest rank.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// "p50 …  p99 …  max …" of samples sorted in place: the line every latency bench prints.
pub fn p50_p99_max(samples: &mut [Duration]) -> String {
    samples.sort();
    format!(
        "p50 {}  p99 {}  max {}",
        ms(percentile(samples, 50.0)),
        ms(percentile(samples, 99.0)),
        ms(samples.last().copied().unwrap_or_default())
    )
}

pub fn machine_line() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let date = Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d %H:%M UTC")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!("{cores} cores, {cpu}, {date}")
}

pub fn arg_value(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

pub fn has_flag(name: &str) -> bool {
    std::env::args().any(|a| a == name)
}

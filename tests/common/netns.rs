//! Masters in network namespaces, so a test can cut one off from the others for real.
//!
//! Each master runs in its own namespace with two links:
//! - a veth on a bridge the test creates (10.233.S.0/24, S random per cluster): the masters list
//!   uses these addresses, so all Raft and peer traffic crosses it. `partition(i)` takes the
//!   host end of master i's bridge link down: nobody reaches it and it reaches nobody.
//! - a point-to-point veth to the host (10.234.S.4i+1 ↔ 10.234.S.4i+2): the test's clients
//!   use it, so a client can still talk to a master that is cut off from its peers — the
//!   situation that used to stall clients for the whole request timeout.
//!
//! Needs root and iproute2 (CI runs as root); `available()` says whether this machine can. Every
//! namespace, link and process is removed on drop, also when the test fails. Traffic goes only
//! to these addresses, which the test itself created.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::MASTER_BIN;

const PORT: u16 = 3000;

/// True when namespaces can be made here (root and `ip`); tests print why they skip otherwise.
pub fn available() -> bool {
    let root = Command::new("id").arg("-u").output().is_ok_and(|out| out.stdout.trim_ascii() == b"0");
    root && Command::new("ip").arg("-V").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

fn ip(args: &[&str]) {
    let output = Command::new("ip").args(args).output().expect("run ip");
    assert!(output.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr));
}

pub struct NetnsCluster {
    pub dir: tempfile::TempDir,
    tag: String,
    subnet: u8,
    children: Vec<Option<Child>>,
    pub http: reqwest::Client,
    /// Built before any namespace exists; dropping it removes whatever was made.
    made: Vec<String>,
}

impl NetnsCluster {
    /// `extra_conf` is appended to every master's gear.conf.
    pub fn start(masters: usize, extra_conf: &str) -> NetnsCluster {
        let tag = format!("{:05x}", rand::random::<u32>() & 0xf_ffff);
        let subnet = 1 + rand::random::<u8>() % 250;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .no_proxy()
            .pool_max_idle_per_host(0)
            .build()
            .expect("client");
        let mut cluster = NetnsCluster {
            dir: tempfile::tempdir().expect("temp dir"),
            tag,
            subnet,
            children: Vec::new(),
            http,
            made: Vec::new(),
        };
        cluster.make_network(masters);
        let list: Vec<String> = (0..masters).map(|i| format!("\"{}\"", cluster.peer_address(i))).collect();
        let jars = cluster.dir.path().join("jars");
        std::fs::create_dir_all(&jars).expect("jar dir");
        for i in 0..masters {
            let conf = format!(
                "gearpump.hostname = \"10.233.{subnet}.{host}\"\n\
                 gearpump.cluster.masters = [{list}]\n\
                 gearpump.master.bind-host = \"0.0.0.0\"\n\
                 gearpump.jarstore.rootpath = \"file://{jars}\"\n{extra_conf}\n",
                host = 11 + i,
                list = list.join(", "),
                jars = jars.display(),
            );
            std::fs::write(cluster.conf(i), conf).expect("write gear.conf");
        }
        for i in 0..masters {
            let child = cluster.spawn(i);
            cluster.children.push(Some(child));
        }
        cluster
    }

    fn bridge(&self) -> String {
        format!("gb{}", self.tag)
    }

    fn namespace(&self, i: usize) -> String {
        format!("gn{}{i}", self.tag)
    }

    /// The host end of master i's bridge link: down is a partition.
    fn bridge_link(&self, i: usize) -> String {
        format!("gv{}{i}", self.tag)
    }

    fn make_network(&mut self, masters: usize) {
        let (bridge, s) = (self.bridge(), self.subnet);
        ip(&["link", "add", &bridge, "type", "bridge"]);
        self.made.push(format!("link:{bridge}"));
        ip(&["addr", "add", &format!("10.233.{s}.1/24"), "dev", &bridge]);
        ip(&["link", "set", &bridge, "up"]);
        for i in 0..masters {
            let ns = self.namespace(i);
            ip(&["netns", "add", &ns]);
            self.made.push(format!("netns:{ns}"));
            let in_ns = |args: &[&str]| {
                let mut all = vec!["netns", "exec", &ns, "ip"];
                all.extend_from_slice(args);
                ip(&all);
            };
            in_ns(&["link", "set", "lo", "up"]);
            // Bridge link.
            let (host_end, ns_end) = (self.bridge_link(i), format!("gp{}{i}", self.tag));
            ip(&["link", "add", &host_end, "type", "veth", "peer", "name", &ns_end]);
            ip(&["link", "set", &ns_end, "netns", &ns]);
            ip(&["link", "set", &host_end, "master", &bridge]);
            ip(&["link", "set", &host_end, "up"]);
            in_ns(&["addr", "add", &format!("10.233.{s}.{}/24", 11 + i), "dev", &ns_end]);
            in_ns(&["link", "set", &ns_end, "up"]);
            // Client link, never cut.
            let (host_end, ns_end) = (format!("gc{}{i}", self.tag), format!("gd{}{i}", self.tag));
            ip(&["link", "add", &host_end, "type", "veth", "peer", "name", &ns_end]);
            ip(&["link", "set", &ns_end, "netns", &ns]);
            ip(&["addr", "add", &format!("10.234.{s}.{}/30", 4 * i + 1), "dev", &host_end]);
            ip(&["link", "set", &host_end, "up"]);
            in_ns(&["addr", "add", &format!("10.234.{s}.{}/30", 4 * i + 2), "dev", &ns_end]);
            in_ns(&["link", "set", &ns_end, "up"]);
        }
    }

    /// `host:port` of master i in the masters list (the bridge side).
    pub fn peer_address(&self, i: usize) -> String {
        format!("10.233.{}.{}:{PORT}", self.subnet, 11 + i)
    }

    /// `host:port` the test's clients use for master i.
    pub fn client_address(&self, i: usize) -> String {
        format!("10.234.{}.{}:{PORT}", self.subnet, 4 * i + 2)
    }

    pub fn url(&self, i: usize, path: &str) -> String {
        format!("http://{}{path}", self.client_address(i))
    }

    pub fn index_of(&self, peer_address: &str) -> usize {
        (0..self.children.len()).find(|i| self.peer_address(*i) == peer_address).expect("a member")
    }

    fn conf(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("gear-{i}.conf"))
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("master-{i}.log"))
    }

    fn spawn(&self, i: usize) -> Child {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path(i)).expect("log");
        let log_err = log.try_clone().expect("clone log");
        // `ip netns exec` enters the namespace and execs the master: the child's PID is the
        // master's.
        Command::new("ip")
            .args(["netns", "exec", &self.namespace(i), MASTER_BIN, "--config"])
            .arg(self.conf(i))
            .args(["-ip", &format!("10.233.{}.{}", self.subnet, 11 + i), "-port", &PORT.to_string()])
            .arg("--state-dir")
            .arg(self.dir.path().join(format!("state-{i}")))
            .env_remove("NOTIFY_SOCKET")
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .spawn()
            .expect("start gearpump-master in its namespace")
    }

    /// Cuts master i off from every other master (both directions); clients still reach it.
    pub fn partition(&self, i: usize) {
        ip(&["link", "set", &self.bridge_link(i), "down"]);
    }

    pub fn heal(&self, i: usize) {
        ip(&["link", "set", &self.bridge_link(i), "up"]);
    }

    pub async fn get(&self, i: usize, path: &str) -> Result<(u16, Value), String> {
        super::get_json(&self.http, &self.url(i, path)).await
    }

    /// Role, term and the leader it names, from master i's own status.
    pub async fn view(&self, i: usize) -> Option<(String, u64, Option<String>)> {
        let (_, body) = self.get(i, "/health/ready").await.ok()?;
        Some((
            body["role"].as_str()?.to_string(),
            body["term"].as_u64()?,
            body["leader"].as_str().map(str::to_string),
        ))
    }

    /// Waits until every master is ready and names the same leader; returns (leader, term).
    pub async fn wait_until_agreed(&self, within: Duration) -> (String, u64) {
        let deadline = Instant::now() + within;
        loop {
            let mut agreed: Option<(String, u64)> = None;
            let mut all = true;
            for i in 0..self.children.len() {
                match self.get(i, "/health/ready").await {
                    Ok((200, body)) => {
                        let leader = body["leader"].as_str().unwrap_or_default().to_string();
                        let term = body["term"].as_u64().unwrap_or(0);
                        match &agreed {
                            None => agreed = Some((leader, term)),
                            Some(seen) if *seen == (leader.clone(), term) => {}
                            Some(_) => all = false,
                        }
                    }
                    _ => all = false,
                }
            }
            if let (true, Some(agreed)) = (all, agreed) {
                return agreed;
            }
            assert!(Instant::now() < deadline, "no agreed leader within {within:?}; logs:\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn logs(&self) -> String {
        (0..self.children.len())
            .map(|i| {
                format!(
                    "--- master {i} ({}) ---\n{}\n",
                    self.peer_address(i),
                    super::log_tail(&self.log_path(i), 20)
                )
            })
            .collect()
    }
}

impl Drop for NetnsCluster {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for made in self.made.iter().rev() {
            let args: Vec<&str> = match made.split_once(':') {
                Some(("netns", ns)) => vec!["netns", "del", ns],
                Some(("link", link)) => vec!["link", "del", link],
                _ => continue,
            };
            let _ = Command::new("ip").args(&args).stderr(Stdio::null()).status();
        }
    }
}

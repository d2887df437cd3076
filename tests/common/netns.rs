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
//! Faults for the nemesis suite (tests/nemesis.rs): signals to a master's process (`kill`,
//! `terminate`, `stop`/`resume`, `restart`), one-way drops between two masters (`drop_link`:
//! a blackhole route in the sender's namespace, so the sender's packets to that peer vanish;
//! this machine's kernel has no tc classifiers or netfilter, and routes need nothing but
//! iproute2), a small tmpfs under one master's state directory (`StartOptions::tmpfs_state`)
//! that `fill_disk` fills up, and the other masters' state on file systems of their own
//! (`StartOptions::own_disks`) that `stall_disk` freezes.
//!
//! Needs root and iproute2 (CI runs as root); `available()` says whether this machine can. Every
//! namespace, link and process is removed on drop, also when the test fails. Traffic goes only
//! to these addresses, which the test itself created.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gearpump_master::wire::{Ready, Role};
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
    /// One-way drops in place: (from, to).
    drops: Vec<(usize, usize)>,
    /// With `StartOptions::own_disks`: (master, its state file system).
    disks: Vec<(usize, super::LoopDisk)>,
}

/// How `NetnsCluster::start_with` sets up the masters.
#[derive(Default)]
pub struct StartOptions {
    /// Appended to every master's gear.conf.
    pub extra_conf: String,
    /// Mount a tmpfs of this many MiB as this master's state directory (a disk that can fill).
    pub tmpfs_state: Option<(usize, u64)>,
    /// Every other master's state directory on an ext4 of its own (`super::LoopDisk`), a disk
    /// that `stall_disk` can freeze. Needs mkfs.ext4 and fsfreeze too.
    pub own_disks: bool,
}

impl NetnsCluster {
    /// `extra_conf` is appended to every master's gear.conf.
    pub fn start(masters: usize, extra_conf: &str) -> NetnsCluster {
        NetnsCluster::start_with(
            masters,
            StartOptions { extra_conf: extra_conf.to_string(), ..Default::default() },
        )
    }

    pub fn start_with(masters: usize, options: StartOptions) -> NetnsCluster {
        let extra_conf = options.extra_conf.as_str();
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
            drops: Vec::new(),
            disks: Vec::new(),
        };
        cluster.make_network(masters);
        if let Some((i, mib)) = options.tmpfs_state {
            let dir = cluster.state_dir(i);
            std::fs::create_dir_all(&dir).expect("state dir");
            let status = Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
                .arg(&dir)
                .status()
                .expect("run mount");
            assert!(status.success(), "mount a tmpfs on {}", dir.display());
            cluster.made.push(format!("mount:{}", dir.display()));
        }
        if options.own_disks {
            for i in (0..masters).filter(|i| options.tmpfs_state.is_none_or(|(t, _)| t != *i)) {
                let image = cluster.dir.path().join(format!("disk-{i}.img"));
                cluster.disks.push((i, super::LoopDisk::mount(&image, &cluster.state_dir(i), 256)));
            }
        }
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

    pub fn masters(&self) -> usize {
        self.children.len()
    }

    pub fn state_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("state-{i}"))
    }

    /// True while master i's process exists (also when it is stopped).
    pub fn is_running(&mut self, i: usize) -> bool {
        match self.children[i].as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    fn pid(&self, i: usize) -> Option<nix::unistd::Pid> {
        self.children[i].as_ref().and_then(|child| self.pid_of(child))
    }

    /// SIGKILL, and reap it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait up to 20 s for it to stop (then SIGKILL); true if it stopped by itself.
    pub fn terminate(&mut self, i: usize) -> bool {
        let Some(mut child) = self.children[i].take() else { return true };
        if let Some(pid) = self.pid_of(&child) {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    fn pid_of(&self, child: &Child) -> Option<nix::unistd::Pid> {
        Some(nix::unistd::Pid::from_raw(i32::try_from(child.id()).ok()?))
    }

    /// SIGSTOP: the process freezes with all its state, timers and connections.
    pub fn stop(&self, i: usize) {
        if let Some(pid) = self.pid(i) {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP);
        }
    }

    pub fn resume(&self, i: usize) {
        if let Some(pid) = self.pid(i) {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT);
        }
    }

    /// Starts master i again if its process is gone (killed, or exited by itself); true if it
    /// had exited by itself rather than by the test's hand.
    pub fn restart(&mut self, i: usize) -> bool {
        let exited_by_itself = match self.children[i].as_mut() {
            Some(child) => match child.try_wait() {
                Ok(None) => return false,
                _ => true,
            },
            None => false,
        };
        let child = self.spawn(i);
        self.children[i] = Some(child);
        exited_by_itself
    }

    /// Drops every packet master `from` sends to master `to` over the bridge (one way).
    pub fn drop_link(&mut self, from: usize, to: usize) {
        if from == to || self.drops.contains(&(from, to)) {
            return;
        }
        let target = format!("10.233.{}.{}/32", self.subnet, 11 + to);
        ip(&["netns", "exec", &self.namespace(from), "ip", "route", "add", "blackhole", &target]);
        self.drops.push((from, to));
    }

    /// Removes every drop made by `drop_link`.
    pub fn heal_links(&mut self) {
        for (from, to) in std::mem::take(&mut self.drops) {
            let target = format!("10.233.{}.{}/32", self.subnet, 11 + to);
            ip(&["netns", "exec", &self.namespace(from), "ip", "route", "del", "blackhole", &target]);
        }
    }

    /// True when master i's state is on a file system `stall_disk` can freeze.
    pub fn has_own_disk(&self, i: usize) -> bool {
        self.disks.iter().any(|(m, _)| *m == i)
    }

    /// Freezes (`stalled`) or thaws master i's state file system: every write and fsync under
    /// it blocks until the thaw, as on a disk that stalls.
    pub fn stall_disk(&self, i: usize, stalled: bool) {
        for (_, disk) in self.disks.iter().filter(|(m, _)| *m == i) {
            disk.freeze(stalled);
        }
    }

    /// Thaws every master's state file system.
    pub fn unstall_disks(&self) {
        for (_, disk) in &self.disks {
            disk.freeze(false);
        }
    }

    /// Fills master i's tmpfs state directory (see `StartOptions::tmpfs_state`) to the last byte.
    pub fn fill_disk(&self, i: usize) {
        use std::io::Write as _;
        let path = self.state_dir(i).join("nemesis-fill");
        let Ok(mut file) = std::fs::File::create(&path) else { return };
        let chunk = vec![0u8; 1 << 20];
        while file.write_all(&chunk).is_ok() {}
        // The last partial chunk: byte by byte is too slow, 4 KiB pages are enough.
        while file.write_all(&chunk[..4096]).is_ok() {}
        let _ = file.sync_all();
    }

    pub fn free_disk(&self, i: usize) {
        let _ = std::fs::remove_file(self.state_dir(i).join("nemesis-fill"));
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
            .arg(self.state_dir(i))
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
    pub async fn view(&self, i: usize) -> Option<(Role, u64, Option<String>)> {
        let (_, body) = self.get(i, "/health/ready").await.ok()?;
        let ready: Ready = serde_json::from_value(body).ok()?;
        Some((ready.role, ready.term, ready.leader))
    }

    /// Waits until every master is ready and names the same leader; returns (leader, term).
    pub async fn wait_until_agreed(&self, within: Duration) -> (String, u64) {
        let deadline = Instant::now() + within;
        loop {
            let mut answers = Vec::new();
            for i in 0..self.children.len() {
                answers.push(super::health_of(&self.peer_address(i), self.get(i, "/health/ready").await));
            }
            if let Some(agreed) = super::agreed(answers) {
                return agreed;
            }
            assert!(Instant::now() < deadline, "no agreed leader within {within:?}; logs:\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Copies each master's whole log to `dir/master-N.log` (the run's output directory), so the
    /// election lines can be read after the temporary directory is gone.
    pub fn copy_logs_to(&self, dir: &std::path::Path) {
        for i in 0..self.children.len() {
            if let Err(error) = std::fs::copy(self.log_path(i), dir.join(format!("master-{i}.log"))) {
                eprintln!("could not keep master {i}'s log: {error}");
            }
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
        // A master blocked on a frozen file system cannot die until it is thawed.
        self.unstall_disks();
        for child in self.children.iter_mut().flatten() {
            // A stopped master dies of SIGKILL as well; no SIGCONT needed.
            let _ = child.kill();
            let _ = child.wait();
        }
        // Unmounted (thawed first) before the namespaces go and the folder is removed.
        self.disks.clear();
        for made in self.made.iter().rev() {
            let args: Vec<&str> = match made.split_once(':') {
                Some(("netns", ns)) => vec!["netns", "del", ns],
                Some(("link", link)) => vec!["link", "del", link],
                Some(("mount", path)) => {
                    let _ = Command::new("umount").arg(path).stderr(Stdio::null()).status();
                    continue;
                }
                _ => continue,
            };
            let _ = Command::new("ip").args(&args).stderr(Stdio::null()).status();
        }
    }
}

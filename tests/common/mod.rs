//! Test harness: real `gearpump-master` processes on 127.0.0.1, each with its own port and
//! state directory under a temporary folder. Dropping a `TestCluster` kills every process it
//! started, so a failing test leaves nothing running.

#![allow(dead_code, unreachable_pub)] // shared by test crates that each use a part of it

pub mod certs;
pub mod in_process;
pub mod jarstore_suite;
pub mod minihdfs;
pub mod netns;
mod ports;

pub use ports::free_ports;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gearpump_master::client::health;
use gearpump_master::wire::{MasterHealth, Ready};
use serde::de::DeserializeOwned;
use serde_json::Value;

pub const MASTER_BIN: &str = env!("CARGO_BIN_EXE_gearpump-master");
pub const GEAR_BIN: &str = env!("CARGO_BIN_EXE_gear");

/// Writes the gear.conf every master of a test cluster reads (processes and in-process alike):
/// masters on 127.0.0.1 at `ports`, a `file://` jar store under `dir` shared by all of them
/// (the NFS stand-in) when `shared_jar_store`, then `extra_conf`.
pub fn write_conf(dir: &Path, ports: &[u16], shared_jar_store: bool, extra_conf: &str) -> PathBuf {
    let masters: Vec<String> = ports.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
    let jar_store = if shared_jar_store {
        format!("gearpump.jarstore.rootpath = \"file://{}\"", dir.join("jars").display())
    } else {
        String::new()
    };
    std::fs::create_dir_all(dir.join("jars")).expect("jar dir");
    let conf = dir.join("gear.conf");
    std::fs::write(
        &conf,
        format!(
            "gearpump.hostname = \"127.0.0.1\"\ngearpump.cluster.masters = [{}]\n{jar_store}\n{extra_conf}\n",
            masters.join(", ")
        ),
    )
    .expect("write gear.conf");
    conf
}

/// GET `url`: the status and the body as JSON (a string when it is not JSON).
pub async fn get_json(http: &reqwest::Client, url: &str) -> Result<(u16, Value), String> {
    let response = http.get(url).send().await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response.text().await.map_err(|e| e.to_string())?;
    Ok((status, serde_json::from_str(&body).unwrap_or(Value::String(body))))
}

/// A JSON answer read as the `wire` type `T` (panics, showing the answer, when it is not one).
pub fn wire<T: DeserializeOwned>(body: &Value) -> T {
    serde_json::from_value(body.clone())
        .unwrap_or_else(|e| panic!("not a {}: {e}: {body}", std::any::type_name::<T>()))
}

/// Master `address`'s answer to `GET /health/ready` (a 503 carries the same body), as
/// `gear health` reads it.
pub fn health_of(address: &str, answer: Result<(u16, Value), String>) -> MasterHealth {
    let ready = answer.and_then(|(_, body)| serde_json::from_value::<Ready>(body).map_err(|e| e.to_string()));
    MasterHealth::from_ready(address, ready)
}

/// The leader and term these masters agree on, judged as `gear health` judges a cluster (every
/// one ready, one leader in one term, exactly one leading); None while they do not.
pub fn agreed(answers: Vec<MasterHealth>) -> Option<(String, u64)> {
    let verdict = health::judge(answers, &health::Expect::default());
    if verdict.healthy {
        verdict.leader.zip(verdict.term)
    } else {
        None
    }
}

/// The last `lines` lines of a log file, for failure messages.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(lines).collect::<Vec<_>>().into_iter().rev().collect();
    tail.join("\n")
}

pub struct TestCluster {
    pub dir: tempfile::TempDir,
    pub ports: Vec<u16>,
    pub children: Vec<Option<Child>>,
    pub conf: PathBuf,
    pub http: reqwest::Client,
    /// `https` when the masters speak TLS (`Options::client_ca`).
    pub scheme: &'static str,
    /// The cluster CA and the bearer token `http` sends, for clients a test builds itself.
    pub client_ca: Option<PathBuf>,
    pub token: Option<String>,
    /// Under `start_secured`: the CA, certificates and tokens, in a folder that lives as long
    /// as the cluster.
    pub secured: Option<Box<(tempfile::TempDir, certs::Secured)>>,
    /// With `Options::own_disks`: each master's state file system, by index.
    pub disks: Vec<LoopDisk>,
}

pub struct Options {
    pub masters: usize,
    /// Extra lines for gear.conf.
    pub extra_conf: String,
    /// `file://` jar store shared by all masters (the NFS stand-in) unless false.
    pub shared_jar_store: bool,
    /// The cluster CA when `extra_conf` turns TLS on: the harness then talks `https://`.
    pub client_ca: Option<PathBuf>,
    /// A bearer token the harness's client sends with every request.
    pub token: Option<String>,
    /// Each master's state directory on a file system of its own (`LoopDisk`), so a test can
    /// freeze one master's disk. Needs root: check `LoopDisk::available()` first.
    pub own_disks: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            masters: 3,
            extra_conf: String::new(),
            shared_jar_store: true,
            client_ca: None,
            token: None,
            own_disks: false,
        }
    }
}

/// A client for the masters: trusting `ca` (then https only) and sending `token`, if given.
pub fn client_builder(ca: Option<&Path>, token: Option<&str>) -> reqwest::ClientBuilder {
    let mut builder = reqwest::Client::builder().no_proxy();
    if let Some(ca) = ca {
        let tls = gearpump_master::client::credentials::tls_config(ca).expect("the test CA");
        builder = builder.use_preconfigured_tls(tls);
    }
    if let Some(token) = token {
        let mut headers = reqwest::header::HeaderMap::new();
        let value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).expect("token");
        headers.insert(reqwest::header::AUTHORIZATION, value);
        builder = builder.default_headers(headers);
    }
    builder
}

impl TestCluster {
    /// Three masters secured as gearpump-setup does it (TLS, tokens, cluster secret), with
    /// `extra_conf`; the harness's client trusts the CA and sends the admin token.
    pub fn start_secured(extra_conf: &str) -> TestCluster {
        let keep = tempfile::tempdir().expect("cert dir");
        let secured = certs::Secured::write(keep.path());
        let mut cluster = TestCluster::start(Options {
            extra_conf: format!("{}{extra_conf}", secured.conf),
            client_ca: Some(secured.master.ca.clone()),
            token: Some(certs::ADMIN_TOKEN.into()),
            ..Options::default()
        });
        cluster.secured = Some(Box::new((keep, secured)));
        cluster
    }

    /// A client like the harness's own (CA and token), to be finished by the caller.
    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        client_builder(self.client_ca.as_deref(), self.token.as_deref())
    }

    pub fn start(options: Options) -> TestCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let ports = free_ports(options.masters);
        let conf = write_conf(dir.path(), &ports, options.shared_jar_store, &options.extra_conf);
        // No idle pooling: after an early error (413, a failed upload) the master closes the
        // connection without reading the rest of the body, and a pooled client can race that
        // close on its next request. A fresh loopback connection per request costs nothing here.
        let http = client_builder(options.client_ca.as_deref(), options.token.as_deref())
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(0)
            .build()
            .expect("client");
        let scheme = if options.client_ca.is_some() { "https" } else { "http" };
        let mut cluster = TestCluster {
            dir,
            ports,
            children: Vec::new(),
            conf,
            http,
            scheme,
            client_ca: options.client_ca,
            token: options.token,
            secured: None,
            disks: Vec::new(),
        };
        if options.own_disks {
            for index in 0..options.masters {
                let image = cluster.dir.path().join(format!("disk-{}.img", cluster.ports[index]));
                cluster.disks.push(LoopDisk::mount(&image, &cluster.state_dir(index), 64));
            }
        }
        for index in 0..options.masters {
            let child = cluster.spawn(index);
            cluster.children.push(Some(child));
        }
        cluster
    }

    pub fn address(&self, index: usize) -> String {
        format!("127.0.0.1:{}", self.ports[index])
    }

    pub fn url(&self, index: usize, path: &str) -> String {
        format!("{}://127.0.0.1:{}{path}", self.scheme, self.ports[index])
    }

    pub fn masters_arg(&self) -> String {
        (0..self.ports.len()).map(|i| self.address(i)).collect::<Vec<_>>().join(",")
    }

    pub fn state_dir(&self, index: usize) -> PathBuf {
        self.dir.path().join(format!("state-{}", self.ports[index]))
    }

    pub fn log_path(&self, index: usize) -> PathBuf {
        self.dir.path().join(format!("master-{}.log", self.ports[index]))
    }

    fn spawn(&self, index: usize) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(index))
            .expect("log file");
        let log_err = log.try_clone().expect("clone log");
        Command::new(MASTER_BIN)
            .arg("--config")
            .arg(&self.conf)
            .args(["-ip", "127.0.0.1", "-port", &self.ports[index].to_string()])
            .arg("--state-dir")
            .arg(self.state_dir(index))
            .env_remove("NOTIFY_SOCKET")
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .spawn()
            .expect("start gearpump-master")
    }

    /// SIGKILL: no goodbye, no flush beyond what was fsynced.
    pub fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.children[index].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP (`frozen`) or SIGCONT: the process keeps its timers, sockets and state, and
    /// what peers send it waits in its sockets — an overloaded machine, exaggerated.
    pub fn freeze(&self, index: usize, frozen: bool) {
        let child = self.children[index].as_ref().expect("master is running");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let signal =
            if frozen { nix::sys::signal::Signal::SIGSTOP } else { nix::sys::signal::Signal::SIGCONT };
        nix::sys::signal::kill(pid, signal).expect("signal the master");
    }

    /// SIGTERM and wait for the exit status.
    pub fn terminate(&mut self, index: usize) -> std::process::ExitStatus {
        let mut child = self.children[index].take().expect("master is running");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("send SIGTERM");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("master {} did not stop within 20 s of SIGTERM", self.address(index));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn restart(&mut self, index: usize) {
        assert!(self.children[index].is_none(), "restart of a running master");
        let child = self.spawn(index);
        self.children[index] = Some(child);
    }

    pub fn is_running(&self, index: usize) -> bool {
        self.children[index].is_some()
    }

    pub async fn get(&self, index: usize, path: &str) -> Result<(u16, Value), String> {
        get_json(&self.http, &self.url(index, path)).await
    }

    /// POSTs a multipart form to `submitapp` on master `index`: (status, JSON body or Null).
    pub async fn submit_form(&self, index: usize, form: reqwest::multipart::Form) -> (u16, Value) {
        let response = self
            .http
            .post(self.url(index, "/api/v1.0/master/submitapp"))
            .multipart(form)
            .send()
            .await
            .expect("send submitapp");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn ready(&self, index: usize) -> bool {
        matches!(self.get(index, "/health/ready").await, Ok((200, _)))
    }

    /// Waits until every running master is ready and they agree on one leader.
    pub async fn wait_until_ready(&self, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            if let Some(leader) = self.agreed_leader().await {
                return leader;
            }
            if Instant::now() > deadline {
                panic!("cluster not ready within {within:?}; logs:\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn agreed_leader(&self) -> Option<String> {
        let running: Vec<usize> = (0..self.ports.len()).filter(|i| self.is_running(*i)).collect();
        self.agreed_leader_of(&running).await
    }

    /// The leader the masters at `indices` agree on, each asked itself, if they do.
    pub async fn agreed_leader_of(&self, indices: &[usize]) -> Option<String> {
        let mut answers = Vec::new();
        for index in indices {
            answers.push(health_of(&self.address(*index), self.get(*index, "/health/ready").await));
        }
        agreed(answers).map(|(leader, _)| leader)
    }

    pub fn index_of(&self, address: &str) -> usize {
        (0..self.ports.len()).find(|i| self.address(*i) == address).expect("address of a cluster member")
    }

    pub fn logs(&self) -> String {
        (0..self.ports.len())
            .map(|i| format!("--- {} ---\n{}\n", self.address(i), log_tail(&self.log_path(i), 30)))
            .collect()
    }

    /// Runs `gear` against this cluster and returns (success, stdout, stderr).
    pub fn gear(&self, args: &[&str]) -> (bool, String, String) {
        let output = Command::new(GEAR_BIN)
            .arg("--master")
            .arg(self.masters_arg())
            .args(args)
            .output()
            .expect("run gear");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        // A process blocked on a frozen file system cannot die until it is thawed.
        for disk in &self.disks {
            disk.freeze(false);
        }
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Unmounted before the temporary folder holding their mount points is removed.
        self.disks.clear();
    }
}

/// A file system of its own (an ext4 image on a loop device) mounted at a folder, which
/// a test can freeze (`fsfreeze`): every write and fsync under it then blocks until it is
/// thawed, as on a disk that stalls. Unmounted when dropped, thawed first.
pub struct LoopDisk {
    at: PathBuf,
}

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let output = Command::new(program).args(args).output().map_err(|e| format!("{program}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!("{program} {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr)))
    }
}

impl LoopDisk {
    /// Root, mkfs.ext4 and fsfreeze (util-linux) are there.
    pub fn available() -> bool {
        let root = Command::new("id").arg("-u").output().is_ok_and(|out| out.stdout.trim_ascii() == b"0");
        let has = |tool: &str| {
            Command::new(tool).arg("-V").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
        };
        root && has("mkfs.ext4") && has("fsfreeze")
    }

    /// An image of `mib` MiB (sparse: only what is written takes space) at `image`.
    pub fn mount(image: &Path, at: &Path, mib: u64) -> LoopDisk {
        let file = std::fs::File::create(image).expect("disk image");
        file.set_len(mib << 20).expect("size the disk image");
        std::fs::create_dir_all(at).expect("mount point");
        let (image, at_str) = (image.to_str().expect("image path"), at.to_str().expect("mount point"));
        run("mkfs.ext4", &["-q", "-F", image]).expect("make the file system");
        run("mount", &["-o", "loop", image, at_str]).expect("mount the disk image");
        LoopDisk { at: at.to_path_buf() }
    }

    /// Freezes (every write under it blocks) or thaws the file system.
    pub fn freeze(&self, frozen: bool) {
        let at = self.at.to_str().expect("mount point");
        let outcome = run("fsfreeze", &[if frozen { "-f" } else { "-u" }, at]);
        // Thawing one that is not frozen fails: that is fine.
        if frozen {
            outcome.expect("freeze the file system");
        }
    }
}

impl Drop for LoopDisk {
    fn drop(&mut self) {
        self.freeze(false);
        let at = self.at.to_str().unwrap_or_default();
        if run("umount", &[at]).is_err() {
            let _ = run("umount", &["-l", at]);
        }
    }
}

/// Writes a jar-like file of `size` bytes with content derived from `seed`.
pub fn make_jar(dir: &Path, name: &str, size: usize, seed: u8) -> PathBuf {
    let path = dir.join(name);
    let bytes: Vec<u8> = (0..size).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect();
    std::fs::write(&path, bytes).expect("write jar");
    path
}

/// A master started outside a `TestCluster`'s list (a master being added); killed on drop.
pub struct ExtraMaster {
    pub port: u16,
    child: Child,
}

impl ExtraMaster {
    pub fn start(dir: &Path, masters: &[String], port: u16) -> ExtraMaster {
        let list: Vec<String> = masters.iter().map(|m| format!("\"{m}\"")).collect();
        let conf = dir.join(format!("extra-{port}.conf"));
        std::fs::write(
            &conf,
            format!(
                "gearpump.cluster.masters = [{}]\ngearpump.jarstore.rootpath = \"file://{}\"\n",
                list.join(", "),
                dir.join("jars").display()
            ),
        )
        .expect("write conf");
        let log = std::fs::File::create(dir.join(format!("extra-{port}.log"))).expect("log");
        let child = Command::new(MASTER_BIN)
            .arg("--config")
            .arg(&conf)
            .args(["-ip", "127.0.0.1", "-port", &port.to_string(), "--state-dir"])
            .arg(dir.join(format!("extra-state-{port}")))
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start extra master");
        ExtraMaster { port, child }
    }
}

impl Drop for ExtraMaster {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

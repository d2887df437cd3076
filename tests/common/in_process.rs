//! Masters in the test's own process (`daemon::serve`), for tests that need no SIGKILL, no
//! per-master log file and no systemd: they start in milliseconds and a panic in a master
//! shows up in the test. Each master gets a listener bound *before* the masters list is
//! written, so no port can be taken in between, and its own Tokio runtime on its own thread,
//! so a master's tasks never share a scheduler with the test's (or another master's) and
//! stopping it is a graceful shutdown, as SIGTERM is for a process.

use std::net::TcpListener;
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gearpump_master::config::{self, Overrides};
use serde_json::Value;

/// One master running `daemon::serve` on its own runtime thread.
struct Master {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<(), String>>>,
}

impl Master {
    fn start(conf: PathBuf, port: u16, state_dir: PathBuf, listener: TcpListener) -> Master {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let overrides =
            Overrides { ip: Some("127.0.0.1".into()), port: Some(port), state_dir: Some(state_dir) };
        let thread = std::thread::Builder::new()
            .name(format!("master-{port}"))
            .spawn(move || -> Result<(), String> {
                let config = config::load(Some(&conf), &overrides).map_err(|e| e.to_string())?;
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?;
                runtime.block_on(async move {
                    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
                    let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| e.to_string())?;
                    let shutdown = async {
                        let _ = stopped.await;
                    };
                    gearpump_master::daemon::serve(config, listener, shutdown)
                        .await
                        .map_err(|e| e.to_string())
                })
            })
            .expect("a thread for the master");
        Master { stop: Some(stop), thread: Some(thread) }
    }

    /// Asks the master to stop and waits for `serve` to return.
    fn stop(&mut self) -> Result<(), String> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take() {
            Some(thread) => thread.join().unwrap_or_else(|_| Err("the master's thread panicked".into())),
            None => Ok(()),
        }
    }
}

impl Drop for Master {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Masters on 127.0.0.1 in this process, sharing a `file://` jar store under `dir`.
pub struct InProcessCluster {
    pub dir: tempfile::TempDir,
    pub ports: Vec<u16>,
    conf: PathBuf,
    masters: Vec<Option<Master>>,
    pub http: reqwest::Client,
}

impl InProcessCluster {
    /// `count` masters with `extra_conf` appended to their gear.conf.
    pub fn start(count: usize, extra_conf: &str) -> InProcessCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let listeners: Vec<TcpListener> =
            (0..count).map(|_| TcpListener::bind("127.0.0.1:0").expect("a listener")).collect();
        let ports: Vec<u16> =
            listeners.iter().map(|l| l.local_addr().expect("a bound address").port()).collect();
        let conf = super::write_conf(dir.path(), &ports, true, extra_conf);
        let http =
            reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(30)).build().expect("a client");
        let mut cluster = InProcessCluster { dir, ports, conf, masters: Vec::new(), http };
        for (index, listener) in listeners.into_iter().enumerate() {
            let master = cluster.master(index, listener);
            cluster.masters.push(Some(master));
        }
        cluster
    }

    fn master(&self, index: usize, listener: TcpListener) -> Master {
        let port = self.ports[index];
        Master::start(self.conf.clone(), port, self.dir.path().join(format!("state-{port}")), listener)
    }

    pub fn address(&self, index: usize) -> String {
        format!("127.0.0.1:{}", self.ports[index])
    }

    pub fn url(&self, index: usize, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.ports[index])
    }

    pub fn index_of(&self, address: &str) -> usize {
        (0..self.ports.len()).find(|i| self.address(*i) == address).expect("address of a member")
    }

    /// Stops master `index` as SIGTERM would (it hands leadership over) and returns what
    /// `serve` returned.
    pub fn stop(&mut self, index: usize) -> Result<(), String> {
        self.masters[index].take().expect("a running master").stop()
    }

    /// Starts master `index` again on its port and state directory.
    pub fn restart(&mut self, index: usize) {
        assert!(self.masters[index].is_none(), "restart of a running master");
        let listener = TcpListener::bind(("127.0.0.1", self.ports[index])).expect("its port again");
        self.masters[index] = Some(self.master(index, listener));
    }

    pub async fn get(&self, index: usize, path: &str) -> Result<(u16, Value), String> {
        super::get_json(&self.http, &self.url(index, path)).await
    }

    /// Waits until every running master is ready and they agree on one leader; returns it.
    pub async fn wait_for_leader(&self, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let mut answers = Vec::new();
            for index in (0..self.ports.len()).filter(|i| self.masters[*i].is_some()) {
                answers.push(super::health_of(&self.address(index), self.get(index, "/health/ready").await));
            }
            if let Some((leader, _)) = super::agreed(answers) {
                return leader;
            }
            assert!(Instant::now() < deadline, "no agreed leader within {within:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

//! The systemd notify protocol, checked outside systemd with a datagram socket of our own as
//! NOTIFY_SOCKET (what systemd itself listens on).

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_ports, MASTER_BIN};

struct Master(Child);

impl Drop for Master {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(
    dir: &std::path::Path,
    masters: &[u16],
    port: u16,
    socket: &std::path::Path,
    watchdog_usec: Option<u64>,
) -> Master {
    let list: Vec<String> = masters.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
    let conf = dir.join(format!("gear-{port}.conf"));
    std::fs::write(&conf, format!("gearpump.cluster.masters = [{}]\n", list.join(", "))).expect("conf");
    let mut command = Command::new(MASTER_BIN);
    command
        .arg("--config")
        .arg(&conf)
        .args(["-ip", "127.0.0.1", "-port", &port.to_string(), "--state-dir"])
        .arg(dir.join(format!("state-{port}")))
        .env("NOTIFY_SOCKET", socket)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(usec) = watchdog_usec {
        command.env("WATCHDOG_USEC", usec.to_string());
    }
    Master(command.spawn().expect("start master"))
}

/// Collects datagrams until `done` returns true for one of them, or `within` passes.
fn receive_until(socket: &UnixDatagram, within: Duration, done: impl Fn(&str) -> bool) -> Vec<String> {
    let deadline = Instant::now() + within;
    let mut messages = Vec::new();
    let mut buffer = [0u8; 4096];
    while Instant::now() < deadline {
        if let Ok(n) = socket.recv(&mut buffer) {
            let message = String::from_utf8_lossy(&buffer[..n]).into_owned();
            let finished = done(&message);
            messages.push(message);
            if finished {
                break;
            }
        }
    }
    messages
}

fn bind(dir: &std::path::Path) -> (UnixDatagram, std::path::PathBuf) {
    let path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&path).expect("bind notify socket");
    socket.set_read_timeout(Some(Duration::from_millis(100))).expect("timeout");
    (socket, path)
}

#[test]
fn single_master_is_ready_at_once_and_says_stopping_on_sigterm() {
    let dir = tempfile::tempdir().expect("dir");
    let (socket, path) = bind(dir.path());
    let port = free_ports(1)[0];
    let mut master = start(dir.path(), &[port], port, &path, None);
    let messages = receive_until(&socket, Duration::from_secs(10), |m| m.contains("READY=1"));
    let ready = messages
        .iter()
        .find(|m| m.contains("READY=1"))
        .unwrap_or_else(|| panic!("no READY=1 in {messages:?}"));
    assert!(ready.contains("STATUS=leader, term"), "{ready}");

    let pid = nix::unistd::Pid::from_raw(master.0.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let messages = receive_until(&socket, Duration::from_secs(10), |m| m.contains("STOPPING=1"));
    assert!(messages.iter().any(|m| m.contains("STOPPING=1")), "{messages:?}");
    let status = master.0.wait().expect("exit");
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_master_alone_extends_the_start_timeout_and_says_why() {
    let dir = tempfile::tempdir().expect("dir");
    let (socket, path) = bind(dir.path());
    let ports = free_ports(3);
    let _alone = start(dir.path(), &ports, ports[0], &path, None);
    let messages = receive_until(&socket, Duration::from_secs(3), |_| false);
    assert!(messages.iter().any(|m| m.contains("EXTEND_TIMEOUT_USEC=")), "{messages:?}");
    assert!(
        messages.iter().any(|m| m.contains("STATUS=waiting for quorum: 1 of 3 masters reachable")),
        "{messages:?}"
    );
    assert!(!messages.iter().any(|m| m.contains("READY=1")), "not ready without a quorum: {messages:?}");
}

#[test]
fn watchdog_pings_while_healthy_and_stop_when_frozen() {
    let dir = tempfile::tempdir().expect("dir");
    let (socket, path) = bind(dir.path());
    let port = free_ports(1)[0];
    let master = start(dir.path(), &[port], port, &path, Some(400_000));
    let messages = receive_until(&socket, Duration::from_secs(10), |m| m.contains("WATCHDOG=1"));
    assert!(messages.iter().any(|m| m.contains("WATCHDOG=1")), "{messages:?}");

    let pid = nix::unistd::Pid::from_raw(master.0.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).expect("SIGSTOP");
    // Drain what was sent before the stop took effect, then expect silence.
    let _ = receive_until(&socket, Duration::from_millis(300), |_| false);
    let silent = receive_until(&socket, Duration::from_secs(1), |_| false);
    assert!(!silent.iter().any(|m| m.contains("WATCHDOG=1")), "a frozen master must not ping: {silent:?}");
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).expect("SIGCONT");
    let resumed = receive_until(&socket, Duration::from_secs(5), |m| m.contains("WATCHDOG=1"));
    assert!(resumed.iter().any(|m| m.contains("WATCHDOG=1")), "{resumed:?}");
}

/// gearpump-worker under Type=notify: STATUS while it registers, READY=1 with its id and the
/// master once a leader acknowledged it, watchdog pings from its heartbeat loop, STOPPING=1.
#[test]
fn a_worker_is_ready_once_registered_and_pings_the_watchdog() {
    let dir = tempfile::tempdir().expect("dir");
    let (socket, path) = bind(dir.path());
    let master_socket = dir.path().join("master-notify.sock");
    let _master_listener = UnixDatagram::bind(&master_socket).expect("bind");
    let port = free_ports(1)[0];
    let _master = start(dir.path(), &[port], port, &master_socket, None);
    let conf = dir.path().join(format!("gear-{port}.conf"));
    let mut worker = Master(
        Command::new(env!("CARGO_BIN_EXE_gearpump-worker"))
            .arg("--config")
            .arg(&conf)
            .arg("--state-dir")
            .arg(dir.path().join("worker"))
            .env("NOTIFY_SOCKET", &path)
            .env("WATCHDOG_USEC", "2000000")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start gearpump-worker"),
    );
    let messages = receive_until(&socket, Duration::from_secs(20), |m| m.contains("READY=1"));
    let ready = messages
        .iter()
        .find(|m| m.contains("READY=1"))
        .unwrap_or_else(|| panic!("no READY=1 in {messages:?}"));
    let expected = format!("STATUS=worker 0 via master 127.0.0.1:{port}; 0/1000 slots, 0 attempt(s)");
    assert!(ready.contains(&expected), "{ready}");
    let pings = receive_until(&socket, Duration::from_secs(5), |m| m.contains("WATCHDOG=1"));
    assert!(pings.iter().any(|m| m.contains("WATCHDOG=1")), "{pings:?}");

    let pid = nix::unistd::Pid::from_raw(worker.0.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let messages = receive_until(&socket, Duration::from_secs(10), |m| m.contains("STOPPING=1"));
    assert!(messages.iter().any(|m| m.contains("STOPPING=1")), "{messages:?}");
    assert!(worker.0.wait().expect("exit").success());
}

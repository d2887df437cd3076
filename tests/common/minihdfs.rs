//! A real HDFS for a test: `scripts/hdfs-minicluster.sh` on a temporary directory and a free
//! port of 127.0.0.1. Dropping the guard stops it, also when the test panics; the launcher also
//! watches its stdin, held by the guard, so even a test process killed outright takes HDFS down.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};

pub struct MiniHdfs {
    dir: tempfile::TempDir,
    port: u16,
    uri: String,
    /// Its end is the launcher's stdin: dropping it is a stop signal of last resort.
    stdin: Option<ChildStdin>,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/hdfs-minicluster.sh")
}

impl MiniHdfs {
    /// Starts HDFS or panics saying why: a missing java/mvn or Maven Central out of reach is a
    /// test failure, never a skip.
    pub fn start() -> MiniHdfs {
        let dir =
            tempfile::Builder::new().prefix("minihdfs-").tempdir().expect("creating a temp dir for HDFS");
        let mut hdfs = MiniHdfs { dir, port: super::free_ports(1)[0], uri: String::new(), stdin: None };
        hdfs.start_again();
        hdfs
    }

    /// `hdfs://127.0.0.1:PORT`, no path.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// (Re)starts HDFS on the same directory and port: the namespace and blocks survive.
    pub fn start_again(&mut self) {
        let mut child = Command::new("bash")
            .arg(script())
            .arg("start")
            .arg(self.dir.path())
            .arg(self.port.to_string())
            .arg("--tie-to-stdin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script().display()));
        // Taken before waiting: wait_with_output would close it, and the launcher with it.
        self.stdin = child.stdin.take();
        let output = child.wait_with_output().expect("waiting for hdfs-minicluster.sh start");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            self.stdin = None;
            panic!(
                "could not start HDFS for the jar store tests (needs java 17, mvn and Maven Central): \
                 hdfs-minicluster.sh start exited with {}\n--- stderr ---\n{stderr}\n--- stdout ---\n{stdout}",
                output.status
            );
        }
        let uri = stdout.lines().rev().find(|l| l.starts_with("hdfs://")).map(str::to_string);
        self.uri = uri.unwrap_or_else(|| panic!("hdfs-minicluster.sh printed no URI: {stdout}\n{stderr}"));
    }

    /// Stops HDFS (SIGTERM, then SIGKILL after a bound); the data stays for `start_again`.
    pub fn stop(&mut self) {
        let status = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(self.dir.path())
            .status()
            .expect("running hdfs-minicluster.sh stop");
        self.stdin = None;
        assert!(status.success(), "hdfs-minicluster.sh stop failed: {status}");
    }

    /// The tail of the launcher's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("minicluster.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for MiniHdfs {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.flush();
        }
    }
}

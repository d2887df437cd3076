//! Commands and file copies on the nodes through the system's OpenSSH client, so the operator's
//! ~/.ssh/config, agent and known_hosts apply exactly as for an interactive `ssh NODE`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Default)]
pub struct SshOptions {
    pub user: Option<String>,
    pub key: Option<PathBuf>,
    pub port: Option<u16>,
    pub config: Option<PathBuf>,
    pub sudo: bool,
    pub connect_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// The most useful line of an error: stderr's last non-empty line, else stdout's.
    pub fn cause(&self) -> String {
        let last =
            |text: &str| text.lines().rev().find(|l| !l.trim().is_empty()).map(|l| l.trim().to_string());
        last(&self.stderr)
            .or_else(|| last(&self.stdout))
            .unwrap_or_else(|| format!("exit status {}", self.status))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot run {program}: {cause}")]
    Spawn { program: String, cause: String },
    #[error("ssh to {node} failed: {cause}")]
    Connect { node: String, cause: String },
    #[error("no answer from {node} within {seconds} s")]
    Timeout { node: String, seconds: u64 },
}

/// How the installer reaches a node. The real one is OpenSSH; tests substitute their own.
pub trait Transport: Sync {
    /// Runs a POSIX shell script on the node as root (through sudo when asked), feeding `stdin`.
    fn run(
        &self,
        node: &str,
        script: &str,
        stdin: &[u8],
        timeout: Duration,
    ) -> Result<Output, TransportError>;
    /// Copies a local file to `remote` on the node (a path the login user may write).
    fn copy(&self, node: &str, local: &Path, remote: &str, timeout: Duration) -> Result<(), TransportError>;
}

/// Quotes a word for a POSIX shell.
pub fn shell_quote(word: &str) -> String {
    if !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || "@%+=:,./-_".contains(c)) {
        return word.to_string();
    }
    format!("'{}'", word.replace('\'', r"'\''"))
}

pub struct SshTransport {
    pub options: SshOptions,
}

impl SshTransport {
    fn common_options(&self, port_flag: &str) -> Vec<String> {
        let o = &self.options;
        let mut args = Vec::new();
        if let Some(config) = &o.config {
            args.extend(["-F".to_string(), config.display().to_string()]);
        }
        // BatchMode: never wait for a password or host-key prompt nobody will answer.
        args.extend([
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            format!("ConnectTimeout={}", o.connect_timeout.as_secs().max(1)),
            "-o".into(),
            "ServerAliveInterval=5".into(),
            "-o".into(),
            "ServerAliveCountMax=3".into(),
        ]);
        if let Some(user) = &o.user {
            args.extend(["-o".into(), format!("User={user}")]);
        }
        if let Some(key) = &o.key {
            args.extend(["-i".into(), key.display().to_string()]);
        }
        if let Some(port) = o.port {
            args.extend([port_flag.to_string(), port.to_string()]);
        }
        args
    }

    /// The remote command line: the script as an argument of `sh -c`, under `sudo -n` if asked.
    pub fn remote_command(&self, script: &str) -> String {
        let sh = format!("sh -c {}", shell_quote(script));
        if self.options.sudo {
            format!("sudo -n {sh}")
        } else {
            sh
        }
    }
}

/// Runs a child with a deadline, feeding stdin and collecting both outputs.
fn run_with_deadline(
    mut command: Command,
    stdin: &[u8],
    timeout: Duration,
    node: &str,
) -> Result<Output, TransportError> {
    let program = format!("{:?}", command.get_program());
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| TransportError::Spawn { program: program.clone(), cause: e.to_string() })?;
    let feeder = child.stdin.take().map(|mut pipe| {
        let data = stdin.to_vec();
        // A writer thread: a large stdin must not deadlock against a child that fills stdout.
        std::thread::spawn(move || {
            let _ = pipe.write_all(&data);
        })
    });
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut text);
            }
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let out = reader(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let err = reader(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(TransportError::Timeout { node: node.to_string(), seconds: timeout.as_secs() });
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(TransportError::Spawn { program, cause: e.to_string() }),
        }
    };
    if let Some(feeder) = feeder {
        let _ = feeder.join();
    }
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    Ok(Output { status: status.code().unwrap_or(-1), stdout, stderr })
}

impl Transport for SshTransport {
    fn run(
        &self,
        node: &str,
        script: &str,
        stdin: &[u8],
        timeout: Duration,
    ) -> Result<Output, TransportError> {
        let mut command = Command::new("ssh");
        command.args(self.common_options("-p")).arg("--").arg(node).arg(self.remote_command(script));
        let output = run_with_deadline(command, stdin, timeout, node)?;
        // 255 is ssh's own failure (connection, authentication, host key), not the script's.
        if output.status == 255 {
            return Err(TransportError::Connect { node: node.to_string(), cause: output.cause() });
        }
        Ok(output)
    }

    fn copy(&self, node: &str, local: &Path, remote: &str, timeout: Duration) -> Result<(), TransportError> {
        let mut command = Command::new("scp");
        command
            .arg("-q")
            .args(self.common_options("-P"))
            .arg("--")
            .arg(local)
            .arg(format!("{node}:{remote}"));
        let output = run_with_deadline(command, &[], timeout, node)?;
        if output.status != 0 {
            return Err(TransportError::Connect {
                node: node.to_string(),
                cause: format!("scp: {}", output.cause()),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("node1:3000"), "node1:3000");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        let ssh = SshTransport { options: SshOptions { sudo: true, ..Default::default() } };
        assert_eq!(ssh.remote_command("echo 'a b'"), r"sudo -n sh -c 'echo '\''a b'\'''");
    }

    #[test]
    fn deadline_kills_a_hung_command() {
        let mut command = Command::new("sleep");
        command.arg("5");
        let started = Instant::now();
        let result = run_with_deadline(command, &[], Duration::from_millis(200), "local");
        assert!(matches!(result, Err(TransportError::Timeout { .. })));
        assert!(started.elapsed() < Duration::from_secs(3));
    }
}

//! Running one attempt: the jar from any master (SHA-256 checked, cached by checksum), then
//! `java [vmargs] -cp JAR[:extraClasspath] MAIN ARGS...` in its own process group, its output
//! in a size-bounded log, guarded by a fence process.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::state::{AppId, JarRef};

const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(600);

/// The folder of one attempt under the worker's state dir: `log`, `pgid`, `ended`, `reported`.
pub(super) fn attempt_dir(state_dir: &Path, app_id: AppId, attempt: u32) -> PathBuf {
    state_dir.join("attempts").join(format!("app-{app_id}-attempt-{attempt}"))
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The jar in the cache (`jars/<sha256>.jar`), downloading it from the first master that has it
/// (`masters`: base URLs, `https://host:port` under TLS).
pub(super) async fn fetch_jar(
    http: &reqwest::Client,
    masters: &[String],
    jar: &JarRef,
    state_dir: &Path,
) -> Result<PathBuf, String> {
    let dir = state_dir.join("jars");
    let sha = jar.sha256.to_ascii_lowercase();
    if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("jar {} has a malformed SHA-256 {:?}", jar.key, jar.sha256));
    }
    let cached = dir.join(format!("{sha}.jar"));
    if let Ok(file) = std::fs::File::options().append(true).open(&cached) {
        // Its modification time says when it was last used (see `forget_unused_jars`).
        let _ = file.set_modified(std::time::SystemTime::now());
        return Ok(cached);
    }
    tokio::fs::create_dir_all(&dir).await.map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut errors = Vec::new();
    for master in masters {
        let url = format!("{master}/api/v1.0/jarstore/download?file={}", encode(&jar.key));
        match download(http, &url, &dir, &sha).await {
            Ok(tmp) => {
                tokio::fs::rename(&tmp, &cached).await.map_err(|e| format!("{}: {e}", cached.display()))?;
                return Ok(cached);
            }
            Err(e) => errors.push(format!("{master}: {e}")),
        }
    }
    Err(format!("cannot download jar {} from any master: {}", jar.key, errors.join("; ")))
}

async fn download(http: &reqwest::Client, url: &str, dir: &Path, sha: &str) -> Result<PathBuf, String> {
    // Generous (a jar may be large), but a hung master must not hold the attempt forever.
    let response = http.get(url).timeout(DOWNLOAD_TIMEOUT).send().await.map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("answered {}", response.status()));
    }
    let tmp = dir.join(format!(".{sha}.{}.part", std::process::id()));
    let mut file = tokio::fs::File::create(&tmp).await.map_err(|e| format!("{}: {e}", tmp.display()))?;
    let mut hasher = Sha256::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| format!("download interrupted: {e}"))?;
        hasher.update(&chunk);
        file.write_all(&chunk).await.map_err(|e| format!("{}: {e}", tmp.display()))?;
    }
    file.sync_all().await.map_err(|e| e.to_string())?;
    let got = hex::encode(hasher.finalize());
    if got != sha {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(format!("SHA-256 mismatch: expected {sha}, got {got}"));
    }
    Ok(tmp)
}

/// Deletes cached jars not used for `keep` (the cache is keyed by checksum, so it only grows).
pub(super) fn forget_unused_jars(state_dir: &Path, keep: Duration) {
    let Ok(entries) = std::fs::read_dir(state_dir.join("jars")) else { return };
    for entry in entries.flatten() {
        let age = entry.metadata().ok().and_then(|m| m.modified().ok()).and_then(|at| at.elapsed().ok());
        if age.is_some_and(|age| age > keep) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// What `java` is run with.
pub(super) struct Launch<'a> {
    pub java: &'a str,
    pub vmargs: &'a [String],
    pub extra_classpath: &'a [String],
    pub jar: &'a Path,
    pub main_class: &'a str,
    pub args: &'a [String],
    pub env: Vec<(&'static str, String)>,
    pub log: &'a Path,
}

/// Starts the JVM in its own process group (its pid is the group id), output appended to the log.
pub(super) fn spawn_java(launch: &Launch<'_>) -> Result<tokio::process::Child, String> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(launch.log)
        .map_err(|e| format!("{}: {e}", launch.log.display()))?;
    let log_err = log.try_clone().map_err(|e| e.to_string())?;
    let mut classpath = launch.jar.display().to_string();
    for extra in launch.extra_classpath {
        classpath.push(':');
        classpath.push_str(extra);
    }
    let mut command = tokio::process::Command::new(launch.java);
    command
        .args(launch.vmargs)
        .arg("-cp")
        .arg(classpath)
        .arg(launch.main_class)
        .args(launch.args)
        .envs(launch.env.iter().map(|(k, v)| (*k, v.as_str())))
        // systemd's notify socket and watchdog are the worker's, not the application's.
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err))
        .process_group(0);
    command.spawn().map_err(|e| format!("cannot start {}: {e}", launch.java))
}

/// Starts the fence process guarding process group `pgid`.
pub(super) fn spawn_fence(lease: &Path, fence: Duration, pgid: u32) -> Result<tokio::process::Child, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the worker binary: {e}"))?;
    tokio::process::Command::new(exe)
        .arg("__fence")
        .arg(lease)
        .arg(fence.as_millis().to_string())
        .arg(pgid.to_string())
        .arg(std::process::id().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start the fence process: {e}"))
}

/// Keeps the log under `max` bytes: the current content moves to `log.1` (replacing it) and
/// the log starts over. The JVM writes with O_APPEND, so it carries on at the new end.
pub(super) fn rotate_if_large(log: &Path, max: u64) {
    let Ok(meta) = std::fs::metadata(log) else { return };
    if meta.len() <= max {
        return;
    }
    let old = log.with_extension("1");
    if std::fs::copy(log, &old).is_ok() {
        if let Ok(file) = std::fs::OpenOptions::new().write(true).open(log) {
            let _ = file.set_len(0);
        }
    }
}

/// The last `bytes` of a file, as text.
pub(super) fn tail(path: &Path, bytes: u64) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(bytes)))?;
    let mut buffer = Vec::new();
    file.take(bytes).read_to_end(&mut buffer)?;
    Ok(String::from_utf8_lossy(&buffer).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_log_is_rotated_and_its_tail_read() {
        let dir = tempfile::tempdir().expect("dir");
        let log = dir.path().join("log");
        std::fs::write(&log, "a".repeat(100) + "END\n").expect("write");
        rotate_if_large(&log, 1000);
        assert_eq!(std::fs::metadata(&log).expect("log").len(), 104, "small logs stay");
        rotate_if_large(&log, 50);
        assert_eq!(std::fs::metadata(&log).expect("log").len(), 0);
        assert_eq!(tail(&log.with_extension("1"), 4).expect("tail"), "END\n");
        assert_eq!(tail(&log.with_extension("1"), 1 << 20).expect("tail").len(), 104);
    }

    #[test]
    fn jar_names_are_escaped_in_the_download_url() {
        assert_eq!(encode("123-my app.jar"), "123-my%20app.jar");
        assert_eq!(encode("a&b=c"), "a%26b%3Dc");
    }
}

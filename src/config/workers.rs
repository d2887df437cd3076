//! The keys of workers, in one block: what `gearpump-worker` reads, and the timing pair the
//! masters must agree with.
//!
//! Fencing is only safe when a leader waits longer before declaring a worker lost than that
//! worker waits before killing its own attempts (plus one heartbeat of slack), so the masters
//! and the workers read the same three durations from the same gear.conf and both refuse a pair
//! that would overlap.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hocon::HoconValue;

use super::{non_empty_text, read_masters, read_source, scalar_text, ConfigError, HostPort, Origin, Source};

/// The keys below, for the unknown-key check and the merger's key table.
pub const WORKER_KEYS: &[&str] = &[
    "gearpump.worker.slots",
    "gearpump.worker.java",
    "gearpump.worker.state-dir",
    "gearpump.worker.heartbeat-interval",
    "gearpump.worker.fence-timeout",
    "gearpump.worker.log-max-size",
    "gearpump.worker.port",
    "gearpump.appmaster.vmargs",
    "gearpump.appmaster.extraClasspath",
    "gearpump.master.worker-loss-timeout",
];

const HEARTBEAT: (&str, Duration) = ("gearpump.worker.heartbeat-interval", Duration::from_millis(500));
const FENCE: (&str, Duration) = ("gearpump.worker.fence-timeout", Duration::from_secs(3));
const LOSS: (&str, Duration) = ("gearpump.master.worker-loss-timeout", Duration::from_secs(5));

/// The three durations fencing depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerTiming {
    /// How often a worker heartbeats (`gearpump.worker.heartbeat-interval`).
    pub heartbeat: Duration,
    /// A worker without an acknowledged heartbeat for this long kills its attempts.
    pub fence: Duration,
    /// A leader declares a worker lost (and restarts its attempts elsewhere) after this.
    pub loss: Duration,
}

impl Default for WorkerTiming {
    fn default() -> WorkerTiming {
        WorkerTiming { heartbeat: HEARTBEAT.1, fence: FENCE.1, loss: LOSS.1 }
    }
}

/// What `gearpump-worker` runs with.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub file: Option<PathBuf>,
    pub hostname: String,
    pub masters: Vec<HostPort>,
    pub slots: u32,
    pub java: String,
    pub vmargs: Vec<String>,
    pub extra_classpath: Vec<String>,
    pub state_dir: PathBuf,
    pub timing: WorkerTiming,
    /// Largest size of one attempt's log before it is rotated (one old file is kept).
    pub log_max_size: u64,
    /// Port of the worker's log server (0: any free port).
    pub port: u16,
    pub secret_file: Option<PathBuf>,
}

impl WorkerConfig {
    /// The effective values, as `gearpump-worker --check-config` prints them.
    pub fn explain(&self) -> String {
        let masters: Vec<String> = self.masters.iter().map(ToString::to_string).collect();
        let rows = [
            ("gearpump.hostname", self.hostname.clone()),
            ("gearpump.cluster.masters", masters.join(", ")),
            ("gearpump.worker.slots", self.slots.to_string()),
            ("gearpump.worker.java", self.java.clone()),
            ("gearpump.worker.state-dir", self.state_dir.display().to_string()),
            ("gearpump.worker.heartbeat-interval", format!("{:?}", self.timing.heartbeat)),
            ("gearpump.worker.fence-timeout", format!("{:?}", self.timing.fence)),
            ("gearpump.master.worker-loss-timeout", format!("{:?}", self.timing.loss)),
            ("gearpump.worker.log-max-size", format!("{} bytes", self.log_max_size)),
            ("gearpump.worker.port", if self.port == 0 { "0 (any)".into() } else { self.port.to_string() }),
            ("gearpump.appmaster.vmargs", self.vmargs.join(" ")),
            ("gearpump.appmaster.extraClasspath", self.extra_classpath.join(":")),
            (
                "gearpump.master.secret-file",
                self.secret_file.as_ref().map_or("(none)".into(), |p| p.display().to_string()),
            ),
        ];
        let mut out = match &self.file {
            Some(file) => format!("configuration: {} (valid)\n", file.display()),
            None => "configuration: built-in defaults (no gear.conf found)\n".to_string(),
        };
        for (key, value) in rows {
            out.push_str(&format!("  {key:36} = {value}\n"));
        }
        out
    }
}

/// The value at `key`, the `gearpump-worker { ... }` overlay first (as in Gearpump).
fn worker_get<'a>(source: &'a Source, key: &str) -> Option<(String, &'a HoconValue)> {
    let overlay = format!("gearpump-worker.{key}");
    if let Some(value) = source.config.get(&overlay) {
        return Some((overlay, value));
    }
    source.config.get(key).map(|value| (key.to_string(), value))
}

fn duration(source: Option<&Source>, (key, default): (&str, Duration)) -> Result<Duration, ConfigError> {
    let Some(source) = source else { return Ok(default) };
    let Some((found, _)) = worker_get(source, key) else { return Ok(default) };
    let value = source.config.get_duration(&found).map_err(|e| {
        source.invalid(
            &found,
            format!("not a duration: {}", e.message),
            "write a duration such as 500ms or 3s",
        )
    })?;
    if value < Duration::from_millis(50) || value > Duration::from_secs(3600) {
        return Err(source.invalid(
            &found,
            format!("{value:?} is out of range"),
            "use a value from 50ms to 1h",
        ));
    }
    Ok(value)
}

/// Reads the fencing timings and refuses a pair that would let two attempts overlap.
pub(super) fn read_timing(
    source: Option<&Source>,
    origins: &mut BTreeMap<&'static str, Origin>,
) -> Result<WorkerTiming, ConfigError> {
    let timing = WorkerTiming {
        heartbeat: duration(source, HEARTBEAT)?,
        fence: duration(source, FENCE)?,
        loss: duration(source, LOSS)?,
    };
    for (key, _) in [HEARTBEAT, FENCE, LOSS] {
        let origin = match source.and_then(|s| worker_get(s, key).map(|(found, _)| s.origin(&found))) {
            Some(origin) => origin,
            None => Origin::Default,
        };
        origins.insert(key, origin);
    }
    if timing.loss <= timing.fence + timing.heartbeat {
        let problem = format!(
            "{:?} must exceed gearpump.worker.fence-timeout ({:?}) + gearpump.worker.heartbeat-interval ({:?}); \
             otherwise a replacement attempt could start while a cut-off worker still runs the old one",
            timing.loss, timing.fence, timing.heartbeat
        );
        let fix = format!(
            "raise gearpump.master.worker-loss-timeout above {:?} or lower the fence timeout",
            timing.fence + timing.heartbeat
        );
        return Err(match source {
            Some(source) => source.invalid(LOSS.0, problem, fix),
            None => ConfigError::Invalid { location: String::new(), key: LOSS.0.into(), problem, fix },
        });
    }
    Ok(timing)
}

/// Loads a worker's configuration: `path` is `--config` (else `/etc/gearpump/gear.conf` when it
/// exists, else built-in defaults); `state_dir` is `--state-dir`.
pub fn load_worker(path: Option<&Path>, state_dir: Option<PathBuf>) -> Result<WorkerConfig, ConfigError> {
    let source = match path {
        Some(path) => Some(read_source(path)?),
        None if Path::new(super::DEFAULT_CONFIG_PATH).exists() => {
            Some(read_source(Path::new(super::DEFAULT_CONFIG_PATH))?)
        }
        None => None,
    };
    let source = source.as_ref();
    let mut origins = BTreeMap::new();
    let masters = read_masters(source, &mut origins)?;
    let timing = read_timing(source, &mut origins)?;
    let text = |key: &str, default: &str| -> Result<String, ConfigError> {
        match source.and_then(|s| worker_get(s, key).map(|(found, value)| (s, found, value))) {
            Some((source, found, value)) => match scalar_text(value) {
                Some(text) => Ok(text),
                None => Err(source.invalid(&found, "expected a string", format!("write {key} = \"...\""))),
            },
            None => Ok(default.to_string()),
        }
    };
    let number = |key: &str, default: u64, max: u64| -> Result<u64, ConfigError> {
        let Some((source, found)) = source.and_then(|s| worker_get(s, key).map(|(found, _)| (s, found)))
        else {
            return Ok(default);
        };
        let value = source.config.get_i64(&found).ok().and_then(|v| u64::try_from(v).ok());
        value.filter(|v| (1..=max).contains(v)).ok_or_else(|| {
            source.invalid(&found, "expected a whole number", format!("use a number from 1 to {max}"))
        })
    };
    let state_dir = match state_dir {
        Some(dir) => dir,
        None => match source.and_then(|s| worker_get(s, "gearpump.worker.state-dir").map(|(f, v)| (s, f, v)))
        {
            Some((source, found, value)) => PathBuf::from(non_empty_text(
                source,
                &found,
                value,
                "a directory such as \"/var/lib/gearpump-worker\"",
            )?),
            None => PathBuf::from("/var/lib/gearpump-worker"),
        },
    };
    let secret_file = text("gearpump.master.secret-file", "")?;
    let port = match source.and_then(|s| worker_get(s, "gearpump.worker.port").map(|(f, _)| (s, f))) {
        Some((source, found)) => source
            .config
            .get_i64(&found)
            .ok()
            .and_then(|v| u16::try_from(v).ok())
            .ok_or_else(|| source.invalid(&found, "expected a port number", "use 0 (any) to 65535"))?,
        None => 0,
    };
    Ok(WorkerConfig {
        file: source.map(|s| s.path.clone()),
        hostname: text("gearpump.hostname", "127.0.0.1")?,
        masters,
        slots: u32::try_from(number("gearpump.worker.slots", 1000, 1_000_000)?).unwrap_or(1000),
        java: text("gearpump.worker.java", "java")?,
        vmargs: text("gearpump.appmaster.vmargs", "")?.split_whitespace().map(str::to_string).collect(),
        extra_classpath: text("gearpump.appmaster.extraClasspath", "")?
            .split(':')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        state_dir,
        timing,
        log_max_size: number("gearpump.worker.log-max-size", 10 << 20, 1 << 40)?,
        port,
        secret_file: Some(PathBuf::from(secret_file)).filter(|p| !p.as_os_str().is_empty()),
    })
}

//! What `gearpump-worker` reads, and the timing pair masters and workers must agree on.
//!
//! The keys themselves are entries of the one key table (`keys.rs`), validated at load like
//! every other; this file only assembles them, with the `gearpump-worker { }` overlay winning
//! over the base keys (as Gearpump's overlay does).
//!
//! Fencing is only safe when a leader waits longer before declaring a worker lost than that
//! worker waits before killing its own attempts (plus one heartbeat of slack), so the masters
//! and the workers read the same three durations from the same gear.conf and both refuse a pair
//! that would overlap.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::keys::{self, Key};
use super::{read_source, warn_about_unknown_keys, ConfigError, HostPort, Settings, Source};

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

fn default_of(key: &Key) -> Duration {
    match key.kind {
        keys::Kind::Duration { default, .. } => default,
        _ => Duration::ZERO,
    }
}

impl Default for WorkerTiming {
    fn default() -> WorkerTiming {
        WorkerTiming {
            heartbeat: default_of(&keys::WORKER_HEARTBEAT),
            fence: default_of(&keys::WORKER_FENCE),
            loss: default_of(&keys::WORKER_LOSS),
        }
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
    /// `gearpump.worker.tls.*`: all three set, or none (checked at load).
    pub tls: Option<super::TlsFiles>,
    /// Things worth telling the operator that do not stop the worker.
    pub warnings: Vec<String>,
}

impl WorkerConfig {
    /// The effective values, as `gearpump-worker --check-config` prints them.
    pub fn explain(&self) -> String {
        let masters: Vec<String> = self.masters.iter().map(ToString::to_string).collect();
        let rows = [
            (keys::HOSTNAME.name, self.hostname.clone()),
            (keys::MASTERS.name, masters.join(", ")),
            (keys::WORKER_SLOTS.name, self.slots.to_string()),
            (keys::WORKER_JAVA.name, self.java.clone()),
            (keys::WORKER_STATE_DIR.name, self.state_dir.display().to_string()),
            (keys::WORKER_HEARTBEAT.name, format!("{:?}", self.timing.heartbeat)),
            (keys::WORKER_FENCE.name, format!("{:?}", self.timing.fence)),
            (keys::WORKER_LOSS.name, format!("{:?}", self.timing.loss)),
            (keys::WORKER_LOG_MAX_SIZE.name, format!("{} bytes", self.log_max_size)),
            (keys::WORKER_PORT.name, if self.port == 0 { "0 (any)".into() } else { self.port.to_string() }),
            (keys::APPMASTER_VMARGS.name, self.vmargs.join(" ")),
            (keys::APPMASTER_EXTRA_CLASSPATH.name, self.extra_classpath.join(":")),
            (
                keys::SECRET_FILE.name,
                self.secret_file.as_ref().map_or("(none)".into(), |p| p.display().to_string()),
            ),
            (
                keys::WORKER_TLS_CERT_FILE.name,
                self.tls.as_ref().map_or("(none: plain HTTP to the masters)".into(), |t| {
                    t.cert_file.display().to_string()
                }),
            ),
        ];
        let mut out = match &self.file {
            Some(file) => format!("configuration: {} (valid)\n", file.display()),
            None => "configuration: built-in defaults (no gear.conf found)\n".to_string(),
        };
        for (key, value) in rows {
            out.push_str(&format!("  {key:36} = {value}\n"));
        }
        for warning in &self.warnings {
            out.push_str(&format!("warning: {warning}\n"));
        }
        out
    }
}

/// The fencing timings, refusing a pair that would let two attempts of one application overlap.
pub(super) fn timing(source: Option<&Source>, settings: &Settings) -> Result<WorkerTiming, ConfigError> {
    let timing = WorkerTiming {
        heartbeat: settings.duration(&keys::WORKER_HEARTBEAT),
        fence: settings.duration(&keys::WORKER_FENCE),
        loss: settings.duration(&keys::WORKER_LOSS),
    };
    if timing.loss > timing.fence + timing.heartbeat {
        return Ok(timing);
    }
    let key = keys::WORKER_LOSS.name;
    let problem = format!(
        "{:?} must exceed {} ({:?}) + {} ({:?}); otherwise a replacement attempt could start while a \
         cut-off worker still runs the old one",
        timing.loss,
        keys::WORKER_FENCE.name,
        timing.fence,
        keys::WORKER_HEARTBEAT.name,
        timing.heartbeat
    );
    let fix = format!("raise {key} above {:?} or lower the fence timeout", timing.fence + timing.heartbeat);
    Err(match source {
        // Point at whichever of the three the file set (the loss timeout when it set it).
        Some(source) => {
            let set = [&keys::WORKER_LOSS, &keys::WORKER_FENCE, &keys::WORKER_HEARTBEAT]
                .into_iter()
                .find_map(|key| source.get(key.name).map(|(found, _)| found))
                .unwrap_or_else(|| key.to_string());
            source.invalid(&set, problem, fix)
        }
        None => ConfigError::Invalid { location: String::new(), key: key.into(), problem, fix },
    })
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
    }
    .map(|source| Source { overlay: "gearpump-worker", ..source });
    from_source(source.as_ref(), state_dir)
}

/// Parses a worker's configuration text as if read from `path` (gearpump-setup checks the
/// gear.conf it writes on a worker node with this).
pub fn load_worker_str(path: &Path, text: &str) -> Result<WorkerConfig, ConfigError> {
    let source = Source { overlay: "gearpump-worker", ..super::parse_source(path, text.to_string())? };
    from_source(Some(&source), None)
}

fn from_source(source: Option<&Source>, state_dir: Option<PathBuf>) -> Result<WorkerConfig, ConfigError> {
    let mut warnings = Vec::new();
    if let Some(source) = source {
        warn_about_unknown_keys(source, &mut warnings);
    }
    let settings = Settings::read(source, &mut warnings)?;
    let timing = timing(source, &settings)?;
    let text = |key: &Key| settings.text(key).unwrap_or_default();
    Ok(WorkerConfig {
        file: source.map(|s| s.path.clone()),
        hostname: text(&keys::HOSTNAME),
        masters: settings.masters(),
        // The table's ranges make these conversions exact.
        slots: u32::try_from(settings.number(&keys::WORKER_SLOTS)).unwrap_or(u32::MAX),
        java: text(&keys::WORKER_JAVA),
        vmargs: text(&keys::APPMASTER_VMARGS).split_whitespace().map(str::to_string).collect(),
        extra_classpath: text(&keys::APPMASTER_EXTRA_CLASSPATH)
            .split(':')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        state_dir: state_dir.unwrap_or_else(|| PathBuf::from(text(&keys::WORKER_STATE_DIR))),
        timing,
        log_max_size: settings.number(&keys::WORKER_LOG_MAX_SIZE),
        port: u16::try_from(settings.number(&keys::WORKER_PORT)).unwrap_or(0),
        secret_file: settings.text(&keys::SECRET_FILE).map(PathBuf::from),
        tls: super::tls_files_of(
            source,
            &settings,
            "gearpump.worker.tls",
            [&keys::WORKER_TLS_CA_FILE, &keys::WORKER_TLS_CERT_FILE, &keys::WORKER_TLS_KEY_FILE],
        )?,
        warnings,
    })
}

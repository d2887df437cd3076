//! gear.conf: load, merge with defaults and flags, validate, and explain every error.
//!
//! Precedence, lowest first: built-in defaults < the file (`/etc/gearpump/gear.conf` or
//! `--config`) with its `${?ENV}` substitutions < command-line flags. Gearpump's per-daemon
//! section `gearpump-master { ... }` overlays the base keys, as in Gearpump.

mod error;
mod host_port;
mod known_keys;
mod locate;
mod workers;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use error::ConfigError;
use hocon::HoconValue;
pub use host_port::HostPort;
use known_keys::KeyKind;
pub use workers::{load_worker, WorkerConfig, WorkerTiming};

pub const DEFAULT_CONFIG_PATH: &str = "/etc/gearpump/gear.conf";

/// The shortest and longest fail-over bounds we accept: below 200 ms heartbeats (B/20) would
/// outrun a busy machine's scheduler; above 10 minutes nobody would call it HA.
const FAILOVER_RANGE: (Duration, Duration) = (Duration::from_millis(200), Duration::from_secs(600));
pub const DEFAULT_FAILOVER: Duration = Duration::from_millis(400);

const FAILOVER_KEYS: [&str; 3] = [
    "gearpump.master.failover-timeout",
    "gearpump-master.akka.cluster.auto-down-unreachable-after",
    "master.akka.cluster.auto-down-unreachable-after",
];

/// Where a jar store lives, from the scheme of `gearpump.jarstore.rootpath`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JarStoreRoot {
    /// A folder on this master only: not HA.
    Local(PathBuf),
    /// `file:///dir`: a folder mounted at the same path on every master (NFS).
    Shared(PathBuf),
    /// `hdfs://host:port/path` or `hdfs://nameservice/path`.
    Hdfs(String),
}

impl std::fmt::Display for JarStoreRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JarStoreRoot::Local(path) => write!(f, "{} (local)", path.display()),
            JarStoreRoot::Shared(path) => write!(f, "file://{}", path.display()),
            JarStoreRoot::Hdfs(uri) => f.write_str(uri),
        }
    }
}

/// Where a value of the effective configuration came from, for `--check-config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Default,
    File { path: PathBuf, key: String, line: Option<usize> },
    Flag(&'static str),
    Derived(&'static str),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Default => f.write_str("built-in default"),
            Origin::File { path, key, line: Some(line) } => write!(f, "{}:{line} ({key})", path.display()),
            Origin::File { path, key, line: None } => write!(f, "{} ({key})", path.display()),
            Origin::Flag(flag) => write!(f, "command line {flag}"),
            Origin::Derived(how) => f.write_str(how),
        }
    }
}

/// Command-line values that override the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub ip: Option<String>,
    pub port: Option<u16>,
    pub state_dir: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct MasterConfig {
    pub file: Option<PathBuf>,
    pub hostname: String,
    pub masters: Vec<HostPort>,
    /// This master's own entry of `masters`.
    pub this_master: HostPort,
    pub bind_host: String,
    pub state_dir: PathBuf,
    pub jar_store: JarStoreRoot,
    pub jar_max_size: u64,
    pub jar_retention: Duration,
    /// Bound on one exchange with a remote jar store (an HDFS call, one chunk).
    pub jar_timeout: Duration,
    /// How long a dead leader may go unnoticed; Raft's election timeout is derived from it.
    pub failover_timeout: Duration,
    /// Bound on a client request that needs a quorum: past it, 503 instead of a hang.
    pub request_timeout: Duration,
    /// How long systemd is asked to wait for a quorum at start.
    pub startup_timeout: Duration,
    pub snapshot_every: u64,
    pub log_keep: u64,
    pub secret_file: Option<PathBuf>,
    pub log_level: String,
    pub total_retries: u32,
    /// Heartbeat, fence and worker-loss timeouts (see `workers.rs`).
    pub worker_timing: WorkerTiming,
    /// Per key of the effective configuration, where its value came from.
    pub origins: BTreeMap<&'static str, Origin>,
    /// Things worth telling the operator that do not stop the master.
    pub warnings: Vec<String>,
}

/// The parsed file plus what is needed to point at a line in it.
struct Source {
    path: PathBuf,
    text: String,
    config: hocon::Config,
}

impl Source {
    /// The value at `key`, looking at the `gearpump-master` overlay first.
    fn get(&self, key: &str) -> Option<(String, &HoconValue)> {
        let overlay = format!("gearpump-master.{key}");
        if key.starts_with("gearpump.") {
            if let Some(value) = self.config.get(&overlay) {
                return Some((overlay, value));
            }
        }
        self.config.get(key).map(|value| (key.to_string(), value))
    }

    fn origin(&self, key: &str) -> Origin {
        Origin::File {
            path: self.path.clone(),
            key: key.to_string(),
            line: locate::key_line(&self.text, key),
        }
    }

    fn invalid(&self, key: &str, problem: impl Into<String>, fix: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            location: locate::describe(&self.path, &self.text, key),
            key: key.to_string(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}

/// Loads the configuration. `path` is `--config`; without it the default path is read when it
/// exists, and the built-in single-master defaults apply when it does not.
pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<MasterConfig, ConfigError> {
    let source = match path {
        Some(path) => Some(read_source(path)?),
        None if Path::new(DEFAULT_CONFIG_PATH).exists() => Some(read_source(Path::new(DEFAULT_CONFIG_PATH))?),
        None => None,
    };
    build(source.as_ref(), overrides)
}

/// Only the masters list, for clients such as `gear` that are not one of the masters.
pub fn load_masters(path: Option<&Path>) -> Result<Vec<HostPort>, ConfigError> {
    let source = match path {
        Some(path) => Some(read_source(path)?),
        None if Path::new(DEFAULT_CONFIG_PATH).exists() => Some(read_source(Path::new(DEFAULT_CONFIG_PATH))?),
        None => None,
    };
    read_masters(source.as_ref(), &mut BTreeMap::new())
}

/// Parses configuration text as if read from `path` (tests and `--check-config` of a string).
pub fn load_str(path: &Path, text: &str, overrides: &Overrides) -> Result<MasterConfig, ConfigError> {
    let source = parse_source(path, text.to_string())?;
    build(Some(&source), overrides)
}

fn read_source(path: &Path) -> Result<Source, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|cause| ConfigError::Unreadable { file: path.to_path_buf(), cause: cause.to_string() })?;
    parse_source(path, text)
}

fn parse_source(path: &Path, text: String) -> Result<Source, ConfigError> {
    let base_dir = path.parent().unwrap_or(Path::new("."));
    let options = hocon::ParseOptions::defaults().with_base_dir(base_dir.to_path_buf());
    let parsed = hocon::parse_string_with_options(&text, options);
    let config = parsed.map_err(|error| error::from_hocon(path, error))?;
    Ok(Source { path: path.to_path_buf(), text, config })
}

fn build(source: Option<&Source>, overrides: &Overrides) -> Result<MasterConfig, ConfigError> {
    let mut origins = BTreeMap::new();
    let mut warnings = Vec::new();
    if let Some(source) = source {
        warn_about_unknown_keys(source, &mut warnings);
    }

    let hostname = match source.and_then(|s| s.get("gearpump.hostname")) {
        Some((key, value)) => {
            let Some(text) = scalar_text(value) else {
                return Err(source_ref(source).invalid(
                    &key,
                    "expected a host name or address",
                    "write gearpump.hostname = \"node1\"",
                ));
            };
            origins.insert("gearpump.hostname", source_ref(source).origin(&key));
            text
        }
        None => {
            origins.insert("gearpump.hostname", Origin::Default);
            "127.0.0.1".to_string()
        }
    };

    let masters = read_masters(source, &mut origins)?;
    let this_master = pick_this_master(source, &hostname, &masters, overrides, &mut origins)?;

    let state_dir = match (&overrides.state_dir, source.and_then(|s| s.get("gearpump.master.state-dir"))) {
        (Some(dir), _) => {
            origins.insert("gearpump.master.state-dir", Origin::Flag("--state-dir"));
            dir.clone()
        }
        (None, Some((key, value))) => {
            let text = non_empty_text(
                source_ref(source),
                &key,
                value,
                "an absolute directory such as \"/var/lib/gearpump\"",
            )?;
            origins.insert("gearpump.master.state-dir", source_ref(source).origin(&key));
            PathBuf::from(text)
        }
        (None, None) => {
            origins.insert("gearpump.master.state-dir", Origin::Default);
            PathBuf::from("/var/lib/gearpump")
        }
    };

    let jar_store = read_jar_store(source, &state_dir, &mut origins, &mut warnings)?;
    if let JarStoreRoot::Local(path) = &jar_store {
        if masters.len() > 1 {
            warnings.push(format!(
                "gearpump.jarstore.rootpath is a local folder ({}): jars live on one master only, so an \
                 application cannot be recovered when that master's disk is lost. Use hdfs://... or \
                 file:///a/folder/mounted/on/every/master (NFS) for HA.",
                path.display()
            ));
        }
    }

    let failover_timeout = read_failover(source, &mut origins, &mut warnings)?;
    let mut duration_key = |key: &'static str, default: Duration, range: (Duration, Duration)| {
        read_duration(source, key, default, range, &mut origins)
    };
    let request_timeout = duration_key(
        "gearpump.master.request-timeout",
        Duration::from_secs(5),
        (Duration::from_millis(100), Duration::from_secs(600)),
    )?;
    let startup_timeout = duration_key(
        "gearpump.master.startup-timeout",
        Duration::from_secs(300),
        (Duration::from_secs(1), Duration::from_secs(86_400)),
    )?;
    let jar_retention = duration_key(
        "gearpump.jarstore.retention",
        Duration::from_secs(7 * 86_400),
        (Duration::from_secs(1), Duration::from_secs(3650 * 86_400)),
    )?;
    let jar_timeout = duration_key(
        "gearpump.jarstore.timeout",
        Duration::from_secs(10),
        (Duration::from_millis(100), Duration::from_secs(600)),
    )?;

    let jar_max_size =
        read_number(source, "gearpump.jarstore.max-size", 512 << 20, (1, 1 << 40), &mut origins, true)?;
    let snapshot_every =
        read_number(source, "gearpump.master.snapshot-every", 5000, (10, 10_000_000), &mut origins, false)?;
    let log_keep =
        read_number(source, "gearpump.master.log-keep", 1000, (0, 10_000_000), &mut origins, false)?;
    let total_retries =
        read_number(source, "gearpump.application.total-retries", 5, (0, 1_000_000), &mut origins, false)?
            as u32;
    let worker_timing = workers::read_timing(source, &mut origins)?;

    let bind_host = match source.and_then(|s| s.get("gearpump.master.bind-host")) {
        Some((key, value)) => {
            origins.insert("gearpump.master.bind-host", source_ref(source).origin(&key));
            non_empty_text(source_ref(source), &key, value, "an address such as \"0.0.0.0\"")?
        }
        None => {
            origins.insert(
                "gearpump.master.bind-host",
                Origin::Derived("this master's host in gearpump.cluster.masters"),
            );
            this_master.host.clone()
        }
    };
    let secret_file = match source.and_then(|s| s.get("gearpump.master.secret-file")) {
        Some((key, value)) => {
            origins.insert("gearpump.master.secret-file", source_ref(source).origin(&key));
            Some(PathBuf::from(non_empty_text(
                source_ref(source),
                &key,
                value,
                "a path such as \"/etc/gearpump/cluster.secret\"",
            )?))
        }
        None => None,
    };
    let log_level = match source.and_then(|s| s.get("gearpump.master.log-level")) {
        Some((key, value)) => {
            let level =
                non_empty_text(source_ref(source), &key, value, "one of error, warn, info, debug, trace")?;
            if !["error", "warn", "info", "debug", "trace"].contains(&level.as_str()) {
                return Err(source_ref(source).invalid(
                    &key,
                    format!("unknown log level {level:?}"),
                    "use one of error, warn, info, debug, trace",
                ));
            }
            origins.insert("gearpump.master.log-level", source_ref(source).origin(&key));
            level
        }
        None => {
            origins.insert("gearpump.master.log-level", Origin::Default);
            "info".to_string()
        }
    };

    Ok(MasterConfig {
        file: source.map(|s| s.path.clone()),
        hostname,
        masters,
        this_master,
        bind_host,
        state_dir,
        jar_store,
        jar_max_size,
        jar_retention,
        jar_timeout,
        failover_timeout,
        request_timeout,
        startup_timeout,
        snapshot_every,
        log_keep,
        secret_file,
        log_level,
        total_retries,
        worker_timing,
        origins,
        warnings,
    })
}

/// Only called where a key was found, so a source exists.
fn source_ref(source: Option<&Source>) -> &Source {
    source.expect("a key was found, so a source file exists")
}

fn scalar_text(value: &HoconValue) -> Option<String> {
    match value {
        HoconValue::Scalar(scalar) => Some(scalar.raw.clone()),
        _ => None,
    }
}

fn non_empty_text(
    source: &Source,
    key: &str,
    value: &HoconValue,
    expected: &str,
) -> Result<String, ConfigError> {
    match scalar_text(value) {
        Some(text) if !text.trim().is_empty() => Ok(text),
        _ => Err(source.invalid(key, format!("expected {expected}"), format!("set {key} to {expected}"))),
    }
}

fn read_masters(
    source: Option<&Source>,
    origins: &mut BTreeMap<&'static str, Origin>,
) -> Result<Vec<HostPort>, ConfigError> {
    const KEY: &str = "gearpump.cluster.masters";
    const FIX: &str = "list every master once, e.g. gearpump.cluster.masters = [\"node1:3000\", \"node2:3000\", \"node3:3000\"]";
    let Some((key, value)) = source.and_then(|s| s.get(KEY)) else {
        origins.insert(KEY, Origin::Default);
        return Ok(vec![HostPort { host: "127.0.0.1".into(), port: 3000 }]);
    };
    let source = source_ref(source);
    origins.insert(KEY, source.origin(&key));
    let Some(items) = value.as_array() else {
        return Err(source.invalid(&key, "expected a list of \"host:port\" strings", FIX));
    };
    if items.is_empty() {
        return Err(source.invalid(&key, "the list of masters is empty", FIX));
    }
    let mut masters: Vec<HostPort> = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let Some(text) = scalar_text(item) else {
            return Err(source.invalid(
                &key,
                format!("entry {} is not a \"host:port\" string", index + 1),
                FIX,
            ));
        };
        let entry = HostPort::parse(&text).map_err(|why| {
            source.invalid(&key, format!("entry {} {text:?} is malformed: {why}", index + 1), FIX)
        })?;
        if masters.contains(&entry) {
            return Err(source.invalid(&key, format!("{entry} is listed twice"), FIX));
        }
        masters.push(entry);
    }
    Ok(masters)
}

fn pick_this_master(
    source: Option<&Source>,
    hostname: &str,
    masters: &[HostPort],
    overrides: &Overrides,
    origins: &mut BTreeMap<&'static str, Origin>,
) -> Result<HostPort, ConfigError> {
    let listed = masters.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
    let host = overrides.ip.clone().unwrap_or_else(|| hostname.to_string());
    let candidates: Vec<&HostPort> = masters
        .iter()
        .filter(|m| m.host == host && overrides.port.is_none_or(|port| m.port == port))
        .collect();
    let wanted = match overrides.port {
        Some(port) => HostPort { host: host.clone(), port }.to_string(),
        None => format!("{host}:<any port>"),
    };
    let how = if overrides.ip.is_some() { "-ip" } else { "gearpump.hostname" };
    match candidates.as_slice() {
        [one] => {
            let origin = if overrides.ip.is_some() || overrides.port.is_some() {
                Origin::Flag("-ip/-port")
            } else {
                Origin::Derived("gearpump.hostname matched in gearpump.cluster.masters")
            };
            origins.insert("this master", origin);
            Ok((*one).clone())
        }
        [] => Err(ConfigError::Invalid {
            location: source.map(|s| locate::describe(&s.path, &s.text, "gearpump.cluster.masters")).unwrap_or_default(),
            key: "gearpump.cluster.masters".into(),
            problem: format!("this master ({wanted}, from {how}) is not in the masters list [{listed}]"),
            fix: "add this master's host:port to gearpump.cluster.masters, or start it with -ip HOST -port PORT \
                  of a listed master, or set gearpump.hostname to this machine's name in that list"
                .into(),
        }),
        _ => Err(ConfigError::Invalid {
            location: String::new(),
            key: "gearpump.cluster.masters".into(),
            problem: format!("several masters in [{listed}] are on host {host}, so it is unclear which one this is"),
            fix: "start this master with -port PORT (and -ip HOST) to pick its entry".into(),
        }),
    }
}

fn read_jar_store(
    source: Option<&Source>,
    state_dir: &Path,
    origins: &mut BTreeMap<&'static str, Origin>,
    warnings: &mut Vec<String>,
) -> Result<JarStoreRoot, ConfigError> {
    const KEY: &str = "gearpump.jarstore.rootpath";
    let found = source.and_then(|s| s.get(KEY)).or_else(|| {
        let camel = source.and_then(|s| s.get("gearpump.jarstore.rootPath"));
        if camel.is_some() {
            // Gearpump reads only `rootpath` and silently ignores the HA guide's spelling.
            warnings.push("gearpump.jarstore.rootPath (the HA guide's spelling) is read as gearpump.jarstore.rootpath; Gearpump itself would have ignored it".into());
        }
        camel
    });
    let Some((key, value)) = found else {
        origins.insert(KEY, Origin::Default);
        return Ok(JarStoreRoot::Local(state_dir.join("jarstore")));
    };
    let source = source_ref(source);
    origins.insert(KEY, source.origin(&key));
    let text =
        non_empty_text(source, &key, value, "a folder, file:///shared/folder or hdfs://namenode:port/path")?;
    if let Some(rest) = text.strip_prefix("file://") {
        if !rest.starts_with('/') {
            return Err(source.invalid(
                &key,
                format!("{text:?} is not an absolute file:// URI"),
                "write file:///absolute/path (three slashes)",
            ));
        }
        return Ok(JarStoreRoot::Shared(PathBuf::from(rest)));
    }
    if let Some(rest) = text.strip_prefix("hdfs://") {
        if rest.is_empty() || rest.starts_with('/') {
            return Err(source.invalid(
                &key,
                format!("{text:?} names no NameNode or nameservice"),
                "write hdfs://namenode:9000/gearpump/jars or hdfs://nameservice/gearpump/jars",
            ));
        }
        return Ok(JarStoreRoot::Hdfs(text));
    }
    if let Some((scheme, _)) = text.split_once("://") {
        return Err(source.invalid(
            &key,
            format!("unknown jar store scheme {scheme:?}"),
            "use a local folder, file:///shared/folder (NFS) or hdfs://namenode:port/path",
        ));
    }
    let path = PathBuf::from(&text);
    // Gearpump resolves a relative folder against where the master was started; a daemon's
    // working directory is `/`, so the state directory is the only sensible anchor.
    Ok(JarStoreRoot::Local(if path.is_absolute() { path } else { state_dir.join(path) }))
}

fn read_failover(
    source: Option<&Source>,
    origins: &mut BTreeMap<&'static str, Origin>,
    warnings: &mut Vec<String>,
) -> Result<Duration, ConfigError> {
    const KEY: &str = "gearpump.master.failover-timeout";
    let Some(source) = source else {
        origins.insert(KEY, Origin::Default);
        return Ok(DEFAULT_FAILOVER);
    };
    let mut explicit = None;
    let mut akka_bound: Option<(String, Duration)> = None;
    for name in FAILOVER_KEYS {
        let Some(value) = source.config.get(name) else { continue };
        // Akka accepted `off` (never auto-down); for us it means no bound.
        if scalar_text(value).is_some_and(|text| text == "off") {
            continue;
        }
        let duration = source.config.get_duration(name).map_err(|e| {
            source.invalid(
                name,
                format!("not a duration: {}", e.message),
                "write a duration such as 400ms, 2s or 15s",
            )
        })?;
        if duration < FAILOVER_RANGE.0 || duration > FAILOVER_RANGE.1 {
            return Err(source.invalid(
                name,
                format!("{duration:?} is out of range"),
                "use a value from 200ms to 10 minutes",
            ));
        }
        if name == KEY {
            explicit = Some(duration);
        } else if akka_bound.as_ref().is_none_or(|(_, bound)| duration < *bound) {
            akka_bound = Some((name.to_string(), duration));
        }
    }
    if let Some(duration) = explicit {
        origins.insert(KEY, source.origin(KEY));
        return Ok(duration);
    }
    match akka_bound {
        // Akka's auto-down delay was a ceiling ("up to 15 seconds"); Raft fails over faster than
        // any sane value of it, so it only matters when it is below our default.
        Some((name, bound)) if bound < DEFAULT_FAILOVER => {
            origins.insert(KEY, source.origin(&name));
            Ok(bound)
        }
        Some((name, bound)) => {
            warnings.push(format!(
                "{name} = {bound:?} is Gearpump's fail-over ceiling; Raft fails over well within it \
                 (failover-timeout {DEFAULT_FAILOVER:?}). Set gearpump.master.failover-timeout to choose another value."
            ));
            origins.insert(KEY, Origin::Derived("built-in default, within the Akka auto-down bound"));
            Ok(DEFAULT_FAILOVER)
        }
        None => {
            origins.insert(KEY, Origin::Default);
            Ok(DEFAULT_FAILOVER)
        }
    }
}

fn read_duration(
    source: Option<&Source>,
    key: &'static str,
    default: Duration,
    (min, max): (Duration, Duration),
    origins: &mut BTreeMap<&'static str, Origin>,
) -> Result<Duration, ConfigError> {
    let Some((found, _)) = source.and_then(|s| s.get(key)) else {
        origins.insert(key, Origin::Default);
        return Ok(default);
    };
    let source = source_ref(source);
    let duration = source.config.get_duration(&found).map_err(|e| {
        source.invalid(
            &found,
            format!("not a duration: {}", e.message),
            "write a duration such as 500ms, 30s, 5m or 7d",
        )
    })?;
    if duration < min || duration > max {
        return Err(source.invalid(
            &found,
            format!("{duration:?} is out of range"),
            format!("use a value from {min:?} to {max:?}"),
        ));
    }
    origins.insert(key, source.origin(&found));
    Ok(duration)
}

fn read_number(
    source: Option<&Source>,
    key: &'static str,
    default: u64,
    (min, max): (u64, u64),
    origins: &mut BTreeMap<&'static str, Origin>,
    is_size: bool,
) -> Result<u64, ConfigError> {
    let Some((found, _)) = source.and_then(|s| s.get(key)) else {
        origins.insert(key, Origin::Default);
        return Ok(default);
    };
    let source = source_ref(source);
    let parsed = if is_size { source.config.get_bytes(&found) } else { source.config.get_i64(&found) };
    let (expected, example) = if is_size { ("a size", "512 MiB") } else { ("a whole number", "1000") };
    let value = parsed.map_err(|e| {
        source.invalid(
            &found,
            format!("expected {expected}: {}", e.message),
            format!("write e.g. {key} = {example}"),
        )
    })?;
    let value = u64::try_from(value).unwrap_or(0);
    if value < min || value > max {
        return Err(source.invalid(
            &found,
            format!("{value} is out of range"),
            format!("use a value from {min} to {max}"),
        ));
    }
    origins.insert(key, source.origin(&found));
    Ok(value)
}

fn warn_about_unknown_keys(source: &Source, warnings: &mut Vec<String>) {
    let mut paths = Vec::new();
    for key in source.config.keys() {
        if let Some(value) = source.config.get(&quote_segment(key)) {
            leaf_paths(value, key.to_string(), &mut paths);
        }
    }
    for path in paths {
        let ours = path.starts_with("gearpump.")
            || path.starts_with("gearpump-master.gearpump.")
            || path.starts_with("gearpump.master.");
        if !ours {
            continue;
        }
        if let KeyKind::Unknown { nearest } = known_keys::classify(&path) {
            let mut message =
                format!("{}unknown key {path}", locate::describe(&source.path, &source.text, &path));
            if let Some(nearest) = nearest {
                let _ = write!(message, " (did you mean {nearest}?)");
            }
            warnings.push(message);
        }
    }
}

fn quote_segment(key: &str) -> String {
    if key.contains('.') {
        format!("\"{key}\"")
    } else {
        key.to_string()
    }
}

fn leaf_paths(value: &HoconValue, prefix: String, out: &mut Vec<String>) {
    match value.as_object() {
        Some(map) if !map.is_empty() => {
            for (key, child) in map {
                leaf_paths(child, format!("{prefix}.{key}"), out);
            }
        }
        _ => out.push(prefix),
    }
}

impl MasterConfig {
    /// Each effective value with where it came from: `--check-config` and `GET master/config`.
    pub fn effective(&self) -> Vec<(&'static str, String, String)> {
        let rows: Vec<(&'static str, String)> = vec![
            ("gearpump.hostname", self.hostname.clone()),
            (
                "gearpump.cluster.masters",
                self.masters.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
            ),
            ("this master", self.this_master.to_string()),
            ("gearpump.master.bind-host", self.bind_host.clone()),
            ("gearpump.master.state-dir", self.state_dir.display().to_string()),
            ("gearpump.jarstore.rootpath", self.jar_store.to_string()),
            ("gearpump.jarstore.max-size", format!("{} bytes", self.jar_max_size)),
            ("gearpump.jarstore.retention", format!("{:?}", self.jar_retention)),
            ("gearpump.jarstore.timeout", format!("{:?}", self.jar_timeout)),
            ("gearpump.master.failover-timeout", format!("{:?}", self.failover_timeout)),
            ("gearpump.master.request-timeout", format!("{:?}", self.request_timeout)),
            ("gearpump.master.startup-timeout", format!("{:?}", self.startup_timeout)),
            ("gearpump.master.snapshot-every", self.snapshot_every.to_string()),
            ("gearpump.master.log-keep", self.log_keep.to_string()),
            (
                "gearpump.master.secret-file",
                self.secret_file
                    .as_ref()
                    .map_or("(none: peer RPC unauthenticated)".into(), |p| p.display().to_string()),
            ),
            ("gearpump.master.log-level", self.log_level.clone()),
            ("gearpump.application.total-retries", self.total_retries.to_string()),
            ("gearpump.worker.heartbeat-interval", format!("{:?}", self.worker_timing.heartbeat)),
            ("gearpump.worker.fence-timeout", format!("{:?}", self.worker_timing.fence)),
            ("gearpump.master.worker-loss-timeout", format!("{:?}", self.worker_timing.loss)),
        ];
        rows.into_iter()
            .map(|(key, value)| {
                let origin =
                    self.origins.get(key).map_or_else(|| Origin::Default.to_string(), ToString::to_string);
                (key, value, origin)
            })
            .collect()
    }

    /// The effective configuration and where each value came from, as `--check-config` prints it.
    pub fn explain(&self) -> String {
        let rows = self.effective();
        let width = rows.iter().map(|(key, _, _)| key.len()).max().unwrap_or(0);
        let mut out = String::new();
        match &self.file {
            Some(file) => {
                let _ = writeln!(out, "configuration: {} (valid)", file.display());
            }
            None => out.push_str("configuration: built-in defaults (no gear.conf found)\n"),
        }
        for (key, value, origin) in rows {
            let _ = writeln!(out, "  {key:width$} = {value}    # {origin}");
        }
        for warning in &self.warnings {
            let _ = writeln!(out, "warning: {warning}");
        }
        out
    }
}

#[cfg(test)]
mod tests;

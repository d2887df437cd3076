//! gear.conf: load, merge with defaults and flags, validate, and explain every error.
//!
//! Precedence, lowest first: built-in defaults < the file (`/etc/gearpump/gear.conf` or
//! `--config`) with its `${?ENV}` substitutions < command-line flags. Gearpump's per-daemon
//! section `gearpump-master { ... }` overlays the base keys, as in Gearpump.
//!
//! Which keys exist, how each is spelt, parsed, bounded and documented is `keys.rs`, the one
//! table everything else derives from; this file reads a file against it (every key a file
//! sets is parsed and checked once, here, so a bad value is exit 78 at load and never a failure
//! at start) and derives what the master needs (this master's entry, the jar store root,
//! the fail-over timeout from Gearpump's auto-down bound).

mod error;
mod host_port;
mod jar_root;
pub(crate) mod keys;
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
pub(crate) use jar_root::{parse as parse_jar_root, parse_hdfs_uri};
use keys::Kind;
use known_keys::KeyKind;
pub use workers::{load_worker, load_worker_str, WorkerConfig, WorkerTiming};

pub const DEFAULT_CONFIG_PATH: &str = "/etc/gearpump/gear.conf";

/// The fail-over timeout when nothing sets it.
pub const DEFAULT_FAILOVER: Duration = match keys::FAILOVER.kind {
    keys::Kind::Duration { default, .. } => default,
    _ => Duration::from_millis(400),
};

/// The row of `--check-config` that says which entry of the masters list this master is.
const THIS_MASTER: &str = "this master";

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
    /// Open connections one client address may hold on the port (`tls::NodeListener`).
    pub max_connections_per_address: usize,
    pub secret_file: Option<PathBuf>,
    /// `gearpump.master.auth.tokens-file`: client tokens with roles (`api::auth`).
    pub tokens_file: Option<PathBuf>,
    /// `/health/*` and `/metrics` answer without a token.
    pub open_health: bool,
    /// `gearpump.master.tls.*`: all three set, or none (checked at load).
    pub tls: Option<TlsFiles>,
    pub log_level: String,
    pub total_retries: u32,
    /// Heartbeat, fence and worker-loss timeouts (see `workers.rs`).
    pub worker_timing: WorkerTiming,
    /// Per key of the effective configuration, where its value came from.
    pub origins: BTreeMap<&'static str, Origin>,
    /// Per key of the table, its effective value as `--check-config` shows it.
    shown: BTreeMap<&'static str, String>,
    /// Things worth telling the operator that do not stop the master.
    pub warnings: Vec<String>,
}

/// The parsed file plus what is needed to point at a line in it.
struct Source {
    path: PathBuf,
    text: String,
    config: hocon::Config,
    /// The daemon's own section, whose keys win over the base ones (Gearpump's
    /// `gearpump-master { }` and `gearpump-worker { }`).
    overlay: &'static str,
}

impl Source {
    /// The value at `key`, looking at the daemon's overlay first.
    fn get(&self, key: &str) -> Option<(String, &HoconValue)> {
        let overlay = format!("{}.{key}", self.overlay);
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

/// The README's table of gear.conf keys, rendered from the key table (`keys.rs`). A test
/// compares it with README.md; `examples/generate_docs.rs` writes it out for packaging.
pub fn key_table_markdown() -> String {
    keys::markdown_table()
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
    Ok(Source { path: path.to_path_buf(), text, config, overlay: "gearpump-master" })
}

fn build(source: Option<&Source>, overrides: &Overrides) -> Result<MasterConfig, ConfigError> {
    let mut warnings = Vec::new();
    if let Some(source) = source {
        warn_about_unknown_keys(source, &mut warnings);
    }
    // Every key of the table that the file sets is parsed and range-checked here, before
    // anything is derived from it: a bad value is a configuration error now, never a failure
    // at start.
    let mut settings = Settings::read(source, &mut warnings)?;

    let hostname = settings.text(&keys::HOSTNAME).unwrap_or_default();
    let masters = settings.masters();
    let this_master = pick_this_master(source, &hostname, &masters, overrides, &mut settings.origins)?;

    let state_dir = match &overrides.state_dir {
        Some(dir) => {
            settings.origins.insert(keys::STATE_DIR.name, Origin::Flag("--state-dir"));
            dir.clone()
        }
        None => PathBuf::from(settings.text(&keys::STATE_DIR).unwrap_or_default()),
    };
    settings.shown.insert(keys::STATE_DIR.name, state_dir.display().to_string());

    let jar_store = match settings.jar_root() {
        // Gearpump resolves a relative folder against where the master was started; a daemon's
        // working directory is `/`, so the state directory is the only sensible anchor.
        Some(JarStoreRoot::Local(path)) if path.is_relative() => JarStoreRoot::Local(state_dir.join(path)),
        Some(root) => root,
        None => JarStoreRoot::Local(state_dir.join("jarstore")),
    };
    settings.shown.insert(keys::JAR_ROOT.name, jar_store.to_string());
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

    let failover_timeout = settings.failover(&mut warnings);
    let request_timeout = settings.duration(&keys::REQUEST_TIMEOUT);
    let startup_timeout = settings.duration(&keys::STARTUP_TIMEOUT);
    let jar_retention = settings.duration(&keys::JAR_RETENTION);
    let jar_timeout = settings.duration(&keys::JAR_TIMEOUT);
    let jar_max_size = settings.number(&keys::JAR_MAX_SIZE);
    let snapshot_every = settings.number(&keys::SNAPSHOT_EVERY);
    let log_keep = settings.number(&keys::LOG_KEEP);
    // The table's range (at most MAX_CONNECTIONS) fits.
    let max_connections_per_address =
        usize::try_from(settings.number(&keys::MAX_CONNECTIONS_PER_ADDRESS)).unwrap_or(usize::MAX);
    // The table's range (at most 1 000 000) fits.
    let total_retries = u32::try_from(settings.number(&keys::TOTAL_RETRIES)).unwrap_or(u32::MAX);
    let worker_timing = workers::timing(source, &settings)?;

    let bind_host = match settings.text(&keys::BIND_HOST) {
        Some(host) => host,
        None => {
            settings.origins.insert(
                keys::BIND_HOST.name,
                Origin::Derived("this master's host in gearpump.cluster.masters"),
            );
            this_master.host.clone()
        }
    };
    settings.shown.insert(keys::BIND_HOST.name, bind_host.clone());
    let secret_file = settings.text(&keys::SECRET_FILE).map(PathBuf::from);
    if secret_file.is_none() {
        settings.shown.insert(keys::SECRET_FILE.name, "(none: peer RPC unauthenticated)".into());
    }
    let log_level = settings.text(&keys::LOG_LEVEL).unwrap_or_default();
    let tokens_file = settings.text(&keys::TOKENS_FILE).map(PathBuf::from);
    let open_health = settings.text(&keys::AUTH_OPEN_HEALTH).as_deref() != Some("no");
    let tls = tls_files(source, &settings)?;

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
        max_connections_per_address,
        log_keep,
        secret_file,
        tokens_file,
        open_health,
        tls,
        log_level,
        total_retries,
        worker_timing,
        origins: settings.origins,
        shown: settings.shown,
        warnings,
    })
}

/// The three files of `gearpump.master.tls`, all paths as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// All three TLS keys or none: half a TLS setup would silently serve plain HTTP.
fn tls_files(source: Option<&Source>, settings: &Settings) -> Result<Option<TlsFiles>, ConfigError> {
    tls_files_of(
        source,
        settings,
        "gearpump.master.tls",
        [&keys::TLS_CA_FILE, &keys::TLS_CERT_FILE, &keys::TLS_KEY_FILE],
    )
}

/// The three files under `section` (`ca-file`, `cert-file`, `key-file`, in that order), all or
/// none (masters and workers alike). A partial set is reported at the first of them the file sets.
fn tls_files_of(
    source: Option<&Source>,
    settings: &Settings,
    section: &str,
    [ca_key, cert_key, key_key]: [&keys::Key; 3],
) -> Result<Option<TlsFiles>, ConfigError> {
    let ca = settings.text(ca_key);
    let cert = settings.text(cert_key);
    let key = settings.text(key_key);
    match (ca, cert, key) {
        (None, None, None) => Ok(None),
        (Some(ca), Some(cert), Some(key)) => Ok(Some(TlsFiles {
            ca_file: PathBuf::from(ca),
            cert_file: PathBuf::from(cert),
            key_file: PathBuf::from(key),
        })),
        (ca, cert, key) => {
            let missing: Vec<&str> = [(ca, ca_key), (cert, cert_key), (key, key_key)]
                .into_iter()
                .filter(|(value, _)| value.is_none())
                .map(|(_, key)| key.name)
                .collect();
            let problem = format!("only part of the TLS files are set; missing {}", missing.join(", "));
            let fix = "set ca-file, cert-file and key-file together (gearpump-setup writes all three), or none of them";
            // The spelling the file used for a key it sets (it may sit in an overlay section).
            let set = [ca_key, cert_key, key_key].into_iter().find_map(|key| settings.found.get(key.name));
            Err(match (source, set) {
                (Some(source), Some((spelling, _))) => source.invalid(spelling, problem, fix),
                _ => ConfigError::Invalid {
                    location: String::new(),
                    key: section.into(),
                    problem,
                    fix: fix.into(),
                },
            })
        }
    }
}

/// A value of the file, parsed and validated according to its key's kind.
#[derive(Debug, Clone)]
enum Value {
    Text(String),
    Masters(Vec<HostPort>),
    /// A relative `Local` folder is resolved against the state directory later.
    JarRoot(JarStoreRoot),
    Duration(Duration),
    Number(u64),
    Off,
}

/// The file's values of every key of the table, with where each came from.
struct Settings {
    /// Key name -> (the spelling that set it, its value).
    found: BTreeMap<&'static str, (String, Value)>,
    origins: BTreeMap<&'static str, Origin>,
    /// Key name -> the effective value as `--check-config` shows it.
    shown: BTreeMap<&'static str, String>,
}

impl Settings {
    fn read(source: Option<&Source>, warnings: &mut Vec<String>) -> Result<Settings, ConfigError> {
        let mut settings =
            Settings { found: BTreeMap::new(), origins: BTreeMap::new(), shown: BTreeMap::new() };
        for key in keys::KEYS {
            settings.origins.insert(key.name, Origin::Default);
            settings.shown.insert(key.name, show_default(key));
            let Some(source) = source else { continue };
            if let Some((spelling, value)) = read_key(source, key)? {
                settings.origins.insert(key.name, source.origin(&spelling));
                settings.shown.insert(key.name, show(key, &value));
                if let Some(note) = key.spelling_note.filter(|_| !spelling.ends_with(key.name)) {
                    warnings.push(note.to_string());
                }
                settings.found.insert(key.name, (spelling, value));
            }
        }
        Ok(settings)
    }

    fn text(&self, key: &keys::Key) -> Option<String> {
        match (self.found.get(key.name), key.kind) {
            (Some((_, Value::Text(text))), _) => Some(text.clone()),
            (_, Kind::Text { default }) => default.map(str::to_string),
            (_, Kind::FreeText) => None,
            (_, Kind::Choice { default, .. }) => Some(default.to_string()),
            _ => None,
        }
    }

    fn duration(&self, key: &keys::Key) -> Duration {
        match (self.found.get(key.name), key.kind) {
            (Some((_, Value::Duration(duration))), _) => *duration,
            (_, Kind::Duration { default, .. }) => default,
            _ => Duration::ZERO,
        }
    }

    fn number(&self, key: &keys::Key) -> u64 {
        match (self.found.get(key.name), key.kind) {
            (Some((_, Value::Number(number))), _) => *number,
            (_, Kind::Size { default, .. } | Kind::Count { default, .. }) => default,
            _ => 0,
        }
    }

    fn masters(&self) -> Vec<HostPort> {
        match self.found.get(keys::MASTERS.name) {
            Some((_, Value::Masters(masters))) => masters.clone(),
            _ => vec![HostPort { host: "127.0.0.1".into(), port: 3000 }],
        }
    }

    fn jar_root(&self) -> Option<JarStoreRoot> {
        match self.found.get(keys::JAR_ROOT.name) {
            Some((_, Value::JarRoot(root))) => Some(root.clone()),
            _ => None,
        }
    }

    /// `gearpump.master.failover-timeout`, else Gearpump's auto-down ceiling when it is below
    /// the default: Akka's auto-down delay was a ceiling ("up to 15 seconds"); Raft fails over
    /// faster than any sane value of it, so it only matters when it is below our default.
    fn failover(&mut self, warnings: &mut Vec<String>) -> Duration {
        let default = self.duration(&keys::FAILOVER);
        if self.found.contains_key(keys::FAILOVER.name) {
            return default;
        }
        let key = keys::FAILOVER.name;
        match self.found.get(keys::AUTO_DOWN.name) {
            Some((spelling, Value::Duration(bound))) if *bound < default => {
                let (spelling, bound) = (spelling.clone(), *bound);
                if let Some(Origin::File { path, line, .. }) = self.origins.get(keys::AUTO_DOWN.name).cloned()
                {
                    self.origins.insert(key, Origin::File { path, key: spelling, line });
                }
                self.shown.insert(key, format!("{bound:?}"));
                bound
            }
            Some((spelling, Value::Duration(bound))) => {
                warnings.push(format!(
                    "{spelling} = {bound:?} is Gearpump's fail-over ceiling; Raft fails over well within it \
                     (failover-timeout {default:?}). Set gearpump.master.failover-timeout to choose another value."
                ));
                self.origins
                    .insert(key, Origin::Derived("built-in default, within the Akka auto-down bound"));
                default
            }
            _ => default,
        }
    }
}

fn show(key: &keys::Key, value: &Value) -> String {
    match value {
        Value::Number(bytes) if matches!(key.kind, Kind::Size { .. }) => format!("{bytes} bytes"),
        Value::Text(text) => text.clone(),
        Value::Masters(masters) => masters.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
        Value::JarRoot(root) => root.to_string(),
        Value::Duration(duration) => format!("{duration:?}"),
        Value::Number(number) => number.to_string(),
        Value::Off => "off".into(),
    }
}

fn show_default(key: &keys::Key) -> String {
    match key.kind {
        Kind::Text { default: Some(text) } | Kind::Choice { default: text, .. } => text.to_string(),
        Kind::Text { default: None } | Kind::FreeText | Kind::JarRoot | Kind::FailoverCeiling => {
            "(not set)".into()
        }
        Kind::Masters => "127.0.0.1:3000".into(),
        Kind::Duration { default, .. } => format!("{default:?}"),
        Kind::Size { default, .. } => format!("{default} bytes"),
        Kind::Count { default, .. } => default.to_string(),
    }
}

/// Finds `key` under any of its spellings (in a `gearpump-master { }` overlay first) and
/// parses it completely. For the auto-down ceiling, the lowest of its spellings wins, as the
/// tightest bound Gearpump would have applied.
fn read_key(source: &Source, key: &keys::Key) -> Result<Option<(String, Value)>, ConfigError> {
    let mut best: Option<(String, Value)> = None;
    for spelling in key.all_spellings() {
        let Some((found, value)) = source.get(spelling) else { continue };
        let parsed = parse_value(source, key, &found, value)?;
        if key.kind != Kind::FailoverCeiling {
            return Ok(Some((found, parsed)));
        }
        let lower = match (&best, &parsed) {
            (None, _) => true,
            (Some((_, Value::Duration(old))), Value::Duration(new)) => new < old,
            (Some((_, Value::Off)), Value::Duration(_)) => true,
            _ => false,
        };
        if lower {
            best = Some((found, parsed));
        }
    }
    Ok(best)
}

fn parse_value(
    source: &Source,
    key: &keys::Key,
    found: &str,
    value: &HoconValue,
) -> Result<Value, ConfigError> {
    match key.kind {
        Kind::FreeText => match scalar_text(value) {
            Some(text) => Ok(Value::Text(text)),
            None => Err(source.invalid(found, "expected a string", format!("write {found} = \"...\""))),
        },
        Kind::Text { .. } => {
            non_empty_text(source, found, value, &format!("a non-empty string ({})", key.doc))
                .map(Value::Text)
        }
        Kind::Choice { choices, .. } => {
            let text = non_empty_text(source, found, value, &format!("one of {}", choices.join(", ")))?;
            if !choices.contains(&text.as_str()) {
                return Err(source.invalid(
                    found,
                    format!("{text:?} is not one of {}", choices.join(", ")),
                    format!("use one of {}", choices.join(", ")),
                ));
            }
            Ok(Value::Text(text))
        }
        Kind::Masters => parse_masters(source, found, value).map(Value::Masters),
        Kind::JarRoot => {
            let text = non_empty_text(
                source,
                found,
                value,
                "a folder, file:///shared/folder or hdfs://namenode:port/path",
            )?;
            jar_root::parse(&text)
                .map(Value::JarRoot)
                .map_err(|(problem, fix)| source.invalid(found, problem, fix))
        }
        Kind::Duration { min, max, .. } => parse_duration(source, found, (min, max)).map(Value::Duration),
        Kind::FailoverCeiling => {
            // Akka accepted `off` (never auto-down); for us it means no bound.
            if scalar_text(value).is_some_and(|text| text == "off") {
                return Ok(Value::Off);
            }
            parse_duration(source, found, keys::FAILOVER_RANGE).map(Value::Duration)
        }
        Kind::Size { min, max, .. } => parse_number(source, found, (min, max), true).map(Value::Number),
        Kind::Count { min, max, .. } => parse_number(source, found, (min, max), false).map(Value::Number),
    }
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
    let Some((source, (key, value))) = source.and_then(|s| Some((s, s.get(keys::MASTERS.name)?))) else {
        origins.insert(keys::MASTERS.name, Origin::Default);
        return Ok(vec![HostPort { host: "127.0.0.1".into(), port: 3000 }]);
    };
    origins.insert(keys::MASTERS.name, source.origin(&key));
    parse_masters(source, &key, value)
}

fn parse_masters(source: &Source, key: &str, value: &HoconValue) -> Result<Vec<HostPort>, ConfigError> {
    const FIX: &str = "list every master once, e.g. gearpump.cluster.masters = [\"node1:3000\", \"node2:3000\", \"node3:3000\"]";
    let Some(items) = value.as_array() else {
        return Err(source.invalid(key, "expected a list of \"host:port\" strings", FIX));
    };
    if items.is_empty() {
        return Err(source.invalid(key, "the list of masters is empty", FIX));
    }
    let mut masters: Vec<HostPort> = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let Some(text) = scalar_text(item) else {
            return Err(source.invalid(
                key,
                format!("entry {} is not a \"host:port\" string", index + 1),
                FIX,
            ));
        };
        let entry = HostPort::parse(&text).map_err(|why| {
            source.invalid(key, format!("entry {} {text:?} is malformed: {why}", index + 1), FIX)
        })?;
        if masters.contains(&entry) {
            return Err(source.invalid(key, format!("{entry} is listed twice"), FIX));
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
            origins.insert(THIS_MASTER, origin);
            Ok((*one).clone())
        }
        [] => Err(ConfigError::Invalid {
            location: source.map(|s| locate::describe(&s.path, &s.text, keys::MASTERS.name)).unwrap_or_default(),
            key: keys::MASTERS.name.into(),
            problem: format!("this master ({wanted}, from {how}) is not in the masters list [{listed}]"),
            fix: "add this master's host:port to gearpump.cluster.masters, or start it with -ip HOST -port PORT \
                  of a listed master, or set gearpump.hostname to this machine's name in that list"
                .into(),
        }),
        _ => Err(ConfigError::Invalid {
            location: source.map(|s| locate::describe(&s.path, &s.text, keys::MASTERS.name)).unwrap_or_default(),
            key: keys::MASTERS.name.into(),
            problem: format!("several masters in [{listed}] are on host {host}, so it is unclear which one this is"),
            fix: "start this master with -port PORT (and -ip HOST) to pick its entry".into(),
        }),
    }
}

fn parse_duration(
    source: &Source,
    found: &str,
    (min, max): (Duration, Duration),
) -> Result<Duration, ConfigError> {
    let duration = source.config.get_duration(found).map_err(|e| {
        source.invalid(
            found,
            format!("not a duration: {}", e.message),
            "write a duration such as 500ms, 30s, 5m or 7d",
        )
    })?;
    if duration < min || duration > max {
        return Err(source.invalid(
            found,
            format!("{duration:?} is out of range"),
            format!("use a value from {} to {}", keys::format_duration(min), keys::format_duration(max)),
        ));
    }
    Ok(duration)
}

fn parse_number(
    source: &Source,
    found: &str,
    (min, max): (u64, u64),
    is_size: bool,
) -> Result<u64, ConfigError> {
    let parsed = if is_size { source.config.get_bytes(found) } else { source.config.get_i64(found) };
    let (expected, example) = if is_size { ("a size", "512 MiB") } else { ("a whole number", "1000") };
    let value = parsed.map_err(|e| {
        source.invalid(
            found,
            format!("expected {expected}: {}", e.message),
            format!("write e.g. {found} = {example}"),
        )
    })?;
    let in_range = u64::try_from(value).ok().filter(|value| (min..=max).contains(value));
    in_range.ok_or_else(|| {
        source.invalid(found, format!("{value} is out of range"), format!("use a value from {min} to {max}"))
    })
}

/// Warns about keys under `gearpump.` that nobody reads, also inside the per-daemon overlays
/// `gearpump-master { }` and `gearpump-worker { }`, and about Akka/Pekko settings of the master
/// overlay that look like a misspelt key we read.
fn warn_about_unknown_keys(source: &Source, warnings: &mut Vec<String>) {
    let mut paths = Vec::new();
    for key in source.config.keys() {
        if let Some(value) = source.config.get(&quote_segment(key)) {
            leaf_paths(value, key.to_string(), &mut paths);
        }
    }
    for path in paths {
        if !known_keys::is_checked(&path) {
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
    /// One row per key of the table (the auto-down ceiling shows in failover-timeout's origin),
    /// plus which entry of the masters list this master is.
    pub fn effective(&self) -> Vec<(&'static str, String, String)> {
        let origin_of = |key: &str| {
            self.origins.get(key).map_or_else(|| Origin::Default.to_string(), ToString::to_string)
        };
        let mut rows = Vec::with_capacity(keys::KEYS.len() + 1);
        for key in keys::KEYS.iter().filter(|key| key.kind != Kind::FailoverCeiling) {
            let value = self.shown.get(key.name).cloned().unwrap_or_default();
            rows.push((key.name, value, origin_of(key.name)));
            if key.name == keys::MASTERS.name {
                rows.push((THIS_MASTER, self.this_master.to_string(), origin_of(THIS_MASTER)));
            }
        }
        rows
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

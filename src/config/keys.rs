//! The one table of gear.conf keys: name, the other spellings that mean the same key, what a
//! value must be (parser and range), the default and the documentation.
//!
//! Everything else is derived from it, so a key is spelled here and nowhere else: loading and
//! validation (`mod.rs` parses every key of the table that a file sets, once, at load), the
//! unknown-key warnings (`known_keys.rs`), `--check-config`'s rows, the README's key table (a
//! test renders it and compares) and the keys gearpump-setup rewrites (`setup::gearconf`).
//!
//! Adding a key is one entry in `key_table!` below; read its value in `build` with the reader
//! of its kind (`Settings::duration(&keys::NEW_KEY)` and so on).

use std::time::Duration;

/// What a value must be. Ranges are inclusive; defaults are typed, so the README shows the
/// value the code uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A non-empty string. `default: None`: unset unless derived (see `Key::default_doc`).
    Text {
        default: Option<&'static str>,
    },
    /// Any string, empty included (Gearpump ships `vmargs = ""`); unset means none.
    FreeText,
    /// One of a few words.
    Choice {
        default: &'static str,
        choices: &'static [&'static str],
    },
    /// A list of distinct `host:port` strings, default `["127.0.0.1:3000"]`.
    Masters,
    /// A jar store root: a folder, `file:///dir` or `hdfs://authority/path` (fully checked).
    JarRoot,
    Duration {
        default: Duration,
        min: Duration,
        max: Duration,
    },
    /// A HOCON size (`512 MiB`), in bytes.
    Size {
        default: u64,
        min: u64,
        max: u64,
    },
    Count {
        default: u64,
        min: u64,
        max: u64,
    },
    /// Akka's and Pekko's `auto-down-unreachable-after`: a duration in the fail-over range, or
    /// `off`. It is a ceiling on the fail-over time, not a setting of its own.
    FailoverCeiling,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Key {
    /// The canonical name, as documented and as gearpump-setup writes it.
    pub name: &'static str,
    /// Other spellings read as this key (Gearpump's Akka and Pekko names, the HA guide's
    /// `rootPath`), in order of precedence after `name`.
    pub spellings: &'static [&'static str],
    /// Told to the operator when a file uses one of `spellings`.
    pub spelling_note: Option<&'static str>,
    pub kind: Kind,
    /// The README's default when it is not a plain value ("this master's host").
    pub default_doc: Option<&'static str>,
    pub doc: &'static str,
}

impl Key {
    /// `name` and then every other spelling.
    pub(crate) fn all_spellings(&self) -> impl Iterator<Item = &'static str> {
        std::iter::once(self.name).chain(self.spellings.iter().copied())
    }
}

const fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

const fn secs(seconds: u64) -> Duration {
    Duration::from_secs(seconds)
}

const DAY: u64 = 86_400;

/// The shortest and longest fail-over bounds we accept: below 200 ms heartbeats (B/20) would
/// outrun a busy machine's scheduler; above 10 minutes nobody would call it HA.
pub(crate) const FAILOVER_RANGE: (Duration, Duration) = (ms(200), secs(600));

macro_rules! key_table {
    ($($(#[$meta:meta])* $id:ident = $key:expr;)*) => {
        $($(#[$meta])* pub(crate) const $id: Key = $key;)*
        /// Every key, in the order the README and `--check-config` show them.
        pub(crate) const KEYS: &[&Key] = &[$(&$id),*];
    };
}

key_table! {
    HOSTNAME = Key {
        name: "gearpump.hostname",
        spellings: &[],
        spelling_note: None,
        kind: Kind::Text { default: Some("127.0.0.1") },
        default_doc: None,
        doc: "this master's host; picks its entry in the masters list",
    };
    MASTERS = Key {
        name: "gearpump.cluster.masters",
        spellings: &[],
        spelling_note: None,
        kind: Kind::Masters,
        default_doc: None,
        doc: "every master as `host:port`; identical on all masters (checked before bootstrap)",
    };
    BIND_HOST = Key {
        name: "gearpump.master.bind-host",
        spellings: &[],
        spelling_note: None,
        kind: Kind::Text { default: None },
        default_doc: Some("this master's host"),
        doc: "address the port listens on (e.g. `0.0.0.0`)",
    };
    STATE_DIR = Key {
        name: "gearpump.master.state-dir",
        spellings: &[],
        spelling_note: None,
        kind: Kind::Text { default: Some("/var/lib/gearpump") },
        default_doc: None,
        doc: "Raft log, vote, snapshots (`raft.redb`, fsynced before any acknowledgement)",
    };
    JAR_ROOT = Key {
        name: "gearpump.jarstore.rootpath",
        spellings: &["gearpump.jarstore.rootPath"],
        spelling_note: Some(
            "gearpump.jarstore.rootPath (the HA guide's spelling) is read as gearpump.jarstore.rootpath; \
             Gearpump itself would have ignored it",
        ),
        kind: Kind::JarRoot,
        default_doc: Some("`jarstore` under the state dir"),
        doc: "a folder (local to each master: NOT HA, warned about), `file:///dir` (shared, e.g. NFS), \
              `hdfs://host:port/path` or `hdfs://nameservice/path`; checked completely at load",
    };
    JAR_MAX_SIZE = Key {
        name: "gearpump.jarstore.max-size",
        spellings: &[],
        spelling_note: None,
        kind: Kind::Size { default: 512 << 20, min: 1, max: 1 << 40 },
        default_doc: None,
        doc: "largest accepted jar (413 above it)",
    };
    JAR_RETENTION = Key {
        name: "gearpump.jarstore.retention",
        spellings: &[],
        spelling_note: None,
        kind: Kind::Duration { default: secs(7 * DAY), min: secs(1), max: secs(3650 * DAY) },
        default_doc: None,
        doc: "how long an unreferenced jar is kept",
    };
    JAR_TIMEOUT = Key {
        name: "gearpump.jarstore.timeout",
        spellings: &[],
        spelling_note: None,
        kind: Kind::Duration { default: secs(10), min: ms(100), max: secs(600) },
        default_doc: None,
        doc: "bound on one exchange with a remote store (an HDFS call, one chunk) and on the health probe",
    };
    FAILOVER = Key {
        name: "gearpump.master.failover-timeout",
        spellings: &[],
        spelling_note: None,
        kind: Kind::Duration { default: ms(400), min: FAILOVER_RANGE.0, max: FAILOVER_RANGE.1 },
        default_doc: None,
        doc: "a dead leader is noticed within 0.8–1.0 × this",
    };
    AUTO_DOWN = Key {
        name: "gearpump-master.akka.cluster.auto-down-unreachable-after",
        spellings: &[
            "gearpump-master.pekko.cluster.auto-down-unreachable-after",
            "master.akka.cluster.auto-down-unreachable-after",
            "master.pekko.cluster.auto-down-unreachable-after",
        ],
        spelling_note: None,
        kind: Kind::FailoverCeiling,
        default_doc: None,
        doc: "Gearpump's fail-over ceiling (Akka or Pekko spelling, or the HA guide's `master.` one): \
              used when below the default, otherwise Raft is already faster (a note says so)",
    };
    REQUEST_TIMEOUT = Key {
        name: "gearpump.master.request-timeout",
        spellings: &[],
        spelling_note: None,
        kind: Kind::Duration { default: secs(5), min: ms(100), max: secs(600) },
        default_doc: None,
        doc: "a request needing a quorum answers 503 after this instead of hanging; a leader whose disk stalls for longer is replaced",
    };
    STARTUP_TIMEOUT = Key {
        name: "gearpump.master.startup-timeout",
        spellings: &[],
        spelling_note: None,
        kind: Kind::Duration { default: secs(300), min: secs(1), max: secs(DAY) },
        default_doc: None,
        doc: "how long systemd is asked to wait for a quorum at start",
    };
    SNAPSHOT_EVERY = Key {
        name: "gearpump.master.snapshot-every",
        spellings: &[],
        spelling_note: None,
        kind: Kind::Count { default: 5000, min: 10, max: 10_000_000 },
        default_doc: None,
        doc: "log entries between snapshots",
    };
    LOG_KEEP = Key {
        name: "gearpump.master.log-keep",
        spellings: &[],
        spelling_note: None,
        kind: Kind::Count { default: 1000, min: 0, max: 10_000_000 },
        default_doc: None,
        doc: "entries kept behind a snapshot for slow followers",
    };
    MAX_CONNECTIONS_PER_ADDRESS = Key {
        name: "gearpump.master.max-connections-per-address",
        spellings: &[],
        spelling_note: None,
        kind: Kind::Count { default: 128, min: 1, max: crate::tls::MAX_CONNECTIONS as u64 },
        default_doc: None,
        doc: "open connections one client address may hold on the master's port (more are closed at once, \
              so one client cannot take all 1024); raise it when many workers or clients share an address \
              (NAT)",
    };
    SECRET_FILE = Key {
        name: "gearpump.master.secret-file",
        spellings: &[],
        spelling_note: None,
        kind: Kind::Text { default: None },
        default_doc: Some("none"),
        doc: "cluster secret (≥ 16 chars, same on all masters); peer routes refuse requests without it (401)",
    };
    TOKENS_FILE = Key {
        name: "gearpump.master.auth.tokens-file",
        spellings: &[],
        spelling_note: None,
        kind: Kind::Text { default: None },
        default_doc: Some("none"),
        doc: "client bearer tokens, one `ROLE TOKEN` a line (roles `admin`, `submit`, `read`; mode 0600/0640); \
              when set, every client route but the open ones needs a token (401/403)",
    };
    AUTH_OPEN_HEALTH = Key {
        name: "gearpump.master.auth.open-health",
        spellings: &[],
        spelling_note: None,
        kind: Kind::Choice { default: "yes", choices: &["yes", "no"] },
        default_doc: None,
        doc: "whether `/health/live`, `/health/ready` and `/metrics` answer without a token",
    };
    TLS_CA_FILE = Key {
        name: "gearpump.master.tls.ca-file",
        spellings: &[],
        spelling_note: None,
        kind: Kind::Text { default: None },
        default_doc: Some("none"),
        doc: "the cluster CA (PEM); with cert-file and key-file, the port speaks TLS and masters \
              authenticate each other with certificates from this CA naming a host of the masters list",
    };
    TLS_CERT_FILE = Key {
        name: "gearpump.master.tls.cert-file",
        spellings: &[],
        spelling_note: None,
        kind: Kind::Text { default: None },
        default_doc: Some("none"),
        doc: "this master's certificate chain (PEM), signed by the CA, naming this master's host",
    };
    TLS_KEY_FILE = Key {
        name: "gearpump.master.tls.key-file",
        spellings: &[],
        spelling_note: None,
        kind: Kind::Text { default: None },
        default_doc: Some("none"),
        doc: "this master's private key (PEM, mode 0600: refused when group or others may read it)",
    };
    LOG_LEVEL = Key {
        name: "gearpump.master.log-level",
        spellings: &[],
        spelling_note: None,
        kind: Kind::Choice { default: "info", choices: &["error", "warn", "info", "debug", "trace"] },
        default_doc: None,
        doc: "`GEARPUMP_LOG` (tracing filter syntax) overrides",
    };
    TOTAL_RETRIES = Key {
        name: "gearpump.application.total-retries",
        spellings: &[],
        spelling_note: None,
        kind: Kind::Count { default: 5, min: 0, max: 1_000_000 },
        default_doc: None,
        doc: "restart policy recorded with each application (replicated: survives fail-over)",
    };
    WORKER_LOSS = Key {
        name: "gearpump.master.worker-loss-timeout",
        spellings: &[],
        spelling_note: None,
        kind: Kind::Duration { default: secs(5), min: ms(50), max: secs(3600) },
        default_doc: None,
        doc: "the leader restarts a silent worker's applications elsewhere after this; must exceed \
              fence-timeout + heartbeat-interval (checked: exit 78)",
    };
    WORKER_SLOTS = Key {
        name: "gearpump.worker.slots",
        spellings: &[],
        spelling_note: None,
        kind: Kind::Count { default: 1000, min: 1, max: 1_000_000 },
        default_doc: None,
        doc: "slots a worker offers (an application takes 1 unless submitted with more)",
    };
    WORKER_JAVA = Key {
        name: "gearpump.worker.java",
        spellings: &[],
        spelling_note: None,
        kind: Kind::Text { default: Some("java") },
        default_doc: None,
        doc: "the JVM a worker starts applications with (checked at start: exit 78 without it)",
    };
    WORKER_STATE_DIR = Key {
        name: "gearpump.worker.state-dir",
        spellings: &[],
        spelling_note: None,
        kind: Kind::Text { default: Some("/var/lib/gearpump-worker") },
        default_doc: None,
        doc: "a worker's id, jar cache and per-attempt logs",
    };
    WORKER_HEARTBEAT = Key {
        name: "gearpump.worker.heartbeat-interval",
        spellings: &[],
        spelling_note: None,
        kind: Kind::Duration { default: ms(500), min: ms(50), max: secs(3600) },
        default_doc: None,
        doc: "how often a worker reports to the masters",
    };
    WORKER_FENCE = Key {
        name: "gearpump.worker.fence-timeout",
        spellings: &[],
        spelling_note: None,
        kind: Kind::Duration { default: secs(3), min: ms(50), max: secs(3600) },
        default_doc: None,
        doc: "a worker without a heartbeat acknowledged by a leader with quorum for this long kills its applications",
    };
    WORKER_LOG_MAX_SIZE = Key {
        name: "gearpump.worker.log-max-size",
        spellings: &[],
        spelling_note: None,
        kind: Kind::Size { default: 10 << 20, min: 1, max: 1 << 40 },
        default_doc: None,
        doc: "an attempt's log is rotated at this size (one old file kept)",
    };
    WORKER_TLS_CA_FILE = Key {
        name: "gearpump.worker.tls.ca-file",
        spellings: &[],
        spelling_note: None,
        kind: Kind::Text { default: None },
        default_doc: Some("none"),
        doc: "the cluster CA (PEM); with cert-file and key-file, the worker talks https:// to the \
              masters and presents its worker certificate, and its log port speaks TLS to masters only",
    };
    WORKER_TLS_CERT_FILE = Key {
        name: "gearpump.worker.tls.cert-file",
        spellings: &[],
        spelling_note: None,
        kind: Kind::Text { default: None },
        default_doc: Some("none"),
        doc: "this worker's certificate (PEM): a worker certificate from the cluster CA naming \
              gearpump.hostname (gearpump-setup --workers issues it)",
    };
    WORKER_TLS_KEY_FILE = Key {
        name: "gearpump.worker.tls.key-file",
        spellings: &[],
        spelling_note: None,
        kind: Kind::Text { default: None },
        default_doc: Some("none"),
        doc: "this worker's private key (PEM, mode 0600: refused when group or others may read it)",
    };
    WORKER_PORT = Key {
        name: "gearpump.worker.port",
        spellings: &[],
        spelling_note: None,
        kind: Kind::Count { default: 0, min: 0, max: 65_535 },
        default_doc: Some("`0` (any free port)"),
        doc: "port of the worker's log server, which masters read application logs from",
    };
    APPMASTER_VMARGS = Key {
        name: "gearpump.appmaster.vmargs",
        spellings: &[],
        spelling_note: None,
        kind: Kind::FreeText,
        default_doc: Some("none"),
        doc: "JVM options of every application, split at white space",
    };
    APPMASTER_EXTRA_CLASSPATH = Key {
        name: "gearpump.appmaster.extraClasspath",
        spellings: &[],
        spelling_note: None,
        kind: Kind::FreeText,
        default_doc: Some("none"),
        doc: "`:`-separated entries appended to every application's class path",
    };
}

/// A duration as gear.conf would write it, in the largest unit that divides it.
pub(crate) fn format_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    for (unit, size) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)] {
        if millis >= size && millis.is_multiple_of(size) {
            return format!("{}{unit}", millis / size);
        }
    }
    format!("{millis}ms")
}

/// A size as gear.conf would write it, in the largest binary unit that divides it.
pub(crate) fn format_size(bytes: u64) -> String {
    for (unit, size) in [("TiB", 1u64 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{} {unit}", bytes / size);
        }
    }
    format!("{bytes} B")
}

impl Key {
    /// The default as the README shows it.
    pub(crate) fn default_text(&self) -> String {
        if let Some(doc) = self.default_doc {
            return doc.to_string();
        }
        match self.kind {
            Kind::Text { default: Some(text) } | Kind::Choice { default: text, .. } => format!("`{text}`"),
            Kind::Text { default: None } | Kind::FreeText | Kind::JarRoot | Kind::FailoverCeiling => {
                "none".into()
            }
            Kind::Masters => "`[\"127.0.0.1:3000\"]`".into(),
            Kind::Duration { default, .. } => format!("`{}`", format_duration(default)),
            Kind::Size { default, .. } => format!("`{}`", format_size(default)),
            Kind::Count { default, .. } => format!("`{default}`"),
        }
    }

    /// The documentation with the accepted values appended, as the README shows it.
    pub(crate) fn doc_text(&self) -> String {
        match self.kind {
            Kind::Duration { min, max, .. } => {
                format!("{}; {} to {}", self.doc, format_duration(min), format_duration(max))
            }
            Kind::Size { min, max, .. } => {
                format!("{}; {} to {}", self.doc, format_size(min), format_size(max))
            }
            Kind::Count { min, max, .. } => format!("{}; {min} to {max}", self.doc),
            Kind::Choice { choices, .. } => format!("{}; {}", choices.join(", "), self.doc),
            _ => self.doc.to_string(),
        }
    }
}

/// The README's key table (between its `gear.conf keys` marker comments).
pub(crate) fn markdown_table() -> String {
    let mut out = String::from("| key | default | meaning |\n|---|---|---|\n");
    for key in KEYS {
        let mut names = format!("`{}`", key.name);
        for spelling in key.spellings {
            names.push_str(&format!(", `{spelling}`"));
        }
        out.push_str(&format!("| {names} | {} | {} |\n", key.default_text(), key.doc_text()));
    }
    out
}

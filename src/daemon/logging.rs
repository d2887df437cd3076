//! Logs go to journald with structured fields when systemd runs us (JOURNAL_STREAM is set and
//! the journal socket exists), to stderr otherwise. The level can change on SIGHUP.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

pub(super) struct LogControl {
    handle: reload::Handle<EnvFilter, Registry>,
}

impl LogControl {
    pub(super) fn set_level(&self, level: &str) -> Result<(), String> {
        let filter = filter_for(level);
        self.handle.reload(filter).map_err(|e| e.to_string())
    }
}

fn filter_for(level: &str) -> EnvFilter {
    // openraft is chatty at info about every election; keep it one level quieter than ours.
    let quieter = match level {
        "trace" => "debug",
        "debug" => "info",
        // openraft warns about benign races (stale vote responses) during every election.
        _ => "error",
    };
    EnvFilter::try_from_env("GEARPUMP_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("{level},openraft={quieter},hyper=warn,reqwest=warn")))
}

pub(super) fn init(level: &str) -> LogControl {
    let (filter, handle) = reload::Layer::new(filter_for(level));
    let under_journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let registry = tracing_subscriber::registry().with(filter);
    if under_journald {
        if let Ok(journald) = tracing_journald::layer() {
            let _ = registry.with(journald.with_syslog_identifier("gearpump-master".into())).try_init();
            return LogControl { handle };
        }
    }
    let _ = registry
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_target(false)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .try_init();
    LogControl { handle }
}

//! What a configuration error says: where (FILE:LINE:COL), which key, what is wrong and the fix.

use std::path::{Path, PathBuf};

/// A configuration the master cannot run with. Each says where, what, and how to fix it; the
/// binary prints it and exits with EX_CONFIG (78) so systemd does not restart in a loop.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read the configuration file: {cause}\n  fix: check the path given to --config and that this user may read it", file.display())]
    Unreadable { file: PathBuf, cause: String },
    #[error("{}:{line}:{col}: {message}\n  fix: correct the HOCON syntax at that position (note that // starts a comment, so URLs must be quoted)", file.display())]
    Syntax { file: PathBuf, line: usize, col: usize, message: String },
    #[error("{location}{key}: {problem}\n  fix: {fix}")]
    Invalid { location: String, key: String, problem: String, fix: String },
}

/// Exit status for a configuration error (sysexits.h EX_CONFIG).
pub(super) const EX_CONFIG: i32 = 78;

impl ConfigError {
    pub fn exit_code(&self) -> i32 {
        EX_CONFIG
    }
}

pub(super) fn from_hocon(path: &Path, error: hocon::HoconError) -> ConfigError {
    let file = path.to_path_buf();
    match error {
        hocon::HoconError::Parse(e) => {
            ConfigError::Syntax { file, line: e.line, col: e.col, message: e.message }
        }
        hocon::HoconError::Resolve(e) => ConfigError::Syntax {
            file,
            line: e.line,
            col: e.col,
            message: if e.path.is_empty() {
                e.message
            } else {
                format!("{} (substitution ${{{}}})", e.message, e.path)
            },
        },
        hocon::HoconError::Io(e) => ConfigError::Unreadable { file, cause: e.to_string() },
        other => ConfigError::Syntax { file, line: 1, col: 1, message: other.to_string() },
    }
}

//! The state directory's format version: a one-line file `state-format` next to `raft.redb`.
//!
//! Written when a state directory is created and checked before anything in it is opened. A
//! directory written by a newer, incompatible gearpump-master (a downgrade) is refused without
//! touching it — opening it could rewrite tables an older build does not understand. An older
//! one is upgraded in place by the migrations below, then marked. Directories from before the
//! marker existed (a `raft.redb` and no `state-format`) are format 1.

use std::path::{Path, PathBuf};

/// The format this build writes. Raise it only with a migration from the previous one below,
/// and only when an older build could not read what this one writes.
pub const STATE_FORMAT: u32 = 1;
/// The marker's file name inside the state directory.
pub const MARKER: &str = "state-format";
/// The Raft log and state machine.
pub(crate) const DATABASE: &str = "raft.redb";

#[derive(Debug, thiserror::Error)]
pub enum StateDirError {
    #[error(
        "the state directory {dir} has format {found}, written by a newer gearpump-master; this one \
         ({version}) reads format {supported} at most and leaves the directory untouched\n  fix: install \
         the gearpump-master version that wrote it (or newer), or restore this master from a backup \
         into an empty state directory (gearpump-master restore --from FILE; see docs/OPERATIONS.md)",
        dir = .dir.display(), version = env!("CARGO_PKG_VERSION"), supported = STATE_FORMAT
    )]
    Newer { dir: PathBuf, found: u32 },
    #[error("{}: {cause}\n  fix: it must hold one number (the state format); restore this master from a backup if the directory is damaged", .path.display())]
    BadMarker { path: PathBuf, cause: String },
    #[error("cannot prepare the state directory {}: {cause}", .dir.display())]
    Io { dir: PathBuf, cause: String },
}

/// The format of `dir`: `None` for a directory with no state yet.
pub fn read_format(dir: &Path) -> Result<Option<u32>, StateDirError> {
    let marker = dir.join(MARKER);
    match std::fs::read_to_string(&marker) {
        Ok(text) => text.trim().parse().map(Some).map_err(|_| StateDirError::BadMarker {
            path: marker,
            cause: format!("{:?} is not a format number", text.trim()),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Ok(if dir.join(DATABASE).exists() { Some(1) } else { None })
        }
        Err(e) => Err(StateDirError::BadMarker { path: marker, cause: e.to_string() }),
    }
}

/// Creates `dir` if needed and makes it this build's format: refuses a newer one untouched,
/// upgrades an older one, marks a new one.
pub fn prepare(dir: &Path) -> Result<(), StateDirError> {
    let found = read_format(dir)?;
    if let Some(found) = found {
        if found > STATE_FORMAT {
            return Err(StateDirError::Newer { dir: dir.to_path_buf(), found });
        }
    }
    let io = |e: std::io::Error| StateDirError::Io { dir: dir.to_path_buf(), cause: e.to_string() };
    std::fs::create_dir_all(dir).map_err(io)?;
    if let Some(found) = found {
        for from in found..STATE_FORMAT {
            migrate(dir, from)?;
            write_marker(dir, from + 1)?;
            tracing::info!(dir = %dir.display(), from, to = from + 1, "state directory upgraded");
        }
    }
    if found != Some(STATE_FORMAT) || !dir.join(MARKER).exists() {
        write_marker(dir, STATE_FORMAT)?;
    }
    Ok(())
}

/// Upgrades `dir` from format `from` to `from + 1`. There is one format so far; the next change
/// of what `raft.redb` holds adds its step here, so an operator's upgrade is just a restart.
fn migrate(dir: &Path, from: u32) -> Result<(), StateDirError> {
    Err(StateDirError::Io { dir: dir.to_path_buf(), cause: format!("no migration from format {from}") })
}

/// Writes the marker atomically (see `fsutil`).
pub(crate) fn write_marker(dir: &Path, format: u32) -> Result<(), StateDirError> {
    crate::fsutil::write_atomically(&dir.join(MARKER), format!("{format}\n").as_bytes(), 0o644)
        .map_err(|e| StateDirError::Io { dir: dir.to_path_buf(), cause: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_legacy_and_newer_directories() {
        let root = tempfile::tempdir().expect("temp dir");
        let fresh = root.path().join("fresh");
        prepare(&fresh).expect("a new directory is created and marked");
        assert_eq!(read_format(&fresh).expect("readable"), Some(STATE_FORMAT));

        // Written before the marker existed: format 1, marked in place.
        let legacy = root.path().join("legacy");
        std::fs::create_dir_all(&legacy).expect("dir");
        std::fs::write(legacy.join(DATABASE), b"db").expect("db");
        assert_eq!(read_format(&legacy).expect("readable"), Some(1));
        prepare(&legacy).expect("legacy directory accepted");
        assert_eq!(std::fs::read_to_string(legacy.join(MARKER)).expect("marker"), "1\n");

        let newer = root.path().join("newer");
        std::fs::create_dir_all(&newer).expect("dir");
        std::fs::write(newer.join(MARKER), format!("{}\n", STATE_FORMAT + 1)).expect("marker");
        let error = prepare(&newer).expect_err("newer refused").to_string();
        assert!(
            error.contains(&format!("format {}", STATE_FORMAT + 1)) && error.contains("restore"),
            "{error}"
        );
        assert_eq!(std::fs::read_dir(&newer).expect("list").count(), 1, "nothing written");

        std::fs::write(newer.join(MARKER), "two\n").expect("marker");
        assert!(matches!(prepare(&newer), Err(StateDirError::BadMarker { .. })));
    }
}

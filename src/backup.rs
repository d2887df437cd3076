//! The backup file: a consistent copy of the replicated state, as `gear snapshot save` writes it
//! and `gearpump-master restore` reads it.
//!
//! One header line, then a JSON body:
//! ```text
//! gearpump-master-snapshot 1 sha256=<hex of the body> length=<bytes of the body>
//! {"format":1,"appliedIndex":...,"masterState":{...},...}
//! ```
//! The header makes a truncated or altered file fail loudly before anything trusts it (the length
//! tells a cut-off copy from a corrupted one), and the body is plain JSON so an operator can read
//! what a backup holds with any tool. Pure bytes in, bytes out: no I/O here, so the master, `gear`
//! and the restore all use the same code.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::state::MasterState;

/// The first word of every backup file.
pub const MAGIC: &str = "gearpump-master-snapshot";
/// The format this build writes and the newest it reads.
pub const FORMAT: u32 = 1;

/// What a backup holds: where and when it was taken, and the state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Backup {
    /// Flattened: the file's JSON body keeps these keys at its top level.
    #[serde(flatten)]
    pub origin: Origin,
    /// Applications, id counters, application data, jar references with SHA-256, the request
    /// window.
    pub master_state: MasterState,
}

/// Where, when and at which log position a backup was taken. `gear snapshot status --json`
/// prints it as it is (`wire::SnapshotSummary` flattens it), so each field is defined here only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Origin {
    pub format: u32,
    /// The gearpump-master version of the master that answered.
    pub written_by: String,
    pub created_at_ms: u64,
    /// The master that answered the request, and the leader it had confirmed.
    pub taken_from: String,
    pub leader: Option<String>,
    /// The Raft log position the state was read at (after a read barrier: everything committed
    /// before the request is in it).
    pub applied_index: u64,
    pub applied_term: u64,
    /// The membership at that position.
    pub voters: Vec<String>,
    pub learners: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BackupError {
    #[error("not a gearpump-master snapshot (it does not start with {MAGIC:?}); was it written by `gear snapshot save`?")]
    NotASnapshot,
    #[error("snapshot format {found} is newer than this gearpump-master supports ({FORMAT}); use the gearpump-master version that wrote it, or a newer one")]
    NewerFormat { found: u32 },
    #[error("the file ends inside its header line ({MAGIC} ...): it is truncated; take the backup again")]
    HeaderTruncated,
    #[error("the header line is malformed: {0}")]
    BadHeader(String),
    #[error("the file is truncated: the header announces {expected} bytes of body, the file holds {found}; take the backup again")]
    Truncated { expected: u64, found: u64 },
    #[error("the file is longer than its header announces ({expected} bytes of body, {found} found); it was altered or two files were joined")]
    TrailingBytes { expected: u64, found: u64 },
    #[error("checksum mismatch: the body hashes to SHA-256 {found}, the header says {expected}; the file is corrupt, use another copy")]
    Checksum { expected: String, found: String },
    #[error("the body is not a readable snapshot: {0}")]
    Body(String),
}

impl BackupError {
    /// sysexits: 65 (EX_DATAERR) for a damaged file, 78 for a file from a newer version.
    pub fn exit_code(&self) -> u8 {
        match self {
            BackupError::NewerFormat { .. } => 78,
            _ => 65,
        }
    }
}

impl Backup {
    /// The whole file: header line and body.
    pub fn encode(&self) -> Vec<u8> {
        // Plain maps, strings and numbers: serializing cannot fail.
        let body = serde_json::to_vec(self).unwrap_or_default();
        let digest = hex::encode(Sha256::digest(&body));
        let mut file =
            format!("{MAGIC} {} sha256={digest} length={}\n", self.origin.format, body.len()).into_bytes();
        file.extend_from_slice(&body);
        file
    }

    /// Checks the header, length and checksum, then reads the body.
    pub fn decode(file: &[u8]) -> Result<Backup, BackupError> {
        let Some(newline) = file.iter().position(|b| *b == b'\n') else {
            // Cut off inside the header (an empty file included) or just not a backup.
            return Err(if file.starts_with(MAGIC.as_bytes()) || MAGIC.as_bytes().starts_with(file) {
                BackupError::HeaderTruncated
            } else {
                BackupError::NotASnapshot
            });
        };
        let header = std::str::from_utf8(&file[..newline]).map_err(|_| BackupError::NotASnapshot)?;
        let body = &file[newline + 1..];
        let mut words = header.split(' ');
        if words.next() != Some(MAGIC) {
            return Err(BackupError::NotASnapshot);
        }
        let format: u32 = words
            .next()
            .and_then(|w| w.parse().ok())
            .ok_or_else(|| BackupError::BadHeader(format!("no format number in {header:?}")))?;
        if format > FORMAT {
            return Err(BackupError::NewerFormat { found: format });
        }
        let field = |name: &str| -> Result<String, BackupError> {
            header
                .split(' ')
                .find_map(|w| w.strip_prefix(name).and_then(|rest| rest.strip_prefix('=')))
                .map(str::to_string)
                .ok_or_else(|| BackupError::BadHeader(format!("no {name}= in {header:?}")))
        };
        let expected_sha = field("sha256")?;
        let length: u64 = field("length")?
            .parse()
            .map_err(|_| BackupError::BadHeader(format!("length is not a number in {header:?}")))?;
        let found = body.len() as u64;
        if found < length {
            return Err(BackupError::Truncated { expected: length, found });
        }
        if found > length {
            return Err(BackupError::TrailingBytes { expected: length, found });
        }
        let digest = hex::encode(Sha256::digest(body));
        if digest != expected_sha {
            return Err(BackupError::Checksum { expected: expected_sha, found: digest });
        }
        let backup: Backup = serde_json::from_slice(body).map_err(|e| BackupError::Body(e.to_string()))?;
        if backup.origin.format != format {
            return Err(BackupError::BadHeader(format!(
                "the header says format {format}, the body {}",
                backup.origin.format
            )));
        }
        Ok(backup)
    }

    /// The SHA-256 of the body, as the header carries it.
    pub fn body_sha256(file: &[u8]) -> Option<String> {
        let newline = file.iter().position(|b| *b == b'\n')?;
        Some(hex::encode(Sha256::digest(&file[newline + 1..])))
    }

    /// What `gear snapshot status --json` prints.
    pub fn summary(&self, file_size: u64, sha256: &str) -> crate::wire::SnapshotSummary {
        let state = &self.master_state;
        let jars = state
            .jars
            .iter()
            .map(|(key, jar)| crate::wire::SnapshotJar {
                name: key.clone(),
                size: jar.size,
                sha256: jar.sha256.clone(),
            })
            .collect();
        let data_keys: usize = state.app_data.values().map(|data| data.len()).sum();
        crate::wire::SnapshotSummary {
            origin: self.origin.clone(),
            applications: state.apps.len() as u64,
            max_app_id: state.max_app_id,
            next_app_id: state.max_app_id.saturating_add(1),
            app_data_keys: data_keys as u64,
            jars,
            size: file_size,
            sha256: sha256.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Backup {
        let mut state = MasterState { max_app_id: 7, ..MasterState::default() };
        state.app_data.entry(3).or_default().insert("k".into(), "v".into());
        Backup {
            origin: Origin {
                format: FORMAT,
                written_by: "test".into(),
                created_at_ms: 1,
                taken_from: "a:1".into(),
                leader: Some("a:1".into()),
                applied_index: 42,
                applied_term: 3,
                voters: vec!["a:1".into(), "b:1".into()],
                learners: vec![],
            },
            master_state: state,
        }
    }

    #[test]
    fn round_trip() {
        let backup = sample();
        assert_eq!(Backup::decode(&backup.encode()), Ok(backup));
    }

    #[test]
    fn damage_is_named() {
        let file = sample().encode();
        assert!(matches!(Backup::decode(&file[..file.len() - 5]), Err(BackupError::Truncated { .. })));
        let mut flipped = file.clone();
        let last = flipped.len() - 2;
        flipped[last] ^= 1;
        assert!(matches!(Backup::decode(&flipped), Err(BackupError::Checksum { .. })));
        let mut longer = file.clone();
        longer.push(b'x');
        assert!(matches!(Backup::decode(&longer), Err(BackupError::TrailingBytes { .. })));
        assert_eq!(Backup::decode(b"hello\nworld"), Err(BackupError::NotASnapshot));
        assert_eq!(Backup::decode(&file[..10]), Err(BackupError::HeaderTruncated));
        let newer = String::from_utf8_lossy(&file).replacen(" 1 sha256", " 9 sha256", 1);
        assert_eq!(Backup::decode(newer.as_bytes()), Err(BackupError::NewerFormat { found: 9 }));
    }
}

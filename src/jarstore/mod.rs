//! Where application jars live. The scheme of `gearpump.jarstore.rootpath` picks the backend:
//! a master-local folder (not HA), `file://` (a folder shared by every master, e.g. NFS) or
//! `hdfs://`. Every backend streams: memory stays flat in the size of a jar.

use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;

pub mod fs;
pub mod hdfs;
pub mod name;
pub mod retention;
pub mod verify;

use std::sync::Arc;

use crate::config::JarStoreRoot;

/// Opens the store the configuration names. No I/O happens here (an unreachable store must not
/// keep the master from joining its quorum); `check` reports the store's health.
/// `timeout` bounds each exchange with a remote store, so a dead NameNode is an error in
/// seconds rather than a request hanging for minutes.
pub fn open(root: &JarStoreRoot, timeout: std::time::Duration) -> Result<Arc<dyn JarStore>, JarStoreError> {
    match root {
        JarStoreRoot::Local(path) => Ok(Arc::new(fs::FsJarStore::local(path.clone()))),
        JarStoreRoot::Shared(path) => Ok(Arc::new(fs::FsJarStore::shared(path.clone()))),
        JarStoreRoot::Hdfs(uri) => {
            let options = hdfs::HdfsOptions { op_timeout: timeout, ..hdfs::HdfsOptions::default() };
            Ok(Arc::new(hdfs::HdfsJarStore::with_options(uri, options)?))
        }
    }
}

/// A stream of jar bytes, as read from a client or from a store.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// What a completed `put` stored: the key in the store plus what the cluster replicates so that
/// any master can check the bytes it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredJar {
    /// The file name inside the store (already validated, no separators).
    pub key: String,
    pub size: u64,
    /// Lower-case hex SHA-256 of the content.
    pub sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum JarStoreError {
    #[error("invalid jar name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("jar is larger than the limit of {limit} bytes (gearpump.jarstore.max-size)")]
    TooLarge { limit: u64 },
    #[error("jar {0:?} is not in the jar store")]
    NotFound(String),
    /// A store never replaces a jar: another upload already stored one under this key.
    #[error("jar {0:?} already exists in the jar store; a stored jar is never replaced")]
    AlreadyExists(String),
    #[error("jar store {store} is unavailable: {cause}")]
    Unavailable { store: String, cause: String },
    #[error("reading the upload failed: {0}")]
    Upload(std::io::Error),
}

#[async_trait]
pub trait JarStore: Send + Sync {
    /// The root as the operator wrote it, for messages ("hdfs://nn:9000/gearpump/jars").
    fn describe(&self) -> String;

    /// False for a master-local folder: a jar there dies with its master's disk.
    fn is_highly_available(&self) -> bool;

    /// Streams `body` into the store under `key`, computing size and SHA-256 as it goes.
    /// The jar becomes visible under `key` only once it is complete and durable; on any error
    /// (client gone, over `max_size`, store failing) nothing is left behind. An existing jar
    /// under `key` is never replaced (`AlreadyExists`): an application may already depend on
    /// its bytes and its replicated SHA-256.
    async fn put(&self, key: &str, body: ByteStream, max_size: u64) -> Result<StoredJar, JarStoreError>;

    /// Streams the stored bytes of `key`. Checking them against the replicated SHA-256 is the
    /// caller's job (see `verify::VerifyingStream`), so every backend gets it the same way.
    async fn get(&self, key: &str) -> Result<ByteStream, JarStoreError>;

    async fn exists(&self, key: &str) -> Result<bool, JarStoreError>;

    /// Deleting a key that is not there is not an error.
    async fn delete(&self, key: &str) -> Result<(), JarStoreError>;

    /// Keys of complete jars (never partial uploads).
    async fn list(&self) -> Result<Vec<String>, JarStoreError>;

    /// A cheap probe for `/health/ready`: the root exists and is writable.
    async fn check(&self) -> Result<(), JarStoreError>;
}

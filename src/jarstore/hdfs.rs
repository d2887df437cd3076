//! Jars on HDFS, through hdfs-native: a pure-Rust client, so a master needs no JVM, no libhdfs
//! and no Kerberos library (GSSAPI is only dlopen'ed when security is on).
//!
//! Layout under the root: complete jars at `<root>/<key>`, uploads in progress at
//! `<root>/.partial/<key>.<random>`. A jar appears under its key only by a rename after the
//! HDFS file is closed, i.e. after every DataNode of the pipeline acknowledged every packet and
//! the NameNode committed the block list: that is HDFS's own notion of durable (replication;
//! operators who also want an fsync per block set `dfs.datanode.synconclose`).

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use hdfs_native::file::{FileReader, FileWriter};
use hdfs_native::{Client, ClientBuilder, HdfsError, WriteOptions};
use sha2::{Digest, Sha256};

use super::{name, ByteStream, JarStore, JarStoreError, StoredJar};
use crate::config::parse_hdfs_uri as parse_uri;

/// Hidden from `list` by its leading dot, and jar names may not start with one.
const PARTIAL_DIR: &str = ".partial";

/// Downloads read the file one range at a time: each range opens its own DataNode read, so a
/// DataNode restarted between two ranges costs one reconnect instead of the whole download.
const READ_WINDOW: usize = 16 << 20;

/// A partial upload older than this lost its master (killed mid-upload, or HDFS was down when
/// it tried to clean up). Far longer than any upload of a jar can take, so a partial that
/// another master is still writing is never removed.
const STALE_PARTIAL_AGE: Duration = Duration::from_secs(24 * 3600);

/// `check` runs on every readiness probe; sweeping stale partials there at most this often
/// keeps the probe to a couple of NameNode calls.
const SWEEP_INTERVAL: Duration = Duration::from_secs(3600);

/// How long a single exchange with HDFS may take before the operation fails, unless
/// [`HdfsOptions::op_timeout`] says otherwise.
pub const DEFAULT_OP_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct HdfsOptions {
    /// Bound on each exchange with HDFS: one NameNode call, one chunk written or read. Without
    /// it an operation on a dead NameNode would last minutes: hdfs-native keeps retrying a
    /// refused connection (15 attempts by default, backing off up to 15 s).
    pub op_timeout: Duration,
    /// Where `core-site.xml`/`hdfs-site.xml` live (the nameservice of an HA URI is defined
    /// there). `None`: hdfs-native's own lookup, `HADOOP_CONF_DIR` then `HADOOP_HOME`.
    pub hadoop_conf_dir: Option<PathBuf>,
    /// The HDFS user. `None`: `HADOOP_USER_NAME`, else the OS user running the master.
    pub user: Option<String>,
}

impl Default for HdfsOptions {
    fn default() -> Self {
        Self { op_timeout: DEFAULT_OP_TIMEOUT, hadoop_conf_dir: None, user: None }
    }
}

pub struct HdfsJarStore {
    uri: String,
    /// `host:port` of the NameNode, or the nameservice.
    authority: String,
    /// The path inside the file system, normalized: leading `/`, no trailing `/`.
    root: String,
    client: Client,
    op_timeout: Duration,
    last_sweep: Mutex<Option<Instant>>,
}

impl fmt::Debug for HdfsJarStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HdfsJarStore").field("uri", &self.uri).finish_non_exhaustive()
    }
}

/// Why one exchange with HDFS failed.
enum Failure {
    TimedOut(Duration),
    Hdfs(HdfsError),
}

impl HdfsJarStore {
    /// `uri` is `hdfs://host:port/path` or, for NameNode HA, `hdfs://nameservice/path` with the
    /// nameservice defined in the Hadoop configuration. No I/O happens here: an unreachable
    /// HDFS shows up in `check` and in each operation, so a master can start without it.
    /// Call it inside the tokio runtime that will use the store: hdfs-native runs its
    /// background work (lease renewal, write acknowledgements) on the runtime current here.
    pub fn with_options(uri: &str, options: HdfsOptions) -> Result<Self, JarStoreError> {
        let invalid = |cause: String| JarStoreError::Unavailable { store: uri.to_string(), cause };
        let (authority, root) = parse_uri(uri).map_err(invalid)?;
        let mut builder = ClientBuilder::new().with_url(format!("hdfs://{authority}"));
        if let Some(dir) = &options.hadoop_conf_dir {
            builder = builder.with_config_dir(dir.to_string_lossy());
        }
        if let Some(user) = &options.user {
            builder = builder.with_user(user.clone());
        }
        let client = builder.build().map_err(|e| invalid(explain_build_error(&authority, &e)))?;
        Ok(Self {
            uri: uri.to_string(),
            authority,
            root,
            client,
            op_timeout: options.op_timeout,
            last_sweep: Mutex::new(None),
        })
    }

    /// The directory under the root where uploads in progress live.
    pub fn partial_dir(&self) -> String {
        join(&self.root, PARTIAL_DIR)
    }

    fn jar_path(&self, key: &str) -> String {
        join(&self.root, key)
    }

    async fn bounded<T>(&self, op: impl Future<Output = Result<T, HdfsError>>) -> Result<T, Failure> {
        match tokio::time::timeout(self.op_timeout, op).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(Failure::Hdfs(e)),
            Err(_) => Err(Failure::TimedOut(self.op_timeout)),
        }
    }

    /// `bounded`, with a failure turned into the error a client sees.
    async fn op<T>(
        &self,
        op: impl Future<Output = Result<T, HdfsError>>,
        doing: impl FnOnce() -> String,
    ) -> Result<T, JarStoreError> {
        match self.bounded(op).await {
            Ok(value) => Ok(value),
            Err(failure) => Err(self.fail(doing(), failure).await),
        }
    }

    async fn fail(&self, doing: String, failure: Failure) -> JarStoreError {
        let mut cause = format!("{doing}: {}", describe_failure(&failure));
        if let Failure::TimedOut(_) = failure {
            match self.diagnose_namenode().await {
                Some(diagnosis) => cause = format!("{cause}: {diagnosis}"),
                None => cause.push_str(" (NameNodes or DataNodes down or unreachable?)"),
            }
        }
        JarStoreError::Unavailable { store: self.uri.clone(), cause }
    }

    /// After a timeout, says whether the NameNode is reachable at all: hdfs-native retries a
    /// refused connection silently until the timeout, which alone reads as "no answer".
    async fn diagnose_namenode(&self) -> Option<String> {
        // A nameservice has several addresses in the Hadoop configuration; hdfs-native already
        // tried each of them.
        if !self.authority.contains(':') {
            return None;
        }
        let address = self.authority.as_str();
        let probe = tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(address));
        Some(match probe.await {
            Ok(Ok(_)) => format!(
                "the NameNode at {address} accepts connections, so a DataNode or the NameNode \
                 itself is stuck"
            ),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                format!("the NameNode at {address} refuses connections (not running?)")
            }
            Ok(Err(e)) => format!("cannot connect to the NameNode at {address}: {e}"),
            Err(_) => format!("the NameNode at {address} does not answer a TCP connect within 2 s"),
        })
    }

    /// Streams `body` into the partial file; the caller removes it if this fails.
    async fn upload(
        &self,
        key: &str,
        partial: &str,
        body: &mut ByteStream,
        max_size: u64,
    ) -> Result<StoredJar, JarStoreError> {
        let mut writer = self
            .op(self.client.create(partial, WriteOptions::default()), || format!("creating {partial}"))
            .await?;
        let (size, sha256) = match self.fill(&mut writer, partial, body, max_size).await {
            Ok(done) => done,
            Err(e) => {
                // Drop the writer (it releases its lease) before the caller deletes the file.
                drop(writer);
                return Err(e);
            }
        };
        self.op(writer.close(), || format!("closing {partial}")).await?;
        let target = self.jar_path(key);
        // Never overwrite: another upload's jar under this key may already be registered with
        // its own SHA-256. HDFS's rename without OVERWRITE fails atomically when the target
        // exists. (Keys are unique per upload, so a retried upload uses a new key.)
        match self.bounded(self.client.rename(partial, &target, false)).await {
            Ok(()) => Ok(StoredJar { key: key.to_string(), size, sha256 }),
            Err(Failure::Hdfs(e)) if is_already_exists(&e) => {
                Err(JarStoreError::AlreadyExists(key.to_string()))
            }
            Err(f) => Err(self.fail(format!("renaming {partial} to {target}"), f).await),
        }
    }

    async fn fill(
        &self,
        writer: &mut FileWriter,
        partial: &str,
        body: &mut ByteStream,
        max_size: u64,
    ) -> Result<(u64, String), JarStoreError> {
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(JarStoreError::Upload)?;
            if chunk.is_empty() {
                continue;
            }
            size = size.saturating_add(chunk.len() as u64);
            if size > max_size {
                return Err(JarStoreError::TooLarge { limit: max_size });
            }
            hasher.update(&chunk);
            self.op(writer.write_bytes(chunk), || format!("writing {partial} at byte {size}")).await?;
        }
        Ok((size, hex::encode(hasher.finalize())))
    }

    fn partial_guard(&self, partial: &str) -> PartialGuard {
        PartialGuard {
            client: self.client.clone(),
            store: self.uri.clone(),
            path: partial.to_string(),
            op_timeout: self.op_timeout,
            armed: true,
        }
    }

    async fn remove_partial(&self, partial: &str) {
        remove_partial(&self.client, &self.uri, partial, self.op_timeout).await;
    }

    async fn sweep_stale_partials(&self) -> Result<(), JarStoreError> {
        let dir = self.partial_dir();
        let entries = match self.bounded(self.client.list_status(&dir, false)).await {
            Ok(entries) => entries,
            Err(Failure::Hdfs(e)) if is_not_found(&e) => return Ok(()),
            Err(f) => return Err(self.fail(format!("listing {dir}"), f).await),
        };
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
        let cutoff_ms = now_ms.saturating_sub(STALE_PARTIAL_AGE.as_millis());
        for entry in entries {
            if !entry.isdir && u128::from(entry.modification_time) < cutoff_ms {
                tracing::info!(store = %self.uri, "removing stale partial upload {}", entry.path);
                self.remove_partial(&entry.path).await;
            }
        }
        Ok(())
    }

    fn sweep_due(&self) -> bool {
        let mut last = self.last_sweep.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match *last {
            Some(at) if at.elapsed() < SWEEP_INTERVAL => false,
            _ => {
                *last = Some(Instant::now());
                true
            }
        }
    }
}

#[async_trait]
impl JarStore for HdfsJarStore {
    fn describe(&self) -> String {
        self.uri.clone()
    }

    fn is_highly_available(&self) -> bool {
        true
    }

    async fn put(&self, key: &str, mut body: ByteStream, max_size: u64) -> Result<StoredJar, JarStoreError> {
        name::validate(key)?;
        let partial = join(&self.partial_dir(), &format!("{key}.{:016x}", rand::random::<u64>()));
        let mut guard = self.partial_guard(&partial);
        let result = self.upload(key, &partial, &mut body, max_size).await;
        match &result {
            // HDFS is failing: removing the partial file now would make the client wait for
            // another timeout, so the guard leaves it to a task.
            Err(JarStoreError::Unavailable { .. }) => {}
            // HDFS is fine (the client's fault): remove it before answering.
            Err(_) => {
                self.remove_partial(&partial).await;
                guard.armed = false;
            }
            Ok(_) => guard.armed = false,
        }
        result
    }

    async fn get(&self, key: &str) -> Result<ByteStream, JarStoreError> {
        name::validate(key)?;
        let path = self.jar_path(key);
        let reader = match self.bounded(self.client.read(&path)).await {
            Ok(reader) => reader,
            Err(Failure::Hdfs(e)) if is_not_found(&e) => {
                return Err(JarStoreError::NotFound(key.to_string()))
            }
            Err(f) => return Err(self.fail(format!("opening {path}"), f).await),
        };
        Ok(read_stream(reader, self.uri.clone(), path, self.op_timeout))
    }

    async fn exists(&self, key: &str) -> Result<bool, JarStoreError> {
        name::validate(key)?;
        let path = self.jar_path(key);
        match self.bounded(self.client.get_file_info(&path)).await {
            Ok(status) => Ok(!status.isdir),
            Err(Failure::Hdfs(e)) if is_not_found(&e) => Ok(false),
            Err(f) => Err(self.fail(format!("looking up {path}"), f).await),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), JarStoreError> {
        name::validate(key)?;
        let path = self.jar_path(key);
        match self.bounded(self.client.delete(&path, false)).await {
            Ok(_) => Ok(()),
            Err(Failure::Hdfs(e)) if is_not_found(&e) => Ok(()),
            Err(f) => Err(self.fail(format!("deleting {path}"), f).await),
        }
    }

    async fn list(&self) -> Result<Vec<String>, JarStoreError> {
        // hdfs-native panics on a file name that is not UTF-8; in a task of its own such a
        // name is an error for this call instead of a panic in the caller.
        let client = self.client.clone();
        let root = self.root.clone();
        let listing = tokio::spawn(async move { client.list_status(&root, false).await });
        let listed = match tokio::time::timeout(self.op_timeout, listing).await {
            Ok(Ok(Ok(entries))) => Ok(entries),
            Ok(Ok(Err(e))) if is_not_found(&e) => return Ok(Vec::new()),
            Ok(Ok(Err(e))) => Err(Failure::Hdfs(e)),
            Ok(Err(join_error)) => {
                Err(Failure::Hdfs(HdfsError::InternalError(format!("the HDFS client failed: {join_error}"))))
            }
            Err(_) => Err(Failure::TimedOut(self.op_timeout)),
        };
        let entries = match listed {
            Ok(entries) => entries,
            Err(f) => return Err(self.fail(format!("listing {}", self.root), f).await),
        };
        let mut keys: Vec<String> = entries
            .into_iter()
            .filter(|entry| !entry.isdir)
            .filter_map(|entry| entry.path.rsplit('/').next().map(str::to_string))
            // Hadoop's own `hdfs dfs -put` uploads through NAME._COPYING_: partial as well.
            .filter(|key| !key.ends_with("._COPYING_") && name::validate(key).is_ok())
            .collect();
        keys.sort();
        Ok(keys)
    }

    async fn check(&self) -> Result<(), JarStoreError> {
        self.op(self.client.mkdirs(&self.root, 0o755, true), || format!("creating {}", self.root)).await?;
        // Writable is proven by writing: permissions, quotas, safe mode and a NameNode without
        // live DataNodes... all fail here the way an upload would.
        let probe = join(&self.partial_dir(), &format!(".probe-{:016x}", rand::random::<u64>()));
        let mut guard = self.partial_guard(&probe);
        let written = async {
            let mut writer = self
                .op(self.client.create(&probe, WriteOptions::default()), || format!("creating {probe}"))
                .await?;
            self.op(writer.write_bytes(Bytes::from_static(b"probe")), || format!("writing {probe}")).await?;
            self.op(writer.close(), || format!("closing {probe}")).await
        }
        .await;
        // As in `put`: with HDFS failing, the guard removes the probe in the background.
        written?;
        self.remove_partial(&probe).await;
        guard.armed = false;
        if self.sweep_due() {
            self.sweep_stale_partials().await?;
        }
        Ok(())
    }
}

/// Best effort: when it fails (HDFS down is the usual reason), the partial stays invisible to
/// `list` and the sweep in `check` removes it a day later.
async fn remove_partial(client: &Client, store: &str, partial: &str, op_timeout: Duration) {
    let failure = match tokio::time::timeout(op_timeout, client.delete(partial, false)).await {
        Ok(Ok(_)) => return,
        Ok(Err(e)) if is_not_found(&e) => return,
        Ok(Err(e)) => Failure::Hdfs(e),
        Err(_) => Failure::TimedOut(op_timeout),
    };
    tracing::warn!(
        store,
        "could not remove partial upload {partial}: {}; it will be swept later",
        describe_failure(&failure)
    );
}

/// A `put` future dropped before it finishes (the request cancelled, the master stopping) can
/// no longer clean up after itself; this hands the removal of its partial file to a task.
struct PartialGuard {
    client: Client,
    store: String,
    path: String,
    op_timeout: Duration,
    armed: bool,
}

impl Drop for PartialGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (client, store, path) = (self.client.clone(), self.store.clone(), self.path.clone());
        let op_timeout = self.op_timeout;
        runtime.spawn(async move { remove_partial(&client, &store, &path, op_timeout).await });
    }
}

/// One range of the file at a time, each chunk bounded by `op_timeout`; memory holds a few
/// packets, whatever the size of the jar.
fn read_stream(reader: FileReader, store: String, path: String, op_timeout: Duration) -> ByteStream {
    struct State {
        reader: FileReader,
        length: usize,
        /// Start of the next range to open.
        next_offset: usize,
        /// Bytes still expected from the open range.
        expected: usize,
        range: Option<BoxStream<'static, Result<Bytes, HdfsError>>>,
        failed: bool,
    }

    let length = reader.file_length();
    let state = State { reader, length, next_offset: 0, expected: 0, range: None, failed: false };
    let fail = move |state: &mut State, cause: String| {
        state.failed = true;
        let error =
            std::io::Error::other(format!("jar store {store} is unavailable: reading {path}: {cause}"));
        Some((Err(error), ()))
    };
    let stream = stream::unfold(state, move |mut state| {
        let fail = fail.clone();
        async move {
            loop {
                if state.failed {
                    return None;
                }
                if state.range.is_none() {
                    if state.next_offset >= state.length {
                        return None;
                    }
                    let len = READ_WINDOW.min(state.length - state.next_offset);
                    state.range = Some(state.reader.read_range_stream(state.next_offset, len).boxed());
                    state.next_offset += len;
                    state.expected = len;
                }
                let Some(range) = state.range.as_mut() else {
                    continue;
                };
                let next = tokio::time::timeout(op_timeout, range.next()).await;
                let item = match next {
                    Err(_) => fail(
                        &mut state,
                        format!(
                            "{} (DataNode down or unreachable?)",
                            describe_failure(&Failure::TimedOut(op_timeout))
                        ),
                    ),
                    Ok(Some(Err(e))) => fail(&mut state, describe_failure(&Failure::Hdfs(e))),
                    Ok(Some(Ok(bytes))) if bytes.len() > state.expected => {
                        fail(&mut state, "HDFS returned more bytes than the file holds".to_string())
                    }
                    Ok(Some(Ok(bytes))) => {
                        state.expected -= bytes.len();
                        Some((Ok(bytes), ()))
                    }
                    Ok(None) if state.expected > 0 => {
                        let missing = state.expected;
                        fail(&mut state, format!("the DataNode stream ended {missing} bytes early"))
                    }
                    Ok(None) => {
                        state.range = None;
                        continue;
                    }
                };
                return item.map(|(item, ())| (item, state));
            }
        }
    });
    Box::pin(stream)
}

fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

fn is_not_found(e: &HdfsError) -> bool {
    match e {
        HdfsError::FileNotFound(_) => true,
        HdfsError::RPCError(class, _) => class == "java.io.FileNotFoundException",
        _ => false,
    }
}

fn is_already_exists(e: &HdfsError) -> bool {
    match e {
        HdfsError::AlreadyExists(_) => true,
        HdfsError::RPCError(class, _) => class == "org.apache.hadoop.fs.FileAlreadyExistsException",
        _ => false,
    }
}

fn explain_build_error(authority: &str, e: &HdfsError) -> String {
    let host_only = !authority.contains(':');
    match e {
        HdfsError::InvalidArgument(msg) if host_only && msg.contains("No NameNode hosts") => {
            format!(
                "no NameNode addresses for nameservice {authority:?}: the Hadoop configuration \
             (HADOOP_CONF_DIR/hdfs-site.xml) must define dfs.ha.namenodes.{authority} and \
             dfs.namenode.rpc-address.{authority}.*; for a single NameNode write \
             hdfs://{authority}:8020/path"
            )
        }
        other => format!("cannot set up the HDFS client: {other}"),
    }
}

/// Error texts from HDFS can be long; a client needs the first few hundred characters.
fn clip(text: &str) -> String {
    const MAX_CHARS: usize = 300;
    match text.char_indices().nth(MAX_CHARS) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

fn describe_failure(failure: &Failure) -> String {
    match failure {
        Failure::TimedOut(after) => {
            format!("no answer from HDFS within {} s", after.as_secs_f32())
        }
        Failure::Hdfs(HdfsError::IOError(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            format!("connection refused ({e}): is HDFS running?")
        }
        Failure::Hdfs(HdfsError::RPCError(class, msg) | HdfsError::FatalRPCError(class, msg)) => {
            let short = class.rsplit('.').next().unwrap_or(class);
            // Java messages can carry a stack trace: its first line says what happened.
            let first = msg.lines().next().unwrap_or("");
            let first = clip(first);
            match short {
                "AccessControlException" => format!("permission denied: {first}"),
                "SafeModeException" => format!("the NameNode is in safe mode: {first}"),
                "DSQuotaExceededException" | "NSQuotaExceededException" => {
                    format!("HDFS quota exceeded: {first}")
                }
                _ => format!("{short}: {first}"),
            }
        }
        Failure::Hdfs(HdfsError::DataTransferError(msg)) => {
            // hdfs-native appends a debug dump of every DataNode it tried: keep the gist.
            let gist = msg.split(": [").next().unwrap_or(msg);
            format!("the DataNodes of the write or read pipeline failed: {}", clip(gist))
        }
        Failure::Hdfs(other) => clip(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::{clip, join, parse_uri};

    #[test]
    fn parses_namenode_and_nameservice_uris() {
        assert_eq!(
            parse_uri("hdfs://nn:9000/gearpump/jars/").unwrap(),
            ("nn:9000".into(), "/gearpump/jars".into())
        );
        assert_eq!(parse_uri("hdfs://prod//a///b").unwrap(), ("prod".into(), "/a/b".into()));
        assert_eq!(parse_uri("hdfs://127.0.0.1:8020").unwrap(), ("127.0.0.1:8020".into(), "/".into()));
    }

    #[test]
    fn rejects_malformed_uris() {
        for bad in [
            "file:///x",
            "hdfs:///x",
            "hdfs://u@nn:9000/x",
            "hdfs://nn:0/x",
            "hdfs://nn:http/x",
            "hdfs://:9000/x",
            "hdfs://nn/a/../b",
            "hdfs://nn/a?x",
        ] {
            assert!(parse_uri(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn clips_long_error_texts_on_a_char_boundary() {
        assert_eq!(clip("short"), "short");
        let long = "é".repeat(400);
        let clipped = clip(&long);
        assert_eq!(clipped.chars().count(), 301);
        assert!(clipped.ends_with('…'));
    }

    #[test]
    fn joins_under_the_file_system_root() {
        assert_eq!(join("/", "a.jar"), "/a.jar");
        assert_eq!(join("/jars", "a.jar"), "/jars/a.jar");
    }
}

//! The contract every `JarStore` backend keeps, as async checks over `&dyn JarStore`: the same
//! calls run against the local, file:// and hdfs:// stores. Each check uses its own keys, so
//! they can share one store; none needs the store to be empty.
//!
//! `streamed_upload_memory_stays_flat` measures the RSS of the whole process: run it from a test
//! that has the process to itself (one test in its binary, or `--test-threads=1`).

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};
use gearpump_master::jarstore::{ByteStream, JarStore, JarStoreError};
use sha2::{Digest, Sha256};

pub const MIB: u64 = 1 << 20;

/// Generous on purpose: a store that buffered a 256 MiB jar would grow by 256 MiB or more.
pub const RSS_GROWTH_LIMIT: u64 = 64 * MIB;

/// Runs every check below, the 256 MiB streamed upload included.
pub async fn run_all(store: &dyn JarStore) {
    check_passes(store).await;
    round_trip(store).await;
    existing_jar_is_never_overwritten(store).await;
    empty_jar(store).await;
    missing_jar_is_not_found(store).await;
    delete_is_idempotent(store).await;
    invalid_names_are_rejected(store).await;
    list_excludes_partial_uploads(store).await;
    too_large_leaves_nothing(store).await;
    client_error_leaves_nothing(store).await;
    cancelled_upload_leaves_nothing_visible(store).await;
    streamed_upload_memory_stays_flat(store, 256 * MIB).await;
}

pub async fn check_passes(store: &dyn JarStore) {
    if let Err(e) = store.check().await {
        panic!("check() of {} failed: {e}", store.describe());
    }
}

pub async fn round_trip(store: &dyn JarStore) {
    // Sizes around chunk boundaries, fed in odd chunk sizes.
    for (i, size) in [1usize, 1000, 65_536, MIB as usize + 17].into_iter().enumerate() {
        let key = format!("suite-round-trip-{i}.jar");
        let data = pattern(size, i as u64 + 1);
        let stored = put_bytes(store, &key, &data, 7_919, 10 * MIB)
            .await
            .unwrap_or_else(|e| panic!("put {key} ({size} bytes) into {}: {e}", store.describe()));
        assert_eq!(stored.key, key);
        assert_eq!(stored.size, size as u64, "size reported for {key}");
        assert_eq!(stored.sha256, sha256_hex(&data), "sha256 reported for {key}");
        assert!(exists(store, &key).await, "{key} must exist after put");
        let back = get_bytes(store, &key).await;
        assert_eq!(back.len(), data.len(), "length read back for {key}");
        assert!(back == data, "content read back for {key} differs");
        assert!(list(store).await.contains(&key), "list must show {key}");
    }
}

pub async fn empty_jar(store: &dyn JarStore) {
    let key = "suite-empty.jar";
    let stored = put_bytes(store, key, &[], 1, MIB).await.expect("put of an empty jar");
    assert_eq!(stored.size, 0);
    assert_eq!(stored.sha256, sha256_hex(&[]));
    assert!(get_bytes(store, key).await.is_empty());
}

pub async fn missing_jar_is_not_found(store: &dyn JarStore) {
    let key = "suite-never-stored.jar";
    assert!(!exists(store, key).await);
    match store.get(key).await {
        Err(JarStoreError::NotFound(k)) => assert_eq!(k, key),
        Err(e) => panic!("get of a missing jar must be NotFound, got {e}"),
        Ok(_) => panic!("get of a missing jar returned a stream"),
    }
}

pub async fn delete_is_idempotent(store: &dyn JarStore) {
    let key = "suite-delete.jar";
    put_bytes(store, key, b"to be deleted", 4, MIB).await.expect("put before delete");
    store.delete(key).await.expect("delete of an existing jar");
    assert!(!exists(store, key).await, "{key} must be gone after delete");
    assert!(!list(store).await.contains(&key.to_string()));
    assert!(matches!(store.get(key).await, Err(JarStoreError::NotFound(_))));
    store.delete(key).await.expect("deleting it again is not an error");
    store.delete("suite-never-there.jar").await.expect("deleting a key never stored is not an error");
}

pub async fn invalid_names_are_rejected(store: &dyn JarStore) {
    for bad in ["../escape.jar", "a/b.jar", ".hidden.jar", ""] {
        let body = bytes_stream(b"x".to_vec(), 1);
        assert!(
            matches!(store.put(bad, body, MIB).await, Err(JarStoreError::InvalidName { .. })),
            "put {bad:?}"
        );
        assert!(matches!(store.get(bad).await, Err(JarStoreError::InvalidName { .. })), "get {bad:?}");
        assert!(matches!(store.exists(bad).await, Err(JarStoreError::InvalidName { .. })), "exists {bad:?}");
        assert!(matches!(store.delete(bad).await, Err(JarStoreError::InvalidName { .. })), "delete {bad:?}");
    }
}

/// While an upload is in flight (its first megabytes already in the store) the jar is neither
/// listed nor reported as existing; once complete it is.
pub async fn list_excludes_partial_uploads(store: &dyn JarStore) {
    let key = "suite-in-flight.jar";
    let (mut tx, rx) = mpsc::channel::<io::Result<Bytes>>(0);
    let put = store.put(key, Box::pin(rx), 64 * MIB);
    let mut expected = Sha256::new();
    let driver = async {
        // The channel has no buffer beyond the sender's own slot: once the fourth send returns
        // the put has taken the first three chunks, so it has written at least two.
        for i in 0..4u64 {
            let chunk = Bytes::from(pattern(MIB as usize, 100 + i));
            expected.update(&chunk);
            tx.send(Ok(chunk)).await.expect("put stopped reading early");
        }
        assert!(!list(store).await.contains(&key.to_string()), "list shows an upload in progress");
        assert!(!exists(store, key).await, "exists() reports an upload in progress");
        drop(tx);
    };
    let (stored, ()) = futures::join!(put, driver);
    let stored = stored.expect("the upload completes once its stream ends");
    assert_eq!(stored.size, 4 * MIB);
    assert_eq!(stored.sha256, hex::encode(expected.finalize()));
    assert!(list(store).await.contains(&key.to_string()), "a completed upload is listed");
}

pub async fn too_large_leaves_nothing(store: &dyn JarStore) {
    let key = "suite-too-large.jar";
    let limit = MIB;
    match put_bytes(store, key, &pattern(3 * MIB as usize, 7), 64 * 1024, limit).await {
        Err(JarStoreError::TooLarge { limit: l }) => assert_eq!(l, limit),
        Err(e) => panic!("an upload over max_size must be TooLarge, got {e}"),
        Ok(_) => panic!("an upload over max_size was accepted"),
    }
    assert!(!exists(store, key).await, "nothing may be left under {key}");
    assert!(!list(store).await.contains(&key.to_string()));
    // Exactly at the limit is allowed.
    let at_limit = pattern(limit as usize, 8);
    let stored = put_bytes(store, "suite-at-limit.jar", &at_limit, 100_000, limit)
        .await
        .expect("a jar of exactly max_size");
    assert_eq!(stored.size, limit);
}

pub async fn client_error_leaves_nothing(store: &dyn JarStore) {
    let key = "suite-client-gone.jar";
    let chunks: Vec<io::Result<Bytes>> = vec![
        Ok(Bytes::from(pattern(MIB as usize, 9))),
        Ok(Bytes::from(pattern(MIB as usize, 10))),
        Err(io::Error::new(io::ErrorKind::ConnectionReset, "client went away")),
    ];
    match store.put(key, Box::pin(futures::stream::iter(chunks)), 64 * MIB).await {
        Err(JarStoreError::Upload(e)) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset),
        Err(e) => panic!("a failing client stream must give JarStoreError::Upload, got {e}"),
        Ok(_) => panic!("an upload whose stream failed was accepted"),
    }
    assert!(!exists(store, key).await, "nothing may be left under {key}");
    assert!(!list(store).await.contains(&key.to_string()));
}

/// The `put` future dropped mid-upload (the request cancelled, the master stopping): the jar
/// never appears. Removing the partial file may happen in the background, so a backend test
/// that looks for leftovers has to allow it a moment.
pub async fn cancelled_upload_leaves_nothing_visible(store: &dyn JarStore) {
    let key = "suite-cancelled.jar";
    let (mut tx, rx) = mpsc::channel::<io::Result<Bytes>>(0);
    {
        let put = store.put(key, Box::pin(rx), 64 * MIB);
        let driver = async {
            for i in 0..3u64 {
                let chunk = Bytes::from(pattern(MIB as usize, 200 + i));
                tx.send(Ok(chunk)).await.expect("put stopped reading early");
            }
        };
        tokio::select! {
            result = put => panic!("put finished although its stream is still open: {result:?}"),
            () = driver => {}
        }
    }
    drop(tx);
    assert!(!exists(store, key).await, "a cancelled upload is visible");
    assert!(!list(store).await.contains(&key.to_string()), "a cancelled upload is listed");
}

/// Uploads `size` bytes generated on the fly, then downloads them, checking size and SHA-256;
/// the process RSS may grow by at most `RSS_GROWTH_LIMIT` during either.
pub async fn streamed_upload_memory_stays_flat(store: &dyn JarStore, size: u64) {
    let key = "suite-streamed.jar";
    let (body, generated) = generated_stream(size, 42, None);
    let sampler = RssSampler::start();
    let started = Instant::now();
    let stored = store.put(key, body, size).await.expect("streamed upload");
    let upload_time = started.elapsed();
    let upload_growth = sampler.finish();
    assert_eq!(stored.size, size);
    assert_eq!(stored.sha256, generated.sha256_hex(), "sha256 of the streamed upload");

    let sampler = RssSampler::start();
    let started = Instant::now();
    let (read, sha) = drain(store.get(key).await.expect("get of the streamed jar")).await;
    let download_time = started.elapsed();
    let download_growth = sampler.finish();
    assert_eq!(read, size, "bytes read back");
    assert_eq!(sha, stored.sha256, "sha256 read back");
    eprintln!(
        "{}: {} MiB streamed: upload {:.1} MB/s, RSS +{} MiB; download {:.1} MB/s, RSS +{} MiB",
        store.describe(),
        size / MIB,
        mb_per_s(size, upload_time),
        upload_growth / MIB,
        mb_per_s(size, download_time),
        download_growth / MIB
    );
    assert!(upload_growth < RSS_GROWTH_LIMIT, "upload grew RSS by {} MiB", upload_growth / MIB);
    assert!(download_growth < RSS_GROWTH_LIMIT, "download grew RSS by {} MiB", download_growth / MIB);
    store.delete(key).await.expect("delete of the streamed jar");
}

// ---------------------------------------------------------------------------------------------
// Building blocks, also for backend-specific tests.

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

pub fn mb_per_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / 1e6 / elapsed.as_secs_f64().max(1e-9)
}

/// Deterministic, incompressible bytes (xorshift), different for each seed.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut generator = Xorshift::new(seed);
    let mut data = vec![0u8; len];
    generator.fill(&mut data);
    data
}

pub fn bytes_stream(data: Vec<u8>, chunk: usize) -> ByteStream {
    let data = Bytes::from(data);
    let chunks: Vec<io::Result<Bytes>> = (0..data.len())
        .step_by(chunk.max(1))
        .map(|at| Ok(data.slice(at..(at + chunk).min(data.len()))))
        .collect();
    Box::pin(futures::stream::iter(chunks))
}

pub async fn put_bytes(
    store: &dyn JarStore,
    key: &str,
    data: &[u8],
    chunk: usize,
    max_size: u64,
) -> Result<gearpump_master::jarstore::StoredJar, JarStoreError> {
    store.put(key, bytes_stream(data.to_vec(), chunk), max_size).await
}

pub async fn get_bytes(store: &dyn JarStore, key: &str) -> Vec<u8> {
    let mut stream = store.get(key).await.unwrap_or_else(|e| panic!("get {key}: {e}"));
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.unwrap_or_else(|e| panic!("reading {key}: {e}")));
    }
    out
}

pub async fn exists(store: &dyn JarStore, key: &str) -> bool {
    store.exists(key).await.unwrap_or_else(|e| panic!("exists {key}: {e}"))
}

pub async fn list(store: &dyn JarStore) -> Vec<String> {
    store.list().await.unwrap_or_else(|e| panic!("list of {}: {e}", store.describe()))
}

/// Reads a stream to its end without keeping it: (bytes, lower-case hex SHA-256).
pub async fn drain(mut stream: ByteStream) -> (u64, String) {
    let mut hasher = Sha256::new();
    let mut total = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap_or_else(|e| panic!("reading a stored jar: {e}"));
        total += chunk.len() as u64;
        hasher.update(&chunk);
    }
    (total, hex::encode(hasher.finalize()))
}

/// What a generated stream produced so far; the hash is final once the stream has ended.
#[derive(Clone, Default)]
pub struct Generated {
    inner: Arc<std::sync::Mutex<(u64, Option<String>)>>,
}

impl Generated {
    pub fn bytes(&self) -> u64 {
        self.inner.lock().map(|g| g.0).unwrap_or(0)
    }

    pub fn sha256_hex(&self) -> String {
        let done = self.inner.lock().ok().and_then(|g| g.1.clone());
        done.expect("the generated stream has not been read to its end")
    }
}

/// `size` pseudo-random bytes made chunk by chunk as the consumer pulls them (never held whole),
/// hashed as they go. `progress`, if given, counts the bytes handed out.
pub fn generated_stream(size: u64, seed: u64, progress: Option<Arc<AtomicU64>>) -> (ByteStream, Generated) {
    const CHUNK: u64 = 256 * 1024;
    let generated = Generated::default();
    let record = generated.clone();
    let state = (Xorshift::new(seed), Sha256::new(), 0u64);
    let stream = futures::stream::unfold(Some(state), move |state| {
        let record = record.clone();
        let progress = progress.clone();
        async move {
            let (mut generator, mut hasher, done) = state?;
            if done >= size {
                if let Ok(mut g) = record.inner.lock() {
                    *g = (done, Some(hex::encode(hasher.finalize())));
                }
                return None;
            }
            let len = CHUNK.min(size - done);
            let mut chunk = vec![0u8; len as usize];
            generator.fill(&mut chunk);
            hasher.update(&chunk);
            let done = done + len;
            if let Ok(mut g) = record.inner.lock() {
                g.0 = done;
            }
            if let Some(p) = &progress {
                p.store(done, Ordering::SeqCst);
            }
            Some((Ok(Bytes::from(chunk)), Some((generator, hasher, done))))
        }
    });
    (Box::pin(stream), generated)
}

struct Xorshift(u64);

impl Xorshift {
    fn new(seed: u64) -> Self {
        Xorshift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
    }
}

/// VmRSS of this process in bytes, from /proc/self/status.
pub fn vm_rss() -> u64 {
    proc_status_kib("VmRSS:") * 1024
}

/// VmHWM (peak RSS since start, or since `reset_peak_rss`) in bytes.
pub fn vm_hwm() -> u64 {
    proc_status_kib("VmHWM:") * 1024
}

/// Resets VmHWM to the current RSS (Linux `clear_refs` 5); false where not permitted.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn proc_status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("reading /proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// Peak RSS growth over a baseline: the kernel's own peak (VmHWM, reset at start) where it can
/// be reset, else samples every 10 ms.
pub struct RssSampler {
    baseline: u64,
    hwm_reset: bool,
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    pub fn start() -> RssSampler {
        let hwm_reset = reset_peak_rss();
        let baseline = vm_rss();
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(baseline));
        let thread = {
            let (stop, peak) = (stop.clone(), peak.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    peak.fetch_max(vm_rss(), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
        };
        RssSampler { baseline, hwm_reset, stop, peak, thread: Some(thread) }
    }

    /// Peak RSS (bytes) seen since `start`.
    pub fn peak(&self) -> u64 {
        let sampled = self.peak.load(Ordering::Relaxed).max(vm_rss());
        if self.hwm_reset {
            sampled.max(vm_hwm())
        } else {
            sampled
        }
    }

    /// Stops sampling; returns the peak growth over the baseline in bytes.
    pub fn finish(mut self) -> u64 {
        let peak = self.peak();
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        peak.saturating_sub(self.baseline)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A second upload under an existing key fails and leaves the first jar's bytes as they were:
/// an application registered with the first jar's SHA-256 must keep downloading it.
pub async fn existing_jar_is_never_overwritten(store: &dyn JarStore) {
    let key = "suite-no-overwrite.jar";
    let first = pattern(10_000, 41);
    put_bytes(store, key, &first, 4096, MIB).await.expect("first upload");
    let second = put_bytes(store, key, &pattern(10_000, 42), 4096, MIB).await;
    assert!(
        matches!(&second, Err(JarStoreError::AlreadyExists(k)) if k == key),
        "a second upload under {key} must be refused by {}: {second:?}",
        store.describe()
    );
    assert!(get_bytes(store, key).await == first, "{key} was overwritten in {}", store.describe());
    assert_eq!(list(store).await.iter().filter(|k| k.as_str() == key).count(), 1);
    store.delete(key).await.expect("delete");
}

//! Upload and download throughput of one large jar through `HdfsJarStore`, against hdfs-native
//! used directly on the same HDFS (the store's overhead: SHA-256, the partial file and its
//! rename, the per-call timeouts, ranged reads). Prints MB/s and peak RSS for each phase.
//!
//!   cargo run --release --example bench_hdfs -- [--size-mib 1024] [--rounds 3] [--chunk-kib 64]
//!                                               [--uri hdfs://127.0.0.1:PORT]
//!
//! Without --uri it starts a MiniDFSCluster on 127.0.0.1 with scripts/hdfs-minicluster.sh (one
//! DataNode, in the same 2 cores as this process: the numbers are for comparing the two paths,
//! not an HDFS cluster's throughput).

// Only the start/stop guard is needed here.
#[allow(dead_code, unreachable_pub)]
#[path = "../tests/common/minihdfs.rs"]
mod minihdfs;
#[allow(unreachable_pub)]
#[path = "../tests/common/ports.rs"]
mod ports;
// `minihdfs` picks its port with `super::free_ports`, as it does under tests/common.
use ports::free_ports;

use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use futures::StreamExt;
use gearpump_master::jarstore::hdfs::{HdfsJarStore, HdfsOptions};
use gearpump_master::jarstore::{ByteStream, JarStore};
use hdfs_native::{ClientBuilder, WriteOptions};

const MIB: u64 = 1 << 20;

#[derive(Parser)]
struct Args {
    /// Size of the jar in MiB.
    #[arg(long, default_value_t = 1024)]
    size_mib: u64,
    /// Each round runs every phase once, alternating the two paths.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Size of the chunks the upload stream yields (an HTTP body gives 8-64 KiB).
    #[arg(long, default_value_t = 64)]
    chunk_kib: usize,
    /// An HDFS to use instead of starting a MiniDFSCluster.
    #[arg(long)]
    uri: Option<String>,
}

/// A stream of `size` bytes cut from one 8 MiB random buffer: no generation cost, no memory
/// growth, and the same bytes for both paths.
fn body(pool: &Bytes, size: u64, chunk: usize) -> ByteStream {
    let pool = pool.clone();
    let chunks = (0..size).step_by(chunk).map(move |at| {
        let len = chunk.min((size - at) as usize);
        let start = (at as usize) % (pool.len() - len + 1);
        Ok(pool.slice(start..start + len))
    });
    Box::pin(futures::stream::iter(chunks))
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// One run of one phase: MB/s, peak RSS MiB, RSS growth MiB.
type Measure = (f64, u64, u64);

/// Runs one phase with VmHWM reset first.
async fn phase<F: std::future::Future<Output = u64>>(size: u64, run: F) -> Measure {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = status_kib("VmRSS:");
    let started = Instant::now();
    let bytes = run.await;
    let elapsed = started.elapsed();
    assert_eq!(bytes, size, "moved {bytes} bytes instead of {size}");
    let peak = status_kib("VmHWM:");
    (size as f64 / 1e6 / elapsed.as_secs_f64(), peak / 1024, peak.saturating_sub(before) / 1024)
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let size = args.size_mib * MIB;
    // Within the 8 MiB pool the chunks are cut from.
    let chunk = (args.chunk_kib * 1024).clamp(1, 4 << 20);

    let mut _hdfs = None;
    let uri = match args.uri {
        Some(uri) => uri,
        None => {
            let hdfs = minihdfs::MiniHdfs::start();
            let uri = hdfs.uri().to_string();
            _hdfs = Some(hdfs);
            uri
        }
    };
    let store = HdfsJarStore::with_options(
        &format!("{uri}/bench/store"),
        HdfsOptions { op_timeout: Duration::from_secs(60), ..HdfsOptions::default() },
    )
    .expect("HDFS store");
    store.check().await.expect("HDFS store check");
    let client = ClientBuilder::new().with_url(&uri).build().expect("hdfs-native client");
    let direct_path = "/bench/direct/bench.jar";

    let mut random = vec![0u8; 8 << 20];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for b in random.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        b.copy_from_slice(&x.to_le_bytes()[..b.len()]);
    }
    let pool = Bytes::from(random);

    println!(
        "{} MiB jar, {} KiB chunks, {} rounds, HDFS {uri}, baseline RSS {} MiB",
        args.size_mib,
        args.chunk_kib,
        args.rounds,
        status_kib("VmRSS:") / 1024
    );
    println!("{:<6} {:<28} {:>9} {:>14} {:>15}", "round", "path", "MB/s", "peak RSS MiB", "RSS growth MiB");
    let mut results: Vec<(&str, Vec<Measure>)> = vec![
        ("upload   hdfs-native direct", Vec::new()),
        ("upload   HdfsJarStore", Vec::new()),
        ("download hdfs-native direct", Vec::new()),
        ("download HdfsJarStore", Vec::new()),
    ];
    for round in 1..=args.rounds {
        let r = phase(size, async {
            let mut writer =
                client.create(direct_path, WriteOptions::default().overwrite(true)).await.expect("create");
            let mut stream = body(&pool, size, chunk);
            let mut n = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.expect("generated chunk");
                n += chunk.len() as u64;
                writer.write_bytes(chunk).await.expect("write");
            }
            writer.close().await.expect("close");
            n
        })
        .await;
        results[0].1.push(r);

        let r = phase(size, async {
            store.put("bench.jar", body(&pool, size, chunk), u64::MAX).await.expect("put").size
        })
        .await;
        results[1].1.push(r);

        let r = phase(size, async {
            let reader = client.read(direct_path).await.expect("open");
            let mut stream = reader.read_range_stream(0, reader.file_length()).boxed();
            let mut n = 0u64;
            while let Some(chunk) = stream.next().await {
                n += chunk.expect("read").len() as u64;
            }
            n
        })
        .await;
        results[2].1.push(r);

        let r = phase(size, async {
            let mut stream = store.get("bench.jar").await.expect("get");
            let mut n = 0u64;
            while let Some(chunk) = stream.next().await {
                n += chunk.expect("read").len() as u64;
            }
            n
        })
        .await;
        results[3].1.push(r);

        for (name, runs) in &results {
            let (mbs, peak, growth) = runs[runs.len() - 1];
            println!("{round:<6} {name:<28} {mbs:>9.1} {peak:>14} {growth:>15}");
        }
    }
    println!("median over {} rounds:", args.rounds);
    for (name, runs) in &results {
        let mut speeds: Vec<f64> = runs.iter().map(|r| r.0).collect();
        speeds.sort_by(|a, b| a.total_cmp(b));
        let peak = runs.iter().map(|r| r.1).max().unwrap_or(0);
        let growth = runs.iter().map(|r| r.2).max().unwrap_or(0);
        println!("       {name:<28} {:>9.1} {peak:>14} {growth:>15}", speeds[speeds.len() / 2]);
    }
    let _ = store.delete("bench.jar").await;
    let _ = client.delete(direct_path, false).await;
}

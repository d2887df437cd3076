//! A 1 GiB jar through one master: upload (`gear app`'s streaming path) and download, against
//! `cp` for a file:// store and against hdfs-native writing/reading the same file directly for
//! an hdfs:// store; with the master's peak RSS (memory must stay flat in the jar's size).
//! `cargo bench --bench jar_upload -- [--size-mib 1024] [--hdfs]`

mod support;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gearpump_master::client::MasterClient;
use support::*;
use tokio::io::AsyncReadExt;

const MIB: u64 = 1 << 20;

fn write_jar(path: &Path, size_mib: u64) {
    use std::io::Write;
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).expect("create jar"));
    let block: Vec<u8> = (0..MIB).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    for n in 0..size_mib {
        let mut chunk = block.clone();
        chunk[..8].copy_from_slice(&n.to_le_bytes());
        file.write_all(&chunk).expect("write jar");
    }
    file.flush().expect("flush jar");
}

/// Samples a process's RSS every 20 ms until stopped; returns the peak in KiB.
fn sample_peak(pid: u32, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let peak = AtomicU64::new(0);
        while !stop.load(Ordering::Relaxed) {
            let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("VmRSS:"))
                        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
                })
                .unwrap_or(0);
            peak.fetch_max(rss, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(20));
        }
        peak.load(Ordering::Relaxed)
    })
}

fn rate(size: u64, took: Duration) -> String {
    format!("{:7.0} MB/s", size as f64 / 1e6 / took.as_secs_f64())
}

async fn through_master(cluster: &TestCluster, jar: &Path, size: u64, label: &str) -> (Duration, Duration) {
    let pid = cluster.children[0].as_ref().expect("master").id();
    let client = MasterClient::new(vec![cluster.address(0)], Duration::from_secs(600)).expect("client");
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_peak(pid, stop.clone());
    let started = Instant::now();
    let answer = client.submit(jar, "bench.Main", &[], None, "bench").await.expect("upload");
    let upload = started.elapsed();
    let name = answer.jar;
    let out = jar.with_extension("downloaded");
    let started = Instant::now();
    client.download(&name, &out).await.expect("download");
    let download = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let peak = sampler.join().unwrap_or(0);
    let _ = std::fs::remove_file(&out);
    println!(
        "{label:34} upload {}  download {}  master peak RSS {} MiB",
        rate(size, upload),
        rate(size, download),
        peak / 1024
    );
    (upload, download)
}

fn copy_baseline(jar: &Path, size: u64) {
    let target = jar.with_extension("copy");
    let started = Instant::now();
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("cp '{}' '{}' && sync '{}'", jar.display(), target.display(), target.display()))
        .status()
        .expect("cp");
    assert!(status.success());
    println!("{:34} {}", "cp + sync (file:// baseline)", rate(size, started.elapsed()));
    let _ = std::fs::remove_file(target);
}

async fn hdfs_direct(uri: &str, jar: &Path, size: u64) {
    let client = hdfs_native::ClientBuilder::new().with_url(uri).build().expect("hdfs-native client");
    let path = "/bench-direct.jar";
    let mut file = tokio::fs::File::open(jar).await.expect("open jar");
    let started = Instant::now();
    let mut writer =
        client.create(path, hdfs_native::WriteOptions::default().overwrite(true)).await.expect("create");
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buffer).await.expect("read jar");
        if n == 0 {
            break;
        }
        writer.write_bytes(bytes::Bytes::copy_from_slice(&buffer[..n])).await.expect("write");
    }
    writer.close().await.expect("close");
    let upload = started.elapsed();
    let started = Instant::now();
    let reader = client.read(path).await.expect("open for read");
    let mut stream = reader.read_range_stream(0, reader.file_length());
    let mut seen = 0u64;
    while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
        seen += chunk.expect("read").len() as u64;
    }
    assert_eq!(seen, size);
    println!(
        "{:34} upload {}  download {}",
        "hdfs-native directly (baseline)",
        rate(size, upload),
        rate(size, started.elapsed())
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let size_mib: u64 = arg_value("--size-mib").and_then(|s| s.parse().ok()).unwrap_or(1024);
    let size = size_mib * MIB;
    println!("machine: {}; jar {size_mib} MiB", machine_line());
    let work = tempfile::tempdir().expect("dir");
    let jar = work.path().join("big.jar");
    write_jar(&jar, size_mib);

    let extra = format!("gearpump.jarstore.max-size = {} MiB", size_mib + 1);
    let cluster = TestCluster::start(Options { masters: 1, extra_conf: extra.clone(), ..Options::default() });
    cluster.wait_until_ready(Duration::from_secs(30)).await;
    copy_baseline(&jar, size);
    through_master(&cluster, &jar, size, "through a master, file:// store").await;
    drop(cluster);

    if has_flag("--hdfs") {
        let hdfs = support::common::minihdfs::MiniHdfs::start();
        hdfs_direct(hdfs.uri(), &jar, size).await;
        let conf = format!("{extra}\ngearpump.jarstore.rootpath = \"{}/gearpump/jars\"", hdfs.uri());
        let cluster = TestCluster::start(Options {
            masters: 1,
            extra_conf: conf,
            shared_jar_store: false,
            ..Options::default()
        });
        cluster.wait_until_ready(Duration::from_secs(30)).await;
        through_master(&cluster, &jar, size, "through a master, hdfs:// store").await;
    }
}

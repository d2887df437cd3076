//! Prometheus text metrics: what an operator graphs and alerts on.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::cluster::Cluster;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

#[derive(Default)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        for (bound, counter) in BUCKETS.iter().zip(&self.counts) {
            if seconds <= *bound {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        for (bound, counter) in BUCKETS.iter().zip(&self.counts) {
            let _ =
                writeln!(out, "{name}_bucket{{{labels}le=\"{bound}\"}} {}", counter.load(Ordering::Relaxed));
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let labels = labels.trim_end_matches(',');
        let braced = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let _ = writeln!(out, "{name}_sum{braced} {sum}");
        let _ = writeln!(out, "{name}_count{braced} {count}");
    }
}

#[derive(Default)]
pub struct Metrics {
    pub leader_changes: AtomicU64,
    pub rpc_append: Histogram,
    pub rpc_vote: Histogram,
    pub rpc_snapshot: Histogram,
    pub client_writes: Histogram,
    pub client_write_errors: AtomicU64,
}

impl Metrics {
    pub fn render(&self, cluster: &Cluster) -> String {
        let status = cluster.status();
        let mut out = String::new();
        let gauge = |out: &mut String, name: &str, help: &str, value: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
        };
        for role in crate::wire::Role::RAFT {
            if role == crate::wire::Role::Leader {
                let _ = writeln!(out, "# HELP gearpump_master_role 1 for this master's current Raft role\n# TYPE gearpump_master_role gauge");
            }
            let _ =
                writeln!(out, "gearpump_master_role{{role=\"{role}\"}} {}", u8::from(status.role == role));
        }
        gauge(&mut out, "gearpump_master_term", "current Raft term", status.term);
        gauge(
            &mut out,
            "gearpump_master_commit_index",
            "highest log index known committed",
            status.commit_index,
        );
        gauge(
            &mut out,
            "gearpump_master_applied_index",
            "highest log index applied to the state",
            status.applied_index,
        );
        gauge(&mut out, "gearpump_master_last_log_index", "highest log index stored", status.last_log_index);
        gauge(
            &mut out,
            "gearpump_master_snapshot_index",
            "log index of the last snapshot",
            status.snapshot_index,
        );
        gauge(
            &mut out,
            "gearpump_master_ready",
            "1 when in a quorum with a known leader",
            u64::from(cluster.is_ready()),
        );
        gauge(
            &mut out,
            "gearpump_master_applications",
            "applications in the registry",
            cluster.read(|s| s.apps.len() as u64),
        );
        let (state_index, state_hash) = cluster.applied_hash();
        let _ = writeln!(out, "# HELP gearpump_master_state_hash_index applied index, labelled with the SHA-256 of the applied state at that index (equal on every master at the same index)\n# TYPE gearpump_master_state_hash_index gauge");
        let _ = writeln!(out, "gearpump_master_state_hash_index{{sha256=\"{state_hash}\"}} {state_index}");
        let _ = writeln!(out, "# HELP gearpump_master_leader_changes_total leader changes seen by this master\n# TYPE gearpump_master_leader_changes_total counter");
        let _ = writeln!(
            out,
            "gearpump_master_leader_changes_total {}",
            self.leader_changes.load(Ordering::Relaxed)
        );
        let _ = writeln!(out, "# HELP gearpump_master_repeated_requests_total writes answered from the request-id window instead of being applied again (cluster-wide, replicated)\n# TYPE gearpump_master_repeated_requests_total counter");
        let _ = writeln!(
            out,
            "gearpump_master_repeated_requests_total {}",
            cluster.read(|s| s.requests.repeats_answered)
        );
        let _ = writeln!(out, "# HELP gearpump_master_client_write_errors_total client writes that failed\n# TYPE gearpump_master_client_write_errors_total counter");
        let _ = writeln!(
            out,
            "gearpump_master_client_write_errors_total {}",
            self.client_write_errors.load(Ordering::Relaxed)
        );
        let _ = writeln!(out, "# HELP gearpump_master_peer_rpc_seconds time to handle a Raft RPC from a peer\n# TYPE gearpump_master_peer_rpc_seconds histogram");
        self.rpc_append.render(&mut out, "gearpump_master_peer_rpc_seconds", "rpc=\"append\",");
        self.rpc_vote.render(&mut out, "gearpump_master_peer_rpc_seconds", "rpc=\"vote\",");
        self.rpc_snapshot.render(&mut out, "gearpump_master_peer_rpc_seconds", "rpc=\"snapshot\",");
        let _ = writeln!(out, "# HELP gearpump_master_client_write_seconds time from a client write to its commit\n# TYPE gearpump_master_client_write_seconds histogram");
        self.client_writes.render(&mut out, "gearpump_master_client_write_seconds", "");
        out
    }
}

#!/usr/bin/env bash
# The partition figures of docs/RELIABILITY.md: masters in network namespaces (root), clients
# writing through the client library while a follower or the leader is cut off, and a long
# pass of follower partitions (pre-vote: no leader change). Takes ~15 minutes.
#   scripts/partition-figures.sh [FAULTS] [FOLLOWER_RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
faults=${1:-40}
runs=${2:-100}
echo "== $(date -u +%F) on $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)"
PARTITION_FAULTS=$faults cargo test -q --test partitions availability_figures -- --ignored --nocapture
PARTITION_RUNS=$runs cargo test -q --test partitions a_partitioned_follower -- --nocapture

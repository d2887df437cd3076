#!/usr/bin/env bash
# The nemesis suite (tests/nemesis.rs): masters in network namespaces under random faults
# (kills, pauses, partitions, one-way drops, a full disk), clients recording every operation,
# Porcupine checking the history (tests/nemesis/checker, Go), figures in NEMESIS_OUT.
#
#   scripts/nemesis.sh --masters 3 --faults 1000 [--seed N] [--out DIR]
#
# Needs root, iproute2 and the Go toolchain (the checker fetches Porcupine through the Go
# module proxy on its first build). Writes history.json, faults.json and summary.json to the
# output directory (default target/nemesis), and not-linearizable.html if the check fails.
set -euo pipefail
cd "$(dirname "$0")/.."

masters=3 faults=60 seed="" out=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --masters) masters=$2; shift 2 ;;
    --faults) faults=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "usage: $0 [--masters N] [--faults N] [--seed N] [--out DIR]" >&2; exit 2 ;;
  esac
done
if [[ $(id -u) -ne 0 ]]; then
  echo "== NOT RUN: the nemesis suite needs root (network namespaces, a tmpfs mount)" >&2
  exit 0
fi
# The machine image keeps Go in /usr/local/go, on PATH only for login shells.
if ! command -v go >/dev/null && [[ -x /usr/local/go/bin/go ]]; then
  export PATH="/usr/local/go/bin:$PATH"
fi
if ! command -v go >/dev/null; then
  echo "the nemesis checker needs the Go toolchain (https://go.dev/dl, or apt-get install golang-go)" >&2
  exit 1
fi
export NEMESIS_MASTERS=$masters NEMESIS_FAULTS=$faults
[[ -n $seed ]] && export NEMESIS_SEED=$seed
[[ -n $out ]] && export NEMESIS_OUT=$out
exec cargo test --quiet --test nemesis -- --ignored --exact nemesis --nocapture

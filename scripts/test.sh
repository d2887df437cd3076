#!/usr/bin/env bash
# The test suite: formatting, lints, unit tests, multi-process cluster tests on loopback, and
# (as root, when their tools are there) the HDFS and systemd container tests.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --check
echo "== cargo clippy -- -D warnings"
cargo clippy --all-targets --quiet -- -D warnings
echo "== cargo test"
# Two test threads: each cluster test runs three to five masters, and the machine has 2 cores.
cargo test --lib --bins --tests -- --test-threads=2

#!/usr/bin/env bash
# Runs the cargo-fuzz targets under fuzz/ (src/fuzzing.rs says what each checks), each for the
# given minutes, then minimizes its corpus so fuzz/corpus/ stays small enough to keep in git.
#
#   scripts/fuzz.sh [--minutes N] [--jobs N] [TARGET...]     (default: 10 minutes, every target)
#
# Targets: gear_conf, rest_json, multipart, peer_rpc. Needs the nightly toolchain and
# cargo-fuzz (installed here when missing). Inputs that crash are written to
# fuzz/artifacts/TARGET/ and listed at the end; `cargo +nightly fuzz run TARGET FILE` replays one.
# A summary line per target (seconds, executions, corpus size, crashes) goes to
# target/fuzz-summary.txt; docs/RELIABILITY.md records the runs.
set -euo pipefail
cd "$(dirname "$0")/.."

minutes=10 jobs=1 targets=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --minutes) minutes=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    -*) echo "usage: $0 [--minutes N] [--jobs N] [TARGET...]" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
[[ $minutes =~ ^[0-9]+$ && $minutes -gt 0 ]] || { echo "--minutes wants a whole number above 0, got '$minutes'" >&2; exit 2; }
((${#targets[@]})) || targets=(gear_conf rest_json multipart peer_rpc)

if ! rustup toolchain list | grep -q '^nightly'; then
  echo "== installing the nightly toolchain (cargo-fuzz needs it for the sanitizer flags)"
  rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

summary=target/fuzz-summary.txt
mkdir -p target
crashed=0
for t in "${targets[@]}"; do
  [[ -f fuzz/fuzz_targets/$t.rs ]] || { echo "no fuzz target '$t' (see fuzz/fuzz_targets/)" >&2; exit 2; }
  corpus=fuzz/corpus/$t
  mkdir -p "$corpus" "fuzz/artifacts/$t"
  # libFuzzer's findings: crash-, leak-, timeout- and oom- files. A slow-unit- file is only an
  # input that took over 10 s (under ASAN on a loaded machine that is any large input); those
  # are counted apart, not as crashes.
  findings() { find "fuzz/artifacts/$t" -type f ! -name 'slow-unit-*' | wc -l; }
  slow() { find "fuzz/artifacts/$t" -type f -name 'slow-unit-*' | wc -l; }
  before=$(findings) slow_before=$(slow)
  log=target/fuzz-$t.log
  echo "== $t for $minutes min (log: $log)"
  # Built first, so the seconds reported are fuzzing, not compiling.
  (cd fuzz && cargo +nightly fuzz build -O "$t") >"$log" 2>&1
  started=$(date +%s)
  # The first corpus folder receives new inputs; the seeds are read only.
  set +e
  (cd fuzz && cargo +nightly fuzz run -O "$t" "corpus/$t" "seeds/$t" -- \
      -max_total_time=$((minutes * 60)) -timeout=30 -rss_limit_mb=4096 -jobs="$jobs" -workers="$jobs" \
      -print_final_stats=1) >>"$log" 2>&1
  status=$?
  set -e
  seconds=$(($(date +%s) - started))
  execs=$(grep -h 'stat::number_of_executed_units' "$log" fuzz/fuzz-*.log 2>/dev/null | awk '{s += $2} END {print s + 0}')
  (cd fuzz && cargo +nightly fuzz cmin -O "$t" "corpus/$t") >>"$log" 2>&1 || true
  new=$(($(findings) - before))
  line="$(date -u +%FT%TZ) $t seconds=$seconds executions=$execs corpus=$(find "$corpus" -type f | wc -l) new_crashes=$new slow_units=$(($(slow) - slow_before)) exit=$status"
  echo "$line" | tee -a "$summary"
  if ((new > 0 || status != 0)); then
    crashed=1
    echo "   crash inputs in fuzz/artifacts/$t/ — the end of $log says what failed:" >&2
    tail -n 30 "$log" >&2
  fi
done
rm -f fuzz/fuzz-*.log
exit $crashed

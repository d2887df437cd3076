#!/usr/bin/env bash
# The main job: build, start three masters on 127.0.0.1 (ports 3000-3002) with a jar store in a
# folder they all share and two workers, submit a small Java application (examples/java/Ticker:
# a timestamped line every 100 ms), SIGKILL the leader master (the application keeps running),
# then SIGKILL the application's worker (it is restarted on the other one), printing the gap in
# the application's output for both. Everything lives under target/demo and is stopped on exit
# (pass --keep to leave the survivors running). GEARPUMP_BIN=target/debug skips the build.
set -euo pipefail

cd "$(dirname "$0")/.."
keep=false
[[ "${1:-}" == "--keep" ]] && keep=true

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

command -v javac >/dev/null && command -v jar >/dev/null \
  || { echo "the demo application is Java: install a JDK (javac and jar), e.g. apt install default-jdk-headless" >&2; exit 1; }
if [[ -n "${GEARPUMP_BIN:-}" ]]; then
  bin=$(cd "$GEARPUMP_BIN" && pwd)
else
  say "Building (release)"
  cargo build --release --quiet --bin gearpump-master --bin gear --bin gearpump-worker
  bin=$PWD/target/release
fi
demo=$PWD/target/demo
ports=(3000 3001 3002)
for port in "${ports[@]}"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port on 127.0.0.1 is in use; stop whatever listens there (ss -ltnp | grep :$port) and retry" >&2
    exit 1
  fi
done
rm -rf "$demo" && mkdir -p "$demo/jars"
cat > "$demo/gear.conf" <<CONF
gearpump {
  hostname = "127.0.0.1"
  cluster.masters = ["127.0.0.1:3000", "127.0.0.1:3001", "127.0.0.1:3002"]
  # One folder shared by the three local masters, as an NFS mount would be across machines.
  jarstore.rootpath = "file://$demo/jars"
  worker.slots = 4
}
CONF

declare -A pids=()
cleanup() {
  if [[ $keep == false ]]; then
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
  fi
}
trap cleanup EXIT

say "Starting three masters (logs in $demo/master-PORT.log)"
for port in "${ports[@]}"; do
  "$bin/gearpump-master" --config "$demo/gear.conf" -ip 127.0.0.1 -port "$port" --state-dir "$demo/state-$port" \
    >"$demo/master-$port.log" 2>&1 &
  pids[$port]=$!
done
gear() { "$bin/gear" --master 127.0.0.1:3000,127.0.0.1:3001,127.0.0.1:3002 "$@"; }

wait_ready() {
  for _ in $(seq 1 100); do
    for port in "$@"; do
      if curl -sf "http://127.0.0.1:$port/health/ready" >/dev/null; then return 0; fi
    done
    sleep 0.1
  done
  echo "no master became ready; see $demo/master-*.log" >&2
  exit 1
}
wait_ready "${ports[@]}"
gear masters

say "Starting two workers (logs in $demo/worker-N.log)"
for n in 1 2; do
  "$bin/gearpump-worker" --config "$demo/gear.conf" --state-dir "$demo/worker-$n" >"$demo/worker-$n.log" 2>&1 &
  pids[worker-$n]=$!
done

say "Building the sample application (examples/java/Ticker.java) and submitting it"
mkdir -p "$demo/classes"
javac -d "$demo/classes" examples/java/Ticker.java
jar cf "$demo/ticker.jar" -C "$demo/classes" Ticker.class
ticks=$demo/ticks.txt
gear app -jar "$demo/ticker.jar" -namePrefix ticker- Ticker "$ticks"
jar_name=$(gear info --json | sed -n 's/.*"name":"\([^"]*\)".*/\1/p' | head -n 1)

# Application 1 while active: "worker attempt pid" of its running attempt (gear info's columns).
attempt() { gear info | awk '$1 == 1 && $3 == "active" { print $6, $7, $8 }'; }
wait_active() {  # wait_active ATTEMPT: until that attempt runs
  for _ in $(seq 1 300); do
    local now; now=$(attempt)
    if [[ -n "$now" && "$(echo "$now" | cut -d' ' -f2)" == "$1" ]]; then echo "$now"; return 0; fi
    sleep 0.1
  done
  echo "attempt $1 did not start; see $demo/*.log" >&2
  exit 1
}
# The largest gap between two consecutive lines of the output written after $1 (ms since the epoch).
gap_after() { awk -v from="$(( $1 - 1000 ))" '$1 >= from { if (prev) { d = $1 - prev; if (d > max) max = d } prev = $1 } END { print max + 0 }' "$ticks"; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

read -r worker_id _ pid < <(wait_active 1)
gear info
gear workers
echo "application 1 runs as pid $pid on worker $worker_id"
sleep 1

leader=$(curl -sf http://127.0.0.1:3000/health/ready | sed -n 's/.*"leader":"127.0.0.1:\([0-9]*\)".*/\1/p')
say "Killing the leader master 127.0.0.1:$leader with SIGKILL"
killed_at=$(now_ms)
kill -9 "${pids[$leader]}"
wait "${pids[$leader]}" 2>/dev/null || true
unset "pids[$leader]"
survivors=()
for port in "${ports[@]}"; do [[ -n "${pids[$port]:-}" ]] && survivors+=("$port"); done
wait_ready "${survivors[@]}"
until curl -sf -X PUT --data now "http://127.0.0.1:${survivors[0]}/api/v1.0/appmaster/1/data/probe" >/dev/null 2>&1; do
  sleep 0.02
done
echo "first write acknowledged by the new leader $(( $(now_ms) - killed_at )) ms after the kill"
sleep 1
read -r _ attempt_now pid_now < <(wait_active 1)
echo "application 1: still attempt $attempt_now, pid $pid_now (was $pid); largest gap in its output: $(gap_after "$killed_at") ms"

say "Killing worker $worker_id (the application's) with SIGKILL"
for n in 1 2; do
  if [[ "$(cat "$demo/worker-$n/worker-id" 2>/dev/null)" == "$worker_id" ]]; then victim=worker-$n; fi
done
killed_at=$(now_ms)
kill -9 "${pids[$victim]}"
wait "${pids[$victim]}" 2>/dev/null || true
unset "pids[$victim]"
read -r new_worker attempt_now pid_now < <(wait_active 2)
sleep 1
echo "application 1: attempt $attempt_now on worker $new_worker, pid $pid_now; gap in its output: $(gap_after "$killed_at") ms"
echo "  (the leader waits gearpump.master.worker-loss-timeout, 5 s by default, so the worker's own fence has surely stopped the old process)"

say "The cluster serves on"
gear masters
gear workers
gear info
gear download --file "$jar_name" -o "$demo/downloaded.jar"
cmp "$demo/ticker.jar" "$demo/downloaded.jar" && echo "the application's jar is byte-identical from a survivor"

if [[ $keep == true ]]; then
  say "Left running: masters on ports ${survivors[*]} and a worker (pids ${pids[*]}); stop them with: kill ${pids[*]}"
else
  say "Done; stopping the masters and the worker"
fi

#!/usr/bin/env bash
# The main job: build, start three masters on 127.0.0.1 (ports 3000-3002) with a jar store in a
# folder they all share, submit a sample application, SIGKILL the leader and show the cluster
# serving on. Everything lives under target/demo and is stopped on exit (pass --keep to leave
# the two survivors running).
set -euo pipefail

cd "$(dirname "$0")/.."
keep=false
[[ "${1:-}" == "--keep" ]] && keep=true

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

say "Building (release)"
cargo build --release --quiet --bin gearpump-master --bin gear
bin=$PWD/target/release
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

say "Submitting a sample application"
head -c 1048576 /dev/urandom > "$demo/wordcount.jar"
gear app -jar "$demo/wordcount.jar" -namePrefix wordcount- io.gearpump.streaming.examples.wordcount.WordCount -split 4
gear info
jar_name=$(gear info --json | sed -n 's/.*"name":"\([^"]*\)".*/\1/p' | head -n 1)

leader=$(curl -sf http://127.0.0.1:3000/health/ready | sed -n 's/.*"leader":"127.0.0.1:\([0-9]*\)".*/\1/p')
say "Killing the leader 127.0.0.1:$leader with SIGKILL"
killed_at=$(date +%s%N)
kill -9 "${pids[$leader]}"
wait "${pids[$leader]}" 2>/dev/null || true
unset "pids[$leader]"
survivors=("${!pids[@]}")
wait_ready "${survivors[@]}"
until gear app -jar "$demo/wordcount.jar" -namePrefix after-failover- io.gearpump.streaming.examples.wordcount.WordCount >/dev/null 2>&1; do
  sleep 0.02
done
echo "first write acknowledged by the new leader $(( ($(date +%s%N) - killed_at) / 1000000 )) ms after the kill"

say "The cluster serves on"
gear masters
gear info
gear download --file "$jar_name" -o "$demo/downloaded.jar"
cmp "$demo/wordcount.jar" "$demo/downloaded.jar" && echo "the first application's jar is byte-identical from a survivor"

if [[ $keep == true ]]; then
  say "Left running: masters on ports ${survivors[*]} (pids ${pids[*]}); stop them with: kill ${pids[*]}"
else
  say "Done; stopping the masters"
fi

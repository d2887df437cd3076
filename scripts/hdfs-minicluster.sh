#!/usr/bin/env bash
# A real HDFS (MiniDFSCluster: one NameNode, one DataNode) on 127.0.0.1 for the jar store tests.
#
#   hdfs-minicluster.sh start DIR PORT [--tie-to-stdin]
#       Builds the launcher in tests/hdfs-minicluster if needed (Maven downloads Hadoop from
#       Maven Central into ~/.m2), starts it in the background with its data in DIR/hdfs and its
#       log in DIR/minicluster.log, waits until HDFS accepts writes, writes the pid to DIR/pid and
#       prints the NameNode URI (hdfs://127.0.0.1:PORT). Starting again on the same DIR keeps the
#       data. With --tie-to-stdin HDFS also stops when this script's standard input closes, so a
#       test harness that dies without cleaning up takes HDFS down with it.
#   hdfs-minicluster.sh stop DIR
#       SIGTERM (then SIGKILL after a bound), waits for the process to be gone.
#
# Every failure (no java, no Maven, Maven unable to download Hadoop, HDFS not up in time) exits
# non-zero with a message saying what happened: a test that needs HDFS must never pass silently
# without it.
#
# Environment: HDFS_MINICLUSTER_START_TIMEOUT (seconds, default 180),
#              HDFS_MINICLUSTER_JAVA_OPTS (default -Xmx512m).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
project="$(cd "$here/../tests/hdfs-minicluster" && pwd)"
main_class=gearpumpmaster.minihdfs.MiniHdfs

die() {
    echo "hdfs-minicluster: $*" >&2
    exit 1
}

usage() {
    echo "usage: $0 start DIR PORT [--tie-to-stdin] | stop DIR" >&2
    exit 2
}

# The newest of the launcher's sources, compared with the build stamp, decides whether to build.
needs_build() {
    local stamp="$project/target/.built"
    [[ -f "$stamp" && -f "$project/target/classes/gearpumpmaster/minihdfs/MiniHdfs.class" ]] || return 0
    [[ -n "$(find "$project/pom.xml" "$project/src" -newer "$stamp" -print -quit)" ]]
}

build() {
    command -v java >/dev/null || die "java is not installed (Java 17 is needed to run HDFS for the tests)"
    command -v mvn >/dev/null || die "mvn is not installed (Maven builds the HDFS launcher)"
    mkdir -p "$project/target"
    # Two tests starting HDFS at once must not build into the same target/ concurrently.
    exec 9>"$project/target/.build.lock"
    flock 9
    if needs_build; then
        local log="$project/target/mvn.log"
        echo "hdfs-minicluster: building the launcher (mvn package; the first run downloads Hadoop, ~110 MB)" >&2
        if ! (cd "$project" && mvn -q -B package) >"$log" 2>&1; then
            tail -n 40 "$log" >&2
            die "Maven could not build tests/hdfs-minicluster (is Maven Central reachable? \
org.apache.hadoop:hadoop-client-minicluster must be downloadable); full log: $log"
        fi
        touch "$project/target/.built"
    fi
    flock -u 9
    exec 9>&-
}

# The first exceptions say why (a port in use, no network...); the tail says what came last.
explain_log() {
    echo "--- first errors in $1 ---" >&2
    grep -m 5 -E '(Exception|Error)(:|$)' "$1" >&2 || true
    echo "--- last lines of $1 ---" >&2
    tail -n 15 "$1" >&2
}

is_our_process() {
    local pid="$1"
    [[ -r "/proc/$pid/cmdline" ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "$main_class"
}

start() {
    local dir="$1" port="$2" tie="${3:-}"
    [[ "$port" =~ ^[0-9]+$ ]] || die "PORT must be a number, got '$port'"
    [[ -z "$tie" || "$tie" == "--tie-to-stdin" ]] || usage
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    if [[ -f "$dir/pid" ]] && is_our_process "$(cat "$dir/pid")"; then
        die "HDFS is already running for $dir (pid $(cat "$dir/pid"))"
    fi
    build

    local log="$dir/minicluster.log"
    local timeout="${HDFS_MINICLUSTER_START_TIMEOUT:-180}"
    # Word splitting of the options is intended: they are several JVM flags.
    # shellcheck disable=SC2206
    local java_opts=(${HDFS_MINICLUSTER_JAVA_OPTS:--Xmx512m})
    local cp="$project/target/classes:$project/target/lib/*"
    : >"$log"
    if [[ "$tie" == "--tie-to-stdin" ]]; then
        java "${java_opts[@]}" -Djava.net.preferIPv4Stack=true -cp "$cp" "$main_class" \
            "$dir/hdfs" "$port" <&0 >>"$log" 2>&1 &
    else
        java "${java_opts[@]}" -Djava.net.preferIPv4Stack=true -cp "$cp" "$main_class" \
            "$dir/hdfs" "$port" --no-stdin </dev/null >>"$log" 2>&1 &
    fi
    local pid=$!
    echo "$pid" >"$dir/pid"

    local deadline=$((SECONDS + timeout)) uri=""
    while ((SECONDS < deadline)); do
        uri="$(sed -n 's/^NAMENODE_URI=//p' "$log" | head -n 1)"
        [[ -n "$uri" ]] && break
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$dir/pid"
            explain_log "$log"
            die "HDFS exited before it was ready; log: $log"
        fi
        sleep 0.2
    done
    if [[ -z "$uri" ]]; then
        explain_log "$log"
        stop "$dir" >/dev/null 2>&1 || true
        die "HDFS was not ready within ${timeout}s; log: $log"
    fi
    echo "$uri"
}

stop() {
    local dir="$1"
    [[ -f "$dir/pid" ]] || { echo "hdfs-minicluster: not running ($dir/pid absent)" >&2; return 0; }
    local pid
    pid="$(cat "$dir/pid")"
    if ! is_our_process "$pid"; then
        rm -f "$dir/pid"
        echo "hdfs-minicluster: not running (pid $pid is gone)" >&2
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    local i
    for ((i = 0; i < 150; i++)); do
        is_our_process "$pid" || break
        sleep 0.2
    done
    if is_our_process "$pid"; then
        echo "hdfs-minicluster: pid $pid ignored SIGTERM for 30s, killing it" >&2
        kill -KILL "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            is_our_process "$pid" || break
            sleep 0.1
        done
    fi
    # A zombie has no cmdline: gone for our purposes even before its parent reaps it.
    is_our_process "$pid" && die "pid $pid is still running"
    rm -f "$dir/pid"
}

case "${1:-}" in
start)
    [[ $# -ge 3 && $# -le 4 ]] || usage
    start "$2" "$3" "${4:-}"
    ;;
stop)
    [[ $# -eq 2 ]] || usage
    stop "$2"
    ;;
*) usage ;;
esac

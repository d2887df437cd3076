#!/bin/bash
# Install by name from a signed repository, and a rolling upgrade, on the container testbed
# (systemd as PID 1, sshd), driven from the host as the admin machine. Run as root:
#
#   tests/testbed/repo_upgrade_test.sh [--packages DIR] [--keep]
#
# Two versions of the packages: the one Cargo.toml names (target/packages, built by
# scripts/build-packages.sh --deb-only unless --packages DIR gives them) and an upgrade,
# VERSION+upgradetest1, built into target/packages/upgrade-VERSION+upgradetest1 with that version
# baked into the binaries (GET /api/v1.0/master reports it: the visible change). Each is built
# once and reused while its .deb exists (REBUILD_UPGRADE=1 builds the upgrade again).
# scripts/build-repo.sh turns them into a signed APT repository, which the host serves over
# HTTP on the testbed bridge only (python3 -m http.server --bind 10.231.0.1); the nodes cannot
# reach any other mirror.
#
# The cluster is installed the way gearpump-setup does by default: TLS with a cluster CA, node
# certificates and tokens (the admin's copies under the test's own HOME); node1..node3 run the
# masters, node4 a worker (gearpump-worker, its own certificate).
#
# Checks: a copy of the repository with one byte of its signed Release changed is refused by apt
# on every node, gearpump-setup names each node and the cause, and removes the source and key it
# had written; the real one installs gearpump-master by name on three nodes and gearpump-worker
# on the fourth (deb822 source, Signed-By); --upgrade moves the cluster to the second version
# while a client (CA and submit token) writes continuously: no acknowledged write lost, at most
# one failed request per leader hand-over, followers before the leader, every master reporting
# the new version, then the worker upgraded, restarted and registered again. Prints PASS/FAIL
# per check and "N passed, N failed"; exits non-zero when anything failed. A trap removes
# everything it made (nodes, the HTTP server, the client).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=scripts/testbed/lib.sh
. "$root/scripts/testbed/lib.sh"
# shellcheck source=scripts/testbed/check.sh
. "$root/scripts/testbed/check.sh"

tb_test_args "$@"

export TESTBED_NODES=4
export TESTBED_LOCK_WAIT=${TESTBED_LOCK_WAIT:-1200}
PORT=3000
HTTP_PORT=8080
HOST_IP=$TESTBED_NET.1
work=$(mktemp -d /var/tmp/gearpump-repo-test.XXXXXX)
bg_pids=()

tb_require_root
tb_test_traps
# the HTTP server and the client go first, then what every testbed test removes
on_exit() {
    local rc=$? p
    for p in "${bg_pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${bg_pids[@]}"; do wait "$p" 2>/dev/null || true; done
    (exit "$rc")
    tb_test_on_exit
}
trap on_exit EXIT

# ---------------------------------------------------------------- packages, repository, tools

ver=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/Cargo.toml" | head -n 1)
up_ver="${ver}+upgradetest1"
arch=$(dpkg --print-architecture)
updir=$root/target/packages/upgrade-$up_ver
deb=$pkgdir/gearpump-master_${ver}-1_${arch}.deb
updeb=$updir/gearpump-master_${up_ver}-1_${arch}.deb
if ((build)) && [[ ! -f $deb ]]; then
    tb_log "building packages $ver into $pkgdir"
    "$root/scripts/build-packages.sh" --deb-only --out "$pkgdir" >&2
fi
if [[ ! -f $updeb || ${REBUILD_UPGRADE:-0} == 1 ]]; then
    tb_log "building the upgrade packages $up_ver into $updir (the binaries report $up_ver)"
    "$root/scripts/build-packages.sh" --deb-only --version "$up_ver" --out "$updir" >&2
fi
SETUP=${SETUP_BIN:-$root/target/release/gearpump-setup}
GEAR=${GEAR_BIN:-$root/target/release/gear}
check "packages $(basename "$deb") and $(basename "$updeb"), gearpump-setup and gear" \
    test -f "$deb" -a -f "$updeb" -a -x "$SETUP" -a -x "$GEAR"

www=$work/www
mkdir -p "$www"
# the first repository has the first version only; the upgrade adds the second
"$root/scripts/build-repo.sh" --packages "$pkgdir" --out "$www/good" >/dev/null
check "build-repo.sh: InRelease verifies with the exported key" \
    gpgv --keyring "$www/good/gearpump-archive-keyring.gpg" "$www/good/dists/stable/InRelease"
check "build-repo.sh: Packages lists gearpump-master $ver-1" \
    grep -qx "Version: $ver-1" "$www/good/dists/stable/main/binary-$arch/Packages"
check "build-repo.sh: a second run gives the same packages index" bash -c \
    "before=\$(sha256sum <'$www/good/dists/stable/main/binary-$arch/Packages'); \
     '$root/scripts/build-repo.sh' --packages '$pkgdir' --out '$www/good' >/dev/null && \
     test \"\$before\" = \"\$(sha256sum <'$www/good/dists/stable/main/binary-$arch/Packages')\""
empty=$work/empty
mkdir -p "$empty"
out=$("$root/scripts/build-repo.sh" --packages "$empty" --out "$work/none" 2>&1) && rc=0 || rc=$?
check "build-repo.sh without packages fails and says to run build-packages.sh" \
    test "$rc" != 0 -a -n "$(grep -F 'run scripts/build-packages.sh' <<<"$out")"
# the tampered copy: one byte of the signed text changed, signatures left as they were
cp -a "$www/good" "$www/bad"
sed -i 's/^Label: Gearpump$/Label: Gearpumq/' "$www/bad/dists/stable/InRelease" "$www/bad/dists/stable/Release"
check "tampered copy differs in one byte" \
    test "$(cmp -l "$www/good/dists/stable/InRelease" "$www/bad/dists/stable/InRelease" | wc -l)" = 1
KEY=$www/good/gearpump-archive-keyring.gpg
cp "$KEY" "$work/archive-key.gpg" # the admin's copy, kept while the repository is rebuilt
KEY=$work/archive-key.gpg

testbed_lock
testbed_cleanup
testbed_setup

# served on the bridge address only: the nodes reach it, nothing else does
python3 -m http.server --bind "$HOST_IP" --directory "$www" "$HTTP_PORT" >"$work/http.log" 2>&1 &
bg_pids+=($!)
URL=http://$HOST_IP:$HTTP_PORT
check "the repository is served on $HOST_IP:$HTTP_PORT" \
    wait_for 20 curl -sf -o /dev/null "$URL/good/dists/stable/InRelease"

for n in node1 node2 node3 node4; do testbed_boot "$n"; done
for n in node1 node2 node3 node4; do
    if on "$n" 'dpkg -s gearpump-master >/dev/null 2>&1 || test -e /etc/gearpump'; then
        fail "$n is not a plain node (gearpump-master or /etc/gearpump present): another run's leftovers?"
        summary || true
        exit 1
    fi
done

SSHCONF=$TESTBED_RUN/ssh/config
# The admin's CA, tokens and client.conf go where gear looks for them, under a HOME of our own.
ADMIN_HOME=$work/home
PKI=$ADMIN_HOME/.config/gearpump
setup() { "$SETUP" --ssh-config "$SSHCONF" --connect-timeout 5 --timeout 120 --pki-dir "$PKI" "$@"; }
masters=node1:$PORT,node2:$PORT,node3:$PORT
# curl with the cluster CA and a token from a file (never on a command line): the admin's, or
# with TOKEN=submit the one given to those who submit
api() { curl -sf --max-time "${API_TIMEOUT:-5}" --cacert "$PKI/ca.pem" -H "@$work/${TOKEN:-admin}.header" "$@"; }

# ---------------------------------------------------------------- a tampered repository

out=$(setup --masters node1,node2,node3 --workers node4 --repo "$URL/bad" --repo-key "$KEY" 2>&1) && rc=0 || rc=$?
printf '%s\n' "$out" >"$work/bad.txt"
check "tampered repository: gearpump-setup fails" test "$rc" != 0
for n in node1 node2 node3 node4; do
    check "tampered repository: $n reported with apt's refusal (BADSIG), what was removed again, and a fix" \
        grep -E "^$n +package +.*apt refused the repository $URL/bad: its signature does not verify.*BADSIG.*fix: .*; removed /usr/share/keyrings/gearpump-archive-keyring.gpg and /etc/apt/sources.list.d/gearpump.sources again \(written by this run\), so the node's package sources are as before; running the same command again once the repository is fixed is safe$" "$work/bad.txt"
    check "tampered repository: nothing installed on $n, no gearpump source or key left" on "$n" \
        '! dpkg -s gearpump-master >/dev/null 2>&1 && ! dpkg -s gearpump-worker >/dev/null 2>&1 &&
         ! test -e /etc/apt/sources.list.d/gearpump.sources && ! test -e /usr/share/keyrings/gearpump-archive-keyring.gpg'
done
check "tampered repository: the report does not claim that nothing changed, and says a re-run is safe" bash -c \
    "! grep -q 'Nothing else was changed\|Nothing was changed' '$work/bad.txt' &&
     grep -q '^What ran on a node before its failure is listed above' '$work/bad.txt' &&
     grep -q '^node1: \[package\] wrote /etc/apt/sources.list.d/gearpump.sources' '$work/bad.txt'"
[[ $rc != 0 ]] || sed 's/^/    | /' "$work/bad.txt" | tail -n 20

# ---------------------------------------------------------------- install by name

out=$(setup --masters node1,node2,node3 --workers node4 --repo "$URL/good" --repo-key "$KEY" 2>&1) && rc=0 || rc=$?
printf '%s\n' "$out" >"$work/install.txt"
check "install from the repository (TLS, tokens, a worker): exit 0" test "$rc" = 0
[[ $rc == 0 ]] || sed 's/^/    | /' "$work/install.txt" | tail -n 30
printf 'Authorization: Bearer %s\n' "$(cat "$PKI/admin.token" 2>/dev/null)" >"$work/admin.header"
printf 'Authorization: Bearer %s\n' "$(cat "$PKI/submit.token" 2>/dev/null)" >"$work/submit.header"
check "plain HTTP is not served" bash -c "! curl -sf --max-time 3 -o /dev/null http://node1:$PORT/health/live"
check "node4: gearpump-worker $ver-1 installed by name" on node4 "dpkg-query -W -f='\${Version}' gearpump-worker | grep -qx '$ver-1'"
check "node4: the worker registered and alive" grep -qE '^worker node4: registered as worker [0-9]+, alive' "$work/install.txt"
for n in node1 node2 node3; do
    check "$n: gearpump-master $ver-1 installed by name from $URL/good" on "$n" \
        "dpkg-query -W -f='\${Version}' gearpump-master | grep -qx '$ver-1' && apt-cache policy gearpump-master | grep -qF '$URL/good stable/main'"
    check "$n: deb822 source with Signed-By, the key in /usr/share/keyrings" on "$n" \
        "grep -qx 'Signed-By: /usr/share/keyrings/gearpump-archive-keyring.gpg' /etc/apt/sources.list.d/gearpump.sources && \
         grep -qx 'URIs: $URL/good' /etc/apt/sources.list.d/gearpump.sources && \
         sha256sum </usr/share/keyrings/gearpump-archive-keyring.gpg | grep -q $(sha256sum <"$KEY" | cut -c1-64)"
done
setup --masters node1,node2,node3 --workers node4 --repo "$URL/good" --repo-key "$KEY" >"$work/rerun.txt" 2>&1 && rc=0 || rc=$?
check "a second run changes nothing" bash -c "test $rc = 0 && grep -q '^Nothing changed' '$work/rerun.txt'"

# gear health asks each master itself: all ready, one leader in one term, all on VERSION
health() { HOME=$ADMIN_HOME "$GEAR" --timeout 10 -m "$masters" health --wait 10 --version "$1"; }
check "node1..3 report version $ver, one leader" health "$ver"

# ---------------------------------------------------------------- rolling upgrade under writes

"$root/scripts/build-repo.sh" --packages "$pkgdir" --packages "$updir" --out "$www/good" >/dev/null
check "the repository now offers $up_ver-1" \
    grep -qx "Version: $up_ver-1" "$www/good/dists/stable/main/binary-$arch/Packages"

# An application for the writes to belong to (app data needs a live application): the Ticker
# example, running on node4's worker through the upgrade; the worker's restart stops its attempt
# cleanly and the masters start another once the worker is back.
mkdir -p "$work/classes"
javac --release 17 -d "$work/classes" "$root/examples/java/Ticker.java"
jar --create --file "$work/app.jar" -C "$work/classes" .
TICKS=/var/lib/gearpump-worker/ticks.txt
# gear reads the CA and the admin token from the client.conf gearpump-setup wrote
out=$(HOME=$ADMIN_HOME "$GEAR" --timeout 10 -m "$masters" app -jar "$work/app.jar" Ticker "$TICKS" 2>&1) && rc=0 || rc=$?
app=$(sed -n 's/^Submitted application \([0-9]*\) .*/\1/p' <<<"$out")
app_running() { # running attempt number $1 (or later with $2 = later)
    api "https://node1:$PORT/api/v1.0/appmaster/$app" |
        jq -e --argjson n "$1" '.status == "active" and (.attempts | length) '"${2:-==}"' $n and .attempts[-1].startedMs != null and .attempts[-1].endedMs == null'
}
check "an application to write data to ($out)" test "$rc" = 0 -a -n "$app"
check "application $app runs on node4 (attempt 1)" wait_for 60 app_running 1
check "node4: its JVM writes ticks" wait_for 10 on node4 "test -s $TICKS"

# The client: key N gets value vN under one Idempotency-Key, sent to the master it last used
# (the next on a refused connection, which no master saw). A request that reached a master and
# got no 2xx (an error, a timeout, a reset) counts as failed; the write is then sent again under
# the same key until acknowledged, so every write ends acknowledged or the test says so.
client() {
    local i=0 m=0 hosts=(node1 node2 node3) code rc tries
    while [[ ! -f $work/upgrade.done ]]; do
        i=$((i + 1)) tries=0
        while :; do
            tries=$((tries + 1))
            code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -X PUT --cacert "$PKI/ca.pem" \
                -H "@$work/submit.header" -H "Idempotency-Key: upgrade-test-$i" --data "v$i" \
                "https://${hosts[m]}:$PORT/api/v1.0/appmaster/$app/data/k$i") && rc=0 || rc=$?
            if [[ $rc == 0 && $code == 2* ]]; then
                echo "ack $i" >>"$work/writes.log"
                break
            fi
            if [[ $rc == 7 ]]; then # connection refused: never delivered
                m=$(((m + 1) % 3))
            else
                echo "failed $i ${hosts[m]} curl=$rc http=$code" >>"$work/writes.log"
                m=$(((m + 1) % 3))
            fi
            ((tries < 200)) || { echo "gave-up $i" >>"$work/writes.log"; break; }
            sleep 0.1
        done
    done
}
# Leader changes as the masters see them (polled every 0.2 s), as leader@term: a master that
# wins leadership back in a new term (stopped as leader, re-elected after its restart) is a
# change too, one that names no other master.
watch_leader() {
    local last='' l n
    while [[ ! -f $work/upgrade.done ]]; do
        for n in node1 node2 node3; do
            l=$(API_TIMEOUT=1 api "https://$n:$PORT/health/ready" | jq -r 'select(.leader != null) | "\(.leader)@\(.term)"' 2>/dev/null) && [[ -n $l ]] && break
        done
        printf '%s %s %s\n' "$(date +%T.%N | cut -c1-12)" "$n" "${l:-none}" >>"$work/polls.log"
        if [[ -n $l && $l != "$last" ]]; then
            echo "$l" >>"$work/leaders.log"
            last=$l
        fi
        sleep 0.2
    done
}
: >"$work/writes.log"
: >"$work/leaders.log"
client &
bg_pids+=($!)
watch_leader &
bg_pids+=($!)
check "the client writes before the upgrade" wait_for 20 grep -q '^ack 5$' "$work/writes.log"
leader_before=$(head -n 1 "$work/leaders.log")
t0=$(date +%s)
out=$(setup --masters node1,node2,node3 --workers node4 --upgrade --repo "$URL/good" --repo-key "$KEY" 2>&1) && rc=0 || rc=$?
t1=$(date +%s)
sleep 2 # writes after the last master is back
touch "$work/upgrade.done"
wait "${bg_pids[1]}" "${bg_pids[2]}" 2>/dev/null || true
printf '%s\n' "$out" >"$work/upgrade.txt"
check "--upgrade: exit 0" test "$rc" = 0
[[ $rc == 0 ]] || sed 's/^/    | /' "$work/upgrade.txt" | tail -n 30
acked=$(grep -c '^ack ' "$work/writes.log" || true)
failed=$(grep -c '^failed ' "$work/writes.log" || true)
handovers=$(($(wc -l <"$work/leaders.log") - 1))
tb_log "--upgrade took $((t1 - t0)) s; writes acknowledged: $acked, failed requests: $failed, leader changes: $handovers ($(tr '\n' ' ' <"$work/leaders.log"))"
grep '^failed' "$work/writes.log" | head -n 5 | sed 's/^/    | /' >&2 || true
check "the client was never given up on" bash -c "! grep -q '^gave-up' '$work/writes.log'"
check "at most one failed request per leader hand-over ($failed failed, $handovers hand-overs)" \
    test "$handovers" -ge 1 -a "$failed" -le "$handovers"
if ((handovers < 1)) && [[ $(tail -n 1 "$work/leaders.log") == "$leader_before" ]]; then
    # openraft restores a leader whose own committed vote it finds at start: the same leader in
    # the same term after its restart means its SIGTERM hand-over did not move leadership
    tb_log "the leader ${leader_before%@*} was restarted and resumed leadership in the same term: no hand-over happened"
fi
if ((handovers < 1 || failed > handovers)); then # what the watcher saw, and when
    uniq -f 1 "$work/polls.log" | sed 's/^/    | poll /' >&2
    grep -E '^node[0-9]: ' "$work/upgrade.txt" | sed 's/^/    | setup /' >&2
fi
# every acknowledged write reads back (a linearizable read), with its value
lost=0
while read -r _ i; do
    v=$(TOKEN=submit api "https://node1:$PORT/api/v1.0/appmaster/$app/data/k$i" || true)
    [[ $v == *"v$i"* ]] || { lost=$((lost + 1)); tb_log "write k$i acknowledged, reads back: ${v:-nothing}"; }
done < <(grep '^ack ' "$work/writes.log")
check "no acknowledged write lost ($acked acknowledged)" test "$lost" = 0 -a "$acked" -gt 5

leader_host=${leader_before%%:*}
order=$(grep -oE '^node[0-9]: upgrading \(' "$work/upgrade.txt" | cut -d: -f1 | tr '\n' ' ')
check "followers first, the leader ($leader_host) last: $order" test "${order% }" != "" -a "$(awk '{ print $NF }' <<<"$order")" = "$leader_host"
check "--upgrade printed each master's version before and after" bash -c \
    "grep -A4 '^before:' '$work/upgrade.txt' | grep -c ' $ver\$' | grep -qx 3 && \
     grep -A4 '^after:' '$work/upgrade.txt' | grep -c ' $up_ver\$' | grep -qx 3"
check "node1..3 report $up_ver, one leader (gear health --version)" health "$up_ver"
for n in node1 node2 node3; do
    check "$n reports $up_ver for the others it lists too" bash -c \
        "test \"\$(curl -sf --max-time 2 --cacert '$PKI/ca.pem' -H '@$work/admin.header' https://$n:$PORT/api/v1.0/master | jq -r '[.masterDescription.cluster[].version] | unique | join(\",\")')\" = '$up_ver'"
    check "$n: $up_ver-1 installed" on "$n" "dpkg-query -W -f='\${Version}' gearpump-master | grep -qx '$up_ver-1'"
done

# the worker: after the masters, on the new version, restarted, registered again
last_master=$(grep -nE '^node[0-9]: back on ' "$work/upgrade.txt" | tail -n 1 | cut -d: -f1)
worker_at=$(grep -n '^node4: upgrading gearpump-worker' "$work/upgrade.txt" | head -n 1 | cut -d: -f1)
check "the worker goes after every master (line ${worker_at:-none} > ${last_master:-none})" \
    test "${worker_at:-0}" -gt "${last_master:-999999}"
check "node4: $up_ver-1 installed" on node4 "dpkg-query -W -f='\${Version}' gearpump-worker | grep -qx '$up_ver-1'"
check "node4: the worker runs the new binary (journal: gearpump-worker $up_ver started)" on node4 \
    "journalctl -q -u gearpump-worker -o cat | grep -qF 'gearpump-worker $up_ver started'"
up_re=${up_ver//+/\\+} # for grep -E: the version's '+' is literal
check "--upgrade reports node4 restarted and registered again" \
    grep -qE "^node4: gearpump-worker $up_re-1 \(was $ver-1\), restarted and registered again as worker [0-9]+, alive$" "$work/upgrade.txt"
worker_alive() {
    api "https://node1:$PORT/api/v1.0/master/workerlist" | jq -e '[.workers[] | select(.host == "node4" and .state == "alive")] | length == 1'
}
check "the leader lists node4 alive" worker_alive
check "application $app runs on node4 again after the worker's upgrade (a later attempt)" wait_for 60 app_running 2 '>='
check "node4: a new JVM writes ticks" wait_for 10 on node4 "pgrep -u gearpump -f '[T]icker $TICKS' >/dev/null"
check "node4: STATUS names its worker id and a master" bash -c \
    "ssh -F '$SSHCONF' node4 systemctl show -p StatusText --value gearpump-worker.service | grep -qE '^worker [0-9]+ via master node[1-3]:$PORT'"

setup --masters node1,node2,node3 --workers node4 --upgrade --repo "$URL/good" --repo-key "$KEY" >"$work/again.txt" 2>&1 && rc=0 || rc=$?
check "a second --upgrade changes no version, and leaves the worker alone" bash -c \
    "test $rc = 0 && grep -A4 '^after:' '$work/again.txt' | grep -c ' $up_ver\$' | grep -qx 3 &&
     grep -qE '^node4: gearpump-worker $up_re-1 \(unchanged\), worker [0-9]+, alive$' '$work/again.txt'"
[[ $rc == 0 ]] || sed 's/^/    | /' "$work/again.txt" | tail -n 20
unset masters

summary

#!/bin/bash
# gearpump-worker on the container testbed: its own package (with a Java runtime from the node
# image), gearpump-setup --workers with TLS (a worker certificate per worker node, no
# --insecure), READY once registered, --rotate-certs restarting the workers one at a time, an
# application submitted with `gear app` running on a worker node, `systemd-analyze security`
# of both units at most 1.1, and `systemctl stop gearpump-worker` leaving no process of any
# attempt. Run as root:
#
#   tests/testbed/worker_test.sh [--packages DIR] [--keep]
#
# Without --packages it runs scripts/build-packages.sh --deb-only first. Prints PASS/FAIL per
# check and ends with "N passed, N failed"; a trap removes everything it made, also on failure.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=scripts/testbed/lib.sh
. "$root/scripts/testbed/lib.sh"
# shellcheck source=scripts/testbed/check.sh
. "$root/scripts/testbed/check.sh"

tb_test_args "$@"

export TESTBED_NODES=3
export TESTBED_LOCK_WAIT=${TESTBED_LOCK_WAIT:-1200}
PORT=3000
WUNIT=gearpump-worker.service
work=$(mktemp -d /var/tmp/gearpump-worker-test.XXXXXX)

tb_require_root
tb_test_traps


# ---------------------------------------------------------------- packages

ver=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/Cargo.toml" | head -n 1)
arch=$(dpkg --print-architecture)
deb=$pkgdir/gearpump-master_${ver}-1_${arch}.deb
wdeb=$pkgdir/gearpump-worker_${ver}-1_${arch}.deb
if ((build)); then
    tb_log "building packages into $pkgdir"
    "$root/scripts/build-packages.sh" --deb-only --out "$pkgdir" >&2
fi
SETUP=${SETUP_BIN:-$root/target/release/gearpump-setup}
GEAR=${GEAR_BIN:-$root/target/release/gear}
check "packages $(basename "$deb"), $(basename "$wdeb") and admin tools exist" \
    test -f "$deb" -a -f "$wdeb" -a -x "$SETUP" -a -x "$GEAR"
check "master package: no worker files, no Java dependency" bash -c \
    "! dpkg-deb -c '$deb' | grep -q gearpump-worker && ! dpkg-deb -f '$deb' Depends | grep -qiE 'java|jre'"
check "worker package: binary, launcher, unit, sysusers, tmpfiles; depends on a Java runtime the Debian way" bash -c \
    "c=\$(dpkg-deb -c '$wdeb') && for f in ./usr/bin/gearpump-worker ./usr/share/gearpump/bin/worker \
        ./lib/systemd/system/gearpump-worker.service ./usr/lib/sysusers.d/gearpump-worker.conf \
        ./usr/lib/tmpfiles.d/gearpump-worker.conf; do grep -qF \" \$f\" <<<\"\$c\" || { echo \"missing \$f\"; exit 1; }; done &&
     dpkg-deb -f '$wdeb' Depends | grep -qF 'default-jre-headless | java-runtime-headless' &&
     ! grep -q 'etc/gearpump/gear.conf' <<<\"\$c\""

# ---------------------------------------------------------------- testbed

testbed_lock
testbed_cleanup
testbed_setup
SSHCONF=$TESTBED_RUN/ssh/config
# The admin's CA, tokens and client.conf go where gear looks for them, under a HOME of our own.
ADMIN_HOME=$work/home
PKI=$ADMIN_HOME/.config/gearpump
setup() { "$SETUP" --ssh-config "$SSHCONF" --connect-timeout 5 --timeout 120 --pki-dir "$PKI" "$@"; }
gear() { HOME=$ADMIN_HOME "$GEAR" --timeout 10 -m "node1:$PORT" "$@"; }
# curl against the TLS port with the cluster CA and the admin token (from a file: never on a
# command line)
api() { curl -sf --max-time 3 --cacert "$PKI/ca.pem" -H "@$work/admin.header" "$@"; }
for n in node1 node2 node3; do testbed_boot "$n"; done
check "node image has a Java runtime" on node2 'java -version'

# node1: master and worker; node2: worker only; node3: untouched until the dry run's check
out=$(setup --masters node1 --workers node1,node2 --package "$deb" --package "$wdeb" --dry-run 2>&1) && rc=0 || rc=$?
printf '%s\n' "$out" >"$work/dry-run.txt"
check "dry run exits 0 and prints both worker plans" bash -c \
    "test $rc = 0 && grep -qF '== node1 worker (gearpump-worker not installed' '$work/dry-run.txt' &&
     grep -qF '== node2 worker (gearpump-worker not installed' '$work/dry-run.txt' &&
     grep -qF 'install gearpump-worker' '$work/dry-run.txt'"
check "dry run installed nothing" on node2 '! dpkg -s gearpump-worker >/dev/null 2>&1 && ! test -e /etc/gearpump/gear.conf'

t0=$(date +%s)
out=$(setup --masters node1 --workers node1,node2 --package "$deb" --package "$wdeb" 2>&1) && rc=0 || rc=$?
printf '%s\n' "$out" >"$work/install.txt"
check "setup --masters node1 --workers node1,node2 (TLS, no --insecure): exit 0 ($(($(date +%s) - t0)) s)" test "$rc" = 0
printf 'Authorization: Bearer %s\n' "$(cat "$PKI/admin.token" 2>/dev/null)" >"$work/admin.header"
[[ $rc == 0 ]] || sed 's/^/    | /' "$work/install.txt" | tail -n 30
check "setup reports both workers registered and alive" bash -c \
    "grep -qE '^worker node1: registered as worker [0-9]+, alive' '$work/install.txt' &&
     grep -qE '^worker node2: registered as worker [0-9]+, alive' '$work/install.txt'"
check "node2: worker package only (no master package), unit active and enabled" on node2 \
    "dpkg -s gearpump-worker >/dev/null && ! dpkg -s gearpump-master >/dev/null 2>&1 &&
     systemctl is-active --quiet $WUNIT && systemctl is-enabled --quiet $WUNIT"
check "node2: gear.conf names node2 and the master; secret shared with the master, 0600 gearpump" on node2 \
    "grep -qF 'hostname = \"node2\"' /etc/gearpump/gear.conf && grep -qF 'masters = [\"node1:3000\"]' /etc/gearpump/gear.conf &&
     test \"\$(stat -c '%a %U' /etc/gearpump/cluster.secret)\" = '600 gearpump'"
check "node2: a worker certificate (0644) and key (0600 gearpump) with the CA; gear.conf points the worker at them" on node2 \
    "test \"\$(stat -c '%a %U' /etc/gearpump/tls/worker.pem /etc/gearpump/tls/worker-key.pem /etc/gearpump/tls/ca.pem | tr '\n' ' ')\" = '644 root 600 gearpump 644 root ' &&
     grep -qF 'cert-file = \"/etc/gearpump/tls/worker.pem\"' /etc/gearpump/gear.conf"
on node2 'cat /etc/gearpump/tls/worker.pem' >"$work/node2-worker.pem" || true
check "node2's worker certificate names node2, is for client auth and not for servers" bash -c \
    "openssl x509 -in '$work/node2-worker.pem' -noout -ext subjectAltName | grep -q 'DNS:node2' &&
     openssl x509 -in '$work/node2-worker.pem' -noout -ext extendedKeyUsage | grep -q 'Client Authentication' &&
     ! openssl x509 -in '$work/node2-worker.pem' -noout -ext extendedKeyUsage | grep -q 'Server Authentication'"
check "node2 (worker only): no master certificate, no tokens" on node2 \
    "! test -e /etc/gearpump/tls/node.pem && ! test -e /etc/gearpump/tokens"
check "node1 (master and worker): both certificates, the worker configured with its own" on node1 \
    "test -s /etc/gearpump/tls/node.pem -a -s /etc/gearpump/tls/worker.pem &&
     grep -qF 'cert-file = \"/etc/gearpump/tls/worker.pem\"' /etc/gearpump/gear.conf &&
     grep -qF 'cert-file = \"/etc/gearpump/tls/node.pem\"' /etc/gearpump/gear.conf"
check "plain HTTP is not served to workers either" bash -c "! curl -sf --max-time 3 -o /dev/null http://node1:$PORT/health/live"
s1=$(on node1 'sha256sum </etc/gearpump/cluster.secret' || echo none1)
s2=$(on node2 'sha256sum </etc/gearpump/cluster.secret' || echo none2)
check "one secret on master and worker" test "$s1" = "$s2"
show() { on "$1" "systemctl show -p $2 --value $WUNIT"; }
check "node2: Type=notify, watchdog 10s, runs as gearpump" bash -c \
    "test \"\$(ssh -F '$SSHCONF' node2 systemctl show -p Type,WatchdogUSec,User --value $WUNIT | tr '\n' ' ')\" = 'notify 10s gearpump '"
status=$(show node2 StatusText || true)
tb_log "node2 worker status: $status"
check "node2: STATUS names the worker id and the master ($status)" \
    grep -qE '^worker [0-9]+ via master node1:3000; 0/[0-9]+ slots' <<<"$status"
check "node2: READY=1 came with the registration (journal)" on node2 \
    "journalctl -u $WUNIT --no-pager | grep -q 'ready: worker [0-9]* via master node1:3000'"
workers_alive() {
    api "https://node1:$PORT/api/v1.0/master/workerlist" | jq -e '[.workers[] | select(.state == "alive") | .host] | sort == ["node1", "node2"]'
}
check "worker list: node1 and node2 alive" workers_alive
for unit_node in "$WUNIT node2" "gearpump-master.service node1"; do
    read -r unit n <<<"$unit_node"
    sec=$(on "$n" "systemd-analyze security $unit --no-pager 2>/dev/null | tail -n 1" || true)
    score=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' <<<"$sec")
    tb_log "systemd-analyze security $unit on $n: $sec"
    check "systemd-analyze security $unit <= 1.1 (got ${score:-none})" awk -v s="${score:-99}" 'BEGIN { exit !(s <= 1.1) }'
done
check "systemd-analyze verify: no complaint about the worker unit" on node2 \
    "! systemd-analyze verify /lib/systemd/system/$WUNIT 2>&1 | grep -F $WUNIT"

out=$(setup --masters node1 --workers node1,node2 --package "$deb" --package "$wdeb" 2>&1) && rc=0 || rc=$?
printf '%s\n' "$out" >"$work/rerun.txt"
check "re-run: exit 0, nothing changed (certificates kept)" bash -c "test $rc = 0 && grep -q '^Nothing changed' '$work/rerun.txt'"

# --rotate-certs: new certificates for masters and workers; the workers restart one at a time
# and register again under their ids.
w_before=$(on node2 'sha256sum </etc/gearpump/tls/worker.pem' || echo none)
out=$(setup --masters node1 --workers node1,node2 --package "$deb" --package "$wdeb" --rotate-certs 2>&1) && rc=0 || rc=$?
printf '%s\n' "$out" >"$work/rotate.txt"
check "--rotate-certs: exit 0" test "$rc" = 0
[[ $rc == 0 ]] || sed 's/^/    | /' "$work/rotate.txt" | tail -n 30
w_after=$(on node2 'sha256sum </etc/gearpump/tls/worker.pem' || echo none)
check "--rotate-certs: node2's worker certificate is new" test "$w_before" != "$w_after"
check "--rotate-certs: both workers registered and alive again" bash -c \
    "grep -qE '^worker node1: registered as worker [0-9]+, alive' '$work/rotate.txt' &&
     grep -qE '^worker node2: registered as worker [0-9]+, alive' '$work/rotate.txt'"
check "--rotate-certs: worker list shows node1 and node2 alive" workers_alive

# ---------------------------------------------------------------- an application on a worker

mkdir -p "$work/classes"
javac --release 17 -d "$work/classes" "$root/examples/java/Ticker.java"
jar --create --file "$work/ticker.jar" -C "$work/classes" .
TICKS=/var/lib/gearpump-worker/ticks.txt
out=$(gear app -jar "$work/ticker.jar" Ticker "$TICKS" 2>&1) && rc=0 || rc=$?
check "gear app submits the Ticker ($out)" test "$rc" = 0
app_id=$(sed -n 's/^Submitted application \([0-9]*\) .*/\1/p' <<<"$out")
app() { api "https://node1:$PORT/api/v1.0/appmaster/$app_id"; }
running() { app | jq -e --argjson n "$1" '.status == "active" and (.attempts | length) == $n and .attempts[-1].startedMs != null and .attempts[-1].endedMs == null'; }
check "application $app_id: attempt 1 started" wait_for 60 running 1
host_of() { # worker id -> host
    api "https://node1:$PORT/api/v1.0/master/workerlist" | jq -r --argjson w "$1" '.workers[] | select(.workerId == $w) | .host'
}
wid=$(app | jq -r '.attempts[-1].workerId' || true)
holder=$(host_of "$wid" || true)
other=node1
[[ $holder == node1 ]] && other=node2
check "attempt 1 runs on worker $wid ($holder): a JVM of the gearpump user writes ticks" on "${holder:-node2}" \
    "sleep 1; pgrep -u gearpump -f '[T]icker $TICKS' >/dev/null && test -s $TICKS"
# The master reads the log from the worker's log port over TLS (master certificate in, worker
# certificate out); the port admits nothing else.
log_read() { gear log -appid "$app_id" 2>&1 | grep -q "Ticker started: app $app_id"; }
check "gear log: the attempt's log, read through a master from $holder's log port" wait_for 20 log_read
log_addr=$(app | jq -r '.attempts[-1].logAddress' || true)
check "$holder's log port ($log_addr) refuses a client without a master certificate" bash -c \
    "! curl -sk --max-time 3 -o /dev/null 'https://$log_addr/log?app=$app_id&attempt=1' && \
     ! curl -s --max-time 3 -o /dev/null 'http://$log_addr/log?app=$app_id&attempt=1' -w '%{http_code}' | grep -q 200"
check "$holder: STATUS shows the attempt" bash -c "ssh -F '$SSHCONF' '$holder' systemctl show -p StatusText --value $WUNIT | grep -q '1 attempt'"
check "$holder: the JVM and its fence are in the worker unit's cgroup" on "$holder" \
    "cg=\$(systemctl show -p ControlGroup --value $WUNIT) && for p in \$(pgrep -f '[T]icker $TICKS') \$(pgrep -f '[g]earpump-worker __fence'); do grep -qF \"\$cg\" /proc/\$p/cgroup || exit 1; done"

# ---------------------------------------------------------------- systemctl stop: no process left

t_stop=$(date +%s%N)
check "$holder: systemctl stop gearpump-worker" on "$holder" "systemctl stop $WUNIT"
# any process started for an attempt carries GEARPUMP_APP_ID in its environment
attempt_procs='for e in /proc/[0-9]*/environ; do tr "\\0" "\\n" <"$e" 2>/dev/null | grep -q "^GEARPUMP_APP_ID=" && echo "$e"; done'
no_attempt_left() {
    # anchored: this very shell's command line holds $TICKS, a path under /var/lib/gearpump-worker
    on "$holder" "! pgrep -f '[T]icker $TICKS' && ! pgrep -f '^/usr/bin/gearpump-worker' && test -z \"\$($attempt_procs)\""
}
# what is left right after the stop returned, if anything (killed processes still being reaped)
tb_log "$holder right after the stop: $(on "$holder" "ps -eo pid,ppid,stat,user,args | grep -E '[T]icker|[g]earpump-worker|[j]ava'" | tr '\n' ';' || true)"
check "$holder: no process of any attempt left (no Ticker JVM, no fence, no worker; within 2 s)" wait_for 2 no_attempt_left
check "$holder: the unit is inactive, its cgroup empty" on "$holder" \
    "! systemctl is-active --quiet $WUNIT && test \"\$(systemctl show -p MainPID --value $WUNIT)\" = 0"
check "attempt 2 starts on $other after the clean stop (not counted as a failure)" wait_for 30 running 2
t_moved=$(date +%s%N)
tb_log "clean stop of $holder -> attempt 2 on $other: $(((t_moved - t_stop) / 1000000)) ms (polling every 0.5 s)"
check "attempt 2 runs on $other" test "$(host_of "$(app | jq '.attempts[-1].workerId')")" = "$other"
on "$holder" "systemctl start $WUNIT" || true
check "$holder: started again, registered (READY) under the same id" bash -c \
    "ssh -F '$SSHCONF' '$holder' systemctl show -p StatusText --value $WUNIT | grep -q '^worker $wid via master'"

# The worker and the fence SIGKILLed together: nothing of theirs kills the JVM any more; systemd
# does (KillMode=mixed: what is left in the cgroup when the main process dies), then restarts
# the worker.
jvm=$(on "$other" "pgrep -f '[T]icker $TICKS'" | head -n 1 || true)
check "$other: the attempt's JVM runs (pid $jvm)" test -n "$jvm"
on "$other" "kill -KILL \$(pgrep -f '[g]earpump-worker __fence') \$(systemctl show -p MainPID --value $WUNIT)" || true
check "$other: worker and fence SIGKILLed: systemd kills the orphaned JVM" \
    wait_for 10 on "$other" "! kill -0 $jvm 2>/dev/null"
check "$other: the worker is restarted (Restart=on-failure) and READY again" \
    wait_for 30 on "$other" "systemctl is-active --quiet $WUNIT && test \"\$(systemctl show -p NRestarts --value $WUNIT)\" -ge 1"
gear kill -appid "$app_id" >/dev/null 2>&1 || true

summary

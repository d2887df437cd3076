#!/bin/bash
# gearpump-setup end to end: plain Debian nodes (the project's container testbed, systemd as
# PID 1, sshd) become a master cluster over ssh, driven from the host as the admin machine.
# Run as root:
#
#   tests/testbed/setup_test.sh [--packages DIR] [--keep]
#
# Without --packages it runs scripts/build-packages.sh --deb-only first (release build,
# incremental) and uses target/packages; target/release/gearpump-setup and gear are the admin's
# tools. Prints PASS/FAIL per check and ends with "N passed, N failed"; exits non-zero when
# anything failed. A trap removes everything it made, also on failure or Ctrl-C.
#
# Stand-ins, because this kernel has no NFS: the mount unit that --nfs writes is checked with
# `systemd-analyze verify` and the service's ordering on it, but the data path runs over one host
# directory bind-mounted at the mount point into every node (systemd then sees the mount point
# as mounted, so the unit is active without an NFS server). The nodes cannot reach a package
# mirror either, so nfs-common (which gearpump-setup would install with apt-get) is put on them
# beforehand from .debs the host downloads; gearpump-setup finds it and skips that step.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=scripts/testbed/lib.sh
. "$root/scripts/testbed/lib.sh"
# shellcheck source=scripts/testbed/check.sh
. "$root/scripts/testbed/check.sh"

tb_test_args "$@"

export TESTBED_NODES=5
# one testbed per machine: wait for another run rather than fail at once
export TESTBED_LOCK_WAIT=${TESTBED_LOCK_WAIT:-1200}
PORT=3000
UNIT=gearpump-master.service
MOUNT=/mnt/gearpump-jars
MOUNT_UNIT='mnt-gearpump\x2djars.mount'
# The NFS server's address is never contacted (the mount point is already a bind mount); it is
# the host's bridge address so that even a mistake would stay on the test's own network.
NFS_EXPORT=$TESTBED_NET.1:/export/gearpump
NFS_CACHE=/var/cache/gearpump-setup-test/nfs-debs
work=$(mktemp -d /var/tmp/gearpump-setup-test.XXXXXX)
shared=$work/jars
export TESTBED_BINDS="$shared:$MOUNT"

tb_require_root
tb_test_traps



# ---------------------------------------------------------------- packages and tools

ver=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/Cargo.toml" | head -n 1)
arch=$(dpkg --print-architecture)
deb=$pkgdir/gearpump-master_${ver}-1_${arch}.deb
if ((build)); then
    tb_log "building packages into $pkgdir"
    "$root/scripts/build-packages.sh" --deb-only --out "$pkgdir" >&2
fi
# SETUP_BIN / GEAR_BIN: other builds of the admin tools (e.g. target/debug while iterating)
SETUP=${SETUP_BIN:-$root/target/release/gearpump-setup}
GEAR=${GEAR_BIN:-$root/target/release/gear}
check "package $(basename "$deb") and admin tools exist" test -f "$deb" -a -x "$SETUP" -a -x "$GEAR"

testbed_lock
testbed_cleanup
testbed_setup
SSHCONF=$TESTBED_RUN/ssh/config
# The admin's CA, tokens and client.conf go where gear looks for them, under a HOME of our own.
ADMIN_HOME=$work/home
PKI=$ADMIN_HOME/.config/gearpump
setup() { "$SETUP" --ssh-config "$SSHCONF" --connect-timeout 5 --timeout 120 --pki-dir "$PKI" "$@"; }
gear() { HOME=$ADMIN_HOME "$GEAR" --timeout 10 "$@"; }
# curl against the TLS port with the cluster CA and the admin token (from a file: never on a
# command line)
api() { curl -sf --max-time "${API_TIMEOUT:-3}" --cacert "$PKI/ca.pem" -H "@$work/admin.header" "$@"; }

mkdir -p "$shared"
# every master writes jars as its own gearpump user (uids may differ between nodes)
chmod 1777 "$shared"

if [[ ! -f $NFS_CACHE/ok ]]; then
    tb_log "downloading nfs-common and what the node image lacks of its dependencies"
    rm -rf "$NFS_CACHE"
    mkdir -p "$NFS_CACHE/partial"
    apt-get -q -y -o "Dir::State::status=$(tb_lower)/var/lib/dpkg/status" -o "Dir::Cache::archives=$NFS_CACHE" \
        -o Debug::NoLocking=1 -o APT::Sandbox::User=root --no-install-recommends --download-only \
        install nfs-common >/dev/null
    touch "$NFS_CACHE/ok"
fi

for n in node1 node2 node3 node4 node5; do testbed_boot "$n"; done
# Plain nodes or nothing: a node carrying another run's state would make every result meaningless.
for n in node1 node2 node3 node4 node5; do
    if on "$n" 'dpkg -s gearpump-master >/dev/null 2>&1 || test -e /etc/gearpump'; then
        fail "$n is not a plain node (gearpump-master or /etc/gearpump present): another run's leftovers?"
        summary || true
        exit 1
    fi
done
prepare_nfs_client() {
    local n=$1 f
    for f in "$NFS_CACHE"/*.deb; do testbed_copy "$n" "$f" "/root/nfs-debs/$(basename "$f")"; done
    # in rounds: dpkg -i unpacks everything before configuring, and python3 pre-depends on a
    # configured python3-minimal
    on "$n" 'export DEBIAN_FRONTEND=noninteractive
        for round in 1 2 3; do
            dpkg -i /root/nfs-debs/*.deb >/tmp/nfs-dpkg.log 2>&1 && break
            dpkg --configure -a >>/tmp/nfs-dpkg.log 2>&1 || true
        done
        dpkg -s nfs-common python3 >/dev/null && rm -rf /root/nfs-debs && command -v mount.nfs || { tail /tmp/nfs-dpkg.log; exit 1; }'
}
for n in node1 node2 node3 node4 node5; do
    check "$n: nfs-common pre-installed (no mirror in the nodes)" prepare_nfs_client "$n"
done

# A listing of a node's files (path, mode, owner, size, mtime): what a dry run must not change.
# The master's own state (Raft log), systemd's and the journal's moving parts are left out, and
# so is the jar store's scratch folder (.partial), which a running master touches on every
# readiness check.
tree_of() {
    on "$1" "find /etc /usr /opt /root /var/lib /srv $MOUNT -xdev \
        \\( -path /var/lib/systemd -o -path /var/lib/gearpump -o -path /root/.ssh -o -path /etc/machine-id \
        -o -path $MOUNT/.partial \\) -prune \
        -o -printf '%p %m %u:%g %s %T@\\n' 2>/dev/null | sort" | sed "s|^|$1 |"
}
# trees NAME NODE...: the listing of every node, kept as $work/trees.NAME; prints its digest
trees() {
    local name=$1 n
    shift
    for n in "$@"; do tree_of "$n"; done >"$work/trees.$name"
    sha256sum <"$work/trees.$name"
}
# same_trees A B: PASS when two listings agree, else shows what differs
same_trees() { diff "$work/trees.$1" "$work/trees.$2" | head -n 12 && cmp -s "$work/trees.$1" "$work/trees.$2"; }

# ---------------------------------------------------------------- refused before anything

out=$(setup --masters node1,,node3 2>&1) && rc=0 || rc=$?
check "empty name refused (exit 2, names the entry)" test "$rc" = 2 -a -n "$(grep -F 'entry 2 is an empty name' <<<"$out")"
out=$(setup --masters node1,node2,node1 2>&1) && rc=0 || rc=$?
check "duplicate name refused" test "$rc" = 2 -a -n "$(grep -F 'node1 is listed twice' <<<"$out")"
out=$(setup --masters node1,node2,node3 --jar-store nfs://filer/x 2>&1) && rc=0 || rc=$?
check "bad jar store URI refused" test "$rc" = 2 -a -n "$(grep -F -- '--jar-store' <<<"$out")"
out=$(setup --masters node1,node2,node3,node4 --dry-run --package "$deb" --nfs "$NFS_EXPORT" 2>&1) && rc=0 || rc=$?
check "even count: a warning, not a refusal" test "$rc" = 0 -a -n "$(grep -F '4 masters tolerate no more failures than 3' <<<"$out")"

# ---------------------------------------------------------------- dry run on plain nodes

trees dry1-before node1 node2 node3 >/dev/null
out=$(setup --masters node1,node2,node3 --nfs "$NFS_EXPORT" --package "$deb" --dry-run 2>&1) && rc=0 || rc=$?
printf '%s\n' "$out" >"$work/dry-run.txt"
trees dry1-after node1 node2 node3 >/dev/null
check "dry run exits 0" test "$rc" = 0
check "dry run changed no file on the nodes ($(wc -l <"$work/trees.dry1-after") files compared)" same_trees dry1-before dry1-after
check "dry run prints the package copy and install per node" \
    bash -c "[[ \$(grep -c 'apt-get install -y -q -o Dpkg::Options::=--force-confold' '$work/dry-run.txt') == 3 ]]"
check "dry run prints each gear.conf (hostname rewritten in place)" grep -qF '|   hostname = "node3"' "$work/dry-run.txt"
check "dry run prints the mount unit and the drop-in" \
    bash -c "grep -qF '| What=$NFS_EXPORT' '$work/dry-run.txt' && grep -qF '| RequiresMountsFor=$MOUNT' '$work/dry-run.txt'"
check "dry run never prints the secret" grep -qF '<the cluster secret, 64 characters, not shown>' "$work/dry-run.txt"
check "dry run: nothing installed" on node1 '! dpkg -s gearpump-master >/dev/null 2>&1'

# ---------------------------------------------------------------- per-node failures

testbed_partition node3
out=$(setup --masters node1,node2,node3 --nfs "$NFS_EXPORT" --package "$deb" 2>&1) && rc=0 || rc=$?
testbed_heal node3
printf '%s\n' "$out" >"$work/unreachable.txt"
check "unreachable node: non-zero exit" test "$rc" != 0
check "unreachable node: the report names node3, the step and the cause" \
    grep -qE '^node3 +preflight +ssh to node3 failed: .*(timed out|No route|unreachable)' "$work/unreachable.txt"
check "unreachable node: nothing installed on the others" on node1 '! dpkg -s gearpump-master >/dev/null 2>&1'

mkdir -p "$work/wrongarch"
cp "$deb" "$work/wrongarch/gearpump-master_${ver}-1_arm64.deb"
out=$(setup --masters node1,node2,node3 --package "$work/wrongarch/gearpump-master_${ver}-1_arm64.deb" 2>&1) && rc=0 || rc=$?
printf '%s\n' "$out" >"$work/nopackage.txt"
check "node lacking a package: non-zero exit" test "$rc" != 0
check "node lacking a package: per-node report with step and cause" \
    grep -qE "^node2 +preflight +gearpump-master is not installed and no deb package for $arch was given" "$work/nopackage.txt"

# ---------------------------------------------------------------- full install

t0=$(date +%s)
out=$(setup --masters node1,node2,node3 --nfs "$NFS_EXPORT" --package "$deb" --failover-timeout 1s 2>&1) && rc=0 || rc=$?
printf '%s\n' "$out" >"$work/install.txt"
tb_log "install took $(($(date +%s) - t0)) s"
check "install onto 3 plain nodes exits 0 ($(($(date +%s) - t0)) s)" test "$rc" = 0
[[ $rc == 0 ]] || sed 's/^/    | /' "$work/install.txt" | tail -n 30
check "install prints the masters table with a leader" grep -qE '^leader: node[123]:3000' "$work/install.txt"
check "install prints where the admin's CA and tokens are" grep -qF "The admin's copies are in $PKI" "$work/install.txt"
check "admin's CA key and tokens are 0600" bash -c \
    "test \"\$(stat -c %a '$PKI/ca-key.pem' '$PKI/admin.token' '$PKI/submit.token' '$PKI/client.conf' | sort -u)\" = 600"
printf 'Authorization: Bearer %s\n' "$(cat "$PKI/admin.token")" >"$work/admin.header"
chmod 600 "$work/admin.header"
# gear health asks each master itself: every one ready, all naming one leader in one term,
# exactly one of them leading (NODE...: the masters; all of them by default)
one_leader() {
    local list
    list=$(printf "%s:$PORT," "$@")
    gear -m "${list%,}" health --wait 10
}
check "exactly one leader" one_leader node1 node2 node3
for n in node1 node2 node3; do
    check "$n: active and enabled" on "$n" "systemctl is-active --quiet $UNIT && systemctl is-enabled --quiet $UNIT"
    check "$n: gear.conf names $n and the 3 masters" on "$n" \
        "grep -qF 'hostname = \"$n\"' /etc/gearpump/gear.conf && grep -qF 'masters = [\"node1:3000\", \"node2:3000\", \"node3:3000\"]' /etc/gearpump/gear.conf"
    check "$n: shipped comments kept, previous gear.conf backed up" on "$n" \
        "grep -qF 'High availability, in three steps' /etc/gearpump/gear.conf && ls /etc/gearpump/gear.conf.bak-* >/dev/null"
    check "$n: secret 0600 gearpump:gearpump" on "$n" "test \"\$(stat -c '%a %U:%G' /etc/gearpump/cluster.secret)\" = '600 gearpump:gearpump'"
    check "$n: TLS key 0600 gearpump, tokens 0640 root:gearpump" on "$n" \
        "test \"\$(stat -c '%a %U:%G' /etc/gearpump/tls/node-key.pem /etc/gearpump/tokens | tr '\n' ' ')\" = '600 gearpump:gearpump 640 root:gearpump '"
done
# TLS and tokens: the port speaks only TLS; clients need a token, membership an admin one
check "plain HTTP is not served" bash -c "! curl -sf --max-time 3 -o /dev/null http://node1:$PORT/health/live"
check "health is open over TLS" curl -sf --max-time 3 -o /dev/null --cacert "$PKI/ca.pem" "https://node1:$PORT/health/ready"
code() { curl -s -o /dev/null -w '%{http_code}' --max-time 3 --cacert "$PKI/ca.pem" "$@"; }
check "no token: 401" test "$(code "https://node2:$PORT/api/v1.0/master/applist")" = 401
check "POST members without a token: 401" test "$(code -X POST -d '{"remove":"node3:3000"}' "https://node2:$PORT/api/v1.0/master/members")" = 401
out=$(HOME=/nonexistent "$GEAR" --timeout 10 --ca "$PKI/ca.pem" -m node1:$PORT info 2>&1) && rc=0 || rc=$?
check "gear without a token is refused and says so" test "$rc" != 0 -a -n "$(grep -F 'no token was sent' <<<"$out")"
check "gear with the printed client.conf works (no flags)" gear info
secret_sum() { on "$1" 'sha256sum </etc/gearpump/cluster.secret' 2>/dev/null || echo "none on $1"; }
s1=$(secret_sum node1) s2=$(secret_sum node2) s3=$(secret_sum node3)
check "one secret on every node" test "$s1" = "$s2" -a "$s2" = "$s3"

# --nfs: the unit, the drop-in, the ordering
check "mount unit passes systemd-analyze verify" on node1 "systemd-analyze verify '/etc/systemd/system/$MOUNT_UNIT'"
check "service requires and is ordered after the mount" on node1 \
    "systemctl list-dependencies --plain --no-pager $UNIT | grep -qF '$MOUNT_UNIT' &&
     systemctl list-dependencies --after --plain --no-pager $UNIT | grep -qF '$MOUNT_UNIT'"
check "mount unit enabled, active over the stand-in bind mount" on node2 \
    "systemctl is-enabled --quiet '$MOUNT_UNIT' && systemctl is-active --quiet '$MOUNT_UNIT'"
check "masters use the shared store (file://$MOUNT)" on node3 "grep -qF 'rootpath = \"file://$MOUNT\"' /etc/gearpump/gear.conf"

# ---------------------------------------------------------------- re-run: a no-op

on node1 "printf '\n# an operator note\ngearpump.application.total-retries = 7\n' >>/etc/gearpump/gear.conf"
pid_before=$(on node1 "systemctl show -p MainPID --value $UNIT" || true)
trees rerun-before node1 node2 node3 >/dev/null
out=$(setup --masters node1,node2,node3 --nfs "$NFS_EXPORT" --package "$deb" --failover-timeout 1s 2>&1) && rc=0 || rc=$?
printf '%s\n' "$out" >"$work/rerun.txt"
trees rerun-after node1 node2 node3 >/dev/null
check "re-run exits 0 and says nothing changed" grep -q '^Nothing changed' "$work/rerun.txt"
check "re-run changed no file" same_trees rerun-before rerun-after
check "re-run kept the operator's edit and did not restart" on node1 \
    "grep -qF 'total-retries = 7' /etc/gearpump/gear.conf && test \"\$(systemctl show -p MainPID --value $UNIT)\" = '$pid_before'"

# ---------------------------------------------------------------- leader's node dies

head -c 300000 /dev/urandom >"$work/payload.bin"
(cd "$work" && rm -f app.jar && python3 -c 'import zipfile,sys; z=zipfile.ZipFile("app.jar","w"); z.write("payload.bin"); z.close()')
masters3=node1:$PORT,node2:$PORT,node3:$PORT
check "gear app submits an application" gear -m "$masters3" app -jar "$work/app.jar" io.example.WordCount
jar=$(gear -m "$masters3" --json info | jq -r '.appMasters[0].jar.name // empty' || true)
leader=$(api "https://node1:$PORT/api/v1.0/master" | jq -r '.masterDescription.leader' | sed 's/:.*//' || true)
check "leader known ($leader), jar stored ($jar)" test -n "$leader" -a -n "$jar"
survivors=() sm=''
for n in node1 node2 node3; do [[ $n == "$leader" ]] || { survivors+=("$n"); sm+="${sm:+,}$n:$PORT"; }; done
if [[ -z $leader ]]; then
    fail "no leader to crash: the leader-loss checks cannot run"
    summary
    exit 1
fi
testbed_crash "$leader"
new_leader() { local l; l=$(API_TIMEOUT=2 api "https://${survivors[0]}:$PORT/health/ready" | jq -r .leader) && [[ -n $l && $l != null && $l != "$leader:$PORT" ]]; }
check "a survivor leads within 30 s of the crash" wait_for 30 new_leader
check "the cluster keeps serving (gear info via the survivors)" bash -c "HOME='$ADMIN_HOME' '$GEAR' --timeout 10 -m '$sm' info | grep -q io.example.WordCount"
for n in "${survivors[@]}"; do
    rm -f "$work/back.jar"
    check "jar readable from survivor $n (gear download, SHA-256 checked)" bash -c \
        "HOME='$ADMIN_HOME' '$GEAR' --timeout 10 -m '$n:$PORT' download --file '$jar' -o '$work/back.jar' && cmp '$work/app.jar' '$work/back.jar'"
done
testbed_boot "$leader"
check "$leader rejoins after its reboot (service enabled at boot)" \
    wait_for 60 curl -sf -o /dev/null --max-time 2 --cacert "$PKI/ca.pem" "https://$leader:$PORT/health/ready"

# ---------------------------------------------------------------- add two masters, remove one

# This step logs in as an unprivileged user and works through sudo (--ssh-user/--sudo): a full
# install on the two new nodes and the probes of the running ones all go through `sudo -n`.
for n in node1 node2 node3 node4 node5; do
    on "$n" 'id admin >/dev/null 2>&1 || useradd -m -s /bin/sh admin
        install -d -m 700 -o admin -g admin /home/admin/.ssh
        install -m 600 -o admin -g admin /root/.ssh/authorized_keys /home/admin/.ssh/authorized_keys
        echo "admin ALL=(ALL) NOPASSWD: ALL" >/etc/sudoers.d/admin && chmod 440 /etc/sudoers.d/admin'
done
check "admin logs in and is not root" bash -c "u=\$(ssh -F '$SSHCONF' -o User=admin node4 id -u) && test -n \"\$u\" -a \"\$u\" != 0"
pids_before=$(for n in node1 node2 node3; do on "$n" "systemctl show -p MainPID --value $UNIT" || true; done | tr '\n' ' ')
out=$(setup --ssh-user admin --sudo --masters node1,node2,node3,node4,node5 --nfs "$NFS_EXPORT" --package "$deb" --failover-timeout 1s 2>&1) && rc=0 || rc=$?
printf '%s\n' "$out" >"$work/add.txt"
pids_after=$(for n in node1 node2 node3; do on "$n" "systemctl show -p MainPID --value $UNIT" || true; done | tr '\n' ' ')
check "add node4 and node5 as admin through sudo: exit 0" test "$rc" = 0
[[ $rc == 0 ]] || sed 's/^/    | /' "$work/add.txt" | tail -n 30
voters() { api "https://$1:$PORT/api/v1.0/master/members" | jq -r '.voters | sort | join(",")'; }
check "5 voters" test "$(voters node1)" = "node1:3000,node2:3000,node3:3000,node4:3000,node5:3000"
check "added through the API as learner then voter" grep -qF 'node4: adding node4:3000 to the cluster (learner first' "$work/add.txt"
check "no downtime: the 3 running masters were not restarted" test "$pids_before" = "$pids_after"
check "exactly one leader of 5" one_leader node1 node2 node3 node4 node5
check "old masters' gear.conf lists all 5" on node2 "grep -qF 'node5:3000\"]' /etc/gearpump/gear.conf"

out=$(setup --masters node1,node2,node3,node4,node5 --remove node3 --nfs "$NFS_EXPORT" --package "$deb" --failover-timeout 1s 2>&1) && rc=0 || rc=$?
printf '%s\n' "$out" >"$work/remove.txt"
check "remove node3: exit 0" test "$rc" = 0
[[ $rc == 0 ]] || sed 's/^/    | /' "$work/remove.txt" | tail -n 30
check "4 voters without node3" test "$(voters node1)" = "node1:3000,node2:3000,node4:3000,node5:3000"
check "node3 stopped and disabled" on node3 "! systemctl is-active --quiet $UNIT && ! systemctl is-enabled --quiet $UNIT"
check "4 masters: the fault-tolerance warning" grep -qF '4 masters tolerate no more failures than 3' "$work/remove.txt"
check "exactly one leader of 4" one_leader node1 node2 node4 node5

# ---------------------------------------------------------------- dry run on the running cluster

trees dry2-before node1 node2 node4 node5 >/dev/null
out=$(setup --masters node1,node2,node4,node5 --nfs "$NFS_EXPORT" --package "$deb" --failover-timeout 1s --dry-run 2>&1) && rc=0 || rc=$?
trees dry2-after node1 node2 node4 node5 >/dev/null
check "dry run on the running cluster: exit 0, 'nothing to change' for all 4" \
    test "$rc" = 0 -a "$(grep -c '  nothing to change' <<<"$out")" = 4
check "dry run on the running cluster changed no file" same_trees dry2-before dry2-after

# a setting that needs a restart: the masters restart one at a time, the cluster stays up
out=$(setup --masters node1,node2,node4,node5 --nfs "$NFS_EXPORT" --package "$deb" --failover-timeout 2s 2>&1) && rc=0 || rc=$?
printf '%s\n' "$out" >"$work/restart.txt"
check "new failover-timeout: exit 0, the 4 masters restarted one at a time" \
    test "$rc" = 0 -a "$(grep -c 'restarting to apply the new settings' "$work/restart.txt")" = 4
[[ $rc == 0 ]] || sed 's/^/    | /' "$work/restart.txt" | tail -n 30
check "new failover-timeout written on every master" bash -c \
    "for n in node1 node2 node4 node5; do grep -q 'failover-timeout = 2s' $TESTBED_RUN/nodes/\$n/merged/etc/gearpump/gear.conf || exit 1; done"
check "exactly one leader after the rolling restart" one_leader node1 node2 node4 node5

# --rotate-certs: new node certificates, masters restarted one at a time, a client served
# throughout (gear info every 0.2 s; every failure counted)
cert_before=$(on node1 'sha256sum </etc/gearpump/tls/node.pem')
(
    end=$(($(date +%s) + 600)) fails=0 oks=0
    while [[ ! -f $work/rotate.done ]] && (($(date +%s) < end)); do
        if HOME=$ADMIN_HOME "$GEAR" --timeout 5 info >/dev/null 2>>"$work/rotate-client.err"; then oks=$((oks + 1)); else fails=$((fails + 1)); fi
        sleep 0.2
    done
    echo "$oks $fails" >"$work/rotate-client.txt"
) &
client=$!
t0=$(date +%s)
out=$(setup --masters node1,node2,node4,node5 --nfs "$NFS_EXPORT" --package "$deb" --failover-timeout 2s --rotate-certs 2>&1) && rc=0 || rc=$?
touch "$work/rotate.done"
wait "$client" || true
printf '%s\n' "$out" >"$work/rotate.txt"
read -r oks fails <"$work/rotate-client.txt" || { oks=0 fails=-1; }
tb_log "--rotate-certs took $(($(date +%s) - t0)) s; client requests during it: $oks ok, $fails failed"
check "--rotate-certs: exit 0, the 4 masters restarted one at a time" \
    test "$rc" = 0 -a "$(grep -c 'restarting to apply the new settings' "$work/rotate.txt")" = 4
[[ $rc == 0 ]] || sed 's/^/    | /' "$work/rotate.txt" | tail -n 30
check "--rotate-certs: node1 has a new certificate" test "$(on node1 'sha256sum </etc/gearpump/tls/node.pem')" != "$cert_before"
check "--rotate-certs: the cluster kept serving ($oks ok, $fails failed requests)" test "$fails" = 0 -a "$oks" -gt 0
check "exactly one leader after the rotation" one_leader node1 node2 node4 node5

out=$(setup --masters node1,node2,node4 --nfs "$NFS_EXPORT" --package "$deb" --failover-timeout 1s 2>&1) && rc=0 || rc=$?
check "a member missing from --masters is refused, not silently dropped (exit $rc)" \
    test "$rc" = 2 -a -n "$(grep -F 'node5:3000 of the running cluster is not in --masters' <<<"$out")"
check "... and the cluster still has 4 voters" test "$(voters node1)" = "node1:3000,node2:3000,node4:3000,node5:3000"

summary

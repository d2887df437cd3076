#!/bin/bash
# docs/OPERATIONS.md, for real: three packaged masters under systemd in testbed containers,
# installed by gearpump-setup (TLS, cluster CA, tokens) from the host as the admin machine.
# Backup with `gear snapshot save`, restore every master from it, lose two of three masters
# (SIGKILL, state wiped) and `recover --force-new-cluster` the survivor, grow it back to three
# with the same gearpump-setup command (which first refuses a master that still holds an old
# state directory), and refuse a state directory from a newer version with 78 and no restart
# loop. Run as root:
#
#   tests/testbed/ops_test.sh [--packages DIR] [--keep]
#
# Without --packages it runs scripts/build-packages.sh first and tests target/packages;
# target/release/gearpump-setup is the admin's tool (SETUP_BIN: another build of it). Prints
# PASS/FAIL per check and "N passed, N failed"; exits non-zero when anything failed. Everything
# it creates is removed by a trap, also on failure (--keep leaves the nodes running).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=scripts/testbed/lib.sh
. "$root/scripts/testbed/lib.sh"
# shellcheck source=scripts/testbed/check.sh
. "$root/scripts/testbed/check.sh"

tb_test_args "$@"
tb_require_root
work=$(mktemp -d /var/tmp/gearpump-ops-test.XXXXXX)
tb_test_traps

export TESTBED_LOCK_WAIT=${TESTBED_LOCK_WAIT:-1200}
UNIT=gearpump-master.service
PORT=3000
nodes=(node1 node2 node3)
MASTERS=node1:$PORT,node2:$PORT,node3:$PORT
# gear on the nodes: the cluster CA gearpump-setup put there and the admin token copied in
GEAR="gear --master=$MASTERS --ca=/etc/gearpump/tls/ca.pem --token-file=/root/admin.token"
STATE=/var/lib/gearpump
AS_SERVICE="runuser -u gearpump --"
# The admin's CA and tokens, where gearpump-setup creates them (a HOME of the test's own).
PKI=$work/home/.config/gearpump
SETUP=${SETUP_BIN:-$root/target/release/gearpump-setup}

prop() { on "$1" "systemctl show -p $2 --value $UNIT"; }
# curl with the cluster CA and the admin token (from a file: never on a command line)
api() { curl -sf --max-time "${API_TIMEOUT:-150}" --cacert "$PKI/ca.pem" -H "@$work/admin.header" "$@"; }
ready() { API_TIMEOUT=2 api -o /dev/null "https://$1:$PORT/health/ready"; }
app_count() { on "$1" "$GEAR info --json" | jq '.appMasters | length'; }
submit_id() { on "$1" "$GEAR --json app -jar /root/a.jar io.x.More" | jq -r .appId; }
voters() { api "https://$1:$PORT/api/v1.0/master/members" | jq '.voters | length'; }
# An empty state directory owned by the service, the old one kept aside (the runbook's step).
fresh_state() { on "$1" "mv $STATE $STATE.old-\$(date +%s%N) && install -d -o gearpump -g gearpump -m 0750 $STATE"; }

ver=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/Cargo.toml" | head -n 1)
deb=$pkgdir/gearpump-master_${ver}-1_$(dpkg --print-architecture).deb
if ((build)); then
    "$root/scripts/build-packages.sh" --deb-only --out "$pkgdir" >&2
fi
check "package $(basename "$deb") and gearpump-setup" test -f "$deb" -a -x "$SETUP"

testbed_lock
testbed_cleanup >/dev/null 2>&1 || true
testbed_setup
SSHCONF=$TESTBED_RUN/ssh/config
setup() { "$SETUP" --ssh-config "$SSHCONF" --connect-timeout 5 --timeout 120 --pki-dir "$PKI" "$@"; }
for n in "${nodes[@]}"; do testbed_boot "$n"; done
out=$(setup --masters node1,node2,node3 --package "$deb" 2>&1) && rc=0 || rc=$?
printf '%s\n' "$out" >"$work/install.txt"
check "gearpump-setup installs three masters (TLS, tokens)" test "$rc" = 0
[[ $rc == 0 ]] || sed 's/^/    | /' "$work/install.txt" | tail -n 30
printf 'Authorization: Bearer %s\n' "$(cat "$PKI/admin.token" 2>/dev/null)" >"$work/admin.header"
for n in "${nodes[@]}"; do
    testbed_copy "$n" "$PKI/admin.token" /root/admin.token 0600
    check "$n: ready" wait_for 90 ready "$n"
done
on node1 "head -c 3000 /dev/urandom >/root/a.jar"
check "submit two applications" on node1 "$GEAR app -jar /root/a.jar io.x.A && $GEAR app -jar /root/a.jar io.x.B"

# ---------------------------------------------------------------- backup and restore
check "gear snapshot save" on node1 "$GEAR snapshot save /root/b.snap"
check "the backup is 0600" test "$(on node1 "stat -c %a /root/b.snap")" = 600
backup_holds() { on node1 "$GEAR snapshot status /root/b.snap --json" | jq -e '.applications == 2 and (.voters | length) == 3'; }
check "gear snapshot status: 2 applications, 3 voters" backup_holds
on node1 "cat /root/b.snap" >"$work/b.snap"
for n in "${nodes[@]}"; do
    testbed_copy "$n" "$work/b.snap" /var/tmp/b.snap 0644
    check "$n: stop" on "$n" "timeout 60 systemctl stop $UNIT"
    fresh_state "$n"
done
for n in "${nodes[@]}"; do
    check "$n: restore --from the backup, as the service user" on "$n" \
        "$AS_SERVICE gearpump-master restore --from /var/tmp/b.snap | tee /dev/stderr | grep -q 'MISSING'"
    on "$n" "systemctl start --no-block $UNIT"
done
for n in "${nodes[@]}"; do check "$n: ready after the restore" wait_for 90 ready "$n"; done
for n in "${nodes[@]}"; do check "$n: both applications are back" test "$(app_count "$n")" = 2; done
check "a new submission gets the next id (3)" test "$(submit_id node1)" = 3
check "restore refuses a used state directory (73)" on node1 \
    "$AS_SERVICE gearpump-master restore --from /var/tmp/b.snap; [ \$? = 73 ]"

# ---------------------------------------------------------------- a majority lost for good
for n in node2 node3; do
    on "$n" "systemctl kill --signal=SIGKILL $UNIT; systemctl stop $UNIT" || true
done
fresh_state node2 # node3's goes later: first setup must refuse it
check "recover refuses while node1 runs (75)" on node1 \
    "$AS_SERVICE gearpump-master recover --force-new-cluster; [ \$? = 75 ]"
check "node1: stop" on node1 "timeout 60 systemctl stop $UNIT"
check "node1: recover --force-new-cluster" on node1 "$AS_SERVICE gearpump-master recover --force-new-cluster"
check "node1: starts alone (READY)" on node1 "timeout 120 systemctl start $UNIT"
check "node1: three applications" test "$(app_count node1)" = 3
check "node1: takes writes alone (app 4)" test "$(submit_id node1)" = 4

# Grow back with the command that installed the cluster. node2 and node3 are configured and
# stopped; node3 still holds its old state directory at first, which would follow the old
# membership: setup must refuse it before changing anything.
out=$(setup --masters node1,node2,node3 --package "$deb" 2>&1) && rc=0 || rc=$?
printf '%s\n' "$out" >"$work/stale.txt"
check "grow back with node3's old state directory: refused" test "$rc" != 0
check "the report names node3, its old state and the way out, and says nothing changed" bash -c \
    "grep -E '^node3 +join +node3:3000 is not a member of the running cluster \[node1:3000\], and $STATE holds' '$work/stale.txt' &&
     grep -qF 'mv $STATE $STATE.old-\$(date +%s)' '$work/stale.txt' &&
     grep -qx 'Nothing was changed on any node; fix the cause and run the same command again.' '$work/stale.txt'"
[[ $rc != 0 ]] || sed 's/^/    | /' "$work/stale.txt" | tail -n 20
for n in node2 node3; do check "$n: not started by the refused run" on "$n" "! systemctl is-active --quiet $UNIT"; done
fresh_state node3
t0=$(date +%s)
out=$(setup --masters node1,node2,node3 --package "$deb" 2>&1) && rc=0 || rc=$?
printf '%s\n' "$out" >"$work/grow.txt"
check "gearpump-setup grows the cluster back to three ($(($(date +%s) - t0)) s)" test "$rc" = 0
[[ $rc == 0 ]] || sed 's/^/    | /' "$work/grow.txt" | tail -n 30
# one at a time: node3 starts only once node2 is a member (two empty masters started together
# could form a cluster of their own)
order=$(grep -oE '^node[23]: (starting|adding)' "$work/grow.txt" | tr '\n' ' ')
check "setup started and added node2, then node3 ($order)" \
    test "$order" = "node2: starting node2: adding node3: starting node3: adding "
check "three voters" test "$(voters node1)" = 3
check "one leader, every master at the same applied state (gear health --same-state)" \
    on node1 "$GEAR health --wait 30 --same-state"
for n in node2 node3; do check "$n: the four applications node1 had" test "$(app_count "$n")" = 4; done
on node3 "head -c 3000 /dev/urandom >/root/a.jar"
check "new writes work (app 5, submitted on node3)" test "$(submit_id node3)" = 5
setup --masters node1,node2,node3 --package "$deb" >"$work/again.txt" 2>&1 && rc=0 || rc=$?
check "a second run changes nothing" bash -c "test $rc = 0 && grep -q '^Nothing changed' '$work/again.txt'"

# ---------------------------------------------------------------- a downgrade is refused
check "node3: stop" on node3 "timeout 60 systemctl stop $UNIT"
on node3 "echo 99 >$STATE/state-format; cd $STATE && find . -type f -exec md5sum {} + | sort >/root/before"
on node3 "date +%s >/root/since"
check "node3: start with a newer state format fails" on node3 "! timeout 60 systemctl start $UNIT"
sleep 6 # longer than RestartSec: a restart loop would show by now
check "exit status 78" test "$(prop node3 ExecMainStatus)" = 78
check "no restart loop (NRestarts $(prop node3 NRestarts))" test "$(prop node3 NRestarts)" = 0
check "journal names the directory and format 99" on node3 \
    "journalctl -q -u $UNIT --since @\$(cat /root/since) -o cat | grep -q '$STATE has format 99'"
check "the state directory is untouched" on node3 \
    "cd $STATE && find . -type f -exec md5sum {} + | sort | cmp - /root/before"
check "the others still serve" ready node1

summary

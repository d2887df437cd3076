#!/bin/bash
# docs/OPERATIONS.md, for real: three packaged masters under systemd in testbed containers, with
# an admin token. Backup with `gear snapshot save`, restore every master from it, lose two of
# three masters and `recover --force-new-cluster` the survivor, grow back to three, and refuse a
# state directory from a newer version with 78 and no restart loop. Run as root:
#
#   tests/testbed/ops_test.sh [--packages DIR] [--keep]
#
# Without --packages it runs scripts/build-packages.sh first and tests target/packages. Prints
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

UNIT=gearpump-master.service
PORT=3000
CONF=/etc/gearpump/gear.conf
TOKEN=ops-test-admin-token-0123456789abcdef
nodes=(node1 node2 node3)
MASTERS=node1:$PORT,node2:$PORT,node3:$PORT
GEAR="gear --master=$MASTERS --token-file=/root/admin.token"
STATE=/var/lib/gearpump
AS_SERVICE="runuser -u gearpump --"

prop() { on "$1" "systemctl show -p $2 --value $UNIT"; }
ready() { curl -sf -o /dev/null --max-time 2 "http://$1:$PORT/health/ready"; }
api() { curl -sf --max-time 150 -H "Authorization: Bearer $TOKEN" "$@"; }
add_member() { api -X POST "http://$1:$PORT/api/v1.0/master/members" -d "{\"add\": \"$2:$PORT\"}"; }
app_count() { on "$1" "$GEAR info --json" | jq '.appMasters | length'; }
submit_id() { on "$1" "$GEAR --json app -jar /root/a.jar io.x.More" | jq -r .appId; }
voters() { api "http://$1:$PORT/api/v1.0/master/members" | jq '.voters | length'; }
# An empty state directory owned by the service, the old one kept aside (the runbook's step).
fresh_state() { on "$1" "mv $STATE $STATE.old-\$(date +%s%N) && install -d -o gearpump -g gearpump -m 0750 $STATE"; }
# "index hash" of every node, one line each; equal lines = equal states.
states_equal() {
    local n lines=()
    for n in "$@"; do
        lines+=("$(curl -sf --max-time 2 -H "Authorization: Bearer $TOKEN" "http://$n:$PORT/api/v1.0/master" |
            jq -r '.masterDescription | "\(.appliedIndex) \(.stateHash)"')") || return 1
    done
    [[ -n ${lines[0]} && $(printf '%s\n' "${lines[@]}" | sort -u | wc -l) == 1 ]]
}

ver=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/Cargo.toml" | head -n 1)
deb=$pkgdir/gearpump-master_${ver}-1_$(dpkg --print-architecture).deb
if ((build)); then
    "$root/scripts/build-packages.sh" --deb-only --out "$pkgdir" >&2
fi
check "package $(basename "$deb")" test -f "$deb"

testbed_lock
testbed_cleanup >/dev/null 2>&1 || true
testbed_setup
for n in "${nodes[@]}"; do
    testbed_boot "$n"
    testbed_copy "$n" "$deb" "/root/$(basename "$deb")"
    check "$n: install" on "$n" "cd /root && DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y ./$(basename "$deb")"
    on "$n" "printf 'admin $TOKEN\n' >/etc/gearpump/tokens && chown root:gearpump /etc/gearpump/tokens && chmod 0640 /etc/gearpump/tokens"
    on "$n" "printf '$TOKEN\n' >/root/admin.token && chmod 0600 /root/admin.token"
    on "$n" "cat >$CONF" <<EOF
gearpump {
  hostname = "$n"
  cluster.masters = ["node1:$PORT", "node2:$PORT", "node3:$PORT"]
  master.auth.tokens-file = "/etc/gearpump/tokens"
}
EOF
    on "$n" "systemctl start --no-block $UNIT"
done
for n in "${nodes[@]}"; do check "$n: ready" wait_for 90 ready "$n"; done
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
    fresh_state "$n"
done
check "recover refuses while node1 runs (75)" on node1 \
    "$AS_SERVICE gearpump-master recover --force-new-cluster; [ \$? = 75 ]"
check "node1: stop" on node1 "timeout 60 systemctl stop $UNIT"
check "node1: recover --force-new-cluster" on node1 "$AS_SERVICE gearpump-master recover --force-new-cluster"
check "node1: starts alone (READY)" on node1 "timeout 120 systemctl start $UNIT"
check "node1: three applications" test "$(app_count node1)" = 3
check "node1: takes writes alone (app 4)" test "$(submit_id node1)" = 4
for n in node2 node3; do
    on "$n" "systemctl start --no-block $UNIT"
    check "add $n back" add_member node1 "$n"
    check "$n: ready" wait_for 90 ready "$n"
done
check "three voters" test "$(voters node1)" = 3
check "every master has the same state" wait_for 30 states_equal "${nodes[@]}"

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
check "the others still serve" bash -c "curl -sf --max-time 2 -o /dev/null http://node1:$PORT/health/ready"

summary

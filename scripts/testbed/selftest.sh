#!/bin/bash
# Self-test of the container testbed: three nodes boot, reach each other over the bridge, ssh
# from the host works, a crashed node reboots with its disk, a clean stop works, and cleanup
# leaves nothing behind. Run as root; prints PASS/FAIL lines and "N passed, N failed".
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/testbed/lib.sh
. "$here/lib.sh"
# shellcheck source=scripts/testbed/check.sh
. "$here/check.sh"

trap 'testbed_cleanup' EXIT
trap 'exit 130' INT TERM

tb_require_root
testbed_lock
testbed_cleanup # a previous run killed without its trap
testbed_setup

nodes=(node1 node2 node3)
start=$(date +%s%3N)
for n in "${nodes[@]}"; do
    testbed_boot "$n" &
done
wait
printf 'parallel boot of %s nodes: %s ms\n' "${#nodes[@]}" "$(($(date +%s%3N) - start))"

for n in "${nodes[@]}"; do
    check "$n running" testbed_running "$n"
    check "$n hostname" test "$(testbed_exec "$n" hostname)" = "$n"
    check "$n address $(testbed_ip "$n")" testbed_sh "$n" "ip -4 -o addr show host0 | grep -q ' $(testbed_ip "$n")/24 '"
    check "$n systemd state" testbed_sh "$n" 'systemctl is-system-running | grep -qx running'
    check "host pings $n" ping -c1 -W2 "$(testbed_ip "$n")"
    check "ssh root@$n" test "$(testbed_ssh "$n" hostname)" = "$n"
done
for a in "${nodes[@]}"; do
    for b in "${nodes[@]}"; do
        [[ $a == "$b" ]] && continue
        check "$a pings $b by name" testbed_exec "$a" ping -c1 -W2 "$b"
    done
done
check "machine-ids differ" test "$(for n in "${nodes[@]}"; do testbed_exec "$n" cat /etc/machine-id; done | sort -u | wc -l)" -eq 3

printf 'hello from the host\n' >"$TESTBED_RUN/hello.txt"
testbed_copy node1 "$TESTBED_RUN/hello.txt" /root/hello.txt 0600
check "copy into node1" test "$(testbed_exec node1 cat /root/hello.txt)" = "hello from the host"
check "copied file mode" test "$(testbed_exec node1 stat -c %a /root/hello.txt)" = 600

# crash: SIGKILL of the container's PID 1; the node reboots with its disk
old=$(testbed_pid1 node2)
t0=$SECONDS
testbed_exec node2 sh -c 'echo persisted >/root/state && sync'
check "crash node2" testbed_crash node2
check "node2 gone" bash -c "! kill -0 $old 2>/dev/null"
check "node1 loses node2" bash -c "! $here/testbed exec node1 ping -c1 -W1 node2"
check "reboot node2" testbed_boot node2
printf 'crash + reboot of node2: %s s\n' "$((SECONDS - t0))"
check "node2 kept its disk" test "$(testbed_exec node2 cat /root/state)" = persisted
check "node1 pings node2 again" testbed_exec node1 ping -c1 -W2 node2
check "ssh node2 after reboot" test "$(testbed_ssh node2 hostname)" = node2

# clean stop and restart
t0=$SECONDS
check "stop node3" testbed_stop node3
check "node3 stopped" bash -c "! $here/testbed exec node3 true 2>/dev/null"
printf 'clean stop of node3: %s s\n' "$((SECONDS - t0))"
check "restart node3" testbed_boot node3
check "node3 running again" testbed_running node3

# freeze / thaw, partition / heal
testbed_freeze node1
check "frozen node1 does not answer ssh" bash -c "! timeout 4 ssh -F $TESTBED_RUN/ssh/config -o ConnectTimeout=2 node1 true"
testbed_thaw node1
check "thawed node1 answers" testbed_ssh node1 true
testbed_partition node3
check "partitioned node3 unreachable" bash -c "! ping -c1 -W1 $(testbed_ip node3)"
testbed_heal node3
check "healed node3 reachable" bash -c "for i in 1 2 3 4 5; do ping -c1 -W1 $(testbed_ip node3) && exit 0; sleep 1; done; exit 1"

testbed_cleanup
left=$(testbed_leftovers)
check "cleanup leaves nothing behind" test -z "$left"
[[ -z $left ]] || printf '%s\n' "$left"
check "rootfs cache kept" test -s "$(testbed_rootfs_tarball)"
trap - EXIT
summary

#!/bin/bash
# gearpump-master under a real systemd, in containers booted by the project's testbed
# (scripts/testbed). Run as root:
#
#   tests/testbed/systemd_test.sh [--packages DIR] [--keep]
#
# Without --packages it runs scripts/build-packages.sh first (release build, incremental) and
# tests target/packages; with --packages DIR it tests DIR/gearpump-master_<version>-1_<arch>.deb
# and the matching .rpm as they are. Either way it makes an upgrade .deb with a higher version
# from the same binaries. Prints PASS/FAIL per check and ends with
# "N passed, N failed"; exits non-zero when anything failed. Everything it creates is removed by
# a trap, also on failure or Ctrl-C (--keep leaves the nodes running for inspection; clean up
# later with scripts/testbed/testbed cleanup).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=scripts/testbed/lib.sh
. "$root/scripts/testbed/lib.sh"
# shellcheck source=scripts/testbed/check.sh
. "$root/scripts/testbed/check.sh"

tb_test_args "$@"

UNIT=gearpump-master.service
PORT=3000
CONF=/etc/gearpump/gear.conf

tb_require_root
tb_test_traps

# ---------------------------------------------------------------- helpers

prop() { on "$1" "systemctl show -p $2 --value $UNIT"; }
elapsed_ms() { echo $(($(date +%s%3N) - $1)); }


ready() { curl -sf -o /dev/null --max-time 2 "http://$1:$PORT/health/ready"; }

write_conf() { # NODE MASTERS...: gear.conf naming NODE and the masters list
    local node=$1 list='' m
    shift
    for m in "$@"; do list+="${list:+, }\"$m:$PORT\""; done
    on "$node" "cat >$CONF" <<EOF
# written by systemd_test.sh
gearpump {
  hostname = "$node"
  cluster.masters = [$list]
}
EOF
}

# The leader the given masters all name, judged by `gear health` on the first of them (each
# master asked itself; every one ready, one leader in one term): its host name, or exit 1.
leader_of() {
    local list
    list=$(printf "%s:$PORT," "$@")
    on "$1" "gear --timeout 3 -m ${list%,} health --json" | jq -r '.leader // empty' | sed 's/:[0-9]*$//' | grep -E '^node[0-9]+$'
}

# ---------------------------------------------------------------- packages

ver=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/Cargo.toml" | head -n 1)
arch=$(dpkg --print-architecture)
deb=$pkgdir/gearpump-master_${ver}-1_${arch}.deb
rpm=$pkgdir/gearpump-master-${ver}-1.$(uname -m).rpm
if ((build)); then
    tb_log "building packages into $pkgdir"
    "$root/scripts/build-packages.sh" --out "$pkgdir" >&2
fi
up_ver="${ver}+upgradetest1"
updir=$pkgdir/upgrade-test
updeb=$updir/gearpump-master_${up_ver}-1_${arch}.deb
uprpm=$updir/gearpump-master-${up_ver}-1.$(uname -m).rpm
if [[ ! $updeb -nt $deb || ! $uprpm -nt $rpm ]]; then # same binaries, only the version differs
    "$root/scripts/build-packages.sh" --no-build --version "$up_ver" --out "$updir" >/dev/null
fi
check "packages: $(basename "$deb"), $(basename "$rpm"), upgrades $(basename "$updeb") $(basename "$uprpm")" \
    test -f "$deb" -a -f "$rpm" -a -f "$updeb" -a -f "$uprpm"

# ---------------------------------------------------------------- rpm and lintian (host)

testbed_host_packages
for p in rpm lintian; do
    command -v "$p" >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$p" >/dev/null
done
rpm_files=$(rpm -qpil "$rpm" 2>/dev/null || true)
for f in /usr/bin/gearpump-master /usr/bin/gear /usr/share/gearpump/bin/master /usr/share/gearpump/bin/gear \
    /etc/gearpump/gear.conf /usr/lib/systemd/system/gearpump-master.service \
    /usr/lib/sysusers.d/gearpump-master.conf /usr/lib/tmpfiles.d/gearpump-master.conf \
    /usr/share/man/man1/gearpump-master.1 /usr/share/man/man1/gear.1 \
    /usr/share/bash-completion/completions/gearpump-master /usr/share/bash-completion/completions/gear \
    /usr/share/zsh/site-functions/_gearpump-master /usr/share/zsh/site-functions/_gear; do
    check "rpm -qpil lists $f" grep -qx -- "$f" <<<"$rpm_files"
done
check "rpm: gear.conf is %config(noreplace)" bash -c \
    "rpm -qp --qf '[%{FILENAMES} %{FILEFLAGS:fflags}\n]' '$rpm' | grep -qx '/etc/gearpump/gear.conf cn'"
rpm_scripts=$(rpm -qp --scripts "$rpm" 2>/dev/null || true)
check "rpm %post enables on first install, creates the user" \
    grep -q 'systemctl --no-reload enable gearpump-master.service' <<<"$rpm_scripts"
check "rpm %post creates the user" grep -q 'systemd-sysusers gearpump-master.conf' <<<"$rpm_scripts"
check "rpm %preun stops and disables on erase" grep -q 'disable --now gearpump-master.service' <<<"$rpm_scripts"
check "rpm %postun restarts on upgrade" grep -q 'try-restart gearpump-master.service' <<<"$rpm_scripts"
check "lintian: no errors" lintian --fail-on error "$deb"

# ---------------------------------------------------------------- one node

testbed_lock
testbed_cleanup >/dev/null 2>&1 || true # a previous run killed without its trap
testbed_setup
t0=$(date +%s%3N)
testbed_boot node1
tb_log "node1 booted in $(elapsed_ms "$t0") ms"

testbed_copy node1 "$deb" "/root/$(basename "$deb")"
testbed_copy node1 "$updeb" "/root/$(basename "$updeb")"
check "apt install ./$(basename "$deb")" \
    on node1 "cd /root && DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y ./$(basename "$deb")"
check "unit enabled after install" on node1 "systemctl is-enabled $UNIT | grep -qx enabled"
check "unit not started by install" on node1 "! systemctl is-active --quiet $UNIT"
check "user gearpump exists" on node1 "id gearpump"
check "state and log dirs owned by gearpump" on node1 \
    "[ \"\$(stat -c %U:%a /var/lib/gearpump /var/log/gearpump | sort -u)\" = gearpump:750 ]"
for f in /usr/share/man/man1/gearpump-master.1.gz /usr/share/man/man1/gear.1.gz \
    /usr/share/bash-completion/completions/gearpump-master /usr/share/bash-completion/completions/gear \
    /usr/share/zsh/vendor-completions/_gearpump-master /usr/share/zsh/vendor-completions/_gear \
    /usr/share/gearpump/bin/master /usr/share/gearpump/bin/gear /usr/bin/gear; do
    check "deb installed $f" on node1 "test -s $f"
done
check "gear.conf is a conffile" on node1 "dpkg-query -W -f='\${Conffiles}' gearpump-master | grep -q $CONF"
check "systemd-analyze verify clean" on node1 "out=\$(systemd-analyze verify $UNIT 2>&1); echo \"\$out\"; [ -z \"\$out\" ]"
score=$(on node1 "systemd-analyze security $UNIT" | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
printf 'systemd-analyze security: %s\n' "${score:-?}"
check "systemd-analyze security <= 2.0 (got ${score:-none})" awk -v s="${score:-99}" 'BEGIN { exit !(s <= 2.0) }'
check "gearpump-master --check-config on the shipped gear.conf" on node1 "gearpump-master --config $CONF --check-config"
check "Gearpump launcher bin/master -ip -port" on node1 \
    "/usr/share/gearpump/bin/master -ip 127.0.0.1 -port $PORT --config $CONF --check-config"

write_conf node1 node1
t0=$(date +%s%3N)
check "systemctl start returns (single master)" on node1 "timeout 120 systemctl start $UNIT"
tb_log "start -> READY: $(elapsed_ms "$t0") ms"
check "Type=notify" test "$(prop node1 Type)" = notify
check "ActiveState=active" test "$(prop node1 ActiveState)" = active
wd=$(prop node1 WatchdogUSec)
check "WatchdogUSec set ($wd)" bash -c "[[ -n '$wd' && '$wd' != 0 && '$wd' != infinity ]]"
check "runs as gearpump" test "$(on node1 "ps -o user= -p \$(systemctl show -p MainPID --value $UNIT)" 2>/dev/null)" = gearpump
check "GET /health/ready from the host" wait_for 10 ready node1
check "GET /api/v1.0/master" curl -sf --max-time 2 -o /dev/null "http://node1:$PORT/api/v1.0/master"
check "journal has the master's own lines" on node1 \
    "[ \$(journalctl -q _SYSTEMD_UNIT=$UNIT -o cat | wc -l) -gt 0 ]"
check "journal entries sent natively (structured fields, _TRANSPORT=journal)" on node1 \
    "[ \$(journalctl -q _SYSTEMD_UNIT=$UNIT _TRANSPORT=journal -o cat | wc -l) -gt 0 ]"
check "STATUS= set by the daemon ($(prop node1 StatusText))" test -n "$(prop node1 StatusText)"
check "systemctl reload (SIGHUP) keeps it running" on node1 \
    "p=\$(systemctl show -p MainPID --value $UNIT); systemctl reload $UNIT && sleep 1 && systemctl is-active --quiet $UNIT && [ \"\$(systemctl show -p MainPID --value $UNIT)\" = \"\$p\" ]"

# watchdog: a frozen master is aborted and restarted
restarts=$(prop node1 NRestarts)
pid=$(prop node1 MainPID)
if [[ $pid =~ ^[1-9][0-9]*$ ]]; then
    on node1 "kill -STOP $pid"
    t0=$(date +%s%3N)
    wd_restart() { [[ $(prop node1 NRestarts) -gt $restarts && $(prop node1 ActiveState) == active ]]; }
    check "SIGSTOP: watchdog restarts the master (NRestarts $restarts -> more)" wait_for 60 wd_restart
    tb_log "watchdog restart after SIGSTOP: $(elapsed_ms "$t0") ms"
    check "journal says watchdog" on node1 "journalctl -q -u $UNIT | grep -qi 'watchdog timeout'"
    check "new MainPID after the watchdog" test "$(prop node1 MainPID)" != "$pid"
    on node1 "kill -CONT $pid 2>/dev/null || true"
else
    fail "SIGSTOP: watchdog restart (no MainPID: master not running)"
fi

# broken gear.conf: fails with the reason in the journal and is not restarted
on node1 "cp $CONF /root/gear.conf.good"
on node1 "printf 'gearpump {\n  cluster.masters = [ \"node1:3000\"\n' >$CONF"
on node1 "date +%s >/root/broken.since"
check "restart with a broken gear.conf fails" on node1 "! timeout 60 systemctl restart $UNIT"
sleep 6 # longer than RestartSec: a restart loop would show by now
check "unit failed" test "$(prop node1 ActiveState)" = failed
check "exit status 78" test "$(prop node1 ExecMainStatus)" = 78
# a manual (re)start resets NRestarts: any automatic restart since would make it 1 or more
check "no restart loop (NRestarts $(prop node1 NRestarts), want 0)" test "$(prop node1 NRestarts)" = 0
check "journal names the config error" on node1 \
    "journalctl -q -u $UNIT --since @\$(cat /root/broken.since) -o cat | grep -q 'gear.conf'"
on node1 "cp /root/gear.conf.good $CONF; systemctl reset-failed $UNIT"
check "starts again with the fixed gear.conf" on node1 "timeout 120 systemctl start $UNIT"

# clean stop
t0=$(date +%s%3N)
check "systemctl stop" on node1 "timeout 60 systemctl stop $UNIT"
stop_ms=$(elapsed_ms "$t0")
tb_log "stop: $stop_ms ms"
check "stop is quick (${stop_ms} ms < 10 s)" test "$stop_ms" -lt 10000
check "stop is clean (Result=success)" test "$(prop node1 Result)" = success
check "stopping left no process" on node1 "! pgrep -u gearpump"

# an upgrade (here: reinstalling the same version) leaves a stopped master stopped
check "reinstall while stopped" on node1 \
    "cd /root && DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y --reinstall ./$(basename "$deb")"
check "a stopped master stays stopped across an upgrade" on node1 "! systemctl is-active --quiet $UNIT"

# upgrade keeps an edited gear.conf and the state, restarts a running master
on node1 "echo '# edited by the admin' >>$CONF"
check "start before upgrade" on node1 "timeout 120 systemctl start $UNIT"
on node1 "touch /var/lib/gearpump/upgrade-marker; chown gearpump: /var/lib/gearpump/upgrade-marker"
on node1 "find /var/lib/gearpump -mindepth 1 | sort >/root/state.before"
pid=$(prop node1 MainPID)
check "apt install the upgrade ($up_ver)" on node1 \
    "cd /root && DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y ./$(basename "$updeb")"
check "upgraded version installed" on node1 "dpkg-query -W -f='\${Version}' gearpump-master | grep -qx '$up_ver-1'"
check "edited gear.conf kept" on node1 "grep -q 'edited by the admin' $CONF"
check "no .dpkg-dist/.dpkg-old left" on node1 "! ls /etc/gearpump/*.dpkg-* 2>/dev/null"
check "state kept ($(on node1 "wc -l </root/state.before") paths)" on node1 \
    "find /var/lib/gearpump -mindepth 1 | sort >/root/state.after; [ -z \"\$(comm -23 /root/state.before /root/state.after)\" ]"
check "still enabled after upgrade" on node1 "systemctl is-enabled $UNIT | grep -qx enabled"
check "running master restarted by the upgrade" bash -c \
    "[[ \$($root/scripts/testbed/testbed exec node1 systemctl is-active $UNIT) == active && \$($root/scripts/testbed/testbed exec node1 systemctl show -p MainPID --value $UNIT) != '$pid' ]]"

# remove keeps configuration and state; purge deletes them
check "apt remove" on node1 "DEBIAN_FRONTEND=noninteractive timeout 120 apt-get remove -y gearpump-master"
check "stopped by remove" on node1 "! systemctl is-active --quiet $UNIT; ! pgrep -u gearpump"
check "binary removed" on node1 "! test -e /usr/bin/gearpump-master"
check "remove keeps gear.conf" on node1 "grep -q 'edited by the admin' $CONF"
check "remove keeps the state" on node1 "test -e /var/lib/gearpump/upgrade-marker"
check "apt purge" on node1 "DEBIAN_FRONTEND=noninteractive timeout 120 apt-get purge -y gearpump-master"
check "purge deletes /etc/gearpump /var/lib/gearpump /var/log/gearpump" on node1 \
    "! test -e /etc/gearpump && ! test -e /var/lib/gearpump && ! test -e /var/log/gearpump"
check "purge leaves no enable link" on node1 "! ls /etc/systemd/system/*/gearpump-master.service 2>/dev/null"

# ---------------------------------------------------------------- the rpm's scriptlets, for real
# Debian's rpm installs into its own database (--force-debian; --nodeps: that database knows
# nothing of the dpkg-installed libc and systemd), which is enough to run the hand-written
# scriptlets under a real systemd.

testbed_boot node2
testbed_copy node2 "$rpm" "/root/$(basename "$rpm")"
testbed_copy node2 "$uprpm" "/root/$(basename "$uprpm")"
RPM="rpm --force-debian --nodeps"
check "rpm -i $(basename "$rpm")" on node2 "$RPM -i /root/$(basename "$rpm")"
check "rpm: unit enabled after install" on node2 "systemctl is-enabled $UNIT | grep -qx enabled"
check "rpm: unit not started by install" on node2 "! systemctl is-active --quiet $UNIT"
check "rpm: user gearpump and its directories" on node2 \
    "id gearpump && [ \"\$(stat -c %U:%a /var/lib/gearpump /var/log/gearpump | sort -u)\" = gearpump:750 ]"
write_conf node2 node2
on node2 "echo '# edited by the admin' >>$CONF"
check "rpm: systemctl start" on node2 "timeout 120 systemctl start $UNIT"
pid=$(prop node2 MainPID)
check "rpm -U to $up_ver" on node2 "$RPM -U /root/$(basename "$uprpm")"
check "rpm: upgraded" on node2 "rpm -q gearpump-master | grep -q '$up_ver'"
check "rpm: edited gear.conf kept on upgrade" on node2 "grep -q 'edited by the admin' $CONF"
node2_restarted() { [[ $(prop node2 ActiveState) == active && $(prop node2 MainPID) != "$pid" ]]; }
check "rpm: running master restarted by the upgrade" wait_for 30 node2_restarted
check "rpm -e" on node2 "$RPM -e gearpump-master"
check "rpm: stopped and disabled by erase" on node2 \
    "! systemctl is-active --quiet $UNIT && ! pgrep -u gearpump && ! ls /etc/systemd/system/*/$UNIT 2>/dev/null"
check "rpm: erase keeps the state" on node2 "test -d /var/lib/gearpump"
check "rpm: erase keeps the edited gear.conf as .rpmsave" on node2 "grep -q 'edited by the admin' $CONF.rpmsave"
# node2 joins the cluster below as a fresh master
on node2 "rm -rf /etc/gearpump /var/lib/gearpump /var/log/gearpump"

# ---------------------------------------------------------------- three masters

nodes=(node1 node2 node3)
testbed_boot node3
for n in "${nodes[@]}"; do
    [[ $n == node1 ]] || testbed_copy "$n" "$deb" "/root/$(basename "$deb")"
    check "$n: install" on "$n" "cd /root && DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y ./$(basename "$deb")"
    write_conf "$n" "${nodes[@]}"
done
# A first master alone waits for its quorum without being killed by the start timeout: the
# daemon extends it (EXTEND_TIMEOUT_USEC). TimeoutStartSec is cut to 5 s here to show it.
on node1 "mkdir -p /run/systemd/system/$UNIT.d && printf '[Service]\nTimeoutStartSec=5s\n' >/run/systemd/system/$UNIT.d/test-timeout.conf && systemctl daemon-reload"
on node1 "systemctl start --no-block $UNIT"
sleep 12
check "alone: node1 still starting after 12 s > TimeoutStartSec=5s ($(prop node1 ActiveState))" \
    test "$(prop node1 ActiveState)" = activating
check "alone: no restart meanwhile" test "$(prop node1 NRestarts)" = 0
status=$(prop node1 StatusText)
check "alone: STATUS= says what it waits for ($status)" test -n "$status"
check "alone: not ready" bash -c "! curl -sf -o /dev/null --max-time 2 http://node1:$PORT/health/ready"
t0=$(date +%s%3N)
pids=()
for n in node2 node3; do
    on "$n" "timeout 180 systemctl start $UNIT" &
    pids+=($!)
done
for i in 0 1; do
    rc=0
    wait "${pids[$i]}" || rc=$?
    n=node$((i + 2))
    if ((rc == 0)); then pass "$n: systemctl start returns (3 masters)"; else fail "$n: systemctl start (exit $rc)"; fi
done
node1_active() { [[ $(prop node1 ActiveState) == active ]]; }
check "node1: READY once the others are up" wait_for 60 node1_active
tb_log "3 masters READY: $(elapsed_ms "$t0") ms after the 2nd and 3rd were started"
on node1 "rm -r /run/systemd/system/$UNIT.d && systemctl daemon-reload"
for n in "${nodes[@]}"; do
    check "$n: active" test "$(prop "$n" ActiveState)" = active
    check "$n: /health/ready" wait_for 20 ready "$n"
done
leader=''
if wait_for 20 leader_of "${nodes[@]}"; then leader=$(leader_of "${nodes[@]}" || true); fi
check "a leader is known (${leader:-none})" test -n "$leader"
if [[ -n $leader ]]; then
    others=()
    for n in "${nodes[@]}"; do [[ $n == "$leader" ]] || others+=("$n"); done
    t0=$(date +%s%3N)
    testbed_crash "$leader"
    for n in "${others[@]}"; do
        check "after crashing $leader: $n still serves /health/ready" wait_for 30 ready "$n"
    done
    new_leader() { local l; l=$(leader_of "${others[@]}") && [[ $l != "$leader" ]]; }
    check "a new leader among ${others[*]}" wait_for 30 new_leader
    tb_log "fail-over seen from the host after $(elapsed_ms "$t0") ms (polling, not a benchmark)"
    t0=$(date +%s%3N)
    testbed_boot "$leader"
    check "$leader: rebooted, master starts on boot" wait_for 120 bash -c \
        "[[ \$($root/scripts/testbed/testbed exec $leader systemctl is-active $UNIT) == active ]]"
    check "$leader: rejoined (/health/ready)" wait_for 60 ready "$leader"
    tb_log "$leader rejoined $(elapsed_ms "$t0") ms after its reboot began"
    for n in "${nodes[@]}"; do check "$n: ready after the rejoin" wait_for 20 ready "$n"; done

    # planned stop of the leader: it hands over first, so the others barely notice
    leader=''
    if wait_for 20 leader_of "${nodes[@]}"; then leader=$(leader_of "${nodes[@]}" || true); fi
    if [[ -n $leader ]]; then
        others=()
        for n in "${nodes[@]}"; do [[ $n == "$leader" ]] || others+=("$n"); done
        t0=$(date +%s%3N)
        check "systemctl stop on the leader ($leader)" on "$leader" "timeout 60 systemctl stop $UNIT"
        stop_ms=$(elapsed_ms "$t0")
        check "leader stop is quick (${stop_ms} ms < 10 s)" test "$stop_ms" -lt 10000
        check "leader stop is clean (Result=success)" test "$(prop "$leader" Result)" = success
        check "journal: leadership handed over" on "$leader" \
            "journalctl -q -u $UNIT -o cat | grep -qi 'handed leadership over'"
        for n in "${others[@]}"; do check "after stopping $leader: $n ready" wait_for 10 ready "$n"; done
        new_leader() { local l; l=$(leader_of "${others[@]}") && [[ $l != "$leader" ]]; }
        check "a new leader after the planned stop" wait_for 10 new_leader
    else
        fail "planned stop of the leader (no leader found)"
    fi
else
    fail "crash the leader's node (no leader found)"
fi

summary

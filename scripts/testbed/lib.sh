# shellcheck shell=bash
# shellcheck disable=SC2016 # single-quoted scripts (mmdebstrap hooks, sh -c) expand later, inside
# Container testbed for gearpump-master: Debian nodes that boot systemd as PID 1 under
# systemd-nspawn, on a bridge this harness creates. Source this file (tests do) or use the
# `testbed` command next to it. Everything runs as root.
#
# Facts this relies on (verified on the project's Firecracker VMs, see
# ../shared/notes/testbed.md): PID 1 of the host is not systemd and there is no host D-Bus, so
# nspawn needs --register=no --keep-unit, every container gets its own cgroups, and commands run
# inside a node through nsenter into the container's PID 1 (or over ssh).
#
# Layout (all removed by testbed_cleanup, except the cache):
#   $TESTBED_CACHE/rootfs-<key>.tar      Debian root filesystem, built once per package list
#   $TESTBED_CACHE/rootfs-<key>.d         the same, extracted: the lower dir all nodes share
#   $TESTBED_RUN/nodes/NODE/{upper,work,merged,nspawn.pid,console.log}
#   $TESTBED_RUN/ssh/{id_ed25519,known_hosts,config}
#   bridge $TESTBED_BRIDGE, veths vb-NODE, cgroups nspawn-NODE, a marked block in /etc/hosts

TESTBED_SUITE=${TESTBED_SUITE:-bookworm}
TESTBED_CACHE=${TESTBED_CACHE:-/var/cache/gearpump-testbed}
TESTBED_RUN=${TESTBED_RUN:-/var/lib/gearpump-testbed}
TESTBED_BRIDGE=${TESTBED_BRIDGE:-gpbr0}
# First three octets of the bridge's /24; the host is .1, nodeN is .(10+N).
TESTBED_NET=${TESTBED_NET:-10.231.0}
# Names node1..nodeN are written into every node's /etc/hosts and the host's.
TESTBED_NODES=${TESTBED_NODES:-3}
# Extra bind mounts for every node, space separated, nspawn syntax HOSTDIR:CONTAINERDIR.
TESTBED_BINDS=${TESTBED_BINDS:-}
TESTBED_BOOT_TIMEOUT=${TESTBED_BOOT_TIMEOUT:-90}

# Packages of the node image. Changing this list (or the recipe below) changes the cache key.
TESTBED_PACKAGES=(
    systemd systemd-sysv dbus libpam-systemd openssh-server iproute2 iputils-ping procps
    curl ca-certificates jq less rpm sudo
    # gearpump-worker depends on a Java runtime; the nodes cannot reach a mirror to fetch one
    default-jre-headless
)
# Host tools the harness needs; installed when missing (CI starts from a fresh machine).
TESTBED_HOST_PACKAGES=(
    mmdebstrap systemd-container iptables nftables openssh-client iproute2 util-linux
    procps curl tar iputils-ping
)
# Bumped whenever the image recipe in testbed_build_rootfs changes meaning.
TESTBED_RECIPE=3

TESTBED_HOSTS_BEGIN="# BEGIN gearpump-testbed (removed by its cleanup)"
TESTBED_HOSTS_END="# END gearpump-testbed"
TESTBED_INNER_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# One testbed per machine at a time (node names, veths, cgroups and /etc/hosts entries are
# global): a test run holds this lock from start to end.
TESTBED_LOCK=${TESTBED_LOCK:-/run/lock/gearpump-testbed.lock}
TESTBED_LOCK_FD=209
# Seconds a run waits for another run to finish (0: fail at once).
TESTBED_LOCK_WAIT=${TESTBED_LOCK_WAIT:-0}

tb_log() { printf '[testbed %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
tb_die() { tb_log "ERROR: $*"; return 1; }

tb_require_root() {
    [[ $(id -u) -eq 0 ]] || tb_die "must run as root"
}

# node name -> index; only node1..node99 are valid names.
tb_index() {
    local node=$1
    [[ $node =~ ^node([1-9][0-9]?)$ ]] || tb_die "bad node name '$node' (want node1..node99)" || return 1
    printf '%s\n' "${BASH_REMATCH[1]}"
}

testbed_ip() {
    local i
    i=$(tb_index "$1") || return 1
    printf '%s.%s\n' "$TESTBED_NET" "$((10 + i))"
}

tb_node_dir() { printf '%s/nodes/%s\n' "$TESTBED_RUN" "$1"; }

# ---------------------------------------------------------------- host packages

testbed_host_packages() {
    local missing=() p
    for p in "${TESTBED_HOST_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' \
            || missing+=("$p")
    done
    ((${#missing[@]} == 0)) && return 0
    tb_log "installing host packages: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# ---------------------------------------------------------------- root filesystem

# Writes the host's own apt sources for $TESTBED_SUITE (deb822 stanzas and one-line entries)
# to stdout. Never a hard-coded mirror: the testbed uses whatever this machine uses.
tb_host_sources() {
    local f
    shopt -s nullglob
    for f in /etc/apt/sources.list.d/*.sources; do
        # keep paragraphs of Types: deb whose Suites mention the suite
        awk -v suite="$TESTBED_SUITE" '
            BEGIN { RS = ""; ORS = "\n\n" }
            /(^|\n)Types:[^\n]*(^| )deb( |\n|$)/ && /(^|\n)Suites:[^\n]*/ {
                if (match($0, /(^|\n)Suites:[^\n]*/)) {
                    s = substr($0, RSTART, RLENGTH)
                    if (index(s, suite)) print
                }
            }' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -f $f ]] || continue
        grep -E "^deb[[:space:]].*[[:space:]]${TESTBED_SUITE}([-/][a-z]+)?[[:space:]]" "$f" || true
    done
    shopt -u nullglob
}

# Cache key: the package list, the sources, the suite, the recipe version, the architecture.
tb_rootfs_key() {
    {
        printf '%s\n' "$TESTBED_SUITE" "$TESTBED_RECIPE" "$(dpkg --print-architecture)"
        printf '%s\n' "${TESTBED_PACKAGES[@]}"
        tb_host_sources
    } | sha256sum | cut -c1-16
}

testbed_rootfs_tarball() { printf '%s/rootfs-%s.tar\n' "$TESTBED_CACHE" "$(tb_rootfs_key)"; }

# Builds the tarball unless the cache has it.
testbed_build_rootfs() {
    local tarball sources includes
    tarball=$(testbed_rootfs_tarball)
    if [[ -s $tarball ]]; then
        tb_log "rootfs cached: $tarball"
        return 0
    fi
    mkdir -p "$TESTBED_CACHE"
    sources=$(mktemp "$TESTBED_CACHE/sources.XXXXXX")
    tb_host_sources >"$sources"
    [[ -s $sources ]] || { rm -f "$sources"; tb_die "no '$TESTBED_SUITE' entries in the host's apt sources"; return 1; }
    includes=$(IFS=,; printf '%s' "${TESTBED_PACKAGES[*]}")
    tb_log "building rootfs ($TESTBED_SUITE minbase + $includes) -> $tarball"
    local start=$SECONDS
    # Hooks run on the host with the chroot as $1:
    #  - systemd-networkd configures host0 from the per-node file in the upper dir;
    #  - no shared ssh host keys (each node gets its own at first boot preparation);
    #  - sshd: key authentication only, only the ed25519 host key, no DNS lookups.
    if ! mmdebstrap --variant=minbase --format=tar --include="$includes" \
        --aptopt='Acquire::Check-Valid-Until "false"' \
        --customize-hook='chroot "$1" systemctl enable systemd-networkd.service' \
        --customize-hook='rm -f "$1"/etc/ssh/ssh_host_*' \
        --customize-hook='printf "%s\n" "HostKey /etc/ssh/ssh_host_ed25519_key" "PasswordAuthentication no" "UseDNS no" >"$1/etc/ssh/sshd_config.d/testbed.conf"' \
        --customize-hook=': >"$1/etc/machine-id"' \
        "$TESTBED_SUITE" "$tarball.tmp" "$sources"; then
        rm -f "$sources" "$tarball.tmp"
        tb_die "mmdebstrap failed"
        return 1
    fi
    rm -f "$sources"
    mv "$tarball.tmp" "$tarball"
    # one image in the cache: tarballs of other package lists go (their .d with the next extract)
    local other
    for other in "$TESTBED_CACHE"/rootfs-*.tar; do
        [[ $other == "$tarball" ]] || rm -f "$other"
    done
    tb_log "rootfs built in $((SECONDS - start)) s ($(du -h "$tarball" | cut -f1))"
}

# The extracted image: the read-only lower dir all nodes share. It lives in the cache next to
# its tarball (extracting takes seconds and deleting 270 MB of small files up to half a minute
# on a busy disk, so it is kept across runs like the tarball).
tb_lower() {
    local tarball
    tarball=$(testbed_rootfs_tarball)
    printf '%s\n' "${tarball%.tar}.d"
}

tb_extract_rootfs() {
    local tarball lower old
    tarball=$(testbed_rootfs_tarball)
    lower=$(tb_lower)
    [[ -f $lower.ok ]] && return 0
    # images of other package lists are pruned, unless a mounted overlay still uses one
    shopt -s nullglob
    for old in "$TESTBED_CACHE"/rootfs-*.d; do
        [[ $old == "$lower" ]] && continue
        grep -qs "lowerdir=$old," /proc/mounts && continue
        rm -rf --one-file-system "$old" "$old.ok"
    done
    shopt -u nullglob
    rm -rf --one-file-system "$lower"
    mkdir -p "$lower"
    tar --numeric-owner --xattrs --xattrs-include='*' -C "$lower" -xpf "$tarball"
    touch "$lower.ok"
}

# ---------------------------------------------------------------- network, names, keys

tb_bridge_up() {
    if ! ip link show "$TESTBED_BRIDGE" >/dev/null 2>&1; then
        ip link add "$TESTBED_BRIDGE" type bridge
        ip addr add "$TESTBED_NET.1/24" dev "$TESTBED_BRIDGE"
    fi
    ip link set "$TESTBED_BRIDGE" up
}

tb_hosts_lines() {
    local i
    for ((i = 1; i <= TESTBED_NODES; i++)); do
        printf '%s.%s\tnode%s\n' "$TESTBED_NET" "$((10 + i))" "$i"
    done
}

# Rewrites a hosts file in place (it may be a bind mount: never rename over it) without our
# block; with "add", appends a fresh block.
tb_hosts_edit() {
    local file=$1 mode=$2 kept
    [[ -f $file ]] || return 0
    kept=$(awk -v b="$TESTBED_HOSTS_BEGIN" -v e="$TESTBED_HOSTS_END" '
        $0 == b { skip = 1; next } $0 == e { skip = 0; next } !skip' "$file")
    {
        printf '%s\n' "$kept"
        if [[ $mode == add ]]; then
            printf '%s\n' "$TESTBED_HOSTS_BEGIN"
            tb_hosts_lines
            printf '%s\n' "$TESTBED_HOSTS_END"
        fi
    } >"$file"
}

tb_ssh_setup() {
    local d=$TESTBED_RUN/ssh
    mkdir -p "$d"
    chmod 700 "$d"
    [[ -f $d/id_ed25519 ]] || ssh-keygen -q -t ed25519 -N '' -C gearpump-testbed -f "$d/id_ed25519"
    touch "$d/known_hosts"
    cat >"$d/config" <<EOF
Host node* $TESTBED_NET.*
    User root
    IdentityFile $d/id_ed25519
    IdentitiesOnly yes
    UserKnownHostsFile $d/known_hosts
    StrictHostKeyChecking yes
    BatchMode yes
    ConnectTimeout 5
    LogLevel ERROR
EOF
}

# Takes the machine-wide testbed lock for the rest of this shell's life; fails at once when
# another run holds it (rather than tearing down that run's nodes).
testbed_lock() {
    mkdir -p "$(dirname "$TESTBED_LOCK")"
    eval "exec $TESTBED_LOCK_FD>>\"\$TESTBED_LOCK\""
    if ! flock -n "$TESTBED_LOCK_FD"; then
        local holder
        holder=$(cat "$TESTBED_LOCK.pid" 2>/dev/null || echo '?')
        if ((TESTBED_LOCK_WAIT > 0)); then
            tb_log "waiting up to $TESTBED_LOCK_WAIT s for the testbed run of pid $holder to finish"
        fi
        if ((TESTBED_LOCK_WAIT <= 0)) || ! flock -w "$TESTBED_LOCK_WAIT" "$TESTBED_LOCK_FD"; then
            tb_die "another testbed run holds $TESTBED_LOCK (pid $holder)"
            return 1
        fi
    fi
    printf '%s\n' "$$" >"$TESTBED_LOCK.pid"
    # exported: the test's own children (e.g. the testbed command) act under this lock
    export TESTBED_LOCKED=1
}

# True unless some other run holds the testbed lock.
tb_lock_free() {
    [[ ${TESTBED_LOCKED:-0} == 1 || ! -e $TESTBED_LOCK ]] && return 0
    (flock -n 8) 8>>"$TESTBED_LOCK"
}

# Refuses (returns 1) when another run holds the lock: changing its nodes under it would break it.
tb_require_lock_free() {
    tb_lock_free && return 0
    tb_die "a testbed run (pid $(cat "$TESTBED_LOCK.pid" 2>/dev/null || echo '?')) holds $TESTBED_LOCK: not touching its nodes"
}

# One-time preparation of the host for this run: packages, image, bridge, names, ssh key.
testbed_setup() {
    tb_require_root || return 1
    testbed_host_packages
    mkdir -p "$TESTBED_RUN/nodes"
    testbed_build_rootfs
    tb_extract_rootfs
    tb_ssh_setup
    tb_bridge_up
    tb_hosts_edit /etc/hosts add
}

# ---------------------------------------------------------------- nodes

tb_is_mounted() { mountpoint -q "$1"; }

# Writes the node's identity into its overlay (through the merged dir, so overlayfs copies up
# with the right ownership and modes). Done once; a node keeps its upper dir across reboots.
tb_prepare_node() {
    local node=$1 dir m ip i
    dir=$(tb_node_dir "$node")
    m=$dir/merged
    ip=$(testbed_ip "$node")
    i=$(tb_index "$node")
    ((i <= TESTBED_NODES)) || tb_die "$node is beyond TESTBED_NODES=$TESTBED_NODES" || return 1
    mkdir -p "$dir/upper" "$dir/work" "$m"
    if ! tb_is_mounted "$m"; then
        mount -t overlay "overlay-$node" \
            -o "lowerdir=$(tb_lower),upperdir=$dir/upper,workdir=$dir/work" "$m"
    fi
    [[ -f $dir/prepared ]] && return 0
    printf '%s\n' "$node" >"$m/etc/hostname"
    systemd-id128 new >"$m/etc/machine-id"
    {
        printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n'
        tb_hosts_lines
    } >"$m/etc/hosts"
    mkdir -p "$m/etc/systemd/network"
    cat >"$m/etc/systemd/network/10-host0.network" <<EOF
[Match]
Name=host0

[Network]
Address=$ip/24
LinkLocalAddressing=no
IPv6AcceptRA=no
EOF
    install -d -m 700 "$m/root/.ssh"
    install -m 600 "$TESTBED_RUN/ssh/id_ed25519.pub" "$m/root/.ssh/authorized_keys"
    rm -f "$m/etc/ssh/ssh_host_ed25519_key" "$m/etc/ssh/ssh_host_ed25519_key.pub"
    ssh-keygen -q -t ed25519 -N '' -C "root@$node" -f "$m/etc/ssh/ssh_host_ed25519_key"
    # known_hosts: the node's name and address, so ssh checks host keys strictly
    # (nodes may boot in parallel: serialise the read-modify-write of the shared file)
    local kh=$TESTBED_RUN/ssh/known_hosts
    (
        flock 9
        tmp=$(grep -v -E "^${node},|^${ip} " "$kh" || true)
        {
            if [[ -n $tmp ]]; then printf '%s\n' "$tmp"; fi
            printf '%s,%s %s\n' "$node" "$ip" "$(cut -d' ' -f1,2 "$m/etc/ssh/ssh_host_ed25519_key.pub")"
        } >"$kh"
    ) 9>"$kh.lock"
    touch "$dir/prepared"
}

# cgroup directories for a node: its own in every hierarchy the notes name. The memory cgroup
# is nested under the caller's own memory cgroup so any limit on the caller still applies.
tb_cgroups() {
    local node=$1 mem
    mem=$(awk -F: '$2 == "memory" { print $3 }' /proc/self/cgroup)
    [[ $mem == / ]] && mem=
    printf '%s\n' "/sys/fs/cgroup/systemd/nspawn-$node" "/sys/fs/cgroup/unified/nspawn-$node" \
        "/sys/fs/cgroup/freezer/nspawn-$node" "/sys/fs/cgroup/memory$mem/nspawn-$node"
}

testbed_nspawn_pid() {
    local f pid
    f=$(tb_node_dir "$1")/nspawn.pid
    [[ -f $f ]] || return 1
    pid=$(<"$f")
    [[ -n $pid && -d /proc/$pid ]] && [[ $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) == *systemd-nspawn* ]] \
        || return 1
    printf '%s\n' "$pid"
}

# The container's PID 1 (as seen from the host): the child of nspawn whose innermost pid is 1.
testbed_pid1() {
    local nspawn c
    nspawn=$(testbed_nspawn_pid "$1") || return 1
    for c in $(pgrep -P "$nspawn" 2>/dev/null); do
        if awk '/^NSpid:/ { exit !($NF == 1) }' "/proc/$c/status" 2>/dev/null; then
            printf '%s\n' "$c"
            return 0
        fi
    done
    return 1
}

testbed_running() { testbed_pid1 "$1" >/dev/null 2>&1; }

# Boots NODE and waits until its systemd reports running (or degraded) and sshd answers.
testbed_boot() {
    local node=$1 dir cg b start=$SECONDS
    tb_require_root || return 1
    dir=$(tb_node_dir "$node")
    if testbed_running "$node"; then
        tb_log "$node already running"
        return 0
    fi
    [[ -f $(tb_lower).ok && -d $TESTBED_RUN/ssh ]] || tb_die "run testbed_setup first" || return 1
    tb_prepare_node "$node"
    mapfile -t cg < <(tb_cgroups "$node")
    local c
    for c in "${cg[@]}"; do mkdir -p "$c"; done
    local args=(--boot --register=no --keep-unit "--machine=$node" "--directory=$dir/merged"
        --console=read-only "--network-bridge=$TESTBED_BRIDGE" --link-journal=no)
    for b in $TESTBED_BINDS; do args+=("--bind=$b"); done
    rm -f "$dir/nspawn.pid"
    # The launching shell enters the node's cgroups, records its PID and becomes nspawn. setsid:
    # a Ctrl-C meant for the test must not reach nspawn (the test's trap stops nodes cleanly).
    # The outer ( ... & ) makes nspawn nobody's child here, so a caller's `wait` never waits for it.
    ( setsid bash -c '
        exec '"$TESTBED_LOCK_FD"'>&-
        pidfile=$1; shift
        n=$(($1)); shift
        for ((k = 0; k < n; k++)); do printf "%s\n" "$$" >"$1/cgroup.procs"; shift; done
        printf "%s\n" "$$" >"$pidfile"
        exec systemd-nspawn "$@"' testbed-launch "$dir/nspawn.pid" "${#cg[@]}" "${cg[@]}" "${args[@]}" \
        </dev/null >>"$dir/console.log" 2>&1 & )
    local pid1='' deadline=$((SECONDS + TESTBED_BOOT_TIMEOUT))
    while ((SECONDS < deadline)); do
        pid1=$(testbed_pid1 "$node" 2>/dev/null) && break
        sleep 0.1
    done
    [[ -n $pid1 ]] || { tail -20 "$dir/console.log" >&2; tb_die "$node: no container PID 1"; return 1; }
    local state=''
    while ((SECONDS < deadline)); do
        state=$(testbed_exec "$node" systemctl is-system-running 2>/dev/null) || true
        [[ $state == running || $state == degraded ]] && break
        sleep 0.2
    done
    if [[ $state != running && $state != degraded ]]; then
        tail -20 "$dir/console.log" >&2
        tb_die "$node: systemd did not finish booting (state '$state')"
        return 1
    fi
    [[ $state != degraded ]] || tb_log "$node degraded: $(testbed_exec "$node" systemctl --failed --plain --no-legend | tr '\n' ' ')"
    tb_log "$node up ($state, $(testbed_ip "$node")) in $((SECONDS - start)) s"
}

# Runs a command inside NODE (all namespaces of its PID 1), with a clean environment.
testbed_exec() {
    local node=$1 pid1
    shift
    pid1=$(testbed_pid1 "$node") || tb_die "$node is not running" || return 1
    nsenter -t "$pid1" -a -- env -i "PATH=$TESTBED_INNER_PATH" HOME=/root LANG=C.UTF-8 TERM=dumb "$@"
}

# Runs a shell script inside NODE.
testbed_sh() {
    local node=$1
    shift
    testbed_exec "$node" sh -c "$*"
}

# Copies a host file into a running NODE: testbed_copy NODE SRC DST [MODE].
testbed_copy() {
    local node=$1 src=$2 dst=$3 mode=${4:-0644}
    [[ -f $src ]] || tb_die "no such file: $src" || return 1
    testbed_exec "$node" sh -c 'mkdir -p "$(dirname "$1")" && cat >"$1" && chmod "$2" "$1"' sh "$dst" "$mode" <"$src"
}

testbed_ssh() {
    local node=$1
    shift
    ssh -F "$TESTBED_RUN/ssh/config" "$node" "$@"
}

tb_wait_exit() {
    local pid=$1 timeout=$2 deadline
    deadline=$((SECONDS + timeout))
    while [[ -d /proc/$pid ]] && ((SECONDS < deadline)); do sleep 0.1; done
    [[ ! -d /proc/$pid ]]
}

# Simulated power loss: SIGKILL the container's PID 1 (never nspawn itself, which would orphan
# the container). nspawn notices and exits; the overlay keeps the node's disk for a reboot.
testbed_crash() {
    local node=$1 nspawn pid1
    nspawn=$(testbed_nspawn_pid "$node") || tb_die "$node is not running" || return 1
    pid1=$(testbed_pid1 "$node") || tb_die "$node has no PID 1" || return 1
    kill -KILL "$pid1"
    tb_wait_exit "$nspawn" 20 || tb_die "$node: nspawn $nspawn still there 20 s after the crash" || return 1
    tb_log "$node crashed"
}

# Clean shutdown: SIGTERM to nspawn makes the container power off.
testbed_stop() {
    local node=$1 nspawn timeout=${2:-60}
    nspawn=$(testbed_nspawn_pid "$node") || { tb_log "$node not running"; return 0; }
    kill -TERM "$nspawn"
    if ! tb_wait_exit "$nspawn" "$timeout"; then
        tb_log "$node: no poweroff within $timeout s, crashing it"
        testbed_crash "$node"
        return 0
    fi
    tb_log "$node stopped"
}

testbed_restart() {
    testbed_stop "$1"
    testbed_boot "$1"
}

# Hung node: freeze every process of the container (TCP connects still succeed, nothing answers).
testbed_freeze() { printf 'FROZEN\n' >"/sys/fs/cgroup/freezer/nspawn-$1/freezer.state"; }
testbed_thaw() { printf 'THAWED\n' >"/sys/fs/cgroup/freezer/nspawn-$1/freezer.state"; }

# Whole-node partition: the host side of the node's veth goes down / up.
testbed_partition() { ip link set "vb-$1" down; }
testbed_heal() { ip link set "vb-$1" up; }

testbed_nodes() {
    local d
    shopt -s nullglob
    for d in "$TESTBED_RUN"/nodes/node*; do basename "$d"; done
    shopt -u nullglob
}

testbed_status() {
    local n
    for n in $(testbed_nodes); do
        if testbed_running "$n"; then
            printf '%s\t%s\trunning\tnspawn=%s pid1=%s\n' "$n" "$(testbed_ip "$n")" \
                "$(testbed_nspawn_pid "$n")" "$(testbed_pid1 "$n")"
        else
            printf '%s\t%s\tstopped\n' "$n" "$(testbed_ip "$n")"
        fi
    done
}

# Removes everything the harness made (nodes, mounts, cgroups, veths, bridge, /etc/hosts block,
# run dir) and keeps only the rootfs cache. Safe to call repeatedly and from a trap.
testbed_cleanup() {
    local n c pids nspawn start=$SECONDS
    tb_require_root || return 1
    tb_require_lock_free || return 1
    for n in $(testbed_nodes); do
        if nspawn=$(testbed_nspawn_pid "$n"); then
            kill -TERM "$nspawn" 2>/dev/null || true
        fi
    done
    for n in $(testbed_nodes); do
        if nspawn=$(testbed_nspawn_pid "$n"); then
            local t0=$SECONDS
            if ! tb_wait_exit "$nspawn" 30; then
                testbed_crash "$n" || true
            fi
            if ((SECONDS - t0 > 10)); then
                tb_log "$n took $((SECONDS - t0)) s to power off; its console:"
                tail -n 25 "$(tb_node_dir "$n")/console.log" | sed 's/\x1b\[[0-9;]*m//g' >&2 || true
            fi
        fi
    done
    # Anything still inside a node cgroup (a stray container, a failed launch) is killed.
    shopt -s nullglob
    for c in /sys/fs/cgroup/*/nspawn-node* /sys/fs/cgroup/memory/*/*/nspawn-node* /sys/fs/cgroup/memory/*/nspawn-node*; do
        if [[ -f $c/freezer.state ]]; then printf 'THAWED\n' >"$c/freezer.state" 2>/dev/null || true; fi
        pids=$(cat "$c/cgroup.procs" 2>/dev/null || true)
        # shellcheck disable=SC2086 # a list of pids
        if [[ -n $pids ]]; then kill -KILL $pids 2>/dev/null || true; fi
    done
    sleep 0.2
    for n in $(testbed_nodes); do
        local m
        m=$(tb_node_dir "$n")/merged
        if tb_is_mounted "$m"; then umount "$m" 2>/dev/null || umount -l "$m"; fi
        ip link del "vb-$n" 2>/dev/null || true
    done
    for c in /sys/fs/cgroup/*/nspawn-node* /sys/fs/cgroup/memory/*/*/nspawn-node* /sys/fs/cgroup/memory/*/nspawn-node*; do
        # nested cgroups first (systemd inside made its own tree)
        find "$c" -depth -mindepth 1 -type d -exec rmdir {} + 2>/dev/null || true
        rmdir "$c" 2>/dev/null || tb_log "could not remove cgroup $c"
    done
    shopt -u nullglob
    ip link del "$TESTBED_BRIDGE" 2>/dev/null || true
    tb_hosts_edit /etc/hosts remove
    if [[ -d $TESTBED_RUN ]]; then
        if grep -qs " $TESTBED_RUN/" /proc/mounts; then
            tb_log "mounts left under $TESTBED_RUN, not deleting it"
        else
            rm -rf --one-file-system "$TESTBED_RUN"
        fi
    fi
    tb_log "cleaned up in $((SECONDS - start)) s"
}

# Prints what is left of a testbed on this host (empty output = nothing).
testbed_leftovers() {
    ip -o link show 2>/dev/null | awk -F': ' '{ print $2 }' | grep -E "^(${TESTBED_BRIDGE}|vb-node)" || true
    grep -s -E " $TESTBED_RUN/| overlay-node" /proc/mounts || true
    find /sys/fs/cgroup -maxdepth 4 -type d -name 'nspawn-node*' 2>/dev/null || true
    grep -n -F "$TESTBED_HOSTS_BEGIN" /etc/hosts || true
    if [[ -e $TESTBED_RUN ]]; then printf '%s\n' "$TESTBED_RUN"; fi
    pgrep -a -f 'systemd-nspawn .*--machine=node' || true
}

# shellcheck shell=bash
# PASS/FAIL bookkeeping for testbed tests: `check NAME CMD...` runs CMD and records the result,
# `pass`/`fail` record one directly, `summary` prints "N passed, N failed" and returns non-zero
# when anything failed.
CHECK_PASSED=0
CHECK_FAILED=0
CHECK_FAILED_NAMES=()

pass() {
    CHECK_PASSED=$((CHECK_PASSED + 1))
    printf 'PASS: %s\n' "$*"
}

fail() {
    CHECK_FAILED=$((CHECK_FAILED + 1))
    CHECK_FAILED_NAMES+=("$1")
    printf 'FAIL: %s\n' "$*"
}

# check NAME CMD...: PASS when CMD exits 0; its output is shown only on failure.
check() {
    local name=$1 out rc=0
    shift
    out=$("$@" 2>&1) || rc=$?
    if ((rc == 0)); then
        pass "$name"
    else
        fail "$name" "(exit $rc)"
        [[ -z $out ]] || printf '%s\n' "$out" | tail -n 15 | sed 's/^/    | /'
    fi
    return 0
}

summary() {
    printf '%s passed, %s failed\n' "$CHECK_PASSED" "$CHECK_FAILED"
    if ((CHECK_FAILED > 0)); then
        printf 'failed: %s\n' "${CHECK_FAILED_NAMES[*]}"
        return 1
    fi
}

# ---------------------------------------------------------------- what every testbed test shares
# (sourced after lib.sh; the tests set `root` first)

# tb_test_args "$@": the tests' flags. --packages DIR uses packages built already (else the test
# builds them), --keep leaves the nodes running. Sets pkgdir, keep and build.
tb_test_args() {
    pkgdir=$root/target/packages keep=0 build=1
    while (($# > 0)); do
        case $1 in
            --packages) pkgdir=$(realpath "${2:?}"); build=0; shift 2 ;;
            --keep) keep=1; shift ;;
            *) echo "usage: $0 [--packages DIR] [--keep]" >&2; exit 2 ;;
        esac
    done
}

# tb_test_traps: on exit, whatever the outcome, remove the nodes and the test's `work` folder
# (when it set one), unless --keep.
tb_test_traps() {
    trap tb_test_on_exit EXIT
    trap 'exit 130' INT TERM
}

tb_test_on_exit() {
    local rc=$?
    if ((keep)); then
        tb_log "--keep: nodes left running; scripts/testbed/testbed cleanup removes them${work:+ ($work stays)}"
    else
        testbed_cleanup || true
        [[ -z ${work:-} ]] || rm -rf --one-file-system "$work"
    fi
    exit "$rc"
}

# on NODE SCRIPT: run a shell script in a node
on() { testbed_sh "$@"; }

# wait_for SECONDS CMD...: retries CMD every 0.5 s until it succeeds or the time is up
wait_for() {
    local deadline=$(($(date +%s) + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        (($(date +%s) < deadline)) || return 1
        sleep 0.5
    done
}

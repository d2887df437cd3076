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

#!/bin/bash
# Builds the .deb and .rpm of gearpump-master and of gearpump-worker (cargo-deb's and
# cargo-generate-rpm's `worker` variant, same binaries) into target/packages/.
#
#   scripts/build-packages.sh [--version V] [--no-build] [--lint] [--out DIR]
#
#   --version V   package version V instead of Cargo.toml's (deb: V-1, rpm: V-1), e.g. to make an
#                 upgrade package for tests; the build bakes V into the binaries (GEARPUMP_VERSION:
#                 --version and GET /api/v1.0/master report it); with --no-build the binaries
#                 keep the version they were built with (a warning says so when it differs)
#   --no-build    reuse target/release binaries (do not run cargo build)
#   --lint        run lintian on the .deb (installs it if missing; errors fail the build)
#   --out DIR     output directory (default target/packages)
#   --deb-only    skip the rpm
#
# Installs what it needs when missing: cargo-deb 3.x and cargo-generate-rpm 0.21 (cargo install
# --locked), dpkg-dev for cargo-deb's dependency detection.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

version='' build=1 lint=0 out=target/packages want_rpm=1
while (($# > 0)); do
    case $1 in
        --version) version=${2:?--version needs a value}; shift 2 ;;
        --no-build) build=0; shift ;;
        --lint) lint=1; shift ;;
        --out) out=${2:?--out needs a value}; shift 2 ;;
        --deb-only) want_rpm=0; shift ;;
        -h | --help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

log() { printf '[build-packages] %s\n' "$*" >&2; }

# cargo subcommand $1 from crate $2 at version requirement $3; $4 = expected version prefix
ensure_cargo_tool() {
    local sub=$1 crate=$2 req=$3 prefix=$4 have
    have=$(cargo "$sub" --version 2>/dev/null | awk '{ print $NF }') || true
    if [[ $have != "$prefix"* ]]; then
        log "installing $crate $req (found '${have:-none}')"
        cargo install --locked "$crate" --version "$req"
    fi
}

ensure_host_packages() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
    done
    ((${#missing[@]} == 0)) && return 0
    if [[ $(id -u) -ne 0 ]]; then
        log "missing host packages (${missing[*]}), not root: continuing without them"
        return 0
    fi
    log "installing host packages: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Man pages and bash/zsh completions, generated from the clap definitions by
# examples/generate_docs.rs into target/docs/{man,completions}; Cargo.toml's package metadata
# lists them as assets, so a failure here fails the build (no package without its man pages).
generate_man_and_completions() {
    log "generating man pages and completions (examples/generate_docs.rs) into target/docs"
    rm -rf target/docs
    cargo run --release --locked --quiet --example generate_docs -- target/docs >/dev/null
    local f
    for f in man/gearpump-master.1 man/gear.1 completions/gearpump-master.bash completions/gear.bash \
        completions/_gearpump-master completions/_gear; do
        [[ -s target/docs/$f ]] || { log "generator did not write target/docs/$f"; exit 1; }
    done
}

command -v dpkg-query >/dev/null && ensure_host_packages dpkg-dev
ensure_cargo_tool deb cargo-deb '^3' 3.
ensure_cargo_tool generate-rpm cargo-generate-rpm '~0.21' 0.21.

cargo_version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
# The version the binaries carry (wire::PACKAGE_VERSION); every cargo run below sees the same
# value, so the library is not compiled twice.
unset GEARPUMP_VERSION
[[ -z $version || $version == "$cargo_version" ]] || export GEARPUMP_VERSION=$version
if ((build)); then
    log "cargo build --release${GEARPUMP_VERSION:+ (version $GEARPUMP_VERSION)}"
    cargo build --release --locked --bins
fi
for b in gearpump-master gear gearpump-setup gearpump-worker; do
    [[ -x target/release/$b ]] || { log "target/release/$b missing (build first or drop --no-build)"; exit 1; }
done
baked=$(target/release/gearpump-master --version | awk '{ print $2 }')
if [[ $baked != "${version:-$cargo_version}" ]]; then
    log "warning: the binaries report version $baked, the packages say ${version:-$cargo_version} (--no-build keeps the binaries as built)"
fi
unset GEARPUMP_VERSION
[[ $baked == "$cargo_version" ]] || export GEARPUMP_VERSION=$baked
generate_man_and_completions

mkdir -p "$out"
rpm_version=${version:-$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)}
deb_args=(--no-build --output "$out")
rpm=$out/gearpump-master-$rpm_version-1.$(uname -m).rpm
rpm_args=(--output "$rpm")
if [[ -n $version ]]; then
    deb_args+=(--deb-version "$version-1")
    rpm_args+=(--set-metadata "version = \"$version\"")
fi
deb=$(cargo deb "${deb_args[@]}" | tail -n 1)
log "deb: $deb"
worker_deb=$(cargo deb --variant worker "${deb_args[@]}" | tail -n 1)
log "deb: $worker_deb"
worker_rpm=''
if ((want_rpm)); then
    cargo generate-rpm "${rpm_args[@]}"
    [[ -s $rpm ]] || { log "cargo generate-rpm did not write $rpm"; exit 1; }
    log "rpm: $rpm"
    worker_rpm=$out/gearpump-worker-$rpm_version-1.$(uname -m).rpm
    rpm_args[1]=$worker_rpm
    cargo generate-rpm --variant worker "${rpm_args[@]}"
    [[ -s $worker_rpm ]] || { log "cargo generate-rpm did not write $worker_rpm"; exit 1; }
    log "rpm: $worker_rpm"
else
    rpm=''
fi

if ((lint)); then
    ensure_host_packages lintian
    log "lintian $deb"
    # --fail-on error: warnings are explained in packaging/LINTIAN.md
    lintian --fail-on error --info "$deb" "$worker_deb"
fi
printf '%s\n' "$deb" "$worker_deb"
[[ -z $rpm ]] || printf '%s\n' "$rpm" "$worker_rpm"

#!/bin/bash
# Turns the built packages into signed package repositories in one folder that any static web
# server can serve, so nodes install gearpump-master and gearpump-worker by name:
#
#   scripts/build-repo.sh [--packages DIR]... [--out DIR] [--key-dir GNUPGHOME] [--key-id ID]
#
#   --packages DIR  the .deb and .rpm files in DIR (not its subfolders) go into the repository
#                   (repeatable, e.g. the previous release's folder and the new one, so both
#                   versions stay installable); default target/packages
#   --out DIR       the repository (default target/repo); rebuilt from the packages given, so a
#                   second run with the same input gives the same repository (new signatures)
#   --key-dir DIR   a GNUPGHOME holding the organisation's archive signing key (its secret key);
#                   without it a THROWAWAY key is made in target/repo-test-key for tests only
#   --key-id ID     which secret key of --key-dir signs (default: the only one there)
#
# The folder it writes:
#   dists/stable/{Release,InRelease,Release.gpg}   APT: `deb URL stable main`, signed by the key
#   dists/stable/main/binary-ARCH/Packages(.gz)
#   pool/main/g/<package>/*.deb
#   rpm/*.rpm, rpm/repodata/repomd.xml(.asc)       yum/dnf: baseurl=URL/rpm; the rpms are signed
#                                                  (rpmsign) and repomd.xml has a detached signature
#   gearpump-archive-keyring.gpg / .asc            the public key (binary for apt's Signed-By,
#                                                  ASCII for rpm --import and gearpump-setup
#                                                  --repo-key)
#
# Installs what it needs when missing (as root): apt-utils (apt-ftparchive), createrepo-c, gnupg,
# rpm (rpmsign).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

out=target/repo key_dir='' key_id='' package_dirs=()
while (($# > 0)); do
    case $1 in
        --packages) package_dirs+=("${2:?--packages needs a folder}"); shift 2 ;;
        --out) out=${2:?--out needs a folder}; shift 2 ;;
        --key-dir) key_dir=${2:?--key-dir needs a folder}; shift 2 ;;
        --key-id) key_id=${2:?--key-id needs a key id or fingerprint}; shift 2 ;;
        -h | --help) sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "build-repo.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
((${#package_dirs[@]} > 0)) || package_dirs=(target/packages)

log() { printf '[build-repo] %s\n' "$*" >&2; }
die() { printf 'build-repo.sh: %s\n' "$*" >&2; exit 1; }

ensure_host_packages() { # COMMAND:PACKAGE...
    local missing=() pair
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
    done
    ((${#missing[@]} == 0)) && return 0
    [[ $(id -u) -eq 0 ]] || die "missing tools; install them first: apt-get install ${missing[*]}"
    log "installing host packages: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# ---------------------------------------------------------------- the packages

debs=() rpms=()
for dir in "${package_dirs[@]}"; do
    [[ -d $dir ]] || die "--packages $dir: no such folder (build the packages with scripts/build-packages.sh)"
    for f in "$dir"/gearpump-master_*.deb "$dir"/gearpump-worker_*.deb; do [[ -f $f ]] && debs+=("$f"); done
    for f in "$dir"/gearpump-master-*.rpm "$dir"/gearpump-worker-*.rpm; do [[ -f $f ]] && rpms+=("$f"); done
done
((${#debs[@]} + ${#rpms[@]} > 0)) ||
    die "no gearpump-master or gearpump-worker package in ${package_dirs[*]}: run scripts/build-packages.sh first"

tools=(gpg:gnupg)
((${#debs[@]} == 0)) || tools+=(apt-ftparchive:apt-utils dpkg-deb:dpkg)
((${#rpms[@]} == 0)) || tools+=(createrepo_c:createrepo-c rpmsign:rpm)
ensure_host_packages "${tools[@]}"

# ---------------------------------------------------------------- the signing key

if [[ -n $key_dir ]]; then
    [[ -d $key_dir ]] || die "--key-dir $key_dir: no such folder (a GNUPGHOME with the archive's secret key)"
    GNUPGHOME=$(realpath "$key_dir")
else
    GNUPGHOME=$root/target/repo-test-key
    if [[ ! -s $GNUPGHOME/.throwaway ]]; then
        mkdir -p "$GNUPGHOME"
        chmod 700 "$GNUPGHOME"
        gpg --homedir "$GNUPGHOME" --batch --quiet --passphrase '' --quick-gen-key \
            'Gearpump test archive (THROWAWAY, tests only) <gearpump-test@localhost>' rsa3072 sign never
        echo 'a throwaway key for tests, made by scripts/build-repo.sh' >"$GNUPGHOME/.throwaway"
    fi
    log "************************************************************************************"
    log "NO --key-dir: signing with a THROWAWAY test key ($GNUPGHOME)."
    log "Never publish this repository: give --key-dir the organisation's archive key instead."
    log "************************************************************************************"
fi
export GNUPGHOME
mapfile -t secret_keys < <(gpg --batch --with-colons --list-secret-keys 2>/dev/null | awk -F: '$1 == "fpr" { print $10 }')
if [[ -z $key_id ]]; then
    case ${#secret_keys[@]} in
        0) die "no secret key in $GNUPGHOME: give --key-dir a GNUPGHOME holding the archive's secret key" ;;
        1) key_id=${secret_keys[0]} ;;
        *) die "$GNUPGHOME holds ${#secret_keys[@]} secret keys (${secret_keys[*]}): choose one with --key-id" ;;
    esac
elif ! gpg --batch --list-secret-keys "$key_id" >/dev/null 2>&1; then
    die "--key-id $key_id: no such secret key in $GNUPGHOME"
fi
sign() { gpg --batch --yes --quiet --local-user "$key_id" --digest-algo SHA512 "$@"; }

# ---------------------------------------------------------------- the repository

mkdir -p "$out"
out=$(realpath "$out")
# Built next to the target, then swapped in, so a server never serves half a repository.
stage=$(mktemp -d "$out.new.XXXXXX")
trap 'rm -rf --one-file-system "$stage"' EXIT

gpg --batch --export "$key_id" >"$stage/gearpump-archive-keyring.gpg"
gpg --batch --armor --export "$key_id" >"$stage/gearpump-archive-keyring.asc"

if ((${#debs[@]} > 0)); then
    archs=()
    for deb in "${debs[@]}"; do
        name=$(dpkg-deb --field "$deb" Package)
        arch=$(dpkg-deb --field "$deb" Architecture)
        mkdir -p "$stage/pool/main/g/$name"
        cp "$deb" "$stage/pool/main/g/$name/"
        [[ $arch == all || " ${archs[*]} " == *" $arch "* ]] || archs+=("$arch")
    done
    ((${#archs[@]} > 0)) || archs=(amd64 arm64) # only arch: all packages
    for arch in "${archs[@]}"; do
        dir=$stage/dists/stable/main/binary-$arch
        mkdir -p "$dir"
        (cd "$stage" && apt-ftparchive --arch "$arch" packages pool) >"$dir/Packages"
        gzip -9n <"$dir/Packages" >"$dir/Packages.gz"
    done
    (cd "$stage" && apt-ftparchive \
        -o APT::FTPArchive::Release::Origin=Gearpump \
        -o APT::FTPArchive::Release::Label=Gearpump \
        -o APT::FTPArchive::Release::Suite=stable \
        -o APT::FTPArchive::Release::Codename=stable \
        -o APT::FTPArchive::Release::Components=main \
        -o "APT::FTPArchive::Release::Architectures=${archs[*]}" \
        -o APT::FTPArchive::Release::Description='Gearpump master and worker packages' \
        release dists/stable) >"$stage/Release.tmp"
    mv "$stage/Release.tmp" "$stage/dists/stable/Release"
    sign --clearsign --output "$stage/dists/stable/InRelease" "$stage/dists/stable/Release"
    sign --armor --detach-sign --output "$stage/dists/stable/Release.gpg" "$stage/dists/stable/Release"
    gpgv --keyring "$stage/gearpump-archive-keyring.gpg" "$stage/dists/stable/InRelease" 2>/dev/null ||
        die "the InRelease just signed does not verify with the exported key: is $key_id a signing key?"
    log "APT: ${#debs[@]} package(s) for ${archs[*]}: deb [signed-by=/usr/share/keyrings/gearpump-archive-keyring.gpg] URL stable main"
fi

if ((${#rpms[@]} > 0)); then
    mkdir -p "$stage/rpm"
    cp "${rpms[@]}" "$stage/rpm/"
    # rpm verifies package signatures with the key imported from gpgkey= (gpgcheck=1); the
    # copies are signed, the files under --packages stay as they were built.
    rpmsign --addsign --define "__gpg $(command -v gpg)" --define "_gpg_name $key_id" --define "_gpg_path $GNUPGHOME" "$stage"/rpm/*.rpm 2>&1 >/dev/null | { grep -v GPG_TTY >&2 || true; }
    createrepo_c --quiet --simple-md-filenames "$stage/rpm" >/dev/null
    sign --armor --detach-sign --output "$stage/rpm/repodata/repomd.xml.asc" "$stage/rpm/repodata/repomd.xml"
    log "yum/dnf: ${#rpms[@]} signed package(s), signed repomd.xml: baseurl=URL/rpm, gpgcheck=1, repo_gpgcheck=1"
fi

rm -rf --one-file-system "$out.old"
mv "$out" "$out.old"
mv "$stage" "$out"
rm -rf --one-file-system "$out.old"
chmod -R a+rX "$out"
trap - EXIT
log "repository in $out (signed by $key_id); serve it with any static web server, e.g."
log "  python3 -m http.server --directory $out 8080"
printf '%s\n' "$out"

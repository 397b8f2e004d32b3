#!/usr/bin/env bash
# Try the README on a freshly installed Debian (or Ubuntu) root, built by debootstrap.
#
#   tools/fresh-debian.sh SUITE [STEP...]        (as root, on a Debian host)
#
# SUITE is bookworm (Debian 12), trixie (Debian 13) or noble (Ubuntu 24.04).
# STEPs, run in order inside a fresh copy of the debootstrapped root (default: demo):
#   demo      the README's prerequisite line, a clone into /root, `make demo`
#   test      the same, then `make test`
#   install   the README's production install (`make install`), then checks what it made
#   pytest    `make test-deps venv`, then pytest on $PYTEST_ARGS (a rerun of some files)
#   shell     an interactive shell in the root, after the steps before it
# Each step's wall time is printed and appended to $FRESH_DIR/times.txt.
#
# The base root is cached in $FRESH_DIR/SUITE.base (delete it to rebuild); every run
# starts from a new copy of it, so a run never sees what an earlier one installed.
# The clone is of this repository's HEAD: commit before trying a change.
#
# How the root reaches the registries: the host's apt sources decide the mirror (the
# Debian and Ubuntu archives over plain HTTP, as debootstrap sets them), and this
# machine's pip configuration (/etc/pip.conf, /etc/xdg/pip, ~/.config/pip, ~/.pip, the
# PIP_* variables) and CA bundle are copied in, so pip inside goes where pip outside goes.
set -euo pipefail

SUITE=${1:?usage: $0 bookworm|trixie|noble [demo|test|install|pytest|shell]...}
shift
STEPS=("$@")
[ ${#STEPS[@]} -gt 0 ] || STEPS=(demo)
FRESH_DIR=${FRESH_DIR:-/var/tmp/anycast-fresh}
REPO=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
# The one prerequisite line, as the README states it (checked below, so they agree).
PREREQ='apt-get update && apt-get install -y --no-install-recommends ca-certificates git make'

case $SUITE in
bookworm | trixie)
    MIRROR=http://deb.debian.org/debian
    COMPONENTS=main
    KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
    ;;
noble)
    MIRROR=http://archive.ubuntu.com/ubuntu
    COMPONENTS=main,universe
    KEYRING=/usr/share/keyrings/ubuntu-archive-keyring.gpg
    ;;
*)
    echo "unknown suite: $SUITE (bookworm, trixie or noble)" >&2
    exit 2
    ;;
esac

if ! grep -qF "$PREREQ" "$REPO/README.md"; then
    echo "README.md no longer states the prerequisite line this script runs:" >&2
    echo "  $PREREQ" >&2
    exit 2
fi
for step in "${STEPS[@]}"; do
    case $step in demo | test | install | pytest | shell) ;; *)
        echo "unknown step: $step (demo, test, install, pytest or shell)" >&2
        exit 2
        ;;
    esac
done

need() { command -v "$1" >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$2"; }
need debootstrap debootstrap
# Debian 12 has no package of Ubuntu's archive key; without it the bootstrap of noble is
# not verified (apt inside is: the root gets Ubuntu's keyring from the bootstrap).
VERIFY=(--keyring="$KEYRING")
if ! [ -e "$KEYRING" ]; then
    echo "warning: $KEYRING missing: bootstrapping $SUITE without verifying signatures" >&2
    VERIFY=(--no-check-gpg)
fi

mkdir -p "$FRESH_DIR"
BASE=$FRESH_DIR/$SUITE.base
if ! [ -e "$BASE/.complete" ]; then
    rm -rf "$BASE"
    # The default variant: what a minimal installation has (required + important), no
    # more. Ubuntu's suites are scripted like gutsy's in Debian's debootstrap.
    script=/usr/share/debootstrap/scripts/$SUITE
    [ -e "$script" ] || script=/usr/share/debootstrap/scripts/gutsy
    debootstrap "${VERIFY[@]}" --components="$COMPONENTS" "$SUITE" "$BASE" "$MIRROR" "$script"
    if [ "$SUITE" = noble ]; then
        echo "deb $MIRROR noble-updates main universe" >>"$BASE/etc/apt/sources.list"
    else
        echo "deb $MIRROR $SUITE-updates main" >>"$BASE/etc/apt/sources.list"
        echo "deb http://deb.debian.org/debian-security $SUITE-security main" >>"$BASE/etc/apt/sources.list"
    fi
    touch "$BASE/.complete"
fi

ROOT=$(mktemp -d "$FRESH_DIR/$SUITE.run.XXXXXX")
MOUNTS=()
cleanup() {
    local i
    # Namespaces made inside the root live under its /run/netns: remove them with it.
    for ns in "$ROOT"/run/netns/*; do [ -e "$ns" ] && umount "$ns" 2>/dev/null; done
    for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do umount -l "${MOUNTS[i]}" 2>/dev/null || true; done
    if [ -z "${KEEP:-}" ]; then rm -rf --one-file-system "$ROOT"; else echo "kept: $ROOT"; fi
}
trap cleanup EXIT
cp -a "$BASE/." "$ROOT/"
rm -f "$ROOT/.complete"

mnt() { mount "$@"; MOUNTS+=("${*: -1}"); }
# The root bound onto itself is a mount point, which `ip netns` needs for /run/netns.
mnt --bind "$ROOT" "$ROOT"
mnt -t proc proc "$ROOT/proc"
mnt -t sysfs sysfs "$ROOT/sys"
# A booted Debian 12 or 13 has the cgroup2 hierarchy there (the systemd tests need it).
mnt -t cgroup2 cgroup2 "$ROOT/sys/fs/cgroup"
mnt --rbind /dev "$ROOT/dev"
mnt -t tmpfs tmpfs "$ROOT/run"
mnt -t tmpfs tmpfs "$ROOT/tmp"
mnt -t bpf bpf "$ROOT/sys/fs/bpf" 2>/dev/null || true

# This machine's resolver, CA bundle and pip configuration.
# (Ubuntu's is a link to systemd-resolved's stub, which does not run here.)
rm -f "$ROOT/etc/resolv.conf"
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/host-ca-bundle.crt"
PIP_FILES=(/etc/pip.conf /etc/xdg/pip "$HOME/.config/pip" "$HOME/.pip")
for f in "${PIP_FILES[@]}"; do
    [ -e "$f" ] || continue
    mkdir -p "$ROOT/$(dirname "$f")"
    cp -a "$f" "$ROOT/$f"
    # Local package directories the configuration points to come in read-only.
    for dir in $(grep -rhoE '(file://)?/[^ ]+' "$f" | sed 's,^file://,,'); do
        dir=${dir%/simple}
        if [ -d "$dir" ] && [[ $dir == /opt/* ]] && ! mountpoint -q "$ROOT/$dir"; then
            mkdir -p "$ROOT/$dir"
            mnt --bind -o ro "$dir" "$ROOT/$dir"
        fi
    done
done
ENV=(HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin TERM=dumb LANG=C.UTF-8
    PIP_CERT=/etc/host-ca-bundle.crt REQUESTS_CA_BUNDLE=/etc/host-ca-bundle.crt
    SSL_CERT_FILE=/etc/host-ca-bundle.crt GIT_SSL_CAINFO=/etc/host-ca-bundle.crt)
while IFS= read -r var; do
    case $var in PIP_CERT=*) ;; PIP_* | *_proxy=* | *_PROXY=*) ENV+=("$var") ;; esac
done < <(env)
[ -z "${CI:-}" ] || ENV+=("CI=$CI")

# The clone comes from this repository's HEAD, as a bundle (a worktree's .git is only a
# pointer to a path outside the root).
mkdir -p "$ROOT/mnt"
git -C "$REPO" bundle create -q "$ROOT/mnt/anycast-announcer.bundle" HEAD

inroot() { chroot "$ROOT" /usr/bin/env -i "${ENV[@]}" /bin/bash -euo pipefail -c "$1"; }
timed() {
    local name=$1 start end
    shift
    start=$(date +%s)
    echo "=== $SUITE: $name"
    if inroot "$1"; then rc=0; else rc=$?; fi
    end=$(date +%s)
    printf '%s %s %-8s rc=%s %ss\n' "$(date -u +%FT%TZ)" "$SUITE" "$name" "$rc" $((end - start)) |
        tee -a "$FRESH_DIR/times.txt"
    return "$rc"
}

CLONE='cd /root && git clone -q /mnt/anycast-announcer.bundle anycast-announcer'
DONE_PREREQ=
prereq() {
    [ -z "$DONE_PREREQ" ] || return 0
    timed prereq "export DEBIAN_FRONTEND=noninteractive; $PREREQ && $CLONE" || return
    DONE_PREREQ=1
}
for step in "${STEPS[@]}"; do
    case $step in
    demo) prereq && timed demo 'cd /root/anycast-announcer && make demo' || exit ;;
    test) prereq && timed test 'cd /root/anycast-announcer && make test' || exit ;;
    install)
        prereq && timed install 'cd /root/anycast-announcer && make install
            anycast-announcer --version && /opt/anycast-announcer/bin/exabgp version | head -1
            getent passwd anycast-announcer
            stat -c "%U:%G %a %n" /etc/anycast-announcer /var/lib/anycast-announcer
            test -f /etc/anycast-announcer/config.yaml.example
            test -f /etc/systemd/system/anycast-announcer.service
            anycast-announcer check-config /etc/anycast-announcer/config.yaml.example' || exit
        ;;
    pytest)
        prereq && timed pytest "cd /root/anycast-announcer && make test-deps venv &&
            .venv/bin/pytest ${PYTEST_ARGS:?set PYTEST_ARGS}" || exit
        ;;
    shell) chroot "$ROOT" /usr/bin/env -i "${ENV[@]}" /bin/bash -l || true ;;
    esac
done

#!/usr/bin/env bash
# Idempotent setup for a fresh Debian 12 machine: Debian packages (bcc, bpftool,
# kernel headers for bcc's compiler), then a venv that sees Debian's bcc, then
# Snoop itself. Quiet when everything is already in place.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
KREL="$(uname -r)"
APT_PACKAGES=(python3-bpfcc bpftool python3-venv python3-pip)
# What the tests and benchmarks use beside Snoop (`setup.sh --test`): strace is the
# capture oracle; debootstrap and Docker build the images the slimming and container
# tests run; opensnoop (bpfcc-tools) is the benchmark's yardstick; make and cpio are
# real tools the hard oracle workloads run; liburing-dev builds the io_uring workload;
# postgresql is the receiver's fleet back end, started on loopback by the tests.
TEST_APT_PACKAGES=(postgresql strace debootstrap docker.io docker-compose gcc git perl bpfcc-tools make cpio liburing-dev)
# The kernel matrix (`setup.sh --test --matrix`): qemu boots the guests; the archives'
# signatures are checked with gpgv and Debian's keyring; Ubuntu's .debs are zstd.
MATRIX_APT_PACKAGES=(qemu-system-x86 gpgv debian-archive-keyring xz-utils zstd e2fsprogs)

say() { echo "setup: $*"; }

apt_install() {
    if [ "$(id -u)" != 0 ]; then
        say "not root: cannot install Debian packages ($*); BPF needs root anyway"
        return 0
    fi
    if [ ! -f /var/lib/apt/periodic/snoop-updated ] || ! apt-cache show "$1" >/dev/null 2>&1; then
        apt-get update -qq >/dev/null
        mkdir -p /var/lib/apt/periodic && touch /var/lib/apt/periodic/snoop-updated
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

missing_packages() {
    local p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
    done
}

nearest_headers() {
    # Debian's header packages for this architecture's default flavour, nearest
    # version to the running kernel (the newest one not above it, else the oldest above).
    local arch flavour below above
    arch="$(dpkg --print-architecture)"
    flavour="$arch"
    apt-cache search --names-only "^linux-headers-[0-9].*-${flavour}\$" 2>/dev/null \
        | awk '{print $1}' | grep -v -e cloud -e -rt- | sed 's/^linux-headers-//' \
        | { cat; echo "$KREL~running"; } | sort -V > /tmp/snoop-headers.$$
    below="$(sed -n "/~running\$/{x;p;q};h" /tmp/snoop-headers.$$)"
    above="$(sed -n "/~running\$/{n;p;q}" /tmp/snoop-headers.$$)"
    rm -f /tmp/snoop-headers.$$
    if [ -n "$below" ]; then echo "$below"; else echo "$above"; fi
}

ensure_headers() {
    local build="/lib/modules/$KREL/build"
    [ -e "$build/include" ] && return 0
    [ "$(id -u)" = 0 ] || { say "no kernel headers at $build and not root to install them"; return 0; }
    if apt-cache show "linux-headers-$KREL" >/dev/null 2>&1; then
        apt_install "linux-headers-$KREL"
        return 0
    fi
    local ver
    ver="$(nearest_headers)"
    if [ -z "$ver" ]; then
        say "no Debian linux-headers package found for kernel $KREL: bcc cannot compile BPF here"
        return 0
    fi
    [ -n "$(missing_packages "linux-headers-$ver")" ] && apt_install "linux-headers-$ver"
    local common="/usr/src/linux-headers-${ver%-*}-common"
    mkdir -p "/lib/modules/$KREL"
    ln -sfn "/usr/src/linux-headers-$ver" "$build"
    [ -d "$common" ] && ln -sfn "$common" "/lib/modules/$KREL/source"
    say "no headers package for kernel $KREL; linked nearest linux-headers-$ver at $build"
}

ensure_venv() {
    local stamp="$VENV/.snoop-installed"
    local want
    want="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$VENV/bin/snoop" ]; then
        return 0
    fi
    if [ ! -x "$VENV/bin/python" ]; then
        # Debian's interpreter: its dist-packages hold bcc's Python module.
        /usr/bin/python3 -m venv --system-site-packages "$VENV"
    fi
    local log="$VENV/pip-install.log"
    if ! "$VENV/bin/pip" install --disable-pip-version-check -e "$ROOT[dev]" >"$log" 2>&1; then
        tail -20 "$log" >&2
        say "pip install failed; full log in $log"
        exit 1
    fi
    echo "$want" > "$stamp"
}

ensure_tracefs() {
    # bcc reads tracepoint formats from tracefs; some hosts boot without it mounted.
    [ "$(id -u)" = 0 ] || return 0
    if [ ! -d /sys/kernel/tracing/events ]; then
        mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null \
            || say "cannot mount tracefs at /sys/kernel/tracing: BPF tracepoints unavailable"
    fi
    if [ -d /sys/kernel/debug ] && [ ! -d /sys/kernel/debug/tracing ]; then
        mount -t debugfs none /sys/kernel/debug 2>/dev/null || true
    fi
}

main() {
    local missing wanted=("${APT_PACKAGES[@]}")
    local arg
    for arg in "$@"; do
        case "$arg" in
        --test) wanted+=("${TEST_APT_PACKAGES[@]}") ;;
        --matrix) wanted+=("${MATRIX_APT_PACKAGES[@]}") ;;
        *) say "unknown option $arg (expected --test or --matrix)"; exit 2 ;;
        esac
    done
    missing="$(missing_packages "${wanted[@]}")"
    # shellcheck disable=SC2086
    [ -n "$missing" ] && apt_install $missing
    ensure_headers
    ensure_tracefs
    ensure_venv
    "$VENV/bin/python" -m snoop.common.preflight || true
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    main "$@"
fi

#!/usr/bin/env bash
# The guest userspace every kernel of the matrix boots: Debian bookworm, as Snoop's
# image ships it (Python 3.11, bcc 0.26). debootstrap checks the Release signature
# with Debian's archive keyring. Usage: build-rootfs.sh OUT_DIR (OUT_DIR must not exist).
set -euo pipefail
OUT="$1"
MIRROR="${MATRIX_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# What the capture tests use: bcc and bpftool, strace, gcc/make, the shell tools the
# workloads run (find, cat, sh), and what builds and boots the guest (kmod,
# initramfs-tools, iproute2 for loopback). The host's venv (--system-site-packages)
# takes some of its dependencies from Debian's Python packages: the same ones here.
PACKAGES=python3,python3-bpfcc,bpftool,strace,gcc,make,iproute2,kmod,initramfs-tools,procps,findutils,cpio,xz-utils,zstd,ca-certificates,perl
PACKAGES+=,python3-requests,python3-yaml,python3-jsonschema,python3-attr,python3-cryptography
PACKAGES+=,python3-cffi-backend,python3-six,python3-pyrsistent,python3-urllib3,python3-idna
PACKAGES+=,python3-certifi,python3-charset-normalizer,python3-pygments

[ ! -e "$OUT" ] || { echo "build-rootfs: $OUT exists" >&2; exit 1; }
debootstrap --variant=minbase --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
    --include="$PACKAGES" bookworm "$OUT.part" "$MIRROR" >"$OUT.log" 2>&1 \
    || { tail -20 "$OUT.log" >&2; exit 1; }
echo matrix > "$OUT.part/etc/hostname"
printf '127.0.0.1 localhost matrix\n::1 localhost\n' > "$OUT.part/etc/hosts"
# The guest's first process: mount the repository from the host (9p), then run the
# test script from it, so changing that script needs no new image.
cat > "$OUT.part/matrix-init" <<'INIT'
#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
modprobe -a 9pnet_virtio 9p 2>/dev/null
mkdir -p /work/main
if mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144 snoop /work/main; then
    exec /bin/sh /work/main/scripts/matrix/guest.sh
fi
echo "MATRIX error=cannot mount the repository over 9p"
echo o > /proc/sysrq-trigger
sleep 60
INIT
chmod 755 "$OUT.part/matrix-init"
rm -rf "$OUT.part/var/cache/apt/archives/"*.deb "$OUT.part/var/lib/apt/lists/"*
mv "$OUT.part" "$OUT"

"""A bootable guest per kernel: bookworm rootfs + that kernel's image, modules, headers.

Everything is cached under the matrix cache directory, keyed by content: the rootfs by
the hash of build-rootfs.sh, a guest by the rootfs key, the verified .debs' SHA256s
and this file. A cached guest is used read-only (qemu's snapshot=on).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass

from archive import Suite
from kernels import KernelSpec, Resolved, keyring_for, resolve

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD_ROOTFS = os.path.join(HERE, "build-rootfs.sh")
# What the initramfs must carry to reach the root disk and the host's repository;
# modules built into a kernel are simply not found, which is fine.
INITRD_MODULES = ["virtio_pci", "virtio_blk", "ext4", "9pnet_virtio", "9p"]


@dataclass(frozen=True)
class Guest:
    name: str
    krel: str
    kernel: str
    initrd: str
    disk: str


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()[:16]


def ensure_rootfs(cache_dir: str, log) -> str:
    with open(BUILD_ROOTFS, "rb") as handle:
        key = hashlib.sha256(handle.read()).hexdigest()[:16]
    path = os.path.join(cache_dir, f"rootfs-{key}")
    if not os.path.isdir(path):
        log(f"building the bookworm rootfs {path} (debootstrap, a few minutes)")
        shutil.rmtree(path + ".part", ignore_errors=True)
        subprocess.run(["bash", BUILD_ROOTFS, path], check=True)
    return path


def _chroot(root: str, argv: list[str]) -> None:
    subprocess.run(["mount", "-t", "proc", "proc", os.path.join(root, "proc")], check=True)
    try:
        subprocess.run(["chroot", root, "/usr/bin/env", "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
                        *argv], check=True, capture_output=True, text=True)
    except subprocess.CalledProcessError as err:
        raise RuntimeError(f"in chroot: {' '.join(argv)}: {err.stderr.strip()[-2000:]}") from None
    finally:
        subprocess.run(["umount", os.path.join(root, "proc")], check=False)


def _assemble(rootfs: str, resolved: Resolved, debs: list[str], out: str) -> None:
    krel = resolved.krel
    staging = tempfile.mkdtemp(prefix="stage-", dir=os.path.dirname(out))
    try:
        subprocess.run(["cp", "-a", "--reflink=auto", f"{rootfs}/.", staging], check=True)
        for deb in debs:
            # The rootfs is merged-/usr: /lib is a symlink that must stay one.
            subprocess.run(f"dpkg-deb --fsys-tarfile '{deb}' | tar -x "
                           f"--keep-directory-symlink -C '{staging}'", shell=True, check=True)
        build = os.path.join(staging, "lib/modules", krel, "build")
        if not os.path.lexists(build):
            os.symlink(f"/usr/src/linux-headers-{krel}", build)
        _chroot(staging, ["depmod", krel])
        conf = os.path.join(staging, "etc/initramfs-tools")
        with open(os.path.join(conf, "modules"), "a") as handle:
            handle.write("".join(f"{m}\n" for m in INITRD_MODULES))
        # Only the listed modules; gzip, which every kernel here can unpack (zstd: 5.9+).
        with open(os.path.join(conf, "conf.d", "matrix"), "w") as handle:
            handle.write("MODULES=list\nCOMPRESS=gzip\n")
        _chroot(staging, ["mkinitramfs", "-o", f"/boot/initrd.img-{krel}", krel])
        os.makedirs(out + ".part", exist_ok=True)
        shutil.copy(os.path.join(staging, f"boot/vmlinuz-{krel}"), f"{out}.part/vmlinuz")
        shutil.copy(os.path.join(staging, f"boot/initrd.img-{krel}"), f"{out}.part/initrd.img")
        used = int(subprocess.run(["du", "-sm", staging], capture_output=True, text=True,
                                  check=True).stdout.split()[0])
        subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "matrix", "-d", staging,
                        f"{out}.part/root.ext4", f"{used + 1024}M"], check=True)
        with open(f"{out}.part/krel", "w") as handle:
            handle.write(krel + "\n")
        os.replace(out + ".part", out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(out + ".part", ignore_errors=True)


def ensure_guest(spec: KernelSpec, cache_dir: str, log) -> Guest:
    rootfs = ensure_rootfs(cache_dir, log)
    keyring = keyring_for(spec, cache_dir)
    suite = Suite(spec.mirror, spec.suite, keyring, os.path.join(cache_dir, "debs"))
    resolved = resolve(spec, suite)
    with open(os.path.abspath(__file__), "rb") as handle:
        me = handle.read()
    key = _digest(os.path.basename(rootfs).encode(), me,
                  *(p.sha256.encode() for p in resolved.packages))
    out = os.path.join(cache_dir, "guests", f"{spec.name}-{key}")
    if not os.path.isdir(out):
        log(f"{spec.name}: building the guest for {resolved.krel} "
            f"({', '.join(p.name for p in resolved.packages)})")
        os.makedirs(os.path.dirname(out), exist_ok=True)
        debs = [suite.download(p) for p in resolved.packages]
        _assemble(rootfs, resolved, debs, out)
    return Guest(spec.name, resolved.krel, f"{out}/vmlinuz", f"{out}/initrd.img",
                 f"{out}/root.ext4")

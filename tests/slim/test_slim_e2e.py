"""End to end: record an app in a Debian rootfs, slim the rootfs, run the app in the slim one.

The rootfs (debootstrap minbase bookworm + python3) is built once and cached, see
debootstrap_cache.py. The app imports stdlib modules with C extensions (sqlite3, decimal),
reads a config file, runs a `#!/bin/sh` script (so the kernel, not the app, opens the
shell and the ELF interpreter) and opens /dev/null for it. With `export` it takes a path
the recording never takes: `xml.dom.minidom` and `/usr/bin/tar`. That path must fail in
the slim rootfs, which is the proof that slimming removed something real.

Runs need root (chroot, mknod). Nothing is mounted into the rootfs: /dev/null is the
image's own device node, kept in the slim rootfs as a device node because the app opened it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .debootstrap_cache import minbase_rootfs

REPO = Path(__file__).resolve().parents[2]
SNOOP = REPO / ".venv" / "bin" / "snoop"
CHROOT = shutil.which("chroot") or "/usr/sbin/chroot"

APP_MAIN = '''\
import configparser
import decimal
import hashlib
import sqlite3
import subprocess
import sys

config = configparser.ConfigParser()
config.read("/app/config.ini")
mode = sys.argv[1] if len(sys.argv) > 1 else config.get("app", "mode")

prices = [decimal.Decimal(p) for p in config.get("app", "prices").split()]
db = sqlite3.connect(":memory:")
db.execute("create table item (price text)")
db.executemany("insert into item values (?)", [(str(p),) for p in prices])
rows = db.execute("select count(*) from item").fetchone()[0]
total = sum(prices, decimal.Decimal(0)).quantize(decimal.Decimal("0.01"))
print(f"{config.get('app', 'name')}: {rows} items, total {total}")
print("digest", hashlib.sha256(str(total).encode()).hexdigest()[:16])

helper = subprocess.run(["/app/helper.sh", str(rows)], stdin=subprocess.DEVNULL,
                        capture_output=True, text=True, check=True)
print(helper.stdout.strip())

if mode == "export":
    import xml.dom.minidom
    document = xml.dom.minidom.parseString(f"<total>{total}</total>")
    print("export", document.documentElement.toxml())
    subprocess.run(["/usr/bin/tar", "--version"], stdout=subprocess.DEVNULL, check=True)
sys.exit(config.getint("app", "exit_code"))
'''
APP_CONFIG = "[app]\nname = shop\nmode = report\nprices = 1.10 2.20 3.30\nexit_code = 3\n"
APP_HELPER = '#!/bin/sh\necho "helper saw $1 items" | /usr/bin/tr a-z A-Z\n'
APP_ARGV = ["/usr/bin/python3", "/app/main.py"]
UNEXERCISED_ARGV = ["/usr/bin/python3", "/app/main.py", "export"]

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="chroot and mknod need root"),
    pytest.mark.timeout(1800),
]


def install_app(rootfs: Path) -> None:
    app = rootfs / "app"
    app.mkdir()
    (app / "main.py").write_text(APP_MAIN)
    (app / "config.ini").write_text(APP_CONFIG)
    (app / "helper.sh").write_text(APP_HELPER)
    (app / "helper.sh").chmod(0o755)


def image_with_app(workdir: Path) -> Path:
    """A private copy of the cached rootfs with the app in /app."""
    rootfs = workdir / "image"
    subprocess.run(["cp", "-a", "--reflink=auto", str(minbase_rootfs()), str(rootfs)],
                   check=True)
    install_app(rootfs)
    return rootfs


def run_in(rootfs: Path, argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CHROOT, str(rootfs), *argv], capture_output=True, text=True,
                          timeout=120, env={"PATH": "/usr/bin:/bin", "LANG": "C"})


def record_report(rootfs: Path, argv: list[str], out: Path) -> None:
    """Record `argv` run inside `rootfs` with `snoop record` (its own cgroup)."""
    result = subprocess.run(
        [str(SNOOP), "record", "-o", str(out), "--", CHROOT, str(rootfs), *argv],
        capture_output=True, text=True, timeout=600, env={**os.environ, "LANG": "C"},
    )
    assert out.exists(), (
        f"snoop record wrote no report (exit {result.returncode}): {result.stderr.strip()}")


def slim(image: Path, report: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SNOOP), "slim", "--image", str(image), "--report", str(report),
         "--out", str(out), "--rootfs"],
        capture_output=True, text=True, timeout=600,
    )


def test_slim_rootfs_runs_the_recorded_app(tmp_path: Path) -> None:
    image = image_with_app(tmp_path)
    try:
        check_slimming(image, tmp_path)
    finally:
        shutil.rmtree(image)  # a 200+ MB copy: do not leave it in pytest's tmp dirs


def check_slimming(image: Path, tmp_path: Path) -> None:
    full = run_in(image, APP_ARGV)
    assert full.returncode == 3, full.stderr
    assert "shop: 3 items, total 6.60" in full.stdout and "HELPER SAW 3 ITEMS" in full.stdout
    full_export = run_in(image, UNEXERCISED_ARGV)
    assert full_export.returncode == 3 and "export <total>" in full_export.stdout, \
        full_export.stderr

    report = tmp_path / "report.json"
    record_report(image, APP_ARGV, report)
    out = tmp_path / "out"
    result = slim(image, report, out)
    assert result.returncode == 0, result.stderr
    sys.stdout.write(result.stdout)

    slim_root = out / "rootfs"
    assert (slim_root / "dev/null").is_char_device()
    slimmed = run_in(slim_root, APP_ARGV)
    assert (slimmed.stdout, slimmed.returncode) == (full.stdout, full.returncode), slimmed.stderr

    unexercised = run_in(slim_root, UNEXERCISED_ARGV)
    assert unexercised.returncode != full_export.returncode
    assert "ModuleNotFoundError" in unexercised.stderr and "xml" in unexercised.stderr

    summary = json.loads((out / "summary.json").read_text())
    assert summary["bytes_after"] < summary["bytes_before"] / 5
    print(f"\nslim rootfs: {summary['bytes_after']} of {summary['bytes_before']} bytes "
          f"({summary['kept_bytes_fraction']:.1%})")

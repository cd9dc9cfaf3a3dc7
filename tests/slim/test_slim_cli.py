"""`snoop slim` as a user runs it: outputs, the printed view, and one-line errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from snoop.cli.main import main
from snoop.slim.cli import human_bytes

from .helpers import docker_save_tar, elf64, layer_tar, make_report, oci_tar, write_report


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    for directory in ("usr/bin", "usr/lib/x86_64-linux-gnu", "usr/lib64", "etc", "app",
                      "var/lib/dpkg/info", "usr/share/doc/big"):
        (root / directory).mkdir(parents=True)
    for link, target in (("bin", "usr/bin"), ("lib", "usr/lib"), ("lib64", "usr/lib64")):
        (root / link).symlink_to(target)
    (root / "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2").write_bytes(elf64(None))
    (root / "usr/lib64/ld-linux-x86-64.so.2").symlink_to(
        "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
    (root / "usr/bin/dash").write_bytes(elf64(b"/lib64/ld-linux-x86-64.so.2"))
    (root / "usr/bin/sh").symlink_to("dash")
    (root / "app/run.sh").write_bytes(b"#!/bin/sh\necho hi\n")
    (root / "app/run.sh").chmod(0o755)
    (root / "etc/app.conf").write_bytes(b"x=1\n")
    (root / "usr/share/doc/big/manual.txt").write_bytes(b"m" * 100_000)
    (root / "var/lib/dpkg/status").write_bytes(
        b"Package: dash\nStatus: install ok installed\nArchitecture: amd64\nVersion: 0.5\n\n"
        b"Package: bigdoc\nStatus: install ok installed\nArchitecture: all\nVersion: 1\n")
    (root / "var/lib/dpkg/info/dash.list").write_bytes(b"/bin\n/bin/dash\n/bin/sh\n")
    (root / "var/lib/dpkg/info/bigdoc.list").write_bytes(b"/usr/share/doc/big/manual.txt\n")
    return root


def test_slim_writes_lists_and_prints_the_view(rootfs: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    report = write_report(tmp_path / "r.json", {"/app/run.sh": ["exec", "read"],
                                                "/etc/app.conf": ["read"],
                                                "/etc/missing.conf": ["stat"]})
    out = tmp_path / "out"
    assert main(["slim", "--image", str(rootfs), "--report", str(report),
                 "--out", str(out)]) == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert captured.err == ""  # no warnings for a complete report
    keep = (out / "keep.txt").read_text().split()
    for path in ("/app/run.sh", "/bin", "/usr/bin/sh", "/usr/bin/dash", "/lib64", "/lib",
                 "/usr/lib64/ld-linux-x86-64.so.2",
                 "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", "/etc/app.conf"):
        assert path in keep, path
    remove = (out / "remove.txt").read_text().split()
    assert "/usr/share/doc/big/manual.txt" in remove and not set(keep) & set(remove)
    include = (out / "slim-include-paths.txt").read_text().splitlines()
    assert all(line.startswith("/") for line in include) and "/usr/bin" in include  # complete
    summary = json.loads((out / "summary.json").read_text())
    assert summary["reported_missing_from_image"] == 1
    assert 0 < summary["bytes_after"] < summary["bytes_before"]
    assert "kept" in printed and "x smaller" in printed
    assert "/usr/share/doc" in printed.split("removable by directory")[1]
    packages = printed.split("packages (dpkg)")[1]
    assert packages.startswith(": 1 used, 1 unused of 2")
    assert packages.index("dash") < packages.index("unused,") < packages.index("bigdoc")
    assert not (out / "rootfs").exists()


def test_json_prints_the_summary_for_scripts(rootfs: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    report = write_report(tmp_path / "r.json", {"/app/run.sh": ["exec", "read", "found"],
                                                "/etc/app.conf": ["stat", "ENOENT"]})
    out = tmp_path / "out"
    assert main(["slim", "--image", str(rootfs), "--report", str(report), "--out", str(out),
                 "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((out / "summary.json").read_text())
    # Probed and never found: not kept, though the image has it.
    assert (printed["reported_not_found"], printed["reported_not_found_but_in_image"]) == (1, 1)
    assert "/etc/app.conf" not in (out / "keep.txt").read_text().split()


def test_incomplete_reports_are_warned_about(rootfs: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    report = make_report({"/etc/app.conf": ["read"]})
    report.coverage.kernel_dropped = 7
    (tmp_path / "r.json").write_text(report.dumps())
    assert main(["slim", "--image", str(rootfs), "--report", str(tmp_path / "r.json"),
                 "--out", str(tmp_path / "out")]) == 0
    assert "may be incomplete (kernel_dropped=7)" in capsys.readouterr().err
    assert json.loads((tmp_path / "out/summary.json").read_text())["coverage"][
        "kernel_dropped"] == 7


def test_io_uring_use_is_warned_about_in_plain_words(rootfs: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    report = make_report({"/etc/app.conf": ["read"]})
    report.coverage.io_uring_ops = 2
    (tmp_path / "r.json").write_text(report.dumps())
    assert main(["slim", "--image", str(rootfs), "--report", str(tmp_path / "r.json"),
                 "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert "may be incomplete (io_uring_ops=2)" in err
    [line] = [line for line in err.splitlines() if "used io_uring" in line]
    assert line.startswith("snoop slim: warning: ") and "may be incomplete" in line
    assert json.loads((tmp_path / "out/summary.json").read_text())["coverage"][
        "io_uring_ops"] == 2


def test_slim_merges_reports_and_takes_includes(rootfs: Path, tmp_path: Path) -> None:
    first = write_report(tmp_path / "a.json", {"/etc/app.conf": ["read"]})
    second = write_report(tmp_path / "b.json", {"/app/run.sh": ["exec"]})
    includes = tmp_path / "includes"
    includes.write_text("# docs stay\n/usr/share/doc/big\n\n")
    out = tmp_path / "out"
    assert main(["slim", "--image", str(rootfs), "--report", str(first), "--report",
                 str(second), "--include-file", str(includes), "--include", "/lib/x86_64*",
                 "--out", str(out), "--rootfs"]) == 0
    keep = (out / "keep.txt").read_text().split()
    assert {"/etc/app.conf", "/usr/bin/dash", "/usr/share/doc/big/manual.txt"} <= set(keep)
    assert (out / "rootfs/usr/bin/dash").read_bytes().startswith(b"\x7fELF")
    assert (out / "rootfs.tar").stat().st_size > 100_000


def test_slim_from_a_layered_image(tmp_path: Path) -> None:
    layer = layer_tar([("etc", "dir", None), ("etc/a", "file", b"a"), ("etc/b", "file", b"b")])
    report = write_report(tmp_path / "r.json", {"/etc/a": ["read"]})
    for image in (docker_save_tar(tmp_path / "d.tar", [layer]),
                  oci_tar(tmp_path / "o.tar", [layer])):
        out = tmp_path / f"out-{image.stem}"
        assert main(["slim", "--image", str(image), "--report", str(report),
                     "--out", str(out), "--rootfs"]) == 0
        assert (out / "rootfs/etc/a").read_bytes() == b"a"
        assert not (out / "rootfs/etc/b").exists()
    # The slim tarball is itself an image (a plain rootfs tarball): slimming it again
    # keeps the same paths.
    again = tmp_path / "again"
    assert main(["slim", "--image", str(tmp_path / "out-d/rootfs.tar"), "--report",
                 str(report), "--out", str(again)]) == 0
    assert (again / "keep.txt").read_text() == (tmp_path / "out-d/keep.txt").read_text()


def one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("snoop slim: error: "), err
    return err


def test_bad_input_is_one_line_and_exit_2(rootfs: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    report = write_report(tmp_path / "r.json", {"/etc/app.conf": ["read"]})
    out = str(tmp_path / "out")
    evil = docker_save_tar(tmp_path / "evil.tar",
                           [layer_tar([("etc", "dir", None), ("../../etc/cron.d/x", "file", b"")])])
    assert "escapes the image root" in one_line_error(
        capsys, ["slim", "--image", str(evil), "--report", str(report), "--out", out])
    assert not os.path.exists(out)
    assert "cannot read image" in one_line_error(
        capsys, ["slim", "--image", str(tmp_path / "nope"), "--report", str(report),
                 "--out", out])
    not_report = tmp_path / "not-a-report.json"
    not_report.write_text('{"hello": 1}')
    assert "not a Snoop report" in one_line_error(
        capsys, ["slim", "--image", str(rootfs), "--report", str(not_report), "--out", out])
    assert "cannot read" in one_line_error(
        capsys, ["slim", "--image", str(rootfs), "--report", str(report), "--out", out,
                 "--include-file", str(tmp_path / "nope")])
    assert "absolute" in one_line_error(
        capsys, ["slim", "--image", str(rootfs), "--report", str(report), "--out", out,
                 "--include", "etc/app.conf"])
    (tmp_path / "full/rootfs").mkdir(parents=True)
    (tmp_path / "full/rootfs/x").write_text("")
    assert "not empty" in one_line_error(
        capsys, ["slim", "--image", str(rootfs), "--report", str(report), "--out",
                 str(tmp_path / "full"), "--rootfs"])


def test_unwritable_output_is_one_line_and_exit_2_before_any_work(
        rootfs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = write_report(tmp_path / "r.json", {"/etc/app.conf": ["read"]})
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main(["slim", "--image", str(rootfs), "--report", str(report),
                 "--out", str(blocker / "out")]) == 2
    err = capsys.readouterr().err
    assert err == (f"snoop slim: error: cannot make {blocker / 'out'}: {blocker} is not a "
                   "directory\n")


def test_a_member_below_a_symlink_of_the_same_tar_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = write_report(tmp_path / "r.json", {"/usr/esc": ["read"]})
    out = tmp_path / "out"
    evil = docker_save_tar(tmp_path / "evil.tar", [layer_tar([
        ("usr", "dir", None), ("usr/esc", "symlink", "/outside"),
        ("usr/esc/pwned", "file", b"x")])])
    error = one_line_error(capsys, ["slim", "--image", str(evil), "--report", str(report),
                                    "--out", str(out), "--rootfs"])
    assert "'usr/esc/pwned' lies below the symlink 'usr/esc'" in error
    assert not out.exists()


def test_a_symlink_replaced_by_a_directory_in_the_same_tar_is_fine(
        tmp_path: Path) -> None:
    report = write_report(tmp_path / "r.json", {"/usr/esc/ok": ["read"]})
    image = docker_save_tar(tmp_path / "fine.tar", [layer_tar([
        ("usr", "dir", None), ("usr/esc", "symlink", "/outside"), ("usr/esc", "dir", None),
        ("usr/esc/ok", "file", b"x")])])
    assert main(["slim", "--image", str(image), "--report", str(report), "--out",
                 str(tmp_path / "out")]) == 0


def test_a_report_of_another_image_is_warned_about(
        rootfs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    elsewhere = {f"/opt/other/lib{i}.so": ["read"] for i in range(29)}
    report = write_report(tmp_path / "r.json", {**elsewhere, "/app/run.sh": ["read"]})
    assert main(["slim", "--image", str(rootfs), "--report", str(report), "--out",
                 str(tmp_path / "out")]) == 0
    assert ("snoop slim: warning: 29 of 30 reported paths (97%) are not in the image: "
            "is it the image") in capsys.readouterr().err


def test_a_few_failed_probes_are_no_mismatch(
        rootfs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    probes = {f"/usr/local/bin/x{i}": ["stat"] for i in range(10)}  # a PATH search
    present = {p: ["read"] for p in (
        "/app/run.sh", "/usr/bin/dash", "/usr/bin/sh", "/usr/lib64/ld-linux-x86-64.so.2",
        "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", "/etc", "/app", "/usr", "/usr/bin",
        "/usr/lib", "/usr/lib64", "/var/lib/dpkg/info", "/usr/share/doc/big", "/bin", "/lib")}
    report = write_report(tmp_path / "r.json", {**probes, **present})
    assert main(["slim", "--image", str(rootfs), "--report", str(report), "--out",
                 str(tmp_path / "out")]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert (summary["reported_paths"], summary["reported_missing_from_image"]) == (25, 10)
    assert "are not in the image" not in capsys.readouterr().err


def test_the_size_line_also_gives_what_docker_images_counts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The second layer deletes the first layer's big file: `docker images` still counts
    # it, the running image does not have it.
    lower = layer_tar([("app", "dir", None), ("app/big", "file", b"x" * 100_000),
                       ("app/run", "file", b"run")])
    upper = layer_tar([("app/.wh.big", "file", b"")])
    report = write_report(tmp_path / "r.json", {"/app/run": ["read"]})
    # gzip'ed OCI blobs count as the tars they hold, as `docker images` counts them.
    for image in (docker_save_tar(tmp_path / "d.tar", [lower, upper]),
                  oci_tar(tmp_path / "o.tar", [lower, upper], compress=True)):
        out = tmp_path / f"out-{image.stem}"
        assert main(["slim", "--image", str(image), "--report", str(report), "--out",
                     str(out)]) == 0
        summary = json.loads((out / "summary.json").read_text())
        assert summary["image_layer_bytes"] == len(lower) + len(upper)
        assert summary["bytes_before"] == 3  # app/run: the image as it runs
        stored = human_bytes(len(lower) + len(upper))
        assert f"the image's layers hold {stored} (what `docker images` shows)" in \
            capsys.readouterr().out

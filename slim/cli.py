"""`snoop slim`: from an image and its reports, what to keep, what it saves, and (with
--rootfs) the slim root filesystem, its tarball and, from a docker save or OCI input, the
slim image itself: OUT/image.tar, which `docker load` accepts, with the original config.

    snoop slim --image IMAGE --report R [--report R2 ...] --out OUT [--rootfs [--tag NAME]]
               [--include PATH_OR_GLOB ...] [--include-file F] [--json]

Bad input (an unreadable image, a file that is not a report, a tarball with a member
that escapes its root) gives one line on stderr and exit code 2; failing to write OUT
gives one line and exit code 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from snoop.common import outputs
from snoop.common.report import (
    Coverage,
    ReportError,
    load_report,
    merge_reports,
    write_atomically,
)
from snoop.slim import remote
from snoop.slim.image import EntryType, ImageError, ImageTree, open_image
from snoop.slim.image_archive import ImageWritten, file_digest, write_image
from snoop.slim.image_config import runtime_paths, slim_config, slim_tag
from snoop.slim.keepset import KeepSet, compute_keep_set
from snoop.slim.packages import PackageView, package_view
from snoop.slim.writer import WriteNotes, write_lists, write_rootfs, write_tar

MISMATCH_SHARE = 0.8  # of reported paths missing from the image: likely the wrong image
MISMATCH_MIN_PATHS = 20
MAX_WARNINGS = 20


class UsageError(ValueError):
    """Bad command-line input found after parsing (an include file, an output dir)."""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--image", required=True, metavar="IMAGE",
                        help="rootfs directory, `docker save` tarball, OCI layout (dir or tar), "
                             "or plain rootfs tarball")
    parser.add_argument("--report", required=True, action="append", metavar="R",
                        help="Snoop report (JSON), or a receiver's union for an image "
                             "(http://recv:8787?image=IMAGE); repeat to merge several")
    parser.add_argument("--out", required=True, metavar="OUT",
                        help="output directory for keep.txt, remove.txt, slim-include-paths.txt")
    parser.add_argument("--rootfs", action="store_true",
                        help="also write the slim root filesystem OUT/rootfs, OUT/rootfs.tar and, "
                             "for a docker save or OCI image, the slim image OUT/image.tar")
    parser.add_argument("--tag", metavar="NAME",
                        help="the slim image's name in OUT/image.tar (default: the image's "
                             "first tag with -slim added, e.g. app:1.2-slim)")
    parser.add_argument("--include", action="append", default=[], metavar="PATH_OR_GLOB",
                        help="keep this path (a directory with its content) or glob; repeatable")
    parser.add_argument("--include-file", action="append", default=[], metavar="F",
                        help="file of includes, one per line (# comments)")
    parser.add_argument("--top", type=int, default=15, metavar="N",
                        help="rows in the removable-directories and package tables (15)")
    parser.add_argument("--depth", type=int, default=3, metavar="D",
                        help="group removable files by their first D directories (3)")
    parser.add_argument("--json", action="store_true",
                        help="print OUT/summary.json instead of the tables (warnings stay "
                             "on stderr)")


def run(args: argparse.Namespace) -> int:
    try:
        problem = outputs.directory_problem(args.out)
        if problem:
            raise UsageError(problem)
        includes = _includes(args.include, args.include_file)
        reports = [remote.fetch_report(spec, os.environ) if remote.is_url(spec)
                   else load_report(spec) for spec in args.report]
        rootfs_dir = os.path.join(args.out, "rootfs")
        if args.rootfs and os.path.isdir(rootfs_dir) and os.listdir(rootfs_dir):
            raise UsageError(f"{rootfs_dir} exists and is not empty; remove it or choose "
                             "another --out")
        if args.tag is not None and not args.rootfs:
            raise UsageError("--tag names the slim image, which only --rootfs writes")
        with open_image(args.image) as tree:
            if args.tag is not None and tree.config is None:
                raise UsageError(f"--tag: {args.image} has no image config (a rootfs "
                                 "directory or tarball); a docker save or OCI image has")
            return _slim(args, tree, reports, includes)
    except (ImageError, ReportError, UsageError) as exc:
        print(f"snoop slim: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # writing OUT failed: not bad input, but still one line
        where = os.fsdecode(exc.filename) if exc.filename else args.out
        print(f"snoop slim: error: {where}: {exc.strerror or exc}", file=sys.stderr)
        return 1


def _includes(patterns: list[str], files: list[str]) -> list[bytes]:
    found = [os.fsencode(pattern) for pattern in patterns]
    for name in files:
        try:
            with open(name, "rb") as handle:
                lines = handle.read().splitlines()
        except OSError as exc:
            raise UsageError(f"--include-file {name}: cannot read: {exc.strerror}") from None
        found.extend(line.strip() for line in lines
                     if line.strip() and not line.strip().startswith(b"#"))
    for pattern in found:
        if not pattern.startswith(b"/"):
            raise UsageError(f"include {os.fsdecode(pattern)!r}: expected an absolute path "
                             "or glob")
    return found


@dataclass
class Sizes:
    files: int = 0
    bytes: int = 0


def regular_sizes(tree: ImageTree, paths: Iterable[bytes]) -> Sizes:
    """Regular files and their bytes; a hard-linked inode counts once."""
    sizes = Sizes()
    inodes = set()
    for path in paths:
        entry = tree.get(path)
        if entry is None or entry.type is not EntryType.FILE:
            continue
        if entry.inode is not None:
            if entry.inode in inodes:
                continue
            inodes.add(entry.inode)
        sizes.files += 1
        sizes.bytes += entry.size
    return sizes


def removable_by_directory(tree: ImageTree, kept: KeepSet, depth: int) -> list[tuple[bytes, Sizes]]:
    groups: dict[bytes, Sizes] = {}
    for path in regular_paths_not_kept(tree, kept):
        directory = b"/" + b"/".join(path.split(b"/")[1:-1][:max(depth, 1)])
        group = groups.setdefault(directory, Sizes())
        group.files += 1
        group.bytes += tree.entries[path].size
    return sorted(groups.items(), key=lambda item: (-item[1].bytes, item[0]))


def regular_paths_not_kept(tree: ImageTree, kept: KeepSet) -> list[bytes]:
    return sorted(path for path, entry in tree.entries.items()
                  if entry.type is EntryType.FILE and path not in kept)


def _slim(args: argparse.Namespace, tree: ImageTree, reports: list, includes: list[bytes]) -> int:
    merged = merge_reports(reports)
    keep = compute_keep_set(tree, merged.files, includes, runtime_paths(tree.config))
    kept = set(keep.paths)
    before = regular_sizes(tree, tree.entries)
    after = regular_sizes(tree, kept)
    packages = package_view(tree, kept)

    os.makedirs(args.out, exist_ok=True)
    notes = [write_lists(args.out, tree, kept)]
    image: ImageWritten | None = None
    if args.rootfs:
        notes.append(write_rootfs(tree, kept, os.path.join(args.out, "rootfs")))
        notes.append(write_tar(tree, kept, os.path.join(args.out, "rootfs.tar")))
        if tree.config is not None:
            image = _write_image(args, tree, after.files, before.files)

    summary = _summary(tree, merged.files, keep, before, after, packages)
    summary["coverage"] = merged.coverage.to_json()
    summary["slim_image"] = None if image is None else {
        "path": os.path.join(args.out, "image.tar"), "id": image.image_id, "tag": image.tag,
        "bytes": image.size}
    write_atomically(os.path.join(args.out, "summary.json"), json.dumps(summary, indent=1) + "\n")
    if args.json:
        print(json.dumps(summary, indent=1, ensure_ascii=True))
    else:
        _print(args, tree, keep, summary, before, after, packages, image)
    _print_warnings(keep, notes, merged.coverage, len(merged.files))
    return 0


def _write_image(args: argparse.Namespace, tree: ImageTree, kept_files: int,
                 image_files: int) -> ImageWritten:
    assert tree.config is not None
    layer = os.path.join(args.out, "rootfs.tar")
    diff_id, _ = file_digest(layer)
    config = slim_config(tree.config, diff_id, kept_files, image_files)
    tag = args.tag if args.tag is not None else slim_tag(tree.tags)
    return write_image(layer, config, tag, os.path.join(args.out, "image.tar"))


def _summary(tree: ImageTree, reported: dict, keep: KeepSet, before: Sizes, after: Sizes,
             packages: PackageView | None) -> dict:
    reasons = Counter(keep.paths.values())
    return {
        "image": tree.source,
        "image_entries": len(tree),
        "reported_paths": len(reported),
        "reported_missing_from_image": len(keep.missing),
        # Probed and never found where the workload ran (ENOENT, ENOTDIR): not kept.
        "reported_not_found": len(keep.absent),
        "reported_not_found_but_in_image": len(keep.absent_in_image),
        "kept_entries": len(keep),
        "kept_by_reason": dict(sorted(reasons.items())),
        "bytes_before": before.bytes,
        "image_layer_bytes": tree.layer_bytes or None,
        "bytes_after": after.bytes,
        "files_before": before.files,
        "files_after": after.files,
        "kept_bytes_fraction": round(after.bytes / before.bytes, 4) if before.bytes else 1.0,
        "packages": None if packages is None else {
            "manager": packages.manager,
            "used": [{"name": p.name, "version": p.version, "kept_bytes": p.kept_bytes,
                      "total_bytes": p.total_bytes} for p in packages.used],
            "unused": [{"name": p.name, "version": p.version, "total_bytes": p.total_bytes}
                       for p in packages.unused],
        },
    }


def human_bytes(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def _print(args: argparse.Namespace, tree: ImageTree, keep: KeepSet, summary: dict,
           before: Sizes, after: Sizes, packages: PackageView | None,
           image: ImageWritten | None) -> None:
    out = sys.stdout
    print(f"image: {tree.source} ({len(tree)} entries)", file=out)
    print(f"reports: {len(args.report)}, {summary['reported_paths']} paths, "
          f"{summary['reported_missing_from_image']} not in the image (skipped)", file=out)
    if keep.absent:
        print(f"         {len(keep.absent)} of them only probed, never found where the "
              f"workload ran (not kept; {len(keep.absent_in_image)} are in the image)",
              file=out)
    reasons = ", ".join(f"{count} {kind}" for kind, count in summary["kept_by_reason"].items())
    print(f"keep: {len(keep)} entries ({reasons})", file=out)
    ratio = after.bytes / before.bytes if before.bytes else 1.0
    factor = f", {before.bytes / after.bytes:.1f}x smaller" if after.bytes else ""
    print(f"size: {human_bytes(before.bytes)} in {before.files} files before, "
          f"{human_bytes(after.bytes)} in {after.files} files after: "
          f"{ratio:.1%} kept{factor}", file=out)
    if tree.layer_bytes:
        # What people compare with: `docker images` counts every layer whole, files a
        # later layer replaced or deleted included; the figures above count the files
        # of the image as it runs.
        print(f"      the image's layers hold {human_bytes(tree.layer_bytes)} "
              f"(what `docker images` shows); the slim image's files "
              f"are {after.bytes / tree.layer_bytes:.1%} of that", file=out)

    rows = removable_by_directory(tree, keep, args.depth)
    print(f"\nremovable by directory (top {args.top} of {len(rows)}):", file=out)
    for directory, sizes in rows[:args.top]:
        print(f"  {human_bytes(sizes.bytes):>10}  {sizes.files:6d} files  "
              f"{directory.decode('utf-8', 'backslashreplace')}", file=out)

    if packages is None:
        print("\npackages: no dpkg or apk database in the image", file=out)
    else:
        used, unused = packages.used, packages.unused
        print(f"\npackages ({packages.manager}): {len(used)} used, {len(unused)} unused "
              f"of {len(packages.packages)}", file=out)
        print("  used (kept files/all, kept bytes/all):", file=out)
        for package in used:
            print(f"    {package.name:32} {package.kept_files:5d}/{len(package.files):<5d} "
                  f"{human_bytes(package.kept_bytes):>10} / {human_bytes(package.total_bytes)}",
                  file=out)
        unused_bytes = sum(p.total_bytes for p in unused)
        print(f"  unused, {human_bytes(unused_bytes)} in all (top {args.top} by size):", file=out)
        for package in unused[:args.top]:
            print(f"    {package.name:32} {len(package.files):5d} files "
                  f"{human_bytes(package.total_bytes):>10}", file=out)

    written = ["keep.txt", "remove.txt", "slim-include-paths.txt", "summary.json"]
    if args.rootfs:
        written += ["rootfs/", "rootfs.tar"]
    if image is not None:
        written.append("image.tar")
    print(f"\nwrote {', '.join(os.path.join(args.out, name) for name in written)}", file=out)
    if image is not None:
        print(f"slim image: docker load -i {os.path.join(args.out, 'image.tar')}  "
              f"({image.tag or 'untagged'}, {image.image_id[:19]}, "
              f"{human_bytes(image.size)})", file=out)


def _print_warnings(keep: KeepSet, notes: list[WriteNotes], coverage: Coverage,
                    reported: int) -> None:
    warnings = []
    # Paths only probed are left out: they were absent where the workload ran too. (A
    # report without outcomes counts its failed probes here, but they are rarely most.)
    found = reported - len(keep.absent)
    if found >= MISMATCH_MIN_PATHS and len(keep.missing) > MISMATCH_SHARE * found:
        warnings.append(f"{len(keep.missing)} of {found} reported paths "
                        f"({len(keep.missing) / found:.0%}) are not in the image: is it "
                        "the image the reports were recorded from, and are they this "
                        "workload's?")
    lost = {name: value for name, value in coverage.counters().items() if value}
    if coverage.unobserved:
        lost["unobserved_intervals"] = len(coverage.unobserved)
    if lost:
        counters = ", ".join(f"{name}={value}" for name, value in lost.items())
        warnings.append(f"the reports may be incomplete ({counters}): the slim image may "
                        "miss files the workload used; record again or add --include")
        warnings.extend(coverage.warnings())
    warnings.extend(keep.warnings)
    if keep.unresolvable:
        warnings.append(f"{len(keep.unresolvable)} reported path(s) relative or in a symlink "
                        "loop, not resolved")
    for note in notes:
        warnings.extend(note.lines())
    for line in warnings[:MAX_WARNINGS]:
        print(f"snoop slim: warning: {line}", file=sys.stderr)
    if len(warnings) > MAX_WARNINGS:
        print(f"snoop slim: warning: ... and {len(warnings) - MAX_WARNINGS} more",
              file=sys.stderr)

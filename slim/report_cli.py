"""`snoop report`: merge, diff or summarize reports, from files or from a receiver.

    snoop report merge A.json B.json ... -o M.json   union of files, metadata and counters
    snoop report diff A.json B.json [--json]         files in one and not the other
    snoop report summary R.json [--json]             counts by directory and access kind
    snoop report --from URL images                   the images a receiver knows
    snoop report --from URL workloads IMAGE          its workloads, and whether complete
    snoop report --from URL summary IMAGE            the union of an image's workloads

With `--from URL` (a `snoop receive`), every REPORT argument names an image (ref or
digest) whose report is the union the receiver answers; without it, a REPORT that is an
http(s) URL (`http://recv:8787?image=shop:1.2`) is fetched (slim/remote.py).
`diff` exits 0 when both reports hold the same files and 1 when they differ, as diff(1)
does. A file that is not a report gives one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable
from typing import Any

from snoop.common import outputs
from snoop.common.outcomes import error_names, only_absent
from snoop.common.report import (
    Report,
    ReportError,
    counts_by_kind,
    iso_time,
    load_report,
    merge_reports,
    path_to_json,
    write_atomically,
)
from snoop.slim import remote


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="from_url", metavar="URL",
                        help="a receiver (snoop receive): REPORT arguments name images, "
                             "answered by it [SNOOP_API_TOKEN is its token]")
    actions = parser.add_subparsers(dest="action", metavar="ACTION",
                                    parser_class=type(parser))
    actions.required = True

    merge = actions.add_parser("merge", help="union of several reports into one",
                               description="Union of the files, metadata, counters and "
                                           "per-file detail of several reports.")
    merge.add_argument("reports", nargs="+", metavar="REPORT")
    merge.add_argument("-o", "--output", required=True, metavar="M.json",
                       help="merged report (written atomically)")
    merge.set_defaults(action_run=_merge)

    diff = actions.add_parser("diff", help="files in one report and not the other",
                              description="Files in one report and not the other, grouped "
                                          "by directory. Exit 0: same files; 1: different.")
    diff.add_argument("a", metavar="A")
    diff.add_argument("b", metavar="B")
    diff.add_argument("--json", action="store_true", help="machine-readable output")
    diff.set_defaults(action_run=_diff)

    summary = actions.add_parser("summary", help="counts by directory and access kind",
                                 description="Counts by top directories and by access kind, "
                                             "plus the coverage counters.")
    summary.add_argument("report", metavar="R")
    summary.add_argument("--depth", type=int, default=2, metavar="D",
                         help="group paths by their first D directories (2)")
    summary.add_argument("--top", type=int, default=20, metavar="N",
                         help="directory rows in the table (20; --json has all)")
    summary.add_argument("--json", action="store_true", help="machine-readable output")
    summary.set_defaults(action_run=_summary)

    listing = actions.add_parser("list", help="the reports in a report directory",
                                 description="One line per report (workload) in DIR, as "
                                             "`snoop run --report-dir` writes them.")
    listing.add_argument("directory", metavar="DIR")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(action_run=_list)

    known = actions.add_parser("images", help="the images a receiver knows (--from)",
                               description="One line per image the receiver (--from URL) has "
                                           "deltas of: its workloads and files.")
    known.add_argument("--json", action="store_true", help="machine-readable output")
    known.set_defaults(action_run=_images)

    seen = actions.add_parser("workloads", help="an image's workloads on a receiver (--from)",
                              description="The workloads of IMAGE the receiver (--from URL) "
                                          "knows, with their coverage: whether the "
                                          "observation is complete. Exit 1 when one is not.")
    seen.add_argument("image", metavar="IMAGE")
    seen.add_argument("--json", action="store_true", help="machine-readable output")
    seen.set_defaults(action_run=_workloads)


def run(args: argparse.Namespace) -> int:
    try:
        if args.action in ("images", "workloads") and not args.from_url:
            raise ReportError(f"{args.action} asks a receiver: expected --from URL")
        if args.from_url and not remote.is_url(args.from_url):
            raise ReportError(f"--from {args.from_url!r}: expected an http:// or https:// URL")
        return args.action_run(args)
    except ReportError as exc:
        print(f"snoop report {args.action}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"snoop report {args.action}: error: {exc.filename or ''}: {exc.strerror}",
              file=sys.stderr)
        return 2


# ---------------------------------------------------------------- pure logic

def directory_of(path: bytes, depth: int) -> bytes:
    """The first `depth` directories of `path`: /usr/lib/x/libc.so at 2 is /usr/lib."""
    parts = path.split(b"/")[1:-1] if path.startswith(b"/") else []
    return b"/" + b"/".join(parts[:max(depth, 1)])


def group_by_directory(paths: Iterable[bytes]) -> dict[bytes, list[bytes]]:
    """Paths grouped by their parent directory, both sorted."""
    groups: dict[bytes, list[bytes]] = {}
    for path in sorted(paths):
        parent, _, name = path.rpartition(b"/")
        groups.setdefault(parent or b"/", []).append(name)
    return dict(sorted(groups.items()))


def diff_reports(a: Report, b: Report) -> tuple[list[bytes], list[bytes]]:
    """(files only in a, files only in b), sorted."""
    return sorted(a.files.keys() - b.files.keys()), sorted(b.files.keys() - a.files.keys())


def outcome_groups(report: Report) -> dict[str, Any]:
    """Files found; only probed, never found (ENOENT, ENOTDIR: slim drops them); failed
    otherwise (EACCES and the like: something is there); of no known outcome."""
    groups = {"found": 0, "never_found": 0, "failed": 0, "outcome_unknown": 0}
    errors: dict[str, int] = {}
    for detail in report.files.values():
        if detail.found is None:
            groups["outcome_unknown"] += 1
            continue
        if detail.found:
            groups["found"] += 1
            continue
        groups["never_found" if only_absent(detail.outcomes) else "failed"] += 1
        for name in error_names(detail.outcomes):
            errors[name] = errors.get(name, 0) + 1
    return {**groups, "not_found_by_error": dict(sorted(errors.items(),
                                                        key=lambda item: (-item[1], item[0])))}


def summarize(report: Report, depth: int) -> dict[str, Any]:
    by_directory: dict[bytes, int] = {}
    for path in report.files:
        key = directory_of(path, depth)
        by_directory[key] = by_directory.get(key, 0) + 1
    coverage = report.coverage.to_json()
    return {
        "workload": report.workload,
        "container_id": report.container_id,
        "image_ref": report.image_ref,
        "started_at": iso_time(report.started_at) if report.started_at else "",
        "last_updated_at": iso_time(report.last_updated_at) if report.last_updated_at else "",
        "files": len(report.files),
        "outcomes": outcome_groups(report),
        "total_events": report.total_events,
        "dropped_events": report.dropped_events,
        "by_directory": {
            path_to_json(k): v
            for k, v in sorted(by_directory.items(), key=lambda item: (-item[1], item[0]))
        },
        "by_kind": dict(sorted(counts_by_kind(report.files).items(),
                               key=lambda item: (-item[1], item[0]))),
        "coverage": coverage,
        "complete": not any(coverage.values()),
        "warnings": report.coverage.warnings(),
    }


# ---------------------------------------------------------------- actions

def _load(args: argparse.Namespace, spec: str) -> Report:
    """A REPORT argument: an image on the --from receiver, a URL, or a file."""
    if args.from_url:
        return remote.image_report(args.from_url, spec, os.environ)
    if remote.is_url(spec):
        return remote.fetch_report(spec, os.environ)
    return load_report(spec)


def _merge(args: argparse.Namespace) -> int:
    problem = outputs.file_problem(args.output)
    if problem:
        print(f"snoop report merge: error: {problem}", file=sys.stderr)
        return 2
    merged = merge_reports(_load(args, path) for path in args.reports)
    write_atomically(args.output, merged.dumps())
    print(f"merged {len(args.reports)} reports: {len(merged.files)} files -> {args.output}")
    return 0


def _diff(args: argparse.Namespace) -> int:
    only_a, only_b = diff_reports(_load(args, args.a), _load(args, args.b))
    if args.json:
        print(json.dumps({
            "a": args.a, "b": args.b,
            "only_in_a": _json_groups(only_a), "only_in_b": _json_groups(only_b),
        }, indent=1, ensure_ascii=True))
    else:
        for name, paths in ((args.a, only_a), (args.b, only_b)):
            print(f"only in {name}: {len(paths)} files")
            for directory, names in group_by_directory(paths).items():
                print(f"  {_show(directory)}{'' if directory == b'/' else '/'}")
                for entry in names:
                    print(f"    {_show(entry)}")
    return 1 if only_a or only_b else 0


def _json_groups(paths: list[bytes]) -> dict[str, list[str]]:
    return {path_to_json(d): [path_to_json(n) for n in names]
            for d, names in group_by_directory(paths).items()}


def _summary(args: argparse.Namespace) -> int:
    report = _load(args, args.report)
    summary = summarize(report, args.depth)
    if args.json:
        print(json.dumps({"report": args.report, **summary}, indent=1, ensure_ascii=True))
        return 0
    print(f"report: {args.report}")
    for label, key in (("workload", "workload"), ("container", "container_id"),
                       ("image", "image_ref"), ("started", "started_at"),
                       ("last updated", "last_updated_at")):
        if summary[key]:
            print(f"{label}: {summary[key]}")
    print(f"files: {summary['files']}   events: {summary['total_events']}   "
          f"dropped: {summary['dropped_events']}")
    outcomes = summary["outcomes"]
    errors = ", ".join(f"{name} {count}"
                       for name, count in outcomes["not_found_by_error"].items())
    parts = [f"{outcomes['found']} found",
             f"{outcomes['never_found']} only probed and never found"]
    if outcomes["failed"]:
        parts.append(f"{outcomes['failed']} there but never accessed")
    if outcomes["outcome_unknown"]:
        parts.append(f"{outcomes['outcome_unknown']} of no known outcome")
    print("  " + ", ".join(parts) + (f" (errors: {errors})" if errors else ""))
    rows = list(summary["by_directory"].items())
    print(f"\nby directory (first {args.depth}; top {min(args.top, len(rows))} of {len(rows)}):")
    for directory, count in rows[:args.top]:
        print(f"  {count:7d}  {_printable(directory)}")
    print("\nby access kind:")
    for kind, count in summary["by_kind"].items():
        print(f"  {count:7d}  {kind}")
    print("\ncoverage:")
    for name, value in summary["coverage"].items():
        if name == "unobserved":
            for start, end in value:
                print(f"  unobserved from {start} to {end}")
        else:
            print(f"  {value:7d}  {name}")
    print("  complete: yes, nothing was lost" if summary["complete"]
          else "  complete: NO, files may be missing from this report (see the counters)")
    for line in summary["warnings"]:
        print(f"  warning: {line}")
    return 0


def _list(args: argparse.Namespace) -> int:
    if not os.path.isdir(args.directory):
        raise ReportError(f"{args.directory} is not a directory")
    rows, unreadable = [], []
    for name in sorted(os.listdir(args.directory)):
        path = os.path.join(args.directory, name)
        if not name.endswith(".json") or name.startswith(".") or not os.path.isfile(path):
            continue
        try:
            report = load_report(path)
        except (ReportError, OSError) as exc:
            unreadable.append((name, str(exc)))
            continue
        rows.append({"report": name, "workload": report.workload,
                     "files": len(report.files), "dropped_events": report.dropped_events,
                     "complete": not any(report.coverage.counters().values()) and
                     not report.coverage.unobserved,
                     "last_updated_at": iso_time(report.last_updated_at)
                     if report.last_updated_at else ""})
    if args.json:
        print(json.dumps({"directory": args.directory, "reports": rows,
                          "unreadable": [{"report": n, "error": e} for n, e in unreadable]},
                         indent=1, ensure_ascii=True))
        return 1 if unreadable else 0
    if not rows and not unreadable:
        print(f"no reports in {args.directory}")
        return 0
    width = max([len("workload"), *(len(r["workload"]) for r in rows)])
    print(f"{'workload':<{width}}  {'files':>8}  {'dropped':>8}  {'complete':<8}  "
          f"{'last updated':<24}  report")
    for r in rows:
        print(f"{r['workload']:<{width}}  {r['files']:>8,}  {r['dropped_events']:>8,}  "
              f"{'yes' if r['complete'] else 'NO':<8}  {r['last_updated_at']:<24}  "
              f"{r['report']}")
    for name, error in unreadable:
        print(f"snoop report list: cannot read {name}: {error}", file=sys.stderr)
    return 1 if unreadable else 0


def _images(args: argparse.Namespace) -> int:
    rows = remote.images(args.from_url, os.environ)
    if args.json:
        print(json.dumps({"receiver": args.from_url, "images": rows}, indent=1,
                         ensure_ascii=True))
        return 0
    if not rows:
        print(f"no images on {args.from_url}")
        return 0
    names = [str(r.get("image_ref") or r.get("image_digest") or "(none)") for r in rows]
    width = max(len("image"), *(len(n) for n in names))
    print(f"{'image':<{width}}  {'workloads':>9}  {'files':>8}  last seen")
    for name, r in zip(names, rows, strict=True):
        print(f"{name:<{width}}  {r.get('workloads', 0):>9,}  {r.get('files', 0):>8,}  "
              f"{r.get('last_seen', '')}")
    return 0


def _workloads(args: argparse.Namespace) -> int:
    rows = remote.workloads(args.from_url, args.image, os.environ)
    incomplete = [r for r in rows if not r.get("complete")]
    if args.json:
        print(json.dumps({"receiver": args.from_url, "image": args.image, "workloads": rows},
                         indent=1, ensure_ascii=True))
        return 1 if incomplete else 0
    names = [f"{r.get('origin', '')}:{r.get('name') or r.get('workload_id', '')}" for r in rows]
    width = max([len("workload"), *(len(n) for n in names)])
    print(f"{'workload':<{width}}  {'files':>8}  {'complete':<8}  last updated")
    for name, r in zip(names, rows, strict=True):
        print(f"{name:<{width}}  {r.get('files', 0):>8,}  "
              f"{'yes' if r.get('complete') else 'NO':<8}  {r.get('last_updated_at', '')}")
    if incomplete:
        print(f"{len(incomplete)} of {len(rows)} workloads may miss files: see their coverage "
              "(--json)")
    return 1 if incomplete else 0


def _show(path: bytes) -> str:
    return path.decode("utf-8", "backslashreplace")


def _printable(text: str) -> str:
    return _show(text.encode("utf-8", "surrogateescape"))

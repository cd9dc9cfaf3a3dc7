"""Output paths, checked before any work: one rule for every command.

A file Snoop writes (`record -o`, `report merge -o`, SNOOP_REPORT_PATH) goes into a
directory that exists; a directory it fills (`slim --out`, SNOOP_REPORT_DIR, `snoop keys
DIR`) is made, inside a parent that exists. A missing
directory is named, never created on the way: a typo should not scatter directories.
"""

from __future__ import annotations

import os
import tempfile

from snoop.common.config import Config


def file_problem(path: str) -> str | None:
    """Why a file cannot be written at `path`; None when it can."""
    directory = os.path.dirname(os.path.abspath(path))
    problem = _not_a_directory("write", path, directory)
    if problem:
        return problem
    if os.path.isdir(path):
        return f"cannot write {path}: it is a directory"
    return _writable(directory, path)


def directory_problem(path: str) -> str | None:
    """Why directory `path` cannot be made (if missing) and filled; None when it can."""
    path = os.path.abspath(path)
    if os.path.isdir(path):
        return _writable(path, path)
    parent = os.path.dirname(path)
    problem = _not_a_directory("make", path, parent)
    if problem:
        return problem
    if os.path.exists(path):
        return f"cannot make {path}: it exists and is not a directory"
    return _writable(parent, path)


def _not_a_directory(verb: str, path: str, directory: str) -> str | None:
    """Why `directory`, which must exist for `path`, is not one."""
    if os.path.exists(directory) and not os.path.isdir(directory):
        return f"cannot {verb} {path}: {directory} is not a directory"
    if not os.path.isdir(directory):
        return f"cannot {verb} {path}: directory {directory} does not exist"
    return None


def _writable(directory: str, path: str) -> str | None:
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        return f"cannot write {path}: {directory}: {exc.strerror or exc}"
    return None


def report_location_problem(config: Config) -> str | None:
    """Why the reports cannot go where the settings say (SNOOP_REPORT_DIR, a directory
    made inside a parent that exists; else SNOOP_REPORT_PATH); None when they can."""
    if config.report_dir:
        return directory_problem(config.report_dir)
    return file_problem(config.report_path)

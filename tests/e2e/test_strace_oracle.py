"""Real programs (a compiler, interpreters, shells, version control, an archiver):
every path strace sees them touch is in what the tracer reports."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import pytest

from tests.support.strace_oracle import strace_paths

pytestmark = [pytest.mark.bpf, pytest.mark.e2e]

EXCLUDED = (b"/proc", b"/sys", b"/dev")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    base = tmp_path_factory.mktemp("oracle")
    (base / "hello.c").write_text('#include <stdio.h>\nint main(void){puts("hi");return 0;}\n')
    (base / "tree" / "a" / "b").mkdir(parents=True)
    (base / "tree" / "a" / "b" / "f.txt").write_text("x")
    (base / "tree" / "top.txt").write_text("y")
    repo = base / "repo"
    repo.mkdir()
    (repo / "a.txt").write_text("a\n")
    (repo / "sub").mkdir()
    (repo / "sub" / "b.txt").write_text("b\n")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "one"], check=True)
    (repo / "a.txt").write_text("changed\n")
    (repo / "new.txt").write_text("n\n")
    subprocess.run([*git, "status"], check=True, stdout=subprocess.DEVNULL)  # settle index
    return str(base)


PROGRAMS = {
    "gcc": ["gcc", "-pipe", "-c", "hello.c", "-o", "hello.o"],
    "python": ["python3", "-c", "import json, sqlite3, decimal, email.mime.text, subprocess"],
    "sh-cd-loop": ["sh", "-c", "cd tree && for f in top.txt a/b/f.txt; do cat $f; done; "
                   "cd a && ls -R .. && cat ../../hello.c"],
    "bash-glob": ["bash", "-c", "cd /etc && for f in *.conf; do wc -l \"$f\"; done"],
    # --no-optional-locks: status does not rewrite the index, so both runs do the same.
    "git": ["git", "--no-optional-locks", "-C", "repo", "status", "--short"],
    "git-log": ["git", "-C", "repo", "log", "--stat", "--oneline"],
    "tar": ["tar", "czf", "out.tgz", "tree", "hello.c"],
    "find": ["find", "tree", "-name", "*.txt", "-newer", "hello.c"],
    "perl": ["perl", "-MPOSIX", "-MFile::Find", "-e", "find(sub {}, 'tree')"],
}


@pytest.mark.parametrize("name", PROGRAMS)
def test_every_path_strace_sees_is_reported(name, tracer, parent, workdir):
    argv = PROGRAMS[name]
    if shutil.which(argv[0]) is None:
        pytest.fail(f"{argv[0]} is not installed: the oracle test needs it")
    oracle = {p for p in strace_paths(argv, workdir)
              if not any(p == e or p.startswith(e + b"/") for e in EXCLUDED)}
    child = parent.child(f"{name}-{uuid.uuid4().hex[:6]}")
    try:
        child.run(argv, cwd=workdir, stdout=open(os.devnull, "w"),  # noqa: SIM115
                  stderr=open(os.devnull, "w"))  # noqa: SIM115
        cid = child.id

        def reported() -> set[bytes]:
            return {os.path.normpath(e.path) for e in tracer.collected.for_cgroup(cid)}

        tracer.wait_for(lambda c: oracle <= reported(), timeout=20)
        missing = oracle - reported()
        assert not missing, f"{len(missing)} of {len(oracle)} missing: {sorted(missing)[:10]}"
        assert all(e.resolved for e in tracer.collected.for_cgroup(cid))
    finally:
        child.remove()

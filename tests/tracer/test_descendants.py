"""The tracer's own list of every cgroup below the targets (kernels without the ancestor
helper): on a directory tree, with inode numbers standing in for cgroup ids."""

from __future__ import annotations

import os

import pytest

from snoop.tracer.descendants import DescendantTracker


def inode(path: str) -> int:
    return os.stat(path).st_ino


@pytest.fixture
def tree(tmp_path):
    for rel in ("a/self/x", "a/b", "c/d"):
        (tmp_path / rel).mkdir(parents=True)
    tracker = DescendantTracker(str(tmp_path), id_of_dir=inode)
    try:
        yield tmp_path, tracker
    finally:
        tracker.close()


def test_every_descendant_gets_the_verdict_of_its_nearest_listed_ancestor(tree):
    root, tracker = tree
    listed = tracker.expand({"/a": True, "/a/self": False})
    ids = {rel: inode(root / rel.lstrip("/")) for rel in ("/a", "/a/b", "/a/self", "/a/self/x")}
    assert listed == {ids["/a"]: True, ids["/a/b"]: True, ids["/a/self"]: False,
                      ids["/a/self/x"]: False}
    assert inode(root / "c") not in listed  # not below a target


def test_new_cgroups_are_picked_up_with_their_parents_verdict(tree):
    root, tracker = tree
    tracker.expand({"/a": True, "/a/self": False})
    (root / "a/new").mkdir()
    (root / "a/self/mine").mkdir()
    (root / "c/elsewhere").mkdir()
    changes = tracker.poll()
    assert changes.added == {inode(root / "a/new"): True, inode(root / "a/self/mine"): False}
    assert not changes.removed
    assert tracker.poll().added == {}


def test_a_subtree_made_at_once_is_found_whole(tree):
    root, tracker = tree
    tracker.expand({"/a": True})
    # The grandchildren exist before any watch on their parents: the walk finds them.
    os.makedirs(root / "a/p/q/r")
    added = tracker.poll().added
    assert set(added) == {inode(root / rel) for rel in ("a/p", "a/p/q", "a/p/q/r")}
    assert all(added.values())


def test_removed_cgroups_leave_the_list(tree):
    root, tracker = tree
    tracker.expand({"/a": True})
    gone = inode(root / "a/b")
    os.rmdir(root / "a/b")
    changes = tracker.poll()
    assert changes.removed == {gone}
    assert gone not in tracker.expanded()


def test_the_fd_is_readable_when_a_cgroup_appears(tree):
    import select

    root, tracker = tree
    tracker.expand({"/": True})
    poller = select.poll()
    poller.register(tracker.fd, select.POLLIN)
    assert poller.poll(0) == []
    (root / "c/late").mkdir()
    assert poller.poll(1000)
    assert inode(root / "c/late") in tracker.poll().added

"""The journal file: append, sync, replay, torn tails, damage, bounds, failures."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import pytest

from snoop.common.protocol import (
    AccessKind,
    FileSeen,
    FileUpdates,
    Header,
    Workload,
    WorkloadUpdate,
    kinds_mask,
)
from snoop.reporter.journal import HEADER, Journal, JournalSuspended

NOW = time.time()
W1 = Workload("c1", "/docker/c1", "c1")


def fu(seq: int, *paths: bytes, covers: dict | None = None) -> FileUpdates:
    files = tuple(FileSeen(p, kinds_mask(AccessKind.READ), NOW, NOW) for p in paths)
    return FileUpdates(Header("proc", seq), (WorkloadUpdate(W1, files, len(files)),),
                       covers=covers if covers is not None else {"t1": ((seq, seq),)})


def opened(path: Path, **kwargs) -> tuple[Journal, list]:
    journal = Journal(str(path), **kwargs)
    return journal, journal.open()


def paths_of(entries) -> list[bytes]:
    return [f.path for e in entries for u in e.updates.updates for f in u.files]


def test_records_round_trip(tmp_path: Path) -> None:
    journal, entries = opened(tmp_path / "j")
    assert entries == [] and journal.last_seq == 0
    for n in range(1, 4):
        assert journal.append(fu(n, b"/f%d" % n)) == n
    journal.sync()
    assert journal.unsynced == 0 and journal.counts.syncs == 1
    journal.close()
    again, entries = opened(tmp_path / "j")
    assert [e.seq for e in entries] == [1, 2, 3]
    assert entries[0].updates == fu(1, b"/f1")
    assert again.last_seq == 3 and again.size == os.path.getsize(tmp_path / "j")
    assert again.append(fu(4, b"/f4")) == 4


def test_a_message_is_journalled_as_the_bytes_it_came_as(tmp_path: Path) -> None:
    from snoop.common.protocol import encode

    journal, _ = opened(tmp_path / "j")
    received = encode(fu(1, b"/as-received"))
    journal.append(fu(1, b"/as-received"), received)
    journal.sync()
    journal.close()
    assert received in (tmp_path / "j").read_bytes()
    _, entries = opened(tmp_path / "j")
    assert entries[0].updates == fu(1, b"/as-received")


def test_reset_empties_but_numbering_carries_on(tmp_path: Path) -> None:
    journal, _ = opened(tmp_path / "j")
    journal.append(fu(1, b"/a"))
    journal.append(fu(2, b"/b"))
    journal.reset()
    assert os.path.getsize(tmp_path / "j") == 0 and journal.size == 0
    assert journal.append(fu(3, b"/c")) == 3
    journal.close()
    _, entries = opened(tmp_path / "j")
    assert [e.seq for e in entries] == [3]


@pytest.mark.parametrize("cut", [1, 3, HEADER.size - 1, HEADER.size, HEADER.size + 5, -1])
def test_a_torn_last_record_is_dropped(tmp_path: Path, cut: int, caplog) -> None:
    journal, _ = opened(tmp_path / "j")
    journal.append(fu(1, b"/kept"))
    good = journal.size
    journal.append(fu(2, b"/torn"))
    journal.close()
    with open(tmp_path / "j", "r+b") as handle:
        handle.truncate(good + (cut if cut > 0 else journal.size - good - 1))
    again, entries = opened(tmp_path / "j")
    assert paths_of(entries) == [b"/kept"]
    assert again.counts.torn == 1 and again.counts.corrupt == 0
    assert os.path.getsize(tmp_path / "j") == good  # cut back: the next append follows /kept
    assert not [n for n in os.listdir(tmp_path) if "corrupt" in n]
    assert any("torn last record" in r.getMessage() for r in caplog.records)
    again.append(fu(3, b"/next"))
    again.close()
    _, entries = opened(tmp_path / "j")
    assert paths_of(entries) == [b"/kept", b"/next"]


def test_a_full_length_record_with_a_bad_crc_at_the_end_is_torn(tmp_path: Path) -> None:
    journal, _ = opened(tmp_path / "j")
    journal.append(fu(1, b"/kept"))
    journal.append(fu(2, b"/torn"))
    journal.close()
    data = bytearray((tmp_path / "j").read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / "j").write_bytes(bytes(data))
    again, entries = opened(tmp_path / "j")
    assert paths_of(entries) == [b"/kept"] and again.counts.torn == 1


def test_zero_padding_after_a_crash_is_a_torn_tail(tmp_path: Path) -> None:
    journal, _ = opened(tmp_path / "j")
    journal.append(fu(1, b"/kept"))
    journal.close()
    with open(tmp_path / "j", "ab") as handle:
        handle.write(b"\0" * 4096)
    again, entries = opened(tmp_path / "j")
    assert paths_of(entries) == [b"/kept"] and again.counts.torn == 1


def test_damage_in_the_middle_is_kept_aside(tmp_path: Path, caplog) -> None:
    journal, _ = opened(tmp_path / "j", aside_path=lambda p: p + ".corrupt-X")
    journal.append(fu(1, b"/kept"))
    good = journal.size
    journal.append(fu(2, b"/damaged"))
    journal.append(fu(3, b"/after"))
    journal.close()
    data = bytearray((tmp_path / "j").read_bytes())
    data[good + HEADER.size + 3] ^= 0xFF  # inside record 2, which is not the last
    (tmp_path / "j").write_bytes(bytes(data))
    again, entries = opened(tmp_path / "j", aside_path=lambda p: p + ".corrupt-X")
    assert paths_of(entries) == [b"/kept"]
    assert again.counts.corrupt == 1 and again.counts.torn == 0
    assert (tmp_path / "j.corrupt-X").read_bytes() == bytes(data[good:])
    assert os.path.getsize(tmp_path / "j") == good
    assert any(r.levelname == "ERROR" and "damaged" in r.getMessage() for r in caplog.records)


def test_an_intact_record_that_no_longer_decodes_is_skipped(tmp_path: Path) -> None:
    from snoop.reporter.journal import _frame

    journal, _ = opened(tmp_path / "j")
    journal.append(fu(1, b"/one"))
    journal.close()
    with open(tmp_path / "j", "ab") as handle:
        handle.write(_frame(2, b"\x81\xa1v\x63"))  # msgpack {"v": 99}: a future schema
    again, _ = opened(tmp_path / "j")
    again.append(fu(3, b"/three"))
    again.close()
    last, entries = opened(tmp_path / "j")
    assert paths_of(entries) == [b"/one", b"/three"]
    assert last.counts.undecodable == 1 and last.last_seq == 3


def test_the_size_bound_suspends_until_reset(tmp_path: Path, caplog) -> None:
    journal, _ = opened(tmp_path / "j", max_bytes=600)
    n = 0
    with pytest.raises(JournalSuspended, match="full"):
        while True:
            n += 1
            journal.append(fu(n, b"/some/path/%d" % n))
    assert journal.size <= 600 and journal.suspended
    with pytest.raises(JournalSuspended):
        journal.append(fu(99, b"/small"))
    assert len([r for r in caplog.records if "journal suspended" in r.getMessage()]) == 1
    journal.reset()
    assert journal.suspended is None
    journal.append(fu(100, b"/again"))


def test_a_failed_fsync_suspends_until_reset(tmp_path: Path) -> None:
    failing = {"on": True}

    def fsync(fd: int) -> None:
        if failing["on"]:
            raise OSError(errno.EIO, "Input/output error")
        os.fsync(fd)

    journal = Journal(str(tmp_path / "j"))
    journal.open()
    journal._fsync = fsync
    journal.append(fu(1, b"/a"))
    with pytest.raises(JournalSuspended, match="fsync failed"):
        journal.sync()
    assert journal.counts.errors == 1
    with pytest.raises(JournalSuspended):
        journal.append(fu(2, b"/b"))
    failing["on"] = False
    journal.reset()
    journal.append(fu(3, b"/c"))
    journal.sync()
    assert journal.counts.syncs == 1

"""Path exclusions (`SNOOP_EXCLUDE_PATHS`): whole-component prefixes, or globs.

- An entry without `*`, `?` or `[` is a prefix of whole components: `/dev` excludes
  `/dev` and `/dev/null`, not `/devices`. `/` excludes every absolute path.
- An entry with any of them is a glob over the whole path: `*` and `?` match within
  one component (never `/`), `**` matches across components, `[abc]`, `[a-z]` and
  `[!abc]` are classes (never matching `/`). A glob that matches a path also excludes
  everything under it: `/home/*/.cache` excludes `/home/u/.cache/pip/x`.
- Relative paths (not resolved by the tracer) are never excluded: we cannot know where
  they point, and leaving a used file out of a report is the worst mistake Snoop can make.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

from snoop.processor.normalize import normalize

_GLOB_CHARS = frozenset(b"*?[")


def is_glob(pattern: bytes) -> bool:
    return any(c in _GLOB_CHARS for c in pattern)


def glob_regex(pattern: bytes) -> re.Pattern[bytes]:
    """Compile a glob to a regex matching the path or anything below it."""
    out: list[bytes] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i:i + 1]
        if c == b"*":
            if pattern[i:i + 2] == b"**":
                out.append(b".*")
                i += 2
                continue
            out.append(b"[^/]*")
        elif c == b"?":
            out.append(b"[^/]")
        elif c == b"[":
            j = i + 1
            if pattern[j:j + 1] in (b"!", b"^"):
                j += 1
            if pattern[j:j + 1] == b"]":
                j += 1
            j = pattern.find(b"]", j)
            if j < 0:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1:j]
                negate = body[:1] in (b"!", b"^")
                if negate:
                    body = body[1:]
                members = b"".join(
                    b"-" if ch == ord("-") else re.escape(bytes([ch])) for ch in body
                )
                out.append(b"(?!/)[" + (b"^" if negate else b"") + members + b"]")
                i = j + 1
                continue
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile(b"".join(out) + rb"(?:/.*)?\Z", re.DOTALL)


class Exclusions:
    """Decides whether a normalized path is left out of reports."""

    def __init__(self, patterns: Iterable[str]) -> None:
        prefixes: list[bytes] = []
        globs: list[re.Pattern[bytes]] = []
        for text in patterns:
            raw = os.fsencode(text)
            if is_glob(raw):
                globs.append(glob_regex(raw.rstrip(b"/") or b"/"))
            else:
                prefixes.append(normalize(raw))
        self.everything = b"/" in prefixes
        self._exact = frozenset(prefixes)
        self._under = tuple(p + b"/" for p in prefixes if p != b"/")
        self._globs = tuple(globs)

    def excludes(self, path: bytes) -> bool:
        if not path.startswith(b"/"):
            return False
        if self.everything or path in self._exact or path.startswith(self._under):
            return True
        return any(g.match(path) for g in self._globs)

"""Lexical path cleaning: `.`, `..`, repeated and trailing slashes. Symlinks are never
resolved: the processor runs unprivileged, in another mount namespace, often on another
host, so the only honest thing is to clean the text the tracer saw.

Absolute paths: `..` above `/` stays at `/` (as the kernel does). Relative paths (the
tracer could not make them absolute) are kept relative; leading `..` that cannot be
folded are kept, and a path that cleans away entirely becomes `.`.
"""

from __future__ import annotations


def normalize(path: bytes) -> bytes:
    """Clean `path` lexically; bytes in, bytes out, never touches the filesystem."""
    if path.startswith(b"/"):
        # Fast path: most paths the kernel hands us are already clean.
        if b"//" not in path and b"/." not in path and (path == b"/" or path[-1:] != b"/"):
            return path
        parts: list[bytes] = []
        for part in path.split(b"/"):
            if not part or part == b".":
                continue
            if part == b"..":
                if parts:
                    parts.pop()
                continue
            parts.append(part)
        return b"/" + b"/".join(parts)
    parts = []
    for part in path.split(b"/"):
        if not part or part == b".":
            continue
        if part == b".." and parts and parts[-1] != b"..":
            parts.pop()
            continue
        parts.append(part)
    return b"/".join(parts) or b"."

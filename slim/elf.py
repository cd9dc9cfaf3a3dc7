"""What the kernel opens by itself when it executes a file: the ELF interpreter named by
`PT_INTERP` and the `#!` interpreter of a script.

No syscall of the workload names these paths (execve opens them inside the kernel), so
the tracer cannot report them, yet the slim image breaks without them. Both parsers take
the first bytes of a file and a reader for more, and never trust an offset or a count.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

ELF_MAGIC = b"\x7fELF"
PT_INTERP = 3
# The kernel reads at most this much of a script to find its interpreter (BINPRM_BUF_SIZE).
SHEBANG_MAX = 256
_MAX_PHNUM = 0xFFFF
_MAX_INTERP = 4096

# (ELF class, data encoding) -> (ELF header layout, program header layout)
_LAYOUTS = {
    # e_phoff, e_phentsize, e_phnum are fields 5, 9, 10 in both classes.
    (1, 1): ("<16sHHIIIIIHHHHHH", "<IIIIIIII"),
    (1, 2): (">16sHHIIIIIHHHHHH", ">IIIIIIII"),
    (2, 1): ("<16sHHIQQQIHHHHHH", "<IIQQQQQQ"),
    (2, 2): (">16sHHIQQQIHHHHHH", ">IIQQQQQQ"),
}

Reader = Callable[[int, int], bytes]  # (offset, size) -> bytes


class ElfError(ValueError):
    """A file that starts like an ELF file but whose headers do not hold together."""


def is_elf(head: bytes) -> bool:
    return head.startswith(ELF_MAGIC)


def elf_interpreter(read: Reader, file_size: int) -> bytes | None:
    """The PT_INTERP path of an ELF file, or None when it has none (static, or a library).

    `read(offset, size)` returns up to `size` bytes of the file from `offset`.
    """
    ident = read(0, 16)
    if not is_elf(ident):
        return None
    layout = _LAYOUTS.get((ident[4], ident[5]))
    if layout is None:
        raise ElfError(f"unknown ELF class/encoding {ident[4]}/{ident[5]}")
    header_format, phdr_format = layout
    header_size = struct.calcsize(header_format)
    header = read(0, header_size)
    if len(header) < header_size:
        raise ElfError("truncated ELF header")
    fields = struct.unpack(header_format, header)
    phoff, phentsize, phnum = fields[5], fields[9], fields[10]
    if phnum == 0:
        return None
    phdr_size = struct.calcsize(phdr_format)
    if phentsize < phdr_size or phnum > _MAX_PHNUM or phoff + phentsize * phnum > file_size:
        raise ElfError(f"program headers out of bounds (offset {phoff}, {phnum} x {phentsize})")
    table = read(phoff, phentsize * phnum)
    if len(table) < phentsize * phnum:
        raise ElfError("truncated program header table")
    for index in range(phnum):
        raw = table[index * phentsize:index * phentsize + phdr_size]
        values = struct.unpack(phdr_format, raw)
        if values[0] != PT_INTERP:
            continue
        # 32-bit: p_type, p_offset, p_vaddr, p_paddr, p_filesz, ...
        # 64-bit: p_type, p_flags, p_offset, p_vaddr, p_paddr, p_filesz, ...
        offset, size = (values[1], values[4]) if ident[4] == 1 else (values[2], values[5])
        if size == 0 or size > _MAX_INTERP or offset + size > file_size:
            raise ElfError(f"PT_INTERP out of bounds (offset {offset}, size {size})")
        path = read(offset, size).split(b"\0", 1)[0]
        if not path:
            raise ElfError("empty PT_INTERP")
        return path
    return None


def shebang_interpreter(head: bytes) -> bytes | None:
    """The interpreter path of a `#!` script, as the kernel parses it; None otherwise."""
    if not head.startswith(b"#!"):
        return None
    line = head[2:SHEBANG_MAX].split(b"\n", 1)[0]
    words = line.replace(b"\t", b" ").strip(b" \r").split(b" ", 1)
    return words[0] or None

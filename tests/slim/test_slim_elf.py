from __future__ import annotations

import os

import pytest

from snoop.slim.elf import ElfError, elf_interpreter, shebang_interpreter

from .helpers import elf32, elf64


def interp_of(data: bytes) -> bytes | None:
    return elf_interpreter(lambda offset, size: data[offset:offset + size], len(data))


def test_real_binary_names_the_dynamic_loader() -> None:
    with open("/usr/bin/ls", "rb") as handle:
        data = handle.read()
    interp = interp_of(data)
    assert interp is not None and interp.startswith(b"/") and b"ld-linux" in interp
    assert os.path.exists(interp)


def test_crafted_64_bit_little_and_big_endian() -> None:
    assert interp_of(elf64(b"/lib64/ld-linux-x86-64.so.2")) == b"/lib64/ld-linux-x86-64.so.2"
    assert interp_of(elf64(b"/lib/ld64.so.1", big_endian=True)) == b"/lib/ld64.so.1"


def test_crafted_32_bit() -> None:
    assert interp_of(elf32(b"/lib/ld-linux.so.2")) == b"/lib/ld-linux.so.2"


def test_static_binary_and_non_elf_have_none() -> None:
    assert interp_of(elf64(None)) is None
    assert interp_of(b"#!/bin/sh\n") is None
    assert interp_of(b"") is None


@pytest.mark.parametrize("cut", [20, 70, 130])
def test_truncated_elf_is_an_error_not_a_crash(cut: int) -> None:
    with pytest.raises(ElfError):
        interp_of(elf64(b"/lib64/ld-linux-x86-64.so.2", pad=0)[:cut])


def test_interp_offset_past_the_end_is_refused() -> None:
    data = bytearray(elf64(b"/lib/ld.so"))
    # second program header (PT_INTERP) starts at 64 + 56; p_offset at +8
    data[64 + 56 + 8:64 + 56 + 16] = (1 << 40).to_bytes(8, "little")
    with pytest.raises(ElfError):
        interp_of(bytes(data))


@pytest.mark.parametrize(("head", "expected"), [
    (b"#!/bin/sh\necho hi\n", b"/bin/sh"),
    (b"#! /usr/bin/env python3 -u\n", b"/usr/bin/env"),
    (b"#!/usr/bin/perl\t-w\r\n", b"/usr/bin/perl"),
    (b"#!\n", None),
    (b"echo hi\n", None),
])
def test_shebang(head: bytes, expected: bytes | None) -> None:
    assert shebang_interpreter(head) == expected

"""What an access found, as one 64-bit mask per file: bit 0 when an access succeeded,
bit N when one failed with errno N (1-61), bit 62 for any errno of 62 or more, and bit
63 (MAYBE_FOUND) for an access whose outcome nobody recorded: it came from a tracer, a
processor or a report from before outcomes, and may have found the file.

A failed probe is kept apart from a file that was there: a PATH search or an import path
tries many names that never existed (ENOENT, ENOTDIR), and a slimmed image must keep the
files that were found while it may drop the ones that were only probed.
"""

from __future__ import annotations

import errno as errno_names

FOUND = 1  # bit 0: an access succeeded (the file was there, or the access created it)
OTHER_ERRNO_BIT = 62
MAYBE_FOUND = 1 << 63
OUTCOME_BITS = 64
OUTCOMES_MAX = (1 << OUTCOME_BITS) - 1
# An Event's errno when the access's result is not known: an exec's name, sent before
# the exec ran or failed (its result comes as another event).
OUTCOME_UNKNOWN = -1
# Never on the wire: what a receiver gives an event of a sender from before outcomes.
OUTCOME_LEGACY = -2
MAX_ERRNO = 4095  # the kernel's -MAX_ERRNO..-1 error returns


def outcome_bit(errno: int) -> int:
    """The mask bit of one access: 0 for success, the errno's bit for a failure."""
    if errno == 0:
        return FOUND
    if errno == OUTCOME_LEGACY:
        return MAYBE_FOUND
    if errno < 0:
        return 0
    return 1 << min(errno, OTHER_ERRNO_BIT)


_ABSENT = 1 << errno_names.ENOENT | 1 << errno_names.ENOTDIR


def only_absent(outcomes: int) -> bool:
    """True when no access found the file and every failure said its name does not exist
    (ENOENT, ENOTDIR). EACCES, ELOOP and the like mean something is there."""
    return outcomes != 0 and not outcomes & (FOUND | MAYBE_FOUND) and not outcomes & ~_ABSENT


def error_names(outcomes: int) -> list[str]:
    """The failures of a mask, by name: ["ENOENT", "ENOTDIR"], "errno>=62" for bit 62."""
    failures = outcomes & ~FOUND & ~MAYBE_FOUND
    names = []
    while failures:  # once per bit set: most files have none
        bit = failures & -failures
        failures ^= bit
        names.append(_NAME_OF_BIT[bit.bit_length() - 1])
    return names


_NAME_OF_BIT = [errno_names.errorcode.get(number, f"errno {number}")
                for number in range(OUTCOME_BITS)]
_NAME_OF_BIT[OTHER_ERRNO_BIT] = f"errno>={OTHER_ERRNO_BIT}"


_BIT_BY_NAME = {name: number for number, name in errno_names.errorcode.items()
                if number < OTHER_ERRNO_BIT}
_BIT_BY_NAME[f"errno>={OTHER_ERRNO_BIT}"] = OTHER_ERRNO_BIT


def outcomes_from_names(found: bool, names: list[str]) -> tuple[int, list[str]]:
    """The mask of a report's `found` and `errors`; also the names it does not know."""
    mask = FOUND if found else 0
    unknown = []
    for name in names:
        number = _BIT_BY_NAME.get(name)
        if number is None and name.startswith("errno ") and name[6:].isdigit():
            number = min(int(name[6:]), OTHER_ERRNO_BIT) or None
        if number is None:
            unknown.append(name)
        else:
            mask |= 1 << number
    return mask, unknown

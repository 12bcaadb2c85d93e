"""`Prefer: count=exact|planned|estimated` (RFC 7240, as PostgREST): how a list's X-Total-Count is made.

A request may carry several preferences, comma-separated, in one Prefer header or several
(`Prefer: return=minimal, count=exact`). Names are matched ignoring case, with optional spaces around
`=`; a value may be quoted; parameters after `;` are ignored. As RFC 7240 §2 says, only the first
`count` preference counts, and a preference the server does not know — another name, or a count value
other than the three — is ignored: the list then behaves as if none was sent (no count, no
Preference-Applied), never an error.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from fluxopus.models.common import COUNT_MODES, CountMode

# Commas and semicolons inside a quoted value do not separate anything.
_SEPARATOR = re.compile(rb'[,;]|"(?:[^"\\]|\\.)*"?')


def count_preference(headers: Iterable[tuple[bytes, bytes]]) -> CountMode | None:
    """The count mode the raw ASGI headers (names lower-case) ask for, or None: one pass over them,
    and nothing more unless a Prefer header is there."""
    for name, value in headers:
        if name == b"prefer":
            found = _count_in(value)
            if found is not None:
                return next((mode for mode in COUNT_MODES if mode == found), None)
    return None


def _count_in(header: bytes) -> str | None:
    """The value of the first `count` preference in one Prefer header ("" if it has none), or None
    when the header has no count preference."""
    for preference in _preferences(header):
        token, equals, value = preference.partition(b"=")
        if token.strip().lower() == b"count":
            word = value.strip() if equals else b""
            if len(word) >= 2 and word.startswith(b'"') and word.endswith(b'"'):
                word = re.sub(rb"\\(.)", rb"\1", word[1:-1])
            return word.decode("latin-1").lower()
    return None


def _preferences(header: bytes) -> list[bytes]:
    """Each preference's `token[=value]`, its parameters (after `;`) left out."""
    found: list[bytes] = []
    start, in_parameters = 0, False
    for match in _SEPARATOR.finditer(header):
        separator = match.group()
        if separator.startswith(b'"'):
            continue
        if not in_parameters:
            found.append(header[start : match.start()])
        in_parameters = separator == b";"
        start = match.end()
    if not in_parameters:
        found.append(header[start:])
    return found

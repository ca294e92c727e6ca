"""Text from untrusted sources (commits, origins, os-release, kernel directory names) made safe for a single
line of configuration or a terminal.

Unsafe characters: C0 and C1 controls (ESC, CR, LF, NEL U+0085...), Unicode line and paragraph separators
(U+2028/U+2029) and invisible format characters (bidi overrides, zero-width characters), i.e. Unicode
categories Cc, Cf, Zl, Zp and surrogates Cs.
"""

from __future__ import annotations

import re
import unicodedata

_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
_ASCII_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")


def _unsafe(c: str) -> bool:
    return unicodedata.category(c) in _UNSAFE_CATEGORIES


def first_unsafe(value: str) -> str | None:
    """The first control, line-break or invisible format character in ``value``, else None."""
    if value.isascii():
        m = _ASCII_UNSAFE.search(value)
        return m.group() if m else None
    return next((c for c in value if _unsafe(c)), None)


def one_line(value: str, replacement: str = " ") -> str:
    """``value`` with every unsafe character replaced (for titles and other free text in boot entries)."""
    if first_unsafe(value) is None:
        return value
    return "".join(replacement if _unsafe(c) else c for c in value)


def for_terminal(value: str, *, keep_newlines: bool = False) -> str:
    """``value`` with unsafe characters shown as escapes (``\\x1b``, ``\\u2028``) so nothing reaches a terminal
    as a control sequence; tabs (and with ``keep_newlines`` LF) stay as they are."""
    keep = "\t\n" if keep_newlines else "\t"
    if first_unsafe(value.replace("\t", " ").replace("\n", " " if keep_newlines else "\n")) is None:
        return value
    return "".join(c if c in keep or not _unsafe(c) else c.encode("unicode_escape").decode("ascii")
                   for c in value)

"""Parsing helpers shared by the command modules."""

from __future__ import annotations

from collections.abc import Iterable

from hybridos.errors import UsageError


def parse_key_values(values: Iterable[str], option: str) -> dict[str, str]:
    """``("a=1", "b=x=y")`` -> ``{"a": "1", "b": "x=y"}``; a value without ``=`` or key is a usage error."""
    out = {}
    for v in values:
        key, sep, value = v.partition("=")
        if not sep or not key:
            raise UsageError(f"{option} expects KEY=VALUE, got {v!r}")
        out[key] = value
    return out

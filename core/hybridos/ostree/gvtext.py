"""GVariant text format (what ``ostree show --print-metadata-key`` prints) for metadata values."""

from __future__ import annotations

from typing import Any

from hybridos.gvariant import Variant, infer_signature

_ANNOTATED = {"y": "byte", "n": "int16", "q": "uint16", "u": "uint32", "x": "int64", "t": "uint64",
              "h": "handle"}


def _quote(s: str) -> str:
    out = []
    for ch in s:
        if ch in ("'", "\\"):
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "'" + "".join(out) + "'"


def _bytes(b: bytes) -> str:
    if b.endswith(b"\0") and b"\0" not in b[:-1]:
        try:
            return "b" + _quote(b[:-1].decode("utf-8"))
        except UnicodeDecodeError:
            pass
    return "[" + ", ".join(f"byte 0x{x:02x}" if i == 0 else f"0x{x:02x}" for i, x in enumerate(b)) + "]"


def format_value(value: Any, signature: str | None = None, *, annotate: bool = True) -> str:
    """Print a value as GVariant text, e.g. ``'1.0'``, ``['x']``, ``uint64 5``, ``{'k': <'v'>}``."""
    if isinstance(value, Variant):
        return format_value(value.value, value.signature, annotate=annotate)
    sig = signature or infer_signature(value)
    if sig == "s" or sig in ("o", "g"):
        return _quote(value)
    if sig == "b":
        return "true" if value else "false"
    if sig in _ANNOTATED:
        text = f"0x{value:02x}" if sig == "y" else str(value)
        return f"{_ANNOTATED[sig]} {text}" if annotate else text
    if sig in ("i", "d"):
        return str(value)
    if sig == "v":
        return "<" + format_value(value) + ">"
    if sig == "ay":
        if not value:
            return "@ay []" if annotate else "[]"
        return _bytes(bytes(value))
    if sig.startswith("a{"):
        if not value:
            return f"@{sig} {{}}" if annotate else "{}"
        inner = sig[2:-1]
        ksig, vsig = inner[0], inner[1:]
        items = [f"{format_value(k, ksig, annotate=False)}: {format_value(v, vsig, annotate=(i == 0))}"
                 for i, (k, v) in enumerate(value.items())]
        return "{" + ", ".join(items) + "}"
    if sig.startswith("a"):
        if not value:
            return f"@{sig} []" if annotate else "[]"
        child = sig[1:]
        return "[" + ", ".join(format_value(v, child, annotate=(i == 0)) for i, v in enumerate(value)) + "]"
    if sig.startswith("("):
        return "(" + ", ".join(format_value(v) for v in value) + ")"
    return repr(value)

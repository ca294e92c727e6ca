"""GVariant serialization: pure functions, normal form only, strict bounds checking.

Covers the types OSTree uses (and the general rules, so any type string works): basic types
``y b n q i u x t h d s o g``, arrays ``aT``, tuples ``(...)``, dict entries ``{KV}``, maybes ``mT`` and
variants ``v``. Python values: integers, ``bool``, ``float``, ``str``; ``ay`` is ``bytes``; arrays of dict
entries are ``dict`` (order kept; a parsed one with a repeated key is a :class:`GDict` that keeps every entry and
answers lookups with the first, as ``g_variant_lookup`` does), other arrays ``list``; tuples ``tuple``; ``v`` is
:class:`Variant`; a maybe is ``None`` or its value, and a maybe of a maybe holds :class:`Just` (``mmy`` Just(Nothing)
is ``Just(None)``, serialized ``00`` like GLib).

All integers are little-endian as GVariant frames them. OSTree pre-swaps some fields to big-endian; that is the
object model's business (see :func:`bswap32`).

:func:`parse` accepts only data in normal form: it re-serializes what it parsed and refuses any difference, so
non-canonical padding, offsets or framing widths are rejected exactly like ``ostree fsck`` does.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from hybridos.errors import FormatError

# GLib's G_VARIANT_MAX_RECURSION_DEPTH: type strings nest at most this deep, and so do values inside variants.
MAX_DEPTH = 128

_BASIC_FIXED = {"y": (1, "<B"), "b": (1, "<B"), "n": (2, "<h"), "q": (2, "<H"), "i": (4, "<i"), "u": (4, "<I"),
                "h": (4, "<i"), "x": (8, "<q"), "t": (8, "<Q"), "d": (8, "<d")}
_STRINGS = "sog"


@dataclass(frozen=True)
class Variant:
    """A value together with its GVariant type string (the content of a ``v``)."""

    signature: str
    value: Any


@dataclass(frozen=True)
class Just:
    """The present value of a maybe whose child is itself a maybe (``mmy``: ``Just(None)`` vs ``None``)."""

    value: Any


class GDict(dict):
    """A parsed ``a{..}`` in which some key repeats: lookups answer the first entry (as GLib's do) and
    ``entries`` keeps them all, so the bytes serialize back unchanged."""

    entries: list[tuple[Any, Any]]


def _make_dict(items: list) -> dict:
    d: dict = {}
    for k, v in items:
        d.setdefault(k, v)
    if len(d) == len(items):
        return d
    g = GDict(d)
    g.entries = items
    return g


def is_object_path(s: str) -> bool:
    """D-Bus object path syntax (GLib's ``g_variant_is_object_path``)."""
    if not s.startswith("/"):
        return False
    if s == "/":
        return True
    return all(part and all(c.isascii() and (c.isalnum() or c == "_") for c in part) for part in s[1:].split("/"))


_SIGNATURE_CHARS = frozenset("ybnqiuxthdvasog(){}")


def is_signature(s: str) -> bool:
    """A D-Bus signature: zero or more complete types from ``ybnqiuxthdvasog(){}`` (``g_variant_is_signature``)."""
    if not set(s) <= _SIGNATURE_CHARS:
        return False
    pos = 0
    try:
        while pos < len(s):
            _, pos = _parse_type(s, pos)
    except FormatError:
        return False
    return True


@dataclass(frozen=True)
class GType:
    """A parsed type string: kind is the leading character (``a``, ``(``, ``{``, ``m`` or a basic type)."""

    signature: str
    kind: str
    children: tuple[GType, ...]
    alignment: int
    fixed_size: int | None  # None for variable-size types
    depth: int = 1  # GLib's g_variant_type_info_query_depth: 1 for a basic type, +1 per container level


def _align(n: int, a: int) -> int:
    return (n + a - 1) & ~(a - 1)


@lru_cache(maxsize=512)
def gtype(signature: str) -> GType:
    """Parse a complete, single type string (raises FormatError when it is not one)."""
    t, rest = _parse_type(signature, 0)
    if rest != len(signature):
        raise FormatError(f"invalid GVariant type string {signature!r}")
    return t


def _parse_type(sig: str, pos: int, depth: int = 0) -> tuple[GType, int]:
    if depth > MAX_DEPTH:
        raise FormatError("GVariant type nests too deeply")
    if pos >= len(sig):
        raise FormatError(f"invalid GVariant type string {sig!r}")
    c = sig[pos]
    if c in _BASIC_FIXED:
        size = _BASIC_FIXED[c][0]
        return GType(c, c, (), size, size), pos + 1
    if c in _STRINGS:
        return GType(c, c, (), 1, None), pos + 1
    if c == "v":
        return GType(c, c, (), 8, None), pos + 1
    if c in "am":
        child, end = _parse_type(sig, pos + 1, depth + 1)
        return GType(sig[pos:end], c, (child,), child.alignment, None, child.depth + 1), end
    if c in "({":
        close = ")" if c == "(" else "}"
        children = []
        p = pos + 1
        while True:
            if p >= len(sig):
                raise FormatError(f"invalid GVariant type string {sig!r}")
            if sig[p] == close:
                p += 1
                break
            child, p = _parse_type(sig, p, depth + 1)
            children.append(child)
        if c == "{" and (len(children) != 2 or children[0].kind not in _BASIC_FIXED and children[0].kind not in _STRINGS):
            raise FormatError(f"invalid dict entry type in {sig!r}")
        align = max((ch.alignment for ch in children), default=1)
        fixed: int | None
        if all(ch.fixed_size is not None for ch in children):
            off = 0
            for ch in children:
                off = _align(off, ch.alignment) + ch.fixed_size  # type: ignore[operator]
            fixed = _align(off, align) if children else 1
        else:
            fixed = None
        return GType(sig[pos:p], c, tuple(children), align, fixed,
                     1 + max((ch.depth for ch in children), default=0)), p
    raise FormatError(f"invalid GVariant type string {sig!r}")


def _offset_size_for(total: int) -> int:
    if total == 0:
        return 0
    if total <= 0xFF:
        return 1
    if total <= 0xFFFF:
        return 2
    if total <= 0xFFFFFFFF:
        return 4
    return 8


def _framing_width(body: int, n: int) -> int:
    for k in (1, 2, 4, 8):
        if body + n * k <= (1 << (8 * k)) - 1:
            return k
    raise FormatError("GVariant container too large")  # pragma: no cover


def _pack_offsets(offsets: list[int], k: int) -> bytes:
    fmt = {1: "B", 2: "H", 4: "I", 8: "Q"}[k]
    return struct.pack(f"<{len(offsets)}{fmt}", *offsets)


# ---------------------------------------------------------------------------------------------------- serialize

def serialize(signature: str | GType, value: Any) -> bytes:
    """Serialize ``value`` as type ``signature`` in normal form."""
    t = signature if isinstance(signature, GType) else gtype(signature)
    out = bytearray()
    _ser(t, value, out)
    return bytes(out)


def _pad(out: bytearray, a: int) -> None:
    if a > 1:
        n = (-len(out)) & (a - 1)
        if n:
            out += b"\0" * n


def _ser(t: GType, v: Any, out: bytearray) -> None:
    # ``out`` starts at an offset aligned to t.alignment, so local alignment equals absolute alignment.
    k = t.kind
    try:
        if k in _BASIC_FIXED:
            if k == "b":
                out.append(1 if v else 0)
            else:
                out += struct.pack(_BASIC_FIXED[k][1], v)
            return
        if k in _STRINGS:
            b = v.encode("utf-8")
            if b"\0" in b:
                raise FormatError("GVariant strings cannot contain NUL")
            _check_string_kind(k, v)
            out += b
            out.append(0)
            return
    except (struct.error, TypeError, AttributeError, UnicodeEncodeError) as exc:
        raise FormatError(f"cannot serialize {v!r} as GVariant {t.signature!r}: {exc}") from None
    if k == "v":
        if not isinstance(v, Variant):
            raise FormatError(f"GVariant 'v' needs a Variant, got {type(v).__name__}")
        child = gtype(v.signature)
        start = len(out)
        sub = bytearray()
        _ser(child, v.value, sub)
        out += sub
        del start
        out.append(0)
        out += v.signature.encode("ascii")
        return
    if k == "m":
        if v is None:
            return
        if isinstance(v, Just):
            v = v.value
        child = t.children[0]
        _ser(child, v, out)
        if child.fixed_size is None:
            out.append(0)
        return
    if k == "a":
        child = t.children[0]
        if child.signature == "y":
            if not isinstance(v, (bytes, bytearray, memoryview)):
                raise FormatError(f"GVariant 'ay' needs bytes, got {type(v).__name__}")
            out += v
            return
        items = v.entries if isinstance(v, GDict) else list(v.items()) if isinstance(v, dict) else v
        if child.fixed_size is not None:
            for item in items:
                _ser(child, item, out)
            return
        base = len(out)
        ends = []
        for item in items:
            _pad(out, child.alignment)
            _ser(child, item, out)
            ends.append(len(out) - base)
        if ends:
            w = _framing_width(len(out) - base, len(ends))
            out += _pack_offsets(ends, w)
        return
    if k in "({":
        members = t.children
        if not isinstance(v, (tuple, list)) or len(v) != len(members):
            raise FormatError(f"GVariant {t.signature!r} needs a {len(members)}-tuple, got {v!r:.80}")
        base = len(out)
        if not members:
            out.append(0)
            return
        ends = []
        last = len(members) - 1
        for i, (m, item) in enumerate(zip(members, v, strict=True)):
            _pad(out, m.alignment)
            _ser(m, item, out)
            if m.fixed_size is None and i != last:
                ends.append(len(out) - base)
        if t.fixed_size is not None:
            _pad(out, t.alignment)
            return
        if ends:
            w = _framing_width(len(out) - base, len(ends))
            out += _pack_offsets(ends[::-1], w)
        return
    raise FormatError(f"unsupported GVariant type {t.signature!r}")  # pragma: no cover


# ---------------------------------------------------------------------------------------------------- parse

def parse(signature: str | GType, data: bytes | bytearray | memoryview, *, normal_form: bool = True) -> Any:
    """Parse ``data`` as type ``signature``; FormatError on any malformation (or non-normal form)."""
    t = signature if isinstance(signature, GType) else gtype(signature)
    buf = bytes(data)
    value = _de(t, buf, 0, len(buf), 0)
    if normal_form and serialize(t, value) != buf:
        raise FormatError(f"GVariant {t.signature!r} is not in normal form")
    return value


def _check_string_kind(k: str, s: str) -> None:
    if k == "o" and not is_object_path(s):
        raise FormatError(f"GVariant object path {s[:80]!r} is not valid")
    if k == "g" and not is_signature(s):
        raise FormatError(f"GVariant signature {s[:80]!r} is not valid")


def _read_offset(buf: bytes, pos: int, k: int) -> int:
    return int.from_bytes(buf[pos:pos + k], "little")


def _bad(t: GType, why: str) -> FormatError:
    return FormatError(f"malformed GVariant {t.signature!r}: {why}")


def _de(t: GType, buf: bytes, start: int, end: int, depth: int) -> Any:
    size = end - start
    k = t.kind
    if t.fixed_size is not None and k not in "({":
        if size != t.fixed_size:
            raise _bad(t, f"expected {t.fixed_size} bytes, found {size}")
        if k == "b":
            b = buf[start]
            if b > 1:
                raise _bad(t, "boolean is neither 0 nor 1")
            return b == 1
        return struct.unpack_from(_BASIC_FIXED[k][1], buf, start)[0]
    if k in _STRINGS:
        if size == 0 or buf[end - 1] != 0:
            raise _bad(t, "string is not NUL-terminated")
        raw = buf[start:end - 1]
        if b"\0" in raw:
            raise _bad(t, "string contains NUL")
        try:
            s = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _bad(t, "string is not valid UTF-8") from None
        if k != "s":
            _check_string_kind(k, s)
        return s
    if k == "v":
        zero = buf.rfind(b"\0", start, end)
        if zero < 0:
            raise _bad(t, "variant without type string")
        try:
            sig = buf[zero + 1:end].decode("ascii")
            child = gtype(sig)
        except (UnicodeDecodeError, FormatError):
            raise _bad(t, "variant has an invalid type string") from None
        # GLib's gvs_variant_get_child: ``depth < MAX - child_depth`` in unsigned arithmetic, so a child type of
        # the largest depth (129) wraps around and passes; anything else past the limit is refused.
        if child.depth <= MAX_DEPTH and depth >= MAX_DEPTH - child.depth:
            raise _bad(t, f"nests deeper than {MAX_DEPTH} levels")
        return Variant(sig, _de(child, buf, start, zero, depth + 1))
    if k == "m":
        child = t.children[0]
        if size == 0:
            return None
        if child.fixed_size is not None:
            return _de(child, buf, start, end, depth + 1)
        if buf[end - 1] != 0:
            raise _bad(t, "maybe without trailing zero")
        inner = _de(child, buf, start, end - 1, depth + 1)
        return Just(inner) if child.kind == "m" else inner
    if k == "a":
        child = t.children[0]
        if child.signature == "y":
            return buf[start:end]
        is_dict = child.kind == "{"
        items: list = []
        if child.fixed_size is not None:
            n = child.fixed_size
            if size % n:
                raise _bad(t, "array size is not a multiple of its element size")
            items = [_de(child, buf, p, p + n, depth + 1) for p in range(start, end, n)]
        elif size:
            w = _offset_size_for(size)
            last = _read_offset(buf, end - w, w)
            if last > size:
                raise _bad(t, "framing offset out of bounds")
            table = size - last
            if table % w:
                raise _bad(t, "framing offset table has a partial entry")
            count = table // w
            pos = 0
            for i in range(count):
                e = _read_offset(buf, start + last + i * w, w)
                s = _align(pos, child.alignment)
                if not (s <= e <= last):
                    raise _bad(t, "framing offset out of bounds")
                items.append(_de(child, buf, start + s, start + e, depth + 1))
                pos = e
        if is_dict:
            return _make_dict(items)
        return items
    if k in "({":
        members = t.children
        if not members:
            if size != 1:
                raise _bad(t, "unit tuple must be one byte")
            return ()
        if t.fixed_size is not None and size != t.fixed_size:
            raise _bad(t, f"expected {t.fixed_size} bytes, found {size}")
        w = _offset_size_for(size) if t.fixed_size is None else 0
        offsets_used = 0
        pos = 0
        out = []
        last = len(members) - 1
        for i, m in enumerate(members):
            s = _align(pos, m.alignment)
            if m.fixed_size is not None:
                e = s + m.fixed_size
            elif i == last:
                e = size - offsets_used * w
            else:
                offsets_used += 1
                opos = size - offsets_used * w
                if opos < 0:
                    raise _bad(t, "framing offset out of bounds")
                e = _read_offset(buf, start + opos, w)
            if not (s <= e <= size - offsets_used * w):
                raise _bad(t, "member out of bounds")
            out.append(_de(m, buf, start + s, start + e, depth + 1))
            pos = e
        return tuple(out)
    raise _bad(t, "unsupported type")  # pragma: no cover


# ---------------------------------------------------------------------------------------------------- a{sv} helpers

def infer_signature(value: Any) -> str:
    """The type a plain Python value gets inside an ``a{sv}`` (Variant values keep their own)."""
    if isinstance(value, Variant):
        return value.signature
    if isinstance(value, bool):
        return "b"
    if isinstance(value, int):
        return "t"
    if isinstance(value, float):
        return "d"
    if isinstance(value, str):
        return "s"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "ay"
    if isinstance(value, dict):
        return "a{sv}"
    if isinstance(value, (list, tuple)):
        if not value or all(isinstance(x, str) for x in value):
            return "as"
        if all(isinstance(x, (bytes, bytearray)) for x in value):
            return "aay"
        raise FormatError("a metadata list must hold only strings or only bytes")
    raise FormatError(f"cannot store a {type(value).__name__} in GVariant metadata")


def to_variant(value: Any) -> Variant:
    """Wrap a plain value (or pass a Variant through) for an ``a{sv}``."""
    if isinstance(value, Variant):
        return value
    sig = infer_signature(value)
    if sig == "a{sv}":
        return Variant(sig, {str(k): to_variant(v) for k, v in value.items()})
    if sig in ("as", "aay"):
        return Variant(sig, list(value))
    return Variant(sig, value)


def from_variant(v: Variant) -> Any:
    """Unwrap a Variant to a plain value when the plain value maps back to the same type; else keep it."""
    if v.signature == "a{sv}":
        return {k: from_variant(x) for k, x in v.value.items()}
    value = v.value
    try:
        if infer_signature(value) == v.signature:
            return value
    except FormatError:
        pass
    return v


def serialize_vardict(d: dict[str, Any]) -> bytes:
    """Serialize a metadata dictionary as ``a{sv}`` (keys in the given order)."""
    return serialize("a{sv}", {str(k): to_variant(v) for k, v in d.items()})


def parse_vardict(data: bytes) -> dict[str, Any]:
    """Parse an ``a{sv}`` into plain values (see :func:`from_variant`)."""
    return {k: from_variant(v) for k, v in parse("a{sv}", data).items()}


def bswap32(n: int) -> int:
    return int.from_bytes(n.to_bytes(4, "little"), "big")


def bswap64(n: int) -> int:
    return int.from_bytes(n.to_bytes(8, "little"), "big")


# ---------------------------------------------------------------------------------------------------- framing helpers
# Building blocks for hand-specialized serializers of hot types (all members 1-aligned after a fixed head).

def frame(body: bytes, offsets: list[int]) -> bytes:
    """``body`` followed by framing ``offsets`` (already in stored order) at their normal-form width."""
    if not offsets:
        return body
    return body + _pack_offsets(offsets, _framing_width(len(body), len(offsets)))


def frame_array(elements: list[bytes]) -> bytes:
    """An array of variable-size, 1-aligned elements."""
    if not elements:
        return b""
    ends = []
    n = 0
    for e in elements:
        n += len(e)
        ends.append(n)
    return frame(b"".join(elements), ends)


def unframe_array(data: bytes) -> list[bytes]:
    """Split an array of variable-size, 1-aligned elements (raises ValueError/IndexError when malformed)."""
    size = len(data)
    if not size:
        return []
    w = _offset_size_for(size)
    last = int.from_bytes(data[size - w:], "little")
    table = size - last
    if last > size or table % w:
        raise ValueError("bad framing")
    out = []
    prev = 0
    for i in range(last, size, w):
        e = int.from_bytes(data[i:i + w], "little")
        if not prev <= e <= last:
            raise ValueError("bad framing")
        out.append(data[prev:e])
        prev = e
    return out


def unframe_tuple(data: bytes, n: int) -> tuple[list[int], int]:
    """Read ``n`` trailing framing offsets of a tuple: (offsets in member order, end of the body)."""
    size = len(data)
    w = _offset_size_for(size)
    end = size - n * w
    if end < 0:
        raise ValueError("bad framing")
    offs = [int.from_bytes(data[size - (i + 1) * w:size - i * w], "little") for i in range(n)]
    return offs, end

"""GKeyFile (the INI dialect of GLib) as pure functions: bytes in, ``KeyFile`` out, and back.

Used for ``.origin`` files. Comments and blank lines are dropped on rewrite; order of groups and keys is kept.
"""

from __future__ import annotations

from hybridos.errors import FormatError

_ESCAPES = {"s": " ", "n": "\n", "t": "\t", "r": "\r", "\\": "\\"}


class KeyFile:
    """An ordered ``{group: {key: raw value}}``; values are stored escaped, as in the file."""

    def __init__(self, groups: dict[str, dict[str, str]] | None = None):
        self.groups: dict[str, dict[str, str]] = {g: dict(kv) for g, kv in (groups or {}).items()}

    def has(self, group: str, key: str) -> bool:
        return key in self.groups.get(group, {})

    def get_string(self, group: str, key: str, default: str | None = None) -> str | None:
        raw = self.groups.get(group, {}).get(key)
        return default if raw is None else unescape(raw)

    def get_bool(self, group: str, key: str, default: bool = False) -> bool:
        raw = self.groups.get(group, {}).get(key)
        if raw is None:
            return default
        if raw.strip() in ("true", "1"):
            return True
        if raw.strip() in ("false", "0"):
            return False
        raise FormatError(f"key {key} in group [{group}] is not a boolean: {raw!r}")

    def get_list(self, group: str, key: str) -> tuple[str, ...]:
        raw = self.groups.get(group, {}).get(key)
        return () if raw is None else split_list(raw)

    def set_string(self, group: str, key: str, value: str) -> None:
        self.groups.setdefault(group, {})[key] = escape(value)

    def set_bool(self, group: str, key: str, value: bool) -> None:
        self.groups.setdefault(group, {})[key] = "true" if value else "false"

    def set_list(self, group: str, key: str, values) -> None:
        self.groups.setdefault(group, {})[key] = "".join(escape(v).replace(";", "\\;") + ";" for v in values)

    def remove(self, group: str, key: str | None = None) -> None:
        if key is None:
            self.groups.pop(group, None)
            return
        kv = self.groups.get(group)
        if kv is not None:
            kv.pop(key, None)
            if not kv:
                del self.groups[group]


def unescape(raw: str) -> str:
    out, i = [], 0
    while i < len(raw):
        c = raw[i]
        if c == "\\" and i + 1 < len(raw):
            nxt = raw[i + 1]
            out.append(_ESCAPES.get(nxt, "\\" + nxt))
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def escape(value: str) -> str:
    out = value.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")
    if out.startswith(" "):
        out = "\\s" + out[1:]
    return out


def split_list(raw: str) -> tuple[str, ...]:
    """A ``;``-separated GKeyFile list (``\\;`` escapes a separator, a trailing ``;`` is optional)."""
    items: list[str] = []
    cur: list[str] = []
    i = 0
    while i < len(raw):
        c = raw[i]
        if c == "\\" and i + 1 < len(raw):
            nxt = raw[i + 1]
            cur.append(";" if nxt == ";" else _ESCAPES.get(nxt, "\\" + nxt))
            i += 2
            continue
        if c == ";":
            items.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    if cur:
        items.append("".join(cur))
    return tuple(items)


def parse(data: bytes) -> KeyFile:
    """Parse GKeyFile bytes; FormatError names the line that does not fit."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(f"not valid UTF-8 (byte {exc.start})") from None
    groups: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("["):
            if not stripped.endswith("]") or len(stripped) < 3:
                raise FormatError(f"line {lineno}: malformed group header {stripped!r}")
            name = stripped[1:-1]
            if "[" in name or "]" in name:
                raise FormatError(f"line {lineno}: malformed group header {stripped!r}")
            current = groups.setdefault(name, {})
            continue
        if "=" not in line:
            raise FormatError(f"line {lineno}: expected KEY=VALUE, found {stripped[:60]!r}")
        if current is None:
            raise FormatError(f"line {lineno}: key outside of any [group]")
        key, value = line.split("=", 1)
        key = key.strip()
        if not key:
            raise FormatError(f"line {lineno}: empty key")
        current[key] = value.lstrip(" ")
    return KeyFile(groups)


def serialize(kf: KeyFile) -> bytes:
    lines: list[str] = []
    for group, kv in kf.groups.items():
        if lines:
            lines.append("")
        lines.append(f"[{group}]")
        lines.extend(f"{k}={v}" for k, v in kv.items())
    return ("\n".join(lines) + "\n").encode() if lines else b""

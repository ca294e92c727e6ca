"""Boot Loader Specification entries as ostree writes them: pure functions, bytes in and out.

Entry i of N deployments is ``ostree-(N-i)-<stateroot>.conf`` with ``version N-i``; readers take every
``ostree-*.conf`` and sort by version, highest first (index 0 = the default).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hybridos.errors import FormatError
from hybridos.sysroot.kargs import split_args
from hybridos.util.text import one_line

if TYPE_CHECKING:  # the loader (status) does not need the bootloader interface
    from hybridos.bootloader import BootEntry

OSTREE_KARG_RE = re.compile(r"^/ostree/boot\.([01])/([^/]+)/([^/]+)/([0-9]+)$")


@dataclass(frozen=True)
class ParsedEntry:
    """A BLS entry read back: ``keys`` maps each key to its values in file order."""

    keys: dict[str, tuple[str, ...]]

    def get(self, key: str) -> str | None:
        vals = self.keys.get(key)
        return vals[-1] if vals else None

    @property
    def options(self) -> str:
        return " ".join(self.keys.get("options", ()))

    @property
    def sort_version(self) -> int:
        v = self.get("version") or "0"
        try:
            return int(v)
        except ValueError:
            raise FormatError(f"BLS entry version {v!r} is not a number") from None


def parse_entry(data: bytes) -> ParsedEntry:
    keys: dict[str, list[str]] = {}
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError("BLS entry is not valid UTF-8") from None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 1)
        keys.setdefault(parts[0], []).append(parts[1].strip() if len(parts) > 1 else "")
    return ParsedEntry({k: tuple(v) for k, v in keys.items()})


def format_entry(entry: BootEntry) -> bytes:
    """In ostree's key order: title, version, options, devicetree, linux, initrd, fdtdir."""
    lines = [f"title {entry.title}", f"version {entry.sort_version}", f"options {entry.options}"]
    if entry.devicetree:
        lines.append(f"devicetree {entry.devicetree}")
    lines.append(f"linux {entry.linux}")
    lines += [f"initrd {p}" for p in entry.initrd]
    if entry.fdtdir:
        lines.append(f"fdtdir {entry.fdtdir}")
    return ("\n".join(lines) + "\n").encode()


def entry_id(index: int, count: int, stateroot: str) -> str:
    return f"ostree-{count - index}-{stateroot}"


def entry_title(os_name: str, version: str, index: int, stateroot: str | None = None) -> str:
    """``<PRETTY_NAME> <version> (ostree:<index>)``; the version is left out when the name holds it.

    With deployments of several stateroots in the list, ostree writes ``(ostree:<stateroot>:<index>)``.
    """
    os_name, version = one_line(os_name).strip() or "OSTree", one_line(version).strip()
    title = os_name
    if version and version not in os_name:
        title += f" {version}"
    where = f"{stateroot}:{index}" if stateroot else str(index)
    return f"{title} (ostree:{where})"


def ostree_karg(bootversion: int, stateroot: str, bootcsum: str, bootserial: int) -> str:
    return f"/ostree/boot.{bootversion}/{stateroot}/{bootcsum}/{bootserial}"


def parse_ostree_karg(value: str) -> tuple[int, str, str, int]:
    """``/ostree/boot.N/<stateroot>/<bootcsum>/<bootserial>`` -> (N, stateroot, bootcsum, bootserial)."""
    m = OSTREE_KARG_RE.match(value)
    if not m:
        raise FormatError(f"invalid ostree= kernel argument {value!r}")
    return int(m.group(1)), m.group(2), m.group(3), int(m.group(4))


def split_ostree_karg(options: str) -> tuple[str | None, str]:
    """Separate ``ostree=...`` from the other options: (its value or None, the rest)."""
    value, rest = None, []
    for arg in split_args(options):
        if arg.startswith("ostree="):
            value = arg[len("ostree="):]
        else:
            rest.append(arg)
    return value, " ".join(rest)


def parse_os_release(data: bytes) -> dict[str, str]:
    """``KEY=VALUE`` lines with shell-style quotes, as in os-release(5)."""
    out = {}
    for line in data.decode("utf-8", "replace").split("\n"):  # only LF ends a line (os-release(5))
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
            value = re.sub(r"\\([\\$\"'`])", r"\1", value)
        out[key.strip()] = value
    return out

"""Boot Loader Specification entries on the ESP and ``loader/loader.conf``: pure text functions."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from hybridos.arch import Architecture
from hybridos.bootloader import BootEntry

MARKER = "# hybridos"
#: BLS "architecture" values (the EFI architecture names systemd-boot compares against)
EFI_ARCH = {Architecture.X86_64: "x64", Architecture.AARCH64: "aa64"}
#: our entry files: <core entry id>-<10 hex digest>[+LEFT[-DONE]].conf
_OURS = re.compile(r"^(?P<name>[A-Za-z0-9_.-]+-[0-9a-f]{10})(?:\+(?P<left>\d+)(?:-(?P<done>\d+))?)?\.conf$")


@dataclass(frozen=True)
class EspEntry:
    """One entry file as written to ``ESP/loader/entries``."""

    name: str          #: file name without counter and ".conf"; the entry id is ``name + ".conf"``
    text: str
    files: tuple[str, ...]  #: /ESP-relative paths the entry loads

    def filename(self, tries: int = 0) -> str:
        return f"{self.name}+{tries}.conf" if tries else f"{self.name}.conf"


MANIFEST = "manifest"


@dataclass(frozen=True)
class Manifest:
    """What a staged set is for: its boot version, its default entry and every entry name it keeps."""

    bootversion: int
    default: str
    keep: tuple[str, ...]


def format_manifest(m: Manifest) -> str:
    return f"bootversion {m.bootversion}\ndefault {m.default}\n" + "".join(f"keep {k}\n" for k in m.keep)


def parse_manifest(text: str) -> Manifest:
    """Inverse of format_manifest; ValueError when incomplete (a torn write never has its last line)."""
    fields: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        fields.setdefault(key, []).append(value)
    if "bootversion" not in fields or "default" not in fields or fields["default"][0] not in fields.get("keep", []):
        raise ValueError("incomplete staging manifest")
    return Manifest(int(fields["bootversion"][0]), fields["default"][0], tuple(fields["keep"]))


def render_entry(entry: BootEntry, arch: Architecture, bootversion: int, fdt_file: str | None = None) -> EspEntry:
    """The ESP copy of a core BLS entry; its name carries a digest of its text so it never overwrites another."""
    devicetree = entry.devicetree
    if devicetree is None and entry.fdtdir and fdt_file:
        devicetree = f"{entry.fdtdir}/{fdt_file.lstrip('/')}"
    lines = [
        f"{MARKER}: boot version {bootversion}, deployment {entry.checksum or entry.id}",
        f"title {entry.title}",
        f"version {entry.sort_version}",
        f"linux {entry.linux}",
        *(f"initrd {p}" for p in entry.initrd),
    ]
    if entry.options:
        lines.append(f"options {entry.options}")
    if devicetree and arch == Architecture.AARCH64:
        lines.append(f"devicetree {devicetree}")
    if arch in EFI_ARCH:
        lines.append(f"architecture {EFI_ARCH[arch]}")
    text = "\n".join(lines) + "\n"
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    safe_id = re.sub(r"[^A-Za-z0-9_.-]", "_", entry.id)
    files = (entry.linux, *entry.initrd) + ((devicetree,) if devicetree and arch == Architecture.AARCH64 else ())
    return EspEntry(f"{safe_id}-{digest}", text, files)


def parse_entry_filename(filename: str) -> tuple[str, int | None, int | None] | None:
    """(name, tries left, tries done) of one of our entry files, or None for files we did not write."""
    m = _OURS.match(filename)
    if m is None:
        return None
    left = int(m["left"]) if m["left"] is not None else None
    done = int(m["done"]) if m["done"] is not None else None
    return m["name"], left, done


def entry_files(text: str) -> list[str]:
    """The paths an entry text loads (linux, initrd, devicetree)."""
    out = []
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        if key in ("linux", "initrd", "devicetree", "efi") and value.strip():
            out.append(value.strip())
    return out


def with_settings(loader_conf: str, default: str, timeout: int | None = None) -> str:
    """``loader.conf`` with ``default`` (and ``timeout`` when given) set; every other line kept."""
    out, done = [], {"default": False, "timeout": timeout is None}
    for line in loader_conf.splitlines():
        key = line.strip().split(None, 1)[0] if line.strip() else ""
        if key == "default":
            if not done["default"]:
                out.append(f"default {default}")
                done["default"] = True
            continue
        if key == "timeout" and timeout is not None:
            if not done["timeout"]:
                out.append(f"timeout {timeout}")
                done["timeout"] = True
            continue
        out.append(line)
    if not done["timeout"]:
        out.append(f"timeout {timeout}")
    if not done["default"]:
        out.append(f"default {default}")
    return "\n".join(out) + "\n"

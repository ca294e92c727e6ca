"""Independent readers used by the bootloader tests: BLS entries as the core wrote them, real-tool checks."""

from __future__ import annotations

from pathlib import Path

from hybridos.util.run import run


def current_bls(sysroot: Path) -> list[dict[str, str]]:
    """The BLS entries ``boot/loader`` points to, sorted like ostree readers do (version descending)."""
    entries = []
    for f in (sysroot / "boot/loader/entries").glob("ostree-*.conf"):
        fields: dict[str, str] = {"id": f.name.removesuffix(".conf")}
        for line in f.read_text().splitlines():
            key, _, value = line.partition(" ")
            fields[key] = value
        entries.append(fields)
    return sorted(entries, key=lambda e: int(e["version"]), reverse=True)


def grub_script_check(path: Path) -> None:
    proc = run(["grub-script-check", str(path)], check=False)
    assert proc.returncode == 0, proc.stdout.decode()

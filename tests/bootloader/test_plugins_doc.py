"""docs/plugins.md cannot drift: hook signatures, interface fields, settings and the example are checked."""

from __future__ import annotations

import dataclasses
import inspect
import re

import pytest

from hybridos.bootloader import BootConfigContext, BootEntry, Bootloader
from hybridos.plugins import PluginRegistry
from tests.conftest import ROOT

DOC = (ROOT / "docs/plugins.md").read_text()


def hook_specs():
    pm = PluginRegistry(load_entry_points=False).pm
    return [getattr(pm.hook, n) for n in sorted(dir(pm.hook)) if n.startswith("hybridos_")]


def signature_of(caller) -> str:
    sig = inspect.signature(caller.spec.function)
    params = ", ".join(f"{p.name}: {p.annotation}" for p in sig.parameters.values())
    return f"{caller.name}({params}) -> {sig.return_annotation}"


@pytest.mark.parametrize("caller", hook_specs(), ids=lambda c: c.name)
def test_every_hook_has_a_section_with_its_exact_signature_and_rule(caller):
    heading = f"### `{signature_of(caller)}`"
    assert heading in DOC, f"docs/plugins.md lacks the heading {heading}"
    section = DOC.split(heading, 1)[1].split("\n### ", 1)[0]
    rule = "First result." if caller.spec.opts.get("firstresult") else "Collecting hook."
    assert section.lstrip().startswith(rule), f"{caller.name}: the section must start with {rule!r}"


def test_no_documented_hook_is_missing_from_the_specs():
    documented = set(re.findall(r"^### `(hybridos_\w+)\(", DOC, re.MULTILINE))
    assert documented == {c.name for c in hook_specs()}


@pytest.mark.parametrize("cls", [BootEntry, BootConfigContext])
def test_interface_fields_are_documented(cls):
    for f in dataclasses.fields(cls):
        assert f"| `{f.name}: " in DOC, f"{cls.__name__}.{f.name} is not documented"


def test_bootloader_members_are_documented():
    members = {n for n, v in vars(Bootloader).items() if not n.startswith("_") and callable(v)}
    members |= set(Bootloader.__annotations__)
    for name in members:
        assert f"| `{name}" in DOC, f"Bootloader.{name} is not documented"


OPTION_USE = re.compile(r'(?:_bool_option\([^,()]+, |\bint_option\()"([a-z0-9-]+)"|options\.get\("([a-z0-9-]+)"'
                        r'|opts\["([a-z0-9-]+)"\]|"([a-z0-9-]+)" in opts')


def test_every_sysroot_setting_a_bundled_plugin_reads_is_documented():
    keys = set()
    # boot-counting is read for the plugins by the core (BootConfigContext.counting_tries)
    for src in [*(ROOT / "plugins").glob("bootloader_*/*/*.py"), ROOT / "core/hybridos/bootloader.py"]:
        for m in OPTION_USE.finditer(src.read_text()):
            keys.add(next(g for g in m.groups() if g))
    assert {"boot-counting", "grub-flavour", "fdt-file", "uboot-env"} <= keys  # the scan itself works
    for key in keys:
        assert f"`{key}`" in DOC, f"[sysroot] {key} is read by a plugin but not documented"


def test_example_backend_in_the_docs_is_the_shipped_code():
    source = (ROOT / "docs/examples/bootloader_plugin/acme_bootloader_syslinux/backend.py").read_text()
    shipped = source[source.index("class SyslinuxBootloader"):].strip()
    shown = DOC[DOC.index("class SyslinuxBootloader"):].split("```", 1)[0].strip()
    assert shown == shipped

"""systemd-boot plugin: ESP entries and kernel copies checked with bootctl, counting, FAT rules, crash safety."""

from __future__ import annotations

import os

import pytest

from hybridos.arch import Architecture
from hybridos.errors import BootloaderError
from hybridos_bootloader_systemd_boot.backend import SystemdBootBootloader
from tests.bootloader.checks import bootctl_list, current_bls
from tests.bootloader.layout import Deployment, Sysroot, commit_id, snapshot

A, B, C = (Deployment(commit_id(n), version=f"39.{n}") for n in (1, 2, 3))

CASES = {
    "x86_64": (Architecture.X86_64, "boot/efi", {}),
    "x86_64-esp-at-efi": (Architecture.X86_64, "efi", {"timeout": "7"}),
    "aarch64-fdt": (Architecture.AARCH64, "boot/efi", {"fdt-file": "rockchip/rk3399-rockpro64.dtb"}),
}


def make_sdboot_sysroot(tmp_path, arch, esp_rel="boot/efi", options=None):
    s = Sysroot(tmp_path / "sysroot", arch, options)
    esp = s.root / esp_rel
    (esp / "loader").mkdir(parents=True)
    (esp / "EFI/systemd").mkdir(parents=True)
    (esp / "loader/loader.conf").write_text("timeout 3\neditor no\n")
    return s, esp


def assert_esp_matches_deployments(s: Sysroot, esp, arch, devicetree: bool):
    view = bootctl_list(s.root, esp)
    assert "Unknown line" not in view.stderr and "No such file" not in view.stderr, view.stderr
    bls = current_bls(s.root)
    by_title = {e["title"]: e for e in view.entries}
    assert sorted(by_title) == sorted(b["title"] for b in bls)  # exactly the new set: old entries are gone
    for b in bls:
        e = by_title[b["title"]]
        assert e["linux"] == b["linux"] and e["initrd"] == [b["initrd"]] and e["options"] == b["options"]
        assert e["architecture"] == {"x86_64": "x64", "aarch64": "aa64"}[arch.value]
        for p in [e["linux"], *e["initrd"]] + ([e["devicetree"]] if "devicetree" in e else []):
            assert (esp / p.lstrip("/")).is_file(), p
            assert (esp / p.lstrip("/")).read_bytes() == (s.root / "boot" / p.lstrip("/")).read_bytes()
        assert ("devicetree" in e) == devicetree
    default = next(e for e in view.entries if e["id"] == view.default_id)
    assert default["title"] == bls[0]["title"]
    return view


@pytest.mark.parametrize("case", CASES)
def test_deploy_upgrade_rollback_on_the_esp(tmp_path, case):
    arch, esp_rel, options = CASES[case]
    s, esp = make_sdboot_sysroot(tmp_path, arch, esp_rel, options)
    sdb = SystemdBootBootloader()
    assert sdb.detect(s.root).reason.startswith(f"ESP at /{esp_rel}")
    for deployments in ([A], [B, A], [A, B], [C, A]):  # deploy, upgrade, rollback, upgrade (B's kernel goes)
        s.cycle(sdb, deployments)
        assert_esp_matches_deployments(s, esp, arch, devicetree=arch == Architecture.AARCH64)
    assert len(list((esp / "ostree").iterdir())) == 2  # kernels of C and A only
    conf = (esp / "loader/loader.conf").read_text()
    assert "editor no" in conf and conf.count("default ") == 1
    assert ("timeout 7" in conf) == ("timeout" in options)
    for dirpath, dirnames, filenames in os.walk(esp):  # FAT: nothing may be a symlink
        assert not any(os.path.islink(os.path.join(dirpath, n)) for n in dirnames + filenames)


def test_boot_counting_names_the_new_default_with_tries(tmp_path):
    s, esp = make_sdboot_sysroot(tmp_path, Architecture.X86_64, options={"boot-counting": "3"})
    sdb = SystemdBootBootloader()
    s.cycle(sdb, [A])
    s.cycle(sdb, [B, A])
    view = bootctl_list(s.root, esp)
    tries = {e["title"]: e.get("triesLeft") for e in view.entries}
    assert tries == {"Fedora Linux 39.2 (ostree:0)": 3, "Fedora Linux 39.1 (ostree:1)": None}
    names = sorted(p.name for p in (esp / "loader/entries").iterdir())
    assert sum("+3.conf" in n for n in names) == 1


def test_crash_between_write_config_and_swap_keeps_previous_default(tmp_path):
    s, esp = make_sdboot_sysroot(tmp_path, Architecture.X86_64)
    sdb = SystemdBootBootloader()
    s.cycle(sdb, [A])
    conf_before = (esp / "loader/loader.conf").read_bytes()
    entries_before = {p.name: p.read_bytes() for p in (esp / "loader/entries").iterdir()}
    context = s.stage([B, A])
    sdb.write_config(context)
    # crash here: the swap and post_swap never happen
    assert (esp / "loader/loader.conf").read_bytes() == conf_before
    after = {p.name: p.read_bytes() for p in (esp / "loader/entries").iterdir()}
    assert after == entries_before  # the menu is exactly the previous one
    view = bootctl_list(s.root, esp)
    assert [e["title"] for e in view.entries] == ["Fedora Linux 39.1 (ostree:0)"]
    default = next(e for e in view.entries if e["id"] == view.default_id)
    assert all((esp / p.lstrip("/")).is_file() for p in [default["linux"], *default["initrd"]])
    assert not any(p.name.startswith(".") for p in esp.rglob("*"))  # no temp file left behind
    s.cycle(sdb, [B, A])  # the retry completes and drops the stale set
    assert_esp_matches_deployments(s, esp, Architecture.X86_64, devicetree=False)


def test_ppc64le_is_refused_before_anything_is_written(tmp_path):
    s, esp = make_sdboot_sysroot(tmp_path, Architecture.PPC64LE)
    context = s.stage([A])
    before = snapshot(s.root)
    with pytest.raises(BootloaderError, match="systemd-boot cannot boot ppc64le deployments"):
        SystemdBootBootloader().write_config(context)
    assert snapshot(s.root) == before


def test_missing_esp_is_a_clear_error(tmp_path):
    s = Sysroot(tmp_path / "sysroot", Architecture.X86_64)
    context = s.stage([A])
    with pytest.raises(BootloaderError, match="no EFI system partition"):
        SystemdBootBootloader().write_config(context)


def test_other_entries_on_the_esp_are_kept(tmp_path):
    s, esp = make_sdboot_sysroot(tmp_path, Architecture.X86_64)
    foreign = {
        "windows.conf": "title Windows\nefi /EFI/Microsoft/Boot/bootmgfw.efi\n",
        # our naming pattern, but not written by us (no marker): must survive too
        "ostree-1-other-0123456789.conf": "title Other\nlinux /other/vmlinuz\n",
    }
    (esp / "loader/entries").mkdir()
    for name, text in foreign.items():
        (esp / "loader/entries" / name).write_text(text)
    (esp / "other").mkdir()
    (esp / "other/vmlinuz").write_bytes(b"x")
    sdb = SystemdBootBootloader()
    for deployments in ([A], [B, A], [C, B]):
        s.cycle(sdb, deployments)
    for name, text in foreign.items():
        assert (esp / "loader/entries" / name).read_text() == text
    assert (esp / "other/vmlinuz").exists()
    ours = [p.name for p in (esp / "loader/entries").iterdir() if p.name not in foreign]
    assert len(ours) == 2


def test_entry_file_names_and_loader_conf_editing():
    from hybridos_bootloader_systemd_boot.entries import parse_entry_filename, with_settings

    assert parse_entry_filename("ostree-2-fedora-0123456789.conf") == ("ostree-2-fedora-0123456789", None, None)
    assert parse_entry_filename("ostree-2-fedora-0123456789+3.conf") == ("ostree-2-fedora-0123456789", 3, None)
    assert parse_entry_filename("ostree-2-fedora-0123456789+0-3.conf") == ("ostree-2-fedora-0123456789", 0, 3)
    assert parse_entry_filename("fedora.conf") is None and parse_entry_filename("x-0123456789.txt") is None
    conf = "# mine\ntimeout 3\ndefault old.conf\neditor no\ndefault older.conf\n"
    assert with_settings(conf, "new.conf") == "# mine\ntimeout 3\ndefault new.conf\neditor no\n"
    assert with_settings(conf, "new.conf", 9) == "# mine\ntimeout 9\ndefault new.conf\neditor no\n"
    assert with_settings("", "new.conf") == "default new.conf\n"


def test_set_pending_after_a_crash_past_the_swap_is_committed_by_the_next_run(tmp_path):
    s, esp = make_sdboot_sysroot(tmp_path, Architecture.X86_64)
    sdb = SystemdBootBootloader()
    s.cycle(sdb, [A])
    context = s.stage([B, A])
    sdb.write_config(context)
    s.swap(context)  # crash here: swapped, post_swap never ran; the ESP still boots A
    view = bootctl_list(s.root, esp)
    assert [e["title"] for e in view.entries] == ["Fedora Linux 39.1 (ostree:0)"]
    upgrade = s.stage([C, B, A])
    sdb.write_config(upgrade)  # first commits the set that became current at the swap
    view = bootctl_list(s.root, esp)
    default = next(e for e in view.entries if e["id"] == view.default_id)
    assert default["title"] == "Fedora Linux 39.2 (ostree:0)" and len(view.entries) == 2
    s.swap(upgrade)
    sdb.post_swap(upgrade)
    s.cleanup(upgrade)
    assert_esp_matches_deployments(s, esp, Architecture.X86_64, devicetree=False)


def test_an_esp_symlinked_out_of_the_sysroot_is_never_used(tmp_path):
    outside = tmp_path / "host-esp"
    (outside / "loader").mkdir(parents=True)
    s = Sysroot(tmp_path / "sysroot", Architecture.X86_64)
    os.symlink(outside, s.root / "boot/efi")
    sdb = SystemdBootBootloader()
    assert sdb.detect(s.root) is None
    with pytest.raises(BootloaderError, match="no EFI system partition"):
        sdb.write_config(s.stage([A]))
    assert list(outside.rglob("*")) == [outside / "loader"]

"""Boot assessment with the real bootloader, the real kernel and hybridos inside the guest (TCG: few, short
boots). The image carries hybridos (tests/helpers/guest_python.py); its init runs ``/etc/boottest/run``, which
runs ``hybridos health-check --no-reboot`` and reboots (``reboot -f``) when it asks for a reboot (exit 3).

GRUB i386-pc, separate /boot: v1 is deployed, then v2 on top with ``[sysroot] boot-counting=2``; the admin's
required check in v2's /etc fails. The machine boots v2 twice (health-check: red.d, reboot), GRUB's counter
runs out and it boots v1, whose health-check sees the fallback, makes v1 the default and records why. The
grubenv on the boot partition is read back afterwards with grub-editenv.
"""

from __future__ import annotations

import json
import re
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.boot.disk import extract, sh
from tests.boot.images import SETUPS, grub_bios
from tests.boot.qemu import boot
from tests.boot.sysroot import deploy_sysroot, upgrade_sysroot, write_var_data
from tests.conftest import run_cli

pytestmark = [pytest.mark.slow, pytest.mark.tool("grub-mkimage", "mkfs.ext4", "sfdisk", "grub-editenv",
                                                 "debugfs")]
KARGS = ["root=LABEL=root", "rw", "console=ttyS0", "panic=10", "hybridos.fail-delay=1"]
BOOT_TIMEOUT = 900

#: /etc/boottest/run of both deployments: the boot's assessment, then a reboot when it asks for one
RUN = textwrap.dedent(r"""    #!/bin/sh
    export PATH=/usr/sbin:/usr/bin
    if ! [ -L /boot/loader ]; then
        mount -o ro "$(findfs LABEL=boot)" /boot || echo "ASSESS mount /boot failed"
    fi
    mount -o remount,bind,ro /sysroot
    hybridos health-check --no-reboot
    rc=$?
    echo "ASSESS health-check exited $rc"
    if [ $rc = 3 ]; then sync; reboot -f; fi
    echo "ASSESS status $(hybridos status --json | tr -d '\n')"
    hybridos status | sed 's/^/ASSESS-TEXT /'
    """)
OK = "#!/bin/sh\necho \"$(basename $0) ran\"\n"
FAIL = "#!/bin/sh\necho 'the service is not running'\nexit 1\n"


def put(path: Path, text: str, mode: int = 0o755) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def grubenv_of(disk: Path, offset: int, size: int, workdir: Path) -> dict[str, str]:
    part = extract(disk, offset, size, workdir / "boot-after.ext4")
    out = workdir / "grubenv-after"
    sh("debugfs", "-R", f"dump /grub/grubenv {out}", part)
    listed = subprocess.run(["grub-editenv", str(out), "list"], capture_output=True, text=True, check=True).stdout
    return dict(line.split("=", 1) for line in listed.splitlines())


def test_grub_failing_update_falls_back_and_the_fallback_is_made_permanent(tmp_path, guest_versions):
    root = tmp_path / "sysroot"
    prepare, options = SETUPS["grub-bios-separate-boot"]
    v1_dir = deploy_sysroot(root, guest_versions.v1, KARGS, options={**options, "boot-counting": "2"},
                            prepare=prepare)
    write_var_data(root, "assess")
    run_cli("--sysroot", str(root), "repo", "remote", "add", "--force", "--no-gpg-verify", "origin",
            f"file://{guest_versions.v2.repo}", guest_versions.v2.ref)
    v2_dir = upgrade_sysroot(root, guest_versions.v2)
    assert v2_dir != v1_dir
    env = subprocess.run(["grub-editenv", str(root / "boot/grub/grubenv"), "list"], capture_output=True,
                         text=True, check=True).stdout.split()
    assert env == ["boot_counter=2", "boot_success=0"]           # v2 armed when it became the default
    for dep, required in ((v1_dir, OK), (v2_dir, FAIL)):
        put(dep / "etc/boottest/run", RUN)
        put(dep / "etc/greenboot/check/required.d/10_service.sh", required, 0o644)
        put(dep / "etc/greenboot/red.d/10_red.sh", OK, 0o644)
        put(dep / "etc/greenboot/green.d/10_green.sh", OK, 0o644)
    spec = grub_bios(tmp_path, root, separate_boot=True)
    spec.machine.memory_mb = 768
    result = boot(spec.machine, spec.disks, tmp_path, timeout=BOOT_TIMEOUT, allow_reboot=True)
    assert "Traceback" not in result.console, result.tail(60)
    result.expect(r"ASSESS status", "the last boot's status")
    # v2 twice (each health check fails and reboots), then GRUB's fallback to v1
    assert [m["version"] for m in result.markers()] == ["2", "2", "1"], result.tail(60)
    assert re.findall(r"ASSESS health-check exited (\d)", result.console) == ["3", "3", "0"]
    assert result.console.count("10_service.sh: the service is not running") == 2
    assert result.console.count("10_red.sh: 10_red.sh ran") == 2
    result.expect(r"FALLBACK BOOT DETECTED!", "the fallback seen by health-check")
    result.expect(r"10_green.sh: 10_green.sh ran", "v1's green.d")
    status = json.loads(result.expect(r"ASSESS status (\{.*\})", "the final status").group(1))
    deps = status["deployments"]
    assert [(d["checksum"], d["booted"]) for d in deps] == [
        (guest_versions.v1.commit, True), (guest_versions.v2.commit, False)]
    failure = deps[1]["boot-failure"]
    assert (failure["reason"], failure["script"], failure["bootloader"]) == ("health-check", "10_service.sh",
                                                                            "grub2")
    result.expect(r"ASSESS-TEXT +BootFailure: boot failed health check: 10_service.sh", "status's reason")
    # GRUB's state on the boot partition: GRUB set boot_counter=-1 for the fallback boot, hybridos cleared it
    # when it made the fallback permanent; boot_success=0 is what the snippet writes at every boot
    size = (tmp_path / "boot.ext4").stat().st_size
    assert grubenv_of(spec.disks[0], spec.offsets[0], size, tmp_path) == {"boot_success": "0"}


#: the systemd-boot guest mounts its ESP (FAT) where the sysroot has it, /boot/efi, before the assessment
RUN_ESP = RUN.replace("mount -o remount,bind,ro /sysroot\n", textwrap.dedent("""\
    if ! [ -L /boot/loader ]; then mount --bind /sysroot/boot /boot; fi
    for m in vfat nls_cp437 nls_ascii nls_utf8; do modprobe $m 2>/dev/null; done
    mount -t vfat "$(findfs LABEL=ESP)" /boot/efi || echo "ASSESS mount ESP failed"
    mount -o remount,bind,ro /sysroot
    """)).replace("""    if ! [ -L /boot/loader ]; then
        mount -o ro "$(findfs LABEL=boot)" /boot || echo "ASSESS mount /boot failed"
    fi
""", "")


@pytest.mark.tool("mkfs.vfat", "mcopy")
def test_systemd_boot_failing_update_falls_back_and_the_fallback_is_made_permanent(tmp_path, guest_versions):
    from tests.boot.bootloaders import SYSTEMD_BOOT_X64
    from tests.boot.disk import vfat_list, vfat_read
    from tests.boot.images import uefi

    if not SYSTEMD_BOOT_X64.exists():
        pytest.fail(f"{SYSTEMD_BOOT_X64} is missing (Debian systemd-boot-efi; scripts/system-deps.sh)")
    root = tmp_path / "sysroot"
    prepare, options = SETUPS["systemd-boot"]
    v1_dir = deploy_sysroot(root, guest_versions.v1, KARGS, options={**options, "boot-counting": "2"},
                            prepare=prepare)
    write_var_data(root, "assess")
    run_cli("--sysroot", str(root), "repo", "remote", "add", "--force", "--no-gpg-verify", "origin",
            f"file://{guest_versions.v2.repo}", guest_versions.v2.ref)
    v2_dir = upgrade_sysroot(root, guest_versions.v2)
    entries = sorted(p.name for p in (root / "boot/efi/loader/entries").iterdir())
    assert [n.startswith("ostree-2-") and n.endswith("+2.conf") for n in entries] == [False, True], entries
    for dep, required in ((v1_dir, OK), (v2_dir, FAIL)):
        put(dep / "etc/boottest/run", RUN_ESP)
        put(dep / "etc/greenboot/check/required.d/10_service.sh", required, 0o644)
        put(dep / "etc/greenboot/green.d/10_green.sh", OK, 0o644)
    spec = uefi(tmp_path, root)
    spec.machine.memory_mb = 768
    result = boot(spec.machine, spec.disks, tmp_path, timeout=BOOT_TIMEOUT, allow_reboot=True)
    assert "Traceback" not in result.console and "ASSESS mount ESP failed" not in result.console, result.tail(60)
    result.expect(r"ASSESS status", "the last boot's status")
    assert [m["version"] for m in result.markers()] == ["2", "2", "1"], result.tail(60)
    assert re.findall(r"ASSESS health-check exited (\d)", result.console) == ["3", "3", "0"]
    result.expect(r"FALLBACK BOOT DETECTED!", "the fallback seen by health-check")
    status = json.loads(result.expect(r"ASSESS status (\{.*\})", "the final status").group(1))
    deps = status["deployments"]
    assert [(d["checksum"], d["booted"]) for d in deps] == [
        (guest_versions.v1.commit, True), (guest_versions.v2.commit, False)]
    failure = deps[1]["boot-failure"]
    assert (failure["script"], failure["bootloader"]) == ("10_service.sh", "systemd-boot")
    assert "+0-2.conf" in failure["detail"]                  # what systemd-boot left of v2's entry
    # the ESP read back with mtools: v1 first and uncounted, v2's bad entry replaced by a plain one
    esp = extract(spec.disks[0], spec.offsets[0], (tmp_path / "esp.vfat").stat().st_size, tmp_path / "esp-after")
    after = vfat_list(esp, "/loader/entries")
    assert len(after) == 2 and not any("+" in n for n in after), after
    conf = vfat_read(esp, "/loader/loader.conf").decode()
    default = next(line.split()[1] for line in conf.splitlines() if line.startswith("default "))
    assert default in after and vfat_read(esp, f"/loader/entries/{default}").decode().count(
        guest_versions.v1.commit) >= 1

"""Boot a disk image in QEMU with a hard timeout and read its serial console.

:func:`boot` starts QEMU (KVM when ``/dev/kvm`` is usable, else TCG; ``HYBRIDOS_BOOT_ACCEL=tcg`` forces TCG),
writes the serial console to a file, and returns a :class:`BootResult` when QEMU exits (the guest powered off
or, with ``-no-reboot``, rebooted) or the timeout passes (QEMU is then killed). ``result.expect(...)`` fails the
test with the last console lines quoted. :func:`Machine` values describe the emulated machine per
architecture and firmware.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import require_tool

QEMU = {"x86_64": "qemu-system-x86_64", "aarch64": "qemu-system-aarch64", "ppc64le": "qemu-system-ppc64"}
CONSOLE = {"x86_64": "ttyS0", "aarch64": "ttyAMA0", "ppc64le": "hvc0"}
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
AAVMF_CODE = Path("/usr/share/AAVMF/AAVMF_CODE.fd")
UBOOT_ARM64 = Path("/usr/lib/u-boot/qemu_arm64/u-boot.bin")


_kvm_probe: dict[str, bool] = {}
#: a kernel per architecture to probe KVM with (registered by the session fixtures that provide kernels)
PROBE_KERNELS: dict[str, Path] = {}


def kvm_usable(arch: str = "x86_64") -> bool:
    """Whether this host runs ``arch`` guests with KVM: ``/dev/kvm`` opens and a probe kernel gets as far as
    printing its banner (nested KVM can run real-mode code and then hang for ever in the kernel's setup).
    ``HYBRIDOS_BOOT_ACCEL=tcg`` or ``=kvm`` decides without probing."""
    forced = os.environ.get("HYBRIDOS_BOOT_ACCEL")
    if forced == "tcg" or os.uname().machine != arch:
        return False
    if forced == "kvm":
        return True
    if arch not in _kvm_probe:
        _kvm_probe[arch] = _probe_kvm(arch)
    return _kvm_probe[arch]


def _probe_kvm(arch: str) -> bool:
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    os.close(fd)
    kernel = PROBE_KERNELS.get(arch)
    if kernel is None or shutil.which(QEMU[arch]) is None:
        return False
    with tempfile.TemporaryDirectory(prefix="kvm-probe-") as tmp:
        log = Path(tmp) / "serial.log"
        proc = subprocess.Popen([QEMU[arch], "-nodefaults", "-display", "none", "-no-reboot", "-accel", "kvm",
                                 "-m", "256", "-serial", f"file:{log}", "-kernel", str(kernel),
                                 "-append", f"console={CONSOLE[arch]} panic=-1"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and proc.poll() is None:
                if log.exists() and b"Linux version" in log.read_bytes():
                    return True
                time.sleep(0.1)
            return False
        finally:
            proc.kill()
            proc.wait()


@dataclass
class Machine:
    """What to emulate: architecture, firmware and how the disk is attached."""

    arch: str = "x86_64"
    firmware: str = "bios"            #: bios (SeaBIOS), uefi (OVMF/AAVMF), uboot, slof, or direct (-kernel)
    memory_mb: int = 512
    disk_interface: str = "virtio"    #: virtio, or ide/ahci/nvme for other controllers
    extra_args: list[str] = field(default_factory=list)

    @property
    def console(self) -> str:
        return CONSOLE[self.arch]


@dataclass
class BootResult:
    console: str
    returncode: int | None       #: None when QEMU was killed at the timeout
    seconds: float
    timed_out: bool
    argv: list[str]
    log_path: Path
    accel: str = "tcg"
    marker_seconds: float | None = None   #: seconds from QEMU's start until the first marker line appeared

    def tail(self, n: int = 40) -> str:
        lines = self.console.replace("\r", "").splitlines()
        return "\n".join(lines[-n:])

    def markers(self, marker: str = "HYBRIDOS-BOOT-MARKER") -> list[dict[str, str]]:
        """Each marker line's key=value pairs, in console order."""
        out = []
        for line in self.console.replace("\r", "").splitlines():
            if line.startswith(marker + " "):
                out.append(dict(w.split("=", 1) for w in line.split()[1:] if "=" in w))
        return out

    def expect(self, pattern: str, what: str | None = None) -> re.Match:
        """The first match of ``pattern`` in the console, or fail quoting the console's last lines."""
        m = re.search(pattern, self.console)
        if m is None:
            state = "timed out" if self.timed_out else f"QEMU exited {self.returncode}"
            pytest.fail(f"{what or 'expected console output'} not seen ({pattern!r}; {state} after "
                        f"{self.seconds:.0f} s)\n--- last console lines ({self.log_path}) ---\n{self.tail()}",
                        pytrace=False)
        return m


def firmware_args(machine: Machine, workdir: Path) -> list[str]:
    if machine.arch == "x86_64":
        args = ["-machine", "q35" if machine.firmware == "uefi" else "pc"]
        if machine.firmware == "uefi":
            vars_copy = workdir / "OVMF_VARS.fd"
            shutil.copyfile(OVMF_VARS, vars_copy)
            args += ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
                     "-drive", f"if=pflash,format=raw,unit=1,file={vars_copy}"]
        return args
    if machine.arch == "aarch64":
        args = ["-machine", "virt", "-cpu", "cortex-a57"]
        if machine.firmware == "uboot":
            args += ["-bios", str(UBOOT_ARM64)]
        elif machine.firmware == "uefi":
            args += ["-bios", "/usr/share/qemu-efi-aarch64/QEMU_EFI.fd"]
        return args
    if machine.arch == "ppc64le":
        return ["-machine", "pseries"]
    raise ValueError(machine.arch)


def disk_args(machine: Machine, disks: list[Path]) -> list[str]:
    args = []
    for i, disk in enumerate(disks):
        if machine.disk_interface == "virtio":
            args += ["-drive", f"if=none,id=d{i},file={disk},format=raw,cache=unsafe",
                     "-device", f"virtio-blk-pci,drive=d{i}"]
        elif machine.disk_interface == "nvme":
            args += ["-drive", f"if=none,id=d{i},file={disk},format=raw,cache=unsafe",
                     "-device", f"nvme,drive=d{i},serial=hybridos{i}"]
        else:
            args += ["-drive", f"if={machine.disk_interface},file={disk},format=raw,cache=unsafe"]
    return args


def boot(machine: Machine, disks: list[Path], workdir: Path, *, timeout: float, kernel: Path | None = None,
         initrd: Path | None = None, append: str | None = None, stop_at: str | None = None,
         allow_reboot: bool = False, name: str = "boot") -> BootResult:
    """Boot ``disks`` (the first is the boot disk) and wait for QEMU to exit, at most ``timeout`` seconds.

    ``kernel``/``initrd``/``append`` boot a kernel directly. ``stop_at``: kill QEMU as soon as this regular
    expression appears on the console (for guests that would go on running). ``allow_reboot``: a guest reboot
    restarts the machine (default: QEMU exits, ``-no-reboot``)."""
    qemu = QEMU[machine.arch]
    require_tool(qemu)
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / f"{name}-console.log"
    log.write_bytes(b"")
    accel = "kvm" if kvm_usable(machine.arch) else "tcg"
    argv = [qemu, "-nodefaults", "-no-user-config", "-display", "none", "-accel", accel,
            "-m", str(machine.memory_mb), "-smp", "1", "-serial", f"file:{log}", "-monitor", "none",
            *firmware_args(machine, workdir), *disk_args(machine, disks), *machine.extra_args]
    if not allow_reboot:
        argv.append("-no-reboot")
    if accel == "kvm" and machine.arch == "aarch64":
        argv[argv.index("cortex-a57")] = "host"
    if kernel is not None:
        argv += ["-kernel", str(kernel)]
        if initrd is not None:
            argv += ["-initrd", str(initrd)]
        if append is not None:
            argv += ["-append", append]
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    timed_out = False
    marker_at = None
    pattern = re.compile(stop_at) if stop_at else None
    try:
        while proc.poll() is None:
            if time.monotonic() - start > timeout:
                timed_out = True
                break
            text = log.read_text(errors="replace")
            if marker_at is None and "HYBRIDOS-BOOT-MARKER " in text:
                marker_at = time.monotonic() - start
            if pattern is not None and pattern.search(text):
                break
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            proc.kill()
        out = proc.communicate()[0].decode(errors="replace")
    seconds = time.monotonic() - start
    console = log.read_text(errors="replace")
    if out.strip():
        console += f"\n[qemu output] {out.strip()}\n"
    if marker_at is None and "HYBRIDOS-BOOT-MARKER " in console:
        marker_at = seconds
    return BootResult(console=console, returncode=None if timed_out else proc.returncode, seconds=seconds,
                      timed_out=timed_out, argv=argv, log_path=log, accel=accel, marker_seconds=marker_at)

"""``hybridos health-check``: greenboot's phases, boot counting through the bootloader plugin, and the
fallback made permanent.

One boot, in order (the systemd units run the same steps one by one, see docs/boot-assessment.md):

1. ``fallback``: the bootloader says it fell back (tries ran out) while the default deployment is not the one
   running: make the running one the default (as ``rollback``), record on the failed one why it failed (its
   last health check's failing script, or that it never got as far as a health check), reset the bootloader's
   fallback state;
2. ``check``: required.d then wanted.d; the result is recorded on the running deployment;
3. healthy: green.d, then ``bless`` (the bootloader stops counting); unhealthy: red.d, then a reboot while the
   deployment is still on trial (tries left), so the bootloader counts the next try.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hybridos.bootloader import BootConfigContext, BootCountState, BootCountStatus, Bootloader
from hybridos.health.config import GreenbootConfig, read_greenboot_conf
from hybridos.health.record import read_records, write_record
from hybridos.health.scripts import Phase, ScriptResult, run_phase
from hybridos.sysroot.sysroot import Sysroot

Echo = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@dataclass
class Host:
    """The loaded sysroot, its bootloader and the current boot configuration's context."""

    sysroot: Sysroot
    bootloader: Bootloader | None
    context: BootConfigContext | None

    @property
    def root(self) -> Path:
        """Where the scripts and greenboot.conf are: ``/`` on the running system, else the running (or default)
        deployment's checkout."""
        if is_this_machine(self.sysroot.path):
            return Path("/")
        dep = self.sysroot.booted or self.sysroot.default
        return self.sysroot.deployment_path(dep) if dep is not None else self.sysroot.path

    def state(self) -> BootCountState | None:
        if self.bootloader is None or self.context is None:
            return None
        return self.bootloader.boot_count_state(self.context)


def is_this_machine(path: Path) -> bool:
    try:
        return os.path.samefile(path, "/")
    except OSError:
        return False


def load_host(sysroot_path: Path, cmdline: str | None = None) -> Host:
    from hybridos.plugins import get_registry
    from hybridos.sysroot.deploy import current_boot_context

    sysroot = Sysroot.load(sysroot_path, cmdline=cmdline)
    bootloader = get_registry().select_bootloader(sysroot.path).bootloader if sysroot.deployments else None
    context = current_boot_context(sysroot) if bootloader is not None else None
    return Host(sysroot, bootloader, context)


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _locked(sysroot: Path):
    from hybridos.sysroot.lock import SysrootLock

    return SysrootLock(sysroot, timeout=30)


# -- 1. fallback ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Fallback:
    failed_id: str
    message: str
    state: BootCountState


def failure_message(record: dict | None) -> tuple[str, str | None, str]:
    """(reason, script, message) for a deployment the bootloader fell back from."""
    last = (record or {}).get("health-check") or {}
    if last.get("result") == "failed":
        script = last.get("script") or "(unknown)"
        return "health-check", script, f"boot failed health check: {script}"
    return "no-health-check", None, "boot failed: it never reached a health check (kernel, initramfs or early boot)"


def check_fallback(sysroot_path: Path, *, echo: Echo = _quiet, cmdline: str | None = None) -> Fallback | None:
    """Make a bootloader's fallback permanent; None when this boot is not a fallback boot."""
    from hybridos.sysroot.deploy import current_boot_context, write_deployments
    from hybridos.sysroot.transaction import Transaction

    host = load_host(sysroot_path, cmdline)
    state = host.state()
    if state is None or state.status is not BootCountStatus.FALLBACK:
        return None
    sysroot, booted = host.sysroot, host.sysroot.booted
    failed = sysroot.default
    if booted is None or failed is None or failed.same(booted):
        # already permanent (or nothing to go back to): only the bootloader's flag is left to reset
        with _locked(sysroot.path):
            host.bootloader.clear_fallback(host.context)
        return None
    reason, script, message = failure_message(read_records(sysroot.path).get(failed.id))
    echo(f"FALLBACK BOOT DETECTED! {failed.id} failed ({message}); making {booted.id} the default")
    with Transaction(sysroot.path, "health-check fallback", lock_timeout=30) as tx:
        order = [booted] + [d for d in sysroot.deployments if not d.same(booted)]
        new = write_deployments(sysroot, order, tx)
        with tx.step("boot-counting"):
            host.bootloader.clear_fallback(current_boot_context(new))
        write_record(new.path, failed.id, "boot-failure", {
            "reason": reason, "script": script, "message": message, "timestamp": int(time.time()),
            "bootloader": host.bootloader.name, "detail": state.detail,
        }, keep={d.id for d in new.deployments})
    return Fallback(failed.id, message, state)


# -- 2. checks -----------------------------------------------------------------------------------------------

@dataclass
class CheckReport:
    results: list[ScriptResult] = field(default_factory=list)

    @property
    def failed(self) -> ScriptResult | None:
        """The first required script that failed (wanted scripts never fail a check)."""
        return next((r for r in self.results if r.phase is Phase.REQUIRED and not r.ok
                     and r.outcome.value != "skipped"), None)

    @property
    def ok(self) -> bool:
        return self.failed is None


def run_checks(host: Host, config: GreenbootConfig, *, echo: Echo = _quiet, record: bool = True) -> CheckReport:
    report = CheckReport()
    report.results += run_phase(host.root, Phase.REQUIRED, config, echo=echo)
    report.results += run_phase(host.root, Phase.WANTED, config, echo=echo)
    booted = host.sysroot.booted or (None if is_this_machine(host.sysroot.path) else host.sysroot.default)
    if record and booted is not None:
        failed = report.failed
        value = {"result": "passed" if report.ok else "failed", "script": failed.name if failed else None,
                 "message": failed.describe() if failed else "all required checks passed",
                 "timestamp": int(time.time()), "boot-id": boot_id()}
        with _locked(host.sysroot.path):
            write_record(host.sysroot.path, booted.id, "health-check", value,
                         keep={d.id for d in host.sysroot.deployments})
    return report


# -- 3. after the checks -------------------------------------------------------------------------------------

def bless(host: Host) -> BootCountState | None:
    """Mark the running boot good when its bootloader is counting it; returns the state found."""
    state = host.state()
    if state is not None and state.status is BootCountStatus.ARMED:
        with _locked(host.sysroot.path):
            host.bootloader.mark_boot_good(host.context)
    return state


def reboot_command() -> list[str]:
    return ["systemctl", "reboot"] if Path("/run/systemd/system").is_dir() else ["reboot"]


def should_reboot(host: Host, config: GreenbootConfig) -> tuple[bool, str]:
    """greenboot's redboot-auto-reboot: reboot only while the deployment is on trial."""
    if not config.reboot_on_failure:
        return False, "HYBRIDOS_REBOOT_ON_FAILURE=false: not rebooting"
    state = host.state()
    if state is None or state.status is BootCountStatus.NONE:
        return False, "boot counting is not active: manual intervention necessary"
    if state.status is BootCountStatus.FALLBACK:
        return False, "FALLBACK BOOT DETECTED but the system is still unhealthy: manual intervention necessary"
    if len(host.sysroot.deployments) < 2:
        return False, "there is no other deployment to fall back to: manual intervention necessary"
    return True, f"rebooting to try again ({state.detail})"


@dataclass
class RunResult:
    fallback: Fallback | None
    report: CheckReport
    config: GreenbootConfig
    rebooting: bool = False
    note: str = ""


def run_all(sysroot_path: Path, *, echo: Echo = _quiet, cmdline: str | None = None,
            reboot: bool = True, runner: Callable[[list[str]], object] = subprocess.run) -> RunResult:
    """Everything one boot needs, in order (what the busybox test image's init runs)."""
    fallback = check_fallback(sysroot_path, echo=echo, cmdline=cmdline)
    host = load_host(sysroot_path, cmdline)
    config = read_greenboot_conf(host.root)
    report = run_checks(host, config, echo=echo)
    result = RunResult(fallback, report, config)
    if report.ok:
        run_phase(host.root, Phase.GREEN, config, echo=echo)
        bless(host)
        echo("Boot Status is GREEN - Health Check SUCCESS")
        return result
    echo(f"Boot Status is RED - Health Check FAILURE! ({report.failed.describe()})")
    run_phase(host.root, Phase.RED, config, echo=echo)
    wanted, why = should_reboot(host, config)
    result.note = why
    echo(why)
    if wanted and reboot:
        result.rebooting = True
        runner(reboot_command())
    return result

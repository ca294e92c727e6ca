"""The daemon's configuration: rpm-ostreed.conf's format and keys.

``[Daemon]`` ``AutomaticUpdatePolicy=none|check|stage|apply`` (also ``off`` and ``ex-stage``, as rpm-ostree
accepts them), ``IdleExitTimeout`` (seconds, 0 = never), ``LockLayering``, ``Recommends``; hybridos adds
``RebootCommand`` (what ``apply`` and ``finalize-deployment`` run to reboot; default ``systemctl reboot``).
Read from ``etc/hybridos/hybridosd.conf`` of the sysroot (``/etc`` on the running system), else
``etc/rpm-ostreed.conf``; neither means the defaults. :func:`parse_config` is pure.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from hybridos.errors import ConfigError

CONFIG_PATHS = ("etc/hybridos/hybridosd.conf", "etc/rpm-ostreed.conf")
POLICIES = {"none": "none", "off": "none", "check": "check", "stage": "stage", "ex-stage": "stage",
            "apply": "apply"}
CONFIG_LIMIT = 1 << 20


@dataclass(frozen=True)
class DaemonSettings:
    path: str = ""                               #: the file read ("" when none exists)
    automatic_update_policy: str = "none"
    idle_exit_timeout: float = 60.0
    lock_layering: bool = False
    recommends: bool = True
    reboot_command: tuple[str, ...] = ("systemctl", "reboot")


def _bool(value: str, where: str) -> bool:
    v = value.strip().lower()
    if v in ("true", "1", "yes"):
        return True
    if v in ("false", "0", "no"):
        return False
    raise ConfigError(f"{where}: {value!r} is not a boolean (use true or false)")


def parse_config(text: str, path: str = "hybridosd.conf") -> DaemonSettings:
    """The settings of a GKeyFile-style text; an error names the file and line."""
    section = None
    seen: dict[str, tuple[str, int]] = {}
    for lineno, raw in enumerate(text.split("\n"), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{path}:{lineno}"
        if line.startswith("["):
            if not line.endswith("]") or len(line) < 3:
                raise ConfigError(f"{where}: malformed group line {line!r}")
            section = line[1:-1]
            continue
        if "=" not in line:
            raise ConfigError(f"{where}: expected KEY=VALUE, got {line!r}")
        if section is None:
            raise ConfigError(f"{where}: key outside of any group")
        key, value = (x.strip() for x in line.split("=", 1))
        if section == "Daemon":
            seen[key] = (value, lineno)
    out = DaemonSettings(path=path)
    values: dict = {}
    if "AutomaticUpdatePolicy" in seen:
        value, lineno = seen["AutomaticUpdatePolicy"]
        policy = POLICIES.get(value.lower())
        if policy is None:
            raise ConfigError(f"{path}:{lineno}: Invalid value for AutomaticUpdatePolicy: '{value}' "
                              f"(use none, check, stage or apply)")
        values["automatic_update_policy"] = policy
    if "IdleExitTimeout" in seen:
        value, lineno = seen["IdleExitTimeout"]
        try:
            idle = float(value)
        except ValueError:
            idle = -1.0
        if not idle >= 0:
            raise ConfigError(f"{path}:{lineno}: IdleExitTimeout must be a number of seconds, not {value!r}")
        values["idle_exit_timeout"] = idle
    for key, attr in (("LockLayering", "lock_layering"), ("Recommends", "recommends")):
        if key in seen:
            value, lineno = seen[key]
            values[attr] = _bool(value, f"{path}:{lineno}: {key}")
    if "RebootCommand" in seen:
        value, lineno = seen["RebootCommand"]
        try:
            argv = tuple(shlex.split(value))
        except ValueError as exc:
            raise ConfigError(f"{path}:{lineno}: RebootCommand: {exc}") from None
        if not argv:
            raise ConfigError(f"{path}:{lineno}: RebootCommand is empty")
        values["reboot_command"] = argv
    return DaemonSettings(**{**out.__dict__, **values})


def config_path(sysroot: Path) -> Path | None:
    """The configuration file that applies to ``sysroot``: ours, else rpm-ostree's, else None."""
    for rel in CONFIG_PATHS:
        p = Path(sysroot) / rel
        if p.is_file():
            return p
    return None


def load_settings(sysroot: Path, path: Path | None = None) -> DaemonSettings:
    """The settings of ``path``, else of the sysroot's configuration file; defaults when there is none."""
    path = path or config_path(sysroot)
    if path is None or not Path(path).exists():
        return DaemonSettings()
    try:
        with open(path, "rb") as f:
            data = f.read(CONFIG_LIMIT + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    if len(data) > CONFIG_LIMIT:
        raise ConfigError(f"{path} is larger than {CONFIG_LIMIT} bytes")
    return parse_config(data.decode("utf-8", "replace"), str(path))

"""``/etc/greenboot/greenboot.conf``: a shell file of ``KEY=VALUE`` lines, read without running a shell.

greenboot sources it; the keys hybridos reads are greenboot's ``GREENBOOT_MAX_BOOT_ATTEMPTS`` (tries before the
bootloader falls back, default 3) and ``DISABLED_HEALTHCHECKS`` (script names never run, a bash array), plus two
of its own: ``HYBRIDOS_HEALTHCHECK_TIMEOUT`` (seconds one script may run, default 300) and
``HYBRIDOS_REBOOT_ON_FAILURE`` (reboot after red.d when a required check failed, default true).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from hybridos.errors import ConfigError

CONF = "etc/greenboot/greenboot.conf"
DEFAULT_MAX_BOOT_ATTEMPTS = 3
DEFAULT_TIMEOUT = 300


@dataclass(frozen=True)
class GreenbootConfig:
    max_boot_attempts: int = DEFAULT_MAX_BOOT_ATTEMPTS
    disabled: frozenset[str] = frozenset()
    script_timeout: float = DEFAULT_TIMEOUT
    reboot_on_failure: bool = True


def _assignments(text: str) -> dict[str, list[str]]:
    """``KEY=value`` / ``KEY=(a b ...)`` assignments of a shell file (arrays may span lines); ``export``
    prefixes and comments are ignored, later assignments win."""
    try:
        lexer = shlex.shlex(text, posix=True, punctuation_chars="();")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        words = list(lexer)
    except ValueError as exc:
        raise ConfigError(f"{CONF}: {exc}") from None
    out: dict[str, list[str]] = {}
    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        if word == "export" or word == ";":
            continue
        key, sep, value = word.partition("=")
        if not sep or not key.replace("_", "").isalnum():
            continue
        if value == "" and i < len(words) and words[i] == "(":
            items = []
            i += 1
            while i < len(words) and words[i] != ")":
                items.append(words[i])
                i += 1
            i += 1
            out[key] = items
        else:
            out[key] = [value]
    return out


def _number(values: dict[str, list[str]], key: str, default: float, *, integer: bool) -> float:
    if key not in values or not values[key] or values[key][0] == "":
        return default
    text = values[key][0]
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        raise ConfigError(f"{CONF}: {key}={text!r} is not a number") from None
    if value < 0:
        raise ConfigError(f"{CONF}: {key}={text!r} must not be negative")
    return value


def parse_greenboot_conf(text: str) -> GreenbootConfig:
    values = _assignments(text)
    reboot = values.get("HYBRIDOS_REBOOT_ON_FAILURE", ["true"])
    reboot_value = (reboot[0] if reboot else "true").strip().lower()
    if reboot_value not in ("true", "false", "yes", "no", "1", "0"):
        raise ConfigError(f"{CONF}: HYBRIDOS_REBOOT_ON_FAILURE={reboot_value!r} must be true or false")
    return GreenbootConfig(
        max_boot_attempts=int(_number(values, "GREENBOOT_MAX_BOOT_ATTEMPTS", DEFAULT_MAX_BOOT_ATTEMPTS,
                                      integer=True)),
        disabled=frozenset(w for w in values.get("DISABLED_HEALTHCHECKS", []) if w),
        script_timeout=_number(values, "HYBRIDOS_HEALTHCHECK_TIMEOUT", DEFAULT_TIMEOUT, integer=False),
        reboot_on_failure=reboot_value in ("true", "yes", "1"),
    )


def has_health_checks(deployment: Path) -> bool:
    """Whether a deployment ships greenboot: its config or one of its script directories."""
    from hybridos.util import inroot

    return inroot.read_text_or_none(deployment, CONF, limit=1) is not None or any(
        inroot.is_real_dir(deployment, d) for d in ("usr/lib/greenboot", "etc/greenboot"))


def read_greenboot_conf(root: Path) -> GreenbootConfig:
    """``root``'s greenboot.conf (read inside ``root``: its symlinks never lead to a host file); defaults
    when there is none."""
    from hybridos.util import inroot

    data = inroot.read_text_or_none(root, CONF, limit=64 << 10)
    return parse_greenboot_conf(data.decode("utf-8", "replace")) if data is not None else GreenbootConfig()


def boot_counting_tries(options: dict[str, str], deployment: Path | None) -> int:
    """Tries a new default deployment gets: ``[sysroot] boot-counting`` when set (0 = off), else
    GREENBOOT_MAX_BOOT_ATTEMPTS (default 3) when the deployment ships health checks, else 0."""
    if "boot-counting" in options:
        text = options["boot-counting"]
        try:
            value = int(text, 0)
        except ValueError:
            raise ConfigError(f"[sysroot] boot-counting={text!r} is not a number") from None
        if value < 0:
            raise ConfigError(f"[sysroot] boot-counting={text!r} must not be negative")
        return value
    if deployment is None or not has_health_checks(deployment):
        return 0
    return read_greenboot_conf(deployment).max_boot_attempts

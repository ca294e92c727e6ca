"""Target architectures hybridos builds and boots."""

from __future__ import annotations

import platform
from enum import StrEnum

from hybridos.errors import UsageError


class Architecture(StrEnum):
    X86_64 = "x86_64"
    AARCH64 = "aarch64"
    PPC64LE = "ppc64le"

    @classmethod
    def parse(cls, value: str) -> Architecture:
        aliases = {"amd64": "x86_64", "arm64": "aarch64", "ppc64el": "ppc64le"}
        value = aliases.get(value, value)
        try:
            return cls(value)
        except ValueError:
            known = ", ".join(a.value for a in cls)
            raise UsageError(f"unsupported architecture {value!r} (known: {known})") from None

    @classmethod
    def host(cls) -> Architecture:
        return cls.parse(platform.machine())

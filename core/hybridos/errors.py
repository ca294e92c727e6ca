"""The error model: every error a user can cause is a HybridosError with a one-line message.

The CLI prints ``error: <message>`` and exits with ``exit_code``; only ``--debug`` shows a traceback.
"""

from __future__ import annotations


class HybridosError(Exception):
    """Base of all errors a user can act on."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(HybridosError):
    """A command was called with arguments that do not fit (exit 1, as rpm-ostree's and ostree's usage errors)."""


class ConfigError(HybridosError):
    """A configuration file (repo config, .repo file, treefile, origin) is malformed."""


class FormatError(HybridosError):
    """Bytes do not parse as the format they claim to be (GVariant, RPM header, repodata...)."""


class NotFoundError(HybridosError):
    """A ref, object, package, remote, deployment or file does not exist."""


class CorruptionError(HybridosError):
    """Stored or downloaded data does not match its checksum."""


class FetchError(HybridosError):
    """A download failed (network, server, missing file)."""


class SignatureError(HybridosError):
    """A commit signature is missing, unknown or wrong."""


class SolverError(HybridosError):
    """A package request cannot be satisfied; the message holds libsolv's explanation."""


class PackageError(HybridosError):
    """An RPM is malformed, unsafe (paths escaping the tree) or its scriptlet failed."""


class SysrootError(HybridosError):
    """A sysroot is missing, locked or not in a state that allows the operation."""


class BootloaderError(HybridosError):
    """A bootloader plugin cannot handle this sysroot or architecture."""


class PluginError(HybridosError):
    """No plugin implements what is needed, or a plugin misbehaved."""


class Cancelled(HybridosError):
    """The transaction was cancelled by the user."""

    exit_code = 130


class Unchanged(HybridosError):
    """Nothing to do; with --unchanged-exit-77 the CLI exits 77."""

    exit_code = 77


class AlreadyDone(UsageError):
    """The request asks for what the system already has (already requested, already removed...): like
    rpm-ostree, an error with exit code 1 (``--idempotent`` turns it into a no-op)."""

    exit_code = 1

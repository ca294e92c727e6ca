"""Fixtures shared with the sysroot tests: a served remote and a deployed host."""

from tests.sysroot.conftest import host, remote, workdir  # noqa: F401

"""The hybridos plugin contract: pluggy hook specifications.

Every hook is called with keyword arguments. Plugins are modules (or objects) registered through the
``hybridos.plugins`` entry-point group; the core's own defaults register the same way.

Which implementation wins:

- fetch: by URL scheme. Each plugin returns its fetcher classes; the core picks the one whose ``schemes``
  contain the URL's scheme (the plugin registered last wins a tie, so a third party can replace a default).
- solve, layer: first result. The first implementation that returns non-None is used; the core's defaults are
  ``trylast`` so any installed plugin is asked before them.
- initramfs: first result; an implementation returns None when it does not fit the tree (the dracut
  implementation when the tree has no dracut), so the next one is asked.
- bootloader: explicit configuration (``[sysroot] bootloader=NAME`` in the sysroot repo's config), else the
  highest detection score on the sysroot, else none (BLS entries only).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from pathlib import Path

    from hybridos.bootloader import Bootloader
    from hybridos.fetch import Fetcher
    from hybridos.initramfs import InitramfsRequest
    from hybridos.packages.model import LayerRequest, LayerResult, SolveRequest, Transaction
    from hybridos.plugins import FetcherRef

PROJECT = "hybridos"
ENTRY_POINT_GROUP = "hybridos.plugins"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# -------------------------------------------------------------------------------------------------
# fetch
# -------------------------------------------------------------------------------------------------


@hookspec
def hybridos_fetchers() -> list[type[Fetcher] | FetcherRef]:
    """Return the fetcher classes this plugin provides.

    Each class names the URL ``schemes`` it serves and is instantiated by the core with a
    :class:`hybridos.fetch.FetchOptions`. A :class:`hybridos.plugins.FetcherRef` (name, schemes, "module:Class")
    may stand for a class, which is then imported only when one of its schemes is fetched. Return an empty list
    to provide none.
    """


# -------------------------------------------------------------------------------------------------
# solve
# -------------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def hybridos_solve(request: SolveRequest) -> Transaction | None:
    """Turn a package request and the installed set into an ordered transaction.

    :param request: repositories, installed packages and the jobs to solve.
    :return: the transaction; raise :class:`hybridos.errors.SolverError` with a readable explanation when the
        request cannot be satisfied. Return None to let other plugins decide. Stops at the first non-None result.
    """


# -------------------------------------------------------------------------------------------------
# layer
# -------------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def hybridos_layer(request: LayerRequest) -> LayerResult | None:
    """Apply a transaction to a tree: unpack packages, update the rpmdb, run scriptlets in a sandbox.

    :param request: the tree, the ordered transaction and the downloaded RPM files.
    :return: what was installed and erased; raise :class:`hybridos.errors.PackageError` naming the package and
        scriptlet on failure. Return None to let other plugins decide. Stops at the first non-None result.
    """


# -------------------------------------------------------------------------------------------------
# initramfs
# -------------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def hybridos_initramfs(request: InitramfsRequest) -> Path | None:
    """(Re)generate the initramfs of ``request.tree`` for ``request.kernel_version``.

    :param request: the tree, kernel version, target architecture and extra generator arguments.
    :return: the path of the written image (``request.output``), or None when this implementation does not
        fit the tree, to let other plugins decide. Stops at the first non-None result.
    """


# -------------------------------------------------------------------------------------------------
# bootloader
# -------------------------------------------------------------------------------------------------


@hookspec
def hybridos_bootloaders() -> list[Bootloader]:
    """Return the bootloader backends this plugin provides.

    Each :class:`hybridos.bootloader.Bootloader` names itself, lists its architectures, detects itself on a
    sysroot and writes its configuration for a new boot version before the atomic swap. The core selects one
    per sysroot (configuration, then detection score). Return an empty list to provide none.
    """

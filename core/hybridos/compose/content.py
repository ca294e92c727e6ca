"""Treefile filters on what the packages installed: ``remove-from-packages``, ``install-langs``,
``documentation: false`` and ``readonly-executables``.

Each runs on the tree right after the packages are layered, as rpm-ostree applies them while checking packages
out (the rpmdb still lists the removed files, as upstream documents: ``rpm -V`` complains).
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path

from hybridos.compose.treefile import Treefile


def lang_installed(file_langs: str, install_langs: Iterable[str]) -> bool:
    """rpm's ``_install_langs`` rule: a file without a language, or whose language (one of ``a|b``) is a prefix of
    an installed language (``en`` for ``en_US``), or any file when ``all`` is listed, is installed."""
    langs = list(install_langs)
    if not file_langs or not langs or "all" in langs:
        return True
    return any(lang.startswith(fl) for lang in langs for fl in file_langs.split("|") if fl)


def matches_any(path: str, patterns: Iterable[re.Pattern]) -> bool:
    """``remove-from-packages``: a regular expression found anywhere in the absolute path (GRegex's match)."""
    return any(p.search(path) for p in patterns)


def _unlink(tree: Path, path: str) -> bool:
    p = tree / path.lstrip("/")
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        return False
    if stat.S_ISDIR(st.st_mode):
        return False
    os.unlink(p)
    return True


def filter_package_files(tree: Path, tf: Treefile, rpms: Mapping[str, Path]) -> list[str]:
    """Apply ``remove-from-packages``, ``install-langs`` and ``documentation: false``; return the removed paths."""
    from hybridos.packages.header import FileFlag, read_rpm

    by_pkg: dict[str, list[re.Pattern]] = {}
    for entry in tf.remove_from_packages:
        by_pkg.setdefault(entry[0], []).extend(re.compile(rx) for rx in entry[1:])
    if not by_pkg and not tf.install_langs and tf.documentation:
        return []
    removed = []
    for rpm in rpms.values():
        header = read_rpm(rpm).header
        patterns = by_pkg.get(header.name, [])
        for fe in header.file_entries:
            if stat.S_ISDIR(fe.mode) or fe.is_ghost:
                continue
            drop = (patterns and matches_any(fe.path, patterns)) \
                or not lang_installed(fe.lang, tf.install_langs) \
                or (not tf.documentation and fe.flags & FileFlag.DOC)
            if drop and _unlink(tree, fe.path):
                removed.append(fe.path)
    return removed


def readonly_executables(tree: Path) -> int:
    """``readonly-executables: true``: remove every write bit from regular files with an execute bit.
    Returns how many files changed."""
    n = 0
    for dirpath, _dirs, files in os.walk(tree):
        for name in files:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            if stat.S_ISREG(st.st_mode) and st.st_mode & 0o111 and st.st_mode & 0o222:
                os.chmod(p, stat.S_IMODE(st.st_mode) & ~0o222)
                n += 1
    return n

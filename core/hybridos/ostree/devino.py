"""The (device, inode) -> content checksum cache that lets a hardlink checkout be recommitted without reading.

A file hardlinked from ``objects/`` shares the object's inode, so its checksum is the object's name. Building the
cache reads only directory entries (``d_ino``), never file data.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hybridos.ostree.repo import Repo


class DevinoCache:
    """Maps (st_dev, st_ino) of content objects to their checksums."""

    def __init__(self) -> None:
        self._map: dict[tuple[int, int], str] = {}

    def __len__(self) -> int:
        return len(self._map)

    def add(self, dev: int, ino: int, checksum: str) -> None:
        self._map[(dev, ino)] = checksum

    def lookup(self, dev: int, ino: int) -> str | None:
        return self._map.get((dev, ino))

    @classmethod
    def scan(cls, repo: Repo) -> DevinoCache:
        """Index every content object of a non-archive repository."""
        cache = cls()
        if repo.mode.is_archive:
            return cache
        try:
            dev = os.stat(repo.objects_dir).st_dev
            top = sorted(e.name for e in os.scandir(repo.objects_dir) if len(e.name) == 2)
        except FileNotFoundError:
            return cache
        for sub in top:
            d = os.path.join(repo.objects_dir, sub)
            if os.stat(d).st_dev != dev:
                continue
            with os.scandir(d) as it:
                for e in it:
                    n = e.name
                    if n.endswith(".file") and len(n) == 67:
                        cache._map[(dev, e.inode())] = sub + n[:62]
        return cache

"""The initramfs request handed to the initramfs hook."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hybridos.arch import Architecture


@dataclass(frozen=True)
class InitramfsRequest:
    """Regenerate ``tree/usr/lib/modules/<kernel_version>/initramfs.img``."""

    tree: Path
    kernel_version: str
    arch: Architecture
    args: tuple[str, ...] = ()
    timeout: float | None = None   #: seconds dracut may run (None: $HYBRIDOS_SCRIPTLET_TIMEOUT, else 300)
    #: the tree's /usr is a hardlink checkout of a repository (dracut then sees it through rofiles-fuse);
    #: None: guessed from the tree
    hardlinked_usr: bool | None = None

    @property
    def output(self) -> Path:
        return self.tree / "usr/lib/modules" / self.kernel_version / "initramfs.img"

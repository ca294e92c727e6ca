"""Entry point of the grub2 bootloader plugin."""

from hybridos.hookspecs import hookimpl
from hybridos_bootloader_grub.backend import GrubBootloader


@hookimpl
def hybridos_bootloaders():
    return [GrubBootloader()]

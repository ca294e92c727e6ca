"""Entry point of the grub2 bootloader plugin (its backend is imported when bootloaders are asked for)."""

from hybridos.hookspecs import hookimpl


@hookimpl
def hybridos_bootloaders():
    from hybridos_bootloader_grub.backend import GrubBootloader

    return [GrubBootloader()]

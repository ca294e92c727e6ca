"""Entry point of the uboot bootloader plugin (its backend is imported when bootloaders are asked for)."""

from hybridos.hookspecs import hookimpl


@hookimpl
def hybridos_bootloaders():
    from hybridos_bootloader_uboot.backend import UBootBootloader

    return [UBootBootloader()]

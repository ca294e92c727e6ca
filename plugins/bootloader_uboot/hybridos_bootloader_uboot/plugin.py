"""Entry point of the uboot bootloader plugin."""

from hybridos.hookspecs import hookimpl
from hybridos_bootloader_uboot.backend import UBootBootloader


@hookimpl
def hybridos_bootloaders():
    return [UBootBootloader()]

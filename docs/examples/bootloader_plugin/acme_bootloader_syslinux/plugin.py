"""Entry point module: one hook implementation returning this distribution's bootloader."""

from acme_bootloader_syslinux.backend import SyslinuxBootloader
from hybridos.hookspecs import hookimpl


@hookimpl
def hybridos_bootloaders():
    return [SyslinuxBootloader()]

"""Entry point of the systemd-boot bootloader plugin."""

from hybridos.hookspecs import hookimpl
from hybridos_bootloader_systemd_boot.backend import SystemdBootBootloader


@hookimpl
def hybridos_bootloaders():
    return [SystemdBootBootloader()]

"""Entry point of the systemd-boot bootloader plugin (its backend is imported when bootloaders are asked for)."""

from hybridos.hookspecs import hookimpl


@hookimpl
def hybridos_bootloaders():
    from hybridos_bootloader_systemd_boot.backend import SystemdBootBootloader

    return [SystemdBootBootloader()]

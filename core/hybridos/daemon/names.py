"""rpm-ostreed's names: bus name, object paths, interfaces, errors and polkit actions."""

from __future__ import annotations

BUS_NAME = "org.projectatomic.rpmostree1"
BASE_PATH = "/org/projectatomic/rpmostree1"
SYSROOT_PATH = BASE_PATH + "/Sysroot"

IFACE_SYSROOT = "org.projectatomic.rpmostree1.Sysroot"
IFACE_OS = "org.projectatomic.rpmostree1.OS"
IFACE_OS_EXPERIMENTAL = "org.projectatomic.rpmostree1.OSExperimental"
IFACE_TRANSACTION = "org.projectatomic.rpmostree1.Transaction"
#: hybridos' own addition on the transaction object: how it ended, for the CLI's exit code
IFACE_HYBRIDOS_TRANSACTION = "org.hybridos.Transaction1"
#: hybridos' own addition on OS objects: run any hybridos.operations request (the CLI's path)
IFACE_HYBRIDOS_OS = "org.hybridos.OS1"

ERROR_PREFIX = "org.projectatomic.rpmostreed.Error."
ERROR_FAILED = ERROR_PREFIX + "Failed"
ERROR_INVALID_SYSROOT = ERROR_PREFIX + "InvalidSysroot"
ERROR_NOT_AUTHORIZED = ERROR_PREFIX + "NotAuthorized"
ERROR_UPDATE_IN_PROGRESS = ERROR_PREFIX + "UpdateInProgress"
ERROR_INVALID_REFSPEC = ERROR_PREFIX + "InvalidRefspec"
#: what GDBus sends for G_IO_ERROR_BUSY ("Transaction in progress")
ERROR_BUSY = "org.gtk.GDBus.UnmappedGError.Quark._g_2dio_2derror_2dquark.Code26"

POLKIT_PREFIX = "org.projectatomic.rpmostree1."


def os_object_path(osname: str) -> str:
    """``/org/projectatomic/rpmostree1/<osname>``, escaped as rpm-ostreed does (``fedora-coreos`` ->
    ``fedora_coreos``; other bytes outside ``[A-Za-z0-9_]`` -> ``_XX``)."""
    out = []
    for b in osname.encode():
        c = chr(b)
        if c.isascii() and (c.isalnum() or c == "_"):
            out.append(c)
        elif c in "-/":
            out.append("_")
        else:
            out.append(f"_{b:02x}")
    return f"{BASE_PATH}/{''.join(out) or '_'}"

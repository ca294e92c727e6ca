"""The CLI as a client of hybridosd: when the daemon's name is on the system bus (or can be activated) and it
serves the sysroot the command is for, host commands go through it; otherwise they run in-process.

``HYBRIDOS_NO_DAEMON=1`` forces in-process. Without a system bus (no ``DBUS_SYSTEM_BUS_ADDRESS`` and no
``/run/dbus/system_bus_socket``) nothing D-Bus is even imported, so the in-process path costs nothing extra.
The transaction runs as ``org.hybridos.OS1.Run`` (the same ``hybridos.operations`` request the in-process path
runs); its signals are drawn by the same ``TaskLine``; Ctrl-C cancels it.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from hybridos.errors import Cancelled, HybridosError

BUS_NAME = "org.projectatomic.rpmostree1"
SYSROOT_PATH = "/org/projectatomic/rpmostree1/Sysroot"
DEFAULT_SYSTEM_BUS = "/run/dbus/system_bus_socket"


def system_bus_address() -> str | None:
    """The system bus address when one is plausible, else None (checked without importing D-Bus code)."""
    if os.environ.get("HYBRIDOS_NO_DAEMON"):
        return None
    address = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS")
    if address:
        return address
    return f"unix:path={DEFAULT_SYSTEM_BUS}" if os.path.exists(DEFAULT_SYSTEM_BUS) else None


class DaemonError(HybridosError):
    """An error reply of the daemon (not authorized, busy, bad arguments)."""


def _variant_request(op) -> tuple[dict, list[str]]:
    """An operation request as ``a{sv}`` (None left out) plus the local files it names, to pass as fds."""
    from dbus_fast import Variant

    out, files = {}, []
    for key, value in op.to_dict().items():
        if value is None:
            continue
        if key in ("install_local_files", "replace_local_files"):
            idx = []
            for f in value:
                idx.append(str(len(files)))
                files.append(f)
            out[key] = Variant("as", idx)
        elif isinstance(value, bool):
            out[key] = Variant("b", value)
        elif isinstance(value, str):
            out[key] = Variant("s", value)
        elif isinstance(value, (list, tuple)):
            out[key] = Variant("as", [str(v) for v in value])
        else:
            raise HybridosError(f"cannot send option {key}={value!r} to the daemon")
    return out, files


class Client:
    def __init__(self, bus):
        self.bus = bus

    async def call(self, path: str, interface: str, member: str, signature: str = "", body=None,
                   unix_fds=None):
        from dbus_fast import Message, MessageType

        reply = await self.bus.call(Message(destination=BUS_NAME, path=path, interface=interface, member=member,
                                            signature=signature, body=body or [], unix_fds=unix_fds or []))
        if reply.message_type == MessageType.ERROR:
            text = reply.body[0] if reply.body else reply.error_name
            if reply.error_name.endswith("NotAuthorized"):
                raise DaemonError(f"not authorized: {text}")
            raise DaemonError(str(text))
        return reply.body

    async def get(self, path: str, interface: str, prop: str):
        body = await self.call(path, "org.freedesktop.DBus.Properties", "Get", "ss", [interface, prop])
        return body[0].value

    async def get_all(self, path: str, interface: str) -> dict:
        body = await self.call(path, "org.freedesktop.DBus.Properties", "GetAll", "s", [interface])
        return {k: v.value for k, v in body[0].items()}


async def connect(sysroot: Path) -> Client | None:
    """A client when hybridosd is there (or activatable) and serves ``sysroot``; else None."""
    address = system_bus_address()
    if address is None:
        return None
    from dbus_fast import BusType, Message
    from dbus_fast.aio import MessageBus

    try:
        bus = await MessageBus(bus_address=address, bus_type=BusType.SYSTEM, negotiate_unix_fd=True).connect()
    except (OSError, ValueError, Exception):  # no bus (or one that refuses us): run in-process
        return None
    client = Client(bus)
    dbus = ("/org/freedesktop/DBus", "org.freedesktop.DBus")
    try:
        reply = await bus.call(Message(destination="org.freedesktop.DBus", path=dbus[0], interface=dbus[1],
                                       member="NameHasOwner", signature="s", body=[BUS_NAME]))
        present = bool(reply.body and reply.body[0])
        if not present:
            reply = await bus.call(Message(destination="org.freedesktop.DBus", path=dbus[0], interface=dbus[1],
                                           member="ListActivatableNames"))
            present = BUS_NAME in (reply.body[0] if reply.body else [])
        if not present:
            bus.disconnect()
            return None
        served = await client.get(SYSROOT_PATH, "org.projectatomic.rpmostree1.Sysroot", "Path")
    except DaemonError:
        bus.disconnect()
        return None
    if Path(served).resolve() != Path(sysroot).resolve():
        bus.disconnect()
        return None
    return client


# -- status -------------------------------------------------------------------------------------------------

def status_from_props(props: dict, *, booted_only: bool = False) -> dict:
    """``hybridos status --json`` data from the Sysroot's properties (values unwrapped)."""
    import json

    deployments = []
    for values in props["Deployments"]:
        if booted_only and not values.get("booted"):
            continue
        deployments.append(json.loads(values["hybridos-status"]))
    method, sender, path = props["ActiveTransaction"]
    # rpm-ostree's shape: the ActiveTransaction triple (method, sender, object path), or null
    tx = [method, f"hybridosd transaction {method} of {sender}", path] if method else None
    return {"deployments": deployments, "transaction": tx, "cached-update": None, "update-driver": None}


def status_through_daemon(sysroot: Path, *, booted_only: bool = False) -> dict | None:
    """Status data from hybridosd when it serves ``sysroot`` (a blocking client: no asyncio to import);
    None when there is no daemon for it."""
    address = system_bus_address()
    if address is None:
        return None
    from hybridos.cli._busclient import BlockingBus, BusError

    try:
        bus = BlockingBus(address)
    except OSError:
        return None
    dbus = ("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus")
    try:
        if not bus.call(*dbus, "NameHasOwner", "s", (BUS_NAME,))[0] and \
                BUS_NAME not in bus.call(*dbus, "ListActivatableNames")[0]:
            return None
        props = bus.call(BUS_NAME, SYSROOT_PATH, "org.freedesktop.DBus.Properties", "GetAll", "s",
                         ("org.projectatomic.rpmostree1.Sysroot",))[0]
    except (BusError, OSError):
        return None
    finally:
        bus.close()
    if Path(props["Path"]).resolve() != Path(sysroot).resolve():
        return None
    return status_from_props(props, booted_only=booted_only)


# -- transactions -------------------------------------------------------------------------------------------


async def run_operation(client: Client, op, line, *, osname: str | None = None):
    """Run ``op`` through the daemon, drawing its progress on ``line``; returns (lines printed, unchanged).
    Raises the transaction's error with its exit code."""
    import asyncio

    from dbus_fast import Message, MessageType

    from hybridos.daemon.peer import connect_peer

    os_path = (await client.call(SYSROOT_PATH, "org.projectatomic.rpmostree1.Sysroot", "GetOS", "s",
                                 [osname or ""]))[0]
    await client.call(SYSROOT_PATH, "org.projectatomic.rpmostree1.Sysroot", "RegisterClient", "a{sv}",
                      [{"id": _variant("s", os.environ.get("HYBRIDOS_CLIENT_ID", "cli"))}])
    request, files = _variant_request(op)
    fds = []
    try:
        for f in files:
            try:
                fds.append(os.open(f, os.O_RDONLY | os.O_CLOEXEC))
            except OSError as exc:
                raise HybridosError(f"no such RPM file: {f}" if isinstance(exc, FileNotFoundError)
                                    else f"cannot read {f}: {exc.strerror}") from None
        address = (await client.call(os_path, "org.hybridos.OS1", "Run", "sa{sv}ah",
                                     [op.verb, request, list(range(len(fds)))], unix_fds=fds))[0]
    finally:
        for fd in fds:
            os.close(fd)
    peer = await connect_peer(address)
    done = asyncio.get_running_loop().create_future()
    outcome: dict = {}

    def on_message(msg):
        if msg.message_type != MessageType.SIGNAL:
            return None
        member, body = msg.member, msg.body
        if member == "Message":
            line.message(body[0])
        elif member == "TaskBegin":
            line.task(body[0])
        elif member == "PercentProgress":
            line.progress(f"{body[0]} {body[1]}%")
        elif member == "DownloadProgress":
            line.progress(_download_text(body))
        elif member == "Ended":
            outcome.update({k: v.value for k, v in body[0].items()})
        elif member == "Finished" and not done.done():
            done.set_result((body[0], body[1]))
        return None

    peer.add_message_handler(on_message)
    loop = asyncio.get_running_loop()

    def cancel():
        peer.send(Message(path="/", interface="org.projectatomic.rpmostree1.Transaction", member="Cancel"))

    loop.add_signal_handler(signal.SIGINT, cancel)
    try:
        await peer.call(Message(path="/", interface="org.projectatomic.rpmostree1.Transaction", member="Start"))
        success, error = await done
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        line.clear()
        peer.disconnect()
        try:
            await client.call(SYSROOT_PATH, "org.projectatomic.rpmostree1.Sysroot", "UnregisterClient", "a{sv}",
                              [{}])
        except DaemonError:
            pass
    if not success:
        code = int(outcome.get("exit-code") or 1)
        exc = Cancelled(error) if code == 130 else HybridosError(error, hint=outcome.get("hint") or None)
        exc.exit_code = code
        raise exc
    return bool(outcome.get("unchanged"))


def _variant(sig, value):
    from dbus_fast import Variant

    return Variant(sig, value)


def _download_text(body) -> str:
    from hybridos.util.progress import human_bytes

    (_start, elapsed), _out, _meta, _delta, (fetched, requested), (nbytes, rate) = body
    parts = ["Receiving objects:", f"{fetched}/{requested}" if requested else str(fetched)]
    if nbytes:
        parts.append(f"{human_bytes(nbytes)} ({human_bytes(rate)}/s)")
    return " ".join(parts)

"""Peer-to-peer D-Bus connections (no bus daemon), as GDBusServer and rpm-ostree's transactions use them.

dbus-fast speaks D-Bus to a bus daemon only; here it gets the two missing halves: a server that accepts a
Unix socket, runs the server side of the SASL EXTERNAL handshake (the claimed uid must be the socket peer's),
and hands the connection to a ``MessageBus`` that skips ``Hello``; and a client that connects without ``Hello``.
Signals without a destination go to the one peer, which is how a transaction's signals reach its client.
"""

import asyncio
import contextlib
import os
import socket
import struct
import uuid

from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus
from dbus_fast.aio.message_bus import _MessageWriter, build_message_reader

_MAX_LINE = 16384


class PeerBus(MessageBus):
    """A ``MessageBus`` over an already connected and authenticated socket (no bus daemon, no ``Hello``)."""

    def __init__(self, sock: socket.socket, *, negotiate_unix_fd: bool = False):
        super().__init__("unix:path=/nonexistent", negotiate_unix_fd=negotiate_unix_fd)
        self.peer_uid = _peer_uid(sock)
        sock.setblocking(False)
        self._sock = sock
        self._stream = sock.makefile("rwb")
        self._fd = sock.fileno()
        self._writer = _PeerWriter(self)
        self.unique_name = ":peer"
        self._loop.add_reader(self._fd, build_message_reader(self._sock, self._process_message, self._finalize,
                                                             negotiate_unix_fd))
        self.add_message_handler(_bus_methods)

    @property
    def closed(self) -> bool:
        return self._disconnected


#: the name a peer connection's messages come from: GDBus clients that treat the peer as a message bus
#: (``gdbus monitor --address``) subscribe to signals from the owner of their ``--dest`` and match on it
PEER_NAME = ":1.0"


def with_sender(data: bytearray, sender: str = PEER_NAME) -> bytearray:
    """A marshalled message with a SENDER header field added (dbus-fast never writes one)."""
    if data[0:1] != b"l":
        return data
    fields_len = int.from_bytes(data[12:16], "little")
    end = 16 + fields_len
    pad = (-end) % 8
    name = sender.encode()
    field = bytes([7, 1]) + b"s\0" + len(name).to_bytes(4, "little") + name + b"\0"
    new_fields = bytes(data[16:end]) + b"\0" * pad + field
    body_start = end + ((-end) % 8)
    header = bytes(data[:12]) + len(new_fields).to_bytes(4, "little") + new_fields
    header += b"\0" * ((-len(header)) % 8)
    return bytearray(header + bytes(data[body_start:]))


class _PeerWriter(_MessageWriter):
    def buffer_message(self, msg, future=None) -> None:
        unix_fds = msg.unix_fds
        self.messages.append((with_sender(msg._marshall(self.negotiate_unix_fd)),
                              list(unix_fds) if unix_fds else None, future))


def _bus_methods(msg: Message):
    """Answer the bus daemon's own methods a message-bus client sends first (``gdbus call --address`` sends
    ``Hello`` and ``AddMatch``), so such clients work on a peer connection too."""
    if msg.message_type != MessageType.METHOD_CALL or msg.destination != "org.freedesktop.DBus":
        return None
    if msg.member == "Hello":
        return Message.new_method_return(msg, "s", [":1.1"])
    if msg.member in ("AddMatch", "RemoveMatch"):
        return Message.new_method_return(msg)
    if msg.member == "GetNameOwner":
        return Message.new_method_return(msg, "s", [PEER_NAME])
    if msg.member == "NameHasOwner":
        return Message.new_method_return(msg, "b", [True])
    return Message.new_error(msg, "org.freedesktop.DBus.Error.UnknownMethod",
                             f"no bus daemon on a peer connection ({msg.member})")


def _peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


async def _readline(loop, sock: socket.socket, buf: bytearray) -> bytes:
    # one byte at a time: a client may send its first message right behind BEGIN, and those bytes belong
    # to the message reader, not to us
    while not buf.endswith(b"\r\n"):
        chunk = await loop.sock_recv(sock, 1)
        if not chunk:
            raise ConnectionError("peer closed the connection during authentication")
        buf += chunk
        if len(buf) > _MAX_LINE:
            raise ConnectionError("authentication line too long")
    line, _, rest = bytes(buf).partition(b"\r\n")
    buf[:] = rest
    return line


async def server_handshake(sock: socket.socket, guid: str) -> bool:
    """The server side of SASL: EXTERNAL only, the uid must be the socket peer's; True when it may go on.

    Returns whether the client negotiated Unix fd passing. Raises ``ConnectionError`` on a refused peer."""
    loop = asyncio.get_running_loop()
    uid = _peer_uid(sock)
    buf = bytearray()
    first = await loop.sock_recv(sock, 1)
    if first != b"\0":
        raise ConnectionError("missing credentials byte")
    unix_fd = False
    authenticated = False
    while True:
        line = await _readline(loop, sock, buf)
        words = line.split()
        if not words:
            await loop.sock_sendall(sock, b"ERROR\r\n")
            continue
        cmd = words[0]
        if cmd == b"AUTH":
            if len(words) >= 2 and words[1] == b"EXTERNAL":
                if len(words) == 2:  # the identity follows in a DATA line
                    await loop.sock_sendall(sock, b"DATA\r\n")
                    line = await _readline(loop, sock, buf)
                    parts = line.split()
                    claimed = parts[1] if len(parts) > 1 else b""
                else:
                    claimed = words[2]
                try:
                    ok = claimed == b"" or int(bytes.fromhex(claimed.decode()).decode()) == uid
                except ValueError:
                    ok = False
                if ok:
                    authenticated = True
                    await loop.sock_sendall(sock, f"OK {guid}\r\n".encode())
                else:
                    await loop.sock_sendall(sock, b"REJECTED EXTERNAL\r\n")
            else:
                await loop.sock_sendall(sock, b"REJECTED EXTERNAL\r\n")
        elif cmd == b"NEGOTIATE_UNIX_FD" and authenticated:
            unix_fd = True
            await loop.sock_sendall(sock, b"AGREE_UNIX_FD\r\n")
        elif cmd == b"BEGIN" and authenticated:
            if buf:
                raise ConnectionError("data after BEGIN before the first message is not supported")
            return unix_fd
        elif cmd == b"CANCEL":
            await loop.sock_sendall(sock, b"REJECTED EXTERNAL\r\n")
        else:
            await loop.sock_sendall(sock, b"ERROR\r\n")


class PeerServer:
    """Listens on a Unix socket path; each authenticated connection becomes a ``PeerBus`` given to ``on_bus``."""

    def __init__(self, path: str, on_bus, *, mode: int = 0o666):
        self.path = path
        self.on_bus = on_bus
        self.mode = mode
        self.guid = uuid.uuid4().hex
        self.buses: list[PeerBus] = []
        self._sock: socket.socket | None = None
        self._task: asyncio.Task | None = None

    @property
    def address(self) -> str:
        return f"unix:path={self.path}"

    def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        sock.bind(self.path)
        os.chmod(self.path, self.mode)
        sock.listen(16)
        sock.setblocking(False)
        self._sock = sock
        self._task = asyncio.get_running_loop().create_task(self._accept_loop())

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            conn, _ = await loop.sock_accept(self._sock)
            loop.create_task(self._serve(conn))

    async def _serve(self, conn: socket.socket) -> None:
        try:
            conn.setblocking(False)
            unix_fd = await asyncio.wait_for(server_handshake(conn, self.guid), 30)
        except (TimeoutError, ConnectionError, OSError):
            conn.close()
            return
        bus = PeerBus(conn, negotiate_unix_fd=unix_fd)
        self.buses.append(bus)
        self.on_bus(bus)

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        for bus in self.buses:
            with contextlib.suppress(Exception):
                bus.disconnect()
        self.buses.clear()


async def connect_peer(address: str) -> MessageBus:
    """A client connection to a peer-to-peer D-Bus server (``unix:path=...``): EXTERNAL auth, no ``Hello``."""
    if not address.startswith("unix:path="):
        raise ValueError(f"unsupported peer address {address!r}")
    path = address[len("unix:path="):].split(",")[0]
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    sock.setblocking(False)
    await loop.sock_connect(sock, path)
    uid = str(os.getuid()).encode().hex()
    await loop.sock_sendall(sock, b"\0" + f"AUTH EXTERNAL {uid}\r\n".encode())
    buf = bytearray()
    line = await _readline(loop, sock, buf)
    if not line.startswith(b"OK"):
        sock.close()
        raise ConnectionError(f"the transaction refused authentication: {line.decode(errors='replace')}")
    await loop.sock_sendall(sock, b"BEGIN\r\n")
    return PeerBus(sock)

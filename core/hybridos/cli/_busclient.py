"""A minimal blocking D-Bus client for the CLI's quick reads (``status`` through hybridosd).

``status`` is a few method calls; dbus-fast with asyncio costs more to import than the whole status takes, so
this speaks the wire protocol directly: SASL EXTERNAL, ``Hello``, method calls with string arguments, and a
reader for any reply (D-Bus marshalling, little-endian). Transactions use dbus-fast (``_client``).
"""

from __future__ import annotations

import os
import socket
import struct

_FIXED = {"y": (1, "B"), "b": (4, "I"), "n": (2, "h"), "q": (2, "H"), "i": (4, "i"), "u": (4, "I"),
          "x": (8, "q"), "t": (8, "Q"), "d": (8, "d"), "h": (4, "I")}


class BusError(Exception):
    def __init__(self, name: str, message: str):
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message


def _pad(buf: bytearray, align: int) -> None:
    buf.extend(b"\0" * (-len(buf) % align))


def _string(buf: bytearray, s: str, sig: bool = False) -> None:
    data = s.encode()
    if sig:
        buf.append(len(data))
    else:
        _pad(buf, 4)
        buf.extend(struct.pack("<I", len(data)))
    buf.extend(data + b"\0")


def _split_types(sig: str) -> list[str]:
    out, i = [], 0
    while i < len(sig):
        j = _end_of_type(sig, i)
        out.append(sig[i:j])
        i = j
    return out


def _end_of_type(sig: str, i: int) -> int:
    c = sig[i]
    if c == "a":
        return _end_of_type(sig, i + 1)
    if c in "({":
        depth, j = 0, i
        while True:
            if sig[j] in "({":
                depth += 1
            elif sig[j] in ")}":
                depth -= 1
                if depth == 0:
                    return j + 1
            j += 1
    return i + 1


def _alignment(t: str) -> int:
    c = t[0]
    if c in _FIXED:
        return _FIXED[c][0]
    return {"s": 4, "o": 4, "a": 4, "(": 8, "{": 8, "g": 1, "v": 1}[c]


class _Reader:
    def __init__(self, data: bytes, pos: int = 0):
        self.data = data
        self.pos = pos

    def align(self, n: int) -> None:
        self.pos += -self.pos % n

    def read(self, t: str):
        c = t[0]
        if c in _FIXED:
            size, fmt = _FIXED[c]
            self.align(size)
            (v,) = struct.unpack_from("<" + fmt, self.data, self.pos)
            self.pos += size
            return bool(v) if c == "b" else v
        if c in "so":
            self.align(4)
            (n,) = struct.unpack_from("<I", self.data, self.pos)
            s = self.data[self.pos + 4:self.pos + 4 + n].decode()
            self.pos += 4 + n + 1
            return s
        if c == "g":
            n = self.data[self.pos]
            s = self.data[self.pos + 1:self.pos + 1 + n].decode()
            self.pos += 1 + n + 1
            return s
        if c == "v":
            sig = self.read("g")
            return self.read(sig)
        if c == "a":
            self.align(4)
            (n,) = struct.unpack_from("<I", self.data, self.pos)
            self.pos += 4
            elem = t[1:]
            self.align(_alignment(elem))
            end = self.pos + n
            if elem[0] == "{":
                out = {}
                while self.pos < end:
                    k, v = self.read(elem)
                    out[k] = v
                return out
            items = []
            while self.pos < end:
                items.append(self.read(elem))
            return items
        if c in "({":
            self.align(8)
            return [self.read(x) for x in _split_types(t[1:-1])]
        raise ValueError(f"unsupported D-Bus type {t!r}")


class BlockingBus:
    """One connection to a bus daemon (``unix:path=`` addresses)."""

    def __init__(self, address: str, timeout: float = 30.0):
        path = None
        for part in address.split(";"):
            if part.startswith("unix:"):
                opts = dict(kv.split("=", 1) for kv in part[5:].split(",") if "=" in kv)
                path = opts.get("path") or ("\0" + opts["abstract"] if "abstract" in opts else None)
                if path:
                    break
        if not path:
            raise OSError(f"unsupported bus address {address!r}")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.serial = 0
        self._buf = b""
        uid = str(os.getuid()).encode().hex()
        self.sock.sendall(b"\0AUTH EXTERNAL " + uid.encode() + b"\r\n")
        line = self._line()
        if not line.startswith(b"OK"):
            raise OSError(f"bus refused authentication: {line!r}")
        self.sock.sendall(b"BEGIN\r\n")
        self.call("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "Hello")

    def _line(self) -> bytes:
        while b"\r\n" not in self._buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise OSError("bus closed the connection")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\r\n")
        return line

    def _recv(self, n: int) -> bytes:
        while len(self._buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise OSError("bus closed the connection")
            self._buf += chunk
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def call(self, destination: str, path: str, interface: str, member: str, signature: str = "",
             args: tuple = ()):
        """Call a method with string arguments; return the reply's values (raises BusError on an error)."""
        body = bytearray()
        for a in args:
            _string(body, a)
        self.serial += 1
        fields = bytearray()
        for code, sig, value in ((1, "o", path), (2, "s", interface), (3, "s", member), (6, "s", destination),
                                 (8, "g", signature)):
            if code == 8 and not value:
                continue
            _pad(fields, 8)
            fields.append(code)
            _string(fields, sig, sig=True)
            _string(fields, value, sig=(sig == "g"))
        head = bytearray(struct.pack("<cBBBII", b"l", 1, 0, 1, len(body), self.serial))
        head.extend(struct.pack("<I", len(fields)))
        head.extend(fields)
        _pad(head, 8)
        self.sock.sendall(bytes(head) + bytes(body))
        while True:
            fixed = self._recv(16)
            if fixed[0:1] != b"l":
                raise OSError("big-endian D-Bus messages are not supported")
            mtype = fixed[1]
            body_len, _serial, fields_len = struct.unpack_from("<III", fixed, 4)
            rest = self._recv(fields_len + (-(16 + fields_len) % 8) + body_len)
            msg = fixed + rest
            r = _Reader(msg, 12)
            hdr = {code: value for code, value in r.read("a(yv)")}
            r.align(8)
            if mtype not in (2, 3) or hdr.get(5) != self.serial:
                continue  # signals, or replies to something else
            sig = hdr.get(8, "")
            values = [r.read(t) for t in _split_types(sig)]
            if mtype == 3:
                raise BusError(hdr.get(4, "?"), values[0] if values else "")
            return values

    def close(self) -> None:
        self.sock.close()

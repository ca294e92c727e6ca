"""Registry access through skopeo: its image proxy (manifests, configs and blobs streamed over pipes, as
ostree-ext fetches them) and ``skopeo copy`` for pushing an OCI layout elsewhere."""

from __future__ import annotations

import array
import io
import json
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hybridos.errors import FetchError, NotFoundError
from hybridos.util.run import which

AUTH_FILES = ("run/ostree/auth.json", "etc/ostree/auth.json")
_MAX_REPLY = 1 << 20


def _skopeo() -> str:
    path = which("skopeo")
    if path is None:
        raise NotFoundError("container images need skopeo, which is not installed (Debian package skopeo)")
    return path


def _global_args() -> list[str]:
    """skopeo's global options: the registries configuration named by CONTAINERS_REGISTRIES_CONF (which newer
    containers/image versions read themselves; Debian's skopeo 1.9 needs the option)."""
    conf = os.environ.get("CONTAINERS_REGISTRIES_CONF")
    return ["--registries-conf", conf] if conf else []


def auth_file(root: str | os.PathLike = "/") -> str | None:
    """ostree-ext's credentials: /run/ostree/auth.json, then /etc/ostree/auth.json (under ``root``)."""
    for rel in AUTH_FILES:
        p = Path(root) / rel
        if p.is_file():
            return str(p)
    return None


def _one_line(text: str) -> str:
    lines = [x.strip() for x in text.strip().splitlines() if x.strip()]
    msg = lines[-1] if lines else "no error message"
    return "".join(c if c.isprintable() else "?" for c in msg)[:500]


class ImageProxy:
    """A running ``skopeo experimental-image-proxy``: one request per SEQPACKET message, data over pipes."""

    def __init__(self, *, authfile: str | None = None):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        argv = [_skopeo(), *_global_args(), "experimental-image-proxy", "--sockfd", str(theirs.fileno())]
        if authfile:
            argv += ["--authfile", authfile]
        self._sock = ours
        try:
            self._proc = subprocess.Popen(argv, pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        finally:
            theirs.close()
        self.protocol = self._call("Initialize")[0]

    def _call(self, method: str, *args) -> tuple[object, int | None, int | None]:
        """(value, pipe fd or None, pipe id or None) of one request."""
        self._sock.sendmsg([json.dumps({"method": method, "args": list(args)}).encode()])
        fds = array.array("i")
        try:
            msg, anc, _flags, _ = self._sock.recvmsg(_MAX_REPLY, socket.CMSG_SPACE(4 * fds.itemsize))
        except OSError as exc:
            raise FetchError(f"skopeo image proxy failed: {exc}") from None
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
        if not msg:
            err = self._proc.stderr.read().decode(errors="replace") if self._proc.poll() is not None else ""
            raise FetchError(f"skopeo image proxy exited: {_one_line(err)}")
        try:
            reply = json.loads(msg)
        except ValueError:
            raise FetchError("skopeo image proxy sent a malformed reply") from None
        if not reply.get("success"):
            for fd in fds:
                os.close(fd)
            raise FetchError(_one_line(str(reply.get("error") or f"{method} failed")))
        fd = fds[0] if fds else None
        for extra in fds[1:]:
            os.close(extra)
        pipeid = reply.get("pipeid") or None
        return reply.get("value"), fd, pipeid

    def _read_pipe(self, fd: int, pipeid: int | None, limit: int) -> bytes:
        """All of a pipe of unknown length: skopeo closes its end only while FinishPipe runs, so the pipe
        is drained in a thread while FinishPipe is called."""
        parts: list[bytes] = []
        failure: list[BaseException] = []

        def drain() -> None:
            total = 0
            try:
                with os.fdopen(fd, "rb") as f:
                    while chunk := f.read(1 << 16):
                        total += len(chunk)
                        if total <= limit:
                            parts.append(chunk)
            except OSError as exc:  # pragma: no cover - the pipe breaks only when skopeo dies
                failure.append(exc)
            if total > limit:
                failure.append(FetchError(f"image metadata larger than {limit} bytes"))

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        try:
            if pipeid is not None:
                self._call("FinishPipe", pipeid)
        finally:
            reader.join()
        if failure:
            raise failure[0] if isinstance(failure[0], FetchError) else FetchError(str(failure[0]))
        return b"".join(parts)

    def open_image(self, ref: str) -> int:
        return int(self._call("OpenImage", ref)[0])

    def manifest(self, image: int) -> tuple[str, bytes]:
        """(manifest digest, manifest bytes); a manifest list is resolved to this machine's architecture."""
        value, fd, pipeid = self._call("GetManifest", image)
        return str(value), self._read_pipe(fd, pipeid, 4 << 20)

    def config(self, image: int) -> bytes:
        try:
            _, fd, pipeid = self._call("GetFullConfig", image)
        except FetchError as exc:
            if "unknown method" not in str(exc).lower():
                raise
            _, fd, pipeid = self._call("GetConfig", image)
        return self._read_pipe(fd, pipeid, 16 << 20)

    @contextmanager
    def blob(self, image: int, digest: str, size: int) -> Iterator:
        """A readable stream of exactly ``size`` bytes of a blob; skopeo checks its digest, which FinishPipe
        reports once the stream has been read."""
        _, fd, pipeid = self._call("GetBlob", image, digest, size)
        f = _Exact(os.fdopen(fd, "rb"), size)
        try:
            yield f
            f.drain()
        finally:
            f.close()
        if pipeid is not None:
            self._call("FinishPipe", pipeid)

    def close_image(self, image: int) -> None:
        self._call("CloseImage", image)

    def close(self) -> None:
        try:
            self._call("Shutdown")
        except (FetchError, OSError):
            pass
        self._sock.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc.stderr.close()

    def __enter__(self) -> ImageProxy:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Exact(io.RawIOBase):
    """At most ``size`` bytes of a pipe, then end of file (skopeo keeps the pipe open until FinishPipe)."""

    def __init__(self, f, size: int):
        self._f = f
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        if self.left <= 0:
            return 0
        data = self._f.read(min(len(b), self.left))
        if not data:
            raise FetchError(f"the blob ended {self.left} bytes early")
        n = len(data)
        b[:n] = data
        self.left -= n
        return n

    def drain(self) -> None:
        while self.read(1 << 16):
            pass

    def close(self) -> None:
        self._f.close()
        super().close()


def copy_image(src: str, dest: str, *, authfile: str | None = None) -> None:
    """``skopeo copy SRC DEST`` (registry TLS and credentials from the containers configuration)."""
    argv = [_skopeo(), *_global_args(), "copy", "--quiet"]
    if authfile:
        argv += ["--authfile", authfile]
    proc = subprocess.run([*argv, src, dest], capture_output=True, text=True)
    if proc.returncode != 0:
        raise FetchError(f"skopeo copy to {dest} failed: {_one_line(proc.stderr)}")

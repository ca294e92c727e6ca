"""A real HTTP server on 127.0.0.1 for tests: serves a directory, supports Range, can inject faults."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import posixpath
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit


@dataclass
class Faults:
    """Fault injection, changeable while the server runs.

    ``drop_after``: path suffix -> bytes to send before closing the connection (once per path unless
    ``drop_always``); ``status``: path suffix -> HTTP status to answer instead of the file;
    ``tamper``: path suffix -> function that changes the body; ``requests_per_connection``: close each
    connection after that many answers, without announcing it (a keep-alive limit); ``chunked``: send
    bodies with ``Transfer-Encoding: chunked`` instead of a Content-Length; ``delay``: path suffix -> seconds to
    wait before answering; ``drip``: path suffix -> (bytes, seconds): send the body that many bytes at a time
    with that pause between (a slow-drip server); ``endless``: path suffix -> a body start, after which the
    server sends filler (spaces) without end and without a Content-Length, until the client gives up
    (``endless_sent`` counts what each path was sent).
    """

    drop_after: dict[str, int] = field(default_factory=dict)
    drop_always: bool = False
    status: dict[str, int] = field(default_factory=dict)
    tamper: dict[str, Callable[[bytes], bytes]] = field(default_factory=dict)
    dropped: set[str] = field(default_factory=set)
    requests_per_connection: int | None = None
    delay: dict[str, float] = field(default_factory=dict)
    chunked: bool = False
    drip: dict[str, tuple[int, float]] = field(default_factory=dict)
    endless: dict[str, bytes] = field(default_factory=dict)
    endless_sent: dict[str, int] = field(default_factory=dict)


def _match(table: dict, path: str):
    for suffix, value in table.items():
        if path.endswith(suffix):
            return value
    return None


class StaticServer:
    """``with StaticServer(root) as srv: srv.url`` -> "http://127.0.0.1:PORT"."""

    def __init__(self, root: str | os.PathLike, tls: tuple[Path, Path] | None = None):
        self.root = Path(root)
        self.tls = tls
        self.faults = Faults()
        self.requests: list[tuple[str, str, int]] = []   # (path, range header or "", status)
        self.connections = 0   # TCP connections accepted
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else every keep-alive response waits ~40 ms for a delayed ACK

            def log_message(self, *args):  # quiet
                pass

            def setup(self):
                super().setup()
                with server._lock:
                    server.connections += 1

            def _log(self, status: int):
                with server._lock:
                    server.requests.append((self.path, self.headers.get("Range", ""), status))

            def _send_status(self, status: int):
                self._log(status)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _send_endless(self, path: str, start: bytes, head: bool):
                self._log(200)
                self.send_response(200)
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                if head:
                    return
                filler = b" " * (1 << 16)
                sent = 0
                try:
                    self.wfile.write(start)
                    sent = len(start)
                    while sent < (256 << 20):   # a safety stop for the test machine, far above the limits tested
                        self.wfile.write(filler)
                        sent += len(filler)
                        server.faults.endless_sent[path] = sent
                except OSError:   # the client gave up
                    pass
                server.faults.endless_sent[path] = sent

            def do_HEAD(self):
                self.do_GET(head=True)

            def do_GET(self, head: bool = False):
                path = unquote(urlsplit(self.path).path)
                rel = posixpath.normpath(path).lstrip("/")
                if rel.startswith(".."):
                    return self._send_status(403)
                pause = _match(server.faults.delay, path)
                if pause:
                    time.sleep(pause)
                forced = _match(server.faults.status, path)
                if forced:
                    return self._send_status(forced)
                endless = _match(server.faults.endless, path)
                if endless is not None:
                    return self._send_endless(path, endless, head)
                fs = server.root / rel
                if not fs.is_file():
                    return self._send_status(404)
                body = fs.read_bytes()
                tamper = _match(server.faults.tamper, path)
                if tamper:
                    body = tamper(body)
                start, status = 0, 200
                rng = self.headers.get("Range", "")
                if rng.startswith("bytes=") and rng.endswith("-"):
                    start = int(rng[6:-1])
                    if start >= len(body):
                        return self._send_status(416)
                    status = 206
                self._log(status)
                self.send_response(status)
                chunked = server.faults.chunked and not head
                if chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                else:
                    self.send_header("Content-Length", str(len(body) - start))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                if head:
                    return
                drop = _match(server.faults.drop_after, path)
                if drop is not None and (server.faults.drop_always or path not in server.faults.dropped):
                    server.faults.dropped.add(path)
                    self.wfile.write(body[start:start + drop])
                    self.wfile.flush()
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(2)
                    return
                if chunked:
                    data = body[start:]
                    for i in range(0, len(data), 1000):
                        piece = data[i:i + 1000]
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                    self.wfile.write(b"0\r\n\r\n")
                elif (drip := _match(server.faults.drip, path)) is not None:
                    step, pause = drip
                    for i in range(start, len(body), step):
                        try:
                            self.wfile.write(body[i:i + step])
                            self.wfile.flush()
                        except OSError:   # the client gave up
                            return
                        time.sleep(pause)
                else:
                    self.wfile.write(body[start:])
                limit = server.faults.requests_per_connection
                self.answered = getattr(self, "answered", 0) + 1
                if limit is not None and self.answered >= limit:
                    self.wfile.flush()
                    self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        if tls is not None:   # (certificate, key) files: serve HTTPS
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> StaticServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@contextlib.contextmanager
def serve(root: str | os.PathLike, tls: tuple[Path, Path] | None = None) -> Iterator[StaticServer]:
    """Serve ``root``; over HTTPS with ``tls=(certificate, key)`` (see :func:`self_signed_cert`)."""
    with StaticServer(root, tls) as srv:
        yield srv


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, written to ``directory`` (cert.pem, key.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_pem = directory / "cert.pem"
    key_pem = directory / "key.pem"
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return cert_pem, key_pem

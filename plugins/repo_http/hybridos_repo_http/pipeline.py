"""Many small GETs on a few keep-alive connections with HTTP/1.1 pipelining, driven by one thread.

A pull asks for tens of thousands of small objects from one server. Keeping each in flight on its own thread
costs more in thread switches than the transfers themselves (millions of futex calls for 50,000 objects on
two cores); here one thread keeps ``connections`` sockets busy with up to ``depth`` requests each, written
back to back and answered in order (RFC 9112 section 9.3.2), and parses the responses as they stream in.

Only the plain case is handled here: ``http://`` or ``https://`` (given the TLS context) without a proxy,
``200`` or ``404``/``410`` answers with a ``Content-Length``. Everything else is handed to ``fallback(url)`` (the fetcher's ordinary read, which
follows redirects, retries with backoff and reports errors): other statuses for that one request; the whole
rest of the batch when the server answers without a length (chunked or close-delimited bodies). A connection
that breaks has its unanswered requests sent again on a new one (the one whose body was cut off halfway is
continued with a ``Range`` request by ``resume(url, partial)``); a ``200`` answer longer than ``large_over``
gives up its connection and goes to ``large(url)``, a download to a file; a request that failed ``retries`` times goes
to the fallback as well, which then gives the error its final form.
"""

from __future__ import annotations

import selectors
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from urllib.parse import urlsplit

from hybridos.errors import FetchError, HybridosError, NotFoundError
from hybridos.fetch import FetchOptions, SpeedGuard

RECV_SIZE = 1 << 18
MAX_HEADER = 1 << 16


class _Request:
    __slots__ = ("key", "url", "wire", "attempts")

    def __init__(self, key, url: str, wire: bytes):
        self.key = key
        self.url = url
        self.wire = wire
        self.attempts = 0


class _Spill(Exception):
    """A ``200`` answer too large to hold in memory: its request goes to ``large`` (a streaming download)."""

    def __init__(self, req: _Request):
        super().__init__(req.url)
        self.req = req


class _Unsupported(Exception):
    """A response this module does not frame (no Content-Length): the batch goes to the fallback."""


class _Connection:
    """One socket, its unsent request bytes, the requests awaiting answers (in order) and unparsed input."""

    def __init__(self, address: tuple[str, int], timeout: float, tls: ssl.SSLContext | None = None,
                 server_hostname: str | None = None):
        sock = socket.create_connection(address, timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is not None:   # the handshake (and certificate check) while still blocking, within the timeout
            try:
                sock = tls.wrap_socket(sock, server_hostname=server_hostname)
            except BaseException:
                sock.close()
                raise
        self.sock = sock
        self.sock.setblocking(False)
        self.out = bytearray()
        self.waiting: deque[_Request] = deque()
        self.buf = bytearray()
        self.open = True        # may take more requests (False after "Connection: close" or HTTP/1.0)
        self.last_io = time.monotonic()
        self.events = 0
        self.guard: SpeedGuard   # set by the reader that opens it

    def close(self) -> None:
        self.sock.close()


def _receive(sock: socket.socket) -> bytes:
    """What the socket has now; for TLS also what OpenSSL already decrypted and holds (``pending``), which
    the selector would not report again."""
    data = sock.recv(RECV_SIZE)
    if data and isinstance(sock, ssl.SSLSocket):
        more = [data]
        while sock.pending():
            try:
                chunk = sock.recv(RECV_SIZE)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                break
            if not chunk:
                break
            more.append(chunk)
        data = b"".join(more)
    return data


def _partial_body(conn: _Connection) -> bytes:
    """The body received so far of a ``200`` answer that was cut off (empty when there is none)."""
    if not conn.waiting:
        return b""
    try:
        head = _parse_head(conn.buf, conn.waiting[0].url)
    except (_Unsupported, FetchError):
        return b""
    if head is None or head[1] != 200:
        return b""
    return bytes(conn.buf[head[0]:head[0] + head[2]])


class PipelinedReader:
    """``read_batch`` for one ``http(s)://host:port`` origin (see the module docstring)."""

    def __init__(self, origin: str, *, fallback: Callable[[str], bytes], resume: Callable[[str, bytes], bytes],
                 user_agent: str, timeout: float, retries: int, connections: int = 2, depth: int = 16,
                 large: Callable[[str], object] | None = None, large_over: int = 0,
                 tls: ssl.SSLContext | None = None, options: FetchOptions | None = None):
        parts = urlsplit(origin)
        default_port = 443 if parts.scheme == "https" else 80
        self.origin = (parts.scheme, parts.hostname, parts.port or default_port)
        self.address = (parts.hostname or "", parts.port or default_port)
        self.tls = tls
        self.server_hostname = parts.hostname
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        self.host_header = host if parts.port in (None, default_port) else f"{host}:{parts.port}"
        self.fallback = fallback
        self.resume = resume
        self.large = large
        self.large_over = large_over
        self.user_agent = user_agent
        self.timeout = timeout
        self.options = options or FetchOptions(timeout=timeout, retries=retries)
        self.retries = retries
        self.connections = max(1, connections)
        self.depth = max(1, depth)

    def same_origin(self, url: str) -> bool:
        parts = urlsplit(url)
        return (parts.scheme, parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)) == self.origin

    def _wire(self, url: str) -> bytes:
        parts = urlsplit(url)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        return (f"GET {target} HTTP/1.1\r\nHost: {self.host_header}\r\nUser-Agent: {self.user_agent}\r\n"
                "Accept-Encoding: identity\r\n\r\n").encode("latin-1")

    def read_batch(self, items: Iterable[tuple[object, str]]) -> Iterator[tuple[object, bytes]]:
        source = iter(items)
        retry: deque[_Request] = deque()
        conns: list[_Connection] = []
        sel = selectors.DefaultSelector()
        fallback_rest = False

        def next_request() -> _Request | None:
            while True:
                if retry:
                    return retry.popleft()
                item = next(source, None)
                if item is None:
                    return None
                key, url = item
                if self.same_origin(url):
                    return _Request(key, url, self._wire(url))
                ready.append((key, self._fallback(_Request(key, url, b""))))   # another server: the ordinary path

        def drop(conn: _Connection, *, penalty: bool) -> None:
            """Close ``conn``; its unanswered requests go first in line again, except one whose body was
            cut off halfway: that one continues at once with a Range request."""
            sel.unregister(conn.sock)
            conn.close()
            conns.remove(conn)
            partial = _partial_body(conn)
            if partial:
                req = conn.waiting.popleft()
                ready.append((req.key, self._resume(req, partial)))
            for req in reversed(conn.waiting):
                if penalty:
                    req.attempts += 1
                retry.appendleft(req)
            conn.waiting.clear()

        ready: list[tuple[object, bytes]] = []
        try:
            while True:
                if not fallback_rest:
                    self._hand_out(conns, sel, retry, next_request, ready)
                yield from ready
                ready.clear()
                if fallback_rest:
                    break
                if not any(c.waiting for c in conns):
                    if retry:
                        continue   # no connection could be opened this round; attempts are counted
                    break
                # -- move bytes ---------------------------------------------------------------------------
                now = time.monotonic()
                for skey, mask in sel.select(min(self.timeout / 4, conns[0].guard.poll_interval())):
                    conn = skey.data
                    try:
                        if mask & selectors.EVENT_WRITE and conn.out:
                            sent = conn.sock.send(conn.out)
                            del conn.out[:sent]
                            conn.last_io = now
                        if mask & selectors.EVENT_READ:
                            data = _receive(conn.sock)
                            conn.last_io = now
                            conn.guard.update(len(data), now)
                            if not data:
                                # The server closed: whatever it had not answered is asked again elsewhere.
                                drop(conn, penalty=conn.open and bool(conn.waiting))
                                continue
                            conn.buf += data
                            self._parse(conn, ready)
                            if not conn.waiting and not conn.open:
                                drop(conn, penalty=False)
                                continue
                    except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                        pass   # nothing to read or write after all (TLS records arrive in pieces)
                    except _Spill as spill:
                        # Rather than hold it in memory, give up the connection (its other requests are asked
                        # again) and stream this body to a file.
                        conn.buf.clear()
                        drop(conn, penalty=False)
                        ready.append((spill.req.key, self._call(self.large, spill.req)))
                        continue
                    except _Unsupported:
                        drop(conn, penalty=False)
                        fallback_rest = True
                        break
                    except OSError:   # reset, refused, timed out...
                        drop(conn, penalty=True)
                        continue
                    self._arm(sel, conn)
                for conn in list(conns):   # silent too long: treat as broken
                    if conn.waiting and now - conn.last_io > self.timeout:
                        drop(conn, penalty=True)
                    elif conn.waiting:   # trickling too slowly or past the deadline: give up, as ostree does
                        conn.guard.update(0, now)
                    else:
                        conn.guard.restart(now)
            # -- what is left goes the ordinary way --------------------------------------------------------
            for conn in list(conns):
                drop(conn, penalty=False)
            while (req := next_request()) is not None:
                yield req.key, self._fallback(req)
            yield from ready
            ready.clear()
        finally:
            for conn in conns:
                conn.close()
            sel.close()

    def _hand_out(self, conns: list[_Connection], sel: selectors.BaseSelector, retry: deque[_Request],
                  next_request: Callable[[], _Request | None], ready: list) -> None:
        """Give every connection (opening up to ``connections``) as many requests as it may have waiting."""
        while True:
            for conn in conns:
                while conn.open and len(conn.waiting) < self.depth:
                    req = next_request()
                    if req is None:
                        break
                    if req.attempts > self.retries:
                        ready.append((req.key, self._fallback(req)))
                        continue
                    conn.waiting.append(req)
                    conn.out += req.wire
                self._arm(sel, conn)
            if len(conns) >= self.connections:
                return
            req = next_request()
            if req is None:
                return
            retry.appendleft(req)
            try:
                conn = _Connection(self.address, self.timeout, self.tls, self.server_hostname)
                conn.guard = SpeedGuard(self.options, self.host_header)
            except ssl.SSLError:   # a certificate or TLS failure: the ordinary path reports it
                retry.popleft()
                ready.append((req.key, self._fallback(req)))
                return
            except OSError:
                req.attempts += 1
                if req.attempts > self.retries:
                    retry.popleft()
                    ready.append((req.key, self._fallback(req)))
                else:
                    time.sleep(min(0.1 * req.attempts, 1.0))
                return
            conns.append(conn)
            sel.register(conn.sock, selectors.EVENT_READ, conn)
            conn.events = selectors.EVENT_READ

    def _resume(self, req: _Request, partial: bytes) -> bytes:
        return self._call(self.resume, req, partial)

    def _fallback(self, req: _Request) -> bytes:
        return self._call(self.fallback, req)

    @staticmethod
    def _call(fn: Callable, req: _Request, *args):
        """``fn(url, *args)``; an error it raises carries the request's key."""
        try:
            return fn(req.url, *args)
        except HybridosError as exc:
            exc.key = req.key
            raise

    @staticmethod
    def _arm(sel: selectors.BaseSelector, conn: _Connection) -> None:
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.out else 0)
        if events != conn.events:
            sel.modify(conn.sock, events, conn)
            conn.events = events

    def _parse(self, conn: _Connection, ready: list) -> None:
        """Take every complete response off ``conn.buf``."""
        buf = conn.buf
        while conn.waiting:
            head = _parse_head(buf, conn.waiting[0].url)
            if head is None:
                return
            end, status, length, close = head
            if 100 <= status < 200:   # interim answer: the real one follows
                del buf[:end]
                continue
            if status == 200 and self.large is not None and length > self.large_over:
                raise _Spill(conn.waiting.popleft())
            if len(buf) < end + length:
                return
            body = bytes(buf[end:end + length])
            del buf[:end + length]
            req = conn.waiting.popleft()
            if close:
                conn.open = False
            if status == 200:
                ready.append((req.key, body))
            elif status in (404, 410):
                exc = NotFoundError(f"{req.url}: not found (HTTP {status})")
                exc.key = req.key
                raise exc
            else:   # redirects, errors to retry or report: the ordinary path knows them all
                ready.append((req.key, self._fallback(req)))
            if close:
                # requests sent after this answer will not be answered on this connection
                return


def _parse_head(buf: bytearray, url: str) -> tuple[int, int, int, bool] | None:
    """``(end of head, status, body length, close)`` of the response at the start of ``buf``; None while
    incomplete. Raises _Unsupported for what this module does not frame."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        if len(buf) > MAX_HEADER:
            raise FetchError(f"{url}: response header too long")
        return None
    lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
    status_line = lines[0].split(" ", 2)
    if len(status_line) < 2 or not status_line[0].startswith("HTTP/1."):
        raise _Unsupported()
    try:
        status = int(status_line[1])
    except ValueError:
        raise _Unsupported() from None
    length = -1
    http10 = status_line[0] == "HTTP/1.0"
    close = http10
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            try:
                length = int(value.strip())
            except ValueError:
                raise _Unsupported() from None
        elif name == "transfer-encoding":
            raise _Unsupported()
        elif name == "connection":
            tokens = value.lower()
            if "close" in tokens:
                close = True
            elif "keep-alive" in tokens and http10:
                close = False
    if 100 <= status < 200 or status in (204, 304):
        length = 0
    if length < 0:
        raise _Unsupported()
    return end + 4, status, length, close

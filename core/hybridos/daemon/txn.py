"""One daemon transaction: a ``hybridos.operations`` request run in a worker thread, served to its clients on
a private peer-to-peer D-Bus server as rpm-ostree's ``Transaction`` interface.

Lifecycle (as rpm-ostreed): the method call creates it and returns the server's address; a client connects
and calls ``Start()``; the operation's steps become ``TaskBegin``/``TaskEnd`` (readable phrases), its messages
``Message``, its download counter ``DownloadProgress``/``PercentProgress``; the end is ``Finished``.
``Cancel()`` stops it at its next step before the commit point (the sysroot stays as it was); the caller's bus
name vanishing before ``Start()`` cancels it; a client connecting after the end gets ``Finished`` again.
"""

import asyncio
import itertools
import logging
import os
import threading
import time

from dbus_fast.service import PropertyAccess, ServiceInterface, dbus_property, method, signal

from hybridos.daemon import names
from hybridos.errors import Cancelled, HybridosError

_counter = itertools.count(1)
log = logging.getLogger("hybridosd")


class TransactionInterface(ServiceInterface):
    """``org.projectatomic.rpmostree1.Transaction`` at ``/`` on each peer connection."""

    def __init__(self, txn: "DaemonTransaction"):
        super().__init__(names.IFACE_TRANSACTION)
        self.txn = txn

    @dbus_property(access=PropertyAccess.READ)
    def Title(self) -> "s":
        return self.txn.title

    @dbus_property(access=PropertyAccess.READ)
    def InitiatingClientDescription(self) -> "s":
        return self.txn.client_description

    @method()
    def Cancel(self):
        self.txn.cancel()

    @method()
    def Start(self) -> "b":
        return self.txn.start()

    @signal()
    def Finished(self, success: bool, error_message: str) -> "bs":
        return [success, error_message]

    @signal()
    def Message(self, text: str) -> "s":
        return text

    @signal()
    def TaskBegin(self, text: str) -> "s":
        return text

    @signal()
    def TaskEnd(self, text: str) -> "s":
        return text

    @signal()
    def PercentProgress(self, text: str, percentage: int) -> "su":
        return [text, percentage]

    @signal()
    def DownloadProgress(self, time_data, outstanding, metadata, delta, content, transfer) -> (
            "(tt)(uu)(uuu)(uuut)(uu)(tt)"):
        return [time_data, outstanding, metadata, delta, content, transfer]

    @signal()
    def SignatureProgress(self, signature, commit: str) -> "avs":
        return [signature, commit]

    @signal()
    def ProgressEnd(self):
        return None


class OutcomeInterface(ServiceInterface):
    """``org.hybridos.Transaction1``: how the transaction ended, beyond success/error text, so the CLI exits
    with the same code through the daemon as in-process (77 for nothing to do, 2 for a usage error...)."""

    def __init__(self, txn: "DaemonTransaction"):
        super().__init__(names.IFACE_HYBRIDOS_TRANSACTION)
        self.txn = txn

    @dbus_property(access=PropertyAccess.READ)
    def Outcome(self) -> "a{sv}":
        return self.txn.outcome_dict()

    @signal()
    def Ended(self, outcome) -> "a{sv}":
        return outcome


class _Meter:
    """The download counter the operation asks for (``tx.meter``), turned into progress signals."""

    def __init__(self, txn: "DaemonTransaction", label: str):
        self.txn = txn
        self.label = label
        self.total_items = None
        self.total_bytes = None
        self.items = 0
        self.bytes = 0
        self.started = time.monotonic()
        self._last = 0.0
        self._lock = threading.Lock()

    def advance(self, items: int = 0, nbytes: int = 0) -> None:
        with self._lock:
            self.items += items
            self.bytes += nbytes
            now = time.monotonic()
            if now - self._last < 0.2:
                return
            self._last = now
            self.txn.download_progress(self, now)

    def set_label(self, label: str) -> None:
        self.label = label

    def done(self) -> None:
        if self.items or self.bytes:
            self.txn.download_progress(self, time.monotonic())
            self.txn.emit("ProgressEnd")

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.done()


class DaemonTransaction:
    """State of one transaction; ``key`` identifies an identical request (same method and parameters)."""

    def __init__(self, daemon, op, *, method: str, key, sender: str, os_path: str, client_description: str,
                 run_dir: str):
        self.daemon = daemon
        self.op = op
        self.method = method
        self.key = key
        self.sender = sender
        self.os_path = os_path
        self.client_description = client_description
        self.title = op.title
        self.loop = asyncio.get_running_loop()
        n = next(_counter)
        from hybridos.daemon.peer import PeerServer

        self.server = PeerServer(os.path.join(run_dir, f"transaction-{os.getpid()}-{n}.sock"), self._on_bus)
        self.iface = TransactionInterface(self)
        self.outcome_iface = OutcomeInterface(self)
        self.started = False
        self.finished = False
        self.success = False
        self.error_message = ""
        self.outcome_lines: tuple[str, ...] = ()
        self.unchanged = False
        self.exit_code = 0
        self.hint = ""
        self._tx = None
        self._cancel_requested = False
        self._close_handle = None
        self._vanished_at: float | None = None
        #: file descriptors passed with the request (local RPMs), closed at the end
        self.fds: list[int] = []

    @property
    def address(self) -> str:
        return self.server.address

    def open(self) -> None:
        self.server.start()

    def _on_bus(self, bus) -> None:
        bus.export("/", self.iface)
        bus.export("/", self.outcome_iface)

    # -- signals (always from the event loop's thread) --------------------------------------------------------

    #: signal -> (interface, D-Bus signature)
    SIGNALS = {"Finished": (names.IFACE_TRANSACTION, "bs"), "Message": (names.IFACE_TRANSACTION, "s"),
               "TaskBegin": (names.IFACE_TRANSACTION, "s"), "TaskEnd": (names.IFACE_TRANSACTION, "s"),
               "PercentProgress": (names.IFACE_TRANSACTION, "su"),
               "DownloadProgress": (names.IFACE_TRANSACTION, "(tt)(uu)(uuu)(uuut)(uu)(tt)"),
               "ProgressEnd": (names.IFACE_TRANSACTION, ""), "Ended": (names.IFACE_HYBRIDOS_TRANSACTION, "a{sv}")}

    def _send(self, name: str, args, buses=None) -> None:
        """Send a signal to every connected client; a client that went away is skipped, never fatal."""
        from dbus_fast import Message

        interface, signature = self.SIGNALS[name]
        for bus in list(buses if buses is not None else self.server.buses):
            if bus.closed:
                continue
            try:
                bus.send(Message.new_signal("/", interface, name, signature, list(args)))
            except Exception as exc:  # the peer vanished between the check and the write
                log.debug("signal %s to a closed client: %s", name, exc)

    def emit(self, name: str, *args) -> None:
        if threading.current_thread() is threading.main_thread():
            self._send(name, args)
        else:
            self.loop.call_soon_threadsafe(self._send, name, args)

    def download_progress(self, meter: _Meter, now: float) -> None:
        elapsed = max(now - meter.started, 1e-6)
        total = meter.total_items or 0
        outstanding = max(total - meter.items, 0)
        rate = int(meter.bytes / elapsed)
        self.emit("DownloadProgress", [int(meter.started), int(elapsed)], [outstanding, 0], [0, 0, 0],
                  [0, 0, 0, 0], [meter.items, total], [meter.bytes, rate])
        if total:
            self.emit("PercentProgress", meter.label, min(100, meter.items * 100 // total))

    def _on_event(self, event) -> None:
        from hybridos.operations.phrases import phrase

        if event.kind == "start":
            self.emit("TaskBegin", phrase(event.step))
        elif event.kind == "end":
            self.emit("TaskEnd", phrase(event.step))
        elif event.kind == "message":
            self.emit("Message", event.message)
        elif event.kind == "progress" and event.total:
            self.emit("PercentProgress", phrase(event.step), min(100, event.done * 100 // event.total))

    # -- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> bool:
        """``Start()``: True when this call started it; a finished transaction sends ``Finished`` again."""
        if self.finished:
            self.loop.call_soon(self._resend_finished)
            return False
        if self.started:
            return False
        self.started = True
        threading.Thread(target=self._run, name=f"txn-{self.method}", daemon=True).start()
        return True

    def cancel(self) -> None:
        self._cancel_requested = True
        if not self.started and not self.finished:
            self._finish(False, "", exc=Cancelled(f"{self.title} cancelled; the sysroot is unchanged"))
        elif self._tx is not None:
            self._tx.cancel()

    def _run(self) -> None:
        from hybridos.sysroot.transaction import Transaction

        try:
            with Transaction(self.daemon.sysroot_path, self.op.title, on_event=self._on_event,
                             make_meter=lambda label: _Meter(self, label), lock_timeout=None) as tx:
                self._tx = tx
                if self._cancel_requested:
                    tx.cancel()
                tx.check_cancelled()
                outcome = self.op.run(tx)
        except HybridosError as exc:
            self.loop.call_soon_threadsafe(self._finish, False, "", exc)
            return
        except Exception as exc:  # report, never kill the daemon
            err = HybridosError(f"internal error: {type(exc).__name__}: {exc}")
            err.exit_code = 70
            self.loop.call_soon_threadsafe(self._finish, False, "", err)
            return
        self.loop.call_soon_threadsafe(self._finish, True, outcome)

    def _finish(self, success: bool, outcome, exc: HybridosError | None = None) -> None:
        if self.finished:
            return
        self.finished = True
        self.success = success
        if exc is not None:
            log.info("transaction %s failed: %s", self.title, exc.message)
            self.error_message = exc.message
            self.exit_code = exc.exit_code
            self.hint = exc.hint or ""
        else:
            self.outcome_lines = tuple(outcome.lines)
            self.unchanged = outcome.unchanged
            for line in self.outcome_lines:
                self._send("Message", [line])
        self._send("Ended", [self.outcome_dict()])
        self._send("Finished", [success, self.error_message])
        self.daemon.transaction_finished(self)
        self._close_handle = self.loop.call_later(self.daemon.txn_linger, self.close)

    def _resend_finished(self) -> None:
        self._send("Ended", [self.outcome_dict()])
        self._send("Finished", [self.success, self.error_message])

    def outcome_dict(self) -> dict:
        from dbus_fast import Variant

        return {"finished": Variant("b", self.finished), "success": Variant("b", self.success),
                "unchanged": Variant("b", self.unchanged), "exit-code": Variant("u", self.exit_code),
                "hint": Variant("s", self.hint), "error": Variant("s", self.error_message)}

    #: seconds a transaction whose caller left waits for a client to connect before it is cancelled
    VANISH_GRACE = 2.0

    def sender_vanished(self) -> None:
        """The initiating client left the bus. Before ``Start()`` that cancels the transaction, unless another
        client is connected to it (a progress monitor, as a shell replaying calls with gdbus has)."""
        self._vanished_at = time.monotonic()
        self.check_abandoned()

    def check_abandoned(self) -> None:
        """Cancel a transaction nobody can start any more (called on vanish and every second)."""
        if self._vanished_at is None or self.started or self.finished:
            return
        if any(not b.closed for b in self.server.buses):
            return
        if time.monotonic() - self._vanished_at >= self.VANISH_GRACE or self.server.buses:
            self.cancel()

    def close(self) -> None:
        if self._close_handle is not None:
            self._close_handle.cancel()
        self.server.close()

"""Host progress: readable task phrases on one redrawn terminal line; plain lines only through a pipe."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

from tests.sysroot.conftest import hyb


def _run_on_pty(*args: str) -> tuple[int, str]:
    """Run the CLI with stdout and stderr on a pseudo-terminal; return (exit code, everything it drew)."""
    main, sub = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "hybridos", *args], stdin=subprocess.DEVNULL, stdout=sub,
                            stderr=sub, close_fds=True)
    os.close(sub)
    out = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(main)
    return proc.wait(), out.decode(errors="replace")


def test_upgrade_on_a_terminal_draws_phrases_on_one_line(host):
    sr, remote, _ = host
    remote.publish("2.0")
    code, drawn = _run_on_pty("--sysroot", str(sr), "upgrade")
    assert code == 0, drawn
    # task phrases, not step names, each redrawn over the previous one
    assert "\r\x1b[KReceiving the new commit..." in drawn
    assert "\r\x1b[KWriting boot entries..." in drawn
    assert "⠿" not in drawn and "\npull\n" not in drawn
    # the line is cleared before the result is printed
    assert "\r\x1b[KDeployed " in drawn.replace("\r\n", "\n") or "\x1b[KDeployed " in drawn


def test_upgrade_through_a_pipe_prints_plain_lines(host):
    sr, remote, _ = host
    remote.publish("2.0")
    r = hyb(sr, "upgrade")
    assert "\x1b" not in r.stdout + r.stderr and "\r" not in r.stdout + r.stderr
    assert r.stderr == ""
    assert any(x.startswith("Deployed testos:origin:testos/stable: 1.0 -> 2.0") for x in r.stdout.splitlines())
    assert r.stdout.splitlines()[-1] == 'Run "systemctl reboot" to start a reboot'

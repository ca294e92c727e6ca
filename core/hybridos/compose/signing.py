"""``gpg-key``: an OpenPGP signature of the commit object, as ``ostree gpg-sign`` stores it (``ostree.gpgsigs``
in the commit's detached metadata). The secret key comes from the building user's GnuPG home
(``$GNUPGHOME`` or ~/.gnupg), as in rpm-ostree.
"""

from __future__ import annotations

import shutil
import subprocess

from hybridos.errors import ConfigError, HybridosError


def gpg_detach_sign(data: bytes, key_id: str) -> bytes:
    """A binary detached signature of ``data`` made with ``key_id``."""
    gpg = shutil.which("gpg")
    if gpg is None:
        raise ConfigError("gpg-key is set but gpg is not installed")
    proc = subprocess.run([gpg, "--batch", "--no-tty", "--local-user", key_id, "--detach-sign", "--output", "-"],
                          input=data, capture_output=True)
    if proc.returncode != 0 or not proc.stdout:
        msg = proc.stderr.decode(errors="replace").strip().splitlines()
        raise HybridosError(f"signing the commit with gpg key {key_id} failed: {msg[-1] if msg else 'no output'}")
    return proc.stdout

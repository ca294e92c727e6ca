"""Small file-system comparisons shared by the core."""

from __future__ import annotations

import os


def same_bytes(a: str | os.PathLike, b: str | os.PathLike, chunk: int = 1 << 20) -> bool:
    """Whether two regular files hold the same bytes (sizes first, then chunk by chunk)."""
    if os.path.getsize(a) != os.path.getsize(b):
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(chunk), fb.read(chunk)
            if x != y:
                return False
            if not x:
                return True

"""Small file reads and comparisons shared by the core and the bundled plugins."""

from __future__ import annotations

import hashlib
import os


def file_digest(path: str | os.PathLike, algo: str = "sha256") -> str:
    """Hex digest of a file's bytes with the hashlib algorithm ``algo``, read in chunks."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, algo).hexdigest()


def read_fd(fd: int, size: int) -> bytes:
    """The rest of an open file whose size fstat gave as ``size``: usually one read of ``size + 1`` (short,
    so the end is known without another call); a short read (over 2 GiB) or a file that grew is read to the
    end."""
    data = os.read(fd, size + 1)
    if len(data) == size or not data:
        return data
    chunks = [data]
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


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


def copy_fd(src: int, dst: int) -> int:
    """Copy the rest of ``src`` to ``dst`` (in-kernel where the filesystems allow); returns the bytes copied."""
    total = 0
    try:
        while n := os.copy_file_range(src, dst, 1 << 30):
            total += n
        return total
    except OSError:
        if total:
            raise
    while chunk := os.read(src, 1 << 20):
        view = memoryview(chunk)
        while view:
            view = view[os.write(dst, view):]
        total += len(chunk)
    return total

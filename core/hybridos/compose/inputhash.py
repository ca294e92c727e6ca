"""The compose input hash (``rpmostree.inputhash``): flattened treefile + external files + package set.

Two composes with the same input hash produce the same tree, so a compose whose hash equals the previous
commit's is skipped ("No apparent changes since previous commit").
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from hybridos.compose.treefile import Treefile
from hybridos.errors import ConfigError


def compute_input_hash(treefile_json: bytes, externals: Iterable[tuple[str, bytes]],
                       packages: Iterable[tuple[str, str]]) -> str:
    """sha256 hex over the canonical treefile JSON, ``(label, content)`` externals and ``(nevra, checksum)``
    packages. Order of externals and packages does not matter."""
    h = hashlib.sha256()
    h.update(b"treefile\0")
    h.update(treefile_json)
    for label, content in sorted(externals):
        h.update(b"\0external\0" + label.encode() + b"\0" + hashlib.sha256(content).digest())
    for nevra, checksum in sorted(packages):
        h.update(b"\0package\0" + nevra.encode() + b"\0" + checksum.encode())
    return h.hexdigest()


def read_externals(tf: Treefile) -> list[tuple[str, bytes]]:
    """The external files a treefile names, labelled by their role (I/O side of the hash)."""
    out = []
    try:
        if tf.postprocess_script is not None:
            out.append(("postprocess-script", tf.postprocess_script.read_bytes()))
        for i, af in enumerate(tf.add_files):
            out.append((f"add-files[{i}]:{af.dest}", af.source.read_bytes()))
    except OSError as exc:
        raise ConfigError(f"cannot read {exc.filename}: {exc.strerror}") from None
    return out


def treefile_input_hash(tf: Treefile, packages: Iterable[tuple[str, str]]) -> str:
    return compute_input_hash(tf.canonical_json(), read_externals(tf), packages)

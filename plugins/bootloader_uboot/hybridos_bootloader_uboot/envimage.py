"""U-Boot environment images as ``mkenvimage`` writes and ``fw_printenv``/``fw_setenv`` read them.

Layout: CRC32 (little endian) of the data area, [one flags byte for redundant environments], then the data
area: ``name=value\\0`` pairs, an empty string (a second NUL) ending the list, 0xFF padding to the full size.
"""

from __future__ import annotations

import struct
import zlib

from hybridos.errors import FormatError

DEFAULT_SIZE = 0x4000


def format_env_image(variables: dict[str, str], size: int = DEFAULT_SIZE, *, redundant: bool = False,
                     flags: int = 1) -> bytes:
    """The environment image holding ``variables`` in order (byte-identical to ``mkenvimage -s SIZE [-r]``)."""
    header = 5 if redundant else 4
    body = b""
    for name, value in variables.items():
        if not name or "=" in name or "\0" in name + value:
            raise FormatError(f"invalid U-Boot environment variable {name!r}")
        body += f"{name}={value}".encode() + b"\0"
    body += b"\0"
    if len(body) > size - header:
        raise FormatError(f"U-Boot environment does not fit in {size:#x} bytes ({len(body) + header} needed)")
    data = body + b"\xff" * (size - header - len(body))
    crc = struct.pack("<I", zlib.crc32(data))
    return crc + (bytes([flags]) if redundant else b"") + data


def parse_env_image(image: bytes, *, redundant: bool = False) -> dict[str, str]:
    """Variables of an environment image; a CRC mismatch is a FormatError (U-Boot would ignore the image)."""
    header = 5 if redundant else 4
    if len(image) <= header:
        raise FormatError("U-Boot environment image is too short")
    (crc,) = struct.unpack_from("<I", image)
    data = image[header:]
    if zlib.crc32(data) != crc:
        raise FormatError(f"U-Boot environment CRC mismatch (stored {crc:#010x}, computed {zlib.crc32(data):#010x})")
    out: dict[str, str] = {}
    for item in data.split(b"\0"):
        if not item:
            break
        name, sep, value = item.decode(errors="replace").partition("=")
        if sep:
            out[name] = value
    return out

"""U-Boot legacy script images (``mkimage -T script``): a 64-byte header, then the script payload.

Header (big endian): magic 0x27051956, header CRC32 (computed with this field zero), timestamp, data size,
load address, entry point, data CRC32, OS, architecture, type, compression, 32-byte name. The data of a script
image is a size table (the script length, then a 0 terminator, both u32) followed by the script.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from hybridos.arch import Architecture
from hybridos.errors import FormatError

MAGIC = 0x27051956
HEADER = struct.Struct(">IIIIIIIBBBB32s")
IH_OS_LINUX = 5
IH_TYPE_SCRIPT = 6
IH_COMP_NONE = 0
IH_ARCH = {Architecture.AARCH64: 22, Architecture.X86_64: 24, Architecture.PPC64LE: 7}


@dataclass(frozen=True)
class ImageHeader:
    magic: int
    header_crc: int
    time: int
    size: int
    load: int
    entry: int
    data_crc: int
    os: int
    arch: int
    type: int
    comp: int
    name: str


def make_script_image(script: str, name: str, arch: Architecture, timestamp: int) -> bytes:
    """The bytes ``mkimage -A ARCH -O linux -T script -C none -n NAME -d script`` writes at ``timestamp``."""
    raw_name = name.encode()
    if len(raw_name) > 32:
        raise FormatError(f"U-Boot image name {name!r} is longer than 32 bytes")
    payload = script.encode()
    data = struct.pack(">II", len(payload), 0) + payload
    fields = [MAGIC, 0, timestamp, len(data), 0, 0, zlib.crc32(data), IH_OS_LINUX, IH_ARCH[arch],
              IH_TYPE_SCRIPT, IH_COMP_NONE, raw_name]
    header = HEADER.pack(*fields)
    fields[1] = zlib.crc32(header)
    return HEADER.pack(*fields) + data


def parse_image_header(image: bytes) -> ImageHeader:
    if len(image) < HEADER.size:
        raise FormatError("U-Boot image is shorter than its 64-byte header")
    values = list(HEADER.unpack_from(image))
    values[-1] = values[-1].rstrip(b"\0").decode(errors="replace")
    return ImageHeader(*values)


def read_script_image(image: bytes) -> str:
    """The script of a legacy script image, after checking magic, header CRC and data CRC."""
    h = parse_image_header(image)
    if h.magic != MAGIC:
        raise FormatError(f"not a U-Boot legacy image (magic {h.magic:#010x})")
    zeroed = image[:4] + b"\0\0\0\0" + image[8:HEADER.size]
    if zlib.crc32(zeroed) != h.header_crc:
        raise FormatError("U-Boot image header CRC mismatch")
    data = image[HEADER.size:HEADER.size + h.size]
    if len(data) != h.size or zlib.crc32(data) != h.data_crc:
        raise FormatError("U-Boot image data CRC mismatch")
    if h.type != IH_TYPE_SCRIPT:
        raise FormatError(f"U-Boot image type {h.type} is not a script ({IH_TYPE_SCRIPT})")
    (length,) = struct.unpack_from(">I", data)
    return data[8:8 + length].decode(errors="replace")

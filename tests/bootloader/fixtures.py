"""Fixture boot files: kernels that look like the real thing to a format sniffer, per architecture."""

from __future__ import annotations

import struct

from hybridos.arch import Architecture


def bzimage(tag: bytes) -> bytes:
    """An x86_64 bzImage stand-in: MZ stub, boot flag 0x55AA at 0x1FE, setup header "HdrS" at 0x202."""
    data = bytearray(8192)
    data[0:2] = b"MZ"
    data[0x1FE:0x200] = b"\x55\xaa"
    data[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", data, 0x206, 0x020F)  # boot protocol version 2.15
    data[0x400:0x400 + len(tag)] = tag
    return bytes(data)


def arm64_image(tag: bytes) -> bytes:
    """An aarch64 ``Image`` stand-in: the 64-byte arm64 header with magic "ARM\\x64" at 0x38."""
    data = bytearray(16384)
    struct.pack_into("<IIQQQ", data, 0, 0x91005A4D, 0x14000000, 0x80000, len(data), 0xA)
    data[0x38:0x3C] = b"ARM\x64"
    data[0x40:0x40 + len(tag)] = tag
    return bytes(data)


def ppc64le_vmlinux(tag: bytes) -> bytes:
    """A ppc64le ELF ``vmlinux`` stand-in: ELF64, little endian, e_machine EM_PPC64 (21), ET_EXEC."""
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    header = ident + struct.pack("<HHIQQQIHHHHHH", 2, 21, 1, 0xC000000000000000, 64, 0, 2, 64, 56, 0, 64, 0, 0)
    return header + tag + bytes(8192 - len(header) - len(tag))


def dtb(model: str) -> bytes:
    """A flattened device tree header (magic 0xd00dfeed) with a model string as payload."""
    payload = model.encode() + b"\0"
    total = 40 + len(payload)
    return struct.pack(">IIIIIIIIII", 0xD00DFEED, total, 40, 40, 40, 17, 16, 0, len(payload), 0) + payload


def kernel_for(arch: Architecture, tag: bytes) -> bytes:
    return {
        Architecture.X86_64: bzimage,
        Architecture.AARCH64: arm64_image,
        Architecture.PPC64LE: ppc64le_vmlinux,
    }[arch](tag)

"""The tar side of ostree-ext's container format: object paths, writing object entries, reading them back.

A layer holds ``sysroot/ostree/repo/objects/XX/YYYY.<ext>`` entries (metadata objects as raw GVariant,
content as ``.file`` with its owner and mode in the tar header, xattrs as ``.file-xattrs`` objects linked
by ``.file-xattrs-link``), plus hardlinks at each checkout path so that a container runtime sees the tree.
"""

from __future__ import annotations

import hashlib
import stat
import tarfile
from typing import BinaryIO

from hybridos.ostree.objects import FileHeader, ObjectType, _xattrs_bytes

REPO_PREFIX = "sysroot/ostree/repo/"
OBJECTS_PREFIX = REPO_PREFIX + "objects/"
REPO_CONFIG = b"[core]\nrepo_version=1\nmode=bare-split-xattrs\n"
SKELETON_DIRS = ("sysroot", "sysroot/ostree", "sysroot/ostree/repo", "sysroot/ostree/repo/objects",
                 *(f"sysroot/ostree/repo/objects/{i:02x}" for i in range(256)),
                 "sysroot/ostree/repo/extensions", "sysroot/ostree/repo/refs", "sysroot/ostree/repo/refs/heads",
                 "sysroot/ostree/repo/refs/mirrors", "sysroot/ostree/repo/refs/remotes",
                 "sysroot/ostree/repo/state", "sysroot/ostree/repo/tmp", "sysroot/ostree/repo/tmp/cache")
XATTRS_EXT = "file-xattrs"
XATTRS_LINK_EXT = "file-xattrs-link"


def object_path(checksum: str, ext: str) -> str:
    return f"{OBJECTS_PREFIX}{checksum[:2]}/{checksum[2:]}.{ext}"


def serialize_xattrs(header: FileHeader) -> bytes:
    return _xattrs_bytes(header.xattrs)


class LayerTar:
    """Writes one layer's tar stream (deterministic: mtime 0, sorted input, PAX format)."""

    def __init__(self, fileobj):
        self.tar = tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.PAX_FORMAT)  # noqa: SIM115
        self._xattrs_written: set[str] = set()

    def _info(self, name: str, kind: bytes, uid: int = 0, gid: int = 0, mode: int = 0o755) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(name)
        ti.type = kind
        ti.uid, ti.gid, ti.mode, ti.mtime = uid, gid, mode & 0o7777, 0
        ti.uname = ti.gname = ""
        return ti

    def directory(self, name: str, uid: int = 0, gid: int = 0, mode: int = 0o755, xattrs=()) -> None:
        ti = self._info(name, tarfile.DIRTYPE, uid, gid, mode)
        _pax_xattrs(ti, xattrs)
        self.tar.addfile(ti)

    def skeleton(self) -> None:
        for d in SKELETON_DIRS:
            self.directory(d)

    def data(self, name: str, data: bytes, mode: int = 0o644) -> None:
        ti = self._info(name, tarfile.REGTYPE, mode=mode)
        ti.size = len(data)
        import io
        self.tar.addfile(ti, io.BytesIO(data))

    def metadata_object(self, checksum: str, otype: ObjectType, data: bytes) -> None:
        self.data(object_path(checksum, otype.extension), data)

    def content_object(self, checksum: str, header: FileHeader, stream: BinaryIO | None) -> str:
        """The ``.file`` entry (after its xattrs objects); returns the object's path in the layer."""
        if header.xattrs:
            blob = serialize_xattrs(header)
            xcsum = hashlib.sha256(blob).hexdigest()
            xpath = object_path(xcsum, XATTRS_EXT)
            if xcsum not in self._xattrs_written:
                self._xattrs_written.add(xcsum)
                self.data(xpath, blob)
            self.hardlink(object_path(checksum, XATTRS_LINK_EXT), xpath)
        path = object_path(checksum, "file")
        if header.is_symlink:
            ti = self._info(path, tarfile.SYMTYPE, header.uid, header.gid, header.mode)
            ti.linkname = header.symlink_target
            _pax_xattrs(ti, header.xattrs)
            self.tar.addfile(ti)
        else:
            ti = self._info(path, tarfile.REGTYPE, header.uid, header.gid, header.mode)
            ti.size = header.size
            _pax_xattrs(ti, header.xattrs)
            self.tar.addfile(ti, stream)
        return path

    def hardlink(self, name: str, target: str) -> None:
        ti = self._info(name, tarfile.LNKTYPE, mode=0o644)
        ti.linkname = target
        self.tar.addfile(ti)

    def close(self) -> None:
        self.tar.close()


def _pax_xattrs(ti: tarfile.TarInfo, xattrs) -> None:
    """Also carry xattrs as PAX SCHILY.xattr records, so generic tools (umoci, tar) apply them."""
    if xattrs:
        ti.pax_headers = {"SCHILY.xattr." + n[:-1].decode("utf-8", "surrogateescape"):
                          v.decode("utf-8", "surrogateescape") for n, v in xattrs}


def header_from_member(member: tarfile.TarInfo, xattrs) -> FileHeader:
    """The content object header that a ``.file`` tar entry describes."""
    if member.issym():
        return FileHeader(member.uid, member.gid, stat.S_IFLNK | (member.mode & 0o7777 or 0o777),
                          member.linkname, xattrs)
    return FileHeader(member.uid, member.gid, stat.S_IFREG | (member.mode & 0o7777), "", xattrs,
                      size=member.size)

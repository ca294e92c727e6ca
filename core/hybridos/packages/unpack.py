"""Unpack an RPM payload onto a tree, never writing outside it.

The header is authoritative for metadata (the cpio members carry no owner names): modes (setuid/setgid too),
owners resolved against the TARGET tree's passwd/group, mtimes, symlinks, hardlinks (only the last member of a
set carries data), device nodes, and file capabilities as the ``security.capability`` xattr. %ghost files are
skipped, %config files recorded (an existing, different %config(noreplace) file is kept and the new one written
as ``.rpmnew``).

Every path is resolved component by component inside the tree: ``..`` is refused, relative symlinks are followed
only while they stay inside the tree, absolute symlinks are never followed while writing. All paths of a package
are checked before its first byte is written, so a refused package leaves the tree untouched.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import stat
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from hybridos.errors import FormatError, PackageError
from hybridos.packages.header import DIGEST_ALGOS, FileEntry, FileFlag, RpmFileInfo, RpmHeader, Tag, read_rpm
from hybridos.packages.payload import COMPRESSORS, iter_cpio, open_decompressed, read_whole
from hybridos.util.files import file_digest, same_bytes
from hybridos.util.numbers import is_decimal

_MAX_LINKS = 40

# ---------------------------------------------------------------------------------------------- owners


def parse_id_file(text: str) -> dict[str, int]:
    """``name:x:id:...`` lines (passwd or group) -> {name: id}; the first entry of a name wins."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split(":")
        if len(parts) >= 3 and parts[0] and not parts[0].startswith(("#", "+", "-")) and is_decimal(parts[2]):
            out.setdefault(parts[0], int(parts[2]))
    return out


@dataclass(frozen=True)
class Owners:
    """User and group ids of a tree, as its own passwd and group files define them."""

    users: Mapping[str, int] = field(default_factory=dict)
    groups: Mapping[str, int] = field(default_factory=dict)

    def uid(self, name: str) -> int | None:
        return 0 if name == "root" else self.users.get(name)

    def gid(self, name: str) -> int | None:
        return 0 if name == "root" else self.groups.get(name)


_ID_FILE_DIRS = ("etc", "usr/etc", "usr/lib")   # usr/etc and usr/lib (nss-altfiles) in ostree-style trees


def load_owners(tree: str | os.PathLike) -> Owners:
    """Read the tree's passwd and group (never the host's): etc/, then usr/etc/, then usr/lib/."""
    users: dict[str, int] = {}
    groups: dict[str, int] = {}
    for d in _ID_FILE_DIRS:
        for name, table in (("passwd", users), ("group", groups)):
            text = _read_tree_file(Path(tree), f"{d}/{name}")
            for k, v in parse_id_file(text).items():
                table.setdefault(k, v)
    return Owners(users, groups)


def _read_tree_file(tree: Path, rel: str) -> str:
    """Read a small file of the tree without following any symlink."""
    fd = os.open(tree, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for comp in rel.split("/")[:-1]:
            try:
                nfd = os.open(comp, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except OSError:
                return ""
            os.close(fd)
            fd = nfd
        try:
            ffd = os.open(rel.split("/")[-1], os.O_RDONLY | os.O_NOFOLLOW, dir_fd=fd)
        except OSError:
            return ""
        with os.fdopen(ffd, "rb") as f:
            return f.read(16 << 20).decode("utf-8", "replace")
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------- capabilities

CAP_NAMES = (
    "chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill", "setgid", "setuid", "setpcap",
    "linux_immutable", "net_bind_service", "net_broadcast", "net_admin", "net_raw", "ipc_lock", "ipc_owner",
    "sys_module", "sys_rawio", "sys_chroot", "sys_ptrace", "sys_pacct", "sys_admin", "sys_boot", "sys_nice",
    "sys_resource", "sys_time", "sys_tty_config", "mknod", "lease", "audit_write", "audit_control", "setfcap",
    "mac_override", "mac_admin", "syslog", "wake_alarm", "block_suspend", "audit_read", "perfmon", "bpf",
    "checkpoint_restore",
)
VFS_CAP_REVISION_2 = 0x02000000
VFS_CAP_FLAGS_EFFECTIVE = 0x1


def caps_to_xattr(text: str) -> bytes:
    """Turn a capability text (``cap_net_raw,cap_net_admin=ep``, libcap syntax) into a security.capability value."""
    sets = {"e": 0, "i": 0, "p": 0}
    all_caps = (1 << len(CAP_NAMES)) - 1
    for clause in text.split():
        i = 0
        while i < len(clause) and clause[i] not in "=+-":
            i += 1
        names, rest = clause[:i], clause[i:]
        mask = 0
        for n in filter(None, names.split(",")):
            n = n.lower()
            if n == "all":
                mask |= all_caps
                continue
            n = n.removeprefix("cap_")
            if n in CAP_NAMES:
                mask |= 1 << CAP_NAMES.index(n)
            elif is_decimal(n, 2) and int(n) < 64:
                mask |= 1 << int(n)
            else:
                raise PackageError(f"unknown file capability {n!r} in {text!r}")
        if not rest:
            raise PackageError(f"file capability clause {clause!r} has no operator")
        if not names and rest[0] == "=":
            mask = all_caps
        while rest:
            op, rest = rest[0], rest[1:]
            j = 0
            while j < len(rest) and rest[j] not in "=+-":
                j += 1
            flags, rest = rest[:j], rest[j:]
            if op == "=":
                for s in sets:
                    sets[s] &= ~mask
            for fl in flags:
                if fl not in sets:
                    raise PackageError(f"bad capability flag {fl!r} in {text!r}")
                if op == "-":
                    sets[fl] &= ~mask
                else:
                    sets[fl] |= mask
    p, inh = sets["p"], sets["i"]
    magic = VFS_CAP_REVISION_2 | (VFS_CAP_FLAGS_EFFECTIVE if sets["e"] else 0)
    return struct.pack("<IIIII", magic, p & 0xFFFFFFFF, inh & 0xFFFFFFFF, p >> 32, inh >> 32)


# ---------------------------------------------------------------------------------------------- path resolution


class TreeResolver:
    """Resolve directory paths inside ``tree`` with chroot semantics, refusing every escape.

    ``overlay`` describes entries the package is about to create: {"/a/b": ("link", target) | ("dir",) | ("file",)}.
    ``known_dirs`` holds in-tree paths (tuples of components) known to be real directories, not symlinks; the
    layerer shares one set between the packages of a transaction and empties it whenever something else (a
    scriptlet, an erase) may have changed the tree.
    """

    def __init__(self, tree: Path, overlay: Mapping[str, tuple] | None = None,
                 known_dirs: set[tuple[str, ...]] | None = None):
        self.tree = tree
        self.overlay = overlay or {}
        self._cache: dict[tuple[str, ...], tuple[str, ...]] = {(): ()}
        self.known_dirs = known_dirs if known_dirs is not None else set()
        self._hosts: dict[tuple[str, ...], str] = {}

    def reset(self) -> None:
        """Forget resolved directories (after a dry run that created nothing)."""
        self._cache = {(): ()}

    def host(self, parts: Iterable[str]) -> str:
        return os.path.join(self.tree, *parts)

    def host_dir(self, real: tuple[str, ...]) -> str:
        """``host(real)``, remembered (the same few directories hold most files)."""
        h = self._hosts.get(real)
        if h is None:
            h = self._hosts[real] = os.path.join(self.tree, *real)
        return h

    def resolve_dir(self, parts: tuple[str, ...], what: str, *, create: bool) -> tuple[str, ...]:
        """The real (symlink-free) in-tree location of directory ``parts``."""
        return self._resolve(parts, what, create, 0)

    def _resolve(self, parts: tuple[str, ...], what: str, create: bool, depth: int) -> tuple[str, ...]:
        cached = self._cache.get(parts)
        if cached is not None:
            if create:
                self.ensure(cached)
            return cached
        parent = self._resolve(parts[:-1], what, create, depth)
        comp = parts[-1]
        real = parent + (comp,)
        if real in self.known_dirs:
            self._cache[parts] = real
            return real
        hostp = self.host_dir(real)
        try:
            st = os.lstat(hostp)
        except FileNotFoundError:
            st = None
        if st is not None and stat.S_ISLNK(st.st_mode):
            target = os.readlink(hostp)
            over = self.overlay.get("/" + "/".join(parts))
            if over and over[0] == "link":
                target = over[1]
            result = self._follow(parent, target, what, create, depth)
        elif st is not None and stat.S_ISDIR(st.st_mode):
            result = real
            self.known_dirs.add(real)
        elif st is not None:
            over = self.overlay.get("/" + "/".join(parts))
            if over and over[0] == "link":
                result = self._follow(parent, over[1], what, create, depth)
            else:
                raise PackageError(f"{what}: /{'/'.join(real)} exists in the tree and is not a directory")
        else:
            over = self.overlay.get("/" + "/".join(parts))
            if over and over[0] == "link":
                result = self._follow(parent, over[1], what, create, depth)
            elif over and over[0] not in ("dir",):
                raise PackageError(f"{what}: /{'/'.join(parts)} is a file in the package, not a directory")
            else:
                result = real
                if create:
                    self.ensure(real)
        self._cache[parts] = result
        return result

    def _follow(self, parent: tuple[str, ...], target: str, what: str, create: bool, depth: int):
        if depth >= _MAX_LINKS:
            raise PackageError(f"{what}: too many levels of symbolic links")
        if target.startswith("/"):
            raise PackageError(f"{what}: refusing to write through the absolute symlink "
                               f"/{'/'.join(parent)}/... -> {target} (it would leave the tree)")
        stack = list(parent)
        for comp in target.split("/"):
            if comp in ("", "."):
                continue
            if comp == "..":
                if not stack:
                    raise PackageError(f"{what}: refusing to follow the symlink -> {target}: it leaves the tree")
                stack.pop()
            else:
                stack.append(comp)
        return self._resolve(tuple(stack), what, create, depth + 1) if stack else ()

    def ensure(self, real: tuple[str, ...]) -> None:
        """Make the resolved (symlink-free) directory ``real`` exist, with its missing parents."""
        if not real or real in self.known_dirs:
            return
        self.ensure(real[:-1])
        hostp = self.host_dir(real)
        try:
            os.mkdir(hostp, 0o755)
        except FileExistsError:   # resolved as absent, or in an earlier package: it must be a real directory
            if not stat.S_ISDIR(os.lstat(hostp).st_mode):
                raise PackageError(f"/{'/'.join(real)} exists in the tree and is not a directory") from None
        self.known_dirs.add(real)


def split_path(path: str, what: str) -> tuple[str, ...]:
    """Split an absolute package path, refusing ``..`` and anything that is not a plain absolute path."""
    if not path.startswith("/"):
        raise PackageError(f"{what}: file path {path!r} is not absolute")
    parts = tuple(p for p in path.split("/") if p not in ("", "."))
    if ".." in parts:
        raise PackageError(f"{what}: file path {path!r} escapes the tree ('..')")
    if "\0" in path:
        raise PackageError(f"{what}: file path {path!r} contains NUL")
    return parts


# ---------------------------------------------------------------------------------------------- unpacking


@dataclass(frozen=True)
class UnpackResult:
    package: str
    written: tuple[str, ...] = ()         #: package paths created or replaced
    config_files: tuple[str, ...] = ()    #: %config paths of the package
    rpmnew: tuple[str, ...] = ()          #: %config(noreplace) files written as .rpmnew next to a changed file
    rpmsave: tuple[str, ...] = ()         #: changed %config files moved to .rpmsave/.rpmorig before replacing them
    warnings: tuple[str, ...] = ()


class _Unpacker:
    def __init__(self, header: RpmHeader, tree: Path, owners: Owners, protected: frozenset[str], force: bool,
                 verify_digests: bool, previous: Mapping[str, str], known_dirs: set[tuple[str, ...]] | None):
        self.h = header
        self.tree = tree
        self.owners = owners
        self.protected = protected
        self.force = force
        self.verify = verify_digests
        self.previous = previous
        self.what = str(header.nevra)
        self.entries = {e.path: (i, e) for i, e in enumerate(header.file_entries)}
        overlay = {}
        for e in header.file_entries:
            if e.is_ghost:
                continue
            if stat.S_ISLNK(e.mode):
                overlay[e.path] = ("link", e.linkto)
            elif stat.S_ISDIR(e.mode):
                overlay[e.path] = ("dir",)
            else:
                overlay[e.path] = ("file",)
        self.resolver = TreeResolver(tree, overlay, known_dirs)
        self.places: dict[str, tuple[tuple[str, ...], str]] = {}   #: path -> (resolved parent, name)
        self.hash_name = header.file_digest_algo
        self.written: list[str] = []
        self.rpmnew: list[str] = []
        self.rpmsave: list[str] = []
        self.warnings: list[str] = []
        self.dirs: list[tuple[str, FileEntry]] = []
        self.links: dict[str, list[tuple[str, FileEntry]]] = {}

    # -- checks before anything is written
    def check_all(self) -> None:
        """Resolve every path (remembered for writing: nothing but this package changes the tree meanwhile)."""
        for e in self.h.file_entries:
            parts = split_path(e.path, self.what)
            if e.is_ghost or not parts:
                continue
            parent = self.resolver.resolve_dir(parts[:-1], self.what, create=False)
            self.places[e.path] = (parent, parts[-1])
            if not stat.S_ISDIR(e.mode):
                self._check_protected(e.path, parent + parts[-1:])
            elif self.protected and not self.force:   # a directory may not replace a file of the base either
                st = _lstat(self.resolver.host(parent + parts[-1:]))
                if st is not None and not stat.S_ISDIR(st.st_mode) and not stat.S_ISLNK(st.st_mode):
                    self._check_protected(e.path, parent + parts[-1:])

    def _check_protected(self, path: str, real: tuple[str, ...]) -> None:
        if self.force or not self.protected:
            return
        real_path = "/" + "/".join(real)
        for p in (path, real_path):
            if p in self.protected and os.path.lexists(self.resolver.host(real)):
                raise PackageError(f"{self.what}: refusing to overwrite {p}, which belongs to the base image "
                                   "(use --force-replacefiles to allow)")

    # -- helpers
    def uid_gid(self, e: FileEntry) -> tuple[int, int]:
        uid = self.owners.uid(e.user)
        gid = self.owners.gid(e.group)
        if uid is None:
            self.warnings.append(f"{self.what}: user {e.user} does not exist in the tree - using root")
            uid = 0
        if gid is None:
            self.warnings.append(f"{self.what}: group {e.group} does not exist in the tree - using root")
            gid = 0
        return uid, gid

    def locate(self, e: FileEntry) -> tuple[str, str]:
        """(host parent directory, name) for an entry, creating missing parent directories."""
        place = self.places.get(e.path)
        if place is None:
            parts = split_path(e.path, self.what)
            parent = self.resolver.resolve_dir(parts[:-1], self.what, create=True)
            place = self.places[e.path] = (parent, parts[-1])
        else:
            self.resolver.ensure(place[0])
        return self.resolver.host_dir(place[0]), place[1]

    def _tmpname(self, name: str) -> str:
        return f".{name}.hyb{os.getpid()}"

    # -- members
    def write_member(self, e: FileEntry, reader) -> None:
        mode = e.mode
        if stat.S_ISDIR(mode):
            self.make_dir(e)
        elif stat.S_ISLNK(mode):
            self.make_symlink(e)
        elif stat.S_ISREG(mode):
            self.make_file(e, reader)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
            self.make_node(e)
        else:
            raise PackageError(f"{self.what}: {e.path} has an unknown file type {oct(mode)}")

    def make_dir(self, e: FileEntry) -> None:
        pdir, name = self.locate(e)
        hostp = os.path.join(pdir, name)
        st = _lstat(hostp)
        if st is not None and stat.S_ISLNK(st.st_mode):
            # like rpm: a symlink to a directory stands in for the packaged directory (e.g. /bin -> usr/bin)
            parts = split_path(e.path, self.what)
            self.resolver.resolve_dir(parts, self.what, create=False)
            return
        if st is not None and not stat.S_ISDIR(st.st_mode):
            os.unlink(hostp)
            st = None
        if st is None:
            os.mkdir(hostp, 0o700)
            self.written.append(e.path)
        parent, name = self.places[e.path]
        self.resolver.known_dirs.add(parent + (name,))
        self.dirs.append((hostp, e))

    def _finish_dir(self, hostp: str, e: FileEntry) -> None:
        uid, gid = self.uid_gid(e)
        os.lchown(hostp, uid, gid)
        os.chmod(hostp, stat.S_IMODE(e.mode), follow_symlinks=False)
        os.utime(hostp, (e.mtime, e.mtime), follow_symlinks=False)

    def make_symlink(self, e: FileEntry) -> None:
        pdir, name = self.locate(e)
        hostp = os.path.join(pdir, name)
        if self.protected:
            self._check_protected(e.path, tuple(os.path.relpath(hostp, self.tree).split("/")))
        uid, gid = self.uid_gid(e)
        try:   # a free path gets the symlink in place; an existing one is replaced by rename
            os.symlink(e.linkto, hostp)
        except FileExistsError:
            if stat.S_ISDIR(os.lstat(hostp).st_mode):
                raise PackageError(f"{self.what}: cannot replace the directory {e.path} with a symlink") from None
            tmp = os.path.join(pdir, self._tmpname(name))
            _unlink_quiet(tmp)
            os.symlink(e.linkto, tmp)
            _set_link_meta(tmp, uid, gid, e.mtime)
            os.rename(tmp, hostp)
        else:
            _set_link_meta(hostp, uid, gid, e.mtime)
        self.written.append(e.path)

    def make_node(self, e: FileEntry) -> None:
        pdir, name = self.locate(e)
        hostp = os.path.join(pdir, name)
        tmp = os.path.join(pdir, self._tmpname(name))
        _unlink_quiet(tmp)
        os.mknod(tmp, e.mode, e.rdev)
        self._finish_file_path(tmp, e)
        os.rename(tmp, hostp)
        self.written.append(e.path)

    def _finish_file_path(self, p: str, e: FileEntry) -> None:
        uid, gid = self.uid_gid(e)
        os.lchown(p, uid, gid)
        os.chmod(p, stat.S_IMODE(e.mode))
        os.utime(p, (e.mtime, e.mtime), follow_symlinks=False)

    def make_file(self, e: FileEntry, reader) -> None:
        pdir, name = self.locate(e)
        hostp = os.path.join(pdir, name)
        if self.protected:
            self._check_protected(e.path, tuple(os.path.relpath(hostp, self.tree).split("/")))
        # a new path is written in place; an existing one is replaced by rename (atomic, never followed)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        mode = stat.S_IMODE(e.mode)
        plain = not mode & 0o7000   # no setuid/setgid/sticky bit: created with its permissions (umask permitting)
        target, fresh = hostp, True
        try:
            fd = os.open(target, flags, mode if plain else 0o600)
        except FileExistsError:
            target, fresh = os.path.join(pdir, self._tmpname(name)), False
            _unlink_quiet(target)
            fd = os.open(target, flags, mode if plain else 0o600)
        h = hashlib.new(self.hash_name) if (self.verify and e.digest and self.hash_name) else None
        try:
            written = 0
            while reader is not None and reader.remaining:
                chunk = reader.read(1 << 20)
                written += len(chunk)
                if h:
                    h.update(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
            if written != e.size:
                raise PackageError(f"{self.what}: {e.path} has {written} bytes in the payload, "
                                   f"the header says {e.size}")
            if h and h.hexdigest() != e.digest:
                raise PackageError(f"{self.what}: {e.path} does not match its digest: the package is corrupt")
            uid, gid = self.uid_gid(e)
            st = os.fstat(fd)   # a new file may have its owner and mode already: each change is a journaled write
            if (st.st_uid, st.st_gid) != (uid, gid):
                os.fchown(fd, uid, gid)
            if not plain or stat.S_IMODE(st.st_mode) != mode:
                os.fchmod(fd, mode)   # after chown, which clears setuid/setgid
            if e.caps:
                os.setxattr(fd, "security.capability", caps_to_xattr(e.caps))
            os.utime(fd, (e.mtime, e.mtime))
        except BaseException:
            os.close(fd)
            _unlink_quiet(target)
            raise
        os.close(fd)
        if fresh:
            self.written.append(e.path)
        else:
            self._place_config_aware(target, hostp, e)

    def _place_config_aware(self, tmp: str, hostp: str, e: FileEntry) -> None:
        """Replace ``hostp`` with ``tmp``, with rpm's rules for a %config file that is already there:
        unchanged from the previous package (or equal to the new one) -> replaced; changed -> the new one is
        ``.rpmnew`` (noreplace) or the old one saved as ``.rpmsave``; not from any package -> ``.rpmorig``."""
        st = _lstat(hostp)
        if st is not None and stat.S_ISDIR(st.st_mode):
            _unlink_quiet(tmp)
            raise PackageError(f"{self.what}: cannot replace the directory {e.path} with a file")
        if e.is_config and st is not None and stat.S_ISREG(st.st_mode) and not same_bytes(hostp, tmp):
            before = self.previous.get(e.path)
            if before is None or file_digest(hostp, self.hash_name or "sha256") != before:
                if e.flags & FileFlag.NOREPLACE:
                    os.rename(tmp, hostp + ".rpmnew")
                    self.rpmnew.append(e.path)
                    self.warnings.append(f"{self.what}: {e.path} was changed; the new one is {e.path}.rpmnew")
                    return
                suffix = ".rpmsave" if before is not None else ".rpmorig"
                os.rename(hostp, hostp + suffix)
                self.rpmsave.append(e.path)
                self.warnings.append(f"{self.what}: {e.path} saved as {e.path}{suffix}")
        os.rename(tmp, hostp)
        self.written.append(e.path)

    def finish(self) -> None:
        for hostp, e in reversed(self.dirs):
            self._finish_dir(hostp, e)


def _set_link_meta(path: str, uid: int, gid: int, mtime: int) -> None:
    """Owner (only where the new symlink's differs: each change is a journaled write) and mtime of a symlink."""
    st = os.lstat(path)
    if (st.st_uid, st.st_gid) != (uid, gid):
        os.lchown(path, uid, gid)
    os.utime(path, (mtime, mtime), follow_symlinks=False)


def _lstat(p: str) -> os.stat_result | None:
    try:
        return os.lstat(p)
    except FileNotFoundError:
        return None


def _unlink_quiet(p: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(p)




def unpack_rpm(rpm: str | os.PathLike, tree: str | os.PathLike, *, owners: Owners | None = None,
               protected: frozenset[str] = frozenset(), force: bool = False,
               verify_digests: bool = True, info: RpmFileInfo | None = None,
               previous_digests: Mapping[str, str] | None = None,
               known_dirs: set[tuple[str, ...]] | None = None) -> UnpackResult:
    """Unpack the RPM file ``rpm`` onto ``tree``; raise PackageError (tree untouched) for unsafe packages.

    ``info`` is the already read :func:`read_rpm` result of the same file, to avoid parsing it twice;
    ``previous_digests`` maps paths to their digests in the installed packages (for %config files; looked up
    only for a %config file that exists and differs); ``known_dirs`` is a :class:`TreeResolver` directory set
    shared between the packages of one transaction."""
    tree = Path(tree)
    if not tree.is_dir():
        raise PackageError(f"cannot unpack into {tree}: not a directory")
    if info is None:
        info = read_rpm(rpm)
    header = info.header
    if header.payload_format not in ("cpio", ""):
        raise PackageError(f"{header.nevra}: unsupported payload format {header.payload_format!r}")
    if (header.payload_compressor or "gzip") not in COMPRESSORS:
        raise FormatError(f"{header.nevra}: unknown RPM payload compression {header.payload_compressor!r} "
                          f"(supported: {', '.join(sorted(COMPRESSORS))})")
    u = _Unpacker(header, tree, owners if owners is not None else load_owners(tree), protected, force,
                  verify_digests, {} if previous_digests is None else previous_digests, known_dirs)
    u.check_all()
    by_index = header.file_entries
    seen: set[str] = set()
    with open(rpm, "rb") as f:
        # a small payload is read once, then checked and unpacked from memory; a large one is streamed twice
        compressed = None
        if os.fstat(f.fileno()).st_size - info.payload_offset <= _IN_MEMORY \
                and sum(e.size for e in by_index) <= _IN_MEMORY // 2:
            f.seek(info.payload_offset)
            compressed = f.read()
        if verify_digests and _verify_payload_digest(f, info.payload_offset, header, compressed):
            u.verify = False   # the payload is what was signed: no need to hash every file again
        f.seek(info.payload_offset)
        stream = open_decompressed(f if compressed is None else io.BytesIO(compressed), header.payload_compressor)
        try:
            sets = hardlink_sets(header)
            members = iter_cpio(stream if compressed is None else read_whole(stream, _IN_MEMORY),
                                size_of=stripped_sizes(header, sets))
            for member, reader in members:
                if member.index >= 0:
                    if member.index >= len(by_index):
                        raise PackageError(f"{u.what}: payload member {member.index} is not in the header")
                    entry = by_index[member.index]
                else:
                    found = u.entries.get(member.name)
                    if found is None:
                        raise PackageError(f"{u.what}: payload file {member.name} is not in the header")
                    entry = found[1]
                if entry.is_ghost:
                    continue
                seen.add(entry.path)
                try:
                    if entry.path in sets:
                        _hardlink_member(u, entry, sets[entry.path], member, reader)
                    else:
                        u.write_member(entry, reader)
                except OSError as e:
                    raise PackageError(f"{u.what}: cannot write {entry.path}: {e.strerror}") from None
        except FormatError as e:
            raise PackageError(f"{u.what}: {e}") from None
    for members in u.links.values():   # an incomplete hardlink set: its data never came
        raise PackageError(f"{u.what}: hardlink set {', '.join(p for p, _ in members)} has no data in the payload")
    missing = [e.path for e in header.file_entries
               if e.path not in seen and not e.is_ghost and not (e.flags & FileFlag.MISSINGOK)]
    if missing:
        raise PackageError(f"{u.what}: {len(missing)} files are missing from the payload, e.g. {missing[0]}")
    u.finish()
    return UnpackResult(
        package=str(header.nevra),
        written=tuple(u.written),
        config_files=tuple(e.path for e in header.file_entries if e.is_config),
        rpmnew=tuple(u.rpmnew),
        rpmsave=tuple(u.rpmsave),
        warnings=tuple(dict.fromkeys(u.warnings)),
    )


#: payloads up to this size (compressed, and again decompressed) are handled in memory rather than streamed
_IN_MEMORY = 16 << 20



def _verify_payload_digest(f, offset: int, header: RpmHeader, compressed: bytes | None) -> bool:
    """Check the compressed payload (``compressed``, or read from ``f`` at ``offset``) against the header's
    PAYLOADDIGEST before a byte is unpacked.

    Returns whether there was a digest to check (older packages have only per-file digests)."""
    digests = header.raw.get(Tag.PAYLOADDIGEST) if header.raw else None
    algo = header.raw.get(Tag.PAYLOADDIGESTALGO) if header.raw else None
    name = DIGEST_ALGOS.get(algo[0] if algo else 8)
    if not digests or not name:
        return False
    if compressed is not None:
        h = hashlib.new(name, compressed)
    else:
        h = hashlib.new(name)
        f.seek(offset)
        while chunk := f.read(1 << 20):
            h.update(chunk)
    if h.hexdigest() != digests[0]:
        raise PackageError(f"{header.nevra}: the payload does not match its digest: the package is corrupt")
    return True


def hardlink_sets(header: RpmHeader) -> dict[str, tuple[str, ...]]:
    """path -> all paths of its hardlink set (regular files sharing an inode number in the header)."""
    by_inode: dict[int, list[str]] = {}
    for e in header.file_entries:
        if stat.S_ISREG(e.mode) and not e.is_ghost and e.inode:
            by_inode.setdefault(e.inode, []).append(e.path)
    return {p: tuple(paths) for paths in by_inode.values() if len(paths) > 1 for p in paths}


def stripped_sizes(header: RpmHeader, sets: dict[str, tuple[str, ...]]):
    """Data size of each member of a stripped (07070X) archive: hardlink sets carry it on their last member."""
    entries = header.file_entries

    def size_of(index: int) -> int:
        if index >= len(entries):
            raise PackageError(f"{header.nevra}: payload member {index} is not in the header")
        e = entries[index]
        if not stat.S_ISREG(e.mode):
            return e.size if stat.S_ISLNK(e.mode) else 0
        group = sets.get(e.path)
        return 0 if group and e.path != group[-1] else e.size

    return size_of


def _hardlink_member(u: _Unpacker, entry: FileEntry, group: tuple[str, ...], member, reader) -> None:
    """rpm writes a hardlink set's data with its last member only: hold the others back until it comes."""
    pending = u.links.setdefault(group[0], [])
    pending.append((entry.path, entry))
    if member.size == 0 and len(pending) < len(group):
        return
    u.write_member(entry, reader)
    pdir, name = u.locate(entry)
    source = os.path.join(pdir, name)
    for path, e in pending:
        if path == entry.path:
            continue
        d, n = u.locate(e)
        tmp = os.path.join(d, u._tmpname(n))
        _unlink_quiet(tmp)
        os.link(source, tmp, follow_symlinks=False)
        os.rename(tmp, os.path.join(d, n))
        u.written.append(path)
    del u.links[group[0]]

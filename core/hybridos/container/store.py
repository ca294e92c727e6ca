"""Import an OSTree-native container image into a repository (ostree-ext's store, read side).

Layers up to ``ostree.final-diffid`` carry OSTree objects: each is streamed from skopeo, every object is
checked against its checksum before it is stored, and a layer whose ref ``ostree/container/blob/<diffid>``
already exists is not downloaded again. Later (derived) layers are ordinary container layers: they are
applied on a checkout of the base commit (``usr/`` and ``etc/`` only, whiteouts honoured) and committed.
The image ref ``ostree/container/image/<imgref>`` then names a merge commit carrying the manifest.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from zlib_ng import zlib_ng

from hybridos import gvariant
from hybridos.container.imgref import (
    BLOB_REF_PREFIX,
    IMAGE_REF_PREFIX,
    ImageReference,
    OstreeImageReference,
    SigVerify,
    blob_ref,
    image_ref,
)
from hybridos.container.oci import GOARCH, GZIP_LAYERS, MEDIA_LAYER_TAR, ImageConfig, Manifest
from hybridos.container.tarlayer import (
    OBJECTS_PREFIX,
    REPO_PREFIX,
    XATTRS_EXT,
    XATTRS_LINK_EXT,
    header_from_member,
)
from hybridos.errors import CorruptionError, FormatError, HybridosError
from hybridos.ostree.objects import Commit, ObjectType, _check_xattrs, _xattrs_in
from hybridos.ostree.repo import Repo
from hybridos.util.progress import human_bytes

IMPORTER_VERSION = "hybridos-1"
META_MANIFEST_DIGEST = "ostree.manifest-digest"
META_MANIFEST = "ostree.manifest"
META_CONFIG = "ostree.container.image-config"
META_IMPORTER = "ostree.importer.version"
META_TAR_FILTERED = "ostree.tar-filtered"
META_BASE = "ostree.container.base-commit"
MAX_METADATA_OBJECT = 64 << 20


class ContainerError(HybridosError):
    """A container image is not an OSTree-native image, or does not fit this host."""


@dataclass
class PulledImage:
    merge_commit: str
    base_commit: str
    manifest_digest: str
    layers_present: int = 0
    layers_fetched: int = 0
    bytes_fetched: int = 0
    derived_layers: int = 0
    messages: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class StoredImage:
    """What the merge commit of an imported image records."""

    merge_commit: str
    manifest_digest: str
    manifest: Manifest
    config: ImageConfig
    base_commit: str


def stored_image(repo: Repo, merge_commit: str) -> StoredImage | None:
    """The image a merge commit was imported from, or None for an ordinary commit."""
    meta = repo.load_commit(merge_commit).metadata
    digest = meta.get(META_MANIFEST_DIGEST)
    if not isinstance(digest, str):
        return None
    manifest = Manifest.parse(str(meta.get(META_MANIFEST, "")).encode())
    config = ImageConfig.parse(str(meta.get(META_CONFIG, "")).encode())
    base = meta.get(META_BASE) or config.labels.get("ostree.commit") or merge_commit
    return StoredImage(merge_commit, digest, manifest, config, str(base))


def split_layers(manifest: Manifest, config: ImageConfig) -> tuple[int, str]:
    """(number of OSTree layers, final diff_id): the layers up to the one whose diff_id is ``ostree.final-diffid``."""
    labels = {**manifest.annotations, **config.labels}
    final = labels.get("ostree.final-diffid")
    diff_ids = config.diff_ids
    if len(diff_ids) != len(manifest.layers):
        raise ContainerError("image configuration and manifest disagree on the number of layers")
    if not final:
        if labels.get("ostree.commit") and len(diff_ids) >= 1:  # legacy single-layer images
            return 1, diff_ids[0]
        raise ContainerError("No ostree.final-diffid label found, not an ostree encapsulated container")
    if final not in diff_ids:
        raise ContainerError(f"ostree.final-diffid {final[:80]} is not one of the image's layers")
    return diff_ids.index(final) + 1, final


def check_bootable(manifest: Manifest, config: ImageConfig) -> None:
    labels = {**manifest.annotations, **config.labels}
    if labels.get("ostree.bootable") not in ("true", "1") and labels.get("containers.bootc") != "1":
        raise ContainerError("Target image does not have ostree.bootable label")


# ---------------------------------------------------------------------------------------------- fetch


def pull_image(repo: Repo, ref: OstreeImageReference, *, authfile: str | None = None,
               progress: Callable[[str], None] | None = None, keyring_check=None,
               check_only: bool = False, current_digest: str | None = None
               ) -> PulledImage | tuple[str, Manifest, ImageConfig | None]:
    """Fetch ``ref`` into ``repo``; with ``check_only`` only its (digest, manifest, config), where config is
    None when the digest equals ``current_digest`` (then nothing but the manifest is downloaded)."""
    from hybridos.container.skopeo import ImageProxy

    say = progress or (lambda _msg: None)
    if ref.sigverify is SigVerify.IMAGE_SIGNED:
        raise ContainerError("ostree-image-signed: images are not supported (use ostree-remote-image: to check "
                             "the commit signature with an ostree remote's keys)")
    with ImageProxy(authfile=authfile) as proxy:
        say(f"Pulling manifest: {ref}")
        image = proxy.open_image(ref.imgref.skopeo)
        digest, mbytes = proxy.manifest(image)
        manifest = Manifest.parse(mbytes)
        if check_only and digest == current_digest:
            return digest, manifest, None
        config_bytes = proxy.config(image)
        config = ImageConfig.parse(config_bytes)
        _check_arch(config)
        n_ostree, _final = split_layers(manifest, config)
        if check_only:
            return digest, manifest, config
        check_bootable(manifest, config)
        result = _import(repo, proxy, image, ref, digest, mbytes, manifest, config_bytes, config, n_ostree, say,
                         keyring_check)
        proxy.close_image(image)
    return result


def _check_arch(config: ImageConfig) -> None:
    from hybridos.arch import Architecture

    want = GOARCH.get(Architecture.host().value)
    got = config.architecture
    if got and want and got != want:
        raise ContainerError(f"the image is for architecture {got}, this host is {want}")


def _layer_stream(proxy, image: int, desc, diff_id: str):
    """A context manager yielding the layer's uncompressed tar stream, checked against ``diff_id`` at the end."""
    import contextlib

    @contextlib.contextmanager
    def cm():
        with proxy.blob(image, desc.digest, desc.size) as raw:
            if desc.media_type in GZIP_LAYERS:
                stream = _DigestReader(_GunzipReader(raw), diff_id)
            elif desc.media_type in (MEDIA_LAYER_TAR, "application/vnd.docker.image.rootfs.diff.tar"):
                stream = _DigestReader(raw, diff_id)
            else:
                raise ContainerError(f"unsupported layer media type {desc.media_type[:80]!r}")
            yield stream
            stream.finish()
    return cm()


def _import(repo, proxy, image, ref, digest, mbytes, manifest, config_bytes, config, n_ostree, say,
            keyring_check) -> PulledImage:
    diff_ids = config.diff_ids
    labels = {**manifest.annotations, **config.labels}
    expected_commit = labels.get("ostree.commit")
    present = [repo.resolve_rev(blob_ref(d), allow_missing=True) for d in diff_ids[:n_ostree]]
    present_ok = [c is not None and repo.has_object(c, ObjectType.COMMIT) for c in present]
    needed = [i for i in range(n_ostree) if not present_ok[i]]
    result = PulledImage("", "", digest, layers_present=n_ostree - len(needed))
    say(f"Importing: {ref} (digest: {digest})")
    say(f"ostree chunk layers already present: {result.layers_present}")
    if needed:
        size = sum(manifest.layers[i].size for i in needed)
        say(f"ostree chunk layers needed: {len(needed)} ({human_bytes(size)})")
    derived = list(range(n_ostree, len(diff_ids)))
    if derived:
        say(f"custom layers needed: {len(derived)} ({human_bytes(sum(manifest.layers[i].size for i in derived))})")

    with repo.lock():
        base_commit = None
        # Component layers first, the commit layer last: a commit object appears only once its objects are in.
        for i in sorted(needed, key=lambda i: i == 0):
            desc = manifest.layers[i]
            say(f"Fetching ostree chunk {desc.digest[:19]} ({human_bytes(desc.size)})")
            with _layer_stream(proxy, image, desc, diff_ids[i]) as stream:
                found = import_ostree_layer(repo, stream, commit_layer=(i == 0), expected_commit=expected_commit,
                                            what=f"layer {desc.digest[:19]}", ref=ref, keyring_check=keyring_check)
            result.layers_fetched += 1
            result.bytes_fetched += desc.size
            if i == 0:
                base_commit = found
        if base_commit is None:
            base_commit = present[0] if present[0] else expected_commit
        if base_commit is None or not repo.has_object(base_commit, ObjectType.COMMIT):
            raise ContainerError("the image's commit layer did not provide a commit")
        if expected_commit and base_commit != expected_commit:
            raise CorruptionError(f"the image's commit {base_commit} is not its ostree.commit label "
                                  f"{expected_commit}")
        if 0 not in needed and keyring_check is not None and ref.sigverify is SigVerify.REMOTE:
            meta_path = repo.object_path(base_commit, ObjectType.COMMIT_META)
            keyring_check(ref, base_commit, repo.read_metadata_bytes(base_commit, ObjectType.COMMIT),
                          meta_path.read_bytes() if meta_path.exists() else None)
        _check_complete(repo, base_commit)
        base = repo.load_commit(base_commit)
        root_tree, root_meta = base.root_tree, base.root_meta
        filtered: dict[str, dict[str, int]] = {}
        if derived:
            root_tree, root_meta, filtered = _apply_derived(repo, proxy, image, manifest, diff_ids, base_commit,
                                                            derived, say)
            result.derived_layers = len(derived)
            result.bytes_fetched += sum(manifest.layers[i].size for i in derived)
        metadata = dict(base.metadata)
        metadata.pop("ostree.ref-binding", None)
        metadata.update({
            META_MANIFEST_DIGEST: digest,
            META_MANIFEST: mbytes.decode("utf-8", "replace"),
            META_CONFIG: config_bytes.decode("utf-8", "replace"),
            META_IMPORTER: IMPORTER_VERSION,
            META_BASE: base_commit,
        })
        if filtered:
            metadata[META_TAR_FILTERED] = gvariant.Variant("a{sa{su}}", filtered)
        merge = Commit(metadata=metadata, parent=None, subject="", body="",
                       timestamp=_timestamp(config.created, base.timestamp), root_tree=root_tree,
                       root_meta=root_meta)
        merge_csum = repo.write_commit(merge)
        repo.sync()
        for d in diff_ids[:n_ostree]:
            repo.set_ref(blob_ref(d), base_commit)
        repo.set_ref(image_ref(ref.imgref), merge_csum)
    result.merge_commit, result.base_commit = merge_csum, base_commit
    return result


def _check_complete(repo: Repo, commit: str) -> None:
    missing = [c for c, t in repo.traverse_commit(commit, ignore_missing=True) if not repo.has_object(c, t)]
    if missing:
        raise CorruptionError(f"the image's commit {commit[:12]} is incomplete: {len(missing)} objects are in no "
                              f"layer (first: {missing[0]})")


def _timestamp(created: str | None, fallback: int) -> int:
    import datetime

    if not created:
        return fallback
    try:
        return int(datetime.datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return fallback


# ---------------------------------------------------------------------------------------------- tar readers

class _GunzipReader(io.RawIOBase):
    """Streaming gunzip (multi-member) over a raw stream."""

    def __init__(self, raw):
        self._raw = raw
        self._z = zlib_ng.decompressobj(31)
        self._buf = b""
        self._eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while not self._buf and not self._eof:
            chunk = self._raw.read(1 << 16)
            if not chunk:
                if not self._z.eof and self._z.unconsumed_tail == b"":
                    tail = self._z.flush()
                    self._buf = tail
                self._eof = True
                break
            data = self._z.decompress(chunk)
            while self._z.eof and self._z.unused_data:
                rest = self._z.unused_data
                self._z = zlib_ng.decompressobj(31)
                data += self._z.decompress(rest)
            self._buf = data
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


class _DigestReader(io.RawIOBase):
    """Passes bytes through and checks their sha256 against ``expected`` once the stream is finished."""

    def __init__(self, raw, expected: str):
        self._raw = raw
        self._h = hashlib.sha256()
        self._expected = expected
        self.at_eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        data = self._raw.read(len(b))
        if not data:
            self.at_eof = True
            return 0
        self._h.update(data)
        n = len(data)
        b[:n] = data
        return n

    def finish(self) -> None:
        while self.read(1 << 16):
            pass
        got = "sha256:" + self._h.hexdigest()
        if got != self._expected:
            raise CorruptionError(f"layer content does not match its diff_id {self._expected[:19]}... (got {got[:19]}...)")


def _members(stream, what: str):
    """The members of a tar stream; a stream that ends without the final padding and end blocks (as some Go
    writers, umoci's among them, leave it) ends there: its digest is checked afterwards anyway."""
    tf = tarfile.open(fileobj=stream, mode="r|")  # noqa: SIM115 - a stream read to its end
    it = iter(tf)
    while True:
        try:
            member = next(it)
        except StopIteration:
            return
        except tarfile.TarError as exc:
            if getattr(stream, "at_eof", False) and "unexpected end of data" in str(exc):
                return
            raise ContainerError(f"{what}: malformed tar stream: {exc}") from None
        yield tf, member


def _safe_member_name(name: str, what: str) -> str:
    n = name[2:] if name.startswith("./") else name
    n = n.rstrip("/")
    parts = n.split("/")
    if name.startswith("/") or any(p == ".." for p in parts) or "\0" in name:
        raise ContainerError(f"{what}: path {name[:200]!r} escapes the image")
    return n


def _object_name(path: str, what: str) -> tuple[str, str]:
    """(checksum, extension) of ``sysroot/ostree/repo/objects/XX/YYYY.ext``."""
    rest = path[len(OBJECTS_PREFIX):]
    sub, _, fname = rest.partition("/")
    stem, _, ext = fname.partition(".")
    csum = sub + stem
    if len(sub) != 2 or len(csum) != 64 or any(c not in "0123456789abcdef" for c in csum) or "/" in fname:
        raise ContainerError(f"{what}: malformed object path {path[:200]!r}")
    return csum, ext


def _read_member(tf: tarfile.TarFile, member: tarfile.TarInfo, limit: int, what: str) -> bytes:
    if member.size > limit:
        raise ContainerError(f"{what}: {member.name[:200]} is larger than {limit} bytes")
    f = tf.extractfile(member)
    return f.read() if f is not None else b""


def _parse_xattrs(data: bytes, what: str):
    try:
        return _check_xattrs(_xattrs_in(gvariant.parse("a(ayay)", data)))
    except FormatError as exc:
        raise CorruptionError(f"{what}: malformed xattrs object: {exc}") from None


def import_ostree_layer(repo: Repo, stream, *, commit_layer: bool, expected_commit: str | None = None,
                        what: str = "layer", ref: OstreeImageReference | None = None,
                        keyring_check=None) -> str | None:
    """Store every object of one OSTree layer (each checked); returns the commit of a commit layer."""
    xattrs_objects: dict[str, tuple] = {}
    xattrs_of: dict[str, tuple] = {}
    commit_csum = None
    first_object = True
    pending_commit: tuple[str, bytes] | None = None
    for tf, member in _members(stream, what):
        name = _safe_member_name(member.name, what)
        if not name.startswith(REPO_PREFIX):
            if member.isreg() and member.size and not member.islnk():
                raise ContainerError(f"{what}: unexpected file {name[:200]!r} outside sysroot/ostree/repo")
            if member.islnk():
                _safe_member_name(member.linkname, what)
            continue
        if member.isdir() or not name.startswith(OBJECTS_PREFIX):
            continue
        csum, ext = _object_name(name, what)
        if first_object and commit_layer and ext != "commit":
            raise ContainerError(f"{what}: Commit object not found (the first object is {ext!r})")
        first_object = False
        if ext in ("commit", "dirtree", "dirmeta", "commitmeta"):
            if not member.isreg():
                raise ContainerError(f"{what}: metadata object {csum} is not a regular file")
            data = _read_member(tf, member, MAX_METADATA_OBJECT, what)
            if ext == "commit":
                if expected_commit and csum != expected_commit:
                    raise ContainerError(f"{what}: commit {csum} is not the image's ostree.commit {expected_commit}")
                if hashlib.sha256(data).hexdigest() != csum:
                    raise CorruptionError(f"{what}: commit object {csum} does not match its checksum")
                pending_commit = (csum, data)
                commit_csum = csum
                continue
            if ext == "commitmeta":
                if csum != commit_csum:
                    raise ContainerError(f"{what}: detached metadata for another commit ({csum})")
                if keyring_check is not None:
                    keyring_check(ref, csum, pending_commit[1], data)
                repo.write_commitmeta_bytes(csum, data)
                continue
            otype = ObjectType.DIR_TREE if ext == "dirtree" else ObjectType.DIR_META
            repo.write_metadata_bytes(otype, data, expected=csum)
        elif ext == XATTRS_EXT:
            data = _read_member(tf, member, 1 << 20, what)
            if hashlib.sha256(data).hexdigest() != csum:
                raise CorruptionError(f"{what}: xattrs object {csum} does not match its checksum")
            xattrs_objects[csum] = _parse_xattrs(data, what)
        elif ext == XATTRS_LINK_EXT:
            if member.islnk():
                target = _safe_member_name(member.linkname, what)
                xcsum, xext = _object_name(target, what)
                if xext != XATTRS_EXT or xcsum not in xattrs_objects:
                    raise ContainerError(f"{what}: xattrs link of {csum} points to an unknown object")
                xattrs_of[csum] = xattrs_objects[xcsum]
            else:
                data = _read_member(tf, member, 1 << 20, what)
                xattrs_of[csum] = _parse_xattrs(data, what)
        elif ext == "file":
            if not (member.isreg() or member.issym()):
                raise ContainerError(f"{what}: content object {csum} is neither a file nor a symlink")
            header = header_from_member(member, xattrs_of.pop(csum, ()))
            if repo.has_object(csum, ObjectType.FILE):
                continue
            data = tf.extractfile(member) if member.isreg() else None
            repo.write_content(header, data, expected=csum)
        else:
            raise ContainerError(f"{what}: unknown object type {ext!r} ({csum})")
    if commit_layer:
        if pending_commit is None:
            raise ContainerError(f"{what}: Commit object not found")
        if ref is not None and ref.sigverify is SigVerify.REMOTE and keyring_check is not None \
                and not repo.has_object(pending_commit[0], ObjectType.COMMIT_META):
            keyring_check(ref, pending_commit[0], pending_commit[1], None)
        repo.write_metadata_bytes(ObjectType.COMMIT, pending_commit[1], expected=pending_commit[0])
    return commit_csum


# ---------------------------------------------------------------------------------------------- derived layers

def _apply_derived(repo: Repo, proxy, image, manifest, diff_ids, base_commit, derived, say):
    from hybridos.ostree.commit import write_tree

    filtered: dict[str, dict[str, int]] = {}
    with tempfile.TemporaryDirectory(prefix="hybridos-merge-", dir=repo.path / "tmp") as tmp:
        root = Path(tmp) / "root"
        repo.checkout(base_commit, root, mode="copy")
        rootfd = os.open(root, os.O_DIRECTORY | os.O_RDONLY)
        try:
            for i in derived:
                desc = manifest.layers[i]
                say(f"Fetching layer {desc.digest[:19]} ({human_bytes(desc.size)})")
                counts: dict[str, int] = {}
                with _layer_stream(proxy, image, desc, diff_ids[i]) as stream:
                    apply_layer(rootfd, stream, counts, what=f"layer {desc.digest[:19]}")
                if counts:
                    filtered[desc.digest] = counts
        finally:
            os.close(rootfd)
        tree, meta = write_tree(repo, root)
    return tree, meta, filtered


def _open_parent(rootfd: int, parts: list[str], what: str, create: bool = True) -> int:
    """The directory fd of ``parts`` below ``rootfd``, never following a symlink."""
    fd = os.dup(rootfd)
    for p in parts:
        try:
            nfd = os.open(p, os.O_DIRECTORY | os.O_RDONLY | os.O_NOFOLLOW, dir_fd=fd)
        except FileNotFoundError:
            if not create:
                os.close(fd)
                raise
            os.mkdir(p, 0o755, dir_fd=fd)
            nfd = os.open(p, os.O_DIRECTORY | os.O_RDONLY | os.O_NOFOLLOW, dir_fd=fd)
        except (NotADirectoryError, OSError) as exc:
            os.close(fd)
            raise ContainerError(f"{what}: {'/'.join(parts)[:200]} goes through a non-directory ({exc.strerror})") \
                from None
        os.close(fd)
        fd = nfd
    return fd


def _remove(dfd: int, name: str) -> None:
    try:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        sub = os.open(name, os.O_DIRECTORY | os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dfd)
        try:
            for child in os.listdir(sub):
                _remove(sub, child)
        finally:
            os.close(sub)
        os.rmdir(name, dir_fd=dfd)
    else:
        os.unlink(name, dir_fd=dfd)


def apply_layer(rootfd: int, stream, filtered: dict[str, int], *, what: str) -> None:
    """Apply one ordinary container layer below ``rootfd``: ``etc/`` goes to ``usr/etc``, only ``usr`` is kept
    otherwise (other top-level directories are counted in ``filtered``), OCI whiteouts remove files."""
    for tf, member in _members(stream, what):
        name = _safe_member_name(member.name, what)
        if not name:
            continue
        parts = name.split("/")
        top = parts[0]
        if top == "etc":
            parts = ["usr", *parts]
        elif top != "usr":
            filtered[top] = filtered.get(top, 0) + 1
            continue
        base = parts[-1]
        dfd = _open_parent(rootfd, parts[:-1], what)
        try:
            if base == ".wh..wh..opq":
                for child in os.listdir(dfd):
                    _remove(dfd, child)
                continue
            if base.startswith(".wh."):
                _remove(dfd, base[4:])
                continue
            if member.isdir():
                try:
                    st = os.stat(base, dir_fd=dfd, follow_symlinks=False)
                    if not stat.S_ISDIR(st.st_mode):
                        _remove(dfd, base)
                        os.mkdir(base, 0o700, dir_fd=dfd)
                except FileNotFoundError:
                    os.mkdir(base, 0o700, dir_fd=dfd)
                sub = os.open(base, os.O_DIRECTORY | os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dfd)
                try:
                    os.fchown(sub, member.uid, member.gid)
                    os.fchmod(sub, member.mode & 0o7777)
                finally:
                    os.close(sub)
                continue
            _remove(dfd, base)
            if member.issym():
                os.symlink(member.linkname, base, dir_fd=dfd)
                os.chown(base, member.uid, member.gid, dir_fd=dfd, follow_symlinks=False)
            elif member.islnk():
                tparts = _safe_member_name(member.linkname, what).split("/")
                if tparts[0] == "etc":
                    tparts = ["usr", *tparts]
                if tparts[0] != "usr":
                    raise ContainerError(f"{what}: hardlink {name[:200]} to a filtered path")
                tfd = _open_parent(rootfd, tparts[:-1], what, create=False)
                try:
                    os.link(tparts[-1], base, src_dir_fd=tfd, dst_dir_fd=dfd, follow_symlinks=False)
                finally:
                    os.close(tfd)
            elif member.isreg():
                fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=dfd)
                try:
                    src = tf.extractfile(member)
                    with os.fdopen(os.dup(fd), "wb") as out:
                        while chunk := src.read(1 << 20):
                            out.write(chunk)
                    os.fchown(fd, member.uid, member.gid)
                    os.fchmod(fd, member.mode & 0o7777)
                    for key, value in member.pax_headers.items():
                        if key.startswith("SCHILY.xattr."):
                            os.setxattr(fd, key[len("SCHILY.xattr."):], value.encode("utf-8", "surrogateescape"))
                finally:
                    os.close(fd)
            else:
                raise ContainerError(f"{what}: {name[:200]} is a device or FIFO, which images may not carry")
        finally:
            os.close(dfd)


# ---------------------------------------------------------------------------------------------- housekeeping

def list_images(repo: Repo) -> dict[str, str]:
    """imgref text -> merge commit of every imported image."""
    from hybridos.container.imgref import unescape_ref

    return {unescape_ref(r[len(IMAGE_REF_PREFIX):]): c for r, c in repo.list_refs(IMAGE_REF_PREFIX).items()}


def prune_images(repo: Repo, deployed: set[str]) -> int:
    """Remove the refs of imported images whose merge commit no deployment uses, then their unused layer
    refs (ostree-ext prunes images the same way), so a prune can free them; returns the refs removed."""
    removed = 0
    for name, merge in list_images(repo).items():
        if merge not in deployed:
            repo.set_ref(image_ref(ImageReference.parse(name)), None)
            removed += 1
    return removed + prune_layers(repo)


def prune_layers(repo: Repo) -> int:
    """Remove blob refs no imported image uses any more; returns how many were removed."""
    used: set[str] = set()
    for _name, merge in list_images(repo).items():
        img = stored_image(repo, merge)
        if img is not None:
            used |= {blob_ref(d) for d in img.config.diff_ids}
    removed = 0
    for r in repo.list_refs(BLOB_REF_PREFIX):
        if r not in used:
            repo.set_ref(r, None)
            removed += 1
    return removed


def describe(img: StoredImage) -> dict:
    return {"digest": img.manifest_digest, "base-commit": img.base_commit,
            "version": img.config.labels.get("org.opencontainers.image.version"),
            "layers": len(img.manifest.layers), "created": img.config.created}



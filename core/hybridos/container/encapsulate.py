"""Encapsulate an OSTree commit as a chunked OCI image (ostree-ext's current format).

The commit layer comes first (the commit, its metadata objects and every content object no package owns),
then one layer per chunk of packages (their content objects, each with hardlinks at its checkout paths).
Layers are deterministic, so a package that did not change yields the same layer blob in the next build and
clients (and registries) reuse it.
"""

from __future__ import annotations

import datetime
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from hybridos.container import chunking
from hybridos.container.oci import (
    GOARCH,
    GZIP_LEVEL,
    MEDIA_CONFIG,
    MEDIA_LAYER_GZIP,
    MEDIA_MANIFEST,
    Descriptor,
    Manifest,
    OciLayoutWriter,
    canonical_json,
)
from hybridos.container.tarlayer import REPO_CONFIG, LayerTar
from hybridos.errors import NotFoundError, UsageError
from hybridos.ostree.objects import ObjectType
from hybridos.ostree.repo import Repo

IMPORTER_NAME = "hybridos"


@dataclass
class EncapsulateResult:
    manifest: Manifest
    manifest_digest: str
    layers: list[tuple[str, str]] = field(default_factory=list)  #: (description, blob digest)


@dataclass
class _Tree:
    dirs: list[tuple[str, str, str]] = field(default_factory=list)        #: (path, dirtree, dirmeta)
    paths: dict[str, list[str]] = field(default_factory=dict)             #: content checksum -> paths


def walk_commit(repo: Repo, commit) -> _Tree:
    """Every directory and file of a commit, iteratively (deep trees cannot exhaust the stack)."""
    out = _Tree()
    stack = [("", commit.root_tree, commit.root_meta)]
    while stack:
        path, tree_csum, meta_csum = stack.pop()
        out.dirs.append((path, tree_csum, meta_csum))
        tree = repo.load_dirtree(tree_csum)
        for name, csum in tree.files:
            out.paths.setdefault(csum, []).append(f"{path}/{name}" if path else name)
        for name, t, m in reversed(tree.dirs):
            stack.append((f"{path}/{name}" if path else name, t, m))
    return out


def container_path(path: str) -> str:
    """Where a commit path appears to a container: ``usr/etc`` is ``etc``."""
    if path == "usr/etc" or path.startswith("usr/etc/"):
        return path[4:]
    return path


def encapsulate(repo: Repo, rev: str, layout_dir: str | Path, tag: str | None = None, *,
                labels: dict[str, str] | None = None, cmd: list[str] | None = None, max_layers: int = 64,
                previous: Manifest | None = None, arch: str | None = None,
                created: str | None = None, compression_level: int = GZIP_LEVEL) -> EncapsulateResult:
    """Write the image of commit ``rev`` into the OCI layout ``layout_dir`` (tagged ``tag``)."""
    if max_layers < 1:
        raise UsageError("--max-layers must be at least 1")
    checksum = repo.resolve_rev(rev)
    commit = repo.load_commit(checksum)
    tree = walk_commit(repo, commit)
    owners = chunking.package_owners(repo, checksum, tree.paths)
    chunks = chunking.pack(owners, max_layers - 1, previous)
    in_chunk = {csum for ch in chunks for csum in ch.objects}
    writer = OciLayoutWriter(layout_dir)

    layer_descs: list[Descriptor] = []
    diff_ids: list[str] = []
    history: list[dict] = []
    created = created or datetime.datetime.fromtimestamp(commit.timestamp, datetime.UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    result = EncapsulateResult(manifest=None, manifest_digest="")  # type: ignore[arg-type]

    def add_layer(description: str, fill, annotations: dict[str, str] | None = None) -> None:
        sink = writer.sink(gzip=True, level=compression_level)
        try:
            lt = LayerTar(sink)
            fill(lt)
            lt.close()
            digest, size, diff_id = sink.close_blob()
        except BaseException:
            sink.discard()
            raise
        layer_descs.append(Descriptor(MEDIA_LAYER_GZIP, digest, size, annotations or {}))
        diff_ids.append(diff_id)
        history.append({"created": created, "created_by": "hybridos compose container-encapsulate",
                        "comment": description})
        result.layers.append((description, digest))

    def content(lt: LayerTar, csum: str) -> None:
        header, stream = repo.open_content(csum)
        try:
            obj = lt.content_object(csum, header, stream)
        finally:
            if stream is not None:
                stream.close()
        for p in sorted(tree.paths[csum]):
            if header.is_regular and header.size == 0:
                lt.data(container_path(p), b"", header.mode)  # empty files: no link (link-count limits)
            else:
                lt.hardlink(container_path(p), obj)

    def commit_layer(lt: LayerTar) -> None:
        root_meta = repo.load_dirmeta(commit.root_meta)
        lt.directory("./", root_meta.uid, root_meta.gid, root_meta.mode, root_meta.xattrs)
        lt.skeleton()
        lt.data("sysroot/ostree/repo/config", REPO_CONFIG)
        lt.metadata_object(checksum, ObjectType.COMMIT, repo.read_metadata_bytes(checksum, ObjectType.COMMIT))
        try:
            lt.metadata_object(checksum, ObjectType.COMMIT_META,
                               repo.read_metadata_bytes(checksum, ObjectType.COMMIT_META))
        except NotFoundError:  # no detached metadata
            pass
        seen_meta: set[str] = set()
        has_var_tmp = False
        for path, tree_csum, meta_csum in tree.dirs:
            for csum, otype in ((tree_csum, ObjectType.DIR_TREE), (meta_csum, ObjectType.DIR_META)):
                if csum not in seen_meta:
                    seen_meta.add(csum)
                    lt.metadata_object(csum, otype, repo.read_metadata_bytes(csum, otype))
            if not path or path == "sysroot" or path.startswith("sysroot/"):
                continue  # the root was written first; the commit's own sysroot/ would shadow the repo
            has_var_tmp = has_var_tmp or path == "var/tmp"
            meta = repo.load_dirmeta(meta_csum)
            lt.directory("./" + container_path(path), meta.uid, meta.gid, meta.mode, meta.xattrs)
        if not has_var_tmp:
            lt.directory("./var/tmp", mode=0o1777)
        for csum in sorted(tree.paths):
            if csum not in in_chunk:
                content(lt, csum)

    add_layer(commit.subject or f"ostree export of commit {checksum}", commit_layer)
    for ch in chunks:
        def fill(lt: LayerTar, ch=ch) -> None:
            lt.skeleton()
            for csum in sorted(ch.objects):
                content(lt, csum)
        add_layer(ch.name, fill, {"ostree.components": ",".join(sorted(ch.components))})

    meta = commit.metadata
    all_labels = {"ostree.commit": checksum, "ostree.final-diffid": diff_ids[-1]}
    if isinstance(meta.get("version"), str):
        all_labels["org.opencontainers.image.version"] = meta["version"]
    if "ostree.bootable" in meta:
        all_labels["ostree.bootable"] = "true" if meta["ostree.bootable"] else "false"
        all_labels["containers.bootc"] = "1"
    if isinstance(meta.get("ostree.linux"), str):
        all_labels["ostree.linux"] = meta["ostree.linux"]
    all_labels.update(labels or {})
    if cmd is None and isinstance(meta.get("ostree.container-cmd"), list):
        cmd = [str(x) for x in meta["ostree.container-cmd"]]
    goarch = GOARCH.get(arch or _commit_arch(meta), arch or "amd64")
    config = {"created": created, "architecture": goarch, "os": "linux",
              "config": {"Labels": all_labels, **({"Cmd": cmd} if cmd else {})},
              "rootfs": {"type": "layers", "diff_ids": diff_ids}, "history": history}
    cdigest, csize = writer.write_blob(canonical_json(config))
    manifest = Manifest(Descriptor(MEDIA_CONFIG, cdigest, csize), tuple(layer_descs), all_labels)
    mbytes = json.dumps(manifest.to_json(), sort_keys=True, separators=(",", ":")).encode()
    mdigest, msize = writer.write_blob(mbytes)
    writer.set_manifest(Descriptor(MEDIA_MANIFEST, mdigest, msize), tag)
    result.manifest, result.manifest_digest = manifest, mdigest
    return result


def _commit_arch(meta: dict) -> str:
    from hybridos.arch import Architecture

    for key in ("rpmostree.arch", "hybridos.arch", "ostree.arch"):
        if isinstance(meta.get(key), str):
            return meta[key]
    return Architecture.host().value


def encapsulate_to(repo: Repo, rev: str, imgref, **kw) -> EncapsulateResult:
    """Encapsulate into any destination: ``oci:`` directly, others through a temporary layout and skopeo."""
    from hybridos.container.imgref import Transport
    from hybridos.container.skopeo import copy_image

    if imgref.transport is Transport.OCI:
        path, _, tag = imgref.name.partition(":")
        return encapsulate(repo, rev, path, tag or None, **kw)
    with tempfile.TemporaryDirectory(prefix="hybridos-oci-", dir=repo.path / "tmp") as tmp:
        result = encapsulate(repo, rev, tmp, "latest", **kw)
        copy_image(f"oci:{tmp}:latest", imgref.skopeo)
        return result

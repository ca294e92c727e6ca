"""Which content objects go into which layer: chunks of packages, sized like rpm-ostree's packing.

Objects are owned by the package whose file list names one of their paths (the commit's rpmdb); the
largest packages get a layer each and the rest share the last one. With the previous build's manifest, every
package keeps the layer it had (its ``ostree.components`` annotation), new packages join the last layer,
so layers of unchanged packages stay byte-identical and clients download only what changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hybridos.container.oci import Manifest
from hybridos.ostree.repo import Repo


@dataclass
class Chunk:
    name: str
    components: set[str] = field(default_factory=set)
    objects: set[str] = field(default_factory=set)
    size: int = 0


def _rpm_path_to_commit(path: str) -> str:
    p = path.lstrip("/")
    if p == "etc" or p.startswith("etc/"):
        return "usr/" + p
    return p


def package_owners(repo: Repo, checksum: str, paths: dict[str, list[str]]) -> dict[str, tuple[str, int]]:
    """content checksum -> (owning package name, package size) for every object a package owns."""
    from hybridos.sysroot.pkgdiff import headers_of_commit

    headers = headers_of_commit(repo, checksum)
    by_path: dict[str, tuple[str, int]] = {}
    for h in sorted(headers, key=lambda h: h.name):
        for f in h.file_entries:
            by_path.setdefault(_rpm_path_to_commit(f.path), (h.name, h.size))
    dir_owner: dict[str, tuple[str, int]] = {}
    for path, owner in by_path.items():
        parent = path.rpartition("/")[0]
        if parent.count("/") >= 3:
            dir_owner.setdefault(parent, owner)
    owners: dict[str, tuple[str, int]] = {}
    for csum, ps in paths.items():
        for p in sorted(ps):
            if p in by_path:
                owners[csum] = by_path[p]
                break
        else:
            owner = _generated_owner(ps, by_path, dir_owner)
            if owner is not None:
                owners[csum] = owner
    return owners


def _generated_owner(paths: list[str], by_path: dict[str, tuple[str, int]],
                     dir_owner: dict[str, tuple[str, int]]) -> tuple[str, int] | None:
    """Files made at compose time inside a package's own directory (the initramfs beside the kernel in
    ``usr/lib/modules/KVER``) travel with that package, as rpm-ostree attributes them; anything else stays in
    the commit layer. Only directories at least four levels deep count, so ``usr/lib`` is nobody's."""
    for p in sorted(paths):
        parts = p.split("/")
        for depth in range(len(parts) - 1, 3, -1):
            d = "/".join(parts[:depth])
            owner = by_path.get(d) or dir_owner.get(d)
            if owner is not None:
                return owner
    return None


def previous_assignment(previous: Manifest | None) -> list[set[str]]:
    """The package sets of the previous build's component layers, in order."""
    if previous is None:
        return []
    out = []
    for layer in previous.layers[1:]:
        comps = layer.annotations.get("ostree.components")
        if comps:
            out.append(set(comps.split(",")))
    return out


def pack(owners: dict[str, tuple[str, int]], max_chunks: int, previous: Manifest | None = None) -> list[Chunk]:
    """Group the owned objects into at most ``max_chunks`` chunks (none when fewer than 1 is allowed)."""
    if max_chunks < 1 or not owners:
        return []
    packages: dict[str, Chunk] = {}
    for csum, (name, size) in owners.items():
        ch = packages.setdefault(name, Chunk(name, {name}, set(), size))
        ch.objects.add(csum)
    prior = previous_assignment(previous)
    groups: list[set[str]] = []
    if prior:
        placed: set[str] = set()
        for comps in prior[:max_chunks]:
            keep = comps & packages.keys()
            if keep:
                groups.append(keep)
                placed |= keep
        new = set(packages) - placed
        if new:
            if len(groups) < max_chunks:
                groups.append(new)
            else:
                groups[-1] |= new
    else:
        by_size = sorted(packages.values(), key=lambda c: (-c.size, c.name))
        if len(by_size) <= max_chunks:
            groups = [{c.name} for c in by_size]
        else:
            groups = [{c.name} for c in by_size[:max_chunks - 1]]
            groups.append({c.name for c in by_size[max_chunks - 1:]})
    chunks = []
    for g in groups:
        names = sorted(g)
        ch = Chunk(names[0] if len(names) == 1 else f"{names[0]} and {len(names) - 1} more", set(g))
        for n in names:
            ch.objects |= packages[n].objects
            ch.size += packages[n].size
        chunks.append(ch)
    return chunks

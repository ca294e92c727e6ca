"""Origin files (``<commit>.<serial>.origin``): where a deployment came from and what was asked on top of it.

The keys are rpm-ostree's, so an origin written by either tool reads the same in both::

    [origin]            refspec=REMOTE:REF (baserefspec= when packages are layered), override-commit=CHECKSUM,
                        or container-image-reference=ostree-unverified-registry:NAME (a container image base)
    [packages]          requested=a;b;  requested-local=SHA256:NEVRA;  requested-local-fileoverride=SHA256:NEVRA;
    [overrides]         remove=a;  replace-local=SHA256:NEVRA;
    [rpmostree]         regenerate-initramfs=true  initramfs-args=--add;x;  initramfs-etc=/etc/a;/etc/b;
    [libostree-transient] pinned=true
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from hybridos.errors import ConfigError, FormatError
from hybridos.sysroot import keyfile

_KNOWN = {
    ("origin", "refspec"), ("origin", "baserefspec"), ("origin", "override-commit"),
    ("origin", "container-image-reference"),
    ("packages", "requested"), ("packages", "requested-local"), ("packages", "requested-local-fileoverride"),
    ("rpmostree", "initramfs-etc"),
    ("overrides", "remove"), ("overrides", "replace-local"),
    ("rpmostree", "regenerate-initramfs"), ("rpmostree", "initramfs-args"),
    ("libostree-transient", "pinned"),
}


@dataclass(frozen=True)
class Refspec:
    """``[REMOTE:]REF``; ``remote`` is None for a local ref."""

    remote: str | None
    ref: str

    @classmethod
    def parse(cls, text: str) -> Refspec:
        text = text.strip()
        remote, sep, ref = text.partition(":")
        if not sep:
            remote, ref = None, text
        if not ref or (sep and not remote) or any(c.isspace() for c in text):
            raise ConfigError(f"invalid refspec {text!r}: expected [REMOTE:]REF")
        return cls(remote, ref)

    def __str__(self) -> str:
        return f"{self.remote}:{self.ref}" if self.remote else self.ref


@dataclass(frozen=True)
class Origin:
    refspec: str
    override_commit: str | None = None
    requested_packages: tuple[str, ...] = ()
    requested_local_packages: tuple[str, ...] = ()
    #: local packages installed with --force-replacefiles (their files may replace other packages' files)
    requested_local_fileoverride: tuple[str, ...] = ()
    removals: tuple[str, ...] = ()
    local_replacements: tuple[str, ...] = ()
    regenerate_initramfs: bool = False
    initramfs_args: tuple[str, ...] = ()
    pinned: bool = False
    #: files of /etc carried into an initramfs overlay (``initramfs-etc --track``)
    initramfs_etc: tuple[str, ...] = ()
    #: the base is this container image (``refspec`` is then empty), as rpm-ostree's origins say
    container_image_reference: str | None = None
    #: keys this module does not interpret, kept as (group, key, raw value) so a rewrite loses nothing
    extra: tuple[tuple[str, str, str], ...] = field(default=(), compare=False)

    @property
    def ref(self) -> Refspec:
        if self.container_image_reference:
            from hybridos.errors import SysrootError

            raise SysrootError(f"the deployment's base is the container image {self.container_image_reference}, "
                               "not an OSTree ref")
        return Refspec.parse(self.refspec)

    @property
    def source(self) -> str:
        """What the deployment follows: the container image reference or the refspec."""
        return self.container_image_reference or self.refspec

    @property
    def is_layered(self) -> bool:
        return bool(self.requested_packages or self.requested_local_packages or self.removals
                    or self.local_replacements or self.regenerate_initramfs or self.requested_local_fileoverride
                    or self.initramfs_etc)

    def replace(self, **changes) -> Origin:
        return dataclasses.replace(self, **changes)


def parse_origin(data: bytes) -> Origin:
    """Parse an origin file; ConfigError says what is wrong (the caller adds the path)."""
    try:
        kf = keyfile.parse(data)
        refspec = kf.get_string("origin", "refspec") or kf.get_string("origin", "baserefspec")
        image = kf.get_string("origin", "container-image-reference") or None
        if image:
            from hybridos.container.imgref import OstreeImageReference
            from hybridos.errors import UsageError

            try:
                OstreeImageReference.parse(image)
            except UsageError as exc:
                raise ConfigError(f"[origin] container-image-reference: {exc}") from None
            refspec = ""
        elif not refspec:
            raise ConfigError("no [origin] refspec=, baserefspec= or container-image-reference=")
        else:
            Refspec.parse(refspec)
        origin = Origin(
            refspec=refspec,
            container_image_reference=image,
            override_commit=kf.get_string("origin", "override-commit") or None,
            requested_packages=kf.get_list("packages", "requested"),
            requested_local_packages=kf.get_list("packages", "requested-local"),
            requested_local_fileoverride=kf.get_list("packages", "requested-local-fileoverride"),
            initramfs_etc=kf.get_list("rpmostree", "initramfs-etc"),
            removals=kf.get_list("overrides", "remove"),
            local_replacements=kf.get_list("overrides", "replace-local"),
            regenerate_initramfs=kf.get_bool("rpmostree", "regenerate-initramfs"),
            initramfs_args=kf.get_list("rpmostree", "initramfs-args"),
            pinned=kf.get_bool("libostree-transient", "pinned"),
            extra=tuple((g, k, v) for g, kv in kf.groups.items() for k, v in kv.items() if (g, k) not in _KNOWN),
        )
    except FormatError as exc:
        raise ConfigError(str(exc)) from None
    return origin


def serialize_origin(origin: Origin) -> bytes:
    kf = keyfile.KeyFile()
    if origin.container_image_reference:
        kf.set_string("origin", "container-image-reference", origin.container_image_reference)
    else:
        kf.set_string("origin", "baserefspec" if origin.is_layered else "refspec", origin.refspec)
    if origin.override_commit:
        kf.set_string("origin", "override-commit", origin.override_commit)
    for group, key, values in (
        ("packages", "requested", origin.requested_packages),
        ("packages", "requested-local", origin.requested_local_packages),
        ("packages", "requested-local-fileoverride", origin.requested_local_fileoverride),
        ("overrides", "remove", origin.removals),
        ("overrides", "replace-local", origin.local_replacements),
    ):
        if values:
            kf.set_list(group, key, values)
    if origin.regenerate_initramfs:
        kf.set_bool("rpmostree", "regenerate-initramfs", True)
        if origin.initramfs_args:
            kf.set_list("rpmostree", "initramfs-args", origin.initramfs_args)
    if origin.initramfs_etc:
        kf.set_list("rpmostree", "initramfs-etc", origin.initramfs_etc)
    for group, key, raw in origin.extra:
        kf.groups.setdefault(group, {})[key] = raw
    if origin.pinned:
        kf.set_bool("libostree-transient", "pinned", True)
    return keyfile.serialize(kf)

"""Image references as ostree-ext and rpm-ostree write them, and ostree-ext's ref escaping (pure functions).

``ostree-unverified-registry:quay.io/x/y:tag`` is an :class:`OstreeImageReference`: a signature policy
(:class:`SigVerify`) around an :class:`ImageReference` (transport + name).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from hybridos.errors import UsageError


class Transport(enum.Enum):
    """Where an image lives; the value is the prefix without its colon."""

    REGISTRY = "registry"
    OCI = "oci"
    OCI_ARCHIVE = "oci-archive"
    DOCKER_ARCHIVE = "docker-archive"
    CONTAINERS_STORAGE = "containers-storage"
    DIR = "dir"

    @property
    def skopeo_prefix(self) -> str:
        """How skopeo names this transport (``docker://`` for registries)."""
        return "docker://" if self is Transport.REGISTRY else f"{self.value}:"


@dataclass(frozen=True)
class ImageReference:
    transport: Transport
    name: str

    @classmethod
    def parse(cls, text: str) -> ImageReference:
        if text.startswith("docker://"):
            return cls(Transport.REGISTRY, _nonempty(text[len("docker://"):], text))
        prefix, sep, rest = text.partition(":")
        if not sep:
            raise UsageError(f"invalid image reference {text!r}: expected TRANSPORT:NAME "
                             "(registry:, docker://, oci:, oci-archive:)")
        try:
            transport = Transport(prefix)
        except ValueError:
            raise UsageError(f"invalid image reference {text!r}: unknown transport {prefix!r}") from None
        return cls(transport, _nonempty(rest, text))

    def __str__(self) -> str:
        return f"{self.transport.value}:{self.name}"

    @property
    def skopeo(self) -> str:
        """The reference as skopeo and its image proxy take it."""
        return self.transport.skopeo_prefix + self.name


class SigVerify(enum.Enum):
    UNVERIFIED = "ostree-unverified-image"
    REMOTE = "ostree-remote-image"
    IMAGE_SIGNED = "ostree-image-signed"


@dataclass(frozen=True)
class OstreeImageReference:
    sigverify: SigVerify
    imgref: ImageReference
    remote: str | None = None  #: the ostree remote whose keys check the commit (ostree-remote-image)

    @classmethod
    def parse(cls, text: str) -> OstreeImageReference:
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
            raise UsageError("invalid image reference: it contains control characters")
        head, sep, rest = text.partition(":")
        if not sep:
            raise UsageError(f"invalid container image reference {text!r}")
        if head == "ostree-unverified-registry":
            return cls(SigVerify.UNVERIFIED, ImageReference(Transport.REGISTRY, _nonempty(rest, text)))
        if head == "ostree-remote-registry":
            remote, sep, name = rest.partition(":")
            if not sep or not remote:
                raise UsageError(f"invalid image reference {text!r}: expected ostree-remote-registry:REMOTE:NAME")
            return cls(SigVerify.REMOTE, ImageReference(Transport.REGISTRY, _nonempty(name, text)), remote)
        if head == SigVerify.UNVERIFIED.value:
            return cls(SigVerify.UNVERIFIED, ImageReference.parse(rest))
        if head == SigVerify.IMAGE_SIGNED.value:
            return cls(SigVerify.IMAGE_SIGNED, ImageReference.parse(rest))
        if head == SigVerify.REMOTE.value:
            remote, sep, img = rest.partition(":")
            if not sep or not remote:
                raise UsageError(f"invalid image reference {text!r}: expected ostree-remote-image:REMOTE:TRANSPORT:NAME")
            return cls(SigVerify.REMOTE, ImageReference.parse(img), remote)
        raise UsageError(f"invalid container image reference {text!r}: expected ostree-unverified-registry:, "
                         "ostree-unverified-image:, ostree-remote-registry: or ostree-remote-image:")

    def __str__(self) -> str:
        """The display form rpm-ostree uses (registry images in their short forms)."""
        if self.imgref.transport is Transport.REGISTRY:
            if self.sigverify is SigVerify.UNVERIFIED:
                return f"ostree-unverified-registry:{self.imgref.name}"
            if self.sigverify is SigVerify.REMOTE:
                return f"ostree-remote-registry:{self.remote}:{self.imgref.name}"
        if self.sigverify is SigVerify.REMOTE:
            return f"{self.sigverify.value}:{self.remote}:{self.imgref}"
        return f"{self.sigverify.value}:{self.imgref}"


_PREFIXES = ("ostree-unverified-registry:", "ostree-remote-registry:", "ostree-unverified-image:",
             "ostree-remote-image:", "ostree-image-signed:")


def is_container_refspec(text: str) -> bool:
    """Whether a rebase target names a container image (rpm-ostree's classification)."""
    return text.startswith(_PREFIXES)


def _nonempty(name: str, text: str) -> str:
    if not name:
        raise UsageError(f"invalid image reference {text!r}: the image name is empty")
    return name


# ---------------------------------------------------------------------------------------------- refescape

_HEX = "0123456789ABCDEF"


def escape_ref(text: str) -> str:
    """ostree-ext's refescape: an arbitrary string as a valid ref path (alnum kept, '-' kept except where it
    would start a component, '/' kept only between alphanumerics, '_' doubled, anything else as ``_XX_`` with upper-case hex of each UTF-8 byte)."""
    out: list[str] = []
    chars = list(text)
    for i, c in enumerate(chars):
        prev_ok = i > 0 and _alnum(chars[i - 1])
        next_ok = i + 1 < len(chars) and _alnum(chars[i + 1])
        if _alnum(c) or (c == "-" and out and out[-1] != "/") or (c == "/" and prev_ok and next_ok):
            out.append(c)
        elif c == "_":
            out.append("__")
        else:
            out.extend(f"_{b:02X}_" for b in c.encode())
    return "".join(out)


_UNESCAPE = re.compile(r"__|_([0-9A-F]{2})_")


def unescape_ref(text: str) -> str:
    """The inverse of :func:`escape_ref`."""
    raw = bytearray()
    pos = 0
    for m in _UNESCAPE.finditer(text):
        raw += text[pos:m.start()].encode()
        raw += b"_" if m.group(0) == "__" else bytes([int(m.group(1), 16)])
        pos = m.end()
    raw += text[pos:].encode()
    return raw.decode("utf-8", errors="replace")


def _alnum(c: str) -> bool:
    return c.isascii() and c.isalnum()


BLOB_REF_PREFIX = "ostree/container/blob/"
IMAGE_REF_PREFIX = "ostree/container/image/"


def blob_ref(diff_id: str) -> str:
    """The ref holding the commit of one imported layer, named by its uncompressed digest (diff_id)."""
    return BLOB_REF_PREFIX + escape_ref(diff_id)


def image_ref(imgref: ImageReference) -> str:
    """The ref holding an imported image's merge commit."""
    return IMAGE_REF_PREFIX + escape_ref(str(imgref))

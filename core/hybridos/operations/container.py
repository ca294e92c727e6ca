"""Rebase onto and upgrade from OSTree-native container images (rpm-ostree's ``ostree-unverified-registry:``
and friends): the image is imported into the sysroot's repository and its merge commit deployed like any base,
with the origin's ``container-image-reference``; layered packages go on top as on an OSTree base."""

from __future__ import annotations

from hybridos.container.imgref import OstreeImageReference, SigVerify
from hybridos.errors import Unchanged
from hybridos.sysroot.sysroot import Sysroot
from hybridos.sysroot.transaction import Transaction


def _authfile(sysroot: Sysroot) -> str | None:
    from hybridos.container.skopeo import auth_file

    return auth_file(sysroot.path)


def _keyring_check(sysroot: Sysroot):
    """For ``ostree-remote-image:REMOTE:...``: the commit's detached signatures checked with REMOTE's keys."""
    def check(ref: OstreeImageReference, commit: str, commit_bytes: bytes, commitmeta: bytes | None) -> None:
        from hybridos import gvariant
        from hybridos.errors import FormatError, SignatureError
        from hybridos.ostree import sign
        from hybridos.ostree.remotes import get_remote

        remote = get_remote(sysroot.repo.config, ref.remote)
        source = f'remote "{remote.name}"'
        if not (remote.sign_verify or remote.requires_gpg):
            raise SignatureError(f"{ref}: {source} has no signature verification configured, so the image's "
                                 "commit cannot be checked", hint="configure gpg-verify or sign-verify on the "
                                 "remote, or use ostree-unverified-image:")
        try:
            meta = gvariant.parse_vardict(commitmeta) if commitmeta is not None else None
        except FormatError as exc:
            raise SignatureError(f"{ref}: the detached metadata of commit {commit} is malformed: {exc}") from None
        if remote.sign_verify:
            sign.verify_commit(commit, commit_bytes, meta, remote.public_keys("ed25519"), source)
        if remote.requires_gpg:
            from hybridos.ostree import gpg

            gpg.verify_commit(commit, commit_bytes, meta, gpg.remote_keyring(sysroot.repo, remote), source,
                              remote.name)
    return check


def deployed_digest(sysroot: Sysroot, checksum: str) -> str | None:
    """The manifest digest of the image a deployment's base came from (None for an OSTree base)."""
    from hybridos.container.store import stored_image

    commit = sysroot.repo.load_commit(checksum)
    if commit.metadata.get("rpmostree.clientlayer") and commit.parent:
        checksum = commit.parent
    img = stored_image(sysroot.repo, checksum)
    return img.manifest_digest if img else None


def pull(sysroot: Sysroot, tx: Transaction, image: str):
    """Import ``image`` (an ostree image reference) into the sysroot's repository; returns PulledImage."""
    from hybridos.container.store import pull_image

    ref = OstreeImageReference.parse(image)
    check = _keyring_check(sysroot) if ref.sigverify is SigVerify.REMOTE else None
    return pull_image(sysroot.repo, ref, authfile=_authfile(sysroot), progress=tx.message, keyring_check=check)


def check_update(sysroot: Sysroot, image: str, current_digest: str | None) -> tuple[str, str | None]:
    """(new manifest digest, its version) without downloading layers; Unchanged when the digest is the same."""
    from hybridos.container.store import pull_image

    ref = OstreeImageReference.parse(image)
    digest, manifest, config = pull_image(sysroot.repo, ref, authfile=_authfile(sysroot), check_only=True,
                                          current_digest=current_digest)
    if config is None:
        raise Unchanged(f"No upgrade available: {image} is still {digest}")
    labels = {**manifest.annotations, **config.labels}
    return digest, labels.get("org.opencontainers.image.version")

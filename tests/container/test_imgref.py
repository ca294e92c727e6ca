"""Image references and ostree-ext's ref escaping (pure functions)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridos.container.imgref import (
    ImageReference,
    OstreeImageReference,
    SigVerify,
    Transport,
    escape_ref,
    image_ref,
    is_container_refspec,
    unescape_ref,
)
from hybridos.errors import UsageError
from hybridos.ostree.refs import validate_ref


def test_the_forms_rpm_ostree_accepts():
    r = OstreeImageReference.parse("ostree-unverified-registry:quay.io/fedora/fedora-coreos:stable")
    assert (r.sigverify, r.imgref.transport, r.imgref.name) == (
        SigVerify.UNVERIFIED, Transport.REGISTRY, "quay.io/fedora/fedora-coreos:stable")
    assert r.imgref.skopeo == "docker://quay.io/fedora/fedora-coreos:stable"
    assert str(r) == "ostree-unverified-registry:quay.io/fedora/fedora-coreos:stable"
    same = OstreeImageReference.parse("ostree-unverified-image:docker://quay.io/fedora/fedora-coreos:stable")
    assert same == r and str(same) == str(r)
    local = OstreeImageReference.parse("ostree-unverified-image:oci:/var/tmp/img.oci:v1")
    assert (local.imgref.transport, local.imgref.skopeo) == (Transport.OCI, "oci:/var/tmp/img.oci:v1")
    signed = OstreeImageReference.parse("ostree-remote-image:fedora:registry:quay.io/x/y:z")
    assert (signed.sigverify, signed.remote, str(signed)) == (SigVerify.REMOTE, "fedora",
                                                              "ostree-remote-registry:fedora:quay.io/x/y:z")
    assert is_container_refspec("ostree-unverified-registry:x") and not is_container_refspec("fedora:fedora/x")


@pytest.mark.parametrize("bad", ["ostree-unverified-registry:", "ostree-unverified-image:nosuch:x",
                                 "ostree-remote-image:registry:x", "quay.io/x", "ostree-unverified-image:oci:",
                                 "ostree-unverified-registry:a\nb"])
def test_malformed_references_are_usage_errors(bad):
    with pytest.raises(UsageError):
        OstreeImageReference.parse(bad)


def test_escaping_matches_ostree_ext():
    assert image_ref(ImageReference.parse("registry:quay.io/coreos/fedora:latest")) == \
        "ostree/container/image/registry_3A_quay_2E_io/coreos/fedora_3A_latest"
    assert escape_ref("a_b") == "a__b"
    assert escape_ref("/x//y/") == "_2F_x_2F__2F_y_2F_"


@settings(max_examples=300, derandomize=True, deadline=None)
@given(st.text(min_size=1, max_size=60))
def test_escaping_roundtrips_and_makes_valid_refs(text):
    esc = escape_ref(text)
    assert unescape_ref(esc) == text
    validate_ref("ostree/container/image/" + esc)

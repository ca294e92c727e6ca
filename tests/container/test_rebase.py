"""rebase/upgrade/status with container images: a local registry, a sysroot that rebases onto an image we
encapsulated, upgrades fetching only new layers, derived images and hostile ones."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import tarfile
from pathlib import Path

from tests.conftest import run_cli
from tests.container.conftest import deployment_dir, hyb, status
from tests.container.test_encapsulate import encapsulate, tree_listing

UNCHANGED = 77


def push(container_env, registry, rev: str, tag: str, tmp_path: Path, previous: Path | None = None) -> str:
    img = tmp_path / f"oci-{tag}"
    extra = ("--previous-build-manifest", str(previous)) if previous else ()
    encapsulate(container_env.repo, rev, f"oci:{img}:{tag}", *extra)
    subprocess.run(["skopeo", "--registries-conf", registry.env["CONTAINERS_REGISTRIES_CONF"], "copy", "--quiet",
                    f"oci:{img}:{tag}", f"docker://{registry.host}/testos:latest"], check=True, capture_output=True)
    raw = subprocess.run(["skopeo", "inspect", "--raw", f"oci:{img}:{tag}"], capture_output=True, check=True).stdout
    (tmp_path / f"{tag}.json").write_bytes(raw)
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def test_rebase_upgrade_and_rollback_through_a_registry(container_env, registry, host, tmp_path):
    env = registry.env
    d1 = push(container_env, registry, "testos/v1", "v1", tmp_path)
    image = f"ostree-unverified-registry:{registry.host}/testos:latest"
    out = hyb(host, "rebase", image, env=env)
    assert "ostree chunk layers needed" in out.stdout + out.stderr

    deps = status(host, env)
    new = deps[0]
    assert "origin" not in new and new["container-image-reference"] == image     # rpm-ostree's keys
    assert new["container-image-reference-digest"] == d1
    assert new["version"] == "1"
    text = hyb(host, "status", env=env).stdout
    assert image in text and f"Digest: {d1}" in text
    origin = (deployment_dir(host, new).parent / f"{new['checksum']}.{new['serial']}.origin").read_text()
    assert f"container-image-reference={image}" in origin and "refspec" not in origin

    # the deployment equals one made from the commit directly (v1 deployed from the ref: the old deployment)
    ref_dep = deps[1]
    a = tree_listing(deployment_dir(host, new), skip=("var", "etc", "sysroot", "boot"))
    b = tree_listing(deployment_dir(host, ref_dep), skip=("var", "etc", "sysroot", "boot"))
    assert a == b

    # nothing new: no layer is downloaded
    before = len(registry.blob_gets())
    same = hyb(host, "upgrade", "--unchanged-exit-77", env=env, check=False)
    assert same.returncode == UNCHANGED, same.stderr
    assert "No upgrade available" in same.stdout + same.stderr
    assert len(registry.blob_gets()) == before

    # v2 changes one package: --check reports the digest without fetching layers, upgrade fetches only new layers
    d2 = push(container_env, registry, "testos/v2", "v2", tmp_path, previous=tmp_path / "v1.json")
    m1, m2 = (json.loads((tmp_path / f"{t}.json").read_text()) for t in ("v1", "v2"))
    new_layers = {x["digest"] for x in m2["layers"]} - {x["digest"] for x in m1["layers"]}
    assert 2 <= len(new_layers) < len(m2["layers"])
    check = hyb(host, "upgrade", "--check", env=env)
    assert d2 in check.stdout
    layers = {x["digest"] for x in m1["layers"] + m2["layers"]}
    assert not [d for d in registry.blob_gets()[before:] if d in layers]   # the config only, no layer
    hyb(host, "upgrade", env=env)
    fetched = registry.blob_gets()[before:]
    layer_gets = [d for d in fetched if d in {x["digest"] for x in m2["layers"]}]
    assert sorted(set(layer_gets)) == sorted(new_layers)
    # what a one-package update costs: the changed packages' layers and the commit layer, within 2x the
    # size of the changed files (extra-data's 300 kB payload; testos-release's os-release carries the version)
    fetched_bytes = sum(x["size"] for x in m2["layers"] if x["digest"] in new_layers)
    changed_files = 300_000 + len("2.0")
    print(f"one-package update: {fetched_bytes} bytes of layers for {changed_files} bytes of changed files")
    assert fetched_bytes <= 2 * changed_files
    deps = status(host, env)
    assert deps[0]["version"] == "2" and deps[0]["container-image-reference-digest"] == d2
    assert (deployment_dir(host, deps[0]) / "usr/share/extra-data/version").read_text() == "2.0"

    assert hyb(host, "repo", "refs", "--repo", str(host / "ostree/repo")).stdout.count("ostree/container/") > 1
    hyb(host, "rollback", env=env)
    assert status(host, env)[0]["container-image-reference-digest"] == d1

    # back to an OSTree ref
    hyb(host, "rebase", ":testos/v2", env=env)
    back = status(host, env)[0]
    assert back["origin"] == "testos/v2" and "container-image-reference" not in back
    # once no deployment uses an image, cleanup drops its refs and layers (ostree-ext prunes the same way)
    hyb(host, "cleanup", "-r", env=env)
    assert all(not d.get("container-image-reference") for d in status(host, env))
    assert "ostree/container/" not in hyb(host, "repo", "refs", "--repo", str(host / "ostree/repo")).stdout


def test_rebase_to_a_derived_image_from_an_oci_directory(container_env, host, tmp_path):
    img = tmp_path / "img"
    encapsulate(container_env.repo, "testos/v1", f"oci:{img}:base")
    extra = tmp_path / "motd"
    extra.write_text("derived layer\n")
    subprocess.run(["umoci", "insert", "--image", f"{img}:base", "--tag", "derived", str(extra),
                    "/usr/share/derived/motd"], check=True, capture_output=True)
    etc = tmp_path / "app.conf"
    etc.write_text("x=1\n")
    subprocess.run(["umoci", "insert", "--image", f"{img}:derived", str(etc), "/etc/app.conf"], check=True,
                   capture_output=True)
    hyb(host, "rebase", f"ostree-unverified-image:oci:{img}:derived")
    dep = status(host)[0]
    root = deployment_dir(host, dep)
    assert (root / "usr/share/derived/motd").read_text() == "derived layer\n"
    assert (root / "usr/etc/app.conf").read_text() == "x=1\n" and (root / "etc/app.conf").read_text() == "x=1\n"
    assert (root / "usr/bin/hello").exists()


def _rewrite_image(src: Path, dest: Path, tag: str, *, labels=None, add_member=None, arch=None) -> None:
    """A copy of an OCI layout whose config labels / first layer / architecture were changed by hand."""
    subprocess.run(["cp", "-a", str(src), str(dest)], check=True)
    index = json.loads((dest / "index.json").read_text())
    [entry] = [m for m in index["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == tag]
    blobs = dest / "blobs/sha256"

    def read(d):
        return (blobs / d.split(":")[1]).read_bytes()

    def write(data: bytes) -> tuple[str, int]:
        h = hashlib.sha256(data).hexdigest()
        (blobs / h).write_bytes(data)
        return "sha256:" + h, len(data)

    manifest = json.loads(read(entry["digest"]))
    config = json.loads(read(manifest["config"]["digest"]))
    if labels is not None:
        config["config"]["Labels"] = labels
        manifest["annotations"] = labels
    if arch is not None:
        config["architecture"] = arch
    if add_member is not None:
        layer = gzip.decompress(read(manifest["layers"][-1]["digest"]))
        buf = io.BytesIO()
        with tarfile.open(fileobj=io.BytesIO(layer)) as old, tarfile.open(fileobj=buf, mode="w") as new:
            for m in old.getmembers():
                new.addfile(m, old.extractfile(m) if m.isreg() else None)
            ti = tarfile.TarInfo(add_member)
            ti.size = 4
            new.addfile(ti, io.BytesIO(b"evil"))
        diff = "sha256:" + hashlib.sha256(buf.getvalue()).hexdigest()
        digest, size = write(gzip.compress(buf.getvalue()))
        manifest["layers"][-1].update(digest=digest, size=size)
        config["rootfs"]["diff_ids"][-1] = diff
        config["config"]["Labels"]["ostree.final-diffid"] = diff
        manifest["annotations"]["ostree.final-diffid"] = diff
    cdigest, csize = write(json.dumps(config).encode())
    manifest["config"].update(digest=cdigest, size=csize)
    mdigest, msize = write(json.dumps(manifest).encode())
    entry.update(digest=mdigest, size=msize)
    (dest / "index.json").write_text(json.dumps(index))


def test_hostile_and_foreign_images_are_refused_and_nothing_is_deployed(container_env, host, tmp_path):
    img = tmp_path / "img"
    encapsulate(container_env.repo, "testos/v1", f"oci:{img}:v1")
    before = status(host)

    def refused(ref: str, *words: str) -> None:
        proc = hyb(host, "rebase", ref, check=False)
        assert proc.returncode != 0, proc.stdout
        assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr
        for w in words:
            assert w in proc.stderr, proc.stderr
        assert status(host) == before

    nolabel = tmp_path / "nolabel"
    _rewrite_image(img, nolabel, "v1", labels={"org.opencontainers.image.version": "1"})
    refused(f"ostree-unverified-image:oci:{nolabel}:v1", "ostree.final-diffid")

    escape = tmp_path / "escape"
    _rewrite_image(img, escape, "v1", add_member="../../etc/evil")
    refused(f"ostree-unverified-image:oci:{escape}:v1", "escapes the image")

    foreign = tmp_path / "foreign"
    _rewrite_image(img, foreign, "v1", arch="s390x")
    refused(f"ostree-unverified-image:oci:{foreign}:v1", "s390x")

    tampered = tmp_path / "tampered"
    subprocess.run(["cp", "-a", str(img), str(tampered)], check=True)
    manifest = json.loads(subprocess.run(["skopeo", "inspect", "--raw", f"oci:{tampered}:v1"], capture_output=True,
                                         check=True).stdout)
    blob = tampered / "blobs/sha256" / manifest["layers"][-1]["digest"].split(":")[1]
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    refused(f"ostree-unverified-image:oci:{tampered}:v1")

    refused("ostree-unverified-image:oci:/nonexistent/image:v1")

    # a manifest list that has no image for this architecture
    listed = tmp_path / "listed"
    subprocess.run(["cp", "-a", str(img), str(listed)], check=True)
    index = json.loads((listed / "index.json").read_text())
    [entry] = index["manifests"]
    plist = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": [{"mediaType": entry["mediaType"], "digest": entry["digest"],
                                       "size": entry["size"], "platform": {"architecture": "s390x", "os": "linux"}}]
                        }).encode()
    pdigest = hashlib.sha256(plist).hexdigest()
    (listed / "blobs/sha256" / pdigest).write_bytes(plist)
    index["manifests"] = [{"mediaType": "application/vnd.oci.image.index.v1+json", "digest": f"sha256:{pdigest}",
                           "size": len(plist), "annotations": {"org.opencontainers.image.ref.name": "v1"}}]
    (listed / "index.json").write_text(json.dumps(index))
    refused(f"ostree-unverified-image:oci:{listed}:v1", "amd64")


def test_signed_images_layering_and_other_transports(container_env, registry, host, tmp_path):
    """ostree-remote-image checks the commit with the remote's keys; oci-archive and a direct registry push
    work; packages layer on a container base as on an OSTree base."""
    from hybridos.ostree.sign import generate_keypair

    secret, public = generate_keypair()
    _, stranger = generate_keypair()
    signed = tmp_path / "signed-repo"
    subprocess.run(["ostree", "init", f"--repo={signed}", "--mode=bare"], check=True)
    subprocess.run(["ostree", "pull-local", f"--repo={signed}", str(container_env.repo), "testos/v1"], check=True)
    keys = tmp_path / "keys"
    keys.write_text(secret + "\n")
    run_cli("repo", "sign", "--repo", str(signed), "testos/v1", "--keys-file", str(keys))
    archive = tmp_path / "img.ociarchive"
    encapsulate(signed, "testos/v1", f"oci-archive:{archive}")
    assert archive.is_file()

    hyb(host, "repo", "remote", "add", "--no-gpg-verify", f"--sign-verify=ed25519=inline:{public}", "good",
        "http://127.0.0.1:9/")
    hyb(host, "repo", "remote", "add", "--no-gpg-verify", f"--sign-verify=ed25519=inline:{stranger}", "bad",
        "http://127.0.0.1:9/")
    before = status(host)
    wrong = hyb(host, "rebase", f"ostree-remote-image:bad:oci-archive:{archive}", check=False)
    assert wrong.returncode != 0 and "signature" in wrong.stderr.lower(), wrong.stderr
    assert status(host) == before
    hyb(host, "rebase", f"ostree-remote-image:good:oci-archive:{archive}")
    dep = status(host)[0]
    assert dep["container-image-reference"] == f"ostree-remote-image:good:oci-archive:{archive}"

    # straight to a registry, then layer a package from a local RPM on the container base
    encapsulate(container_env.repo, "testos/v2", f"docker://{registry.host}/direct:latest", env=registry.env)
    image = f"ostree-unverified-registry:{registry.host}/direct:latest"
    hyb(host, "rebase", image, env=registry.env)
    from tests.helpers.rpms import File, Pkg, build_rpm

    rpm = build_rpm(Pkg("container-extra", "1.0", arch="noarch",
                        files=(File("/usr/bin/container-extra", b"#!/bin/sh\necho extra\n", mode=0o755),)),
                    tmp_path / "rpms")
    hyb(host, "install", str(rpm), env=registry.env)
    dep = status(host, registry.env)[0]
    assert dep["container-image-reference"] == image and dep["version"] == "2"
    assert dep["requested-local-packages"] and (deployment_dir(host, dep) / "usr/bin/container-extra").exists()
    origin = (deployment_dir(host, dep).parent / f"{dep['checksum']}.{dep['serial']}.origin").read_text()
    assert f"container-image-reference={image}" in origin
    # the layered deployment still knows its image: nothing new upstream
    same = hyb(host, "upgrade", "--unchanged-exit-77", env=registry.env, check=False)
    assert same.returncode == UNCHANGED, same.stdout + same.stderr

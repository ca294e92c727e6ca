"""compose container-encapsulate: images that skopeo and umoci accept, whose tree is the commit's, chunked by
package so that a rebuild with one package changed changes only that package's layer."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

from tests.conftest import run_cli


def skopeo_inspect(ref: str, *extra: str, env: dict | None = None) -> dict:
    proc = subprocess.run(["skopeo", "inspect", *extra, ref], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def encapsulate(repo: Path, rev: str, dest: str, *extra: str, env: dict | None = None) -> str:
    out = run_cli("compose", "container-encapsulate", "--repo", str(repo), rev, dest, *extra, env=env).stdout
    return out.split("Pushed digest: ")[1].split()[0]


def tree_listing(root: Path, *, skip=("sysroot",)) -> dict[str, tuple]:
    """path -> (type, mode, uid, gid, content or target, user xattrs) of a directory tree."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        dirnames[:] = sorted(d for d in dirnames if not (rel_dir == "." and d in skip))
        for name in [*dirnames, *filenames]:
            p = Path(dirpath) / name
            rel = os.path.normpath(os.path.join(rel_dir, name))
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                body = os.readlink(p)
            elif stat.S_ISREG(st.st_mode):
                body = p.read_bytes()
            else:
                body = None
            xattrs = tuple(sorted((n, os.getxattr(p, n, follow_symlinks=False))
                                  for n in os.listxattr(p, follow_symlinks=False) if n.startswith("user.")))
            out[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, body, xattrs)
    return out


def test_image_passes_skopeo_and_umoci_and_unpacks_to_the_commit(container_env, tmp_path):
    repo = container_env.repo
    # a user xattr on one file survives the trip (commit -> layers -> umoci)
    from hybridos.ostree.repo import Repo
    r = Repo.open(repo)
    co = tmp_path / "co"
    r.checkout(container_env.v1, co, mode="copy")
    os.setxattr(co / "usr/bin/hello", "user.checked", b"yes")
    xcommit = r.commit_tree(co, branch="testos/xattr", metadata=dict(r.load_commit(container_env.v1).metadata))

    img = tmp_path / "img"
    digest = encapsulate(repo, "testos/xattr", f"oci:{img}:v1")
    info = skopeo_inspect(f"oci:{img}:v1")
    assert info["Digest"] == digest
    labels = info["Labels"]
    assert labels["ostree.commit"] == xcommit
    assert labels["ostree.bootable"] == "true" and labels["containers.bootc"] == "1"
    assert labels["org.opencontainers.image.version"] == "1"
    assert labels["ostree.final-diffid"] == skopeo_inspect(f"oci:{img}:v1", "--config")["rootfs"]["diff_ids"][-1]
    manifest = json.loads(subprocess.run(["skopeo", "inspect", "--raw", f"oci:{img}:v1"], capture_output=True,
                                         text=True, check=True).stdout)
    comps = [layer.get("annotations", {}).get("ostree.components") for layer in manifest["layers"]]
    assert comps[0] is None and all(comps[1:]), comps   # the commit layer, then one layer per package chunk
    assert {"hello", "busybox", "extra-data"} <= {c for cs in comps[1:] for c in cs.split(",")}

    bundle = tmp_path / "bundle"
    subprocess.run(["umoci", "unpack", "--image", f"{img}:v1", str(bundle)], check=True, capture_output=True)
    unpacked = tree_listing(bundle / "rootfs", skip=("sysroot", "var"))
    checkout = tree_listing(co, skip=("var", "sysroot"))  # the commit's sysroot/ is the image's repo
    # a container sees usr/etc as /etc
    expected = {("etc" + k[7:] if k.startswith("usr/etc") else k): v for k, v in checkout.items()}
    assert unpacked.keys() == expected.keys()
    assert unpacked == expected
    # files are hardlinks to the objects in the embedded repository
    hello = (bundle / "rootfs/usr/bin/hello").stat()
    assert hello.st_nlink >= 2
    assert unpacked["usr/bin/hello"][5] == (("user.checked", b"yes"),)


def test_one_changed_package_changes_only_its_layer(container_env, tmp_path):
    repo = container_env.repo
    img = tmp_path / "img"
    encapsulate(repo, "testos/v1", f"oci:{img}:v1")
    raw = subprocess.run(["skopeo", "inspect", "--raw", f"oci:{img}:v1"], capture_output=True, text=True,
                         check=True).stdout
    (tmp_path / "v1.json").write_text(raw)
    encapsulate(repo, "testos/v2", f"oci:{img}:v2", "--previous-build-manifest", str(tmp_path / "v1.json"))
    m1, m2 = (json.loads(subprocess.run(["skopeo", "inspect", "--raw", f"oci:{img}:{t}"], capture_output=True,
                                        text=True, check=True).stdout) for t in ("v1", "v2"))
    l1 = {x["annotations"]["ostree.components"]: x["digest"] for x in m1["layers"][1:]}
    l2 = {x["annotations"]["ostree.components"]: x["digest"] for x in m2["layers"][1:]}
    assert l1.keys() == l2.keys()
    changed = sorted(k for k in l1 if l1[k] != l2[k])
    # extra-data changed; compose writes the version into testos-release's os-release, so it changed too
    assert changed == ["extra-data", "testos-release"]
    assert m1["layers"][0]["digest"] != m2["layers"][0]["digest"]   # the commit layer always changes


def test_max_layers_and_bad_arguments(container_env, tmp_path):
    img = tmp_path / "img"
    encapsulate(container_env.repo, "testos/v1", f"oci:{img}:small", "--max-layers", "2")
    info = skopeo_inspect(f"oci:{img}:small")
    assert len(info["Layers"]) == 2
    bad = run_cli("compose", "container-encapsulate", "--repo", str(container_env.repo), "testos/v1",
                  "nosuch:x", check=False)
    assert bad.returncode != 0 and "unknown transport" in bad.stderr and "Traceback" not in bad.stderr
    missing = run_cli("compose", "container-encapsulate", "--repo", str(container_env.repo), "testos/none",
                      f"oci:{img}:x", check=False)
    assert missing.returncode != 0 and missing.stderr.startswith("error: ")

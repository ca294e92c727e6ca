"""upgrade --check, --preview, --download-only then --cache-only, --allow-downgrade; --os; HYBRIDOS_SYSROOT."""

from __future__ import annotations

from tests.sysroot.conftest import STATEROOT, check_consistent, hyb, make_tree, ostree, ostree_commit, status


def _commits(sr):
    return [d["checksum"] for d in status(sr)]


def test_check_preview_download_then_cache_only(host):
    sr, remote, v1 = host
    for opt in ("--check", "--preview"):               # rpm-ostree: exit 77 and these words, without asking
        r = hyb(sr, "upgrade", opt, check=False)
        assert (r.returncode, r.stdout) == (77, "No updates available.\n")
    r = hyb(sr, "upgrade", check=False)
    assert r.returncode == 0 and "no upgrade available" in r.stdout
    v2 = remote.publish("2.0")
    out = hyb(sr, "upgrade", "--check").stdout
    assert "Version: 2.0" in out and v2 in out
    assert _commits(sr) == [v1]
    out = hyb(sr, "upgrade", "--preview").stdout
    assert "1.0 -> 2.0" in out and _commits(sr) == [v1]
    hyb(sr, "upgrade", "--download-only")
    assert _commits(sr) == [v1]
    # no network from here on: the remote's URL points nowhere
    ostree(f"--repo={sr}/ostree/repo", "config", "set", 'remote "origin".url', "http://127.0.0.1:9")
    r = hyb(sr, "upgrade", check=False)
    assert r.returncode != 0 and r.stderr.startswith("error: ") and _commits(sr) == [v1]
    hyb(sr, "upgrade", "--cache-only")
    assert _commits(sr) == [v2, v1]
    check_consistent(sr)


def test_cache_only_without_download(host):
    sr, remote, v1 = host
    remote.publish("2.0")
    hyb(sr, "upgrade", "--check")   # fetches the commit object only
    r = hyb(sr, "upgrade", "--cache-only", check=False)
    assert r.returncode == 1 and "has not been downloaded yet" in r.stderr
    assert _commits(sr) == [v1]


def test_downgrade_needs_allow_downgrade(host):
    sr, remote, v1 = host
    old = remote.publish("0.9", timestamp="2001-01-01 00:00:00 +0000")
    r = hyb(sr, "upgrade", check=False)
    assert r.returncode == 1 and "--allow-downgrade" in r.stderr and _commits(sr) == [v1]
    hyb(sr, "upgrade", "--allow-downgrade")
    assert _commits(sr) == [old, v1]


def test_two_stateroots_and_os_option(host, workdir):
    sr, remote, v1 = host
    hyb(sr, "admin", "os-init", "otheros")
    other = ostree_commit(sr / "ostree/repo", make_tree(workdir / "other", "5.0"), "otheros/local", "5.0")
    hyb(sr, "admin", "deploy", "--os", "otheros", "otheros/local")
    deps = status(sr)
    assert [(d["osname"], d["checksum"]) for d in deps] == [("otheros", other), (STATEROOT, v1)]
    v2 = remote.publish("2.0")
    hyb(sr, "upgrade", "--os", STATEROOT)
    deps = status(sr)
    # the other OS's deployment is kept; the new one becomes the default
    assert [(d["osname"], d["checksum"]) for d in deps] == [(STATEROOT, v2), ("otheros", other), (STATEROOT, v1)]
    titles = sorted(line for p in (sr / "boot/loader/entries").iterdir() for line in p.read_text().splitlines()
                    if line.startswith("title "))
    # as ostree titles entries when several stateroots share the boot menu
    assert titles == ["title Test OS 1.0 (ostree:testos:2)", "title Test OS 2.0 (ostree:testos:0)",
                      "title Test OS 5.0 (ostree:otheros:1)"]
    r = hyb(sr, "upgrade", "--os", "otheros", "--unchanged-exit-77", check=False)
    assert r.returncode == 77    # a local ref that did not move
    check_consistent(sr)


def test_sysroot_from_environment(host):
    from tests.conftest import run_cli

    sr, _, v1 = host
    out = run_cli("status", env={"HYBRIDOS_SYSROOT": str(sr)}).stdout
    assert v1 in out
    assert v1 in run_cli("status", "--sysroot", str(sr)).stdout

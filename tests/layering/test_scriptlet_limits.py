"""Limits of the scriptlet sandbox as a machine configures them, seen through `hybridos install`
(docs/security.md, "Packages and scriptlets")."""

from __future__ import annotations

import time

from tests.layering.conftest import hyb, status


def _commits(host) -> set[str]:
    return {p.name for p in (host / "ostree/repo/objects").rglob("*.commit")}


def _configure(host, text: str) -> None:
    cfg = host / "ostree/repo/config"
    cfg.write_text(cfg.read_text() + text)


def test_configured_timeout_kills_a_sleeping_scriptlet_and_commits_nothing(host):
    """``[hybridos] scriptlet-timeout`` in the sysroot repository's config (the package sleeps 60 s)."""
    _configure(host, "\n[hybridos]\nscriptlet-timeout=2\n")
    before, commits = status(host), _commits(host)
    start = time.monotonic()
    p = hyb(host, "install", "sleeper", check=False)
    took = time.monotonic() - start
    assert p.returncode == 1, p.stderr
    assert "error: sleeper-1.0-1.noarch: %post scriptlet did not finish within 2 s and was killed" in p.stderr
    assert "[hybridos] scriptlet-timeout=SECONDS" in p.stderr   # the hint names the key
    assert took < 45, took
    assert status(host) == before and _commits(host) == commits
    assert not list((host / "ostree/repo/tmp/hybridos").glob("layer-*"))


def test_a_bad_timeout_value_is_a_one_line_config_error(host):
    for value in ("soon", "-1", "0", "1e9", "²"):
        cfg = host / "ostree/repo/config"
        text = cfg.read_text().split("\n[hybridos]")[0]
        cfg.write_text(text + f"\n[hybridos]\nscriptlet-timeout={value}\n")
        p = hyb(host, "install", "layered-tool", check=False)
        assert p.returncode == 1 and "internal error" not in p.stderr, p.stderr
        assert f"[hybridos] scriptlet-timeout={value!r} is not a number of seconds" in p.stderr
        assert len(status(host)) == 1


def _dracut_pkg(tmp_path, body: str):
    """A layered package shipping its own dracut (the base has none), as hostile as any scriptlet."""
    from tests.helpers.rpms import File, Pkg, build_rpm

    script = "#!/bin/sh\nfor out; do :; done\n" + body
    return build_rpm(Pkg("evil-dracut", "1.0", arch="noarch", requires=("busybox",),
                         files=(File("/usr/sbin/dracut", script.encode(), mode=0o755),)), tmp_path)


def test_dracut_runs_in_the_scriptlet_sandbox(host, tmp_path):
    """`initramfs --enable` runs the tree's dracut with the scriptlets' capabilities, no_new_privs, read-only
    /proc/sys and the /usr guard: the base's files (hardlinks into the repository) cannot be changed in place."""
    import subprocess

    from tests.layering.conftest import deployment_dir

    rpm = _dracut_pkg(tmp_path, """
{ grep -E '^(CapEff|NoNewPrivs)' /proc/self/status
  echo "$(cat /proc/sys/kernel/core_pattern)" > /proc/sys/kernel/core_pattern 2>/dev/null && echo SYSCTL-WRITTEN
  echo tampered >> /usr/lib/os-release 2>/dev/null && echo BASE-EDITED
  echo done; } > "$out"
""")
    hyb(host, "install", str(rpm))
    hyb(host, "initramfs", "--enable")
    new = status(host)[0]
    image = next((host / "boot/ostree").glob(f"testos-{new['bootcsum']}/initramfs-*.img")).read_text()
    fields = dict(line.split(":\t", 1) for line in image.splitlines() if ":\t" in line)
    assert int(fields["CapEff"], 16) == 0b11011111   # chown dac_override dac_read_search fowner fsetid setgid setuid
    assert fields["NoNewPrivs"].strip() == "1"
    assert "SYSCTL-WRITTEN" not in image and "BASE-EDITED" not in image and image.endswith("done\n")
    assert b"tampered" not in (deployment_dir(host, new) / "usr/lib/os-release").read_bytes()
    subprocess.run(["ostree", "fsck", f"--repo={host}/ostree/repo"], check=True, capture_output=True)


def test_dracut_is_killed_after_the_configured_timeout(host, tmp_path):
    hyb(host, "install", str(_dracut_pkg(tmp_path, 'busybox sleep 40\necho late > "$out"\n')))
    _configure(host, "\n[hybridos]\nscriptlet-timeout=2\n")
    before, commits = status(host), _commits(host)
    start = time.monotonic()
    p = hyb(host, "initramfs", "--enable", check=False)
    assert time.monotonic() - start < 35
    assert p.returncode == 1 and "dracut for kernel" in p.stderr and "did not finish within 2 s" in p.stderr, \
        p.stderr
    assert status(host) == before and _commits(host) == commits

"""usroverlay (rpm-ostree's `ostree admin unlock`): a writable overlayfs on the booted /usr whose changes go to the
deployment's backing directory and end with the boot. The mount is tested on a stand-in /usr inside a private
mount namespace (`unshare -m`), never on this machine's /usr."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import require_root, require_tool
from tests.sysroot.conftest import hyb

SCRIPT = textwrap.dedent("""\
    import json, os, sys
    from pathlib import Path
    import hybridos.sysroot.unlock as U
    from hybridos.errors import HybridosError
    from hybridos.sysroot.status import status_json, status_text
    from hybridos.sysroot.sysroot import Sysroot

    sr, work, mode = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    s = Sysroot.load(sr)
    dep = s.deployments[0]
    cmdline = "quiet " + s.entries[dep.name].options
    booted = Sysroot.load(sr, cmdline=cmdline).booted
    U.RUNSTATE_DIR = work / "run"
    usr = work / "usr"
    usr.mkdir()
    U.unlock(sr, booted, mode, usr=usr)
    data = status_json(Sysroot.load(sr, cmdline=cmdline))
    out = {"listing": sorted(os.listdir(usr)), "status": data, "text": status_text(data)}
    try:
        (usr / "bin/hotfix").write_text("patched\\n")
        out["write"] = "ok"
    except OSError as exc:
        out["write"] = exc.strerror
    try:
        U.unlock(sr, booted, mode, usr=usr)
    except HybridosError as exc:
        out["again"] = exc.message
    print(json.dumps(out))
    """)


def _overlay_available() -> bool:
    try:
        return "overlay" in Path("/proc/filesystems").read_text()
    except OSError:
        return False


def test_usroverlay_needs_a_booted_deployment(host):
    sr, _remote, _v1 = host
    r = hyb(sr, "usroverlay", check=False)
    assert (r.returncode, r.stderr) == (1, "error: Not currently booted into an OSTree system\n")
    r = hyb(sr, "unlock", "--transient", "--hotfix", check=False)     # rpm-ostree's hidden alias
    assert (r.returncode, r.stderr) == (1, "error: Cannot specify both --hotfix and --transient\n")
    r = hyb(sr, "usroverlay", "--hotfix", check=False)
    assert r.returncode == 1 and "--hotfix is not supported" in r.stderr


@pytest.mark.parametrize("mode", ["development", "transient"])
def test_unlock_mounts_an_overlay_whose_changes_stay_out_of_the_deployment(host, tmp_path, mode):
    require_root()
    require_tool("unshare", "mount")
    if not _overlay_available():
        pytest.skip("the kernel has no overlayfs")
    sr, _remote, _v1 = host
    work = tmp_path / "work"
    work.mkdir()
    script = tmp_path / "unlock.py"
    script.write_text(SCRIPT)
    proc = subprocess.run(["unshare", "-m", "--propagation", "private", sys.executable, str(script), str(sr),
                           str(work), mode], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    [booted] = [d for d in out["status"]["deployments"] if d["booted"]]
    assert booted["unlocked"] == mode
    assert any(line.split() == ["Unlocked:", mode] for line in out["text"])
    dep_dir = sr / f"ostree/deploy/{booted['osname']}/deploy/{booted['checksum']}.{booted['serial']}"
    assert out["listing"] == sorted(p.name for p in (dep_dir / "usr").iterdir())     # the deployment's /usr
    assert out["again"] == f"Deployment is already in unlocked state: {mode}"
    upper = sr / f"ostree/deploy/{booted['osname']}/backing/{booted['checksum']}.{booted['serial']}/usr-transient"
    if mode == "development":
        assert out["write"] == "ok"
        assert (upper / "upper/bin/hotfix").read_text() == "patched\n"        # the change went to the backing dir
    else:
        assert out["write"] == "Read-only file system"                     # transient: mounted read-only
    assert not (dep_dir / "usr/bin/hotfix").exists()                          # never into the deployment
    assert (work / "run" / f"{booted['checksum']}.{booted['serial']}" / f"unlocked-{mode}").exists()
    # outside the namespace nothing is mounted and nothing is booted
    assert not any(str(work) in line for line in Path("/proc/self/mounts").read_text().splitlines())

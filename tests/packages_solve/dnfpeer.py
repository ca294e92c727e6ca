"""dnf as the comparison peer: run it against a temporary root and read back what it installed with rpm.

Also a tiny stand-in for the installed set: headers read from a root's rpmdb with ``rpm --root -qa --qf``, in
the agreed RpmHeader shape (name, epoch, version, release, arch, nevra, provides/requires/... as
Dependency(name, flags, evr), files).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from hybridos.packages.model import Nevra


@dataclass(frozen=True)
class Dependency:
    name: str
    flags: int = 0
    evr: str = ""


@dataclass(frozen=True)
class InstalledHeader:
    name: str
    epoch: int
    version: str
    release: str
    arch: str
    provides: tuple[Dependency, ...] = ()
    requires: tuple[Dependency, ...] = ()
    conflicts: tuple[Dependency, ...] = ()
    obsoletes: tuple[Dependency, ...] = ()
    recommends: tuple[Dependency, ...] = ()
    supplements: tuple[Dependency, ...] = ()
    files: tuple[str, ...] = ()

    @property
    def nevra(self) -> Nevra:
        return Nevra(self.name, self.epoch, self.version, self.release, self.arch)


_KINDS = {"P": "provides", "R": "requires", "C": "conflicts", "O": "obsoletes", "W": "recommends",
          "S": "supplements"}
_TAGS = {"P": "PROVIDE", "R": "REQUIRE", "C": "CONFLICT", "O": "OBSOLETE", "W": "RECOMMEND", "S": "SUPPLEMENT"}
_QF = "=\t%{NAME}\t%{EPOCHNUM}\t%{VERSION}\t%{RELEASE}\t%{ARCH}\n" + "".join(
    f"[{k}\t%{{{t}NAME}}\t%{{{t}FLAGS}}\t%{{{t}VERSION}}\n]" for k, t in _TAGS.items()) + "[F\t%{FILENAMES}\n]"


def installed_headers(root: Path) -> list[InstalledHeader]:
    """The packages in ``root``'s rpmdb (where Debian's rpm and dnf put it), as header-shaped values."""
    out = subprocess.run(["rpm", "--root", str(root), "-qa", "--qf", _QF], check=True, capture_output=True,
                         text=True).stdout
    headers, cur = [], None
    for line in out.splitlines():
        parts = line.split("\t")
        if parts[0] == "=":
            if cur:
                headers.append(cur)
            cur = {"name": parts[1], "epoch": int(parts[2]), "version": parts[3], "release": parts[4],
                   "arch": parts[5], **{k: [] for k in (*_KINDS.values(), "files")}}
        elif parts[0] == "F":
            cur["files"].append(parts[1])
        elif parts[0] in _KINDS:
            cur[_KINDS[parts[0]]].append(Dependency(parts[1], int(parts[2]), parts[3]))
    if cur:
        headers.append(cur)
    return [InstalledHeader(**{k: tuple(v) if isinstance(v, list) else v for k, v in h.items()}) for h in headers]


def installed_nevras(root: Path) -> set[str]:
    return {str(h.nevra) for h in installed_headers(root)}


def dnf(root: Path, repo_urls: list[str], *args: str, weak_deps: bool = False, arch: str | None = None,
        excludes: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """``dnf -y --installroot=ROOT ...`` with only the given repositories and a cache inside the root."""
    cmd = ["dnf", "-y", f"--installroot={root}", "--releasever=1", "--setopt=reposdir=/dev/null",
           "--setopt=cachedir=/var/cache/dnf-test", f"--setopt=install_weak_deps={weak_deps}",
           "--disableplugin=*", "--setopt=logdir=/var/log"]
    for i, url in enumerate(repo_urls):
        cmd += [f"--repofrompath=r{i},{url}", f"--setopt=r{i}.gpgcheck=0"]
    if arch:
        cmd.append(f"--forcearch={arch}")
    for e in excludes:
        cmd.append(f"--exclude={e}")
    return subprocess.run([*cmd, *args], capture_output=True, text=True)

"""Test fixtures for the package system: real RPMs built with rpm-rs and real createrepo_c repositories.

A package is described by a compact, frozen :class:`Pkg` and turned into a real RPM file (RPM v4, zstd level 3,
fixed build time, so two builds of the same spec give the same bytes)::

    from tests.helpers.rpms import Pkg, File, make_repo

    repo = make_repo(tmp_path / "repo", [
        Pkg("hello", "1.0", requires=("libfoo >= 2", "/usr/bin/sh"),
            files=(File("/usr/bin/hello", b"#!/bin/sh\\necho hi\\n", mode=0o755),
                   File("/etc/hello.conf", b"x=1\\n", config=True),
                   File("/usr/bin/hi", symlink="hello"))),
        Pkg("libfoo", "2.1", provides=("foo-api = 3",)),
        Pkg("shell", "1", files=(File("/usr/bin/sh", mode=0o755),)),
    ])
    repo.url          # "file:///.../repo"
    repo.rpms["hello"]   # Path of hello-1.0-1.x86_64.rpm inside the repo

Dependencies are written as rpm writes them: ``"name"``, ``"name >= 1.2-3"``, ``"name = 1:2.0"`` or a rich
dependency ``"(a or b)"``. Files are :class:`File` values (regular, symlink, directory, ghost, hardlink set
members, config/noreplace, caps, owners). Scriptlets (``pre``, ``post``, ``posttrans``, ``preun``, ``postun``)
are /bin/sh bodies; for other interpreters, Lua or triggers use :func:`build_with_rpmbuild`.

:func:`write_synthetic_repo` writes rpm-md metadata for many made-up packages without building RPMs (for
benchmarks of metadata loading).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import createrepo_c
import rpm_rs

#: The build time stamped into every fixture RPM (reproducible builds).
SOURCE_DATE = 1_700_000_000

BUILD_CONFIG_ARGS = dict(format=rpm_rs.RpmFormat.V4, compression=rpm_rs.CompressionType.Zstd,
                         compression_level=3, source_date=SOURCE_DATE)

COMPRESSIONS = {
    "zst": createrepo_c.ZSTD_COMPRESSION,
    "gz": createrepo_c.GZ_COMPRESSION,
    "xz": createrepo_c.XZ_COMPRESSION,
    "bz2": createrepo_c.BZ2_COMPRESSION,
    "none": createrepo_c.NO_COMPRESSION,
}

_DEP_RE = re.compile(r"^\s*(?P<name>\S+)\s*(?:(?P<op><=|>=|==|=|<|>)\s*(?P<evr>\S+))?\s*$")
_OP_FLAGS = {
    "<": rpm_rs.DependencyFlags.LESS,
    ">": rpm_rs.DependencyFlags.GREATER,
    "=": rpm_rs.DependencyFlags.EQUAL,
    "==": rpm_rs.DependencyFlags.EQUAL,
    "<=": rpm_rs.DependencyFlags.LESS | rpm_rs.DependencyFlags.EQUAL,
    ">=": rpm_rs.DependencyFlags.GREATER | rpm_rs.DependencyFlags.EQUAL,
}


def parse_dep(text: str) -> tuple[str, str | None, int | None]:
    """``"foo >= 1.2"`` -> ("foo", "1.2", GREATER|EQUAL); ``"(a or b)"`` -> ("(a or b)", None, None)."""
    text = text.strip()
    if text.startswith("("):
        return text, None, None
    m = _DEP_RE.match(text)
    if not m:
        raise ValueError(f"not a dependency: {text!r}")
    if m["op"] is None:
        return m["name"], None, None
    return m["name"], m["evr"], _OP_FLAGS[m["op"]]


@dataclass(frozen=True)
class File:
    """One entry of a package's file list.

    A regular file by default; ``symlink=TARGET`` makes a symlink, ``dir=True`` a directory, ``ghost=True`` a
    %ghost entry (not in the payload). ``hardlink=LABEL`` joins the regular files sharing LABEL into one
    hardlink set. ``caps`` is a capability text such as ``"cap_net_raw=ep"``.
    """

    path: str
    content: bytes = b""
    mode: int | None = None            #: permission bits incl. setuid/setgid/sticky; None: rpm-rs default
    user: str = "root"
    group: str = "root"
    symlink: str | None = None
    dir: bool = False
    ghost: bool = False
    config: bool = False
    noreplace: bool = False
    doc: bool = False
    caps: str | None = None
    hardlink: str | None = None


@dataclass(frozen=True)
class Pkg:
    """A package to build: metadata, dependencies (rpm text form), files and /bin/sh scriptlets."""

    name: str
    version: str = "1.0"
    release: str = "1"
    epoch: int = 0
    arch: str = "x86_64"
    requires: tuple[str, ...] = ()
    provides: tuple[str, ...] = ()
    conflicts: tuple[str, ...] = ()
    obsoletes: tuple[str, ...] = ()
    recommends: tuple[str, ...] = ()
    suggests: tuple[str, ...] = ()
    supplements: tuple[str, ...] = ()
    files: tuple[File, ...] = ()
    pre: str | None = None
    post: str | None = None
    posttrans: str | None = None
    preun: str | None = None
    postun: str | None = None
    summary: str = ""
    license: str = "MIT"

    @property
    def nevra(self) -> str:
        evr = f"{self.epoch}:{self.version}-{self.release}" if self.epoch else f"{self.version}-{self.release}"
        return f"{self.name}-{evr}.{self.arch}"

    @property
    def filename(self) -> str:
        return f"{self.name}-{self.version}-{self.release}.{self.arch}.rpm"


def _add_deps(method, deps: Iterable[str]) -> None:
    for dep in deps:
        name, evr, flags = parse_dep(dep)
        if evr is None:
            method(name)
        else:
            method(name, evr, flags)


def _add_file(builder: rpm_rs.PackageBuilder, f: File) -> None:
    owners = dict(user=f.user, group=f.group)
    if f.symlink is not None:
        builder.with_symlink(rpm_rs.FileOptions.symlink(f.path, f.symlink, **owners))
    elif f.dir and f.ghost:
        builder.with_ghost(rpm_rs.FileOptions.ghost_dir(f.path, permissions=f.mode, **owners))
    elif f.dir:
        builder.with_dir_entry(rpm_rs.FileOptions.dir(f.path, permissions=f.mode, **owners))
    elif f.ghost:
        builder.with_ghost(rpm_rs.FileOptions.ghost(f.path, permissions=f.mode, **owners))
    else:
        opts = rpm_rs.FileOptions.new(f.path, permissions=f.mode, caps=f.caps, config=f.config or f.noreplace,
                                      noreplace=f.noreplace, doc=f.doc, hardlink=f.hardlink, **owners)
        builder.with_file_contents(f.content, opts)


def build_package(spec: Pkg, compression: str | None = None) -> rpm_rs.Package:
    """The rpm-rs Package for ``spec`` (in memory); ``compression``: an rpm_rs.CompressionType name
    ("Gzip", "Xz", "Bzip2", "NONE"; default zstd)."""
    return retry_hardlink_race(lambda: _build_package(spec, compression))


def retry_hardlink_race(build):
    """``build()``, again when rpm-rs refuses hardlinked members for differing metadata: it stamps each file
    with the second it was added, so two members of one hardlink set added across a second boundary (rare, more
    likely on a loaded machine) differ in mtime."""
    for attempt in range(3):
        try:
            return build()
        except Exception as exc:  # noqa: BLE001 - rpm-rs raises a plain exception type
            if "hardlink members" not in str(exc) or attempt == 2:
                raise
    raise AssertionError("unreachable")


def _build_package(spec: Pkg, compression: str | None = None) -> rpm_rs.Package:
    b = rpm_rs.PackageBuilder(spec.name, spec.version, spec.license, spec.arch, spec.summary or f"{spec.name} fixture")
    b.release(spec.release)
    if spec.epoch:
        b.epoch(spec.epoch)
    _add_deps(b.requires, spec.requires)
    _add_deps(b.provides, spec.provides)
    _add_deps(b.conflicts, spec.conflicts)
    _add_deps(b.obsoletes, spec.obsoletes)
    _add_deps(b.recommends, spec.recommends)
    _add_deps(b.suggests, spec.suggests)
    _add_deps(b.supplements, spec.supplements)
    for f in spec.files:
        _add_file(b, f)
    for attr, method in (("pre", b.pre_install_script), ("post", b.post_install_script),
                         ("posttrans", b.post_trans_script), ("preun", b.pre_uninstall_script),
                         ("postun", b.post_uninstall_script)):
        body = getattr(spec, attr)
        if body is not None:
            method(body)
    args = dict(BUILD_CONFIG_ARGS)
    if compression is not None:
        args["compression"] = getattr(rpm_rs.CompressionType, compression)
        if compression != "Zstd":
            del args["compression_level"]
    b.using_config(rpm_rs.BuildConfig(**args))
    return b.build()


def build_rpm(spec: Pkg, outdir: str | os.PathLike, compression: str | None = None) -> Path:
    """Build ``spec`` into ``outdir/<name>-<version>-<release>.<arch>.rpm`` and return the path."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    path = outdir / spec.filename
    build_package(spec, compression).write_to(str(path))
    return path


def build_rpms(specs: Iterable[Pkg], outdir: str | os.PathLike) -> list[Path]:
    return [build_rpm(s, outdir) for s in specs]


@dataclass
class Repo:
    """A repository written by :func:`make_repo`."""

    path: Path
    rpms: dict[str, Path] = field(default_factory=dict)   #: package name (and NEVRA) -> RPM file

    @property
    def url(self) -> str:
        return self.path.resolve().as_uri()

    @property
    def repodata(self) -> Path:
        return self.path / "repodata"


def write_repodata(repo_dir: str | os.PathLike, rpm_paths: Sequence[str | os.PathLike],
                   compression: str = "zst") -> Path:
    """Write ``repo_dir/repodata`` (primary, filelists, other) for RPMs that lie inside ``repo_dir``."""
    repo_dir = Path(repo_dir)
    shutil.rmtree(repo_dir / "repodata", ignore_errors=True)
    writer = createrepo_c.RepositoryWriter(str(repo_dir), compression=COMPRESSIONS[compression])
    writer.set_num_of_pkgs(len(rpm_paths))
    for p in rpm_paths:
        writer.add_pkg_from_file(str(p))
    writer.finish()
    return repo_dir / "repodata"


def make_repo(repo_dir: str | os.PathLike, specs: Iterable[Pkg | str | os.PathLike],
              compression: str = "zst", subdir: str = "Packages") -> Repo:
    """Build every spec into ``repo_dir/subdir`` (existing RPM paths are copied in) and write the repodata."""
    repo = Repo(Path(repo_dir))
    pkgdir = repo.path / subdir
    pkgdir.mkdir(parents=True, exist_ok=True)
    paths = []
    for spec in specs:
        if isinstance(spec, Pkg):
            path = build_rpm(spec, pkgdir)
            repo.rpms.setdefault(spec.name, path)
            repo.rpms[spec.nevra] = path
        else:
            path = pkgdir / Path(spec).name
            if Path(spec).resolve() != path.resolve():
                shutil.copyfile(spec, path)
            repo.rpms.setdefault(path.name, path)
        paths.append(path)
    write_repodata(repo.path, paths, compression)
    return repo


# -- rpmbuild (for what rpm-rs cannot build: other interpreters, Lua, triggers) ------------------------------


def build_with_rpmbuild(spec_text: str, outdir: str | os.PathLike, workdir: str | os.PathLike) -> list[Path]:
    """Build a .spec with Debian's rpmbuild (zstd payload) and copy the binary RPMs to ``outdir``.

    ``spec_text`` is a complete spec file; the ``%install`` section writes into ``%{buildroot}``.
    Needs the ``rpmbuild`` tool (call ``require_tool("rpmbuild")`` first).
    """
    workdir, outdir = Path(workdir), Path(outdir)
    for d in ("SPECS", "SOURCES", "BUILD", "RPMS", "SRPMS", "BUILDROOT"):
        (workdir / d).mkdir(parents=True, exist_ok=True)
    spec = workdir / "SPECS" / "fixture.spec"
    spec.write_text(textwrap.dedent(spec_text))
    env = dict(os.environ, SOURCE_DATE_EPOCH=str(SOURCE_DATE), LC_ALL="C")
    proc = subprocess.run(
        ["rpmbuild", "--define", f"_topdir {workdir}", "--define", "_binary_payload w19.zstdio",
         "--define", "__os_install_post %{nil}", "--define", "_build_id_links none",
         "--define", "use_source_date_epoch_as_buildtime 1", "--nodeps", "-bb", str(spec)],
        capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"rpmbuild failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    outdir.mkdir(parents=True, exist_ok=True)
    out = []
    for rpm in sorted((workdir / "RPMS").rglob("*.rpm")):
        dest = outdir / rpm.name
        shutil.copyfile(rpm, dest)
        out.append(dest)
    return out


# -- synthetic metadata (no RPMs) --------------------------------------------------------------------------

_CR_FLAGS = {"<": "LT", "<=": "LE", "=": "EQ", "==": "EQ", ">=": "GE", ">": "GT"}


def _cr_dep(text: str) -> tuple:
    m = _DEP_RE.match(text) if not text.startswith("(") else None
    if not m or m["op"] is None:
        return (text.strip(), None, None, None, None, False)
    evr = m["evr"]
    epoch, _, vr = evr.rpartition(":") if ":" in evr else ("0", "", evr)
    ver, _, rel = vr.partition("-")
    return (m["name"], _CR_FLAGS[m["op"]], epoch or "0", ver, rel or None, False)


def synthetic_package(spec: Pkg, checksum: str = "0" * 64) -> createrepo_c.Package:
    """A createrepo_c Package for ``spec`` as if built (files listed, no RPM file)."""
    p = createrepo_c.Package()
    p.name, p.version, p.release, p.epoch, p.arch = spec.name, spec.version, spec.release, str(spec.epoch), spec.arch
    p.summary = spec.summary or spec.name
    p.description = p.summary
    p.rpm_license = spec.license
    p.location_href = f"Packages/{spec.filename}"
    p.checksum_type = "sha256"
    p.pkgId = checksum
    p.size_package = p.size_installed = p.size_archive = 1000
    p.time_file = p.time_build = SOURCE_DATE
    self_evr = (spec.name, "EQ", str(spec.epoch), spec.version, spec.release, False)
    p.provides = [self_evr] + [_cr_dep(d) for d in spec.provides]
    p.requires = [_cr_dep(d) for d in spec.requires]
    p.conflicts = [_cr_dep(d) for d in spec.conflicts]
    p.obsoletes = [_cr_dep(d) for d in spec.obsoletes]
    p.recommends = [_cr_dep(d) for d in spec.recommends]
    files = []
    for f in spec.files:
        d, _, base = f.path.rpartition("/")
        files.append(("dir" if f.dir else "", d + "/", base))
    p.files = files
    return p


def write_synthetic_repo(repo_dir: str | os.PathLike, specs: Sequence[Pkg], compression: str = "zst") -> Path:
    """rpm-md repodata for ``specs`` written from createrepo_c Package objects (fast; no RPM files)."""
    repo_dir = Path(repo_dir)
    repo_dir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(repo_dir / "repodata", ignore_errors=True)
    writer = createrepo_c.RepositoryWriter(str(repo_dir), compression=COMPRESSIONS[compression])
    writer.set_num_of_pkgs(len(specs))
    for i, spec in enumerate(specs):
        writer.add_pkg(synthetic_package(spec, checksum=f"{i:064x}"))
    writer.finish()
    return repo_dir / "repodata"


def synthetic_specs(count: int, arch: str = "x86_64") -> list[Pkg]:
    """``count`` made-up packages with a realistic web of versioned, virtual and file dependencies.

    Each package depends on a few lower-numbered ones (a shallow DAG plus a small cycle at the root), so a
    single install pulls a few dozen packages, as in a distribution, not the whole repository.
    """
    specs = []
    for i in range(count):
        deps = []
        if i:
            deps += [f"pkg{i // 2} >= 1.0", f"cap{i // 3}"]
        else:
            deps.append(f"pkg{min(1, count - 1)}")      # pkg0 <-> pkg1: one small cycle
        if i % 5 == 0 and i:
            deps.append(f"/usr/lib/pkg{i // 7}/data")  # a file only filelists.xml lists
        specs.append(Pkg(
            f"pkg{i}", f"1.{i % 10}", "1", arch=arch if i % 4 else "noarch",
            requires=tuple(deps), provides=(f"cap{i}", f"lib{i}.so()(64bit)"),
            files=(File(f"/usr/bin/pkg{i}"), File(f"/usr/lib/pkg{i}/data"), File(f"/usr/share/doc/pkg{i}/README")),
        ))
    return specs

"""``selinux: true``: the composed commit carries ``security.selinux`` labels from the policy inside the tree, the
same libselinux's matchpathcon gives for the same file_contexts, for every file."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest

from hybridos.errors import ConfigError
from hybridos.ostree.repo import Repo
from hybridos.selinux import FileContexts, has_meta_chars, parse_file_contexts, parse_subs, spec_stem
from tests.compose.conftest import BASE_TREEFILE, write_treefile
from tests.conftest import require_root, require_tool, run_cli
from tests.helpers.rpms import File, Pkg, make_repo

U = "system_u:object_r:"
FILE_CONTEXTS = f"""\
# a policy written to exercise libselinux's rules: regex vs exact specs, file types, <<none>>, stems
/.*\t\t{U}default_t:s0
/usr(/.*)?\t\t{U}usr_t:s0
/usr/bin(/.*)?\t\t{U}bin_t:s0
/usr/bin/busybox\t--\t{U}busybox_exec_t:s0
/usr/bin/[a-f][^/]*\t-l\t{U}early_link_t:s0
/usr/bin/(cat|echo|ls)\t-l\t{U}coreutils_link_t:s0
/usr/bin/hel+o\t\t{U}hello_exec_t:s0
/usr/bin/b[a-z]*box\t--\t{U}late_regex_t:s0
/usr/lib(64)?/lib[^/]*\\.so(\\.[0-9]+)*\t--\t{U}lib_t:s0
/usr/lib/modules(/.*)?\t-d\t{U}modules_dir_t:s0
/usr/lib/modules/[^/]+/vmlinuz\t--\t{U}boot_t:s0
/usr/share/doc(/.*)?\t\t<<none>>
/usr/share/hello(/.*)?\t\t{U}hello_data_t:s0
/usr/share/rpm(/.*)?\t\t{U}rpm_var_lib_t:s0
/usr/etc(/.*)?\t\t{U}usr_etc_t:s0
/etc(/.*)?\t\t{U}etc_t:s0
/etc/hello\\.conf\t--\t{U}hello_conf_t:s0
/etc/selinux(/.*)?\t\t{U}selinux_config_t:s0
/(var|run)(/.*)?\t\t{U}var_t:s0
/home\t-l\t{U}home_root_t:s0
/ostree\t\t{U}ostree_t:s0
/sysroot(/.*)?\t\t{U}root_t:s0
/tmp(/.*)?\t-d\t{U}tmp_t:s0
/\t-d\t{U}root_t:s0
"""
HOMEDIRS = f"/usr/lib/os-release\t--\t{U}os_release_t:s0\n"
LOCAL = f"/usr/bin/hello\t--\t{U}local_hello_t:s0\n/usr/share/hello/post-ran\t\t<<none>>\n"
SUBS_DIST = "/usr/lib64 /usr/lib\n"
SUBS = "/usr/libexec /usr/bin\n"
TYPES = {stat.S_IFREG: "file", stat.S_IFDIR: "dir", stat.S_IFLNK: "lnk_file"}


def policy_package() -> Pkg:
    base = "/etc/selinux/testpol/contexts/files/file_contexts"
    return Pkg("testpol", "1.0", arch="noarch", requires=("filesystem",), files=(
        File("/etc/selinux/config", b"SELINUX=enforcing\nSELINUXTYPE=testpol\n", mode=0o644),
        File(base, FILE_CONTEXTS.encode(), mode=0o644),
        File(base + ".homedirs", HOMEDIRS.encode(), mode=0o644),
        File(base + ".local", LOCAL.encode(), mode=0o644),
        File(base + ".subs_dist", SUBS_DIST.encode(), mode=0o644),
        File(base + ".subs", SUBS.encode(), mode=0o644),
    ))


def commit_labels(repo: Repo, commit: str) -> dict[str, tuple[int, str | None]]:
    """path -> (file type, security.selinux label or None) for every entry of the commit."""
    out: dict[str, tuple[int, str | None]] = {}

    def label(xattrs) -> str | None:
        for n, v in xattrs:
            if n == b"security.selinux\0":
                assert v.endswith(b"\0")
                return v[:-1].decode()
        return None

    def walk(path: str, tree: str, meta: str) -> None:
        dm = repo.load_dirmeta(meta)
        out[path or "/"] = (stat.S_IFDIR, label(dm.xattrs))
        dt = repo.load_dirtree(tree)
        for name, csum in dt.files:
            header, stream = repo.open_content(csum)
            if stream is not None:
                stream.close()
            out[f"{path}/{name}"] = (stat.S_IFMT(header.mode), label(header.xattrs))
        for name, t, m in dt.dirs:
            walk(f"{path}/{name}", t, m)

    c = repo.load_commit(commit)
    walk("", c.root_tree, c.root_meta)
    return out


def matchpathcon(fc: Path, paths_by_type: dict[int, list[str]]) -> dict[str, str | None]:
    out = {}
    for ftype, paths in paths_by_type.items():
        proc = subprocess.run(["matchpathcon", "-N", "-f", str(fc), "-m", TYPES[ftype], *paths],
                              capture_output=True, text=True, check=True)
        for line in proc.stdout.splitlines():
            path, ctx = line.split("\t")
            out[path] = None if ctx == "<<none>>" else ctx
    return out


@pytest.mark.parametrize("label_version", [0, 1])
def test_labels_equal_matchpathcon_for_every_file(tmp_path, treedir, distro_repo, label_version):
    require_root()
    require_tool("matchpathcon")
    pol = make_repo(tmp_path / "pol", [policy_package()])
    (treedir / "pol.repo").write_text(f"[pol]\nname=pol\nbaseurl={pol.url}\ngpgcheck=0\n")
    body = BASE_TREEFILE.replace("selinux: false\n", "").replace("repos: [testos]", "repos: [testos, pol]")
    body = body.replace("hello]", "hello, testpol]")
    tf = write_treefile(treedir, body + f"selinux-label-version: {label_version}\n")
    repo = tmp_path / "repo"
    Repo.init(repo, "archive")
    p = run_cli("compose", "tree", str(tf), "--repo", str(repo))
    commit = p.stdout.split("=> ")[1].strip()
    labels = commit_labels(Repo.open(repo), commit)
    assert len(labels) > 60
    # the same file_contexts (with its .homedirs/.local/.subs/.subs_dist) for libselinux, outside the tree
    fcdir = tmp_path / "fc"
    fcdir.mkdir()
    fc = fcdir / "file_contexts"
    for suffix, text in (("", FILE_CONTEXTS), (".homedirs", HOMEDIRS), (".local", LOCAL),
                         (".subs_dist", SUBS_DIST), (".subs", SUBS)):
        (fcdir / f"file_contexts{suffix}").write_text(text)

    def lookup_path(path: str) -> str:
        if label_version >= 1 and (path == "/usr/etc" or path.startswith("/usr/etc/")):
            return path[4:]
        return path

    by_type: dict[int, list[str]] = {}
    for path, (ftype, _) in labels.items():
        by_type.setdefault(ftype, []).append(lookup_path(path))
    expected = matchpathcon(fc, by_type)
    mismatches = {p: (got, expected[lookup_path(p)]) for p, (_, got) in labels.items()
                  if got != expected[lookup_path(p)]}
    assert mismatches == {}
    got = {p: lab for p, (_, lab) in labels.items()}
    # the rules above are all exercised
    assert got["/usr/bin/busybox"] == f"{U}busybox_exec_t:s0"                 # exact beats regex
    assert got["/usr/bin/cat"] == f"{U}coreutils_link_t:s0"                   # -l rule for a symlink
    assert got["/usr/bin/hello"] == f"{U}local_hello_t:s0"                     # .local wins
    assert got["/usr/share/hello/post-ran"] is None                            # <<none>> in .local
    assert got["/usr/lib/os-release"] == f"{U}os_release_t:s0"                 # .homedirs
    assert got["/usr/lib/libfoo.so.2"] == f"{U}lib_t:s0"
    assert got["/"] == f"{U}root_t:s0" and got["/home"] == f"{U}home_root_t:s0"
    etc = got["/usr/etc/hello.conf"]
    assert etc == (f"{U}hello_conf_t:s0" if label_version else f"{U}usr_etc_t:s0")


def test_no_policy_in_the_tree_means_no_labels_and_selinux_false_means_none(tmp_path, treedir):
    require_root()
    tf = write_treefile(treedir, BASE_TREEFILE.replace("selinux: false\n", ""))
    repo = tmp_path / "repo"
    Repo.init(repo, "archive")
    p = run_cli("compose", "tree", str(tf), "--repo", str(repo))
    commit = p.stdout.split("=> ")[1].strip()
    assert all(lab is None for _, lab in commit_labels(Repo.open(repo), commit).values())


def test_matcher_rules_in_isolation():
    assert has_meta_chars("/usr/bin(/.*)?") and not has_meta_chars("/usr/bin/hello")
    assert not has_meta_chars("/usr/lib/foo\\.so")                 # an escaped dot is literal
    assert spec_stem("/usr/bin(/.*)?") == "/usr" and spec_stem("/usr(/.*)?") == ""
    fc = FileContexts(parse_file_contexts(FILE_CONTEXTS + LOCAL, "fc"), parse_subs(SUBS, "s"),
                      parse_subs(SUBS_DIST, "sd"))
    assert fc.lookup("/usr/lib64/libfoo.so.2", stat.S_IFREG) == f"{U}lib_t:s0"
    assert fc.lookup("/usr/libexec/busybox", stat.S_IFREG) == f"{U}busybox_exec_t:s0"      # .subs
    assert fc.lookup("//usr///bin/", stat.S_IFDIR) == f"{U}bin_t:s0"
    assert fc.lookup("/usr/share/doc/x", stat.S_IFREG) is None
    with pytest.raises(ConfigError, match="multiple different specifications"):
        FileContexts(parse_file_contexts(f"/a {U}x_t:s0\n/a {U}y_t:s0\n", "fc"))
    with pytest.raises(ConfigError, match="fc:1: invalid file type"):
        parse_file_contexts(f"/a -q {U}x_t:s0\n", "fc")

"""The three-way /etc merge on real directories."""

from __future__ import annotations

import os

from hybridos.sysroot.etcmerge import EtcDiff, apply_etc_diff, diff_etc, populate_etc


def _tree(root, files):
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def test_diff_and_apply(tmp_path):
    old = tmp_path / "old"
    _tree(old / "usr/etc", {"a.conf": "a\n", "b.conf": "b\n", "d/x": "x\n", "d/y": "y\n", "gone/z": "z\n"})
    populate_etc(old)
    etc = old / "etc"
    assert (etc / "a.conf").read_text() == "a\n"
    assert os.stat(etc / "a.conf").st_ino != os.stat(old / "usr/etc/a.conf").st_ino  # a copy, never a hardlink
    (etc / "a.conf").write_text("a local\n")          # modified
    (etc / "b.conf").unlink()                          # removed
    (etc / "new.conf").write_text("added\n")           # added
    (etc / "d/y").unlink()
    os.symlink("a.conf", etc / "link")                 # added symlink
    os.chmod(etc / "d/x", 0o600)                       # metadata change only
    import shutil
    shutil.rmtree(etc / "gone")                        # a whole directory removed
    (etc / "newdir/sub").mkdir(parents=True)
    (etc / "newdir/sub/f").write_text("f\n")           # a whole directory added

    diff = diff_etc(old / "usr/etc", etc)
    assert diff == EtcDiff(added=("link", "new.conf", "newdir"), modified=("a.conf", "d/x"),
                           removed=("b.conf", "d/y", "gone"))
    assert diff.summary() == "2 modified, 3 removed, 3 added"

    new = tmp_path / "new"
    _tree(new / "usr/etc", {"a.conf": "a v2\n", "b.conf": "b v2\n", "c.conf": "c\n", "d/x": "x2\n", "d/y": "y\n",
                            "gone/z": "z\n"})
    populate_etc(new)
    apply_etc_diff(diff, etc, new / "etc")
    got = {str(p.relative_to(new / "etc")) for p in (new / "etc").rglob("*")}
    assert got == {"a.conf", "c.conf", "d", "d/x", "new.conf", "link", "newdir", "newdir/sub", "newdir/sub/f"}
    assert (new / "etc/a.conf").read_text() == "a local\n"      # local wins over the new image
    assert (new / "etc/c.conf").read_text() == "c\n"             # new image files arrive
    assert (new / "etc/d/x").read_text() == "x\n" and (os.stat(new / "etc/d/x").st_mode & 0o777) == 0o600
    assert os.readlink(new / "etc/link") == "a.conf"
    assert diff_etc(new / "usr/etc", new / "etc")  # the new deployment now differs from its image


def test_tree_with_only_etc_is_moved_to_usr_etc(tmp_path):
    dep = tmp_path / "dep"
    _tree(dep / "etc", {"x": "1\n"})
    (dep / "usr").mkdir()
    populate_etc(dep)
    assert (dep / "usr/etc/x").read_text() == "1\n" and (dep / "etc/x").read_text() == "1\n"


def test_no_changes_no_diff(tmp_path):
    _tree(tmp_path / "usr/etc", {"a": "1\n", "s/b": "2\n"})
    populate_etc(tmp_path)
    assert not diff_etc(tmp_path / "usr/etc", tmp_path / "etc")

"""Users and groups across composes: ``preserve-passwd``, ``check-passwd``/``check-groups`` and
``ignore-removed-users``/``ignore-removed-groups``, as rpm-ostree's passwd.rs does.

Before the packages are installed the tree's ``/etc/passwd`` and ``/etc/group`` are seeded (from a
``check-*`` file of type ``file``, else from the previous commit) so that the packages' scriptlets allocate the
same ids as before. After postprocessing the new entries are checked against the reference (the file, the
inline data, or the previous commit): a user or group whose id changed fails the compose, as does one that is
missing while files still carry its id, unless it is ignored.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from hybridos.compose.treefile import PasswdCheck, Treefile
from hybridos.errors import ConfigError, PackageError
from hybridos.util.numbers import is_decimal


@dataclass(frozen=True)
class Entries:
    users: Mapping[str, tuple[int, int]]     #: name -> (uid, gid)
    groups: Mapping[str, int]                #: name -> gid


def parse_passwd(text: str) -> dict[str, tuple[int, int]]:
    out = {}
    for line in text.splitlines():
        parts = line.split(":")
        if len(parts) >= 4 and is_decimal(parts[2]) and is_decimal(parts[3]):
            out.setdefault(parts[0], (int(parts[2]), int(parts[3])))
    return out


def parse_group(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        parts = line.split(":")
        if len(parts) >= 3 and is_decimal(parts[2]):
            out.setdefault(parts[0], int(parts[2]))
    return out


def append_unique(existing: str, extra: str) -> str:
    """Lines of ``extra`` whose name ``existing`` lacks are appended (rpm-ostree's passwd_append_unique)."""
    names = {line.split(":", 1)[0] for line in existing.splitlines() if line.strip()}
    out = [line for line in existing.splitlines() if line.strip()]
    for line in extra.splitlines():
        name = line.split(":", 1)[0]
        if line.strip() and name not in names:
            names.add(name)
            out.append(line)
    return "".join(f"{x}\n" for x in out)


def check_entries(new: Entries, old: Entries, ignored_users: Iterable[str], ignored_groups: Iterable[str],
                  ids_in_use: tuple[set[int], set[int]]) -> list[str]:
    """Compare (pure). Returns the report lines; raises PackageError on a changed or wrongly removed entry."""
    report = []
    iu, ig = set(ignored_users), set(ignored_groups)
    uids, gids = ids_in_use
    for name in sorted(set(old.users) - set(new.users)):
        if "*" in iu or name in iu:
            report.append(f"Ignored user missing from new passwd file: {name}")
        elif old.users[name][0] in uids:
            raise PackageError(f"check-passwd: user missing from new passwd file: {name}")
        else:
            report.append(f"Unused user removed from new passwd file: {name}")
    for name, (uid, gid) in sorted(new.users.items()):
        if name in old.users:
            ouid, ogid = old.users[name]
            if uid != ouid:
                raise PackageError(f"check-passwd: passwd UID changed: {name} ({ouid} to {uid})")
            if gid != ogid:
                raise PackageError(f"check-passwd: passwd GID changed: {name} ({ogid} to {gid})")
    for name in sorted(set(old.groups) - set(new.groups)):
        if "*" in ig or name in ig:
            report.append(f"Ignored group missing from new group file: {name}")
        elif old.groups[name] in gids:
            raise PackageError(f"check-groups: group missing from new group file: {name}")
        else:
            report.append(f"Unused group removed from new group file: {name}")
    for name, gid in sorted(new.groups.items()):
        if name in old.groups and gid != old.groups[name]:
            raise PackageError(f"check-groups: group GID changed: {name} ({old.groups[name]} to {gid})")
    added_u = sorted(set(new.users) - set(old.users))
    added_g = sorted(set(new.groups) - set(old.groups))
    if added_u:
        report.append("New passwd entries: " + ", ".join(added_u))
    if added_g:
        report.append("New group entries: " + ", ".join(added_g))
    return report


# ---------------------------------------------------------------------------------------------------------
# I/O
# ---------------------------------------------------------------------------------------------------------


def read_commit_files(repo, commit: str, paths: Iterable[str]) -> dict[str, str]:
    """The text of the regular files ``paths`` in ``commit`` (missing ones are left out)."""
    from hybridos.errors import HybridosError

    out = {}
    with tempfile.TemporaryDirectory(prefix="hybridos-passwd-") as tmp:
        for i, rel in enumerate(paths):
            dest = Path(tmp) / str(i)
            try:
                repo.checkout(commit, dest, subpath=rel, mode="copy", user_mode=True)
            except (HybridosError, OSError):
                continue
            if dest.is_file() and not dest.is_symlink():
                out[rel] = dest.read_text(errors="replace")
    return out


def previous_files(repo, commit: str | None) -> dict[str, str]:
    """passwd and group of the previous commit: /usr/etc and /usr/lib halves joined (name -> text)."""
    if repo is None or commit is None:
        return {}
    texts = read_commit_files(repo, commit, [f"{d}/{n}" for n in ("passwd", "group") for d in ("usr/etc",
                                                                                                   "usr/lib")])
    out = {}
    for n in ("passwd", "group"):
        joined = append_unique(texts.get(f"usr/etc/{n}", ""), texts.get(f"usr/lib/{n}", ""))
        if joined:
            out[n] = joined
    return out


def seed(tree: Path, tf: Treefile, previous: Mapping[str, str]) -> str | None:
    """``preserve-passwd``: write /etc/passwd and /etc/group into the empty tree before the packages go in.
    Returns where the data came from ("file", "previous") or None."""
    if not tf.preserve_passwd:
        return None
    from_file = {n: c.filename for n, c in (("passwd", tf.check_passwd), ("group", tf.check_groups))
                 if c.kind == "file"}
    if len(from_file) == 1:
        which = next(iter(from_file))
        other = "group" if which == "passwd" else "passwd"
        raise ConfigError(f"{tf.path}: configured to take {which} data from a file and {other} data from the "
                          "previous commit; give check-passwd and check-groups the same type")
    if from_file:
        data = {n: p.read_text() for n, p in from_file.items()}
        source = "file"
    elif previous:
        data, source = dict(previous), "previous"
    else:
        return None
    etc = tree / "etc"
    etc.mkdir(mode=0o755, exist_ok=True)
    for name, text in data.items():
        (etc / name).write_text(text)
        os.chmod(etc / name, 0o644)
    return source


def reference(check: PasswdCheck, previous_text: str | None, parse):
    if check.kind == "none":
        return None
    if check.kind == "file":
        return parse(check.filename.read_text())
    if check.kind == "data":
        return dict(check.entries)
    return parse(previous_text) if previous_text else None


def ids_in_tree(tree: Path) -> tuple[set[int], set[int]]:
    uids, gids = set(), set()
    for dirpath, dirs, files in os.walk(tree):
        for name in dirs + files:
            st = os.lstat(os.path.join(dirpath, name))
            uids.add(st.st_uid)
            gids.add(st.st_gid)
    return uids, gids


def check(tree: Path, tf: Treefile, previous: Mapping[str, str], read) -> list[str]:
    """After postprocessing (``read(rel)`` returns the text of a tree file or ""): run check-passwd and
    check-groups. Returns the report lines."""
    users_ref = reference(tf.check_passwd, previous.get("passwd"), parse_passwd)
    groups_ref = reference(tf.check_groups, previous.get("group"), parse_group)
    if users_ref is None and groups_ref is None:
        return []
    if tf.check_passwd.kind == "data":
        users_ref = {k: (v[0], v[1] if len(v) > 1 else v[0]) for k, v in users_ref.items()}
    if tf.check_groups.kind == "data":
        groups_ref = {k: v[0] for k, v in groups_ref.items()}
    new_users = parse_passwd(append_unique(read("etc/passwd"), read("usr/lib/passwd")))
    new_groups = parse_group(append_unique(read("etc/group"), read("usr/lib/group")))
    old = Entries(users_ref or {}, groups_ref or {})
    new = Entries(new_users if users_ref is not None else {}, new_groups if groups_ref is not None else {})
    return check_entries(new, old, tf.ignore_removed_users, tf.ignore_removed_groups, ids_in_tree(tree))

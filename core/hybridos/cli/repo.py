"""``hybridos repo``: the low-level store commands, with the arguments of their ``ostree`` namesakes."""

from __future__ import annotations

import importlib
import importlib.util
import stat
import sys
import time
from pathlib import Path

import click

from hybridos.cli._options import open_repo, parse_key_values, repo_option, repo_path_of
from hybridos.errors import CorruptionError, NotFoundError, UsageError
from hybridos.util.text import for_terminal


def _progress(label: str):
    from hybridos.util.progress import Progress
    return Progress(label)


class _RepoGroup(click.Group):
    """The ``repo`` group; also offers the commands of hybridos.cli.repo_remote (remote, pull, sign) and
    hybridos.cli.repo_delta (static-delta)."""

    _extra_loaded = False

    def _load_extra(self) -> None:
        if self._extra_loaded:
            return
        self._extra_loaded = True
        for module in ("hybridos.cli.repo_remote", "hybridos.cli.repo_delta", "hybridos.cli.container"):
            if importlib.util.find_spec(module) is not None:
                for c in getattr(importlib.import_module(module), "COMMANDS", []):
                    self.add_command(c)

    def list_commands(self, ctx):
        self._load_extra()
        return super().list_commands(ctx)

    def get_command(self, ctx, cmd_name):
        cmd = super().get_command(ctx, cmd_name)
        if cmd is None:
            self._load_extra()
            cmd = super().get_command(ctx, cmd_name)
        return cmd


@click.group("repo", cls=_RepoGroup)
def repo() -> None:
    """Low-level OSTree repository commands (like `ostree`)."""


# ---------------------------------------------------------------------------------------------------- init

@repo.command("init")
@repo_option
@click.option("--mode", default="bare", show_default=True,
              type=click.Choice(["bare", "bare-user", "bare-user-only", "archive", "archive-z2"]),
              help="Repository mode.")
@click.pass_context
def init_cmd(ctx, repo_path, mode) -> None:
    """Initialize a new empty repository."""
    from hybridos.ostree.repo import Repo
    Repo.init(repo_path_of(ctx, repo_path), mode)


# ---------------------------------------------------------------------------------------------------- commit

@repo.command("commit")
@repo_option
@click.option("-b", "--branch", default=None, help="Branch to commit to.")
@click.option("-s", "--subject", default="", help="One-line subject.")
@click.option("-m", "--body", default="", help="Full description.")
@click.option("--tree", "trees", multiple=True, metavar="dir=PATH", help="Commit the directory PATH (dir=PATH).")
@click.option("--add-metadata-string", "meta_strings", multiple=True, metavar="KEY=VALUE",
              help="Add a string metadata key (repeatable).")
@click.option("--add-detached-metadata-string", "detached_strings", multiple=True, metavar="KEY=VALUE",
              help="Add a string key to the detached metadata (repeatable).")
@click.option("--owner-uid", type=int, default=None, help="Set the uid of every file and directory.")
@click.option("--owner-gid", type=int, default=None, help="Set the gid of every file and directory.")
@click.option("--no-xattrs", is_flag=True, help="Do not import extended attributes.")
@click.option("--parent", default=None, help='Parent commit (a rev, or "none").')
@click.option("--orphan", is_flag=True, help="Commit without a branch.")
@click.option("--no-bindings", is_flag=True, help="Do not add ostree.ref-binding metadata.")
@click.option("--timestamp", default=None, help="Commit timestamp: seconds since the epoch (default: now).")
@click.option("--link-checkout-speedup", is_flag=True,
              help="Reuse checksums of files hardlinked from this repository (devino cache).")
@click.option("--fsync", default=None, help="Accepted for compatibility; objects are always synced once.")
@click.argument("path", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.pass_context
def commit_cmd(ctx, repo_path, branch, subject, body, trees, meta_strings, detached_strings, owner_uid, owner_gid,
               no_xattrs, parent, orphan, no_bindings, timestamp, link_checkout_speedup, fsync, path) -> None:
    """Commit a directory tree; prints the new commit's checksum."""
    dirs = [Path(t[4:]) for t in trees if t.startswith("dir=")]
    if len(dirs) != len(trees):
        raise UsageError("--tree takes dir=PATH")
    if path is not None:
        dirs.append(path)
    if len(dirs) != 1:
        raise UsageError("give exactly one directory to commit (PATH or --tree=dir=PATH)")
    if not branch and not orphan:
        raise UsageError("a branch must be specified with --branch, or use --orphan")
    ts = None
    if timestamp is not None:
        try:
            ts = int(timestamp)
        except ValueError:
            raise UsageError(f"--timestamp takes seconds since the epoch, got {timestamp!r}") from None
    r = open_repo(ctx, repo_path)
    checksum = r.commit_tree(dirs[0], branch=branch, subject=subject, body=body,
                             metadata=parse_key_values(meta_strings, "--add-metadata-string"), parent=parent,
                             timestamp=ts, owner_uid=owner_uid, owner_gid=owner_gid, xattrs=not no_xattrs,
                             devino_cache=True if link_checkout_speedup else None, bind_ref=not no_bindings,
                             progress=_progress("Committing"))
    if detached_strings:
        r.write_commitmeta(checksum, parse_key_values(detached_strings, "--add-detached-metadata-string"))
    click.echo(checksum)


# ---------------------------------------------------------------------------------------------------- log / show

def _fmt_date(ts: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(ts))


def format_commit(checksum: str, commit) -> str:
    """A commit as ``ostree log``/``ostree show`` print it."""
    lines = [f"commit {checksum}"]
    if commit.parent:
        lines.append(f"Parent:  {commit.parent}")
    lines.append(f"ContentChecksum:  {commit.content_checksum}")
    lines.append(f"Date:  {_fmt_date(commit.timestamp)}")
    if commit.version:
        lines.append(f"Version: {for_terminal(commit.version)}")
    out = "\n".join(lines) + "\n"
    indent = lambda s: "".join(f"    {ln}\n" for ln in for_terminal(s, keep_newlines=True).split("\n"))  # noqa: E731
    out += "(no subject)\n" if not commit.subject else "\n" + indent(commit.subject)
    if commit.body:
        out += "\n" + indent(commit.body)
    return out + "\n"


@repo.command("log")
@repo_option
@click.argument("rev")
@click.pass_context
def log_cmd(ctx, repo_path, rev) -> None:
    """Show the history of a commit (parent chain)."""
    r = open_repo(ctx, repo_path)
    checksum: str | None = r.resolve_rev(rev)
    while checksum is not None:
        try:
            commit = r.load_commit(checksum)
        except NotFoundError:
            click.echo("<< History beyond this commit not fetched >>")
            break
        click.echo(format_commit(checksum, commit), nl=False)
        checksum = commit.parent


@repo.command("show")
@repo_option
@click.option("--print-metadata-key", "meta_key", default=None, help="Print one metadata value.")
@click.option("--print-detached-metadata-key", "detached_key", default=None, help="Print one detached value.")
@click.option("--raw", is_flag=True, help="Print the commit object as GVariant text.")
@click.option("--gpg-verify-remote", "gpg_remote", default=None, metavar="REMOTE",
              help="Check the commit's GPG signatures with REMOTE's trusted keys.")
@click.argument("rev")
@click.pass_context
def show_cmd(ctx, repo_path, meta_key, detached_key, raw, gpg_remote, rev) -> None:
    """Show a commit, or one of its metadata values."""
    from hybridos.ostree.gvtext import format_value

    r = open_repo(ctx, repo_path)
    checksum = r.resolve_rev(rev)
    commit = r.load_commit(checksum)
    if meta_key is not None:
        if meta_key not in commit.metadata:
            raise NotFoundError(f"no such metadata key {meta_key!r}")
        click.echo(format_value(commit.metadata[meta_key]))
        return
    if detached_key is not None:
        detached = r.read_commitmeta(checksum) or {}
        if detached_key not in detached:
            raise NotFoundError(f"no such detached metadata key {detached_key!r}")
        click.echo(format_value(detached[detached_key]))
        return
    if raw:
        click.echo(repr(commit))
        return
    click.echo(format_commit(checksum, commit), nl=False)
    detached = r.read_commitmeta(checksum)
    from hybridos.ostree import gpg as _gpg

    if _gpg.signatures_in(detached) or gpg_remote:   # as ostree show: the signatures, checked where it can
        from hybridos.openpgp import Keyring
        from hybridos.ostree import remotes
        from hybridos.ostree.objects import ObjectType

        ring = Keyring()
        names = [gpg_remote] if gpg_remote else remotes.list_remotes(r.config)
        for name in names:
            for key in _gpg.remote_keyring(r, remotes.get_remote(r.config, name)).keys:
                ring.add(key)
        lines = _gpg.describe_signatures(r.read_metadata_bytes(checksum, ObjectType.COMMIT), detached, ring)
        if gpg_remote and not lines:
            raise NotFoundError(f"commit {checksum} has no GPG signatures")
        click.echo("\n" + "\n".join(lines))


# ---------------------------------------------------------------------------------------------------- ls / cat

def _mode_str(mode: int) -> str:
    kind = "d" if stat.S_ISDIR(mode) else "l" if stat.S_ISLNK(mode) else "-"
    return f"{kind}{mode & 0o7777:05o}"


@repo.command("ls")
@repo_option
@click.option("-R", "--recursive", is_flag=True, help="List recursively.")
@click.option("-C", "--checksum", "show_checksum", is_flag=True, help="Show object checksums.")
@click.option("-d", "--dironly", is_flag=True, help="Only the directory itself, not its contents.")
@click.option("-X", "--xattrs", "show_xattrs", is_flag=True, help="Show extended attributes.")
@click.option("--nul-filenames-only", is_flag=True, help="Print only NUL-terminated file names.")
@click.argument("rev")
@click.argument("paths", nargs=-1)
@click.pass_context
def ls_cmd(ctx, repo_path, recursive, show_checksum, dironly, show_xattrs, nul_filenames_only, rev, paths) -> None:
    """List file paths in a commit."""
    from hybridos.ostree.checkout import find_subpath, resolve_root
    from hybridos.ostree.gvtext import format_value

    r = open_repo(ctx, repo_path)
    root_tree, root_meta = resolve_root(r, rev)
    out = sys.stdout

    def emit(path: str, mode: int, uid: int, gid: int, size: int, csums: list[str], target: str, xattrs) -> None:
        if nul_filenames_only:
            out.write(path + "\0")
            return
        line = f"{_mode_str(mode)} {uid} {gid} {size:6d} "
        if show_checksum:
            line += " ".join(csums) + " "
        if show_xattrs:
            line += format_value([(n, v) for n, v in xattrs]) + " "
        line += path
        if target:
            line += f" -> {target}"
        out.write(line + "\n")

    def emit_dir(path: str, tree: str, meta: str) -> None:
        m = r.load_dirmeta(meta)
        emit(path, m.mode, m.uid, m.gid, 0, [tree, meta], "", m.xattrs)

    def emit_file(path: str, checksum: str) -> None:
        header, stream = r.open_content(checksum)
        if stream is not None:
            stream.close()
        emit(path, header.mode, header.uid, header.gid, header.size, [checksum], header.symlink_target,
             header.xattrs)

    def list_dir(path: str, tree: str) -> None:
        dt = r.load_dirtree(tree)  # like ostree: files first, then directories, each in dirtree order
        base = path.rstrip("/") + "/"
        for name, c in dt.files:
            emit_file(base + name, c)
        for name, t, m in dt.dirs:
            emit_dir(base + name, t, m)
            if recursive:
                list_dir(base + name, t)

    for p in paths or ("/",):
        kind, a, b = find_subpath(r, root_tree, root_meta, p)
        shown = "/" + "/".join(x for x in p.split("/") if x and x != ".")
        if kind == "file":
            emit_file(shown, a)
            continue
        emit_dir(shown, a, b)
        if not dironly:
            list_dir(shown, a)


@repo.command("cat")
@repo_option
@click.argument("rev")
@click.argument("paths", nargs=-1, required=True)
@click.pass_context
def cat_cmd(ctx, repo_path, rev, paths) -> None:
    """Write the contents of files in a commit to stdout."""
    from hybridos.ostree.checkout import find_subpath, resolve_root

    r = open_repo(ctx, repo_path)
    root_tree, root_meta = resolve_root(r, rev)
    out = sys.stdout.buffer
    for p in paths:
        kind, checksum, _ = find_subpath(r, root_tree, root_meta, p)
        if kind != "file":
            raise UsageError(f"{p} is a directory")
        header, stream = r.open_content(checksum)
        if stream is None:
            raise UsageError(f"{p} is a symbolic link to {header.symlink_target}")
        with stream:
            while chunk := stream.read(1 << 20):
                out.write(chunk)
    out.flush()


# ---------------------------------------------------------------------------------------------------- checkout

@repo.command("checkout")
@repo_option
@click.option("-H", "--require-hardlinks", is_flag=True, help="Fail unless every file can be hardlinked.")
@click.option("-C", "--force-copy", is_flag=True, help="Never hardlink: copy every file.")
@click.option("-U", "--user-mode", is_flag=True, help="Ignore ownership and xattrs; drop setuid/setgid.")
@click.option("--union", is_flag=True, help="Overwrite existing files, merge existing directories.")
@click.option("--subpath", default=None, help="Check out this path of the commit only.")
@click.argument("rev")
@click.argument("destination", required=False, type=click.Path(path_type=Path))
@click.pass_context
def checkout_cmd(ctx, repo_path, require_hardlinks, force_copy, user_mode, union, subpath, rev, destination) -> None:
    """Check out a commit into a directory (default: the rev's name)."""
    if require_hardlinks and force_copy:
        raise UsageError("-H and -C contradict each other")
    r = open_repo(ctx, repo_path)
    dest = destination if destination is not None else Path(rev.replace("/", "_").replace(":", "_"))
    mode = "hardlink" if require_hardlinks else "copy" if force_copy else "auto"
    r.checkout(rev, dest, mode=mode, user_mode=user_mode, union=union, subpath=subpath,
               progress=_progress("Checking out"))


# ---------------------------------------------------------------------------------------------------- fsck / prune

@repo.command("fsck")
@repo_option
@click.option("-q", "--quiet", is_flag=True, help="Only print problems.")
@click.pass_context
def fsck_cmd(ctx, repo_path, quiet) -> None:
    """Verify every object; exit 1 naming each corrupt or missing object."""
    r = open_repo(ctx, repo_path)
    objects = sum(1 for _ in r.list_objects())
    problems = r.fsck(progress=_progress("Verifying"))
    for p in problems:
        click.echo(f"error: {p}", err=True)
    if problems:
        raise CorruptionError(f"{len(problems)} problem(s) found in {r.path}")
    if not quiet:
        click.echo(f"Checked {objects} objects: no problems found")


@repo.command("prune")
@repo_option
@click.option("--refs-only", is_flag=True, help="Keep only what refs reach (else every commit is kept).")
@click.option("--depth", type=int, default=-1, show_default=True, help="Parents to keep per ref (-1: all).")
@click.option("--no-prune", is_flag=True, help="Only report what would be deleted.")
@click.pass_context
def prune_cmd(ctx, repo_path, refs_only, depth, no_prune) -> None:
    """Delete objects that are not reachable."""
    r = open_repo(ctx, repo_path)
    res = r.prune(depth=depth, refs_only=refs_only, dry_run=no_prune)
    click.echo(f"Total objects: {res.objects_total}")
    if res.objects_pruned:
        verb = "Would delete" if no_prune else "Deleted"
        click.echo(f"{verb} {res.objects_pruned} objects, {res.bytes_freed} bytes freed")
    else:
        click.echo("No unreachable objects")


# ---------------------------------------------------------------------------------------------------- refs / rev-parse

@repo.command("refs")
@repo_option
@click.option("--delete", is_flag=True, help="Delete the refs matching the prefixes.")
@click.option("--create", "create", default=None, metavar="NEWREF", help="Create NEWREF pointing at the given rev.")
@click.option("--list", "list_all", is_flag=True, help="List all refs (the default).")
@click.argument("prefixes", nargs=-1)
@click.pass_context
def refs_cmd(ctx, repo_path, delete, create, list_all, prefixes) -> None:
    """List, create or delete refs."""
    r = open_repo(ctx, repo_path)
    if create is not None:
        if len(prefixes) != 1:
            raise UsageError("--create=NEWREF needs exactly one existing rev")
        if create in r.list_refs() or create in r.list_refs(remote=True):
            raise UsageError(f"ref {create} already exists")
        r.set_ref(create, r.resolve_rev(prefixes[0]))
        return
    allrefs = dict(r.list_refs())
    allrefs.update(r.list_refs(remote=True))
    if delete:
        if not prefixes:
            raise UsageError("--delete needs at least one ref or prefix")
        matched = [k for k in allrefs if any(k == p or k.startswith(p.rstrip("/") + "/") for p in prefixes)]
        if not matched:
            raise NotFoundError(f"no refs match {' '.join(prefixes)}")
        for k in matched:
            r.set_ref(k, None)
        return
    for k in sorted(allrefs):
        if not prefixes or any(k.startswith(p) for p in prefixes):
            click.echo(k)


@repo.command("rev-parse")
@repo_option
@click.argument("rev")
@click.pass_context
def rev_parse_cmd(ctx, repo_path, rev) -> None:
    """Print the checksum a rev resolves to."""
    click.echo(open_repo(ctx, repo_path).resolve_rev(rev))


# ---------------------------------------------------------------------------------------------------- summary

@repo.command("summary")
@repo_option
@click.option("-u", "--update", is_flag=True, help="Regenerate the summary file.")
@click.option("-v", "--view", is_flag=True, help="Print the summary.")
@click.option("--add-metadata", "add_meta", multiple=True, metavar="KEY=VALUE", help="Extra string metadata.")
@click.pass_context
def summary_cmd(ctx, repo_path, update, view, add_meta) -> None:
    """Update or view the summary file."""
    from hybridos.ostree.summary import read_summary

    r = open_repo(ctx, repo_path)
    if update:
        r.generate_summary(additional_metadata=parse_key_values(add_meta, "--add-metadata"))
    if view or not update:
        s = read_summary(r)
        if s is None:
            raise NotFoundError(f"{r.path} has no summary file (run with -u)")
        click.echo(format_summary(s), nl=False)


def format_summary(s) -> str:
    from hybridos.gvariant import Variant, bswap64
    from hybridos.ostree.gvtext import format_value
    from hybridos.ostree.summary import ref_timestamp

    out = []
    for ref in s.refs:
        out.append(f"* {ref.name}")
        out.append(f"    Latest Commit ({ref.size} bytes):")
        out.append(f"      {ref.commit}")
        v = ref.metadata.get("ostree.commit.version")
        if v:
            out.append(f"    Version (ostree.commit.version): {v}")
        ts = ref_timestamp(ref)
        if ts is not None:
            out.append(f"    Timestamp (ostree.commit.timestamp): {time.strftime('%Y-%m-%dT%H:%M:%S+00', time.gmtime(ts))}")
        out.append("")
    for k, v in s.metadata.items():
        if k == "ostree.summary.last-modified" and isinstance(v, int):
            out.append(f"Last-Modified ({k}): {time.strftime('%Y-%m-%dT%H:%M:%S+00', time.gmtime(bswap64(v)))}")
        elif k == "ostree.summary.mode":
            out.append(f"Repository Mode ({k}): {v}")
        else:
            out.append(f"{k}: {format_value(v if not isinstance(v, Variant) else v)}")
    return "\n".join(out) + "\n"

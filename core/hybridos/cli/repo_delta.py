"""``hybridos repo static-delta``: generate, list, show, delete, apply-offline and reindex static deltas, with
the arguments of ``ostree static-delta``."""

from __future__ import annotations

from pathlib import Path

import click

from hybridos.cli._options import open_repo, repo_option
from hybridos.errors import UsageError


@click.group("static-delta")
def static_delta() -> None:
    """Static delta files (OSTree's format): generate, list, show, delete, apply-offline."""


@static_delta.command("generate")
@repo_option
@click.option("--from", "from_rev", default=None, metavar="REV", help="Create delta from revision REV (default: TO^).")
@click.option("--empty", is_flag=True, help="Create a delta from scratch (from no commit).")
@click.option("--to", "to_rev", default=None, metavar="REV", help="Create delta to revision REV.")
@click.option("--inline", is_flag=True, help="Put the parts in the superblock (a single-file delta).")
@click.option("--min-fallback-size", type=click.IntRange(0), default=4, show_default=True, metavar="MB",
              help="Files over this size (MB) are fetched as plain objects; 0: none (self-contained delta).")
@click.option("--max-chunk-size", type=click.IntRange(1), default=32, show_default=True, metavar="MB",
              help="Target size of a part (MB).")
@click.option("--max-bsdiff-size", type=click.IntRange(0), default=128, show_default=True, metavar="MB",
              help="Pairs of files larger than this together (MB) are not bsdiffed.")
@click.option("--disable-bsdiff", is_flag=True, help="No bsdiff: modified files are block-copied or sent whole.")
@click.option("--set-endianness", type=click.Choice(["l", "B"]), default="l", show_default=True,
              help="Byte order of the part headers' numbers.")
@click.option("--filename", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the superblock to this file (parts beside it) instead of into the repository.")
@click.option("-n", "--if-not-exists", is_flag=True, help="Do nothing when the delta exists already.")
@click.argument("positional_to", required=False, metavar="[TO]")
@click.pass_context
def generate_cmd(ctx, repo_path, from_rev, empty, to_rev, inline, min_fallback_size, max_chunk_size,
                 max_bsdiff_size, disable_bsdiff, set_endianness, filename, if_not_exists, positional_to) -> None:
    """Generate a static delta from FROM (or nothing) to TO."""
    from hybridos.ostree import delta_format as df
    from hybridos.ostree.delta_generate import DeltaOptions, generate

    to_rev = to_rev or positional_to
    if not to_rev:
        raise UsageError("--to=REV (or TO) is required")
    if empty and from_rev:
        raise UsageError("--empty and --from contradict each other")
    repo = open_repo(ctx, repo_path)
    to = repo.resolve_rev(to_rev)
    if empty:
        frm = None
    elif from_rev:
        frm = repo.resolve_rev(from_rev)
    else:
        frm = repo.load_commit(to).parent
        if frm is None:
            raise UsageError(f"commit {to} has no parent: use --from=REV or --empty")
    if if_not_exists and filename is None and (repo.path / df.delta_dir(frm, to) / "superblock").exists():
        click.echo(f"Delta {df.delta_id(frm, to)} exists")
        return
    click.echo(f"Generating static delta:\n  From: {frm or 'empty'}\n  To:   {to}")
    report = generate(repo, frm, to, DeltaOptions(min_fallback_size=min_fallback_size, max_chunk_size=max_chunk_size,
                                                  max_bsdiff_size=max_bsdiff_size, bsdiff=not disable_bsdiff,
                                                  inline=inline, filename=filename,
                                                  big_endian=set_endianness == "B"),
                      log=click.echo)
    click.echo(f"Wrote {report.path} ({report.size} bytes in all)")


@static_delta.command("list")
@repo_option
@click.pass_context
def list_cmd(ctx, repo_path) -> None:
    """List the static deltas of the repository."""
    from hybridos.ostree.deltas import list_deltas

    names = list_deltas(open_repo(ctx, repo_path))
    if not names:
        click.echo("(No static deltas)")
    for name in names:
        click.echo(name)


@static_delta.command("show")
@repo_option
@click.argument("delta")
@click.pass_context
def show_cmd(ctx, repo_path, delta) -> None:
    """Describe DELTA (FROM-TO or TO)."""
    from hybridos.ostree import deltas
    from hybridos.util.progress import human_bytes

    sb = deltas.read_superblock(open_repo(ctx, repo_path), delta)
    e = sb.metadata.get("ostree.endianness")
    click.echo(f"Delta: {sb.id}")
    click.echo(f"Endianness: {'big' if e is not None and e.value == ord('B') else 'little'}")
    click.echo(f"Timestamp: {sb.timestamp}")
    click.echo(f"Number of parts: {len(sb.parts)}")
    click.echo(f"Number of fallback entries: {len(sb.fallbacks)}")
    csize = sum(p.compressed_size for p in sb.parts)
    usize = sum(p.uncompressed_size for p in sb.parts)
    for i, p in enumerate(sb.parts):
        inline = " (inline)" if sb.inline_part(i) is not None else ""
        click.echo(f"PartMeta{i}: nobjects={len(p.objects)} size={p.compressed_size} "
                   f"usize={p.uncompressed_size}{inline}")
    fsize = sum(f.compressed_size for f in sb.fallbacks)
    click.echo(f"Total Part Size: {csize} ({human_bytes(csize)})")
    click.echo(f"Total Uncompressed Part Size: {usize} ({human_bytes(usize)})")
    click.echo(f"Total Fallback Size: {fsize} ({human_bytes(fsize)})")


@static_delta.command("delete")
@repo_option
@click.argument("delta")
@click.pass_context
def delete_cmd(ctx, repo_path, delta) -> None:
    """Remove DELTA from the repository."""
    from hybridos.ostree.deltas import delete_delta

    delete_delta(open_repo(ctx, repo_path), delta)


@static_delta.command("reindex")
@repo_option
@click.pass_context
def reindex_cmd(ctx, repo_path) -> None:
    """Rewrite delta-indexes/ from the deltas present."""
    from hybridos.ostree.deltas import reindex

    reindex(open_repo(ctx, repo_path))


@static_delta.command("apply-offline")
@repo_option
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.pass_context
def apply_offline_cmd(ctx, repo_path, path) -> None:
    """Apply the delta in PATH: a delta directory, a superblock file, or a directory holding deltas (a USB
    stick: every delta whose source commit is here is applied, chains in order)."""
    from hybridos.ostree.delta_apply import apply_directory, apply_offline
    from hybridos.util.progress import Progress

    repo = open_repo(ctx, repo_path)
    with Progress("Applying delta parts:") as progress:
        if path.is_dir() and not (path / "superblock").exists():
            results = apply_directory(repo, path, progress=progress)
        else:
            results = [apply_offline(repo, path, progress=progress)]
    for sb, stats in results:
        click.echo(f"Applied {sb.id}: {stats.parts_applied} parts applied, {stats.parts_skipped} already "
                   f"present, {stats.objects_written} objects written")
    to = results[-1][0].to_commit
    click.echo(f"Commit {to} is complete; deploy it with: hybridos admin deploy {to}")


COMMANDS = [static_delta]

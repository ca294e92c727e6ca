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
@click.option("--max-chunk-size", type=click.IntRange(1), default=8, show_default=True, metavar="MB",
              help="Target size of a part (MB; ostree's default is 32: smaller parts are applied in parallel).")
@click.option("--max-bsdiff-size", type=click.IntRange(0), default=128, show_default=True, metavar="MB",
              help="Pairs of files larger than this together (MB) are not bsdiffed.")
@click.option("--disable-bsdiff", is_flag=True, help="No bsdiff: modified files are block-copied or sent whole.")
@click.option("--set-endianness", type=click.Choice(["l", "B"]), default="l", show_default=True,
              help="Byte order of the part headers' numbers.")
@click.option("--filename", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the superblock to this file (parts beside it) instead of into the repository.")
@click.option("-n", "--if-not-exists", is_flag=True, help="Do nothing when the delta exists already.")
@click.option("--sign", "sign_keys", multiple=True, metavar="KEY",
              help="Sign the superblock with this ed25519 secret key (base64; repeatable).")
@click.option("--sign-type", default="ed25519", show_default=True, help="Signature type.")
@click.option("--keys-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Sign with the secret keys of this file (one base64 key per line).")
@click.argument("positional_to", required=False, metavar="[TO]")
@click.pass_context
def generate_cmd(ctx, repo_path, from_rev, empty, to_rev, inline, min_fallback_size, max_chunk_size,
                 max_bsdiff_size, disable_bsdiff, set_endianness, filename, if_not_exists, sign_keys, sign_type,
                 keys_file, positional_to) -> None:
    """Generate a static delta from FROM (or nothing) to TO."""
    from hybridos.ostree import delta_format as df
    from hybridos.ostree import sign as _sign
    from hybridos.ostree.delta_generate import DeltaOptions, generate

    _sign.check_sign_type(sign_type)
    keys = list(sign_keys) + (_sign.read_key_file(keys_file) if keys_file is not None else [])
    if keys_file is not None and not keys:
        raise UsageError(f"no key in {keys_file}")
    for key in keys:
        _sign.parse_secret_key(key)
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
                                                  big_endian=set_endianness == "B", sign_keys=tuple(keys)),
                      log=click.echo)
    click.echo(f"Wrote {report.path} ({report.size} bytes in all)"
               + (f", signed with {len(keys)} ed25519 key(s)" if keys else ""))


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
    from hybridos.ostree import delta_sign, deltas
    from hybridos.util.progress import human_bytes

    repo = open_repo(ctx, repo_path)
    sb = deltas.read_superblock(repo, delta)
    signed = delta_sign.signature_types(deltas.superblock_path(repo, delta).read_bytes())
    e = sb.metadata.get("ostree.endianness")
    click.echo(f"Delta: {sb.id}")
    click.echo(f"Signed: {'yes (' + ', '.join(signed) + ')' if signed else 'no'}")
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


def _key_options(f):
    f = click.option("--keys-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                     help="Trusted keys from DIR/trusted.ed25519(.d), less DIR/revoked.ed25519(.d), instead of "
                          "/etc/ostree and /usr/share/ostree.")(f)
    f = click.option("--keys-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="Trusted public keys from this file (one base64 key per line).")(f)
    return click.option("--sign-type", default="ed25519", show_default=True, help="Signature type.")(f)


def _public_keys(sign_type, keys, keys_file, keys_dir) -> list[bytes]:
    from hybridos.ostree import delta_sign
    from hybridos.ostree import sign as _sign

    _sign.check_sign_type(sign_type)
    return delta_sign.public_keys(keys, keys_file, keys_dir)


@static_delta.command("verify")
@repo_option
@_key_options
@click.argument("delta")
@click.argument("keys", nargs=-1, metavar="[KEY...]")
@click.pass_context
def verify_cmd(ctx, repo_path, sign_type, keys_file, keys_dir, delta, keys) -> None:
    """Verify the signature of DELTA (FROM-TO or TO of this repository, or a superblock file's path) against
    the public KEYs (base64), --keys-file, or the trusted key directories."""
    import base64

    from hybridos.errors import NotFoundError
    from hybridos.ostree import delta_sign, deltas

    trusted = _public_keys(sign_type, keys, keys_file, keys_dir)
    if "/" in delta:
        path = Path(delta)
        if path.is_dir():
            path = path / "superblock"
    else:
        path = deltas.superblock_path(open_repo(ctx, repo_path), delta)
    try:
        data = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        raise NotFoundError(f"no delta superblock at {path}") from None
    key = delta_sign.verify(data, trusted, f"delta {delta}")
    click.echo(f"Verification OK (ed25519 key {base64.b64encode(key).decode()})")


@static_delta.command("apply-offline")
@repo_option
@_key_options
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.argument("keys", nargs=-1, metavar="[KEY...]")
@click.pass_context
def apply_offline_cmd(ctx, repo_path, sign_type, keys_file, keys_dir, path, keys) -> None:
    """Apply the delta in PATH: a delta directory, a superblock file, or a directory holding deltas (a USB
    stick: every delta whose source commit is here is applied, chains in order). A signed delta is verified
    against the public KEYs, --keys-file or the trusted key directories; naming keys (or the repository's
    core.sign-verify-deltas=true) also refuses unsigned deltas."""
    from hybridos.ostree.delta_apply import SignaturePolicy, apply_directory, apply_offline
    from hybridos.ostree.remotes import parse_bool
    from hybridos.util.progress import Progress

    repo = open_repo(ctx, repo_path)
    trusted = _public_keys(sign_type, keys, keys_file, keys_dir)
    required = bool(keys or keys_file or keys_dir) or parse_bool(
        repo.config.get("core", "sign-verify-deltas", fallback=None), False, "core.sign-verify-deltas")
    policy = SignaturePolicy(tuple(trusted), required)
    with Progress("Applying delta parts:") as progress:
        if path.is_dir() and not (path / "superblock").exists():
            results = apply_directory(repo, path, progress=progress, signatures=policy)
        else:
            results = [apply_offline(repo, path, progress=progress, signatures=policy)]
    for sb, stats in results:
        click.echo(f"Applied {sb.id}: {stats.parts_applied} parts applied, {stats.parts_skipped} already "
                   f"present, {stats.objects_written} objects written")
    to = results[-1][0].to_commit
    click.echo(f"Commit {to} is complete; deploy it with: hybridos admin deploy {to}")


COMMANDS = [static_delta]

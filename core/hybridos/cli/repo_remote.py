"""``hybridos repo remote|pull|sign|gpg-sign``: remotes, pulls and commit signatures, with ostree's arguments.

The store's ``repo`` group adds the commands listed in ``COMMANDS``.
"""

from __future__ import annotations

from pathlib import Path

import click

from hybridos.cli._options import open_repo, parse_key_values, repo_option
from hybridos.errors import UsageError
from hybridos.fetch import FetchOptions
from hybridos.util.progress import Progress, human_bytes

# ---------------------------------------------------------------------------------------------------- remote

@click.group("remote")
def remote() -> None:
    """Manage remotes ([remote "NAME"] sections of the repository config)."""


@remote.command("add")
@repo_option
@click.option("--set", "set_opts", multiple=True, metavar="KEY=VALUE", help="Set config option KEY=VALUE.")
@click.option("--no-gpg-verify", is_flag=True, help="Disable GPG verification (gpg-verify=false).")
@click.option("--no-sign-verify", is_flag=True, help="Disable signature verification.")
@click.option("--sign-verify", "sign_specs", multiple=True, metavar="KEYTYPE=[inline|file]:PUBKEY",
              help="Verify signatures with KEYTYPE=inline:PUBKEY or KEYTYPE=file:/path/to/keys.")
@click.option("--gpg-import", "gpg_import", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              default=None, help="Import GPG keys from this file (as `remote gpg-import --keyring`).")
@click.option("--if-not-exists", is_flag=True, help="Do nothing if the remote exists.")
@click.option("--force", is_flag=True, help="Replace the remote if it exists.")
@click.argument("name")
@click.argument("url")
@click.argument("branches", nargs=-1)
@click.pass_context
def remote_add(ctx, repo_path, set_opts, no_gpg_verify, no_sign_verify, sign_specs, gpg_import, if_not_exists,
               force, name, url, branches) -> None:
    """Add a remote NAME at URL, optionally limited to BRANCHES."""
    from hybridos.ostree import remotes

    if no_sign_verify and sign_specs:
        raise UsageError("--sign-verify and --no-sign-verify contradict each other")
    if if_not_exists and force:
        raise UsageError("--if-not-exists and --force contradict each other")
    options = parse_key_values(set_opts, "--set")
    if no_gpg_verify or no_sign_verify:
        options["gpg-verify"] = "false"
    if no_sign_verify:
        options["sign-verify"] = "false"
    options.update(remotes.sign_verify_options(sign_specs))
    repo = open_repo(ctx, repo_path)
    if gpg_import is not None:   # parsed before anything is written: a bad key file adds no remote
        from hybridos.openpgp import parse_keys
        parse_keys(gpg_import.read_bytes(), str(gpg_import))
    if remotes.add_remote(repo.config, name, url, branches=branches, options=options,
                          if_not_exists=if_not_exists, force=force):
        repo.write_config()
        if gpg_import is not None:
            from hybridos.ostree import gpg as _gpg
            _gpg.import_keys(repo, name, gpg_import.read_bytes(), str(gpg_import))


@remote.command("delete")
@repo_option
@click.option("--if-exists", is_flag=True, help="Do nothing if the remote does not exist.")
@click.argument("name")
@click.pass_context
def remote_delete(ctx, repo_path, if_exists, name) -> None:
    """Delete the remote NAME."""
    from hybridos.ostree import remotes

    repo = open_repo(ctx, repo_path)
    if remotes.delete_remote(repo.config, name, if_exists=if_exists):
        repo.write_config()


@remote.command("list")
@repo_option
@click.option("-u", "--show-urls", is_flag=True, help="Show the remote URLs too.")
@click.pass_context
def remote_list(ctx, repo_path, show_urls) -> None:
    """List remotes."""
    from hybridos.ostree import remotes

    repo = open_repo(ctx, repo_path)
    names = remotes.list_remotes(repo.config)
    width = max((len(n) for n in names), default=0)
    for n in names:
        if show_urls:
            click.echo(f"{n:<{width}}  {repo.config[repo.config.remote_section(n)].get('url', '')}")
        else:
            click.echo(n)


@remote.command("show-url")
@repo_option
@click.argument("name")
@click.pass_context
def remote_show_url(ctx, repo_path, name) -> None:
    """Print the URL of the remote NAME."""
    from hybridos.ostree import remotes

    click.echo(remotes.get_remote(open_repo(ctx, repo_path).config, name).url)


@remote.command("gpg-import")
@repo_option
@click.option("-k", "--keyring", "keyrings", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Import keys from this key file (armored or binary; several allowed).")
@click.option("--stdin", "from_stdin", is_flag=True, help="Import keys from standard input.")
@click.argument("name")
@click.argument("key_ids", nargs=-1, metavar="[KEY-ID...]")
@click.pass_context
def remote_gpg_import(ctx, repo_path, keyrings, from_stdin, name, key_ids) -> None:
    """Import GPG keys that remote NAME's commits are signed with (into NAME.trustedkeys.gpg)."""
    import sys

    from hybridos.ostree import gpg as _gpg
    from hybridos.ostree import remotes

    if not keyrings and not from_stdin:
        raise UsageError("no keys given: pass --keyring FILE or --stdin")
    repo = open_repo(ctx, repo_path)
    remotes.get_remote(repo.config, name)
    sources = [(p.read_bytes() if p.is_file() else b"", str(p)) for p in keyrings]
    for data, src in sources:
        if not data:
            raise UsageError(f"{src} is not a readable key file")
    if from_stdin:
        sources.append((sys.stdin.buffer.read(), "standard input"))
    added = []
    for data, src in sources:
        added += _gpg.import_keys(repo, name, data, src, key_ids)
    click.echo(f"Imported {len(added)} GPG key{'s' if len(added) != 1 else ''} to remote \"{name}\"")


# ---------------------------------------------------------------------------------------------------- pull

class PullProgress(Progress):
    """``Receiving objects: 45% (123/270) 12.3 MiB (4.1 MiB/s) 3s left`` on a terminal; silent otherwise."""

    def _line(self, now: float) -> str:
        elapsed = max(now - self.started, 1e-6)
        parts = [self.label]
        total = self.total_items or 0
        if total:
            parts.append(f"{100 * self.items // max(total, 1)}% ({self.items}/{total})")
        parts.append(f"{human_bytes(self.bytes)} ({human_bytes(self.bytes / elapsed)}/s)")
        if total and self.items and elapsed > 1:
            left = (total - self.items) * elapsed / self.items
            parts.append(f"{left:.0f}s left")
        return " ".join(parts)


@click.command("pull")
@repo_option
@click.option("--depth", type=int, default=0, show_default=True, help="Traverse DEPTH parents (-1=infinite).")
@click.option("--commit-metadata-only", is_flag=True, help="Fetch only the commit metadata.")
@click.option("--mirror", is_flag=True, help="Write refs/heads (a mirror); all refs of the summary if none given.")
@click.option("--url", default=None, help="Pull objects from this URL instead of the remote's.")
@click.option("--network-retries", type=click.IntRange(0, 100), default=5, show_default=True,
              help="How many times each download is retried upon a transient error.")
@click.option("--max-parallel", type=click.IntRange(1, 64), default=8, show_default=True,
              help="Downloads in flight at once (over HTTP(S) without a proxy: connections, at most 2, each pipelining requests).")
@click.option("--disable-static-deltas", is_flag=True, help="Do not use static deltas.")
@click.option("--require-static-deltas", is_flag=True,
              help="Fail rather than fetch objects when no usable static delta is offered.")
@click.argument("remote_name", metavar="REMOTE")
@click.argument("refs", nargs=-1, metavar="[REF...]")
@click.pass_context
def pull(ctx, repo_path, depth, commit_metadata_only, mirror, url, network_retries, max_parallel,
         disable_static_deltas, require_static_deltas, remote_name, refs) -> None:
    """Download REFs (or commit checksums) from REMOTE into refs/remotes/REMOTE/REF."""
    from hybridos.ostree.pull import pull as do_pull

    repo = open_repo(ctx, repo_path)
    with PullProgress("Receiving objects:") as progress:
        result = do_pull(repo, remote_name, refs, depth=depth, commit_metadata_only=commit_metadata_only,
                         mirror=mirror, progress=progress, url=url,
                         fetch_options=FetchOptions(retries=network_retries, max_parallel=max_parallel),
                         static_deltas=not disable_static_deltas, require_static_deltas=require_static_deltas)
    for note in result.notes:
        click.echo(f"note: {note}", err=True)
    click.echo(result.describe())


# ---------------------------------------------------------------------------------------------------- sign

@click.command("sign")
@repo_option
@click.option("-s", "--sign-type", default="ed25519", show_default=True, help="Signature type.")
@click.option("--keys-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Read keys from this file, one base64 key per line.")
@click.option("--verify", is_flag=True, help="Verify the signatures against public KEYs instead of signing.")
@click.option("-d", "--delete", is_flag=True, help="Delete the signatures made by the public KEYs.")
@click.argument("commit")
@click.argument("keys", nargs=-1, metavar="[KEY...]")
@click.pass_context
def sign(ctx, repo_path, sign_type, keys_file, verify, delete, commit, keys) -> None:
    """Sign COMMIT with secret KEYs (base64), or --verify / --delete with public KEYs."""
    from hybridos.ostree import sign as _sign

    _sign.check_sign_type(sign_type)
    if verify and delete:
        raise UsageError("--verify and --delete contradict each other")
    all_keys = list(keys)
    if keys_file is not None:
        all_keys.extend(_sign.read_key_file(keys_file))
    if not all_keys:
        raise UsageError("no key given: pass KEY arguments or --keys-file")
    repo = open_repo(ctx, repo_path)
    checksum = repo.resolve_rev(commit)
    if verify:
        key = _sign.verify_commit_in_repo(repo, checksum, all_keys)
        click.echo(f"Signature verified successfully with key '{key}'")
    elif delete:
        n = _sign.delete_signatures(repo, checksum, all_keys)
        click.echo(f"Deleted {n} signature(s) from {checksum}")
    else:
        for pub in _sign.sign_commit(repo, checksum, all_keys):
            click.echo(f"Signed {checksum} with ed25519 key {pub}")


@click.command("gpg-sign")
@repo_option
@click.option("--gpg-homedir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="GnuPG home directory holding the secret keys.")
@click.option("-d", "--delete", is_flag=True, help="Delete the signatures made by KEY-IDs instead.")
@click.argument("commit")
@click.argument("key_ids", nargs=-1, required=True, metavar="KEY-ID...")
@click.pass_context
def gpg_sign(ctx, repo_path, gpg_homedir, delete, commit, key_ids) -> None:
    """GPG-sign COMMIT with each KEY-ID (ostree.gpgsigs, as `ostree gpg-sign`)."""
    from hybridos.ostree import gpg as _gpg

    repo = open_repo(ctx, repo_path)
    checksum = repo.resolve_rev(commit)
    if delete:
        n = _gpg.delete_signatures(repo, checksum, key_ids)
        click.echo(f"Signatures deleted: {n}")
        return
    for kid in _gpg.sign_commit(repo, checksum, key_ids, gpg_homedir):
        click.echo(f"Signed {checksum} with GPG key {kid}")


COMMANDS = [remote, pull, sign, gpg_sign]

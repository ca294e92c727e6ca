"""``hybridos compose tree``: build an OSTree commit from a treefile, as ``rpm-ostree compose tree`` does."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from hybridos.arch import Architecture
from hybridos.cli._options import parse_key_values
from hybridos.errors import UsageError


@click.group()
def compose() -> None:
    """Build OS images from treefiles."""


def _read_metadata_json(path: Path | None) -> dict:
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"--add-metadata-from-json {path}: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"--add-metadata-from-json {path}: expected a JSON object")
    return data


@compose.command("tree")
@click.argument("treefile", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--repo", "-r", "repo_path", type=click.Path(file_okay=False, path_type=Path),
              help="OSTree repository to commit to (required unless --print-only or --dry-run).")
@click.option("--write-composejson-to", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the compose result (commit, version, input hash, statistics) as JSON to FILE.")
@click.option("--write-commitid-to", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the commit id to FILE and do not move any ref.")
@click.option("--cachedir", type=click.Path(file_okay=False, path_type=Path),
              help="Keep repository metadata and downloaded packages here between composes.")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path),
              help="Assemble the tree below DIR (default: the repository's tmp/); a tmpfs saves disk writes.")
@click.option("--force-nocache", is_flag=True, help="Compose even if the inputs did not change.")
@click.option("--dry-run", is_flag=True, help="Print the packages that would be installed, then exit.")
@click.option("--print-only", is_flag=True, help="Print the flattened treefile as JSON, then exit.")
@click.option("--parent", help="Parent commit (default: the ref's current commit).")
@click.option("--no-parent", is_flag=True, help="Make a commit without a parent.")
@click.option("--add-metadata-string", multiple=True, metavar="KEY=VALUE",
              help="Add a string to the commit metadata (repeatable; overrides the treefile).")
@click.option("--add-metadata-from-json", type=click.Path(dir_okay=False, path_type=Path),
              help="Add the members of a JSON object to the commit metadata.")
@click.option("--arch", "arch_name", help="Compose for this architecture (x86_64, aarch64, ppc64le).")
@click.option("--no-scripts", is_flag=True, help="Do not run package scriptlets or postprocess scripts.")
@click.option("--touch-if-changed", type=click.Path(dir_okay=False, path_type=Path),
              help="Update the modification time of FILE when a new commit was made.")
@click.option("--unified-core", is_flag=True, help="Accepted for compatibility with rpm-ostree (always on).")
@click.option("--cache-only", is_flag=True, help="Use only the repository metadata already in --cachedir.")
@click.option("--download-only", is_flag=True,
              help="Resolve and download the packages into --cachedir, then stop (no commit).")
@click.option("--download-only-rpms", is_flag=True, help="Same as --download-only.")
@click.option("--previous-commit", metavar="COMMIT",
              help="Compare with this commit (change detection, automatic version, pkgdiff, users and groups).")
@click.option("--previous-inputhash", metavar="DIGEST",
              help="No new commit when the input hash equals DIGEST.")
@click.option("--previous-version", metavar="VERSION", help="Count the automatic version on from VERSION.")
@click.option("--ex-lockfile", "lockfile", type=click.Path(dir_okay=False, path_type=Path),
              help="Pin packages to the versions in this rpm-ostree lockfile (JSON); enables lockfile-repos.")
@click.option("--ex-write-lockfile-to", "write_lockfile_to", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the resolved packages as an rpm-ostree lockfile (JSON).")
@click.option("--source-root", type=click.Path(file_okay=False, path_type=Path), metavar="PATH",
              help="Rootfs to configure the package repositories from: its etc/yum.repos.d, etc/dnf/vars and "
                   "releasever (the treefile's releasever and repovars win).")
@click.option("--postprocess", "postprocess_", is_flag=True, expose_value=False,
              help="Accepted for compatibility (compose tree always postprocesses).")
def tree(treefile: Path, repo_path: Path | None, write_composejson_to: Path | None,
         write_commitid_to: Path | None, cachedir: Path | None, workdir: Path | None, force_nocache: bool, dry_run: bool,
         print_only: bool, parent: str | None, no_parent: bool, add_metadata_string: tuple[str, ...],
         add_metadata_from_json: Path | None, arch_name: str | None, no_scripts: bool,
         touch_if_changed: Path | None, unified_core: bool, cache_only: bool, download_only: bool,
         download_only_rpms: bool, previous_commit: str | None, previous_inputhash: str | None,
         previous_version: str | None, lockfile: Path | None, write_lockfile_to: Path | None,
         source_root: Path | None) -> None:
    """Compose TREEFILE into a commit in --repo."""
    from hybridos.compose.treefile import load_treefile

    arch = Architecture.parse(arch_name) if arch_name else Architecture.host()
    tf = load_treefile(treefile, arch)
    if print_only:
        click.echo(json.dumps(tf.to_json(), indent=2, sort_keys=False))
        return
    if parent and no_parent:
        raise UsageError("--parent and --no-parent exclude each other")
    download_only = download_only or download_only_rpms
    if (download_only or cache_only) and cachedir is None:
        raise UsageError("--download-only and --cache-only need --cachedir")
    if repo_path is None and not dry_run and not download_only:
        raise UsageError("--repo is required (except with --print-only, --dry-run or --download-only)")

    from hybridos.compose.pipeline import ComposeOptions, compose_tree

    metadata = _read_metadata_json(add_metadata_from_json)
    metadata.update(parse_key_values(add_metadata_string, "--add-metadata-string"))
    options = ComposeOptions(
        repo=repo_path,
        arch=arch,
        cachedir=cachedir,
        workdir=workdir,
        force_nocache=force_nocache,
        dry_run=dry_run,
        parent=parent,
        no_parent=no_parent,
        write_commitid_to=write_commitid_to,
        write_composejson_to=write_composejson_to,
        extra_metadata=metadata,
        run_scripts=not no_scripts,
        cache_only=cache_only,
        download_only=download_only,
        previous_commit=previous_commit,
        previous_inputhash=previous_inputhash,
        previous_version=previous_version,
        lockfile=lockfile,
        write_lockfile_to=write_lockfile_to,
        source_root=source_root,
        progress=sys.stderr.isatty(),
        on_step=(lambda msg: click.echo(msg, err=True)) if sys.stderr.isatty() else None,
    )
    result = compose_tree(tf, options)
    if dry_run:
        for nevra in result.packages:
            click.echo(str(nevra))
        return
    if download_only:
        for line in result.messages:
            click.echo(line)
        return
    for line in result.messages:
        click.echo(line)
    if result.commit is None:
        click.echo("No apparent changes since previous commit; use --force-nocache to override")
        return
    if touch_if_changed is not None:
        touch_if_changed.touch()
    if result.ref and not write_commitid_to:
        click.echo(f"{result.ref} => {result.commit}")
    else:
        click.echo(f"Wrote commit: {result.commit}")


@compose.command("install")
@click.argument("treefile", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("destdir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--repo", "-r", "repo_path", type=click.Path(file_okay=False, path_type=Path),
              help="OSTree repository (previous commit, ostree-layers, configuration); required.")
@click.option("--cachedir", type=click.Path(file_okay=False, path_type=Path),
              help="Keep repository metadata and downloaded packages here between composes.")
@click.option("--force-nocache", is_flag=True, help="Install even if the inputs did not change.")
@click.option("--cache-only", is_flag=True, help="Use only the repository metadata already in --cachedir.")
@click.option("--download-only", is_flag=True, help="Resolve and download the packages into --cachedir, then stop.")
@click.option("--download-only-rpms", is_flag=True, help="Same as --download-only.")
@click.option("--dry-run", is_flag=True, help="Print the packages that would be installed, then exit.")
@click.option("--print-only", is_flag=True, help="Print the flattened treefile as JSON, then exit.")
@click.option("--source-root", type=click.Path(file_okay=False, path_type=Path), metavar="PATH",
              help="Rootfs to configure the package repositories from (see compose tree).")
@click.option("--postprocess", "postprocess_", is_flag=True,
              help="Also run the final postprocessing (what `compose postprocess` does).")
@click.option("--touch-if-changed", type=click.Path(dir_okay=False, path_type=Path),
              help="Update the modification time of FILE when a root was installed.")
@click.option("--previous-commit", metavar="COMMIT", help="Compare with this commit (see compose tree).")
@click.option("--previous-inputhash", metavar="DIGEST", help="Nothing to do when the input hash equals DIGEST.")
@click.option("--previous-version", metavar="VERSION", help="Count the automatic version on from VERSION.")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), help="Refused: DESTDIR is the work "
              "directory (as rpm-ostree: --workdir is ignored with install-root).")
@click.option("--ex-lockfile", "lockfile", type=click.Path(dir_okay=False, path_type=Path),
              help="Pin packages to the versions in this rpm-ostree lockfile (JSON).")
@click.option("--ex-write-lockfile-to", "write_lockfile_to", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the resolved packages as an rpm-ostree lockfile (JSON).")
@click.option("--unified-core", is_flag=True, help="Accepted for compatibility with rpm-ostree (always on).")
@click.option("--arch", "arch_name", help="Compose for this architecture (x86_64, aarch64, ppc64le).")
@click.option("--no-scripts", is_flag=True, help="Do not run package scriptlets or postprocess scripts.")
def install(treefile: Path, destdir: Path, repo_path: Path | None, cachedir: Path | None, force_nocache: bool,
            cache_only: bool, download_only: bool, download_only_rpms: bool, dry_run: bool, print_only: bool,
            source_root: Path | None, postprocess_: bool, touch_if_changed: Path | None,
            previous_commit: str | None, previous_inputhash: str | None, previous_version: str | None,
            workdir: Path | None, lockfile: Path | None, write_lockfile_to: Path | None, unified_core: bool,
            arch_name: str | None, no_scripts: bool) -> None:
    """Install TREEFILE's packages into DESTDIR/rootfs and postprocess it, without committing (rpm-ostree's
    split compose: then `compose postprocess` and `compose commit`)."""
    from hybridos.compose.treefile import load_treefile

    arch = Architecture.parse(arch_name) if arch_name else Architecture.host()
    tf = load_treefile(treefile, arch)
    if print_only:
        click.echo(json.dumps(tf.to_json(), indent=2, sort_keys=False))
        return
    if repo_path is None:
        raise UsageError("--repo must be specified")
    if workdir is not None:
        raise UsageError("--workdir is ignored with install-root")
    download_only = download_only or download_only_rpms
    if (download_only or cache_only) and cachedir is None:
        raise UsageError("--download-only and --cache-only need --cachedir")
    from hybridos.compose.pipeline import ComposeOptions, compose_tree

    result = compose_tree(tf, ComposeOptions(
        repo=repo_path, arch=arch, cachedir=cachedir, force_nocache=force_nocache, dry_run=dry_run,
        run_scripts=not no_scripts, cache_only=cache_only, download_only=download_only,
        previous_commit=previous_commit, previous_inputhash=previous_inputhash, previous_version=previous_version,
        lockfile=lockfile, write_lockfile_to=write_lockfile_to, source_root=source_root, install_root=destdir,
        install_postprocess=postprocess_, progress=sys.stderr.isatty(),
        on_step=(lambda msg: click.echo(msg, err=True)) if sys.stderr.isatty() else None))
    if dry_run:
        for nevra in result.packages:
            click.echo(str(nevra))
        return
    if not download_only and not result.messages:
        click.echo("No apparent changes since previous commit; use --force-nocache to override")
        return
    for line in result.messages:
        click.echo(line)
    if touch_if_changed is not None and not download_only:
        touch_if_changed.touch()


@compose.command("postprocess")
@click.argument("rootfs", type=click.Path(file_okay=False, path_type=Path))
@click.argument("treefile", type=click.Path(dir_okay=False, path_type=Path), required=False)
@click.option("--unified-core", is_flag=True, help="Accepted for compatibility with rpm-ostree (always on).")
@click.option("--arch", "arch_name", help="The treefile's architecture (default: this machine's).")
def postprocess_cmd(rootfs: Path, treefile: Path | None, unified_core: bool, arch_name: str | None) -> None:
    """Final postprocessing of ROOTFS (what `compose install` made) into OSTree's layout; TREEFILE is optional."""
    from hybridos.compose.pipeline import postprocess_rootfs
    from hybridos.compose.treefile import Treefile, load_treefile

    arch = Architecture.parse(arch_name) if arch_name else Architecture.host()
    tf = load_treefile(treefile, arch) if treefile is not None else Treefile(path=Path("(none)"), basearch=arch)
    click.echo(postprocess_rootfs(rootfs, tf))


@compose.command("commit")
@click.argument("treefile", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("rootfs", type=click.Path(file_okay=False, path_type=Path))
@click.option("--repo", "-r", "repo_path", type=click.Path(file_okay=False, path_type=Path),
              help="OSTree repository to commit to; required.")
@click.option("--write-composejson-to", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the compose result as JSON to FILE.")
@click.option("--write-commitid-to", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the commit id to FILE and do not move any ref.")
@click.option("--parent", help="Parent commit (default: the ref's current commit).")
@click.option("--no-parent", is_flag=True, help="Make a commit without a parent.")
@click.option("--add-metadata-string", multiple=True, metavar="KEY=VALUE",
              help="Add a string to the commit metadata (repeatable; overrides the treefile).")
@click.option("--add-metadata-from-json", type=click.Path(dir_okay=False, path_type=Path),
              help="Add the members of a JSON object to the commit metadata.")
@click.option("--unified-core", is_flag=True, help="Accepted for compatibility with rpm-ostree (always on).")
@click.option("--arch", "arch_name", help="The treefile's architecture (default: this machine's).")
def commit_cmd(treefile: Path, rootfs: Path, repo_path: Path | None, write_composejson_to: Path | None,
               write_commitid_to: Path | None, parent: str | None, no_parent: bool,
               add_metadata_string: tuple[str, ...], add_metadata_from_json: Path | None, unified_core: bool,
               arch_name: str | None) -> None:
    """Commit ROOTFS (from `compose install`) to --repo with TREEFILE's ref and metadata."""
    from hybridos.compose.pipeline import ComposeOptions, commit_installed
    from hybridos.compose.treefile import load_treefile

    if repo_path is None:
        raise UsageError("--repo must be specified")
    if parent and no_parent:
        raise UsageError("--parent and --no-parent exclude each other")
    arch = Architecture.parse(arch_name) if arch_name else Architecture.host()
    tf = load_treefile(treefile, arch)
    metadata = _read_metadata_json(add_metadata_from_json)
    metadata.update(parse_key_values(add_metadata_string, "--add-metadata-string"))
    result = commit_installed(tf, ComposeOptions(
        repo=repo_path, arch=arch, parent=parent, no_parent=no_parent, write_commitid_to=write_commitid_to,
        write_composejson_to=write_composejson_to, extra_metadata=metadata, progress=sys.stderr.isatty()), rootfs)
    for line in result.messages:
        click.echo(line)
    if result.ref and not write_commitid_to:
        click.echo(f"{result.ref} => {result.commit}")
    else:
        click.echo(f"Wrote commit: {result.commit}")


def _add_container_encapsulate() -> None:
    from hybridos.cli.container import container_encapsulate

    compose.add_command(container_encapsulate)


_add_container_encapsulate()

"""Container image commands: ``compose container-encapsulate`` and ``repo container encapsulate|image ...``
(rpm-ostree's and ostree-ext's names)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from hybridos.cli._options import open_repo, parse_key_values, repo_option
from hybridos.errors import UsageError


def _encapsulate(ctx, repo_path, rev, imgref, labels, cmd, max_layers, previous_manifest, arch,
                 compression_level) -> None:
    from hybridos.container.encapsulate import encapsulate_to
    from hybridos.container.imgref import ImageReference
    from hybridos.container.oci import Manifest

    repo = open_repo(ctx, repo_path)
    dest = ImageReference.parse(imgref)
    previous = None
    if previous_manifest is not None:
        try:
            previous = Manifest.parse(previous_manifest.read_bytes())
        except OSError as exc:
            raise UsageError(f"--previous-build-manifest {previous_manifest}: {exc.strerror}") from None
    result = encapsulate_to(repo, rev, dest, labels=parse_key_values(labels, "--label"),
                            cmd=list(cmd) or None, max_layers=max_layers, previous=previous, arch=arch,
                            compression_level=compression_level)
    click.echo(f"Pushed digest: {result.manifest_digest}")


def _encapsulate_command(name: str, help_text: str) -> click.Command:
    @click.command(name, help=help_text)
    @repo_option
    @click.argument("rev")
    @click.argument("imgref")
    @click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="Add a label (repeatable).")
    @click.option("--cmd", multiple=True, help="The image's default command (repeat for each argument).")
    @click.option("--max-layers", type=click.IntRange(1, 127), default=64, show_default=True,
                  help="At most this many layers (the commit layer and package chunks).")
    @click.option("--previous-build-manifest", type=click.Path(dir_okay=False, path_type=Path),
                  help="The previous build's manifest: packages keep their layers, so updates reuse them.")
    @click.option("--arch", help="Image architecture (default: the commit's).")
    @click.option("--compression-level", type=click.IntRange(1, 9), default=1, show_default=True,
                  help="gzip level of the layers (1 is fastest; 6 makes images about 20% smaller).")
    @click.pass_context
    def cmd(ctx, repo_path, rev, imgref, labels, cmd, max_layers, previous_build_manifest, arch, compression_level):
        _encapsulate(ctx, repo_path, rev, imgref, labels, cmd, max_layers, previous_build_manifest, arch,
                     compression_level)
    return cmd


container_encapsulate = _encapsulate_command(
    "container-encapsulate", "Encapsulate commit REV as an OSTree-native container image at IMGREF "
    "(oci:DIR[:TAG], oci-archive:FILE, registry:NAME, docker://NAME).")


@click.group("container")
def container() -> None:
    """OSTree-native container images (like ``ostree container``)."""


container.add_command(_encapsulate_command(
    "encapsulate", "Encapsulate commit REV as an OSTree-native container image at IMGREF."))


@container.group("image")
def image() -> None:
    """Images imported into the repository."""


@image.command("pull")
@repo_option
@click.argument("imgref")
@click.pass_context
def image_pull(ctx, repo_path, imgref) -> None:
    """Import IMGREF (an ostree-unverified-image:/ostree-remote-image: reference) into the repository."""
    from hybridos.cli.main import global_options
    from hybridos.container.imgref import OstreeImageReference
    from hybridos.container.skopeo import auth_file
    from hybridos.container.store import pull_image

    repo = open_repo(ctx, repo_path)
    ref = OstreeImageReference.parse(imgref)
    result = pull_image(repo, ref, authfile=auth_file(global_options(ctx).sysroot), progress=click.echo)
    click.echo(f"Imported: {result.merge_commit}")


@image.command("list")
@repo_option
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def image_list(ctx, repo_path, as_json) -> None:
    """The imported images."""
    from hybridos.container.store import describe, list_images, stored_image

    repo = open_repo(ctx, repo_path)
    out = {}
    for name, merge in list_images(repo).items():
        img = stored_image(repo, merge)
        out[name] = {"merge-commit": merge, **(describe(img) if img else {})}
    if as_json:
        click.echo(json.dumps(out, indent=2, sort_keys=True))
        return
    for name in out:
        click.echo(name)


@image.command("prune-layers")
@repo_option
@click.pass_context
def image_prune(ctx, repo_path) -> None:
    """Remove the layer refs no imported image uses (then ``repo prune`` frees their objects)."""
    from hybridos.container.store import prune_layers

    click.echo(f"Removed layer refs: {prune_layers(open_repo(ctx, repo_path))}")


COMMANDS = [container]

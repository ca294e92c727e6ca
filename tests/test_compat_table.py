"""docs/compatibility.md's rpm-ostree option table is generated from the CLI; this fails when they drift."""

from __future__ import annotations

import json

import click

from hybridos.cli import compat_table
from hybridos.cli.main import cli


def test_the_committed_table_equals_the_one_generated_from_the_cli():
    table = compat_table.render(cli, json.loads(compat_table.data_path().read_text()))
    doc = compat_table.docs_path().read_text()
    assert compat_table.splice(doc, table) == doc, \
        "docs/compatibility.md is stale: run python -m hybridos.cli.compat_table --write"


def test_the_table_follows_the_cli():
    data = {"source": "test", "commands": {"upgrade": ["--check", "--frobnicate/-f"], "nosuch": ["--x"],
                                          "finalize-deployment": ["--allow-unlocked"]}}
    table = compat_table.render(cli, data)
    assert "| `upgrade` | `--check` | yes |" in table
    assert "| `upgrade` | `--frobnicate/-f` | no: not implemented yet (issue 20) |" in table
    assert "| `nosuch` | `--x` | no: no `hybridos nosuch` command yet (issue 20) |" in table
    assert "| `finalize-deployment` | `--allow-unlocked` | yes |" in table

    @click.group()
    def root():
        pass

    @root.command()
    @click.option("--frobnicate", "-f", is_flag=True)
    def upgrade(frobnicate):
        pass

    assert "| `upgrade` | `--frobnicate/-f` | yes |" in compat_table.render(root, data)

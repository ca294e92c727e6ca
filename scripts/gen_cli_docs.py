"""Write docs/cli.md from the click command tree, so the reference cannot drift from the code.

    python scripts/gen_cli_docs.py [--check]

``--check`` exits 1 when docs/cli.md differs from what would be generated (used by the test suite).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from hybridos.cli.main import cli

DOC = Path(__file__).resolve().parents[1] / "docs" / "cli.md"

HEADER = """\
# Command reference

Generated from the code by `python scripts/gen_cli_docs.py`; a test fails when this file is out of date.
Every command takes the global options of `hybridos` (`--sysroot PATH` or `HYBRIDOS_SYSROOT`, `--debug`).
Errors print one line, `error: <message>`, and exit non-zero (1 for errors and usage errors, as rpm-ostree; 77 for
"unchanged" with `--unchanged-exit-77`, 130 when cancelled).
"""


def _walk(cmd: click.Command, path: list[str], ctx: click.Context | None):
    yield path, cmd, ctx
    if isinstance(cmd, click.Group):
        for name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, name)
            if sub is None or getattr(sub, "hidden", False):
                continue
            subctx = click.Context(sub, info_name=name, parent=ctx)
            yield from _walk(sub, path + [name], subctx)


def render() -> str:
    out = [HEADER]
    root = click.Context(cli, info_name="hybridos", terminal_width=100, max_content_width=100,
                         help_option_names=["-h", "--help"])
    for path, cmd, ctx in _walk(cli, ["hybridos"], root):
        level = "#" * min(len(path) + 1, 4)
        out.append(f"\n{level} `{' '.join(path)}`\n")
        help_text = ctx.get_help() if ctx else cmd.get_help(root)
        out.append("```text\n" + help_text.rstrip() + "\n```\n")
    return "".join(out)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    text = render()
    if "--check" in argv:
        if not DOC.exists() or DOC.read_text() != text:
            print("docs/cli.md is out of date: run python scripts/gen_cli_docs.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(text)
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

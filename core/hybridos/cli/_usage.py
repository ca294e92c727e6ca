"""Usage errors in rpm-ostree's form: ``error: <message>`` on one line and exit code 1.

rpm-ostree parses options with GOption; a parse error, an unknown command or a missing subcommand is a GError
that its ``main`` prints as ``error: ...`` and turns into exit code 1 (``rust/src/main.rs``), where click would
exit 2 with a three-line "Usage/Try/Error" block. The wording of the cases scripts meet follows rpm-ostree's
(``src/app/libmain.cxx``, GLib's option parser).
"""

from __future__ import annotations

import re

import click

#: rpm-ostree (and ostree) exit 1 for every usage error
USAGE_EXIT = 1

_NO_SUCH_COMMAND = re.compile(r"No such command '(.*)'\.$", re.S)


def usage_lines(exc: click.UsageError) -> tuple[str | None, str]:
    """``(help text to print first or None, the one-line message)`` for a click usage error."""
    ctx = exc.ctx
    nested = ctx is not None and ctx.parent is not None
    if isinstance(exc, click.exceptions.NoArgsIsHelpError):   # `hybridos`, `hybridos override`
        help_text = ctx.get_help() if ctx is not None else None
        if nested:
            return help_text, f'No "{ctx.info_name}" subcommand specified'
        return help_text, "No command specified"
    if isinstance(exc, click.exceptions.NoSuchOption):
        return None, f"Unknown option {exc.option_name}"
    m = _NO_SUCH_COMMAND.match(exc.format_message())
    if m is not None:
        if nested:
            return None, f'Unknown "{ctx.info_name}" subcommand "{m.group(1)}"'
        return None, f"Unknown command '{m.group(1)}'"
    return None, " ".join(exc.format_message().split())

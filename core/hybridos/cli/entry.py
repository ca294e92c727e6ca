"""The ``hybridos`` console entry point, with a start-up fast path for ``status`` served by hybridosd.

``hybridos status`` is what scripts, prompts and monitoring poll. When hybridosd serves the sysroot, the answer
is one D-Bus property read, and most of the command's time would be importing click and the command tree. So
the plain forms (``[--sysroot P] status [--json] [-b|--booted] [-v|--verbose] [--pending-exit-77]``, with
``--sysroot`` also after the verb) are answered here with a handful of standard modules. Anything else, or no
daemon for the sysroot, or anything unexpected, goes to the full command line, which gives the same output.
"""

from __future__ import annotations

import os
import sys

#: the flags the fast path understands, and the keyword each sets
_FLAGS = {"--json": "as_json", "-b": "booted", "--booted": "booted", "-v": "verbose", "--verbose": "verbose",
          "--pending-exit-77": "pending_exit_77"}


def parse_status_argv(argv: list[str]) -> dict | None:
    """The options of a plain ``status`` invocation, or None when ``argv`` is anything else."""
    opts = {"sysroot": None, "as_json": False, "booted": False, "verbose": False, "pending_exit_77": False}
    seen_verb = False
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--sysroot" and i + 1 < len(argv):
            opts["sysroot"] = argv[i + 1]
            i += 2
            continue
        if arg.startswith("--sysroot="):
            opts["sysroot"] = arg[len("--sysroot="):]
        elif arg == "status" and not seen_verb:
            seen_verb = True
        elif seen_verb and arg in _FLAGS:
            opts[_FLAGS[arg]] = True
        else:
            return None
        i += 1
    if not seen_verb or opts["sysroot"] == "":
        return None
    if opts["sysroot"] is None:
        env = os.environ.get("HYBRIDOS_SYSROOT")
        if env == "":
            return None
        opts["sysroot"] = env or "/"
    return opts


def status_fast(argv: list[str]) -> int | None:
    """Print the status as ``hybridos status`` would and return its exit code, or None to use the full CLI."""
    if os.environ.get("HYBRIDOS_DEBUG") or os.environ.get("HYBRIDOS_NO_DAEMON"):
        return None
    opts = parse_status_argv(argv)
    if opts is None:
        return None
    try:
        import json
        from pathlib import Path

        from hybridos.cli._client import status_through_daemon
        from hybridos.sysroot.status import status_text

        data = status_through_daemon(Path(opts["sysroot"]), booted_only=opts["booted"])
        if data is None:
            return None
        from hybridos.operations.autoupdate import with_automatic_updates

        lines = with_automatic_updates(Path(opts["sysroot"]), data, status_text(data, verbose=opts["verbose"]),
                                       verbose=opts["verbose"])
        if opts["as_json"]:
            out = json.dumps(data, indent=2)
        else:
            out = "\n".join(lines)
    except Exception:  # the full command line reports whatever this was, properly
        return None
    try:
        sys.stdout.write(out + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        return 141
    deps = data["deployments"]
    return 77 if opts["pending_exit_77"] and len(deps) > 1 and not deps[0]["booted"] else 0


def main() -> None:
    code = status_fast(sys.argv[1:])
    if code is not None:
        sys.exit(code)
    from hybridos.cli.main import main as full_main

    full_main()

"""``automatic-version-prefix``: the next commit version, as rpm-ostree computes it."""

from __future__ import annotations

import datetime as _dt
import re

from hybridos.util.numbers import is_decimal

_DATE_RE = re.compile(r"<date:([^>]*)>")


def next_version(prefix: str, last_version: str | None, *, suffix: str = ".",
                 now: _dt.datetime | None = None) -> str:
    """The version after ``last_version`` for ``prefix``.

    ``22`` gives 22, 22.1, 22.2...; a ``<date:FORMAT>`` tag (strftime format, UTC) is expanded and the
    sequence starts at ``.0``: ``22.<date:%Y>`` gives 22.2019.0, 22.2019.1, then 22.2020.0 the next year.
    A previous version that does not start with the prefix restarts the sequence.
    """
    now = now or _dt.datetime.now(_dt.UTC)
    has_date = bool(_DATE_RE.search(prefix))
    expanded = _DATE_RE.sub(lambda m: now.strftime(m.group(1)), prefix)
    first = f"{expanded}{suffix}0" if has_date else expanded
    if not last_version or not last_version.startswith(expanded):
        return first
    rest = last_version[len(expanded):]
    if rest == "":
        return f"{expanded}{suffix}1"
    if rest[0] != suffix:
        return first
    tail = rest[1:]
    if not is_decimal(tail):
        return first
    return f"{expanded}{suffix}{int(tail) + 1}"

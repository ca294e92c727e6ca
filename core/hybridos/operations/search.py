"""``search``: rpm-ostree's package search over the enabled repositories (``rpmostreed-os.cxx`` os_handle_search).

Three match groups, each at most 50 package names: "Summary & Name" (one term: it matches both; several terms:
each term matches the name or the summary), "Name" (every term matches the name), "Summary" (every term matches
the summary). A term matches a value when it is equal to it or a substring of it, case-insensitively, or, when
it contains ``*?[``, as a glob; exact matches are listed before substring ones. Output as rpm-ostree prints it.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

#: rpm-ostree's cap per match group
GROUP_LIMIT = 50


@dataclass(frozen=True)
class Available:
    name: str
    summary: str


def _is_glob(term: str) -> bool:
    return any(c in term for c in "*?[")


def _match(value: str, term: str, exact: bool) -> bool:
    v, t = value.lower(), term.lower()
    if _is_glob(term):
        return fnmatch.fnmatchcase(v, t)
    return v == t if exact else t in v


def _either(value: str, term: str) -> bool:
    return _match(value, term, True) or _match(value, term, False)


def _group(pkgs, terms, keys) -> list[Available]:
    """One match group: the packages whose ``keys`` (attributes) match ``terms``, exact matches first."""
    found: dict[str, Available] = {}

    def add(pred) -> None:
        for p in pkgs:
            if len(found) >= GROUP_LIMIT:
                return
            if p.name not in found and pred(p):
                found[p.name] = p

    if len(keys) == 1:
        key = keys[0]
        add(lambda p: all(_match(getattr(p, key), t, True) for t in terms))
        add(lambda p: all(_match(getattr(p, key), t, False) for t in terms))
    elif len(terms) >= 2:
        add(lambda p: all(any(_either(getattr(p, k), t) for k in keys) for t in terms))
    else:
        add(lambda p: all(_either(getattr(p, k), terms[0]) for k in keys))
    return list(found.values())


def search(packages, terms) -> list[tuple[str, list[Available]]]:
    """``[(group label, matches)]`` for the groups with matches, in rpm-ostree's order (pure)."""
    pkgs = sorted(packages, key=lambda p: p.name)
    groups = []
    for label, keys in (("Summary & Name", ("name", "summary")), ("Name", ("name",)), ("Summary", ("summary",))):
        matches = _group(pkgs, terms, keys)
        if matches:
            groups.append((label, matches))
    return groups


def search_lines(groups) -> list[str]:
    """rpm-ostree's output: a blank line and ``===== X Matched =====`` per group, ``name : summary`` lines."""
    if not groups:
        return ["No matches found."]
    out = []
    for label, matches in groups:
        out += ["", f"===== {label} Matched ====="]
        out += [f"{p.name} : {p.summary}" for p in matches]
    return out


def available_packages(repos) -> list[Available]:
    """Every package of the loaded repositories (``LoadedRepo``), without the ones their ``excludepkgs`` hide."""
    import solv

    from hybridos.packages.repomd import open_solv

    pool = solv.Pool()
    out = []
    for repo in repos:
        srepo = open_solv(pool, repo)
        for s in srepo.solvables:
            if any(fnmatch.fnmatchcase(s.name, pat) for pat in repo.excludepkgs):
                continue
            out.append(Available(s.name, s.lookup_str(solv.SOLVABLE_SUMMARY) or ""))
    return out

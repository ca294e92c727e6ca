"""The JSONPath subset json-glib's ``json_path_query`` understands, for ``status --jsonpath``: ``$``, ``.name``,
``['name']``, ``[n]`` (negative counts from the end), ``[a,b]``, ``[start:end]``, ``[*]``/``.*`` and ``..name``
(recursive descent). Like json-glib, the result is always an array of the matches."""

from __future__ import annotations

import re
from typing import Any

from hybridos.errors import UsageError

_TOKEN = re.compile(r"""
    \.\.(?P<rec>[A-Za-z_][\w-]*|\*)        # ..name  ..*
  | \.(?P<name>[A-Za-z_][\w-]*|\*)         # .name   .*
  | \[(?P<idx>[^\]]*)\]                    # [ ... ]
""", re.X)


def parse(expr: str) -> list[tuple[str, Any]]:
    if not expr.startswith("$"):
        raise UsageError("a JSONPath expression starts with '$'")
    steps, pos = [], 1
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if not m:
            raise UsageError(f"invalid JSONPath at character {pos + 1}: {expr[pos:]!r}")
        pos = m.end()
        if m["rec"] is not None:
            steps.append(("rec", m["rec"]))
        elif m["name"] is not None:
            steps.append(("child", m["name"]))
        else:
            steps.append(("index", _index(m["idx"].strip(), expr)))
    return steps


def _index(text: str, expr: str):
    if text == "*":
        return "*"
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    if ":" in text:
        parts = text.split(":")
        if len(parts) > 3 or not all(re.fullmatch(r"-?\d*", p) for p in parts):
            raise UsageError(f"invalid JSONPath slice [{text}] in {expr!r}")
        return slice(*(int(p) if p else None for p in parts))
    items = [t.strip() for t in text.split(",")]
    if not items or not all(re.fullmatch(r"-?\d+", t) for t in items):
        raise UsageError(f"invalid JSONPath index [{text}] in {expr!r}")
    return [int(t) for t in items]


def _children(node, key):
    if key == "*":
        if isinstance(node, dict):
            return list(node.values())
        return list(node) if isinstance(node, list) else []
    if isinstance(key, str):
        return [node[key]] if isinstance(node, dict) and key in node else []
    if isinstance(node, list):
        if isinstance(key, slice):
            return node[key]
        return [node[i] for i in key if -len(node) <= i < len(node)]
    return []


def _descendants(node):
    yield node
    for child in (node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()):
        yield from _descendants(child)


def query(expr: str, root: Any) -> list:
    nodes = [root]
    for kind, key in parse(expr):
        if kind == "rec":
            nodes = [c for n in nodes for d in _descendants(n) for c in _children(d, key)]
        else:
            nodes = [c for n in nodes for c in _children(n, key)]
    return nodes

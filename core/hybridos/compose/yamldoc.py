"""Configuration documents (treefiles) as plain data: YAML or JSON text -> dicts, lists, strings, numbers,
booleans and None, or a one-line ConfigError naming the file and the key (or the position).

Refused, never crashing the caller: nesting deeper than MAX_DEPTH, aliases that refer to themselves or expand to
more than MAX_NODES values (a YAML alias bomb), dates, binary data, sets and ordered maps, unknown tags, numbers
of more digits than Python converts, NUL characters. Messages name keys and positions, never values: a file that
is not a treefile at all (``include: /etc/shadow``) is not echoed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

from hybridos.errors import ConfigError

MAX_DEPTH = 64
MAX_NODES = 200_000


@dataclass(frozen=True)
class _Bad:
    """A value the loader could not turn into plain data; the walk reports it with its key."""

    what: str


class _Loader(yaml.SafeLoader):
    """SafeLoader with a nesting limit and without the types a treefile never needs."""

    depth = 0

    def compose_node(self, parent, index):
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(None, None, f"nests deeper than {MAX_DEPTH} levels",
                                                  self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _refuse(what: str):
    def construct(loader, node):
        return _Bad(what)
    return construct


def _checked(base, what: str):
    def construct(loader, node):
        try:
            return base(loader, node)
        except (ValueError, KeyError, TypeError, OverflowError):
            return _Bad(what)
    return construct


for _tag, _what in (("timestamp", "a date (quote it to mean a string)"), ("binary", "binary data (!!binary)"),
                    ("set", "a set (!!set)"), ("omap", "an ordered map (!!omap)"), ("pairs", "a list of pairs (!!pairs)")):
    _Loader.add_constructor(f"tag:yaml.org,2002:{_tag}", _refuse(_what))
_Loader.add_constructor("tag:yaml.org,2002:int",
                        _checked(yaml.SafeLoader.construct_yaml_int, "not a number Python can read (too many digits?)"))
_Loader.add_constructor("tag:yaml.org,2002:float", _checked(yaml.SafeLoader.construct_yaml_float, "not a number"))
_Loader.add_constructor("tag:yaml.org,2002:bool", _checked(yaml.SafeLoader.construct_yaml_bool, "not a boolean"))
_Loader.add_constructor(None, _refuse("a value with an unknown tag"))


def _json_int(text: str):
    try:
        return int(text)
    except ValueError:
        return _Bad("a number with too many digits")


def load_document(data: bytes, name: str, known_key: Callable[[str], bool] | None = None) -> dict[str, Any]:
    """Treefile bytes -> mapping of plain values. JSON for ``*.json``, YAML otherwise.

    With ``known_key``, a mapping none of whose keys it knows is "not a treefile", said before anything of the
    file (a key path) could be echoed."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{name}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if name.endswith(".json"):
        try:
            doc = json.loads(text, parse_int=_json_int)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{name}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
        except RecursionError:
            raise ConfigError(f"{name}: invalid JSON: nests too deeply") from None
    else:
        try:
            doc = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or "not YAML"
            raise ConfigError(f"{name}: invalid YAML{where}: {one_line(problem)}") from None
        except RecursionError:
            raise ConfigError(f"{name}: invalid YAML: nests too deeply") from None
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ConfigError(f"{name}: a treefile must be a mapping of keys to values, not {_kind(doc)}")
    if doc and known_key is not None and not any(isinstance(k, str) and known_key(k) for k in doc):
        raise ConfigError(f"{name}: not a treefile (none of its keys is a treefile key)")
    _Walk(name).check(doc, "", 0)
    return doc


def one_line(text: str) -> str:
    return " ".join(str(text).split())[:200]


def _kind(value: Any) -> str:
    if isinstance(value, _Bad):
        return value.what
    return {str: "a string", list: "a list", int: "a number", float: "a number", bool: "a boolean"}.get(
        type(value), type(value).__name__)


class _Walk:
    """Check a loaded document is a tree of plain values of bounded size (aliases expanded)."""

    def __init__(self, name: str):
        self.name = name
        self.nodes = 0
        self.active: set[int] = set()

    def fail(self, path: str, why: str) -> ConfigError:
        return ConfigError(f"{self.name}: '{path or '(top)'}' {why}")

    def check(self, value: Any, path: str, depth: int) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise self.fail(path, f"makes the document larger than {MAX_NODES} values (a YAML alias bomb?)")
        if depth > MAX_DEPTH:
            raise self.fail(path, f"nests deeper than {MAX_DEPTH} levels")
        if isinstance(value, _Bad):
            raise self.fail(path, f"is {value.what}, which a treefile cannot hold")
        if isinstance(value, str):
            if "\0" in value:
                raise self.fail(path, "contains a NUL character")
            return
        if value is None or isinstance(value, (bool, int, float)):
            return
        if not isinstance(value, (dict, list)):
            raise self.fail(path, f"is {_kind(value)}, which a treefile cannot hold")
        if id(value) in self.active:
            raise self.fail(path, "refers to itself (a recursive YAML alias)")
        self.active.add(id(value))
        if isinstance(value, dict):
            for k, v in value.items():
                if isinstance(k, _Bad) or not (k is None or isinstance(k, (str, int, float, bool))):
                    raise self.fail(path, f"has a key that is {_kind(k)}")
                if isinstance(k, str) and "\0" in k:
                    raise self.fail(path, "has a key with a NUL character")
                self.check(v, f"{path}.{k}" if path else str(k), depth + 1)
        else:
            for i, v in enumerate(value):
                self.check(v, f"{path}[{i}]", depth + 1)
        self.active.discard(id(value))

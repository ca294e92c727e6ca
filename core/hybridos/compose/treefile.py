"""Treefiles: parse YAML/JSON, follow includes as rpm-ostree does, substitute variables, flatten.

The result is one frozen :class:`Treefile`. Merging follows rpm-ostree's ``treefile_merge``: for scalars the
includer wins (the first value seen), lists concatenate with the included file's entries first, maps are
updated by the includer, and ``packages`` is a set. ``arch-include`` entries for the target architecture are
processed after ``include``, then ``conditional-include`` entries whose ``if`` holds. Including any file twice is
an error ("include loop"), as in rpm-ostree.

Parsing (bytes -> mapping) and checking are pure; :func:`load_treefile` does the file reading.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hybridos.arch import Architecture
from hybridos.compose.yamldoc import load_document, one_line
from hybridos.errors import ConfigError

INCLUDE_MAXDEPTH = 50

# key -> (kind, merge rule). kinds: str, bool, strlist, scalar (str or number), map, variables, addfiles,
# include, arch-include, conditional-include. merge: basic (first wins), vec (included first), map, set, none.
KEYS: dict[str, tuple[str, str]] = {
    "ref": ("str", "basic"),
    "basearch": ("str", "basic"),
    "repos": ("strlist", "vec"),
    "releasever": ("scalar", "basic"),
    "packages": ("strlist", "set"),
    "exclude-packages": ("strlist", "vec"),
    "include": ("include", "none"),
    "arch-include": ("arch-include", "none"),
    "variables": ("variables", "none"),
    "conditional-include": ("conditional-include", "none"),
    "automatic-version-prefix": ("str", "basic"),
    "automatic-version-suffix": ("str", "basic"),
    "mutate-os-release": ("str", "basic"),
    "add-files": ("addfiles", "vec"),
    "remove-files": ("strlist", "vec"),
    "postprocess-script": ("str", "basic"),
    "postprocess": ("strlist", "vec"),
    "recommends": ("bool", "basic"),
    "documentation": ("bool", "basic"),
    "boot-location": ("str", "basic"),
    "machineid-compat": ("bool", "basic"),
    "etc-group-members": ("strlist", "vec"),
    "initramfs-args": ("strlist", "vec"),
    "units": ("strlist", "vec"),
    "default-target": ("str", "basic"),
    "add-commit-metadata": ("map", "map"),
    "selinux": ("bool", "basic"),
    # the rest of rpm-ostree's docs/treefile.md (see docs/treefile.md for what each does here)
    "edition": ("edition", "basic"),
    "metadata": ("map", "map"),
    "gpg-key": ("str", "basic"),
    "ignore-devices": ("bool", "basic"),
    "ima": ("bool", "basic"),
    "install-langs": ("strlist", "vec"),
    "bootstrap_packages": ("strlist", "set"),
    "repo-packages": ("repo-packages", "vec"),
    "ostree-layers": ("strlist", "vec"),
    "ostree-override-layers": ("strlist", "vec"),
    "container-cmd": ("strlist", "basic"),
    "rpmdb": ("enum:target,host,bdb,ndb,sqlite,b-d-b", "basic"),
    "rpmdb-normalize": ("bool", "basic"),
    "selinux-label-version": ("uint", "basic"),
    "cliwrap": ("bool", "basic"),
    "cliwrap-binaries": ("strlist", "vec"),
    "readonly-executables": ("bool", "basic"),
    "remove-from-packages": ("remove-from-packages", "vec"),
    "preserve-passwd": ("bool", "basic"),
    "check-passwd": ("check", "basic"),
    "check-groups": ("check", "basic"),
    "ignore-removed-users": ("strlist", "set"),
    "ignore-removed-groups": ("strlist", "set"),
    "container": ("bool", "basic"),
    "tmp-is-dir": ("bool", "basic"),
    "platform-module": ("str", "basic"),
    "repo-metadata": ("enum:inline,detached,disabled", "basic"),
    "advisories-metadata": ("enum:inline,detached,disabled", "basic"),
    "lockfile-repos": ("strlist", "vec"),
    "repovars": ("strmap", "map"),
    "sysusers": ("enum:compose-auto,compose-forced", "basic"),
    "opt-usrlocal": ("enum:var,root,stateoverlay", "basic"),
    "no-initramfs": ("bool", "basic"),
    "rojig": ("any", "basic"),
}

#: rpm-ostree's accepted underscore spellings.
ALIASES = {
    "boot_location": "boot-location",
    "default_target": "default-target",
    "automatic_version_prefix": "automatic-version-prefix",
    "gpg_key": "gpg-key",
}

EDITIONS = ("2014", "2024")
CLIWRAP_BINARIES = ("kernel-install",)

BOOT_LOCATIONS = ("modules", "new")
RESERVED_VARIABLES = ("basearch", "releasever")

_VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_-]*)\}")
_COND_RE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_-]*)\s*(==|!=|<=|>=|<|>)\s*(.+?)\s*$")
_NUMBER_RE = re.compile(r"^-?\d+(\.\d+)?$")


@dataclass(frozen=True)
class AddFile:
    """``add-files`` entry: ``source`` (resolved beside the treefile that named it) copied to ``dest``."""

    source: Path
    dest: str


@dataclass(frozen=True)
class RepoPackages:
    """``repo-packages`` entry: ``packages`` are taken from repository ``repo`` only."""

    repo: str
    packages: tuple[str, ...]


@dataclass(frozen=True)
class PasswdCheck:
    """``check-passwd``/``check-groups``: kind none/previous/file/data; ``entries`` name -> (id, [gid])."""

    kind: str = "previous"
    filename: Path | None = None
    entries: Mapping[str, tuple[int, ...]] = field(default_factory=dict)

    def to_json(self, rel) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.kind}
        if self.filename is not None:
            out["filename"] = rel(self.filename)
        if self.kind == "data":
            out["entries"] = {k: (list(v) if len(v) > 1 else v[0]) for k, v in self.entries.items()}
        return out


@dataclass(frozen=True)
class Treefile:
    """The flattened treefile: every include merged, variables substituted, defaults applied."""

    path: Path                              #: the top-level treefile
    basearch: Architecture
    ref: str | None = None
    repos: tuple[str, ...] = ()
    releasever: str | int | None = None
    packages: tuple[str, ...] = ()          #: sorted, whitespace-split, packages-<basearch> folded in
    exclude_packages: tuple[str, ...] = ()
    automatic_version_prefix: str | None = None
    automatic_version_suffix: str = "."
    mutate_os_release: str | None = None
    add_files: tuple[AddFile, ...] = ()
    remove_files: tuple[str, ...] = ()
    postprocess_script: Path | None = None
    postprocess: tuple[str, ...] = ()
    recommends: bool = True
    documentation: bool = True
    boot_location: str = "modules"
    machineid_compat: bool = True
    etc_group_members: tuple[str, ...] = ()
    initramfs_args: tuple[str, ...] = ()
    units: tuple[str, ...] = ()
    default_target: str | None = None
    add_commit_metadata: Mapping[str, Any] = field(default_factory=dict)
    selinux: bool = True
    variables: Mapping[str, Any] = field(default_factory=dict)
    edition: str = "2014"
    metadata: Mapping[str, Any] = field(default_factory=dict)
    gpg_key: str | None = None
    ignore_devices: bool = True
    ima: bool = False
    install_langs: tuple[str, ...] = ()
    repo_packages: tuple[RepoPackages, ...] = ()
    ostree_layers: tuple[str, ...] = ()
    ostree_override_layers: tuple[str, ...] = ()
    container_cmd: tuple[str, ...] = ()
    rpmdb: str = "target"
    rpmdb_normalize: bool = False
    selinux_label_version: int = 0
    readonly_executables: bool = False
    remove_from_packages: tuple[tuple[str, ...], ...] = ()
    preserve_passwd: bool = True
    check_passwd: PasswdCheck = field(default_factory=PasswdCheck)
    check_groups: PasswdCheck = field(default_factory=PasswdCheck)
    ignore_removed_users: tuple[str, ...] = ()
    ignore_removed_groups: tuple[str, ...] = ()
    container: bool = False
    tmp_is_dir: bool = True
    platform_module: str | None = None
    repo_metadata: str = "inline"
    advisories_metadata: str = "inline"
    lockfile_repos: tuple[str, ...] = ()
    repovars: Mapping[str, str] = field(default_factory=dict)
    sysusers: str = "compose-auto"
    opt_usrlocal: str = "var"
    no_initramfs: bool = False
    finalize_d: tuple[Path, ...] = ()       #: edition 2024: executables of ``finalize.d`` beside the treefiles
    set_keys: frozenset[str] = frozenset()  #: the keys some file set (print-only shows set keys only)

    @property
    def directory(self) -> Path:
        return self.path.parent

    def to_json(self) -> dict[str, Any]:
        """The flattened treefile as rpm-ostree's ``--print-only`` shows it (kebab-case keys, set keys only).

        External paths are relative to the top treefile's directory, so the result does not depend on where
        the checkout lives.
        """
        def rel(p: Path) -> str:
            return os.path.relpath(p, self.directory)

        out: dict[str, Any] = {}
        if self.ref is not None:
            out["ref"] = self.ref
        out["basearch"] = self.basearch.value
        if self.repos:
            out["repos"] = list(self.repos)
        if self.releasever is not None:
            out["releasever"] = self.releasever
        out["packages"] = list(self.packages)
        if self.exclude_packages:
            out["exclude-packages"] = list(self.exclude_packages)
        if self.automatic_version_prefix is not None:
            out["automatic-version-prefix"] = self.automatic_version_prefix
        if self.automatic_version_suffix != ".":
            out["automatic-version-suffix"] = self.automatic_version_suffix
        if self.mutate_os_release is not None:
            out["mutate-os-release"] = self.mutate_os_release
        if self.add_files:
            out["add-files"] = [[rel(a.source), a.dest] for a in self.add_files]
        if self.remove_files:
            out["remove-files"] = list(self.remove_files)
        if self.postprocess_script is not None:
            out["postprocess-script"] = rel(self.postprocess_script)
        if self.postprocess:
            out["postprocess"] = list(self.postprocess)
        out["recommends"] = self.recommends
        out["documentation"] = self.documentation
        out["boot-location"] = self.boot_location
        out["machineid-compat"] = self.machineid_compat
        if self.etc_group_members:
            out["etc-group-members"] = list(self.etc_group_members)
        if self.initramfs_args:
            out["initramfs-args"] = list(self.initramfs_args)
        if self.units:
            out["units"] = list(self.units)
        if self.default_target is not None:
            out["default-target"] = self.default_target
        if self.add_commit_metadata:
            out["add-commit-metadata"] = dict(self.add_commit_metadata)
        out["selinux"] = self.selinux
        if self.variables:
            out["variables"] = dict(self.variables)
        for key, attr in _EXTRA_JSON:
            if key in self.set_keys:
                value = getattr(self, attr)
                if isinstance(value, PasswdCheck):
                    value = value.to_json(rel)
                elif key == "repo-packages":
                    value = [{"repo": r.repo, "packages": list(r.packages)} for r in value]
                elif isinstance(value, tuple):
                    value = [list(x) if isinstance(x, tuple) else x for x in value]
                elif isinstance(value, Mapping):
                    value = dict(value)
                out[key] = value
        if "rojig" in self.set_keys:
            out["rojig"] = "(ignored)"
        return out

    def canonical_json(self) -> bytes:
        """Stable serialization of :meth:`to_json` (sorted keys, no whitespace) for hashing."""
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")).encode()


#: keys shown by :meth:`Treefile.to_json` when a file set them: (key, attribute)
_EXTRA_JSON = tuple((k, k.replace("-", "_")) for k in (
    "edition", "metadata", "gpg-key", "ignore-devices", "ima", "install-langs", "repo-packages", "ostree-layers",
    "ostree-override-layers", "container-cmd", "rpmdb", "rpmdb-normalize", "selinux-label-version",
    "readonly-executables", "remove-from-packages", "preserve-passwd", "check-passwd", "check-groups",
    "ignore-removed-users", "ignore-removed-groups", "container", "tmp-is-dir", "platform-module",
    "repo-metadata", "advisories-metadata", "lockfile-repos", "repovars", "sysusers", "opt-usrlocal",
    "no-initramfs"))


# ---------------------------------------------------------------------------------------------------------
# Pure parsing and checking
# ---------------------------------------------------------------------------------------------------------


def parse_document(data: bytes, name: str) -> dict[str, Any]:
    """Treefile bytes -> mapping of plain values (hybridos.compose.yamldoc: bounded, no dates, tags or alias
    bombs); errors name the file and the key or position, never a value."""
    return load_document(data, name, lambda k: ALIASES.get(k, k) in KEYS or k.startswith("packages-"))


def _is_scalar_var(v: Any) -> bool:
    return isinstance(v, (bool, int, float, str))


def _check_value(key: str, kind: str, value: Any, name: str) -> Any:
    """Type-check one value; return it normalized (tuples for lists)."""
    def bad(expected: str) -> ConfigError:
        return ConfigError(f"{name}: '{key}' must be {expected}, not {type(value).__name__}")

    if kind == "str":
        if not isinstance(value, str):
            raise bad("a string")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if kind == "scalar":
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise bad("a string or an integer")
        return value
    if kind == "strlist":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad("a list of strings")
        return tuple(value)
    if kind == "map":
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise bad("a mapping with string keys")
        return dict(value)
    if kind == "uint":
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise bad("a non-negative integer")
        return value
    if kind == "edition":
        if isinstance(value, bool) or str(value) not in EDITIONS:
            raise ConfigError(f"{name}: '{key}' must be one of {', '.join(EDITIONS)}, not {value!r}")
        return str(value)
    if kind.startswith("enum:"):
        choices = kind[5:].split(",")
        if value not in choices:
            raise ConfigError(f"{name}: '{key}' must be one of {', '.join(choices)}, not {value!r}")
        return value
    if kind == "any":
        return value
    if kind == "strmap":
        if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                  for k, v in value.items()):
            raise bad("a mapping of strings to strings")
        return dict(value)
    if kind == "repo-packages":
        if not isinstance(value, list):
            raise bad("a list of {repo, packages} mappings")
        out_rp = []
        for i, entry in enumerate(value):
            if not isinstance(entry, dict) or set(entry) != {"repo", "packages"} \
                    or not isinstance(entry["repo"], str) or not isinstance(entry["packages"], list) \
                    or not all(isinstance(x, str) for x in entry["packages"]):
                raise ConfigError(f"{name}: '{key}[{i}]' must be a mapping with a string 'repo' and a list of "
                                  "strings 'packages'")
            out_rp.append(RepoPackages(entry["repo"], tuple(sorted(split_packages(tuple(entry["packages"]))))))
        return tuple(out_rp)
    if kind == "remove-from-packages":
        if not isinstance(value, list) or not all(
                isinstance(e, list) and len(e) >= 2 and all(isinstance(x, str) for x in e) for e in value):
            raise bad("a list of [package, regex, ...] lists")
        for e in value:
            for rx in e[1:]:
                try:
                    re.compile(rx)
                except re.error as exc:
                    raise ConfigError(f"{name}: '{key}': invalid regular expression {rx!r} for {e[0]}: "
                                      f"{exc}") from None
        return tuple(tuple(e) for e in value)
    if kind == "check":
        if not isinstance(value, dict) or value.get("type") not in ("none", "previous", "file", "data"):
            raise ConfigError(f"{name}: '{key}' must be a mapping whose 'type' is none, previous, file or data")
        kind_ = value["type"]
        allowed = {"none": {"type"}, "previous": {"type"}, "file": {"type", "filename"},
                   "data": {"type", "entries"}}[kind_]
        extra = sorted(set(value) - allowed)
        if extra:
            raise ConfigError(f"{name}: '{key}' of type {kind_} has unknown field '{extra[0]}'")
        if kind_ == "file" and not isinstance(value.get("filename"), str):
            raise ConfigError(f"{name}: '{key}' of type file needs a 'filename' string")
        if kind_ == "data":
            entries = value.get("entries")
            if not isinstance(entries, dict):
                raise ConfigError(f"{name}: '{key}' of type data needs an 'entries' mapping")
            for k, v in entries.items():
                ids = v if isinstance(v, list) else [v]
                if not (1 <= len(ids) <= (2 if key == "check-passwd" else 1)) or not all(
                        isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in ids):
                    raise ConfigError(f"{name}: '{key}' entry {k!r} must be an id"
                                      + (" or an [uid, gid] pair" if key == "check-passwd" else ""))
        return dict(value)
    if kind == "variables":
        if not isinstance(value, dict):
            raise bad("a mapping of names to booleans, numbers or strings")
        for k, v in value.items():
            if not isinstance(k, str) or not _is_scalar_var(v):
                raise ConfigError(f"{name}: variable {k!r} must be a boolean, a number or a string")
            if k in RESERVED_VARIABLES:
                raise ConfigError(f"{name}: cannot define reserved variable '{k}'")
        return dict(value)
    if kind == "include":
        return _check_include(key, value, name)
    if kind == "arch-include":
        if not isinstance(value, dict):
            raise bad("a mapping of base architectures to includes")
        return {str(arch): _check_include(f"{key}.{arch}", inc, name) for arch, inc in value.items()}
    if kind == "conditional-include":
        if not isinstance(value, list):
            raise bad("a list of {if, include} mappings")
        out = []
        for i, entry in enumerate(value):
            where = f"{key}[{i}]"
            if not isinstance(entry, dict) or set(entry) != {"if", "include"}:
                raise ConfigError(f"{name}: '{where}' must be a mapping with exactly the keys 'if' and 'include'")
            cond = entry["if"]
            conds = (cond,) if isinstance(cond, str) else cond
            if not isinstance(conds, (list, tuple)) or not conds or not all(isinstance(c, str) for c in conds):
                raise ConfigError(f"{name}: '{where}.if' must be a condition string or a list of them")
            for c in conds:
                parse_condition(c, f"{name}: '{where}.if'")
            inc = entry["include"]
            if isinstance(inc, dict):
                out.append((tuple(conds), inc))
            else:
                out.append((tuple(conds), _check_include(f"{where}.include", inc, name)))
        return tuple(out)
    if kind == "addfiles":
        if not isinstance(value, list):
            raise bad("a list of [source, destination] pairs")
        pairs = []
        for entry in value:
            if not (isinstance(entry, list) and len(entry) == 2 and all(isinstance(x, str) for x in entry)):
                raise ConfigError(f"{name}: each '{key}' entry must be a [source, destination] pair of strings")
            pairs.append((entry[0], entry[1]))
        return tuple(pairs)
    raise AssertionError(kind)


def _check_include(key: str, value: Any, name: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ConfigError(f"{name}: '{key}' must be a file name or a list of file names")


def parse_condition(text: str, where: str) -> tuple[str, str, Any]:
    """``"stream != \\"dev\\""`` -> ("stream", "!=", "dev"). Values: true/false, numbers, quoted strings."""
    m = _COND_RE.match(text)
    if not m:
        raise ConfigError(f"{where}: cannot parse condition {text!r} (expected: <variable> <op> <value>)")
    var, op, raw = m.groups()
    if raw in ("true", "false"):
        value: Any = raw == "true"
    elif _NUMBER_RE.match(raw):
        value = float(raw) if "." in raw else int(raw)
    elif len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'":
        value = raw[1:-1]
    else:
        raise ConfigError(f"{where}: value {raw!r} in condition {text!r} must be true, false, a number "
                          "or a quoted string")
    return var, op, value


def evaluate_condition(text: str, variables: Mapping[str, Any], where: str) -> bool:
    var, op, value = parse_condition(text, where)
    if var not in variables:
        raise ConfigError(f"{where}: condition {text!r} uses undefined variable '{var}'")
    have = variables[var]
    if isinstance(have, str) and not isinstance(value, str) and not isinstance(value, bool) \
            and var == "releasever" and have.isascii() and have.isdigit() and len(have) < 19:
        have = int(have)    # `releasever: "35"` compares as a number, like `releasever: 35`
    kinds = (type(have) is bool, isinstance(have, str))
    if kinds != (type(value) is bool, isinstance(value, str)):
        raise ConfigError(f"{where}: condition {text!r} compares variable '{var}' ({have!r}) with a value of "
                          "another type")
    if isinstance(have, bool) and op not in ("==", "!="):
        raise ConfigError(f"{where}: condition {text!r}: booleans only compare with == or !=")
    return {
        "==": have == value, "!=": have != value, "<": have < value,
        "<=": have <= value, ">": have > value, ">=": have >= value,
    }[op]


def split_packages(entries: tuple[str, ...]) -> set[str]:
    """rpm-ostree's package list rule: split on whitespace, except entries wrapped in single quotes."""
    out: set[str] = set()
    for entry in entries:
        s = entry.strip()
        if len(s) >= 2 and s[0] == s[-1] == "'":
            out.add(s[1:-1])
        else:
            out.update(s.split())
    return out


def substitute(text: str, variables: Mapping[str, Any], where: str) -> str:
    """Replace ``${name}`` with the variable's value; an unknown name is an error."""
    def repl(m: re.Match) -> str:
        name = m.group(1)
        if name not in variables:
            raise ConfigError(f"{where}: unknown variable '${{{name}}}'")
        v = variables[name]
        return ("true" if v else "false") if isinstance(v, bool) else str(v)

    return _VAR_RE.sub(repl, text)


@dataclass
class _Partial:
    """One file's checked content, before merging (mutable while merging)."""

    name: str
    values: dict[str, Any]
    includes: tuple[str, ...] = ()
    arch_include: dict[str, tuple[str, ...]] = field(default_factory=dict)
    conditional: tuple = ()
    variables: dict[str, Any] = field(default_factory=dict)


def check_document(doc: Mapping[str, Any], name: str, basearch: Architecture,
                   directory: Path) -> _Partial:
    """Validate one parsed file: known keys, value types; resolve its relative paths against ``directory``."""
    values: dict[str, Any] = {}
    arch_packages: tuple[str, ...] = ()
    part = _Partial(name, values)
    for raw_key, value in doc.items():
        if not isinstance(raw_key, str):
            raise ConfigError(f"{name}: treefile keys must be strings, not {raw_key!r}")
        key = ALIASES.get(raw_key, raw_key)
        if key.startswith("packages-"):
            pkgs = _check_value(key, "strlist", value, name)
            if key == f"packages-{basearch.value}":
                arch_packages = pkgs
            continue
        if key not in KEYS:
            raise ConfigError(f"{name}: unknown treefile key {one_line(raw_key)[:80]!r}",
                              hint="see docs/treefile.md for the supported keys")
        kind, _ = KEYS[key]
        value = _check_value(key, kind, value, name)
        if key == "include":
            part.includes = value
        elif key == "arch-include":
            part.arch_include = value
        elif key == "conditional-include":
            part.conditional = value
        elif key == "variables":
            part.variables = value
        else:
            values[key] = value
    if "basearch" in values and values["basearch"] != basearch.value:
        raise ConfigError(f"{name}: basearch is {values['basearch']} but the compose is for {basearch.value} "
                          "(use --arch to compose for another architecture)")
    values["packages"] = split_packages(values.get("packages", ()) + arch_packages)
    if "postprocess-script" in values:
        values["postprocess-script"] = directory / values["postprocess-script"]
    if "add-files" in values:
        values["add-files"] = tuple(AddFile(directory / src, dest) for src, dest in values["add-files"])
    for ck in ("check-passwd", "check-groups"):
        if ck in values:
            v = values[ck]
            entries = {k: tuple(x if isinstance(x, list) else [x]) for k, x in v.get("entries", {}).items()}
            values[ck] = PasswdCheck(v["type"], directory / v["filename"] if "filename" in v else None, entries)
    if "bootstrap_packages" in values:
        values["packages"] = values["packages"] | split_packages(values.pop("bootstrap_packages"))
    # Mirror basearch and releasever into the variables, as rpm-ostree does for every file.
    part.variables["basearch"] = basearch.value
    if "releasever" in values:
        part.variables["releasever"] = values["releasever"]
    return part


def merge(dest: dict[str, Any], src: dict[str, Any]) -> None:
    """Merge an included file's values ``src`` into the includer's ``dest`` (rpm-ostree's rules)."""
    for key, value in src.items():
        rule = KEYS[key][1]
        if key not in dest:
            dest[key] = value
        elif rule == "vec":
            dest[key] = tuple(value) + tuple(dest[key])
        elif rule == "map":
            dest[key] = {**value, **dest[key]}
        elif rule == "set":
            dest[key] = set(value) | set(dest[key])
        # basic: the includer's value stays


# ---------------------------------------------------------------------------------------------------------
# Loading (file I/O) and flattening
# ---------------------------------------------------------------------------------------------------------


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{what}: {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"{what}: {path} is a directory, not a file") from None
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read {path}: {exc.strerror}") from None


def _load_recursive(path: Path, basearch: Architecture, depth: int, seen: dict[tuple[int, int], str],
                    variables: dict[str, Any], included_from: str | None) -> dict[str, Any]:
    what = f"{included_from}: include" if included_from else "treefile"
    data = _read(path, what)
    st = path.stat()
    key = (st.st_dev, st.st_ino)
    if key in seen:
        raise ConfigError(f"{included_from}: include loop detected: {path} was already included")
    seen[key] = str(path)
    part = check_document(parse_document(data, str(path)), str(path), basearch, path.parent)
    # Variables of an includer take precedence over the same names defined further down.
    for k, v in part.variables.items():
        variables.setdefault(k, v)
    includes = list(part.includes)
    includes.extend(part.arch_include.get(basearch.value, ()))
    values = part.values
    for i, (conds, inc) in enumerate(part.conditional):
        where = f"{path}: 'conditional-include[{i}].if'"
        results = [evaluate_condition(c, variables, where) for c in conds]   # evaluate all to report errors
        if not all(results):
            continue
        if isinstance(inc, dict):
            inline = check_document(inc, f"{path} (conditional-include[{i}])", basearch, path.parent)
            if inline.includes or inline.arch_include or inline.conditional:
                raise ConfigError(f"{path}: an inline conditional-include cannot itself include files")
            external = [k for k in ("postprocess-script", "add-files") if k in inline.values] + [
                k for k in ("check-passwd", "check-groups") if k in inline.values
                and inline.values[k].kind == "file"]
            if external:
                raise ConfigError(f"{path}: an inline conditional-include cannot use '{external[0]}' (it refers "
                                  "to an external file)")
            for k, v in inline.variables.items():
                variables.setdefault(k, v)
            merge(values, inline.values)
        else:
            includes.extend(inc)
    for inc in includes:
        if depth >= INCLUDE_MAXDEPTH:
            raise ConfigError(f"{path}: maximum include depth {INCLUDE_MAXDEPTH} reached")
        child = _load_recursive(path.parent / inc, basearch, depth + 1, seen, variables, str(path))
        merge(values, child)
    return values


def load_treefile(path: str | os.PathLike, basearch: Architecture) -> Treefile:
    """Read, include, merge, substitute and check a treefile for ``basearch``."""
    path = Path(os.path.abspath(path))
    if path.suffix == ".ks":
        raise ConfigError(f"{path}: kickstart treefiles are not supported (write the packages in a YAML or JSON "
                          "treefile)")
    variables: dict[str, Any] = {}
    seen: dict[tuple[int, int], str] = {}
    values = _load_recursive(path, basearch, 0, seen, variables, None)
    return _flatten(path, basearch, values, variables, [Path(p) for p in seen.values()])


def _flatten(path: Path, basearch: Architecture, v: dict[str, Any], variables: dict[str, Any],
             files: list[Path] | None = None) -> Treefile:
    name = str(path)

    def sub(key: str) -> str | None:
        return substitute(v[key], variables, f"{name}: '{key}'") if key in v else None

    metadata = {
        k: substitute(val, variables, f"{name}: 'add-commit-metadata.{k}'") if isinstance(val, str) else val
        for k, val in v.get("add-commit-metadata", {}).items()
    }
    packages = tuple(sorted(v.get("packages", ())))
    excludes = tuple(v.get("exclude-packages", ()))
    both = sorted(set(packages) & set(excludes))
    if both:
        raise ConfigError(f"{name}: package '{both[0]}' is both in 'packages' and in 'exclude-packages'")
    container = v.get("container", False)
    edition = v.get("edition", "2014")
    if container:      # rpm-ostree: a container implies these
        v.update({"boot-location": "modules", "selinux": False, "tmp-is-dir": True, "preserve-passwd": False,
                  "check-passwd": PasswdCheck("none"), "check-groups": PasswdCheck("none")})
    if v.get("cliwrap"):
        raise ConfigError(f"{name}: 'cliwrap: true' is not supported (hybridos has no client-side wrappers for "
                          "rpm and kernel-install; rpm-ostree deprecates them too)")
    for b in v.get("cliwrap-binaries", ()):
        if b not in CLIWRAP_BINARIES:
            raise ConfigError(f"{name}: 'cliwrap-binaries': {b!r} is not one of {', '.join(CLIWRAP_BINARIES)}")
    if v.get("cliwrap-binaries"):
        raise ConfigError(f"{name}: 'cliwrap-binaries' is not supported (hybridos has no client-side wrappers)")
    if v.get("ima"):
        raise ConfigError(f"{name}: 'ima: true' is not supported (hybridos does not carry the packages' IMA "
                          "signatures into the commit)")
    if v.get("opt-usrlocal") == "stateoverlay":
        raise ConfigError(f"{name}: 'opt-usrlocal: stateoverlay' is not supported (hybridos has no state "
                          "overlay units); use var or root")
    if v.get("ignore-devices") is False:
        raise ConfigError(f"{name}: 'ignore-devices: false' is not supported: an OSTree commit cannot store "
                          "device files")
    for rp in v.get("repo-packages", ()):
        if v.get("repos") is not None and rp.repo not in v.get("repos", ()) and rp.repo not in \
                v.get("lockfile-repos", ()):
            raise ConfigError(f"{name}: 'repo-packages' names repository '{rp.repo}', which is not in 'repos'")
    boot_location = v.get("boot-location", "modules")
    if boot_location not in BOOT_LOCATIONS:
        raise ConfigError(f"{name}: 'boot-location' must be one of {', '.join(BOOT_LOCATIONS)}, "
                          f"not {boot_location!r}")
    suffix = v.get("automatic-version-suffix", ".")
    if len(suffix) != 1 or not suffix.isascii():
        raise ConfigError(f"{name}: 'automatic-version-suffix' must be a single ASCII character")
    for af in v.get("add-files", ()):
        if not _add_files_dest_ok(af.dest):
            raise ConfigError(f"{name}: add-files destination {af.dest!r} is not under /usr or /etc")
        if not af.source.is_file():
            raise ConfigError(f"{name}: add-files source {af.source} does not exist")
    for rf in v.get("remove-files", ()):
        if rf.startswith("/") or ".." in Path(rf).parts or not rf.strip():
            raise ConfigError(f"{name}: remove-files entry {rf!r} must be a relative path inside the tree")
    for ck in ("check-passwd", "check-groups"):
        check = v.get(ck)
        if check is not None and check.kind == "file" and not check.filename.is_file():
            raise ConfigError(f"{name}: '{ck}' file {check.filename} does not exist")
    for rv in v.get("repovars", {}):
        if rv in RESERVED_VARIABLES:
            raise ConfigError(f"{name}: 'repovars' cannot set '{rv}' (use the 'releasever' key; basearch is "
                              "automatic)")
    script = v.get("postprocess-script")
    if script is not None and not script.is_file():
        raise ConfigError(f"{name}: postprocess-script {script} does not exist")
    ref = sub("ref")
    if ref is not None and not ref.strip():
        raise ConfigError(f"{name}: 'ref' must not be empty")
    return Treefile(
        path=path,
        basearch=basearch,
        ref=ref,
        repos=tuple(v.get("repos", ())),
        releasever=v.get("releasever"),
        packages=packages,
        exclude_packages=excludes,
        automatic_version_prefix=sub("automatic-version-prefix"),
        automatic_version_suffix=suffix,
        mutate_os_release=sub("mutate-os-release"),
        add_files=tuple(v.get("add-files", ())),
        remove_files=tuple(v.get("remove-files", ())),
        postprocess_script=script,
        postprocess=tuple(v.get("postprocess", ())),
        recommends=v.get("recommends", True),
        documentation=v.get("documentation", True),
        boot_location=boot_location,
        machineid_compat=v.get("machineid-compat", True),
        etc_group_members=tuple(v.get("etc-group-members", ())),
        initramfs_args=tuple(v.get("initramfs-args", ())),
        units=tuple(v.get("units", ())),
        default_target=v.get("default-target"),
        add_commit_metadata=metadata,
        selinux=v.get("selinux", True),
        variables=dict(sorted(variables.items())),
        edition=edition,
        metadata={k: substitute(val, variables, f"{name}: 'metadata.{k}'") if isinstance(val, str) else val
                  for k, val in v.get("metadata", {}).items()},
        gpg_key=v.get("gpg-key"),
        install_langs=tuple(v.get("install-langs", ())),
        repo_packages=tuple(v.get("repo-packages", ())),
        ostree_layers=tuple(v.get("ostree-layers", ())),
        ostree_override_layers=tuple(v.get("ostree-override-layers", ())),
        container_cmd=tuple(v.get("container-cmd", ())),
        rpmdb=v.get("rpmdb", "target"),
        rpmdb_normalize=v.get("rpmdb-normalize", False),
        selinux_label_version=v.get("selinux-label-version", 0),
        readonly_executables=v.get("readonly-executables", False),
        remove_from_packages=tuple(v.get("remove-from-packages", ())),
        preserve_passwd=v.get("preserve-passwd", True),
        check_passwd=v.get("check-passwd", PasswdCheck()),
        check_groups=v.get("check-groups", PasswdCheck()),
        ignore_removed_users=tuple(sorted(v.get("ignore-removed-users", ()))),
        ignore_removed_groups=tuple(sorted(v.get("ignore-removed-groups", ()))),
        container=container,
        # hybridos makes /tmp a directory unless told otherwise (rpm-ostree's 2014 edition default is false)
        tmp_is_dir=v.get("tmp-is-dir", True),
        platform_module=sub("platform-module"),
        repo_metadata=v.get("repo-metadata", "inline"),
        advisories_metadata=v.get("advisories-metadata", "inline"),
        lockfile_repos=tuple(v.get("lockfile-repos", ())),
        repovars=dict(v.get("repovars", {})),
        sysusers=v.get("sysusers", "compose-auto"),
        opt_usrlocal=v.get("opt-usrlocal", "var"),
        no_initramfs=v.get("no-initramfs", False),
        finalize_d=_finalize_d(files or [path]) if edition >= "2024" else (),
        set_keys=frozenset(v),
    )


def _finalize_d(files: list[Path]) -> tuple[Path, ...]:
    """Edition 2024's associated ``finalize.d`` directories beside each treefile: their executables, by name."""
    found: dict[str, Path] = {}
    for f in files:
        d = f.parent / "finalize.d"
        if d.is_dir():
            for e in sorted(d.iterdir()):
                if e.is_file() and os.access(e, os.X_OK):
                    found.setdefault(e.name, e)
    return tuple(found[k] for k in sorted(found))


def _add_files_dest_ok(dest: str) -> bool:
    p = dest.lstrip("/")
    if ".." in Path(p).parts:
        return False
    return (p.startswith("usr/") and not p.startswith("usr/local/")) or p.startswith(
        ("etc/", "bin/", "sbin/", "lib/", "lib64/"))

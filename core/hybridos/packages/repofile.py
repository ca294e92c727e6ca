"""``.repo`` files in the yum.repos.d format: parsing (pure) and reading a directory of them.

Known keys are typed (``name``, ``baseurl``, ``enabled``, ``gpgcheck``, ``repo_gpgcheck``, ``gpgkey``,
``metadata_expire``, ``excludepkgs``, ``priority``); every other key is kept as text in ``RepoConfig.extra``. ``$basearch``, ``$arch``,
``$releasever`` (and ``${var}``) are substituted in every value; unknown variables are left as written, as dnf
does. Errors name the file and line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from hybridos.arch import Architecture
from hybridos.errors import ConfigError

#: dnf's default metadata_expire: 48 hours.
DEFAULT_METADATA_EXPIRE = 48 * 3600

_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]+$")
_SECTION_RE = re.compile(r"^\[(?P<id>[^\]]*)\]\s*$")
_VAR_RE = re.compile(r"\$(?:\{(?P<braced>[A-Za-z0-9_]+)\}|(?P<plain>[A-Za-z0-9_]+))")
_EXPIRE_RE = re.compile(r"^(?P<num>[0-9]{1,12})\s*(?P<unit>[smhd]?)$")   # ASCII digits: "²" and 5000 digits are no number
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_TRUE = {"1", "yes", "true", "on"}
_FALSE = {"0", "no", "false", "off"}
_MULTI_VALUE = {"baseurl", "excludepkgs", "exclude", "includepkgs", "gpgkey"}


@dataclass(frozen=True)
class RepoConfig:
    """One ``[id]`` section."""

    id: str
    name: str
    baseurls: tuple[str, ...]
    enabled: bool = True
    gpgcheck: bool = False
    repo_gpgcheck: bool = False                       #: repomd.xml must carry a good repomd.xml.asc
    gpgkeys: tuple[str, ...] = ()                     #: gpgkey= URLs of the keys packages/metadata are checked with
    metadata_expire: int = DEFAULT_METADATA_EXPIRE   #: seconds; -1 means never expires
    excludepkgs: tuple[str, ...] = ()
    priority: int = 99
    #: hybridos' own key: the largest primary/filelists file, as downloaded and decompressed (None: the default)
    max_metadata_size: int | None = None
    extra: tuple[tuple[str, str], ...] = ()           #: unknown keys, in file order
    source: str = ""                                  #: "FILE:LINE" of the section header
    options: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def get(self, key: str, default: str | None = None) -> str | None:
        """Any key of the section as written (after variable substitution)."""
        return self.options.get(key, default)


def repo_variables(arch: Architecture | str, releasever: str | None = None,
                   extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The substitution variables dnf sets for ``arch`` (``basearch``, ``arch``) and ``releasever``."""
    arch = str(arch)
    out = {"basearch": arch, "arch": arch}
    if releasever is not None:
        out["releasever"] = releasever
    out.update(extra or {})
    return out


def substitute(value: str, variables: Mapping[str, str]) -> str:
    """Replace ``$var`` and ``${var}``; unknown variables stay as written."""
    def repl(m: re.Match) -> str:
        name = m["braced"] or m["plain"]
        return variables.get(name, m[0])
    return _VAR_RE.sub(repl, value)


def _parse_bool(value: str, where: str, key: str) -> bool:
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ConfigError(f"{where}: {key}={value!r} is not a boolean (use 1/0, yes/no, true/false)")


def _parse_expire(value: str, where: str) -> int:
    v = value.strip().lower()
    if v in ("-1", "never"):
        return -1
    m = _EXPIRE_RE.match(v)
    if not m:
        raise ConfigError(f"{where}: metadata_expire={value[:40]!r} is not a duration (e.g. 3600, 90m, 6h, 2d, "
                          "never)")
    return int(m["num"]) * _UNITS[m["unit"]]


_SIZE_RE = re.compile(r"([0-9]{1,12})([kmg]?)")


def _parse_size(value: str, where: str, key: str) -> int:
    """Bytes as ASCII digits with an optional k/M/G suffix (powers of 1024), at least 1."""
    m = _SIZE_RE.fullmatch(value.strip().lower())
    if not m or int(m[1]) == 0:
        raise ConfigError(f"{where}: {key}={value[:40]!r} is not a size in bytes (e.g. 300000000, 512M, 2G)")
    return int(m[1]) << {"": 0, "k": 10, "m": 20, "g": 30}[m[2]]


def _split_list(value: str) -> tuple[str, ...]:
    return tuple(v for v in re.split(r"[\s,]+", value) if v)


@dataclass
class _Section:
    id: str
    line: int
    options: dict[str, str] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)


def _sections(text: str, filename: str) -> list[_Section]:
    sections: list[_Section] = []
    current: _Section | None = None
    last_key: str | None = None
    for lineno, raw in enumerate(text.splitlines(), 1):
        where = f"{filename}:{lineno}"
        line = raw.rstrip()
        stripped = line.strip()
        if not stripped or stripped[0] in "#;":
            last_key = None if not stripped else last_key
            continue
        if line[0] in " \t" and current is not None and last_key is not None:
            # A continuation line: more values for the key above (several baseurls, one per line).
            current.options[last_key] += "\n" + stripped
            continue
        if stripped.startswith("["):
            m = _SECTION_RE.match(stripped)
            if not m:
                raise ConfigError(f"{where}: malformed section header {stripped!r}")
            repo_id = m["id"].strip()
            if not _ID_RE.match(repo_id):
                raise ConfigError(f"{where}: invalid repository id {repo_id!r} (allowed: letters, digits, - _ . :)")
            if any(s.id == repo_id for s in sections):
                raise ConfigError(f"{where}: repository [{repo_id}] is defined twice in this file")
            current = _Section(repo_id, lineno)
            sections.append(current)
            last_key = None
            continue
        if "=" not in stripped:
            raise ConfigError(f"{where}: expected 'key=value' or '[repo-id]', got {stripped!r}")
        if current is None:
            raise ConfigError(f"{where}: 'key=value' before any [repo-id] section")
        key, _, value = stripped.partition("=")
        key = key.strip().lower()
        if not key:
            raise ConfigError(f"{where}: empty key in {stripped!r}")
        if key in current.options:
            raise ConfigError(f"{where}: key {key!r} repeated in [{current.id}]")
        current.options[key] = value.strip()
        current.lines[key] = lineno
        last_key = key
    return sections


def parse_repo_file(text: str, filename: str = "<repo>",
                    variables: Mapping[str, str] | None = None) -> tuple[RepoConfig, ...]:
    """Parse the text of a ``.repo`` file into its repositories (in file order)."""
    variables = variables or {}
    out = []
    for sec in _sections(text, filename):
        opts = {k: substitute(v, variables) for k, v in sec.options.items()}

        def where(key: str, sec=sec) -> str:
            return f"{filename}:{sec.lines.get(key, sec.line)}"

        baseurls = _split_list(opts.get("baseurl", ""))
        if not baseurls and not (opts.get("mirrorlist") or opts.get("metalink")):
            raise ConfigError(f"{filename}:{sec.line}: repository [{sec.id}] has no baseurl")
        for url in baseurls:
            if "$" in url:
                raise ConfigError(f"{where('baseurl')}: unresolved variable in baseurl {url!r} of [{sec.id}]")
        priority = opts.get("priority", "99")
        if not re.fullmatch(r"-?[0-9]{1,9}", priority.strip()):
            raise ConfigError(f"{where('priority')}: priority={priority[:40]!r} is not an integer")
        known = {"name", "baseurl", "enabled", "gpgcheck", "metadata_expire", "excludepkgs", "exclude", "priority",
                 "repo_gpgcheck", "gpgkey", "max_metadata_size"}
        out.append(RepoConfig(
            id=sec.id,
            name=" ".join(opts.get("name", sec.id).split()),
            baseurls=baseurls,
            enabled=_parse_bool(opts["enabled"], where("enabled"), "enabled") if "enabled" in opts else True,
            gpgcheck=_parse_bool(opts["gpgcheck"], where("gpgcheck"), "gpgcheck") if "gpgcheck" in opts else False,
            repo_gpgcheck=(_parse_bool(opts["repo_gpgcheck"], where("repo_gpgcheck"), "repo_gpgcheck")
                           if "repo_gpgcheck" in opts else False),
            gpgkeys=_split_list(opts.get("gpgkey", "")),
            metadata_expire=(_parse_expire(opts["metadata_expire"], where("metadata_expire"))
                             if "metadata_expire" in opts else DEFAULT_METADATA_EXPIRE),
            excludepkgs=_split_list(opts.get("excludepkgs", "") + " " + opts.get("exclude", "")),
            priority=int(priority),
            max_metadata_size=(_parse_size(opts["max_metadata_size"], where("max_metadata_size"), "max_metadata_size")
                               if "max_metadata_size" in opts else None),
            extra=tuple((k, v) for k, v in opts.items() if k not in known),
            source=f"{filename}:{sec.line}",
            options=opts,
        ))
    return tuple(out)


def set_repo_option(text: str, repo_id: str, key: str, value: str, filename: str = "<repo>") -> str:
    """``text`` with ``key=value`` in section ``[repo_id]``: the key's line replaced, or a line added after the
    section header; every other line (comments, order, other sections) kept as written."""
    if "\n" in value or "\r" in value or "\n" in key or "=" in key:
        raise ConfigError(f"{filename}: refusing a key or value with a line break or '=' in it")
    section = next((s for s in _sections(text, filename) if s.id == repo_id), None)
    if section is None:
        raise ConfigError(f"{filename}: no repository [{repo_id}]")
    lines = text.splitlines(keepends=True)
    new = f"{key}={value}\n"
    if key in section.lines:
        i = section.lines[key] - 1
        lines[i] = new if lines[i].endswith("\n") else new[:-1]
    else:
        header = section.line - 1
        if not lines[header].endswith("\n"):
            lines[header] += "\n"
        lines.insert(header + 1, new)
    return "".join(lines)


def read_repo_file(path: str | Path, variables: Mapping[str, str] | None = None) -> tuple[RepoConfig, ...]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_repo_file(text, str(path), variables)


def read_repo_dir(directory: str | Path, variables: Mapping[str, str] | None = None,
                  enabled_only: bool = True) -> tuple[RepoConfig, ...]:
    """Every repository of ``directory/*.repo`` (sorted by file name); an id defined twice is an error."""
    seen: dict[str, RepoConfig] = {}
    for path in sorted(Path(directory).glob("*.repo")):
        for repo in read_repo_file(path, variables):
            if repo.id in seen:
                raise ConfigError(f"{repo.source}: repository [{repo.id}] is already defined at {seen[repo.id].source}")
            seen[repo.id] = repo
    return tuple(r for r in seen.values() if r.enabled or not enabled_only)

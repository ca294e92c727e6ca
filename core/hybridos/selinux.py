"""SELinux file labels from a policy's ``file_contexts``, matched as libselinux's ``label_file`` backend does.

A specification line is ``REGEX [TYPE] CONTEXT``: the regular expression must match the whole path; TYPE
(``--`` regular file, ``-d``, ``-l``, ``-c``, ``-b``, ``-s``, ``-p``) restricts it to one file type; the context
``<<none>>`` means "leave unlabelled". The files read are ``file_contexts``, then ``file_contexts.homedirs`` and
``file_contexts.local`` beside it; ``file_contexts.subs`` and ``.subs_dist`` map path prefixes (``/usr/lib64
/usr/lib``) before matching. Like libselinux, the last matching specification wins, except that specifications
without regular expression characters (exact paths) are tried before all others.

Parsing and matching are pure; :func:`load_policy` reads the files of a tree.
"""

from __future__ import annotations

import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from hybridos.errors import ConfigError

NONE_CONTEXT = "<<none>>"
META_CHARS = set(".^$?*+|[({")
_TYPES = {"--": stat.S_IFREG, "-d": stat.S_IFDIR, "-c": stat.S_IFCHR, "-b": stat.S_IFBLK, "-s": stat.S_IFSOCK,
          "-p": stat.S_IFIFO, "-l": stat.S_IFLNK}


@dataclass(frozen=True)
class Spec:
    regex: str
    mode: int            #: S_IFMT value, 0 for any file type
    context: str
    exact: bool          #: no regular expression characters (tried first)
    stem: str            #: the literal first path component ("/usr"), or "" when the regex has none


def has_meta_chars(regex: str) -> bool:
    """libselinux's spec_hasMetaChars: any of ``.^$?*+|[({`` outside a backslash escape."""
    i = 0
    while i < len(regex):
        c = regex[i]
        if c == "\\":
            i += 2
            continue
        if c in META_CHARS:
            return True
        i += 1
    return False


def spec_stem(regex: str) -> str:
    """The literal first component of a specification (``/usr`` of ``/usr/bin(/.*)?``), as libselinux's
    get_stem_from_spec: up to the second ``/`` when nothing before it is a regex character."""
    j = regex.find("/", 1)
    if j <= 0 or any(c in META_CHARS for c in regex[:j]):
        return ""
    return regex[:j]


def path_stem(path: str) -> str:
    j = path.find("/", 1)
    return path[:j] if j > 0 else ""


def parse_file_contexts(text: str, name: str) -> list[Spec]:
    specs = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) == 2:
            regex, ftype, context = parts[0], None, parts[1]
        elif len(parts) == 3:
            regex, ftype, context = parts
        else:
            raise ConfigError(f"{name}:{lineno}: expected 'regex [type] context', got {raw.strip()!r}")
        if ftype is not None and ftype not in _TYPES:
            raise ConfigError(f"{name}:{lineno}: invalid file type {ftype!r}")
        try:
            re.compile(regex)
        except re.error as exc:
            raise ConfigError(f"{name}:{lineno}: invalid regular expression {regex!r}: {exc}") from None
        specs.append(Spec(regex, _TYPES[ftype] if ftype else 0, context, not has_meta_chars(regex),
                          spec_stem(regex)))
    return specs


def parse_subs(text: str, name: str) -> list[tuple[str, str]]:
    """``.subs``/``.subs_dist`` lines ``ALIAS PATH``; returned in libselinux's lookup order (last line first)."""
    out = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ConfigError(f"{name}:{lineno}: expected 'alias path', got {raw.strip()!r}")
        out.append((parts[0], parts[1]))
    return out[::-1]


def substitute(path: str, subs: list[tuple[str, str]]) -> str | None:
    for src, dst in subs:
        n = len(src)
        if path.startswith(src) and (len(path) == n or path[n] == "/"):
            if len(path) > n and dst == "/":
                n += 1
            return dst + path[n:]
    return None


@dataclass
class FileContexts:
    """A loaded policy's file labelling rules; :meth:`lookup` answers one path."""

    specs: list[Spec]
    subs: list[tuple[str, str]] = field(default_factory=list)
    dist_subs: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        dup: dict[tuple[str, int], str] = {}
        for s in self.specs:
            prev = dup.setdefault((s.regex, s.mode), s.context)
            if prev != s.context:
                raise ConfigError(f"file_contexts: multiple different specifications for {s.regex} "
                                  f"({prev} and {s.context})")
        # libselinux: regex specifications first, exact ones last (stable); lookups go from the end
        ordered = [s for s in self.specs if not s.exact] + [s for s in self.specs if s.exact]
        self._ordered = ordered
        self._compiled = [re.compile(s.regex) for s in ordered]
        by_stem: dict[str, list[int]] = {}
        nostem = []
        for i, s in enumerate(ordered):
            if s.stem:
                by_stem.setdefault(s.stem, []).append(i)
            else:
                nostem.append(i)
        self._nostem = nostem[::-1]
        self._by_stem = {k: sorted(v + nostem, reverse=True) for k, v in by_stem.items()}

    def lookup(self, path: str, mode: int = 0) -> str | None:
        """The context for ``path`` (absolute) of file type ``mode`` (S_IFMT bits, 0 for any); None when no
        specification matches or the match says ``<<none>>``."""
        path = re.sub("/+", "/", path)
        if len(path) > 1:
            path = path.rstrip("/")
        sub = substitute(path, self.subs)
        if sub is not None:
            path = substitute(sub, self.dist_subs) or sub
        else:
            path = substitute(path, self.dist_subs) or path
        fmt = stat.S_IFMT(mode)
        candidates = self._by_stem.get(path_stem(path), self._nostem)
        for i in candidates:
            s = self._ordered[i]
            if s.mode and fmt and s.mode != fmt:
                continue
            if self._compiled[i].fullmatch(path):
                return None if s.context == NONE_CONTEXT else s.context
        return None


# ---------------------------------------------------------------------------------------------------------
# Reading a tree's policy
# ---------------------------------------------------------------------------------------------------------


def policy_type(config_text: str) -> str | None:
    """SELINUXTYPE from /etc/selinux/config."""
    for line in config_text.splitlines():
        line = line.strip()
        if line.startswith("SELINUXTYPE="):
            return line.split("=", 1)[1].strip().strip("\"'") or None
    return None


def load_policy(tree: Path) -> tuple[FileContexts, Path] | None:
    """The file contexts of the policy inside ``tree`` (its ``etc/selinux/config``, or ``usr/etc/...`` once
    moved), or None when the tree has no policy."""
    for etc in ("etc", "usr/etc"):
        config = tree / etc / "selinux/config"
        if config.is_file() and not config.is_symlink():
            break
    else:
        return None
    ptype = policy_type(config.read_text(errors="replace"))
    if ptype is None or "/" in ptype or ptype.startswith("."):
        raise ConfigError(f"/{etc}/selinux/config in the tree names no valid SELINUXTYPE")
    fc = tree / etc / "selinux" / ptype / "contexts/files/file_contexts"
    if not fc.is_file() or fc.is_symlink():
        raise ConfigError(f"the tree's SELinux policy '{ptype}' has no /{etc}/selinux/{ptype}/contexts/files/"
                          "file_contexts")
    specs: list[Spec] = []
    for suffix in ("", ".homedirs", ".local"):
        p = fc.with_name(fc.name + suffix)
        if p.is_file() and not p.is_symlink():
            specs += parse_file_contexts(p.read_text(errors="replace"), p.name)

    def subs(suffix: str) -> list[tuple[str, str]]:
        p = fc.with_name(fc.name + suffix)
        return parse_subs(p.read_text(errors="replace"), p.name) if p.is_file() and not p.is_symlink() else []

    return FileContexts(specs, subs(".subs"), subs(".subs_dist")), fc


def label_hook(contexts: FileContexts, label_version: int = 0):
    """An ``xattr_hook`` for the commit writer: ``security.selinux`` from ``contexts`` (value NUL-terminated, as
    libselinux and ostree store it). With ``label_version >= 1`` /usr/etc is labelled as /etc (ostree's
    SELINUX_LABEL_V1)."""
    def hook(path: str, mode: int) -> tuple[tuple[str, bytes], ...]:
        if label_version >= 1 and (path == "/usr/etc" or path.startswith("/usr/etc/")):
            path = path[4:]
        ctx = contexts.lookup(path, mode)
        return (("security.selinux", ctx.encode() + b"\0"),) if ctx else ()
    return hook

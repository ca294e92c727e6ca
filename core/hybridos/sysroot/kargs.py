"""Kernel arguments: parsing and the edits of ``kargs`` (libostree's ``ostree-kernel-args.c`` semantics).

An argument is ``KEY`` or ``KEY=VALUE``; one key may occur several times (``console=tty0 console=ttyS0``).
Keys match with ``-`` and ``_`` treated alike, as the kernel does. Values may be double-quoted.
"""

from __future__ import annotations

from dataclasses import dataclass

from hybridos.errors import UsageError
from hybridos.util.text import first_unsafe

#: kernel arguments the sysroot manages itself and a user may not set
RESERVED_KEYS = frozenset({"ostree"})


def _norm(key: str) -> str:
    return key.replace("-", "_")


def split_args(text: str) -> list[str]:
    """Split a command line on whitespace outside double quotes."""
    args, cur, quoted, started = [], [], False, False
    for c in text:
        if c == '"':
            quoted = not quoted
            cur.append(c)
            started = True
        elif c.isspace() and not quoted:
            if started:
                args.append("".join(cur))
                cur, started = [], False
        else:
            cur.append(c)
            started = True
    if quoted:
        raise UsageError(f"invalid kernel arguments {text!r}: unbalanced double quote")
    if started:
        args.append("".join(cur))
    return args


def validate_arg(arg: str) -> tuple[str, str | None]:
    """Check one user-given argument and split it into (key, value or None)."""
    if not arg:
        raise UsageError("invalid kernel argument '': it is empty")
    bad = first_unsafe(arg)
    if bad is not None:
        raise UsageError(f"invalid kernel argument {arg!r}: it contains the control, line-break or invisible "
                         f"character {bad.encode('unicode_escape').decode()}")
    if arg.count('"') % 2:
        raise UsageError(f"invalid kernel argument {arg!r}: unbalanced double quote")
    if len(split_args(arg)) != 1:
        raise UsageError(f"invalid kernel argument {arg!r}: whitespace outside double quotes")
    key, sep, value = arg.partition("=")
    if not key or '"' in key:
        raise UsageError(f"invalid kernel argument {arg!r}: expected KEY or KEY=VALUE")
    if _norm(key) in RESERVED_KEYS:
        raise UsageError(f"invalid kernel argument {arg!r}: {key}= is managed by the sysroot")
    return key, (value if sep else None)


def check_args(text: str) -> None:
    """Refuse a whole command line holding a character no boot configuration can carry (a line break would
    become a new line of the BLS entry, extlinux.conf or uEnv.txt)."""
    bad = first_unsafe(text)
    if bad is not None:
        raise UsageError(f"invalid kernel arguments {text!r}: they contain the control, line-break or invisible "
                         f"character {bad.encode('unicode_escape').decode()}")
    split_args(text)


def _fmt(key: str, value: str | None) -> str:
    return key if value is None else f"{key}={value}"


@dataclass(frozen=True)
class KernelArgs:
    """An ordered list of (key, value or None)."""

    args: tuple[tuple[str, str | None], ...] = ()

    @classmethod
    def parse(cls, text: str) -> KernelArgs:
        out = []
        for arg in split_args(text):
            key, sep, value = arg.partition("=")
            out.append((key, value if sep else None))
        return cls(tuple(out))

    def __str__(self) -> str:
        return " ".join(_fmt(k, v) for k, v in self.args)

    def to_list(self) -> list[str]:
        return [_fmt(k, v) for k, v in self.args]

    def values(self, key: str) -> list[str | None]:
        return [v for k, v in self.args if _norm(k) == _norm(key)]

    def has_key(self, key: str) -> bool:
        return any(_norm(k) == _norm(key) for k, _ in self.args)

    def without_key(self, key: str) -> KernelArgs:
        return KernelArgs(tuple((k, v) for k, v in self.args if _norm(k) != _norm(key)))

    # -- edits (each returns a new value) -------------------------------------------------------------

    def append(self, arg: str) -> KernelArgs:
        return KernelArgs((*self.args, validate_arg(arg)))

    def contains(self, arg: str) -> bool:
        """Whether exactly ``KEY`` (no value) or ``KEY=VALUE`` is present (ostree_kernel_args_contains)."""
        key, value = validate_arg(arg)
        return any(_norm(k) == _norm(key) and v == value for k, v in self.args)

    def append_if_missing(self, arg: str) -> KernelArgs:
        """Append unless this very KEY=VALUE (or bare KEY) is already there: ``foo=2`` joins ``foo=1``."""
        return self if self.contains(arg) else self.append(arg)

    def delete(self, arg: str) -> KernelArgs:
        """``KEY`` deletes a key that has one value; ``KEY=VALUE`` deletes that value."""
        key, value = validate_arg(arg)
        found = self.values(key)
        if not found:
            raise UsageError(f"no kernel argument {key!r} found")
        if "=" not in arg:
            if len(found) > 1:
                raise UsageError(f"kernel argument {key!r} has several values ({', '.join(map(str, found))}); "
                                 f"delete one with {key}=VALUE")
            return self.without_key(key)
        for i, (k, v) in enumerate(self.args):
            if _norm(k) == _norm(key) and v == value:
                return KernelArgs(self.args[:i] + self.args[i + 1:])
        raise UsageError(f"no kernel argument {arg!r} found (values of {key}: "
                         f"{', '.join(v if v is not None else '(none)' for v in found)})")

    def delete_if_present(self, arg: str) -> KernelArgs:
        """Delete exactly this KEY=VALUE (or bare KEY) when present; anything else is left alone."""
        key, value = validate_arg(arg)
        for i, (k, v) in enumerate(self.args):
            if _norm(k) == _norm(key) and v == value:
                return KernelArgs(self.args[:i] + self.args[i + 1:])
        return self

    def replace(self, arg: str) -> KernelArgs:
        """``KEY=NEW`` replaces the single value of KEY; ``KEY=OLD=NEW`` replaces OLD among its values."""
        key, rest = validate_arg(arg)
        if rest is None:
            raise UsageError(f"invalid replacement {arg!r}: expected KEY=VALUE or KEY=OLD=NEW")
        found = self.values(key)
        if not found:
            raise UsageError(f"no kernel argument {key!r} found to replace")
        if "=" in rest:
            old, new = rest.split("=", 1)
            for i, (k, v) in enumerate(self.args):
                if _norm(k) == _norm(key) and v == old:
                    return KernelArgs(self.args[:i] + ((k, new),) + self.args[i + 1:])
            raise UsageError(f"no kernel argument {key}={old} found to replace")
        if len(found) > 1:
            raise UsageError(f"kernel argument {key!r} has several values; use {key}=OLD=NEW")
        return KernelArgs(tuple((k, rest) if _norm(k) == _norm(key) else (k, v) for k, v in self.args))


def edit(kargs: KernelArgs, *, append=(), append_if_missing=(), delete=(), delete_if_present=(),
         replace=()) -> KernelArgs:
    """Apply rpm-ostree's ``kargs`` edits in its order: delete, replace, append (each list in order)."""
    for a in delete:
        kargs = kargs.delete(a)
    for a in delete_if_present:
        kargs = kargs.delete_if_present(a)
    for a in replace:
        kargs = kargs.replace(a)
    for a in append:
        kargs = kargs.append(a)
    for a in append_if_missing:
        kargs = kargs.append_if_missing(a)
    return kargs

"""Remotes in a repository's ``config``, written as ``ostree remote add`` writes them.

```
[remote "NAME"]
url=https://example.com/repo
gpg-verify=false
sign-verify=true
verification-ed25519-key=BASE64
verification-ed25519-file=/path/to/keys
branches=a;b;
```

The functions over a config object are pure (they change the object, never the disk); the caller saves it with
``repo.write_config()``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from hybridos.errors import ConfigError, NotFoundError, UsageError
from hybridos.ostree.config import RepoConfig
from hybridos.ostree.refs import validate_remote
from hybridos.ostree.sign import SIGN_TYPES, check_sign_type, parse_public_key, read_key_file

if TYPE_CHECKING:  # fetch (threads, logging) is imported by what fetches, not by `status`
    from hybridos.fetch import FetchOptions

_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


def parse_bool(value: str | None, default: bool, what: str) -> bool:
    """A GKeyFile boolean."""
    if value is None:
        return default
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ConfigError(f"{what} must be true or false, not {value!r}")


def parse_list(value: str | None) -> tuple[str, ...]:
    """A GKeyFile list: ``a;b;`` -> ("a", "b")."""
    if not value:
        return ()
    return tuple(x for x in value.split(";") if x)


@dataclass(frozen=True)
class Remote:
    """One remote's settings."""

    name: str
    url: str
    gpg_verify: bool = True
    sign_verify: tuple[str, ...] = ()   # signature types a pulled commit must carry; empty: no check
    branches: tuple[str, ...] = ()
    options: Mapping[str, str] = field(default_factory=dict)

    @property
    def requires_gpg(self) -> bool:
        """GPG signatures are required: ``gpg-verify=true`` written out, or left at its default (true) with no
        other signature check configured."""
        explicit = "gpg-verify" in self.options
        return self.gpg_verify and (explicit or not self.sign_verify)

    def fetch_options(self, base: FetchOptions) -> FetchOptions:
        """``base`` with this remote's TLS settings (ostree's ``tls-ca-path`` and ``tls-permissive``)."""
        ca = self.options.get("tls-ca-path", "").strip() or base.ca_file
        permissive = parse_bool(self.options.get("tls-permissive"), False, f'remote "{self.name}" tls-permissive')
        if ca and not os.path.isfile(ca):
            raise ConfigError(f'remote "{self.name}": tls-ca-path {ca} is not a file')
        options = dataclasses.replace(
            base, ca_file=ca, tls_verify=base.tls_verify and not permissive,
            low_speed_limit=self.number("low-speed-limit", base.low_speed_limit),
            low_speed_time=self.number("low-speed-time", base.low_speed_time))
        deadline = self.number("deadline", 0)
        return options.with_deadline(deadline) if deadline else options

    def number(self, key: str, default):
        """A non-negative whole number option (``low-speed-limit``, ``low-speed-time``, ``deadline``,
        ``max-summary-size``...); ``default`` when unset."""
        raw = self.options.get(key, "").strip()
        if not raw:
            return default
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 18):
            raise ConfigError(f'remote "{self.name}": {key}={raw[:40]!r} is not a whole number')
        return int(raw)

    def public_keys(self, sign_type: str = "ed25519") -> list[bytes]:
        """Trusted public keys: ``verification-<type>-key`` then every line of ``verification-<type>-file``."""
        keys = []
        inline = self.options.get(f"verification-{sign_type}-key")
        if inline:
            keys.append(parse_public_key(inline))
        path = self.options.get(f"verification-{sign_type}-file")
        if path:
            keys.extend(parse_public_key(k) for k in read_key_file(path))
        return keys


def remote_from_section(name: str, section: Mapping[str, str]) -> Remote:
    """Interpret a ``[remote "NAME"]`` section."""
    opts = dict(section)
    url = opts.get("url", "").strip()
    if not url:
        raise ConfigError(f'remote "{name}" has no url')
    what = f'remote "{name}"'
    gpg = parse_bool(opts.get("gpg-verify"), True, f"{what} gpg-verify")
    raw_sign = opts.get("sign-verify")
    sign: tuple[str, ...] = ()
    if raw_sign is not None and raw_sign.strip():
        v = raw_sign.strip().lower()
        if v in _TRUE:
            sign = SIGN_TYPES
        elif v not in _FALSE:   # ostree also takes a list of signature types
            sign = tuple(check_sign_type(t) for t in parse_list(raw_sign.strip()))
    return Remote(name, url, gpg, sign, parse_list(opts.get("branches")), opts)


def list_remotes(config: RepoConfig) -> list[str]:
    return sorted(config.remote_names())


def get_remote(config: RepoConfig, name: str) -> Remote:
    section = config.remote_section(name)
    if not config.has_section(section):
        raise NotFoundError(f'remote "{name}" not found', hint="list remotes with: hybridos repo remote list")
    return remote_from_section(name, config[section])


def sign_verify_options(specs: Sequence[str]) -> dict[str, str]:
    """``--sign-verify TYPE=inline:KEY`` / ``TYPE=file:PATH`` -> remote options (as ``ostree remote add``)."""
    opts: dict[str, str] = {}
    for spec in specs:
        sign_type, sep, ref = spec.partition("=")
        if not sep:
            raise UsageError(f"--sign-verify {spec!r}: expected KEYTYPE=inline:PUBKEY or KEYTYPE=file:PATH")
        check_sign_type(sign_type)
        kind, sep, value = ref.partition(":")
        if not sep or kind not in ("inline", "file") or not value:
            raise UsageError(f"--sign-verify {spec!r}: invalid key reference, expected inline:PUBKEY or file:PATH")
        if kind == "inline":
            parse_public_key(value)   # refuse a malformed key now rather than at pull time
            opts[f"verification-{sign_type}-key"] = value
        else:
            opts[f"verification-{sign_type}-file"] = os.fspath(Path(value).absolute())
    if specs:
        opts["sign-verify"] = "true"
    return opts


def add_remote(config: RepoConfig, name: str, url: str, *, branches: Sequence[str] = (),
               options: Mapping[str, str] | None = None, if_not_exists: bool = False,
               force: bool = False) -> bool:
    """Add ``[remote "NAME"]``; returns False when it existed and ``if_not_exists`` kept it."""
    validate_remote(name)
    if not url or any(c.isspace() for c in url):
        raise UsageError(f"invalid remote URL {url!r}")
    section = config.remote_section(name)
    if config.has_section(section):
        if if_not_exists:
            return False
        if not force:
            raise UsageError(f'remote "{name}" already exists', hint="use --force to replace it")
        config.remove_section(section)
    config.add_section(section)
    config.set(section, "url", url)
    if branches:
        config.set(section, "branches", "".join(b + ";" for b in branches))
    for key, value in (options or {}).items():
        if not key or "=" in key or any(c.isspace() for c in key) or "\n" in value:
            raise UsageError(f"invalid remote option {key!r}")
        config.set(section, key, value)
    remote_from_section(name, config[section])   # refuse settings that could not be read back
    return True


def delete_remote(config: RepoConfig, name: str, *, if_exists: bool = False) -> bool:
    """Remove ``[remote "NAME"]``; returns False when it did not exist and ``if_exists`` allowed that."""
    validate_remote(name)
    section = config.remote_section(name)
    if not config.has_section(section):
        if if_exists:
            return False
        raise NotFoundError(f'remote "{name}" not found')
    config.remove_section(section)
    return True


"""The repository ``config`` file: a GKeyFile (INI) read and written as ostree does."""

from __future__ import annotations

import configparser
import io

from hybridos.errors import ConfigError


class RepoConfig(configparser.ConfigParser):
    """A configparser view of a GKeyFile: case-kept keys, no interpolation, ``key=value`` output."""

    def __init__(self) -> None:
        super().__init__(interpolation=None, strict=False, delimiters=("=",), comment_prefixes=("#",),
                         inline_comment_prefixes=None, empty_lines_in_values=False, default_section="\x00default")
        self.optionxform = str  # type: ignore[assignment,method-assign]

    @classmethod
    def parse(cls, text: str, origin: str = "config") -> RepoConfig:
        cfg = cls()
        try:
            cfg.read_string(text, source=origin)
        except configparser.Error as exc:
            raise ConfigError(f"{origin}: not a valid key file: {str(exc).splitlines()[0]}") from None
        return cfg

    def serialize(self) -> str:
        buf = io.StringIO()
        self.write(buf, space_around_delimiters=False)
        return buf.getvalue()

    def remote_names(self) -> list[str]:
        out = []
        for s in self.sections():
            if s.startswith('remote "') and s.endswith('"'):
                out.append(s[len('remote "'):-1])
        return out

    def remote_section(self, name: str) -> str:
        return f'remote "{name}"'

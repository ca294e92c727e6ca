"""hybridos: a hybrid image/package OS update system in OSTree's format."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("hybridos")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

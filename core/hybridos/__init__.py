"""hybridos: a hybrid image/package OS update system in OSTree's format."""


def __getattr__(name: str):
    # __version__ is looked up lazily: importlib.metadata costs ~15 ms, too much for `hybridos status`
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("hybridos")
        except PackageNotFoundError:  # running from a source tree without installation
            return "0.0.0"
    raise AttributeError(f"module 'hybridos' has no attribute {name!r}")

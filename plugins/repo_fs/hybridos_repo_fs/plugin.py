"""Entry point of hybridos-repo-fs: registers the file fetcher."""

from hybridos.hookspecs import hookimpl
from hybridos_repo_fs.fetcher import FileFetcher


@hookimpl
def hybridos_fetchers():
    return [FileFetcher]

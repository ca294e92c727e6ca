"""Entry point of hybridos-repo-fs: registers the file fetcher (imported when a local URL is fetched)."""

from hybridos.hookspecs import hookimpl
from hybridos.plugins import FetcherRef


@hookimpl
def hybridos_fetchers():
    return [FetcherRef("file", ("file", ""), "hybridos_repo_fs.fetcher:FileFetcher")]

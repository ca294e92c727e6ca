"""Entry point of hybridos-repo-http: registers the HTTP(S) fetcher."""

from hybridos.hookspecs import hookimpl
from hybridos_repo_http.fetcher import HttpFetcher


@hookimpl
def hybridos_fetchers():
    return [HttpFetcher]

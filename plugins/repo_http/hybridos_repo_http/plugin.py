"""Entry point of hybridos-repo-http: registers the HTTP(S) fetcher.

The fetcher (and urllib3 with it) is imported only when an http(s) URL is fetched.
"""

from hybridos.hookspecs import hookimpl
from hybridos.plugins import FetcherRef


@hookimpl
def hybridos_fetchers():
    return [FetcherRef("http", ("http", "https"), "hybridos_repo_http.fetcher:HttpFetcher")]

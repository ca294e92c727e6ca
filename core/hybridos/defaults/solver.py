"""Default solve hook: libsolv (``hybridos.packages.solver``)."""

from __future__ import annotations

from hybridos.hookspecs import hookimpl


@hookimpl(trylast=True)  # the default: any other solver plugin is asked first
def hybridos_solve(request):
    from hybridos.packages.solver import solve

    return solve(request)

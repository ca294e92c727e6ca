"""Default layer hook: the RPM unpacker, rpmdb writer and scriptlet sandbox (``hybridos.packages.layer``)."""

from __future__ import annotations

from hybridos.hookspecs import hookimpl


@hookimpl(trylast=True)  # the default: any other layer plugin is asked first
def hybridos_layer(request):
    from hybridos.packages.layer import apply_transaction

    return apply_transaction(request)

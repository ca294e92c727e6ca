"""Default initramfs hook: the tree's own dracut (sandboxed) when it has one, else the built-in generator."""

from __future__ import annotations

from hybridos.hookspecs import hookimpl


@hookimpl(trylast=True)  # the default: any other initramfs plugin is asked first
def hybridos_initramfs(request):
    from hybridos.initramfs_gen import build_builtin_initramfs, dracut_available, run_dracut

    if dracut_available(request.tree):
        return run_dracut(request)
    return build_builtin_initramfs(request)

"""Default initramfs hook: the tree's own dracut (sandboxed) when it has one, else the built-in generator; a tree
with neither dracut nor busybox keeps the image its kernel package shipped."""

from __future__ import annotations

from hybridos.hookspecs import hookimpl


@hookimpl(trylast=True)  # the default: any other initramfs plugin is asked first
def hybridos_initramfs(request):
    from hybridos.initramfs_gen import (
        build_builtin_initramfs,
        busybox_available,
        dracut_available,
        run_dracut,
    )

    if dracut_available(request.tree):
        return run_dracut(request)
    if not busybox_available(request.tree) and request.output.is_file() and not request.output.is_symlink():
        # the kernel package shipped its own image (as bootc images do); nothing here could build a better one
        return request.output
    return build_builtin_initramfs(request)

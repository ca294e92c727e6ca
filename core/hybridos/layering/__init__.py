"""Client-side package layering: packages added on top of a base image, base packages removed or replaced,
and the initramfs regenerated, each as a new deployment whose origin records the requests.

``assemble_deployment_tree`` is what the sysroot's upgrade/deploy/rebase path calls when the origin has
requests; ``apply_change`` is what the ``install``/``uninstall``/``override``/``reset``/``initramfs`` verbs call.
"""

from __future__ import annotations

from hybridos.layering.assemble import AssembleOptions, assemble_deployment_tree
from hybridos.layering.operation import apply_change

__all__ = ["AssembleOptions", "apply_change", "assemble_deployment_tree"]

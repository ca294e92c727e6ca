"""Client-side package layering: packages added on top of a base image, base packages removed or replaced,
and the initramfs regenerated, each as a new deployment whose origin records the requests.

``assemble_deployment_tree`` / ``deploy_layered`` build and deploy the layered commit; the verbs that change
the requests (``install``, ``uninstall``, ``override``, ``reset``, ``initramfs``) are in ``hybridos.operations``.
"""

from __future__ import annotations

from hybridos.layering.assemble import AssembleOptions, assemble_deployment_tree
from hybridos.layering.deploy import deploy_layered

__all__ = ["AssembleOptions", "assemble_deployment_tree", "deploy_layered"]

"""What a user reads for each transaction step: step names are for logs and tests, users see phrases.

The CLI draws the phrase of the running step on its progress line; the daemon sends it as ``TaskBegin``.
"""

from __future__ import annotations

PHRASES: dict[str, str] = {
    "pull": "Receiving the new commit",
    "read-base-rpmdb": "Reading the base image's packages",
    "load-repos": "Loading repository metadata",
    "solve": "Resolving dependencies",
    "download": "Downloading packages",
    "checkout-base": "Checking out the base image",
    "layer": "Installing packages",
    "postprocess": "Finishing the file system",
    "initramfs": "Generating the initramfs",
    "commit": "Writing the new commit",
    "prepare": "Preparing the deployment",
    "name": "Choosing the deployment's name",
    "checkout": "Checking out the new deployment",
    "origin": "Writing the origin",
    "etc-merge": "Merging /etc",
    "boot-files": "Copying the kernel and initramfs",
    "bls-entries": "Writing boot entries",
    "bootloader": "Writing the bootloader configuration",
    "bootlinks": "Linking the boot directories",
    "swap": "Switching to the new boot configuration",
    "deployment-refs": "Updating deployment refs",
    "post-swap": "Cleaning up",
    "finish-post-swap": "Finishing an interrupted update",
    "cleanup": "Removing unreferenced files",
    "prune": "Pruning the repository",
    "repomd": "Clearing cached repository metadata",
}


def phrase(step: str) -> str:
    """The readable phrase of ``step`` (its name, capitalised, when it has none)."""
    return PHRASES.get(step) or step.replace("-", " ").capitalize()

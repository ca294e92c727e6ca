"""Locating external programs that are optional for the product (dracut, bwrap, qemu-user...)."""

from __future__ import annotations

from hybridos.util.run import which

__all__ = ["which"]

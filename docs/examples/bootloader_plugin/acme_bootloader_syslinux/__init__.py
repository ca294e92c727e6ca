"""SYSLINUX bootloader plugin for hybridos (example distribution)."""

"""hybridos bootloader plugin: systemd-boot."""

"""hybridos bootloader plugin: grub2."""

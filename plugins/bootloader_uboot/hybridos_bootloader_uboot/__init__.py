"""hybridos bootloader plugin: uboot."""

"""Boot assessment: greenboot-compatible health checks, boot counting through the bootloader plugins, and
making a bootloader's fallback to the previous deployment permanent (``hybridos health-check``)."""

"""hybridos fetch plugin for file:// URLs and local paths."""

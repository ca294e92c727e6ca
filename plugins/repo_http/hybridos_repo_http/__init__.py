"""hybridos fetch plugin for http:// and https:// URLs."""

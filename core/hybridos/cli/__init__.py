"""The ``hybridos`` command line (click)."""

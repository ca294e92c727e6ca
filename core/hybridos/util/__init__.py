"""Small helpers shared by the whole core: atomic writes, subprocesses, progress, tools."""

"""An OSTree-compatible content store (libostree's on-disk format, written and read in pure Python).

Split by concern like libostree: ``objects`` (value types and their GVariant forms), ``repo`` (open/init, object
I/O), ``content`` (content objects per mode), ``refs``, ``commit``, ``checkout``, ``devino``, ``traverse``,
``fsck``, ``prune``, ``summary``. The public API is listed in docs/store-api.md.
"""

"""What boot assessment remembers about each deployment: ``ostree/hybridos-health.json`` in the sysroot.

One JSON object keyed by deployment id (``<stateroot>-<commit>.<serial>``, as ``status`` shows it):

- ``health-check``: the last run on that deployment: ``result`` (``passed``/``failed``), ``script`` (the first
  required script that failed, or null), ``message``, ``timestamp``, ``boot-id``;
- ``boot-failure``: set when the bootloader fell back from that deployment and hybridos made the fallback
  permanent: ``reason`` (``health-check`` or ``no-health-check``), ``script``, ``message``
  (``boot failed health check: <script>``), ``timestamp``, ``bootloader``, ``detail``.

Records of deployments no longer listed are dropped on the next write. The file is replaced atomically.
"""

from __future__ import annotations

import json
from pathlib import Path

from hybridos.util.atomic import atomic_write

RECORD = "ostree/hybridos-health.json"
LIMIT = 1 << 20


def read_records(sysroot: Path) -> dict[str, dict]:
    """Every deployment's record; an unreadable or malformed file reads as empty (status must not fail)."""
    try:
        with open(Path(sysroot) / RECORD, "rb") as f:
            data = json.loads(f.read(LIMIT))
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, dict)} \
        if isinstance(data, dict) else {}


def write_record(sysroot: Path, dep_id: str, key: str, value: dict | None, keep: set[str] | None = None) -> None:
    """Set (or with ``value`` None, remove) ``key`` of ``dep_id``'s record; ``keep``: ids still deployed."""
    records = read_records(sysroot)
    if keep is not None:
        records = {k: v for k, v in records.items() if k in keep or k == dep_id}
    entry = dict(records.get(dep_id, {}))
    if value is None:
        entry.pop(key, None)
    else:
        entry[key] = value
    if entry:
        records[dep_id] = entry
    else:
        records.pop(dep_id, None)
    atomic_write(Path(sysroot) / RECORD, (json.dumps(records, indent=1, sort_keys=True) + "\n").encode())

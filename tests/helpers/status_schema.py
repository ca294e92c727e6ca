"""rpm-ostree's ``status --json`` deployment keys and shapes (tests/data/rpm-ostree-status-deployment.json, written
from rpm-ostree's sources) and a checker for ours."""

from __future__ import annotations

import json
from pathlib import Path

SCHEMA = json.loads((Path(__file__).resolve().parent.parent / "data" / "rpm-ostree-status-deployment.json")
                    .read_text())


def _is(kind: str, v) -> bool:
    if kind == "string":
        return isinstance(v, str)
    if kind == "integer":
        return isinstance(v, int) and not isinstance(v, bool)
    if kind == "boolean":
        return isinstance(v, bool)
    if kind == "object":
        return isinstance(v, dict)
    if kind == "array":
        return isinstance(v, list)
    if kind == "strings":
        return isinstance(v, list) and all(isinstance(x, str) for x in v)
    if kind == "nevras":
        return isinstance(v, list) and all(_is("nevra", x) for x in v)
    if kind == "nevra":
        return isinstance(v, list) and len(v) == 5 and all(isinstance(x, str) for x in v)
    if kind == "nevra-pairs":
        return isinstance(v, list) and all(isinstance(p, list) and len(p) == 2 and all(_is("nevra", x) for x in p)
                                           for p in v)
    raise AssertionError(kind)


def check_status(top: dict) -> None:
    """The whole ``status --json`` object: top-level keys, then every deployment."""
    assert set(top) == set(SCHEMA["top"])
    assert top["transaction"] is None or _is("strings", top["transaction"])
    for d in top["deployments"]:
        check_deployment(d)


def check_deployment(d: dict, *, present: tuple[str, ...] = (), absent: tuple[str, ...] = ()) -> None:
    """Types of every rpm-ostree key, the always-present ones present, nothing null, no unknown key; and the
    conditional keys this deployment should (``present``) or should not (``absent``) have."""
    schema, extras = SCHEMA["deployment"], set(SCHEMA["hybridos-extras"])
    for key, value in d.items():
        assert value is not None, f"{key} is null (rpm-ostree leaves such keys out)"
        if key in extras:
            continue
        assert key in schema, f"unknown key {key}"
        assert _is(schema[key][0], value), f"{key}: {value!r} is not {schema[key][0]}"
    missing = [k for k, (_, when) in schema.items() if when == "always" and k not in d]
    assert missing == [], f"always-present keys missing: {missing}"
    for k in present:
        assert k in d, k
    for k in absent:
        assert k not in d, k

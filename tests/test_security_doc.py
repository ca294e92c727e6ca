"""docs/security.md names a test for each promise: every named test must exist (the page cannot drift)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_test_named_in_security_md_exists():
    text = (ROOT / "docs/security.md").read_text()
    named = 0
    for cell in re.findall(r"`(tests/[^`]+\.py(?:::[^`]+)?)`", text):
        path, _, name = cell.partition("::")
        assert (ROOT / path).is_file(), f"docs/security.md names {path}, which does not exist"
        if name:
            tree = ast.parse((ROOT / path).read_text())
            functions = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
            assert name.split("[")[0] in functions, f"docs/security.md names {cell}, which does not exist"
            named += 1
    assert named >= 20

"""The layers import only downward (cli/daemon -> operations -> compose/layering -> sysroot -> ...)."""

from __future__ import annotations

import ast
from pathlib import Path

import hybridos

CORE = Path(hybridos.__file__).parent

#: package -> packages of hybridos it must never import (at module level or inside functions)
FORBIDDEN = {
    "sysroot": ("layering", "compose", "operations", "cli", "daemon"),
    "layering": ("operations", "cli", "daemon"),
    "compose": ("operations", "cli", "daemon"),
    "operations": ("cli", "daemon"),
    "ostree": ("sysroot", "layering", "compose", "operations", "cli", "daemon"),
    "packages": ("sysroot", "layering", "compose", "operations", "cli", "daemon"),
}


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_layers_import_only_downward():
    bad = []
    for package, forbidden in FORBIDDEN.items():
        for path in sorted((CORE / package).rglob("*.py")):
            for module in _imports(path):
                parts = module.split(".")
                if parts[0] == "hybridos" and len(parts) > 1 and parts[1] in forbidden:
                    bad.append(f"{path.relative_to(CORE)} imports {module}")
    assert not bad, "\n".join(bad)


def test_operations_reach_every_host_verb():
    from hybridos.operations.verbs import OPERATIONS

    assert set(OPERATIONS) == {"upgrade", "deploy", "rebase", "rollback", "kargs", "cleanup", "pkgchange",
                               "refresh-md", "package-diff", "modify-yum-repo", "search",
                               "finalize-deployment", "automatic-update"}

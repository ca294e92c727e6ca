"""The reference docs cannot drift from the code."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_cli_reference_is_up_to_date():
    proc = subprocess.run([sys.executable, str(ROOT / "scripts/gen_cli_docs.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_docs_named_by_the_readme_exist():
    for name in ("architecture", "plugins", "treefile", "cli", "benchmarks", "compatibility", "store-api"):
        assert (ROOT / "docs" / f"{name}.md").is_file(), name

"""The tree passes ruff with the project's [tool.ruff] settings (pyproject.toml)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

from helpers import ROOT


def test_tree_passes_ruff():
    ruff = shutil.which("ruff", path=os.path.dirname(sys.executable)) or shutil.which("ruff")
    assert ruff, "ruff is installed with the test extras (pip install -e .[test])"
    proc = subprocess.run([ruff, "check", "--no-cache", "."], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]

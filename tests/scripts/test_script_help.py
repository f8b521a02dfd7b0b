"""Every Python script in scripts/ answers --help (exit 0) with its docstring's whole opening paragraph as the
description: the first line alone was often cut mid-sentence ("... keeping its bf16 weight casts for the"),
and scripts/plain_trl.py answered --help with a traceback."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted((ROOT / "scripts").glob("*.py"))


def _words(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_help_shows_the_opening_paragraph(script):
    doc = ast.get_docstring(ast.parse(script.read_text(encoding="utf-8")), clean=False)
    opening = _words(doc.split("\n\n")[0])
    out = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, cwd=ROOT,
                         env={**__import__("os").environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    assert opening in _words(out.stdout), f"--help cuts the description short:\n{out.stdout[:600]}"

"""scripts/bench_ray.py on the tiny model: both engines run the same seeds into their own results and the
table says whether their metrics agree. (Ray's overhead is a benchmark figure, never asserted here.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytest.importorskip("ray.tune", reason="Ray is in the test extra: pip install -e '.[test]'")


def test_bench_ray_runs_both_engines_and_compares_their_metrics(write_recipe, tmp_path):
    recipe = write_recipe("orpo")
    cmd = [sys.executable, str(ROOT / "scripts" / "bench_ray.py"), str(recipe), "--seeds", "1,2",
           "--results", str(tmp_path / "b")]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, cwd=ROOT,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "| local |" in out.stdout and "| ray |" in out.stdout and "s per trial" in out.stdout
    assert "metrics agree (rel 1e-5): yes" in out.stdout
    for engine in ("local", "ray"):
        assert len(list((tmp_path / "b" / engine / "runs").glob("*/*/metrics.json"))) == 2

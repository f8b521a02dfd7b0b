"""scripts/profile_step.py on the tiny model: it trains through prefopt's runner, profiles the steps after the
warm-up, and prints the operator table (the timings are never asserted)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_profile_step_prints_the_profiled_steps_and_top_operators(write_recipe, tmp_path):
    recipe = write_recipe("kto")
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "profile_step.py"), str(recipe), "--warmup", "1",
                          "--steps", "2", "--trace", str(tmp_path / "t.json")],
                         capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "2 profiled steps after 1 warm-up" in out.stdout and "Self CPU" in out.stdout
    assert "aten::" in out.stdout and (tmp_path / "t.json").stat().st_size > 1000
    assert not list(tmp_path.glob("results"))  # a temporary results directory, gone after


def test_top_below_one_is_refused_before_training(tmp_path):
    # --top 0 printed an empty operator table and a negative --top every operator, each after the training
    for top in ("0", "-3"):
        out = subprocess.run([sys.executable, str(ROOT / "scripts" / "profile_step.py"), str(ROOT / "recipes" / "orpo.yaml"),
                              "--top", top], capture_output=True, text=True, cwd=tmp_path)
        assert out.returncode == 2 and out.stderr.splitlines() == [
            f"profile_step: error: --top: {top}: must be at least 1 (see profile_step.py --help)"]

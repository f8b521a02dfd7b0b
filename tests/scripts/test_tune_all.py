"""scripts/tune_all.sh on the tiny model: tunes, then trains the tuned recipe with seeds on the test split,
and a second call finds everything finished."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_tune_all_tunes_then_runs_the_tuned_recipe_and_resumes(write_recipe, tmp_path):
    recipe = write_recipe("orpo", data={"validation_fraction": 0.25})
    results = tmp_path / "res"
    cmd = ["bash", str(ROOT / "scripts" / "tune_all.sh"), "--trials", "2", "--seeds", "1", "--results", str(results),
           str(recipe), "--", "--engine", "local"]
    env = {**os.environ, "PYTHON": sys.executable, "HF_HUB_OFFLINE": "1"}
    first = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert first.returncode == 0, (first.stdout + first.stderr)[-3000:]
    trials = (results / "tuning" / "tiny_orpo" / "trials.csv").read_text().splitlines()
    assert len(trials) == 3  # header + 2 trials
    (run,) = (results / "runs" / "tiny_orpo_tuned").iterdir()
    metrics = json.loads((run / "metrics.json").read_text())
    assert run.name.startswith("seed1-") and metrics["split"] != "validation"
    assert "tiny_orpo_tuned" in (results / "summary.md").read_text()
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert again.returncode == 0 and "already finished" in again.stdout + again.stderr

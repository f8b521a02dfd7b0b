"""scripts/same_run.py: two folders of one run compared metric by metric; runs of other recipes refused."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]


def _run(folder: Path, auc: float, logp: float, text: str, recipe: str = "name: x\n") -> Path:
    folder.mkdir(parents=True)
    (folder / "recipe.yaml").write_text(recipe)
    (folder / "metrics.json").write_text(json.dumps({"reward_auc": auc, "kl": 0.1, "train_seconds": auc * 100}))
    pd.DataFrame({"row_id": [0, 1], "prompt_id": ["p", "q"], "logp": [logp, -3.0], "ref_logp": [-2.0, -3.0],
                  "kl_sum": [0.1, 0.2], "tokens": [4, 5]}).to_csv(folder / "eval_items.csv", index=False)
    (folder / "eval_generations.jsonl").write_text(
        json.dumps({"prompt_id": "p", "policy_text": text, "policy_pass": True}) + "\n")
    pd.DataFrame({"step": [1, 2], "loss": [1.0, 0.5]}).to_csv(folder / "train_log.csv", index=False)
    return folder


def _same_run(*args):
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "same_run.py"), *map(str, args)],
                          capture_output=True, text=True)


def test_differences_are_measured_and_machine_facts_kept_apart(tmp_path):
    a = _run(tmp_path / "a", 0.6, -2.0, "Hello")
    b = _run(tmp_path / "b", 0.6003, -2.001, "Hello there")
    out = _same_run(a, b, "--markdown", tmp_path / "out.md")
    assert out.returncode == 0, out.stderr
    assert "| reward_auc | 0.6 | 0.6003 | 5.0e-04 |" in out.stdout and "| kl | 0.1 | 0.1 | same |" in out.stdout
    assert "| train_seconds" not in out.stdout and "train_seconds 60 / 60.03" in out.stdout
    assert "largest difference logp 0.001" in out.stdout and "0 of 1 policy answers identical" in out.stdout
    assert "Per-step losses, 2 steps: identical." in out.stdout
    assert (tmp_path / "out.md").read_text().startswith(f"`{a}` (A)")


def test_another_recipe_is_not_the_same_run(tmp_path):
    a = _run(tmp_path / "a", 0.6, -2.0, "Hello")
    b = _run(tmp_path / "b", 0.6, -2.0, "Hello", recipe="name: y\n")
    out = _same_run(a, b)
    assert out.returncode == 2 and "recipe.yaml differs" in out.stderr
    assert _same_run(a, tmp_path / "nowhere").returncode == 2

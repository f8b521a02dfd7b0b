"""scripts/run_all.sh with the real `python -m prefopt`: it keeps going past failing recipes, prints a pass/fail
list, rebuilds the comparison and exits non-zero; --results, --force and `-- ARGS` reach every run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

from prefopt.results import write_atomic, write_json

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "run_all.sh"
ENV = {**os.environ, "PYTHON": sys.executable, "HF_HUB_OFFLINE": "1"}


def run_all(*args, cwd=None):
    return subprocess.run(["bash", str(SCRIPT), *map(str, args)], capture_output=True, text=True, env=ENV,
                          cwd=cwd or ROOT)


def broken(path: Path, method="no_such_method") -> Path:
    """Fails at recipe validation: prefopt exits 2 at once, no model is loaded."""
    path.write_text(yaml.safe_dump({"name": path.stem, "method": method, "data": {"path": "data/feedback.jsonl"}}))
    return path


def finished_run(results: Path) -> None:
    """An earlier finished run, so that the rebuild has something to write."""
    run = results / "runs" / "old" / "seed1-0123456789"
    write_atomic(run / "train_log.csv", "step,loss\n1,0.7\n2,0.6\n")
    write_json(run / "metrics.json", {"recipe": "old", "method": "kto", "strategy": "mixed", "seed": 1,
                                      "run_id": run.name, "eval_fingerprint": "f" * 64, "reward_auc": 0.6,
                                      "kl": 0.01, "desirable_nll": 2.0, "desirable_nll_ref": 2.1})


def summary_lines(stdout: str) -> list[str]:
    """The PASS/FAIL/SKIP lines, each recipe's wall time ("12 s") checked for shape and then dropped."""
    lines = [line for line in stdout.splitlines() if line.split(" ")[0] in ("PASS", "FAIL", "SKIP")]
    for line in lines:
        assert line.startswith("SKIP") or re.search(r"[ (]\d+ s\)$", line), line
    return [re.sub(r" \(\d+ s\)$", "", re.sub(r", \d+ s\)$", ")", line)) for line in lines]


def test_keeps_going_past_failures_and_rebuilds(tmp_path):
    results = tmp_path / "res"
    finished_run(results)
    a, b = broken(tmp_path / "a.yaml"), broken(tmp_path / "b.yaml", method="ppo")
    out = run_all("--results", results, a, tmp_path / "missing.yaml", b)
    assert out.returncode == 1, out.stderr
    assert out.stdout.count("=== [") == 3  # all three attempted, in order
    assert summary_lines(out.stdout) == [f"FAIL {a} (exit 2)", f"FAIL {tmp_path / 'missing.yaml'} (exit 2)",
                                         f"FAIL {b} (exit 2)"]
    assert "0 passed, 3 failed, 0 not run" in out.stdout
    assert "no_such_method" in out.stderr and "'ppo'" in out.stderr and "Traceback" not in out.stderr
    # compare ran on --results: it rewrote the tables from the finished run and printed their paths
    assert str(results / "summary.md") in out.stdout
    assert pd.read_csv(results / "comparison.csv")["recipe"].tolist() == ["old"]
    assert not (results / "runs" / "a").exists() and not (ROOT / "results" / "runs" / "a").exists()


def test_default_is_every_recipe_in_recipes_dir(tmp_path):
    (tmp_path / "recipes").mkdir()
    for name in ("x", "y"):
        broken(tmp_path / "recipes" / f"{name}.yaml")
    (tmp_path / "recipes" / "notes.txt").write_text("not a recipe")
    out = run_all(cwd=tmp_path)
    assert out.returncode == 1
    assert summary_lines(out.stdout) == ["FAIL recipes/x.yaml (exit 2)", "FAIL recipes/y.yaml (exit 2)"]
    assert "prefopt compare results" in out.stdout  # default results dir, relative to where it was started
    assert not (tmp_path / "results").exists()  # nothing finished, so compare wrote nothing


def test_extra_args_reach_every_run(tmp_path):
    shipped = ROOT / "recipes" / "dpo.yaml"
    out = run_all("--results", tmp_path / "res", "--force", shipped, shipped, "--", "--set", "data.bogus_field=1")
    assert out.returncode == 1
    assert out.stderr.count("bogus_field") == 2 and "Traceback" not in out.stderr
    assert not (tmp_path / "res").exists()


def test_usage_errors(tmp_path):
    for args in (["--bogus"], ["--results"]):
        out = run_all(*args, cwd=tmp_path)
        assert out.returncode == 2 and "run_all.sh:" in out.stderr and "===" not in out.stdout
    out = run_all(cwd=tmp_path)  # no recipes/ here
    assert out.returncode == 2 and "no recipes/*.yaml" in out.stderr
    assert run_all("--help").returncode == 0


def test_broken_recipe_among_good_ones_and_force(tmp_path, write_recipe):
    """The tiny model: one real run passes between two broken recipes; then skip, then --force."""
    results = tmp_path / "res"
    good = write_recipe("dpo")
    a, b = broken(tmp_path / "a.yaml"), broken(tmp_path / "b.yaml")
    out = run_all("--results", results, a, good, b, "--", "--set", "train.max_steps=2")
    assert out.returncode == 1, out.stderr[-3000:]
    assert summary_lines(out.stdout) == [f"PASS {good}", f"FAIL {a} (exit 2)", f"FAIL {b} (exit 2)"]
    metrics = json.loads(next(results.glob("runs/tiny_dpo/*/metrics.json")).read_text())
    assert metrics["steps"] == 2  # the `--` arguments reached the run
    table = pd.read_csv(results / "comparison.csv")
    assert table["recipe"].tolist() == ["tiny_dpo"]
    # the tables are rebuilt once, at the end, not also after the run
    assert out.stdout.count(f"{results / 'summary.md'}") == 1 and "comparison of every finished run" not in out.stdout

    again = run_all("--results", results, good, "--", "--set", "train.max_steps=2")
    assert again.returncode == 0 and "already finished" in again.stdout
    assert summary_lines(again.stdout) == [f"PASS {good}"]
    forced = run_all("--force", "--results", results, good, "--", "--set", "train.max_steps=2")
    assert forced.returncode == 0 and "already finished" not in forced.stdout
    assert len(pd.read_csv(results / "comparison.csv")) == 1  # rerun in place, still one row

"""scripts/bench_eval.py on the tiny model: both generation modes run on the recipe's test prompts and give the
same texts (the timings are printed, never asserted)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_eval_times_both_modes_and_finds_the_same_texts(tiny_model):
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_eval.py"), "--set", f"model.name={tiny_model}",
                          "--set", "eval.batch_size=2", "--set", "eval.max_new_tokens=4", "--prompts", "3",
                          "--rounds", "1"], capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "3 prompts, batch 2, max_new_tokens 4" in out.stdout
    assert re.search(r"\| cached casts \| [\d.]+ \|", out.stdout) and "| cast per step |" in out.stdout
    assert "identical texts: True" in out.stdout


def test_a_bad_recipe_is_one_line_exit_2(tmp_path):
    # load_recipe's UserError was a traceback, exit 1
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_eval.py"), str(tmp_path / "nope.yaml")],
                         capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.splitlines() == [f"bench_eval: error: {tmp_path / 'nope.yaml'}: recipe: no such file; pass a "
                                       "recipe path such as recipes/kto_mixed.yaml"]

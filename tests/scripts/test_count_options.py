"""A count option of a script given 0 or a negative number is refused as the options are read: one line naming
the option and what it must be, exit 2, nothing written. Before, `make_dataset.py --prompts 0` loaded the model and
ended in a traceback, `bench_data.py --prompts -1` in numpy's "negative dimensions", `bench_malloc.py --rounds 0`
trained a warm-up run first, and `gpu_check.py --steps 0` silently ran 20 steps."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("script, args, needle", [
    ("make_dataset", ["--prompts", "0"], "--prompts: 0: must be at least 1"),
    ("make_dataset", ["--test-prompts", "-2"], "--test-prompts: -2: must be at least 1"),
    ("make_dataset", ["--batch-size", "0"], "--batch-size: 0: must be at least 1"),
    ("make_dataset", ["--rows", "10", "--desirable", "11"], "--desirable: 11: must be at most --rows (10)"),
    ("make_dataset", ["--temperature", "0"], "--temperature: 0.0: must be above 0 (completions are sampled)"),
    ("bench_data", ["--prompts", "-1"], "--prompts: -1: must be at least 1"),
    ("bench_data", ["--repeats", "0"], "--repeats: 0: must be at least 1"),
    ("bench_eval", ["--rounds", "0"], "--rounds: 0: must be at least 1"),
    ("bench_malloc", ["--rounds", "0"], "--rounds: 0: must be at least 1"),
    ("bench_overhead", ["--repeats", "0"], "--repeats: 0: must be at least 1"),
    ("bench_dtype", ["--steps", "-1"], "--steps: -1: must be at least 1"),
    ("gpu_check", ["--steps", "0"], "--steps: 0: must be at least 1"),
    ("profile_step", [str(ROOT / "recipes" / "orpo.yaml"), "--warmup", "-1"], "--warmup: -1: must be at least 0"),
    ("rejudge_strict", ["a", "b", "--max-new-tokens", "0"], "--max-new-tokens: 0: must be at least 1"),
])
def test_a_count_below_its_least_is_one_line_exit_2(script, args, needle, tmp_path):
    extra = ["--out", str(tmp_path / "out.jsonl")] if script == "make_dataset" else []
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / f"{script}.py"), *args, *extra], cwd=tmp_path,
                         capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=120)
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.splitlines() == [f"{script}: error: {needle} (see {script}.py --help)"]
    assert list(tmp_path.iterdir()) == []

"""scripts/rejudge_strict.py: a copy of old records with estimated `ended` flags and strict verdicts; the
source folder is left as it was."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_rejudge_marks_long_answers_cut_off_and_judges_them_strictly(tiny_model, tmp_path):
    run = tmp_path / "results" / "runs" / "x" / "seed1-abc"
    run.mkdir(parents=True)
    long = "plants need water and soil to grow " * 6  # far over 8 tokens: cut off by a budget of 8
    records = [{"prompt_id": "p1", "constraint": {"id": "max_words", "kwargs": {"max_words": 50}},
                "policy_text": long, "policy_pass": True, "reference_text": "ok", "reference_pass": True},
               {"prompt_id": "p2", "constraint": {"id": "include_keyword", "kwargs": {"keyword": "soil"}},
                "policy_text": long, "policy_pass": True, "reference_text": "no", "reference_pass": False}]
    source = "".join(json.dumps(r) + "\n" for r in records)
    (run / "eval_generations.jsonl").write_text(source)
    (run / "metrics.json").write_text(json.dumps({"verified_success": 1.0, "verified_success_ref": 0.5}))
    copy = tmp_path / "strict"
    cmd = [sys.executable, str(ROOT / "scripts" / "rejudge_strict.py"), str(tmp_path / "results"), str(copy),
           "--model", str(tiny_model), "--max-new-tokens", "8"]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    judged = [json.loads(line) for line in (copy / "runs/x/seed1-abc/eval_generations.jsonl").read_text().splitlines()]
    assert [r["policy_ended"] for r in judged] == [False, False] and [r["reference_ended"] for r in judged] == [True] * 2
    assert [r["policy_pass"] for r in judged] == [False, True]  # the word budget is open, the keyword is there
    metrics = json.loads((copy / "runs/x/seed1-abc/metrics.json").read_text())
    assert metrics["verified_success"] == 0.5 and metrics["verified_success_ref"] == 0.5
    assert metrics["verified_cut_off"] == 1.0 and metrics["verified_cut_off_ref"] == 0.0
    assert (run / "eval_generations.jsonl").read_text() == source  # the source is untouched
    again = subprocess.run(cmd, capture_output=True, text=True)
    assert again.returncode == 2 and "exists" in again.stderr


def test_a_source_without_runs_is_one_line_and_writes_nothing(tmp_path):
    # a missing source was shutil.copytree's FileNotFoundError, a traceback (exit 1)
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "rejudge_strict.py"), str(tmp_path / "nodir"),
                          str(tmp_path / "copy")], capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.splitlines() == [f"rejudge_strict: {tmp_path / 'nodir'} has no runs/ folder; give a results "
                                       "folder (runs/<recipe>/<run>/)"]
    assert not (tmp_path / "copy").exists()

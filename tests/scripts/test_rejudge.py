"""scripts/rejudge.py: stored verdicts follow the current verifier without generating again; --check only
reports; the shipped runs' records agree with the verifier they are judged by."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "rejudge.py"


def _run(tmp_path, records, metrics):
    run = tmp_path / "results" / "runs" / "x" / "seed1-abc"
    run.mkdir(parents=True)
    (run / "eval_generations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (run / "metrics.json").write_text(json.dumps(metrics))
    (run / "data_report.json").write_text(json.dumps({"verifier": "instructions"}))
    return run


def _rejudge(tmp_path, *flags):
    return subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "results"), *flags],
                          capture_output=True, text=True)


def test_stale_verdicts_are_reported_then_rewritten(tmp_path):
    soil = {"id": "include_keyword", "kwargs": {"keyword": "soil"}}
    records = [  # stored under an older rule that let a longer word count for the keyword
        {"prompt_id": "p1", "constraint": soil, "policy_text": "Subsoiling helps. Fine.", "policy_ended": True,
         "policy_pass": True, "reference_text": "Rich soil.", "reference_ended": True, "reference_pass": True},
        {"prompt_id": "p2", "constraint": soil, "policy_text": "Water the soil, then", "policy_ended": False,
         "policy_pass": True, "reference_text": "No", "reference_ended": True, "reference_pass": False}]
    metrics = {"verified_success": 1.0, "verified_success_ref": 0.5, "verified_success_delta": 0.5,
               "reward_auc": 0.7}
    run = _run(tmp_path, records, metrics)
    before = {f.name: f.read_bytes() for f in run.iterdir()}

    check = _rejudge(tmp_path, "--check")
    assert check.returncode == 1 and "1 would change" in check.stdout
    assert "include_keyword  pass->fail 1" in check.stdout
    assert {f.name: f.read_bytes() for f in run.iterdir()} == before  # --check changes nothing

    done = _rejudge(tmp_path)
    assert done.returncode == 0, done.stderr
    judged = [json.loads(line) for line in (run / "eval_generations.jsonl").read_text().splitlines()]
    assert [r["policy_pass"] for r in judged] == [False, True] and [r["reference_pass"] for r in judged] == [True, False]
    assert [r["policy_text"] for r in judged] == [r["policy_text"] for r in records]  # texts stay
    new = json.loads((run / "metrics.json").read_text())
    assert new["verified_success"] == 0.5 and new["verified_success_delta"] == 0.0 and new["reward_auc"] == 0.7
    assert new["verified_cut_off"] == 0.5 and new["verified_open"] == 0.0  # "soil," is there: settled
    assert _rejudge(tmp_path, "--check").returncode == 0
    assert not list(run.glob(".*.tmp"))


def test_unfinished_runs_are_left_alone(tmp_path):
    records = [{"prompt_id": "p1", "constraint": {"id": "title", "kwargs": {}}, "policy_text": "<<my title>>",
                "policy_ended": True, "policy_pass": True}]
    run = _run(tmp_path, records, {})
    (run / "metrics.json").unlink()  # metrics.json is written last: without it the run is not finished
    out = _rejudge(tmp_path, "--check")
    assert out.returncode == 0 and "0 runs" in out.stdout


def test_shipped_records_agree_with_the_verifier():
    # a verifier change must come with `python scripts/rejudge.py results` and a rebuilt summary
    out = subprocess.run([sys.executable, str(SCRIPT), str(ROOT / "results"), "--check"], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_runs_it_cannot_judge_are_said_in_one_line_and_nothing_is_rewritten(tmp_path):
    # records from before the `ended` flag (results/bf16), a run without data_report.json and a mistyped
    # folder crashed with a KeyError or FileNotFoundError traceback, or (the folder) passed --check
    soil = {"id": "include_keyword", "kwargs": {"keyword": "soil"}}
    good = {"prompt_id": "p0", "constraint": soil, "policy_text": "Subsoiling.", "policy_ended": True,
            "policy_pass": True}
    first = _run(tmp_path, [good], {"verified_success": 1.0})
    old = [{"prompt_id": "p1", "constraint": soil, "policy_text": "Rich soil.", "policy_pass": True,
            "reference_text": "Soil.", "reference_pass": True}]
    run = tmp_path / "results" / "runs" / "y" / "seed1-def"
    run.mkdir(parents=True)
    (run / "eval_generations.jsonl").write_text(json.dumps(old[0]) + "\n")
    (run / "metrics.json").write_text("{}")
    (run / "data_report.json").write_text(json.dumps({"verifier": "instructions"}))
    before = (first / "eval_generations.jsonl").read_bytes()
    for flags in ((), ("--check",)):
        out = _rejudge(tmp_path, *flags)
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
        assert len(out.stderr.strip().splitlines()) == 1 and "lack policy_ended" in out.stderr
    assert (first / "eval_generations.jsonl").read_bytes() == before  # the judgeable run was not rewritten first
    (run / "data_report.json").unlink()
    out = _rejudge(tmp_path, "--check")
    assert out.returncode == 2 and "no data_report.json" in out.stderr and "Traceback" not in out.stderr
    out = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "nope"), "--check"], capture_output=True,
                         text=True)
    assert out.returncode == 2 and "no runs/ folder" in out.stderr

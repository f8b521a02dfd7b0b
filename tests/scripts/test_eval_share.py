"""scripts/eval_share.py on a tiny run: the tokens evaluation fed the policy, counted from the run's own
records, agree with what the scorer recorded, and training's are the sequences its steps took."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("eval_share", ROOT / "scripts" / "eval_share.py")
eval_share = importlib.util.module_from_spec(spec)
spec.loader.exec_module(eval_share)


def test_tokens_are_counted_from_the_runs_records(write_recipe, tiny_model, tmp_path):
    from transformers import AutoTokenizer

    from prefopt.cli import main
    from prefopt.models import encode
    from prefopt.testing import write_feedback, write_test_prompts

    data = write_feedback(tmp_path / "constrained.jsonl", constraints=True)
    prompts = write_test_prompts(tmp_path / "test_prompts.jsonl", prompts=6)
    results = tmp_path / "results"
    recipe = write_recipe("dpo", data={"path": str(data)}, train={"max_steps": 2, "per_device_train_batch_size": 3},
                          eval={"verifier": "auto", "max_new_tokens": 4, "prompts": str(prompts)})
    assert main(["run", str(recipe), "--results", str(results), "--no-compare"]) == 0
    (run,) = (results / "runs" / "tiny_dpo").iterdir()
    tok = AutoTokenizer.from_pretrained(tiny_model)

    counted = eval_share.eval_tokens(run, tok, {})
    items = pd.read_csv(run / "eval_items.csv")
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    prompt_part = sum(encode(tok, rows[i]["prompt"], rows[i]["completion"], 64)[1] for i in items["row_id"])
    assert counted["scored"] == prompt_part + items["tokens"].sum()  # the completion tokens the scorer counted
    assert 0 < counted["decoded"] <= 6 * 3  # six answers, at most 3 decode steps after the prefill's token
    assert counted["prefill"] > 6

    # training: 2 steps of 3 pairs, each pair two sequences, in the run's training order
    from prefopt.recipe import load_recipe
    from prefopt.preflight import check_data

    taken = check_data(load_recipe(str(run / "recipe.yaml"))).train.head(6)
    assert eval_share.train_tokens(run, tok, 2) == sum(len(encode(tok, r["prompt"], r[c], 64)[0])
                                                      for r in taken.to_dict("records") for c in ("chosen", "rejected"))
    (row,) = eval_share.table(results, tok)
    assert row["recipe"] == "tiny_dpo" and row["runs"] == 1 and row["eval_tokens"] == sum(counted.values())
    assert row["needed_speed_x"] == round(row["eval_tokens"] / row["train_tokens"] / 0.3, 2)


def test_a_results_folder_without_runs_is_one_line(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "eval_share.py"), "--results", str(tmp_path)],
                         capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.splitlines() == [
        f"eval_share: error: {tmp_path}/runs: no such folder; give --results a folder `prefopt run` wrote"]

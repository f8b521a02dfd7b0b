"""scripts/eval_share.py on a tiny run: the tokens evaluation fed the policy, counted from the run's own
records, agree with what the scorer recorded, and training's are as many sequences as its steps took."""

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

    # training: 2 steps of 3 pairs, each pair two sequences: the first rows of the prepared data (DPO's trainer
    # draws its rows at random, so a sample of the size its steps took, as the script's docstring says)
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


def test_a_run_on_a_named_split_is_counted_on_that_split(tiny_model, tmp_path):
    """Two runs naming two splits of one saved DatasetDict scored different rows: each is counted on its own
    split's rows, not on the first split read from that folder."""
    import datasets
    import yaml
    from transformers import AutoTokenizer

    from prefopt.models import encode

    rows = {"short": ["ok", "no"], "long": ["a much longer completion than the short split has " * 3] * 2}
    folder = tmp_path / "dd"
    datasets.DatasetDict({name: datasets.Dataset.from_dict(
        {"prompt": ["Say something.", "Say more."], "completion": c, "label": [True, False]})
        for name, c in rows.items()}).save_to_disk(str(folder))
    tok = AutoTokenizer.from_pretrained(tiny_model)
    cache, counted = {}, {}
    for name in ("short", "long"):
        run = tmp_path / name
        run.mkdir()
        (run / "recipe.yaml").write_text(yaml.safe_dump({"data": {"path": str(folder), "split": name},
                                                         "train": {"max_length": 64}, "eval": {"max_new_tokens": 4}}))
        pd.DataFrame({"row_id": [0, 1]}).to_csv(run / "eval_items.csv", index=False)
        counted[name] = eval_share.eval_tokens(run, tok, cache)["scored"]
        assert counted[name] == sum(len(encode(tok, p, c, 64)[0]) for p, c in zip(["Say something.", "Say more."],
                                                                                  rows[name]))
    assert counted["long"] > counted["short"]

"""scripts/crossfit_gain.py on fake per-item records: a single split of 12 prompts and a 2-fold cross-fitted
test of 120 prompts, same recipes and seed. Only complete cross-fitted recipes are compared, pairs read
higher minus lower, and the many more prompts narrow every interval."""

from __future__ import annotations

import importlib.util
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from prefopt.results import write_json, write_yaml

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("crossfit_gain", ROOT / "scripts" / "crossfit_gain.py")
crossfit_gain = importlib.util.module_from_spec(spec)
spec.loader.exec_module(crossfit_gain)
EFFECT = {"strong": 1.5, "weak": 0.0, "weaker": -0.2, "half": 0.5}


def add(root: Path, recipe: str, prompts: list[str], fp: str, fold: int | None = None) -> None:
    run_id = f"seed42-{'' if fold is None else f'fold{fold}-'}{fp}"
    run = root / "runs" / recipe / run_id
    write_yaml(run / "recipe.yaml", {"name": recipe, "method": "dpo", "seed": 42,
                                     "data": {"path": "d.jsonl", "folds": 1 if fold is None else 2, "fold": fold}})
    rng = np.random.default_rng(zlib.crc32(f"{recipe}/{fp}".encode()))  # (hash() varies by process)
    n = 4 * len(prompts)
    ref = -np.random.default_rng(0).uniform(20, 60, n)
    label = np.tile([True, True, True, False], len(prompts))
    pd.DataFrame({"row_id": np.arange(n), "prompt_id": np.repeat(prompts, 4), "label": label,
                  "logp": ref + EFFECT[recipe] * label + rng.normal(size=n), "ref_logp": ref,
                  "tokens": rng.integers(5, 30, n), "kl_sum": rng.uniform(0, 1, n)}).to_csv(run / "eval_items.csv",
                                                                                     index=False)
    metrics = {"recipe": recipe, "method": "dpo", "strategy": "natural", "seed": 42, "run_id": run_id,
               "eval_fingerprint": fp, "data_path": "d.jsonl", "reward_auc": 0.6, "eval_rows": n}
    if fold is not None:
        metrics.update(fold=fold, folds=2, partition="part")
    write_json(run / "metrics.json", metrics)


def test_gain_table_pairs_narrow_and_incomplete_recipes_left_out(tmp_path, capsys):
    root = tmp_path / "results"
    single = [f"s{i:02d}" for i in range(12)]
    folds = [[f"c{i:03d}" for i in range(60)], [f"c{i:03d}" for i in range(60, 120)]]
    for recipe in ("strong", "weak", "weaker"):
        add(root, recipe, single, "single")
        for f, prompts in enumerate(folds):
            add(root, recipe, prompts, f"fold{f}", fold=f)
    add(root, "half", folds[0], "fold0", fold=0)  # one of its two folds: never compared
    add(root, "half", single, "single")

    assert crossfit_gain.main([str(root), "--markdown", str(tmp_path / "gain.md")]) == 0
    out = capsys.readouterr().out
    assert out == (tmp_path / "gain.md").read_text()
    assert "single split `single` (12 prompts) vs cross-fitted `part` (120 prompts, 2 folds); seeds 42" in out
    runs = crossfit_gain.compare.with_groups(crossfit_gain.compare.load_runs(root))
    s = crossfit_gain.paired.analyze(runs[runs["test"] == "single"].query("group != 'half'"))
    c = crossfit_gain.paired.analyze(runs[(runs["test"] == "part") & (runs["group"] != "half")])
    table = crossfit_gain.gain_table(s, c, "reward_auc")
    assert sorted(table["pair"]) == ["strong − weak", "strong − weaker", "weak − weaker"]
    assert (table["cross"] >= 0).all() and (table["cross_low"] <= table["cross"]).all()
    assert (table["cross_width"] < table["single_width"]).all()  # 10x the prompts
    strong = table.set_index("pair").loc["strong − weak"]
    assert strong["cross_p"] < 0.05 and strong["decided"] in ("both", "cross-fitted only")
    assert "| strong − weak |" in out and "half" not in out


def test_a_folder_without_runs_is_one_line_exit_2(tmp_path, capsys):
    # a missing folder, a file, or a folder with no finished run: KeyError 'eval_fingerprint' (a traceback) before
    (tmp_path / "afile").write_text("x")
    (tmp_path / "empty").mkdir()
    for where, said in (("nodir", "no such folder"), ("afile", "no such folder"), ("empty", "no finished runs")):
        assert crossfit_gain.main([str(tmp_path / where)]) == 2
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and err[0].startswith(f"crossfit_gain: {tmp_path / where}") and said in err[0], err


def test_results_it_cannot_compare_are_one_line_exit_2(tmp_path, capsys):
    """No cross-fitted run, no single split beside it, a metric neither measures, seeds that are not numbers:
    each ended through SystemExit (exit 1, as a crash) or a ValueError traceback; now one line, exit 2."""
    single = [f"s{i:02d}" for i in range(12)]
    alone = tmp_path / "alone"
    for recipe in ("strong", "weak"):
        add(alone, recipe, single, "single")
    folded = tmp_path / "folded"
    for recipe in ("strong", "weak"):
        for f in (0, 1):
            add(folded, recipe, single[6 * f:6 * f + 6], f"fold{f}", fold=f)
    both = tmp_path / "both"
    for recipe in ("strong", "weak"):
        add(both, recipe, single, "single")
        for f in (0, 1):
            add(both, recipe, single[6 * f:6 * f + 6], f"fold{f}", fold=f)
    for args, said in (([alone], "no cross-fitted runs"), ([folded], "no single-split runs on d.jsonl"),
                       ([both, "--metric", "verified_success"], "--metric: verified_success: not measured on both "
                        "tests"),  # (a known metric these runs did not measure: said once the runs are read)
                       ([both, "--seeds", "1,x"], "--seeds: 1,x:")):
        try:
            code = crossfit_gain.main([str(a) for a in args])
        except SystemExit as stop:  # (an option refused while the options are parsed)
            code = stop.code
        err = capsys.readouterr().err.splitlines()
        assert code == 2 and len(err) == 1 and err[0].startswith("crossfit_gain: ") and said in err[0], err


def test_an_unknown_metric_is_refused_before_any_run_is_read(tmp_path, capsys, monkeypatch):
    """A misspelt --metric was refused only after every run's records were read and analysed (minutes on the
    shipped results); now while the options are parsed, one line with the choices, as prefopt says of names."""
    monkeypatch.setattr(crossfit_gain.compare, "load_runs", lambda *a: pytest.fail("runs read for a bad --metric"))
    with pytest.raises(SystemExit) as stop:
        crossfit_gain.main([str(tmp_path), "--metric", "reward_acu"])
    assert stop.value.code == 2
    assert capsys.readouterr().err == ("crossfit_gain: error: --metric: unknown metric 'reward_acu'; did you mean "
                                       "'reward_auc'? choices: desirable_nll, kl, reward_auc, verified_success (see "
                                       "crossfit_gain.py --help)\n")


def test_single_split_runs_naming_the_file_another_way_are_found(tmp_path, monkeypatch):
    """prefopt compare takes `data/d.jsonl` and `./data/d.jsonl` (or its absolute path) for one file; tests_of
    matched the text, and said there were no single-split runs on it to compare with."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "d.jsonl").write_text("{}\n")
    runs = pd.DataFrame({"folds": [2, 2, 1], "test": ["cross", "cross", "single"],
                         "data_path": ["data/d.jsonl", "data/d.jsonl", str(tmp_path / "data" / "d.jsonl")]})
    assert crossfit_gain.tests_of(runs) == ("single", "cross")

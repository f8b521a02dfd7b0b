"""Every bad input: exit status 2, one line `prefopt: error: <file>: <field>: <message with the fix>` on
stderr, no traceback, nothing created under results/. One table, one row per bad input."""

import json

import pytest
import yaml

from prefopt import models
from prefopt.cli import main

ROWS = [{"prompt": "p1", "completion": "a", "label": True}, {"prompt": "p1", "completion": "b", "label": False},
        {"prompt": "p2", "completion": "c", "label": True}, {"prompt": "p2", "completion": "d", "label": False}]


def jsonl(rows):
    return "".join(json.dumps(r) + "\n" for r in rows)


# (id, recipe patch, data file text or bytes or None (tiny data), extra CLI args, field in the message, words of the fix)
CASES = [
    # --- recipe structure
    ("yaml-syntax", "RAW:name: [x\nmethod: kto\n", None, [], "line 2", "fix the syntax"),
    ("empty-recipe", "RAW:", None, [], "recipe", "needs at least name and method"),
    ("unknown-top-key", {"sed": 1}, None, [], "sed", "did you mean 'seed'?"),
    ("unknown-model-key", {"model": {"nam": "x"}}, None, [], "model.nam", "did you mean 'name'?"),
    ("unknown-lora-key", {"model": {"lora": {"rank": 4}}}, None, [], "model.lora.rank", "choices"),
    ("unknown-data-key", {"data": {"strategi": "mixed"}}, None, [], "data.strategi", "did you mean 'strategy'?"),
    ("unknown-eval-key", {"eval": {"verifer": "x"}}, None, [], "eval.verifer", "did you mean 'verifier'?"),
    ("unknown-trl-field", {"train": {"learning_rat": 0.1}}, None, [], "train.learning_rat",
     "did you mean 'learning_rate'?"),
    ("field-of-another-method", {"method": "dpo", "data": {"strategy": "natural"}, "train": {"loss_type": "kto",
     "desirable_weight": 1.0}}, None, [], "train.desirable_weight", "not a field of DPOConfig"),
    ("type-seed", {"seed": "x"}, None, [], "seed", "expected int"),
    ("type-lora-r", {"model": {"lora": {"r": "big"}}}, None, [], "model.lora.r", "expected int"),
    ("type-eval-fraction", {"data": {"eval_fraction": "half"}}, None, [], "data.eval_fraction", "expected float"),
    ("type-train", {"train": [1, 2]}, None, [], "train", "expected dict"),
    ("type-seeds", {"seeds": [1, "a"]}, None, [], "seeds", "expected list"),
    ("type-train-value", {"train": {"learning_rate": "fast"}}, None, [], "train.learning_rate", "expected float"),
    ("not-a-mapping-with-set", "RAW:- name\n- method\n", None, ["--set", "seed=1"], "recipe", "expected a mapping"),
    ("type-section", {"model": "big"}, None, [], "model", "expected a mapping"),
    ("missing-name", {"name": None}, None, [], "name", "required key is missing"),
    ("missing-method", {"method": None}, None, [], "method", "required key is missing"),
    # --- names
    ("unknown-method", {"method": "kot"}, None, [], "method", "did you mean 'kto'?"),
    ("unknown-strategy", {"data": {"strategy": "mixd"}}, None, [], "data.strategy", "did you mean 'mixed'?"),
    ("strategy-for-pairs", {"method": "dpo", "data": {"strategy": "mixed"}}, None, [], "data.strategy", "natural"),
    ("unknown-pairing", {"method": "dpo", "data": {"strategy": "natural", "pairing": "one2one"}}, None, [],
     "data.pairing", "one_to_one"),
    ("unknown-backend", {"model": {"backend": "unslot"}}, None, [], "model.backend", "did you mean 'unsloth'?"),
    ("unknown-verifier", {"eval": {"verifier": "instruction"}}, None, [], "eval.verifier", "instructions"),
    ("unknown-dtype", {"model": {"dtype": "fp8"}}, None, [], "model.dtype", "choices"),
    ("unknown-model-alias", {"model": {"name": "smollm3-135m"}}, None, [], "model.name",
     "smollm2-135m-instruct"),
    ("model-dir-not-a-model", {"model": {"name": "{tmp}"}}, None, [], "model.name", "config.json"),
    # --- values
    ("kto-batch-size-1", {"train": {"per_device_train_batch_size": 1}}, None, [], "train.per_device_train_batch_size",
     "set it to 2 or more"),
    ("eval-fraction-zero", {"data": {"eval_fraction": 0.0}}, None, [], "data.eval_fraction", "between 0 and 1"),
    ("eval-fraction-one", {"data": {"eval_fraction": 1.5}}, None, [], "data.eval_fraction", "between 0 and 1"),
    ("weights-bad", {"data": {"weights": {"desirable": -1, "undesirable": 1}}}, None, [], "data.weights",
     "positive number"),
    ("weights-in-train", {"train": {"undesirable_weight": 2.0}}, None, [], "train.undesirable_weight",
     "set data.weights"),
    ("kto-random-sampling", {"train": {"train_sampling_strategy": "random"}}, None, [],
     "train.train_sampling_strategy", "remove the key"),
    ("max-pairs-zero", {"method": "dpo", "data": {"strategy": "natural", "max_pairs_per_prompt": 0}}, None, [],
     "data.max_pairs_per_prompt", "of at least 1"),  # (a bare "1" matched the pytest-1 tmp folder in the path)
    ("trl-rejects-value", {"train": {"lr_scheduler_type": "bogus"}}, None, [], "train", "rejected the settings"),
    ("backend-unsloth-no-gpu", {"model": {"backend": "unsloth"}}, None, [], "model.backend", "backend: transformers"),
    ("train-seed", {"train": {"seed": 3}}, None, [], "train.seed", "remove the key"),
    ("learning-rate-negative", {"train": {"learning_rate": -1.0e-3}}, None, [], "train.learning_rate", "above 0"),
    ("train-output-dir", {"train": {"output_dir": "/tmp/x"}}, None, [], "train.output_dir", "set by the run itself"),
    ("eval-batch-size-zero", {"eval": {"batch_size": 0}}, None, [], "eval.batch_size", "1 or more"),
    ("eval-max-new-tokens-zero", {"eval": {"max_new_tokens": 0}}, None, [], "eval.max_new_tokens", "1 or more"),
    ("generation-prompts-seen-in-training", {"eval": {"prompts": "{tmp}/d.jsonl", "verifier": "auto"}},
     jsonl([{"prompt": f"p{i}", "completion": c, "label": c == "a"} for i in range(20) for c in "ab"]), [],
     "eval.prompts", "prompts the data never asks"),
    # a generation-test file's problems name eval.prompts, not data.path (which the message once sent people to)
    ("generation-prompts-missing", {"eval": {"prompts": "{tmp}/nope.jsonl", "verifier": "auto"}}, None, [],
     "eval.prompts", "check eval.prompts"),
    ("generation-prompts-extension", {"eval": {"prompts": "{tmp}/d.txt", "verifier": "auto"}}, None, [],
     "eval.prompts", "rename the file"),
    # --- data files
    ("data-missing", {"data": {"path": "{tmp}/nope.jsonl"}}, None, [], "data.path", "check data.path"),
    ("data-empty", {}, "", [], "data.path", "add rows"),
    ("data-garbled", {}, '{"prompt": "p", "completion"\n', [], "row 1", "JSON"),
    ("data-not-utf8", {}, b'\xff\xfe{"prompt": "p"}\n', [], "data.path", "save it as UTF-8"),
    ("data-folder-not-a-dataset", {"data": {"path": "{tmp}"}}, None, [], "data.path", "Dataset.save_to_disk"),
    ("data-wrong-extension", {"data": {"path": "{tmp}/d.txt"}}, None, [], "data.path", "supported"),
    ("data-missing-columns", {}, jsonl([{"prompt": "p", "answer": "a", "label": True}]), [], "columns",
     "needed prompt, completion, label"),
    # both layouts' columns: neither may be picked silently (the paired texts were once ignored unsaid)
    ("data-both-layouts", {}, jsonl([{**r, "chosen": "a", "rejected": "b"} for r in ROWS]), [], "columns",
     "drop or rename one layout's columns"),
    ("data-bad-label", {}, jsonl(ROWS[:2] + [{"prompt": "p3", "completion": "x", "label": "maybe"}]), [], "row 3: label",
     "allowed"),
    ("data-one-label", {}, jsonl([{**r, "label": True} for r in ROWS]), [], "label", "both"),
    ("data-empty-completion", {}, jsonl(ROWS + [{"prompt": "p3", "completion": "  ", "label": True}]), [],
     "row 5: completion", "whitespace"),
    ("data-missing-completion", {}, jsonl(ROWS + [{"prompt": "p3", "label": True}]), [], "row 5: completion",
     "is missing"),
    ("data-null-prompt", {}, jsonl(ROWS + [{"prompt": None, "completion": "x", "label": True}]), [], "row 5: prompt",
     "is missing"),
    # one rated completion per prompt: KTO and SFT train on it (tests/test_cli.py), the pair methods cannot
    *[(f"data-no-pair-for-{m}", {"method": m, "data": {"strategy": "natural"}},
       jsonl([{"prompt": f"p{i}", "completion": "x", "label": i % 2 == 0} for i in range(20)]), [], "label",
       f"no pair can be formed for {m}: no prompt has both a desirable and an undesirable completion; add "
       "completions of the other label") for m in ("dpo", "orpo", "ipo", "simpo")],
    # --- command line
    ("set-unknown-key", {}, None, ["--set", "train.max_stepz=3"], "train.max_stepz", "did you mean 'max_steps'?"),
    ("set-bad-value", {}, None, ["--set", "seed=[1"], "seed", "valid YAML"),
    ("set-no-equals", {}, None, ["--set", "seed"], "seed", "KEY=VALUE"),
    ("set-bad-type", {}, None, ["--set", "data.eval_fraction=abc"], "data.eval_fraction", "expected float"),
    ("set-bad-train-type", {}, None, ["--set", "train.max_steps=2.5"], "train.max_steps", "expected int"),
    ("seeds-bad", {}, None, ["--seeds", "1,x"], "1,x", "comma-separated integers"),
]


def deep_merge(base, patch):
    for key, value in patch.items():
        if value is None:
            base.pop(key, None)
        elif isinstance(value, dict) and isinstance(base.get(key), dict):
            deep_merge(base[key], value)
        else:
            base[key] = value
    return base


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case, write_recipe, tmp_path, capsys, monkeypatch):
    name, patch, data_text, extra, field, fix = case
    monkeypatch.setattr(models, "_has_gpu", lambda: False)
    recipe = write_recipe("kto")
    (tmp_path / "d.txt").write_text("prompt completion label")
    raw = yaml.safe_load(recipe.read_text())
    if data_text is not None:
        data = tmp_path / "d.jsonl"
        data.write_bytes(data_text) if isinstance(data_text, bytes) else data.write_text(data_text)
        raw["data"]["path"] = str(data)
    if isinstance(patch, str):
        recipe.write_text(patch[len("RAW:"):])
    else:
        patch = json.loads(json.dumps(patch).replace("{tmp}", str(tmp_path)))
        recipe.write_text(yaml.safe_dump(deep_merge(raw, patch)))
    results = tmp_path / "results"
    code = main(["run", str(recipe), "--results", str(results), *extra])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("prefopt: error: "), err
    where = lines[0][len("prefopt: error: "):]
    assert f": {field}: " in f": {where}" or where.startswith(f"{field}: "), err
    assert fix in where, err
    assert not results.exists(), "a bad input must not create anything under results/"


@pytest.mark.parametrize("method", ["kto", "dpo"])
def test_both_layouts_refused_alike_by_data_and_run(method, write_recipe, tmp_path, capsys):
    """`prefopt data` and `prefopt run` read the file the same way, so they refuse it with the same line."""
    data = tmp_path / "both.jsonl"
    data.write_text(jsonl([{**r, "chosen": "a", "rejected": "b"} for r in ROWS]))
    recipe = str(write_recipe(method))
    lines = []
    for command in (["data", recipe], ["run", recipe, "--results", str(tmp_path / "results")]):
        code = main([*command, "--set", f"data.path={data}"])
        err = capsys.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        lines.append(err.strip())
    assert lines[0] == lines[1], lines
    assert lines[0] == (f"prefopt: error: {data}: columns: holds both layouts: prompt, completion, label (one "
                        "row per completion) and prompt, chosen, rejected (one row per pair); drop or rename one "
                        "layout's columns (completion and label, or chosen and rejected)"), lines[0]
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("sets, field, words", [
    ([], "data.path", "holds several splits (train_prefs, test_prefs) and none is named train; set data.split to "
     "the one to read (e.g. --set data.split=train_prefs)"),
    (["data.split=train_pref"], "data.split", "unknown split 'train_pref'; did you mean 'train_prefs'? choices: "
     "test_prefs, train_prefs"),
    (["data.splt=train_prefs"], "data.splt", "unknown key; did you mean 'split'?"),
])
def test_a_dataset_dict_split_refused_alike_by_data_and_run(sets, field, words, write_recipe, tmp_path, capsys):
    """A saved DatasetDict of train_prefs/test_prefs (the Hub's preference sets): with no split named, or one it
    lacks, `prefopt data` and `prefopt run` give the same one line, naming the splits and data.split."""
    import datasets

    pairs = [{"prompt": f"p{i}", "chosen": "a", "rejected": "b"} for i in range(20)]
    data = tmp_path / "prefs"
    datasets.DatasetDict({"train_prefs": datasets.Dataset.from_list(pairs),
                          "test_prefs": datasets.Dataset.from_list(pairs)}).save_to_disk(str(data))
    capsys.readouterr()  # (datasets' progress bar)
    recipe = str(write_recipe("dpo"))
    sets = [a for s in [f"data.path={data}", *sets] for a in ("--set", s)]
    lines = []
    for command in (["data", recipe], ["run", recipe, "--results", str(tmp_path / "results")]):
        code = main([*command, *sets])
        err = capsys.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        lines.append(err.strip())
    assert lines[0] == lines[1], lines
    assert f"{field}: {words}" in lines[0], lines[0]
    assert not (tmp_path / "results").exists()
    assert main(["data", recipe, *sets[:2], "--set", "data.split=train_prefs"]) == 0  # named: read


@pytest.mark.parametrize("sep, name", [(";", "semicolons"), ("\t", "tabs")])
def test_prompts_csv_not_comma_separated_is_said_alike_by_data_and_run(sep, name, write_recipe, tmp_path, capsys):
    """An eval.prompts CSV saved with semicolons or tabs was told it had no 'prompt' column (the header read as one
    column 'prompt;constraint'); it is told the separator, as the data file is, by `data` and `run` alike."""
    prompts = tmp_path / "p.csv"
    prompts.write_text(f'prompt{sep}constraint\nWrite in lowercase.{sep}{{"id": "lowercase"}}\n')
    recipe = str(write_recipe("kto"))
    lines = []
    for command in (["data", recipe], ["run", recipe, "--results", str(tmp_path / "results")]):
        code = main([*command, "--set", f"eval.prompts={prompts}", "--set", "eval.verifier=instructions"])
        err = capsys.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        lines.append(err.strip())
    assert lines[0] == lines[1] == (f"prefopt: error: {prompts}: eval.prompts: the columns are separated by {name}, "
                                    "not commas; save the file as comma-separated CSV (a spreadsheet's 'CSV (comma "
                                    "delimited)'; pandas: DataFrame.to_csv(path, index=False))"), lines
    assert not (tmp_path / "results").exists()


def test_the_table_covers_at_least_forty_bad_inputs():
    assert len(CASES) >= 40 and len({c[0] for c in CASES}) == len(CASES)

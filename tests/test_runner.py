"""End to end on a tiny model: every method trains, evaluates and writes a complete run directory."""

import json
import re
import shutil
import math

import pandas as pd
import pytest

from prefopt.cli import main

METRICS = {"reward_auc", "preference_accuracy", "reward_margin", "kl", "desirable_nll", "desirable_nll_ref",
           "train_seconds", "eval_seconds", "train_tokens_per_second", "peak_memory_mb", "steps", "examples_used",
           "eval_fingerprint", "recipe", "method", "strategy", "seed"}


def only_run(results, name):
    (run,) = (results / "runs" / name).iterdir()
    return run


@pytest.mark.parametrize("method", ["kto", "kto_apo", "dpo", "orpo", "sft", "ipo", "simpo"])
def test_each_method_end_to_end(method, write_recipe, tmp_path):
    """Every method (kto_apo: a recipe over kto with its APO-zero loss) trains, moves the model and is scored."""
    results = tmp_path / "results"
    recipe = write_recipe("kto", name="tiny_kto_apo", train={"loss_type": "apo_zero_unpaired"}) \
        if method == "kto_apo" else write_recipe(method)
    assert main(["run", str(recipe), "--results", str(results)]) == 0
    run = only_run(results, f"tiny_{method}")
    metrics = json.loads((run / "metrics.json").read_text())
    assert METRICS <= set(metrics) and metrics["steps"] == 3
    # training moved the model: a no-op (adapter never updated, or the reference scored in its place) gives
    # r = 0 and kl = 0
    items = pd.read_csv(run / "eval_items.csv")
    assert metrics["kl"] > 0 and (items["logp"] != items["ref_logp"]).all()
    assert metrics["desirable_nll"] != metrics["desirable_nll_ref"]
    assert 0 <= metrics["reward_auc"] <= 1 and metrics["kl"] >= 0
    log = pd.read_csv(run / "train_log.csv")
    assert log["loss"].notna().sum() == 3  # a loss for every step
    assert (run / "adapter" / "adapter_config.json").is_file()
    assert not (run / "checkpoints").exists()
    env = json.loads((run / "env.json").read_text())
    assert env["libraries"]["trl"] and env["seed"] == 0 and env["backend"] == "transformers"
    report = json.loads((run / "data_report.json").read_text())
    assert report["eval_fingerprint"] == metrics["eval_fingerprint"]
    if method == "sft":  # the desirable training rows only, each once
        assert report["undesirable"] == 0 and report["examples_used"] == report["desirable"]
        assert report["examples_discarded"] == report["train_rows"] - report["desirable"] > 0
    if method.startswith("kto"):
        batches = pd.read_csv(run / "batch_labels.csv")
        assert len(batches) == 3 and ((batches.desirable > 0) & (batches.undesirable > 0)).all()
        assert metrics["single_label_batches_trained"] == 0
    assert (results / "comparison.csv").is_file()


def test_trl_without_triton_kernel_is_a_user_error(write_recipe, tmp_path, monkeypatch, capsys):
    # TRL 1.15 on a CPU-only torch: the optional Triton import failed and left the kernel as None
    from trl.trainer import utils as trl_utils

    monkeypatch.setattr(trl_utils, "_ChunkedLogProbFunction", None, raising=False)
    results = tmp_path / "results"
    assert main(["run", str(write_recipe("dpo")), "--results", str(results)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and ": method: " in err and "DPOTrainer needs Triton" in err
    assert "trl>=1.16" in err and not (results / "runs").exists()
    # ORPO computes its log-probabilities without the fused head, so it still trains
    assert main(["run", str(write_recipe("orpo")), "--results", str(results)]) == 0


def test_methods_share_one_held_out_split(write_recipe, tmp_path):
    results = tmp_path / "results"
    for method in ("kto", "dpo"):
        assert main(["run", str(write_recipe(method)), "--results", str(results)]) == 0
    fps = {json.loads((only_run(results, f"tiny_{m}") / "metrics.json").read_text())["eval_fingerprint"]
           for m in ("kto", "dpo")}
    assert len(fps) == 1


def test_same_recipe_and_seed_give_the_same_numbers(write_recipe, tmp_path):
    recipe = str(write_recipe("kto"))
    for out in ("a", "b"):
        assert main(["run", recipe, "--results", str(tmp_path / out)]) == 0
    a, b = (json.loads((only_run(tmp_path / o, "tiny_kto") / "metrics.json").read_text()) for o in "ab")
    for key in ("reward_auc", "preference_accuracy", "reward_margin", "kl", "desirable_nll"):
        assert math.isclose(a[key], b[key], rel_tol=1e-5, abs_tol=1e-7), key
    la, lb = (pd.read_csv(only_run(tmp_path / o, "tiny_kto") / "train_log.csv")["loss"].dropna() for o in "ab")
    assert la.tolist() == pytest.approx(lb.tolist(), rel=1e-6)


def test_finished_run_is_skipped_unless_forced(write_recipe, tmp_path, capsys):
    recipe, results = str(write_recipe("dpo")), str(tmp_path / "r")
    assert main(["run", recipe, "--results", results]) == 0
    run = only_run(tmp_path / "r", "tiny_dpo")
    stamp = (run / "metrics.json").stat().st_mtime_ns
    summary = tmp_path / "r" / "summary.md"
    built = summary.stat().st_mtime_ns
    assert main(["run", recipe, "--results", results]) == 0
    assert "already finished" in capsys.readouterr().out
    assert (run / "metrics.json").stat().st_mtime_ns == stamp
    assert summary.stat().st_mtime_ns == built  # nothing ran: the tables are current, no rebuild
    summary.unlink()
    assert main(["run", recipe, "--results", results]) == 0 and summary.is_file()  # ...unless there are none
    assert main(["run", recipe, "--results", results, "--force"]) == 0
    assert (run / "metrics.json").stat().st_mtime_ns != stamp


def test_rebuild_stopped_part_way_is_finished_by_the_same_command(write_recipe, tmp_path, monkeypatch):
    """Ctrl-C during the comparison's writes (minutes over many runs) after the run finished: rerunning the
    same command skips the run but must still rebuild, or summary.md and the plots stay without it while
    summary.csv, written before the stop, has it."""
    import prefopt.plots

    recipe, results = str(write_recipe("orpo")), tmp_path / "r"
    assert main(["run", recipe, "--results", str(results)]) == 0  # the tables hold seed 0
    png = prefopt.plots.png

    def stop(fig):
        raise KeyboardInterrupt

    monkeypatch.setattr(prefopt.plots, "png", stop)
    assert main(["run", recipe, "--results", str(results), "--seeds", "1"]) == 130
    (seed1,) = (results / "runs" / "tiny_orpo").glob("seed1-*")
    assert (seed1 / "metrics.json").is_file()
    monkeypatch.setattr(prefopt.plots, "png", png)
    assert main(["run", recipe, "--results", str(results), "--seeds", "1"]) == 0
    after = (results / "summary.md").read_text()
    done = (seed1 / "metrics.json").stat().st_mtime_ns
    assert all(p.stat().st_mtime_ns >= done for p in (results / "plots").glob("*.png"))
    assert main(["compare", str(results)]) == 0
    assert (results / "summary.md").read_text() == after  # what a full rebuild writes: both seeds


def test_no_compare_trains_but_leaves_the_tables_alone(write_recipe, tmp_path):
    # what run_all.sh passes to every run before its one rebuild at the end
    recipe, results = str(write_recipe("orpo")), tmp_path / "r"
    assert main(["run", recipe, "--results", str(results), "--no-compare"]) == 0
    run = only_run(results, "tiny_orpo")
    assert (run / "metrics.json").is_file() and not (results / "summary.md").exists()  # even with no tables yet
    assert main(["compare", str(results)]) == 0
    built = (results / "summary.md").stat().st_mtime_ns
    stamp = (run / "metrics.json").stat().st_mtime_ns
    assert main(["run", recipe, "--results", str(results), "--force", "--no-compare"]) == 0
    assert (run / "metrics.json").stat().st_mtime_ns != stamp  # it trained again...
    assert (results / "summary.md").stat().st_mtime_ns == built  # ...and rebuilt nothing


def test_seeds_run_one_training_each(write_recipe, tmp_path):
    results = tmp_path / "r"
    assert main(["run", str(write_recipe("orpo")), "--results", str(results), "--seeds", "1,2"]) == 0
    runs = sorted(p.name.split("-")[0] for p in (results / "runs" / "tiny_orpo").iterdir())
    assert runs == ["seed1", "seed2"]
    table = pd.read_csv(results / "comparison.csv")
    assert len(table) == 2 and table["eval_fingerprint"].nunique() == 1  # seeds vary training, not the split
    (row,) = pd.read_csv(results / "summary.csv").query("recipe == 'tiny_orpo'").to_dict("records")
    assert row["n_seeds"] == 2
    losses = [pd.read_csv(p / "train_log.csv")["loss"].dropna().tolist()
              for p in sorted((results / "runs" / "tiny_orpo").iterdir())]
    assert losses[0] != losses[1]  # ...and the seed does reach training


@pytest.mark.parametrize("dtype, native, autocast", [("auto", True, True), ("auto", False, False),
                                                      ("float32", True, False)])
def test_dtype_auto_trains_and_generates_under_bf16_autocast_on_a_native_bf16_cpu_but_scores_in_float32(
        dtype, native, autocast, write_recipe, tmp_path, monkeypatch):
    import torch

    from prefopt import metrics as metrics_module, models

    monkeypatch.setattr(models, "cpu_has_native_bf16", lambda cpuinfo=None: native)
    monkeypatch.setattr(models, "cpu_bf16_speedup", lambda: 2.0)  # bf16 products measured faster here
    seen = {"score": [], "generate": []}  # autocast state inside every held-out scoring and generation call

    def watch(name):
        """Record whether bf16 autocast is on inside the model's layers while `name` runs (accelerate wraps a
        mixed-precision model's forward in an autocast of its own, so the caller's context is not enough)."""
        original = getattr(metrics_module, name)

        def call(model, *a, **k):
            inner = []
            layer = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
            hook = layer.register_forward_pre_hook(lambda *_: inner.append(
                torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16))
            try:
                return original(model, *a, **k)
            finally:
                hook.remove()
                seen[name.split("_")[0]].append(any(inner))

        monkeypatch.setattr(metrics_module, name, call)

    watch("score_rows"), watch("generate")
    from prefopt.testing import write_feedback, write_test_prompts

    data = write_feedback(tmp_path / "constrained.jsonl", constraints=True)
    prompts = write_test_prompts(tmp_path / "test_prompts.jsonl", prompts=12)
    results = tmp_path / "results"
    recipe = write_recipe("dpo", model={"dtype": dtype}, data={"path": str(data), "validation_fraction": 0.2},
                          eval={"verifier": "auto", "max_new_tokens": 4, "prompts": str(prompts), "select": "best"})
    assert main(["run", str(recipe), "--results", str(results)]) == 0
    run = only_run(results, "tiny_dpo")
    env, metrics = (json.loads((run / f).read_text()) for f in ("env.json", "metrics.json"))
    assert env["precision"]["autocast_bf16"] is autocast and env["precision"]["weights"] == "float32"
    assert metrics["autocast_bf16"] is autocast and metrics["scored_in"] == "float32"
    # rows are scored without autocast (bf16 rounding swallows small policy changes), the validation rows of
    # every checkpoint (eval.select: best, inside training's autocast) too; generation follows training
    assert len(seen["score"]) >= 3 and not any(seen["score"]) and metrics["selected_step"] in (2, 3)
    assert seen["generate"] and set(seen["generate"]) == {autocast}
    assert math.isfinite(metrics["reward_auc"]) and metrics["steps"] == 3


def test_verifier_auto_skips_generation_on_data_without_its_column(write_recipe, tmp_path):
    results = tmp_path / "results"
    recipe = write_recipe("orpo", eval={"verifier": "auto"})  # the tiny data has no `constraint` column
    assert main(["run", str(recipe), "--results", str(results)]) == 0
    run = only_run(results, "tiny_orpo")
    metrics = json.loads((run / "metrics.json").read_text())
    assert "verified_success" not in metrics and "no verifier column" in metrics["verified_note"]
    assert json.loads((run / "data_report.json").read_text())["verifier"] is None


def test_verified_success_end_to_end_on_constrained_data(write_recipe, tmp_path):
    from prefopt.testing import write_feedback

    data = write_feedback(tmp_path / "constrained.jsonl", constraints=True)
    results = tmp_path / "results"
    recipe = write_recipe("dpo", data={"path": str(data)}, eval={"verifier": "auto", "max_new_tokens": 8})
    assert main(["run", str(recipe), "--results", str(results)]) == 0
    metrics = json.loads((only_run(results, "tiny_dpo") / "metrics.json").read_text())
    assert metrics["verified_prompts"] > 0
    for key in ("verified_success", "verified_success_ref"):  # a share of prompts: k / n
        assert 0 <= metrics[key] <= 1 and round(metrics[key] * metrics["verified_prompts"], 6).is_integer()


@pytest.mark.parametrize("case, needle", [
    ("named verifier, no column", "eval.verifier: verifier 'instructions' reads each row's 'constraint' column"),
    ("bad constraint value", "constraint: unknown constraint id 'lowercse'"),
])
def test_verifier_problems_fail_before_anything_is_written(case, needle, write_recipe, tmp_path, capsys):
    from prefopt.testing import write_feedback

    if case == "named verifier, no column":
        recipe = write_recipe("kto", eval={"verifier": "instructions"})
    else:
        data = write_feedback(tmp_path / "bad.jsonl", constraints=True)
        data.write_text(data.read_text().replace('"id": "lowercase"', '"id": "lowercse"'))
        recipe = write_recipe("kto", data={"path": str(data)}, eval={"verifier": "auto"})
    results = tmp_path / "results"
    assert main(["run", str(recipe), "--results", str(results)]) == 2
    assert main(["data", str(recipe)]) == 2  # the data report fails the same way
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[0] == err[1] and needle in err[0]
    assert not results.exists()


def test_a_bad_constraint_is_reported_at_its_row_of_the_file(write_recipe, tmp_path, capsys):
    """A constraint the verifier cannot read names the file's row (a CSV's data row, counting repeats of a prompt
    and rows of other splits), not its count among the held-out or distinct prompts: that count matched no row
    a person could find. A CSV holds the constraint as text, which must be JSON (the message shows how)."""
    import csv

    from prefopt.testing import write_feedback

    rows = [json.loads(line) for line in write_feedback(tmp_path / "f.jsonl").read_text().splitlines()]
    data = tmp_path / "own.csv"
    with data.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["prompt", "completion", "label", "constraint"])
        out.writerows([r["prompt"][0]["content"], r["completion"][0]["content"], r["label"], "lowercase"] for r in rows)
    prompts = tmp_path / "tests.csv"  # the generation test's own file: its first prompt twice, then a bad value
    prompts.write_text('prompt,constraint\nnew one,"{""id"": ""no_commas""}"\nnew one,"{""id"": ""no_commas""}"\n'
                       'new two,lowercase\n')
    for file, extra in ((data, {"prompts": None}), (prompts, {"prompts": str(prompts)})):
        recipe = write_recipe("kto", data={"path": str(data)}, eval={"verifier": "auto", **extra})
        assert main(["data", str(recipe)]) == 2
        err = capsys.readouterr().err.strip()
        found = re.fullmatch(rf"prefopt: error: {re.escape(str(file))}: row (\d+): constraint: not a JSON constraint: "
                             r"'lowercase'; write it as a JSON object like \{.*\} \(prompt '(.*)'\)", err)
        assert found, err
        with file.open(newline="") as f:
            body = list(csv.reader(f))[1:]
        assert body[int(found[1]) - 1][0][:40] == found[2]  # that row of the file asks the prompt quoted
    assert found[1] == "3"


def test_per_item_records_reproduce_the_run_metrics(write_recipe, tmp_path):
    from prefopt.metrics import summarize
    from prefopt.testing import write_feedback

    data = write_feedback(tmp_path / "constrained.jsonl", constraints=True)
    results = tmp_path / "results"
    recipe = write_recipe("kto", data={"path": str(data)}, eval={"verifier": "auto", "max_new_tokens": 8})
    assert main(["run", str(recipe), "--results", str(results)]) == 0
    run = only_run(results, "tiny_kto")
    metrics = json.loads((run / "metrics.json").read_text())
    items = pd.read_csv(run / "eval_items.csv")
    assert len(items) == metrics["eval_rows"] and items["row_id"].is_unique
    assert items["prompt_id"].nunique() == json.loads((run / "data_report.json").read_text())["eval_prompts"]
    # every row-level metric follows from the records alone
    rows = [{"prompt": p, "completion": str(i), "label": bool(label)}
            for i, (p, label) in enumerate(zip(items["prompt_id"], items["label"]))]
    scores = {"logp": items["logp"].to_numpy(), "ref_logp": items["ref_logp"].to_numpy(),
              "tokens": items["tokens"].to_numpy(float), "kl": items["kl_sum"].to_numpy()}
    again = summarize(rows, scores, [])
    for key in ("reward_auc", "kl", "desirable_nll", "desirable_nll_ref"):
        assert again[key] == pytest.approx(metrics[key], rel=1e-12), key
    generations = [json.loads(line) for line in (run / "eval_generations.jsonl").read_text().splitlines()]
    assert len(generations) == metrics["verified_prompts"]
    assert sum(g["policy_pass"] for g in generations) / len(generations) == pytest.approx(metrics["verified_success"])
    assert sum(g["reference_pass"] for g in generations) / len(generations) == \
        pytest.approx(metrics["verified_success_ref"])
    assert {"prompt_id", "question_id", "constraint", "policy_text", "reference_text"} <= set(generations[0])
    assert items["question_id"].nunique() == items["prompt_id"].nunique()  # the test data asks each question once


def test_a_model_folder_that_does_not_load_leaves_no_run_folder(write_recipe, tiny_model, tmp_path, capsys):
    """A model folder with a config.json but no tokenizer or weights passes the checks before anything is written
    and fails to load after the run's recipe.yaml, data_report.json and env.json are: bad input writes nothing,
    so the refused run's folder goes (it was left behind, never trained, and skipped by every table unsaid)."""
    broken = tmp_path / "broken-model"
    broken.mkdir()
    shutil.copy(tiny_model / "config.json", broken)
    results = tmp_path / "results"
    assert main(["run", str(write_recipe("kto", model={"name": str(broken)})), "--results", str(results)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and ": model.name: could not load" in err[0], err
    assert not list(results.glob("runs/*")), list(results.rglob("*"))


def test_a_failed_evaluation_keeps_the_training_and_a_rerun_only_evaluates(write_recipe, tmp_path, monkeypatch):
    import trl

    from prefopt import runner

    recipe = str(write_recipe("kto"))
    whole = tmp_path / "whole"
    assert main(["run", recipe, "--results", str(whole)]) == 0  # the same run, never interrupted

    evaluate = runner.evaluate

    def broken(*args, **kwargs):
        raise RuntimeError("evaluation broke")

    results = tmp_path / "results"
    monkeypatch.setattr(runner, "evaluate", broken)
    with pytest.raises(RuntimeError, match="evaluation broke"):
        main(["run", recipe, "--results", str(results)])
    run = only_run(results, "tiny_kto")
    assert (run / "adapter" / "adapter_config.json").is_file() and (run / "train_log.csv").is_file()
    assert (run / "trained.json").is_file() and not (run / "metrics.json").exists()
    (run / "checkpoints" / "checkpoint-2").mkdir(parents=True)  # as a stop before their removal leaves them

    monkeypatch.setattr(runner, "evaluate", evaluate)
    monkeypatch.setattr(trl.KTOTrainer, "train", lambda *a, **k: pytest.fail("trained again"))
    assert main(["run", recipe, "--results", str(results)]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    reference = json.loads((only_run(whole, "tiny_kto") / "metrics.json").read_text())
    assert metrics["steps"] == reference["steps"] == 3 and not (run / "checkpoints").exists()
    for key in ("reward_auc", "kl", "desirable_nll", "reward_margin"):  # the saved adapter is the trained one
        assert metrics[key] == pytest.approx(reference[key], rel=1e-5, abs=1e-9), key


def test_a_run_begun_on_one_model_does_not_continue_on_another(write_recipe, tiny_model, tmp_path, monkeypatch,
                                                               capsys):
    """The run id names model.name, not the files there: a model rebuilt at that path between a stop and the
    rerun must not get the evaluation (or the rest of the steps) of an adapter trained on the first."""
    import shutil

    from prefopt import runner
    from prefopt.testing import build_tiny_model

    model = shutil.copytree(tiny_model, tmp_path / "model")
    weights = (model / "model.safetensors").read_bytes()
    recipe, results = str(write_recipe("orpo", model={"name": str(model)})), tmp_path / "r"
    evaluate = runner.evaluate
    monkeypatch.setattr(runner, "evaluate", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    assert main(["run", recipe, "--results", str(results)]) == 130
    run = only_run(results, "tiny_orpo")
    assert (run / "trained.json").is_file()
    env = (run / "env.json").read_text()
    monkeypatch.setattr(runner, "evaluate", evaluate)
    build_tiny_model(model, seed=1)  # other weights under the same name
    capsys.readouterr()
    assert main(["run", recipe, "--results", str(results)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"prefopt: error: {recipe}: model.name: {run} began with other files in {model} (")
    assert "(model.safetensors changed since)" in err and len(err.splitlines()) == 1
    assert (run / "env.json").read_text() == env and not (run / "metrics.json").exists()
    (model / "model.safetensors").write_bytes(weights)  # the same model again, newly dated: it continues
    assert main(["run", recipe, "--results", str(results)]) == 0 and (run / "metrics.json").is_file()


def test_a_run_another_process_is_writing_is_left_to_it(write_recipe, tmp_path, capsys):
    """The same run started twice (or rerun after an interrupt while a worker of the first attempt lives on):
    the second process must not resume from the first one's checkpoints in the making, nor touch its files.
    Before the fix it resumed, rewrote env.json and crashed on a checkpoint the first one rotated away."""
    import subprocess
    import sys
    import textwrap

    from prefopt import results as res
    from prefopt.recipe import load_recipe

    recipe, results = str(write_recipe("orpo")), tmp_path / "r"
    run = res.run_dir(results, "tiny_orpo", 0, load_recipe(recipe).fingerprint())
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from prefopt import results as res
        with res.hold(Path({str(run)!r})):
            print("held", flush=True)
            sys.stdin.read()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(["run", recipe, "--results", str(results)]) == 2
        err = capsys.readouterr().err.strip()
        assert err == (f"prefopt: error: {run}: run: another prefopt process is training or evaluating this run "
                       "now; let it finish (the same command then skips the run) or stop it, then run this again")
        assert not run.exists()  # nothing written in its place
    finally:
        holder.communicate("")
    assert main(["run", recipe, "--results", str(results)]) == 0 and (run / "metrics.json").is_file()


def test_a_run_begun_in_one_precision_does_not_continue_in_another(write_recipe, tmp_path, monkeypatch, capsys):
    """dtype auto resolves per machine under one run id: a run trained under bf16 autocast on one CPU, its
    evaluation left to do, must not be finished in float32 on another (nor its env.json overwritten)."""
    from prefopt import models, runner

    native = {"bf16": True}
    monkeypatch.setattr(models, "cpu_has_native_bf16", lambda cpuinfo=None: native["bf16"])
    monkeypatch.setattr(models, "cpu_bf16_speedup", lambda: 2.0)
    recipe, results = str(write_recipe("orpo", model={"dtype": "auto"})), tmp_path / "r"
    evaluate = runner.evaluate
    monkeypatch.setattr(runner, "evaluate", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("stopped")))
    with pytest.raises(RuntimeError, match="stopped"):
        main(["run", recipe, "--results", str(results)])
    monkeypatch.setattr(runner, "evaluate", evaluate)
    run = only_run(results, "tiny_orpo")
    files = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert (run / "trained.json").is_file() and json.loads((run / "env.json").read_text())["precision"]["autocast_bf16"]

    native["bf16"] = False  # the same run id on a CPU where auto means float32
    capsys.readouterr()
    assert main(["run", recipe, "--results", str(results)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{recipe}: model.dtype:" in err[0] and "bf16 autocast" in err[0]
    assert f"delete {run} to train it again" in err[0]  # not --force: over a batch it retrains every seed
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == files  # nothing written

    native["bf16"] = True  # back where it began: it evaluates and finishes
    assert main(["run", recipe, "--results", str(results)]) == 0 and (run / "metrics.json").is_file()
    native["bf16"] = False
    assert main(["run", recipe, "--results", str(results)]) == 0  # finished runs are skipped, whatever the machine
    assert main(["run", recipe, "--results", str(results), "--force"]) == 0  # --force starts over here
    assert json.loads((run / "env.json").read_text())["precision"]["autocast_bf16"] is False


@pytest.mark.parametrize("case", ["checkpoint", "no env.json"])
def test_a_run_resumable_from_a_checkpoint_is_held_to_its_precision(case, write_recipe, tmp_path, monkeypatch, capsys):
    """Stopped mid-training (a whole checkpoint, no trained.json): refused in another precision, and refused
    when env.json cannot say which precision it began in; a checkpoint cut off mid-save is no progress."""
    from prefopt import models
    from prefopt.recipe import load_recipe
    from prefopt.results import run_dir

    monkeypatch.setattr(models, "cpu_has_native_bf16", lambda cpuinfo=None: False)  # here: float32
    recipe = write_recipe("orpo", model={"dtype": "auto"})
    r = load_recipe(str(recipe), [])
    run = run_dir(tmp_path / "r", r.name, r.seed, r.fingerprint(), r.data.fold)
    (run / "checkpoints" / "checkpoint-4").mkdir(parents=True)
    (run / "checkpoints" / "checkpoint-6").mkdir()
    (run / "checkpoints" / "checkpoint-6" / "trainer_state.json").write_text('{"global_ste')  # cut off
    if case == "checkpoint":
        (run / "env.json").write_text(json.dumps({"precision": {"weights": "float32", "autocast_bf16": True}}))
    files = lambda: {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}  # noqa: E731
    assert main(["run", str(recipe), "--results", str(tmp_path / "r")]) == 0  # only a cut-off checkpoint: starts
    assert json.loads((run / "env.json").read_text())["precision"]["autocast_bf16"] is False

    import shutil

    shutil.rmtree(run)
    (run / "checkpoints" / "checkpoint-4").mkdir(parents=True)
    (run / "checkpoints" / "checkpoint-4" / "trainer_state.json").write_text('{"global_step": 4}')
    if case == "checkpoint":
        (run / "env.json").write_text(json.dumps({"precision": {"weights": "float32", "autocast_bf16": True}}))
    before = files()
    capsys.readouterr()
    assert main(["run", str(recipe), "--results", str(tmp_path / "r")]) == 2
    (err,) = capsys.readouterr().err.strip().splitlines()
    where = f"{recipe}: model.dtype:" if case == "checkpoint" else f"{run / 'env.json'}: precision:"
    assert where in err and f"delete {run}" in err
    assert files() == before


def test_a_run_with_only_its_env_file_starts_in_this_machines_precision(write_recipe, tmp_path, monkeypatch):
    """A run that stopped before its first checkpoint has nothing to mix: it simply starts here."""
    from prefopt import models

    monkeypatch.setattr(models, "cpu_has_native_bf16", lambda cpuinfo=None: False)
    recipe, results = str(write_recipe("orpo", model={"dtype": "auto"})), tmp_path / "r"
    assert main(["run", recipe, "--results", str(results)]) == 0
    run = only_run(results, "tiny_orpo")
    for name in ("metrics.json", "trained.json"):
        (run / name).unlink()
    env = json.loads((run / "env.json").read_text())
    env["precision"]["autocast_bf16"] = True
    (run / "env.json").write_text(json.dumps(env))
    assert main(["run", recipe, "--results", str(results)]) == 0
    assert json.loads((run / "env.json").read_text())["precision"]["autocast_bf16"] is False


def test_prompts_longer_than_max_length_fail_before_anything_is_written(write_recipe, tmp_path, capsys):
    for method in ("kto", "dpo"):
        recipe = write_recipe(method, train={"max_length": 8})  # the tiny prompts are 12+ tokens
        results = tmp_path / method
        assert main(["run", str(recipe), "--results", str(results)]) == 2
        assert main(["data", str(recipe)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 2 and err[0] == err[1], err
        assert ": train.max_length: " in err[0] and " training, " in err[0], err
        assert " prompts are at least max_length=8 tokens" in err[0], err
        assert not results.exists()


def test_auto_kto_weights_reach_the_trainer(write_recipe, tmp_path, monkeypatch):
    import trl

    seen = {}
    train = trl.KTOTrainer.train

    def recording(self, *args, **kwargs):
        seen.update(desirable=self.args.desirable_weight, undesirable=self.args.undesirable_weight)
        return train(self, *args, **kwargs)

    monkeypatch.setattr(trl.KTOTrainer, "train", recording)
    results = tmp_path / "results"
    assert main(["run", str(write_recipe("kto")), "--results", str(results)]) == 0
    report = json.loads((only_run(results, "tiny_kto") / "data_report.json").read_text())
    assert report["undesirable_weight"] > 1  # the tiny data is ~3:1, outside the paper's [1, 4/3]
    assert seen == {"desirable": report["desirable_weight"], "undesirable": report["undesirable_weight"]}


def test_generation_test_file_and_the_reference_computed_once(write_recipe, tmp_path):
    """eval.prompts: the verified test runs on that file's prompts; the reference's scores and generations
    are computed by the first run, stored under results/cache/reference and read by the next, with the
    same values."""
    from prefopt.testing import write_feedback, write_test_prompts

    data = write_feedback(tmp_path / "constrained.jsonl", constraints=True)
    prompts = write_test_prompts(tmp_path / "test_prompts.jsonl", prompts=12)
    results = tmp_path / "results"
    recipe = write_recipe("kto", data={"path": str(data)},
                          eval={"verifier": "auto", "max_new_tokens": 6, "prompts": str(prompts)})
    assert main(["run", str(recipe), "--results", str(results), "--seeds", "0,1"]) == 0
    runs = sorted((results / "runs" / "tiny_kto").iterdir())
    first, second = (json.loads((r / "metrics.json").read_text()) for r in runs)
    assert first["verified_prompts"] == second["verified_prompts"] == 12
    assert first["reference_cached"] == {"scores": False, "generations": False}
    assert second["reference_cached"] == {"scores": True, "generations": True}
    assert len(list((results / "cache" / "reference").iterdir())) == 2
    assert first["verified_success_ref"] == second["verified_success_ref"]
    assert first["desirable_nll_ref"] == pytest.approx(second["desirable_nll_ref"], rel=1e-6)
    items = [pd.read_csv(r / "eval_items.csv") for r in runs]
    assert items[0]["ref_logp"].to_numpy() == pytest.approx(items[1]["ref_logp"].to_numpy(), rel=1e-6)
    gens = [[json.loads(x) for x in (r / "eval_generations.jsonl").read_text().splitlines()] for r in runs]
    assert [g["reference_text"] for g in gens[0]] == [g["reference_text"] for g in gens[1]]
    assert {g["prompt_id"] for g in gens[0]}.isdisjoint(set(items[0]["prompt_id"]))  # not the held-out prompts


def test_a_generation_test_file_without_the_verifier_column_fails_early(write_recipe, tmp_path, capsys):
    from prefopt.testing import write_feedback

    data = write_feedback(tmp_path / "constrained.jsonl", constraints=True)
    bad = tmp_path / "prompts.jsonl"
    bad.write_text('{"prompt": "say hi"}\n')
    recipe = write_recipe("kto", data={"path": str(data)}, eval={"verifier": "auto", "prompts": str(bad)})
    results = tmp_path / "results"
    assert main(["run", str(recipe), "--results", str(results)]) == 2
    assert main(["data", str(recipe)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[0] == err[1] and str(bad) in err[0] and "eval.prompts" in err[0]
    assert not results.exists()


def test_select_best_keeps_the_best_validation_checkpoint(write_recipe, tmp_path):
    """eval.select: best scores every checkpoint on the validation split and keeps the best one's adapter:
    the saved adapter rescored on the validation rows gives the logged best value."""
    import torch

    from prefopt.methods import get_method
    from prefopt.metrics import score_rows, summarize
    from prefopt.models import load_trained
    from prefopt.recipe import load_recipe
    from prefopt.preflight import prepare_data

    results = tmp_path / "results"
    path = write_recipe("dpo", train={"max_steps": 4, "save_steps": 1, "learning_rate": 5e-3},
                        eval={"select": "best", "select_metric": "kl"})  # kl grows with training: an early step wins
    assert main(["run", str(path), "--results", str(results)]) == 0
    run = only_run(results, "tiny_dpo")
    log = pd.read_csv(run / "validation_log.csv")
    metrics = json.loads((run / "metrics.json").read_text())
    assert list(log["step"]) == [1, 2, 3, 4] and log["kl"].notna().all()
    best = log.loc[log["kl"].idxmin()]
    assert metrics["selected_step"] == best["step"] < 4 and metrics["select_metric"] == "kl"
    assert metrics["selected_validation_value"] == pytest.approx(best["kl"])
    recipe = load_recipe(str(path))
    prepared, _ = prepare_data(recipe, get_method("dpo"))
    rows = prepared.validation_rows.to_dict("records")
    assert not set(prepared.validation_rows["prompt_key"]) & set(prepared.eval_rows["prompt_key"])
    model, tok = load_trained(recipe.model.name, run / "adapter", dtype="float32")
    with torch.no_grad():
        again = summarize(rows, score_rows(model, tok, rows, batch_size=8, max_length=64), [])["kl"]
    assert again == pytest.approx(best["kl"], rel=1e-4)


def test_cross_fitted_folds_run_like_seeds_resume_and_pool(write_recipe, tmp_path, capsys):
    """data.folds: one ordinary run per fold; a finished fold is skipped when the rest run; the comparison
    pools the folds of one seed (waiting, and saying so, while a fold is missing) into records that are
    exactly the union of the folds' records, every labeled prompt once."""
    from prefopt import paired
    from prefopt.compare import load_runs, with_groups

    results = tmp_path / "r"
    recipe = write_recipe("dpo", data={"folds": 3, "validation_fraction": 0})
    assert main(["run", str(recipe), "--results", str(results), "--set", "data.fold=1"]) == 0
    (first,) = (results / "runs" / "tiny_dpo").iterdir()
    assert first.name.startswith("seed0-fold1-")
    assert "tiny_dpo seed 0 (folds 1 of 3 finished)" in (results / "summary.md").read_text()
    stamp = (first / "metrics.json").stat().st_mtime_ns
    assert main(["run", str(recipe), "--results", str(results), "--engine", "local"]) == 0  # (Ray: test_batch)
    assert "fold1" in capsys.readouterr().out.split("already finished")[0]  # the finished fold is skipped
    assert (first / "metrics.json").stat().st_mtime_ns == stamp
    runs = sorted((results / "runs" / "tiny_dpo").iterdir())
    assert [r.name.split("-")[1] for r in runs] == ["fold0", "fold1", "fold2"]
    metrics = [json.loads((r / "metrics.json").read_text()) for r in runs]
    assert len({m["partition"] for m in metrics}) == 1 and len({m["eval_fingerprint"] for m in metrics}) == 3
    items = pd.concat([pd.read_csv(r / "eval_items.csv") for r in runs], ignore_index=True)
    n_rows = sum(1 for _ in open(json.loads((runs[0] / "data_report.json").read_text())["data_path"]))
    assert sorted(items["row_id"]) == list(range(n_rows))  # every labeled row scored once, by one fold's model

    table = with_groups(load_runs(results))
    assert table["test"].nunique() == 1 and table["eval_fingerprint"].nunique() == 3  # the partition is one test
    pooled, counts, missing = paired.load(table)
    (run,) = pooled["tiny_dpo"]
    assert not missing and counts["reward_auc"] == items["prompt_id"].nunique() == len(set(run.prompt))
    union = items.sort_values("row_id")
    assert sorted(run.logp.tolist()) == sorted(union["logp"].tolist()) and len(run.logp) == len(union)
    assert sorted(run.kl_sum.tolist()) == sorted(union["kl_sum"].tolist())
    summary = (results / "summary.md").read_text()
    assert "Cross-fitted test" in summary and "3 folds" in summary and "sd across folds" in summary
    (row,) = pd.read_csv(results / "summary.csv").query("recipe == 'tiny_dpo'").to_dict("records")
    assert (row["n_folds"], row["n_seeds"], row["n_runs"]) == (3, 1, 3)


def test_completion_only_log_prob_head_matches_the_full_one(tiny_model, monkeypatch):
    """The compact head prefopt selects on CPU scores only the completion tokens: the same per-token
    log-probabilities and gradients as TRL's every-position path, which it replaces."""
    import torch
    from transformers import AutoModelForCausalLM
    from trl.trainer import utils as trl_utils

    from prefopt.trainer_config import score_completion_tokens_only

    torch.manual_seed(0)
    ids = torch.randint(3, 200, (3, 20))
    labels = ids.masked_fill(torch.arange(20) < torch.tensor([[8], [12], [5]]), -100)  # prompts of 8, 12, 5
    labels[2, 15:] = -100  # padding at the end of a short row
    results = []
    for compact in (False, True):
        monkeypatch.setattr(trl_utils, "_use_triton", lambda device: False)  # TRL's own choice on CPU
        if compact:
            assert score_completion_tokens_only()
            assert trl_utils._use_triton(torch.device("cpu"))
        model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
        trl_utils.add_fused_lm_head(model)
        out = model(input_ids=ids, labels=labels, fused_lm_head=True)
        out.loss.backward()
        grad = model.get_output_embeddings().weight.grad.clone()
        results.append((out.log_probs.detach(), grad))
    (full, full_grad), (part, part_grad) = results
    assert (part[labels[:, 1:] == -100] == 0).all() and (part[labels[:, 1:] != -100] != 0).all()
    torch.testing.assert_close(part, full)
    torch.testing.assert_close(part_grad, full_grad)


def test_best_checkpoint_metric_must_exist_on_the_validation_split(write_recipe):
    # one label per prompt there: no pairs, so reward_margin would be NaN at every checkpoint and the
    # choice would fail only after training; it is refused before, in one line naming the field
    from types import SimpleNamespace

    from prefopt.errors import UserError
    from prefopt.recipe import load_recipe
    from prefopt.preflight import check_selection

    rows = pd.DataFrame({"prompt": ["a", "b", "c"], "completion": ["x", "y", "z"], "label": [True, False, True]})
    unpaired = SimpleNamespace(validation_rows=rows, validation_pairs=rows.iloc[:0])
    path = write_recipe("kto", data={"validation_fraction": 0.2},
                        eval={"select": "best", "select_metric": "reward_margin"})
    with pytest.raises(UserError) as e:
        check_selection(load_recipe(str(path)), unpaired)
    assert str(e.value).startswith(f"{path}: eval.select_metric: reward_margin needs pairs")
    assert "\n" not in str(e.value)
    check_selection(load_recipe(str(path), ["eval.select_metric=reward_auc"]), unpaired)  # both labels: fine
    one_label = SimpleNamespace(validation_rows=rows.assign(label=True), validation_pairs=None)
    with pytest.raises(UserError, match=r"reward_auc needs rows of both labels .*\(3 rows\), and every row is "
                                        "desirable;"):
        check_selection(load_recipe(str(path), ["eval.select_metric=reward_auc"]), one_label)  # (not "it has none")
    check_selection(load_recipe(str(path), ["eval.select=last"]), unpaired)  # nothing is chosen: nothing checked
    empty = SimpleNamespace(validation_rows=rows.iloc[:0], validation_pairs=None)  # a fraction that rounds to 0
    with pytest.raises(UserError, match="kl needs rows in the validation split") as e:
        check_selection(load_recipe(str(path), ["eval.select_metric=kl"]), empty)
    # the fix offered is one that works: no other metric exists on no rows (it once offered kl itself)
    assert "choose" not in str(e.value) and "raise data.validation_fraction" in str(e.value)
    with pytest.raises(UserError) as e:
        check_selection(load_recipe(str(path), ["eval.select_metric=reward_auc"]), one_label)
    assert "allows (desirable_nll, kl)" in str(e.value)


def test_a_run_stands_or_continues_only_on_the_data_and_processes_it_began_with(write_recipe, tiny_data, tmp_path,
                                                                                capsys):
    # the run id names the recipe, not the file's contents: an edited file is caught by the data fingerprint
    data = tmp_path / "ours.jsonl"
    data.write_text(tiny_data.read_text())
    recipe, results = str(write_recipe("dpo", data={"path": str(data)})), str(tmp_path / "r")
    assert main(["run", recipe, "--results", results]) == 0
    assert main(["run", recipe, "--results", results]) == 0 and "already finished" in capsys.readouterr().out
    rows = data.read_text().splitlines()
    data.write_text("\n".join(rows[:-1]) + "\n")  # one row fewer
    assert main(["run", recipe, "--results", results]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"prefopt: error: {recipe}: data.path: ") and "finished on other data" in err
    assert len(err.splitlines()) == 1 and "--force" in err
    assert main(["run", recipe, "--results", results, "--force"]) == 0  # retrained on this data
    run = only_run(tmp_path / "r", "tiny_dpo")
    # trained, evaluation left (metrics.json gone): it continues only as it began
    (run / "metrics.json").unlink()
    env = json.loads((run / "env.json").read_text())
    (run / "env.json").write_text(json.dumps({**env, "world_size": 2}))
    assert main(["run", recipe, "--results", results]) == 2
    err = capsys.readouterr().err
    assert ": processes: " in err and "began with world_size 2 and would continue with 1" in err
    (run / "env.json").write_text(json.dumps(env))
    data.write_text("\n".join(rows) + "\n")
    assert main(["run", recipe, "--results", results]) == 2 and "began on other data" in capsys.readouterr().err
    data.write_text("\n".join(rows[:-1]) + "\n")
    assert main(["run", recipe, "--results", results]) == 0 and (run / "metrics.json").is_file()  # as it began


def test_a_finished_run_stands_only_on_the_generation_test_it_took(write_recipe, tmp_path, capsys):
    # the generation test's own file is not in the data fingerprint: an edited one left the finished runs
    # standing, and compare then dropped them from verified_success ("took another generation test")
    from prefopt.testing import write_feedback, write_test_prompts

    data = write_feedback(tmp_path / "constrained.jsonl", constraints=True)
    prompts = write_test_prompts(tmp_path / "test_prompts.jsonl", prompts=4)
    recipe = str(write_recipe("dpo", data={"path": str(data)}, train={"max_steps": 1},
                              eval={"verifier": "auto", "max_new_tokens": 2, "prompts": str(prompts)}))
    results = str(tmp_path / "r")
    assert main(["run", recipe, "--results", results, "--no-compare"]) == 0
    run = only_run(tmp_path / "r", "tiny_dpo")
    before = json.loads((run / "data_report.json").read_text())["generation_test_fingerprint"]
    assert main(["run", recipe, "--results", results, "--no-compare"]) == 0
    assert "already finished" in capsys.readouterr().out
    lines = prompts.read_text().splitlines()
    edited = json.loads(lines[0])
    edited["constraint"] = {"id": "lowercase", "kwargs": {}} if edited["constraint"]["id"] != "lowercase" \
        else {"id": "no_commas", "kwargs": {}}
    prompts.write_text("\n".join([json.dumps(edited)] + lines[1:]) + "\n")  # one prompt's constraint changed
    assert main(["run", recipe, "--results", results, "--no-compare"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"prefopt: error: {recipe}: eval.prompts: {run} finished with another generation test")
    assert len(err.splitlines()) == 1 and "--force" in err
    assert main(["run", recipe, "--results", results, "--no-compare", "--force"]) == 0
    assert json.loads((run / "data_report.json").read_text())["generation_test_fingerprint"] != before
    # a run from before the fingerprint was recorded is trusted, as it is on its data
    report = json.loads((run / "data_report.json").read_text())
    (run / "data_report.json").write_text(json.dumps({**report, "generation_test_fingerprint": None}))
    prompts.write_text("\n".join(lines) + "\n")
    assert main(["run", recipe, "--results", results, "--no-compare"]) == 0
    assert "already finished" in capsys.readouterr().out


def test_a_generation_prompt_is_seen_whatever_its_form():
    """The same question as text in the data and as a user message (other case, spacing) in eval.prompts is
    still a prompt the run trained on."""
    from types import SimpleNamespace

    import pandas as pd

    from prefopt.errors import UserError
    from prefopt.preflight import check_unseen

    recipe = SimpleNamespace(eval=SimpleNamespace(prompts="test.jsonl"), data=SimpleNamespace(path="d.jsonl"))
    prepared = SimpleNamespace(train=pd.DataFrame({"prompt": ["Write a  poem", "other"]}), validation_rows=None)
    fresh = pd.DataFrame({"prompt": [[{"role": "user", "content": "a new question"}]]})
    check_unseen(recipe, prepared, fresh)
    asked = pd.DataFrame({"prompt": [[{"role": "system", "content": "be brief"},
                                      {"role": "user", "content": " write a poem\n"}]]})
    with pytest.raises(UserError, match="1 of its 1 prompts are asked"):
        check_unseen(recipe, prepared, asked)


def test_held_out_prompts_longer_than_max_length_fail_before_anything_is_written(write_recipe, tmp_path, capsys,
                                                                                   tiny_model):
    """A held-out prompt that fills max_length would be scored as a completion of no tokens: refused, by `data`
    as by `run`, as a training prompt is."""
    from prefopt.data.io import load_rows
    from prefopt.preflight import prepare_data
    from prefopt.methods import get_method
    from prefopt.recipe import load_recipe

    recipe = write_recipe("kto", train={"max_length": 48})
    held = set(prepare_data(load_recipe(str(recipe), []), get_method("kto"))[0].eval_rows["prompt_key"])
    rows = load_rows(load_recipe(str(recipe), []).data.path)
    long = rows["prompt"].map(lambda p: [{"role": "user", "content": p[0]["content"] + " cat" * 60}])
    rows["prompt"] = rows["prompt"].where(~rows["prompt_key"].isin(held), long)
    data = tmp_path / "long_held.jsonl"
    rows.drop(columns="prompt_key").to_json(data, orient="records", lines=True)
    results = tmp_path / "r"
    assert main(["run", str(recipe), "--results", str(results), "--set", f"data.path={data}"]) == 2
    assert main(["data", str(recipe), "--set", f"data.path={data}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[0] == err[1], err
    assert ": train.max_length: " in err[0] and "test prompts are at least max_length=48" in err[0], err
    assert not results.exists()


def test_long_prompts_of_every_split_are_said_in_one_line_with_a_bound_that_suffices(write_recipe, tmp_path,
                                                                                     capsys):
    # the training split's prompts were reported alone, with their longest as the bound: raised to it, the
    # recipe met the test split's longer prompts next, and no message said which prompt was long
    from prefopt.data.io import load_rows
    from prefopt.preflight import prepare_data
    from prefopt.methods import get_method
    from prefopt.recipe import load_recipe

    recipe = write_recipe("kto", train={"max_length": 48})
    held = set(prepare_data(load_recipe(str(recipe), []), get_method("kto"))[0].eval_rows["prompt_key"])
    rows = load_rows(load_recipe(str(recipe), []).data.path)
    trained = rows.loc[~rows["prompt_key"].isin(held), "prompt_key"].iloc[0]
    cats = rows["prompt_key"].map(lambda k: 80 if k in held else 40 if k == trained else 0)
    rows["prompt"] = [[{"role": "user", "content": p[0]["content"] + " Cat" * n}] for p, n in zip(rows["prompt"], cats)]
    data = tmp_path / "long.jsonl"
    rows.drop(columns="prompt_key").to_json(data, orient="records", lines=True)
    assert main(["data", str(recipe), "--set", f"data.path={data}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "training, " in err[0] and " test prompts are at least" in err[0], err
    assert ": 'question " in err[0], err  # the longest prompt's opening, as written
    bound = int(re.search(r"raise train.max_length above (\d+)", err[0]).group(1))
    assert main(["data", str(recipe), "--set", f"data.path={data}", "--set", f"train.max_length={bound + 1}"]) == 0


def test_completions_cut_by_max_length_are_said_by_data_and_run_alike(write_recipe, tmp_path, capsys):
    """A prompt shorter than max_length passes the prompt check, but its completion is cut to what is left (one
    token, for a prompt one short), in training and scoring alike; nothing said so. Now one warning line, the
    same from `data` and `run`, also kept in data_report.json."""
    recipe, results = str(write_recipe("kto", train={"max_length": 24})), tmp_path / "r"
    assert main(["data", recipe]) == 0
    said = [l for l in capsys.readouterr().err.splitlines() if "max_length" in l]
    assert len(said) == 1 and re.fullmatch(
        r"prefopt: warning: \S+feedback\.jsonl: (\d+) of \d+ distinct rows are longer than train\.max_length=24 tokens "
        r"\(longest \d+\): their completions are cut to fit, in training and in scoring \(as few as [1-9]\d* of a "
        r"completion's \d+ tokens kept\); raise train\.max_length or shorten those rows", said[0]), said
    assert main(["run", recipe, "--results", str(results), "--set", "train.max_steps=1"]) == 0
    assert [l for l in capsys.readouterr().err.splitlines() if "max_length" in l] == said
    (report,) = results.glob("runs/tiny_kto/*/data_report.json")
    assert json.loads(report.read_text())["data_warnings"] == [said[0].removeprefix("prefopt: warning: ")]
    assert main(["data", recipe, "--set", "train.max_length=64"]) == 0  # the tiny rows fit whole in 64
    assert "max_length" not in capsys.readouterr().err


def test_data_checks_prompt_lengths_against_trls_default_max_length(write_recipe, tmp_path, capsys):
    """A recipe without train.max_length trains with the TRL config's default (1024): `data` checks against it
    as `run` does, rather than skipping the check."""
    recipe = write_recipe("kto")
    recipe.write_text("".join(l for l in recipe.read_text().splitlines(True) if "max_length" not in l))
    rows = [{"prompt": f"p{i} " + "cat " * (1100 if i < 10 else 1), "completion": c, "label": c == "a"}
            for i in range(20) for c in "ab"]
    data = tmp_path / "long.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["data", str(recipe), "--set", f"data.path={data}"]) == 2
    err = capsys.readouterr().err
    assert "train.max_length: " in err and "at least max_length=1024 tokens" in err, err


def test_an_interrupted_force_rerun_loses_nothing_finished(write_recipe, tmp_path, monkeypatch):
    """--force sets the finished run aside until the retraining finishes: stopped part-way, the finished
    run is still on disk (and a second --force keeps it, not the unfinished one); finished, it is removed."""
    import trl

    from prefopt import results as res

    recipe, results = str(write_recipe("kto")), tmp_path / "r"
    assert main(["run", recipe, "--results", str(results)]) == 0
    run = only_run(results, "tiny_kto")
    finished = (run / "metrics.json").read_text()
    train = trl.KTOTrainer.train

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(trl.KTOTrainer, "train", stopped)
    for _ in range(2):
        assert main(["run", recipe, "--results", str(results), "--force"]) == 130
        assert (res.replaced(run) / "metrics.json").read_text() == finished and not (run / "metrics.json").exists()
    monkeypatch.setattr(trl.KTOTrainer, "train", train)
    assert main(["run", recipe, "--results", str(results), "--force"]) == 0
    assert (run / "metrics.json").is_file() and not res.replaced(run).exists()


def test_kto_trains_and_is_scored_on_one_rated_completion_per_prompt(write_recipe, tmp_path, capsys):
    """KTO's own data, a thumbs up or down per prompt, was refused for want of held-out pairs. It trains; the
    pair metrics are NaN and metrics.json, the data report and the closing block say why; reward_auc is measured.
    A row given twice is trained on twice: run says so in one warning line, as `prefopt data` does."""
    from prefopt.testing import WORDS

    data = tmp_path / "thumbs.jsonl"
    lines = [json.dumps({
        "prompt": [{"role": "user", "content": f"question {i}: {WORDS[i % len(WORDS)]}"}],
        "completion": [{"role": "assistant", "content": " ".join(WORDS[i % 7:i % 7 + 4])}], "label": i % 4 != 3})
        for i in range(40)]
    data.write_text("\n".join(lines + [lines[5]]) + "\n")
    results = tmp_path / "results"
    assert main(["run", str(write_recipe("kto", data={"path": str(data)})), "--results", str(results)]) == 0
    out, err = capsys.readouterr()
    assert f"prefopt: warning: {data}: 1 row repeats an earlier one exactly (first: row 41 repeats row 6)" in err
    run = only_run(results, "tiny_kto")
    metrics = json.loads((run / "metrics.json").read_text())
    assert math.isnan(metrics["preference_accuracy"]) and math.isnan(metrics["reward_margin"])
    assert metrics["eval_pairs"] == 0 and 0 <= metrics["reward_auc"] <= 1 and metrics["kl"] > 0
    note = metrics["pair_metrics_note"]
    assert "no prompt there has both a desirable and an undesirable completion" in note
    report = json.loads((run / "data_report.json").read_text())
    assert report["pair_metrics_note"] == note and report["duplicate_rows"] == 1
    assert "over 0 held-out pairs (none to measure: pair_metrics_note in metrics.json says why)" in out
    summary = (results / "summary.md").read_text()
    assert note in summary and "not tested against the untrained model" in summary


def test_a_temporary_left_by_a_writer_killed_mid_write_goes_when_the_run_is_written_again(write_recipe, tmp_path,
                                                                                          monkeypatch):
    """write_atomic removes its temporary on any exception, but SIGKILL skips that: the run folder kept a
    `.eval_items.csv.<random>.tmp` through every later attempt (and into a commit of results/). The process
    holding the run's lock removes it; a file of the user's there stays."""
    import trl

    recipe, results = str(write_recipe("kto")), tmp_path / "r"

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(trl.KTOTrainer, "train", stopped)
    assert main(["run", recipe, "--results", str(results)]) == 130
    monkeypatch.undo()
    run = only_run(results, "tiny_kto")
    (run / ".eval_items.csv.k3j_x9a0.tmp").write_text("row_id,pro")  # as a SIGKILL mid-write leaves it
    (run / "notes.txt").write_text("mine")
    assert main(["run", recipe, "--results", str(results)]) == 0
    assert not list(run.glob("*.tmp")) and (run / "notes.txt").read_text() == "mine"


def test_a_retraining_stopped_before_it_dropped_the_old_copy_keeps_the_new_run(write_recipe, tmp_path, monkeypatch):
    """A --force retraining that wrote its metrics.json and was stopped before removing the copy it set aside
    left both finished: a later --force removed the new run and kept the old one, and a plain run left the
    old copy in cache/replaced for good. The new one is what stands now, and the old copy goes."""
    from prefopt import results as res

    recipe, results = str(write_recipe("kto")), tmp_path / "r"
    assert main(["run", recipe, "--results", str(results)]) == 0
    run = only_run(results, "tiny_kto")
    old = res.replaced(run)
    old.parent.mkdir(parents=True)
    shutil.copytree(run, old)  # as if a --force had set it aside and its retraining finished, killed before the drop
    (old / "metrics.json").write_text('{"old": true}\n')
    new = (run / "metrics.json").read_text()
    res.set_aside(run)  # a second --force
    assert (old / "metrics.json").read_text() == new and not run.exists()
    shutil.copytree(old, run)
    (old / "metrics.json").write_text('{"old": true}\n')
    assert main(["run", recipe, "--results", str(results)]) == 0  # a plain run: finished, so skipped
    assert not old.exists() and (run / "metrics.json").read_text() == new

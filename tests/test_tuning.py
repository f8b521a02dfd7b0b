"""`prefopt tune`: the same trials for every recipe, scored on the validation split only; the best wins."""

import json

import pandas as pd
import pytest
import yaml

from prefopt import search
from prefopt.cli import main
from prefopt.errors import UserError
from prefopt.methods import methods
from prefopt.errors import UserErrors
from prefopt.recipe import load_recipe
from prefopt.tuning import best_trial, trials_table


def test_every_method_has_a_valid_default_space_and_draws_are_seeded():
    from prefopt.config_fields import field_names

    for name, spec in methods().items():
        assert "learning_rate" in spec.search, name
        search.check(spec.search, field_names(spec.config), file="x", fixed=spec.fixed)
        a = search.settings(spec.search, 5, seed=3)
        assert a == search.settings(spec.search, 5, seed=3) != search.settings(spec.search, 5, seed=4)
        assert search.settings(spec.search, 3, seed=3) == a[:3]  # trial i does not depend on the trial count
        lr = [s["learning_rate"] for s in a]
        assert all(spec.search["learning_rate"]["low"] <= x <= spec.search["learning_rate"]["high"] for x in lr)
    simpo = search.settings(methods()["simpo"].search, 20, seed=0)
    assert all(0.1 * s["beta"] * 0.999 <= s["simpo_gamma"] <= 1.0 * s["beta"] * 1.001 for s in simpo)


def test_grid_and_value_lists():
    space = {"learning_rate": {"low": 1e-4, "high": 1e-2, "log": True}, "beta": {"values": [0.1, 0.5]}}
    grid = search.settings(space, 6, seed=0, sampler="grid")
    assert grid == [{"learning_rate": lr, "beta": b} for lr in (1e-4, 1e-3, 1e-2) for b in (0.1, 0.5)]


def test_every_sampler_gives_exactly_the_trials_asked_for_and_no_repeats():
    for name, spec in methods().items():  # the fairness promise: the same count for every method
        for trials in (1, 5, 8, 9):
            grid = search.settings(spec.search, trials, seed=0, sampler="grid")
            assert len(grid) == trials and len({tuple(sorted(g.items())) for g in grid}) == trials, (name, trials)
    small = {"beta": {"values": [0.1, 0.5]}}  # two distinct settings exist: a repeat would be the same run
    assert search.settings(small, 8, seed=0) in ([{"beta": 0.1}, {"beta": 0.5}], [{"beta": 0.5}, {"beta": 0.1}])
    assert search.settings(small, 8, seed=0, sampler="grid") == [{"beta": 0.1}, {"beta": 0.5}]


def test_a_grid_gives_every_count_its_space_holds():
    # a whole-number range stopped at its width while the others kept trials**(1/d) points: 12 settings for 13
    # trials over 2..4 beside a rate (refused by tune though the space holds any count), 6 for 7 over 2..9 x 0..1
    narrow = {"max_length": {"low": 2, "high": 4}, "learning_rate": {"low": 1e-5, "high": 1e-3, "log": True}}
    steps = {"max_steps": {"low": 2, "high": 9}, "warmup_steps": {"low": 0, "high": 1}}  # 16 settings in all
    for space, counts in ((narrow, range(1, 65)), (steps, range(1, 17))):
        for trials in counts:
            grid = search.settings(space, trials, seed=0, sampler="grid")
            assert len(grid) == len({tuple(sorted(g.items())) for g in grid}) == trials, (space, trials)
    # a count the first grid held keeps its settings
    assert search.settings(narrow, 9, seed=0, sampler="grid") == [
        {"max_length": n, "learning_rate": lr} for n in (2, 3, 4) for lr in (1e-5, 1e-4, 1e-3)]


def test_more_trials_than_the_space_holds_costs_no_more_than_the_space(monkeypatch):
    # --trials 20000 over two listed values drew 2 million times (42 s) before the refusal; a grid over a
    # whole-number range asked for 10**12 trials built 10**12 points (a MemoryError traceback)
    import math

    import numpy as np

    two = {"beta": {"values": [0.1, 0.5]}}
    steps = {"max_steps": {"low": 2, "high": 9}, **two}
    assert search.size(two) == 2 and search.size(steps) == 16
    assert search.size({"beta": {"low": 0.1, "high": 0.5}}) == math.inf
    draws, real = [], np.random.default_rng

    def counted(seed):
        draws.append(seed)
        assert len(draws) <= 100 * 16, "drew on past what the space holds"
        return real(seed)

    monkeypatch.setattr(np.random, "default_rng", counted)
    assert sorted(s["beta"] for s in search.settings(two, 10**12, seed=0)) == [0.1, 0.5]
    assert len(search.settings(steps, 10**12, seed=0)) == 16
    grid = search.settings(steps, 10**12, seed=0, sampler="grid")
    assert grid == [{"max_steps": n, "beta": b} for n in range(2, 10) for b in (0.1, 0.5)]
    uneven = {"max_steps": {"low": 2, "high": 9}, "warmup_steps": {"low": 0, "high": 1}}  # the full grid, 16
    assert len(search.settings(uneven, 10**12, seed=0, sampler="grid")) == 16


def test_tune_refuses_what_would_be_unfair_or_leak(tmp_path):
    from prefopt.tuning import trial_recipes, tune_recipes

    def recipe(name, **extra):
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump({"name": name, "method": "dpo", **extra}))
        return load_recipe(str(path))

    small = recipe("small", tune={"space": {"beta": {"values": [0.1, 0.5]}, "learning_rate": None}})
    with pytest.raises(UserError, match="only 2 distinct settings for 8 trials") as e:
        trial_recipes(small, 8)
    assert e.value.field == "tune.space"
    with pytest.raises(UserError) as e:
        trial_recipes(recipe("folded", data={"path": "data/feedback.jsonl", "folds": 5}), 4)
    assert e.value.field == "data.folds"  # cross-fitting would turn the validation prompts into test prompts
    with pytest.raises(UserError) as e:
        tune_recipes([recipe("a"), recipe("b", tune={"trials": 4})], results=str(tmp_path / "r"))
    assert e.value.field == "tune.trials" and "same number of trials" in e.value.message
    with pytest.raises(UserError) as e:
        tune_recipes([recipe("a"), recipe("a")], results=str(tmp_path / "r"), trials=2)
    assert e.value.field == "name"
    with pytest.raises(UserError) as e:
        recipe("seedless", tune={"seed": -1})
    assert e.value.field == "tune.seed"
    with pytest.raises(UserError) as e:  # a tuned recipe's choice saw its validation prompts: no cross-fitting
        recipe("done_tuned", data={"path": "data/feedback.jsonl", "folds": 5}, train={"beta": 0.1},
               tuned={"recipe": "done", "trials": 8, "trial": 3, "sampler": "random", "metric": "validation reward_auc",
                      "value": 0.7, "chosen": {"beta": 0.1}})
    assert e.value.field == "data.folds"


@pytest.mark.parametrize("space, field, needle", [
    ({"lerning_rate": {"low": 1e-5, "high": 1e-3}}, "tune.space.lerning_rate", "did you mean 'learning_rate'"),
    ({"beta": {"low": 0.5, "high": 0.1}}, "tune.space.beta", "low < high"),
    ({"beta": {"low": 0.0, "high": 0.1, "log": True}}, "tune.space.beta", "low > 0"),
    ({"beta": {"min": 0.1, "max": 1}}, "tune.space.beta", "unknown key"),
    ({"beta": {"per": "gamma", "low": 0.1, "high": 1}}, "tune.space.beta", "per"),
    # what the run sets itself: every trial would train the same
    ({"seed": {"values": [1, 2]}}, "tune.space.seed", "set by the run itself"),
    # a trial's setting is one value: a mapping in a list crashed the draw with a traceback
    ({"beta": {"values": [{"a": 1}, 0.2]}}, "tune.space.beta", "numbers, text"),
    ({"beta": {"low": 0.01, "high": 1.0, "log": "false"}}, "tune.space.beta", "log must be true or false"),
    # a multiple of listed values: they may be text, and the multiple crashed with a traceback
    ({"beta": {"values": [0.1, "x"]}, "learning_rate": {"per": "beta", "low": 1e-4, "high": 1e-3}},
     "tune.space.learning_rate", "searched key of numbers"),
    # values every trial with them would fail on, found before any trial, whatever tune.seed draws
    ({"learning_rate": {"low": -1e-4, "high": 1e-3}}, "tune.space.learning_rate", "must be above 0"),
    ({"max_steps": {"values": [4, 2.5]}}, "tune.space.max_steps", "reaches 2.5, which a recipe may not set: "
     "train.max_steps: expected int"),
    ({"max_steps": {"low": 2.0, "high": 8.0}}, "tune.space.max_steps", "expected int"),  # draws would be 2.7, ...
    # per: naming no key (a list or mapping) was looked up in the space and crashed with a TypeError
    ({"beta": {"per": ["learning_rate"], "low": 1, "high": 2}}, "tune.space.beta", "must name another searched key"),
    ({"beta": {"per": {"a": 1}, "low": 1, "high": 2}}, "tune.space.beta", "must name another searched key"),
])
def test_bad_spaces_name_the_key(space, field, needle, tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({"name": "x", "method": "dpo", "tune": {"space": space}}))
    with pytest.raises(UserError) as e:
        load_recipe(str(path))
    errors = e.value.errors if isinstance(e.value, UserErrors) else [e.value]
    assert any(err.field == field and needle in err.message for err in errors), [str(x) for x in errors]


def test_best_trial_ignores_nan_and_prefers_the_earliest():
    assert best_trial([0.6, float("nan"), 0.7, 0.7], "reward_auc") == 2
    assert best_trial([2.0, 1.5, 1.5], "desirable_nll") == 1
    assert best_trial([float("nan")], "reward_auc") is None


def test_tune_picks_the_best_validation_trial_and_never_scores_the_test_split(write_recipe, tmp_path, monkeypatch,
                                                                              capsys):
    import prefopt.metrics as metrics
    from prefopt.data import prepare
    from prefopt.data.io import load_rows

    recipe = write_recipe("dpo", data={"validation_fraction": 0.25}, eval={"verifier": "auto"},
                          tune={"trials": 3, "sampler": "grid",
                                                                   "space": {"beta": {"values": [0.05, 0.2, 0.8]}}})
    raw = yaml.safe_load(recipe.read_text())
    rows = load_rows(raw["data"]["path"])
    test_keys = set(prepare(rows, file="f", method="dpo", form="paired", strategy="natural", eval_fraction=0.25,
                            validation_fraction=0.25, seed=0, split_seed=42).eval_rows["prompt"].map(json.dumps))
    scored = []
    real = metrics.score_rows

    def watching(model, tok, rows, **kw):
        scored.extend(json.dumps(r["prompt"]) for r in rows)
        return real(model, tok, rows, **kw)

    monkeypatch.setattr(metrics, "score_rows", watching)
    monkeypatch.setattr(metrics, "verified_success", lambda *a, **k: pytest.fail("a trial took the generation test"))
    results = tmp_path / "res"
    assert main(["tune", str(recipe), "--results", str(results), "--engine", "local"]) == 0
    assert scored and not set(scored) & test_keys  # only validation rows were ever scored

    trials = pd.read_csv(results / "tuning" / "tiny_dpo" / "trials.csv")
    assert trials["beta"].tolist() == [0.05, 0.2, 0.8] and len(trials) == 3
    best = int(trials["validation_reward_auc"].idxmax())
    tuned = yaml.safe_load((results / "tuned" / "tiny_dpo.yaml").read_text())
    assert tuned["name"] == "tiny_dpo_tuned" and tuned["train"]["beta"] == trials["beta"][best]
    assert tuned["tuned"]["trial"] == best and tuned["tuned"]["trials"] == 3
    assert (results / "tuning" / "tiny_dpo" / "tuning.png").stat().st_size > 1000
    assert not (results / "runs").exists()  # trials stay out of the test-split results

    # resumed: the same command finds every trial finished and reruns none
    monkeypatch.setattr("trl.DPOTrainer.train", lambda *a, **k: pytest.fail("a finished trial ran again"))
    assert main(["tune", str(recipe), "--results", str(results), "--engine", "local"]) == 0

    # the tuned recipe runs on the test split, and the summary says it was tuned and how
    monkeypatch.undo()
    tuned_path = tmp_path / "tuned.yaml"
    tuned_path.write_text((results / "tuned" / "tiny_dpo.yaml").read_text())
    assert main(["run", str(tuned_path), "--results", str(results)]) == 0
    summary = (results / "summary.md").read_text()
    assert "**tiny_dpo_tuned** is tuned: 3 grid trials of tiny_dpo" in summary

    # the tuned recipe names the test split its trials held out, and runs on no other: there, prompts the
    # settings were chosen on could be test prompts
    (run,) = (results / "runs" / "tiny_dpo_tuned").iterdir()
    test_split = json.loads((run / "data_report.json").read_text())["eval_fingerprint"]
    assert tuned["tuned"]["test_split"] == test_split
    trial = next((results / "tuning" / "tiny_dpo" / "runs").glob("*/*/data_report.json"))
    assert json.loads(trial.read_text())["test_fingerprint"] == test_split
    capsys.readouterr()
    for command in (["data"], ["run", "--results", str(tmp_path / "other")]):
        assert main([command[0], str(tuned_path), "--set", "data.split_seed=7", *command[1:]]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and f"{tuned_path}: data: its test split" in err and "tune again" in err, err
    assert not (tmp_path / "other" / "runs").exists()
    # a record, not a setting: tuned recipes written before it existed keep their runs
    old = yaml.safe_load(tuned_path.read_text())
    del old["tuned"]["test_split"]
    (tmp_path / "old.yaml").write_text(yaml.safe_dump(old))
    assert load_recipe(str(tmp_path / "old.yaml")).fingerprint() == load_recipe(str(tuned_path)).fingerprint()
    assert main(["data", str(tmp_path / "old.yaml"), "--set", "data.split_seed=7"]) == 0  # nothing to check against


def test_trials_table_shows_the_chosen_metric_and_reward_auc_once():
    chosen = [{"learning_rate": 1e-4}, {"learning_rate": 3e-4}]
    scores = [{"reward_auc": 0.6, "kl": 0.1, "train_seconds": 5}, {"reward_auc": 0.7, "kl": 0.2, "train_seconds": 6}]
    by_kl = trials_table(chosen, scores, "kl", ["a", "b"])
    assert list(by_kl.columns) == ["trial", "learning_rate", "validation_kl", "validation_reward_auc",
                                   "train_seconds", "run_id"]
    assert by_kl["validation_kl"].tolist() == [0.1, 0.2] and by_kl["validation_reward_auc"].tolist() == [0.6, 0.7]
    by_auc = trials_table(chosen, scores, "reward_auc", ["a", "b"])
    assert list(by_auc.columns) == ["trial", "learning_rate", "validation_reward_auc", "train_seconds", "run_id"]


def test_a_space_cannot_search_what_the_run_sets_or_the_recipe_forbids(tmp_path):
    from prefopt.tuning import trial_recipes

    path = tmp_path / "k.yaml"
    base = {"name": "k", "method": "kto", "data": {"path": "data/feedback.jsonl", "strategy": "natural"}}
    path.write_text(yaml.safe_dump({**base, "tune": {"space": {"desirable_weight": {"values": [1.0, 2.0]}}}}))
    with pytest.raises(UserError) as e:  # KTO's weights come from data.weights: the trials would all be alike
        load_recipe(str(path))
    assert "tune.space.desirable_weight" in str(e.value) and "data.weights" in str(e.value)
    path.write_text(yaml.safe_dump({**base, "tune": {"space": {"per_device_train_batch_size": {"values": [1, 4]}}}}))
    with pytest.raises(UserError) as e:  # a trial with a KTO batch of 1: refused with the recipe, before any trial
        trial_recipes(load_recipe(str(path)), 2)
    assert e.value.field == "tune.space.per_device_train_batch_size" and "must be at least 2" in e.value.message


def test_a_tuning_metric_the_validation_split_cannot_compute_fails_before_any_trial(tmp_path, monkeypatch):
    # no pairs among the validation prompts: every trial's reward_margin would be NaN, found only after tuning
    from types import SimpleNamespace

    import pandas as pd

    from prefopt import preflight
    from prefopt.tuning import trial_recipes

    rows = pd.DataFrame({"prompt": ["a", "b"], "completion": ["x", "y"], "label": [True, False]})
    monkeypatch.setattr(preflight, "prepare_data", lambda recipe, spec, world_size=1: (
        SimpleNamespace(validation_rows=rows, validation_pairs=rows.iloc[:0],
                        report={"eval_fingerprint": "0" * 64}), 1))
    path = tmp_path / "d.yaml"
    path.write_text(yaml.safe_dump({"name": "d", "method": "dpo", "data": {"path": "data/feedback.jsonl"},
                                    "tune": {"metric": "reward_margin"}}))
    with pytest.raises(UserError) as e:
        trial_recipes(load_recipe(str(path)), 2)
    assert e.value.field == "tune.metric" and "reward_margin needs pairs" in e.value.message
    path.write_text(yaml.safe_dump({"name": "d", "method": "dpo", "data": {"path": "data/feedback.jsonl"}}))
    assert len(trial_recipes(load_recipe(str(path)), 2)[1]) == 2  # reward_auc: both labels are there


def test_a_set_on_a_searched_key_is_refused_and_the_way_to_hold_it_fixed_named(tmp_path):
    # the recipe file's train.beta is the untuned value the search replaces; a --set given to tune asks for
    # it held fixed, and was replaced in every trial without a word
    from prefopt.tuning import check_sets_not_searched

    path = tmp_path / "d.yaml"
    path.write_text(yaml.safe_dump({"name": "d", "method": "dpo", "train": {"beta": 0.1}}))
    check_sets_not_searched(load_recipe(str(path)), [])  # the recipe's own value: searched over, as documented
    sets = ["train.beta=0.3"]
    with pytest.raises(UserError) as e:
        check_sets_not_searched(load_recipe(str(path), sets), sets)
    assert (e.value.file, e.value.field) == ("--set", "train.beta") and "--set tune.space.beta=null" in e.value.message
    sets += ["tune.space.beta=null", "train.max_steps=2"]
    check_sets_not_searched(load_recipe(str(path), sets), sets)


def test_tune_force_trains_finished_trials_again(write_recipe, tmp_path, monkeypatch):
    # a tuning on changed data was told to use --force, which `tune` did not have
    import prefopt.batch as batch

    seen = {}

    def run_jobs(jobs, **kwargs):
        seen.update(kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(batch, "run_jobs", run_jobs)
    recipe = str(write_recipe("dpo", data={"validation_fraction": 0.25}, tune={"trials": 2}))
    assert main(["tune", recipe, "--results", str(tmp_path / "r"), "--force"]) == 130
    assert seen["force"] is True
    assert main(["tune", recipe, "--results", str(tmp_path / "r")]) == 130 and seen["force"] is False


def test_a_tuned_folder_that_cannot_take_the_tuned_recipe_is_said_before_any_trial(write_recipe, tmp_path, capsys,
                                                                                   monkeypatch):
    import prefopt.batch as batch

    monkeypatch.setattr(batch, "run_jobs", lambda *a, **k: pytest.fail("a trial ran"))
    results = tmp_path / "r"
    results.mkdir()
    (results / "tuned").write_text("not a folder")
    recipe = str(write_recipe("dpo", data={"validation_fraction": 0.25}, tune={"trials": 2}))
    assert main(["tune", recipe, "--results", str(results)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{results / 'tuned'}: --results: is a file" in err[0], err
    assert sorted(p.name for p in results.iterdir()) == ["tuned"]  # no tuning/ folder left behind


def test_the_tuned_recipe_header_names_the_results_folder_it_was_written_under(tmp_path):
    """The header's 'trials in ...' and its run command said results/ whatever --results was: with
    --results /tmp/x the command it printed ran a file that did not exist."""
    from prefopt.tuning import tuned_yaml

    (tmp_path / "r.yaml").write_text("name: r\nmethod: dpo\nmodel: {name: m}\ndata: {path: d.jsonl}\n")
    recipe = load_recipe(str(tmp_path / "r.yaml"))
    elsewhere = tuned_yaml(recipe, {"beta": 0.2}, trial=1, trials=4, value=0.7, results=tmp_path / "res")
    head = [line for line in elsewhere.splitlines() if line.startswith("#")]
    assert f"trials in {tmp_path / 'res' / 'tuning' / 'r'}/." in head[0]
    assert f"python -m prefopt run {tmp_path / 'res' / 'tuned' / 'r'}.yaml --seeds" in head[2]
    default = tuned_yaml(recipe, {"beta": 0.2}, trial=1, trials=4, value=0.7)  # the shipped files' header
    assert "trials in results/tuning/r/." in default and "prefopt run results/tuned/r.yaml" in default


@pytest.mark.parametrize("space, train, field, needle", [
    # values TRL's config refuses only as it is built, which was when that trial's turn came, after the
    # trials before it had trained: found now by building the config at every combination of the limits
    ({"warmup_steps": {"low": -2, "high": 4}}, {}, "tune.space.warmup_steps",
     "its range (-2 to 4) reaches -2, which DPOConfig refuses: Got warmup_steps = -2, Expected value warmup_steps >= 0"),
    ({"lr_scheduler_type": {"values": ["linear", "bogus"]}}, {}, "tune.space.lr_scheduler_type",
     "its range (values ['linear', 'bogus']) reaches 'bogus', which DPOConfig refuses: bogus is not a valid"),
    # the recipe's own unsearched setting: said as the run says it, not blamed on a searched key
    ({"beta": {"low": 0.05, "high": 0.5}}, {"optim": "bogus"}, "train", "DPOConfig rejected the settings: bogus"),
])
def test_a_space_reaching_a_value_the_trl_config_refuses_fails_before_any_trial(space, train, field, needle,
                                                                                write_recipe, tmp_path, capsys,
                                                                                monkeypatch):
    import prefopt.batch as batch

    monkeypatch.setattr(batch, "run_jobs", lambda *a, **k: pytest.fail("a trial ran"))
    recipe = write_recipe("dpo", data={"validation_fraction": 0.25}, train={"max_steps": 2, **train},
                          tune={"trials": 2, "space": {"learning_rate": None, "beta": None, **space}})
    results = tmp_path / "r"
    assert main(["tune", str(recipe), "--results", str(results), "--engine", "local"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"prefopt: error: {recipe}: {field}: {needle}"), err
    assert not results.exists()


def test_corners_combine_every_limit_and_resolve_multiples():
    corners = search.corners(methods()["simpo"].search)
    assert len(corners) == 8  # learning rate x beta x gamma's factor, each at both ends
    assert {(c["beta"], c["simpo_gamma"]) for c in corners} == {(1.0, 0.1), (1.0, 1.0), (10.0, 1.0), (10.0, 10.0)}


@pytest.mark.parametrize("args, needle", [
    (["--engine", "bogus"], "--engine: invalid choice: 'bogus'"),
    (["--trials", "x"], "--trials: invalid int value: 'x'"),
    (["--max-concurrent", "1.5"], "--max-concurrent: invalid int value: '1.5'"),
    (["--max-concurrent"], "--max-concurrent: expected one argument"),
    # refused only by the engine before, after every trial's TRL config was built (torch imported, 9 s)
    (["--max-concurrent", "0"], "--max-concurrent: 0: must be at least 1"),
    (["--max-concurrent", "-1"], "--max-concurrent: -1: must be at least 1"),
])
def test_a_bad_option_of_tune_is_one_line(args, needle, tmp_path, capsys):
    # argparse printed its five-line usage above the error: the one bad-input format is one line per problem
    with pytest.raises(SystemExit) as e:
        main(["tune", str(tmp_path / "r.yaml"), *args])
    err = capsys.readouterr().err.splitlines()
    assert e.value.code == 2 and len(err) == 1 and err[0].startswith(f"prefopt: error: {needle}"), err
    assert err[0].endswith("(see prefopt tune --help)")



def finish_trials(jobs) -> list:
    """Stands in for batch.run_jobs: each trial finished, its validation reward_auc rising with its beta."""
    from prefopt import results as res

    runs = []
    for job, where in jobs:
        runs.append(res.run_dir(where, job.name, job.seed, job.fingerprint(), job.data.fold))
        runs[-1].mkdir(parents=True)
        (runs[-1] / "metrics.json").write_text(json.dumps({"reward_auc": 0.5 + job.train["beta"] / 10,
                                                           "train_seconds": 1.0}))
    return runs


@pytest.mark.parametrize("failure, status", [(UserError("b.yaml", "train.max_length", "too short"), 2),
                                             (KeyboardInterrupt(), 130)], ids=["fails", "interrupted"])
def test_one_recipe_s_failed_tuning_keeps_the_finished_recipe_s_outputs(failure, status, write_recipe, tmp_path,
                                                                        capsys, monkeypatch):
    """`prefopt tune a.yaml b.yaml` where b's trial fails (or the command is stopped) after a's trials all
    finished: a's trials.csv, plot and tuned recipe were not written, only the error said; now they are, the
    written recipe is named on stderr, and the failure is still said with its exit status."""
    import prefopt.batch as batch

    def run_jobs(jobs, **kwargs):
        finish_trials([(job, where) for job, where in jobs if job.name == "a"])  # a's trials finish; b's never do
        raise failure

    monkeypatch.setattr(batch, "run_jobs", run_jobs)
    a, b = (str(write_recipe("dpo", name=n, data={"validation_fraction": 0.25}, tune={"trials": 2})) for n in "ab")
    results = tmp_path / "r"
    assert main(["tune", a, b, "--results", str(results)]) == status
    err = capsys.readouterr().err
    assert f"prefopt: tuned recipe {results / 'tuned' / 'a.yaml'}" in err, err
    assert err.strip().splitlines()[-1].startswith("prefopt: error: b.yaml" if status == 2 else "prefopt: interrupted")
    tuning = results / "tuning"
    assert len(pd.read_csv(tuning / "a" / "trials.csv")) == 2 and (tuning / "a" / "tuning.png").is_file()
    assert sorted(p.name for p in (results / "tuned").iterdir()) == ["a.yaml"]
    assert not (tuning / "b" / "trials.csv").exists()


def test_a_bad_engine_option_is_one_line_and_writes_nothing_though_trials_finished(write_recipe, tmp_path, capsys,
                                                                                    monkeypatch):
    """`prefopt tune a.yaml --engine local --max-concurrent 2` after a's trials all finished: the option is
    refused before any trial, yet the tuning outputs were written again and named on stderr, 'the rest did not,
    below', before the error: bad input is one line and writes nothing."""
    import prefopt.batch as batch

    real = batch.run_jobs

    def finish(jobs, **kwargs):
        return finish_trials(jobs)

    monkeypatch.setattr(batch, "run_jobs", finish)
    a = str(write_recipe("dpo", name="a", data={"validation_fraction": 0.25}, tune={"trials": 2}))
    results = tmp_path / "r"
    assert main(["tune", a, "--results", str(results)]) == 0
    capsys.readouterr()
    tuned = results / "tuned" / "a.yaml"
    tuned.unlink()
    monkeypatch.setattr(batch, "run_jobs", real)
    assert main(["tune", a, "--results", str(results), "--engine", "local", "--max-concurrent", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("prefopt: error: --max-concurrent"), err
    assert not tuned.exists()


def test_the_tuned_recipe_is_the_file_the_trials_trained_not_one_edited_during_them(write_recipe, tmp_path,
                                                                                     monkeypatch):
    """The tuned recipe was built from the recipe file read again after the last trial: an edit made while
    the trials trained (hours on a CPU) went into it, credited with settings chosen on the recipe before it."""
    import prefopt.batch as batch

    recipe = write_recipe("dpo", name="a", data={"validation_fraction": 0.25}, tune={"trials": 2})

    def finish(jobs, **kwargs):
        runs = finish_trials(jobs)
        edited = yaml.safe_load(recipe.read_text())  # the user's next experiment, begun meanwhile
        edited["train"]["max_steps"] = 300
        recipe.write_text(yaml.safe_dump(edited))
        return runs

    monkeypatch.setattr(batch, "run_jobs", finish)
    results = tmp_path / "r"
    assert main(["tune", str(recipe), "--results", str(results), "--set", "train.max_length=48"]) == 0
    tuned = yaml.safe_load((results / "tuned" / "a.yaml").read_text())
    assert tuned["train"]["max_steps"] == 3 and tuned["train"]["max_length"] == 48  # as trained, --set kept


def test_a_tuned_recipe_is_scored_on_the_test_split_never_on_the_validation_prompts_it_was_chosen_on(
        write_recipe, tmp_path, monkeypatch, capsys):
    """A recipe with eval.split: validation was tuned into one with eval.split: validation: `prefopt run` then
    scored the tuned settings on the prompts they were chosen on (the winning trial's own number, 0.570 for
    0.570) and the summary, which keeps validation-split runs out, never showed them."""
    import prefopt.batch as batch

    def finish(jobs, **kwargs):
        return finish_trials(jobs)

    monkeypatch.setattr(batch, "run_jobs", finish)
    recipe = write_recipe("dpo", name="a", data={"validation_fraction": 0.25}, tune={"trials": 2},
                          eval={"batch_size": 8, "split": "validation"})
    results = tmp_path / "r"
    assert main(["tune", str(recipe), "--results", str(results)]) == 0
    tuned = results / "tuned" / "a.yaml"
    assert load_recipe(str(tuned)).eval.split == "test"
    edited = yaml.safe_load(tuned.read_text())
    edited["eval"]["split"] = "validation"
    (tmp_path / "edited.yaml").write_text(yaml.safe_dump(edited))
    capsys.readouterr()
    assert main(["data", str(tmp_path / "edited.yaml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "edited.yaml: eval.split: this recipe's settings were chosen" in err[0], err
    assert "Remove eval.split" in err[0]


def test_the_tuned_recipe_records_the_seed_that_drew_its_trials(write_recipe, tmp_path, monkeypatch):
    """tuned: recorded the metric, trial count, sampler and winning value, but not tune.seed, which drew the
    trials' settings; a recipe leaving it at its default held it nowhere. A record: runs keep their identity."""
    import prefopt.batch as batch

    def finish(jobs, **kwargs):
        return finish_trials(jobs)

    monkeypatch.setattr(batch, "run_jobs", finish)
    recipe = str(write_recipe("dpo", name="a", data={"validation_fraction": 0.25}, tune={"trials": 2}))
    results = tmp_path / "r"
    for sets, seed in (([], 0), (["--set", "tune.seed=5"], 5)):
        assert main(["tune", recipe, "--results", str(results), *sets]) == 0
        tuned = yaml.safe_load((results / "tuned" / "a.yaml").read_text())["tuned"]
        assert tuned["seed"] == seed and tuned["metric"] == "validation reward_auc" and tuned["trials"] == 2
    written = results / "tuned" / "a.yaml"
    old = yaml.safe_load(written.read_text())
    del old["tuned"]["seed"]  # as tuned recipes written before it (results/tuned/*.yaml)
    (tmp_path / "old.yaml").write_text(yaml.safe_dump(old))
    assert load_recipe(str(tmp_path / "old.yaml")).fingerprint() == load_recipe(str(written)).fingerprint()

"""Every shipped recipe opens with what it is for and the command that runs it, and validates fully:
structure, registry names, and every train.* key against its method's TRL config."""

from pathlib import Path

import pytest

from prefopt.methods import get_method
from prefopt.recipe import load_recipe
from prefopt.recipe_checks import check_train_fields

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))
# what scripts/crossfit.sh adds to every shipped recipe for the committed cross-fitted runs
CROSS_FIT = ["data.folds=5", "data.validation_fraction=0", "eval.verifier=null"]


def test_crossfit_script_uses_the_settings_the_results_are_checked_against():
    script = (ROOT / "scripts" / "crossfit.sh").read_text()
    assert all(f"--set {s}" in script or (s == "data.folds=5" and "--folds 5" in script) for s in CROSS_FIT)


def test_the_five_default_recipes_ship():
    assert {p.stem for p in RECIPES} >= {"kto_balanced", "kto_mixed", "kto_natural", "dpo", "orpo"}


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_header_and_validation(path):
    text = path.read_text()
    header = [l for l in text.splitlines() if l.startswith("#")]
    assert header and text.startswith("# "), "a recipe opens with a comment saying what it is for"
    assert f"python -m prefopt run recipes/{path.name}" in text, "and the command that runs it"
    assert "--set" in text, "and how to override it"
    recipe = load_recipe(str(path))
    assert recipe.name == path.stem
    check_train_fields(recipe, get_method(recipe.method).config_class())


def test_committed_results_come_from_the_shipped_recipes():
    """results/comparison.csv is what the README quotes: every run in it must be a shipped recipe as it
    stands now (its run id carries the resolved recipe's fingerprint), and every shipped recipe has runs.
    Changing a recipe's settings without rerunning the results fails here."""
    import pandas as pd

    table = pd.read_csv(ROOT / "results" / "comparison.csv")
    recipes = {p.stem: load_recipe(str(p)) for p in RECIPES}
    assert set(table.recipe) >= set(recipes)
    # besides them only the tuned line-up (scripts/tune_all.sh): results/tuned/<name>.yaml, named <name>_tuned
    recipes |= {r.name: r for r in map(load_recipe, map(str, sorted((ROOT / "results" / "tuned").glob("*.yaml"))))}
    assert set(table.recipe) <= set(recipes), "a run in comparison.csv comes from no shipped or tuned recipe"
    crossfit = {p.stem: load_recipe(str(p), CROSS_FIT) for p in RECIPES}
    for row in table.itertuples():
        fold = getattr(row, "fold", float("nan"))
        if fold == fold:  # a cross-fitted run: the shipped recipe with scripts/crossfit.sh's settings
            r = crossfit[row.recipe].for_seed(int(row.seed)).for_fold(int(fold))
            want = f"seed{row.seed}-fold{int(fold)}-{r.fingerprint()}"
        else:
            want = f"seed{row.seed}-{recipes[row.recipe].for_seed(int(row.seed)).fingerprint()}"
        assert row.run_id == want, f"{row.recipe} seed {row.seed}: results are from another version of the recipe"


def _comment_block(text: str, key: str) -> str:
    """The comment on a recipe's `key:` line and on the comment-only lines that continue it."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split("#")[0].strip() == f"{key}:")
    block = [lines[start].partition("#")[2]]
    for line in lines[start + 1:]:
        if not line.strip().startswith("#") or not line.startswith(" "):
            break
        block.append(line.strip().lstrip("#"))
    return " ".join(" ".join(block).split())


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_train_comment_names_the_config_and_what_a_recipe_may_not_set(path):
    """`train: # any field of trl.KTOConfig` was said of a section that refuses seed and output_dir (the run
    sets them), KTO's per-label weights (data.weights) and its train_sampling_strategy (fixed): the comment
    names the method's TRL config class and every key the run refuses there."""
    from prefopt.search import owned_by_the_run

    spec = get_method(load_recipe(str(path)).method)
    comment = _comment_block(path.read_text(), "train")
    assert spec.config.replace(":", ".") in comment, comment
    assert "any field" not in comment, comment
    for key in owned_by_the_run(spec):
        assert ("data.weights" if key in (spec.weight_fields or ()) else key) in comment, (key, comment)
    for key in spec.fixed:
        assert key in comment, (key, comment)


TUNED = sorted((ROOT / "results" / "tuned").glob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES + TUNED, ids=lambda p: p.parent.name + "/" + p.stem)
def test_header_commands_parse_and_their_sets_resolve(path):
    """Every `python -m prefopt ...` line a shipped or tuned recipe's header shows parses, and its recipe
    loads with its --set values (what `prefopt data` checks before any model), so a copied example runs."""
    import shlex

    from prefopt.cli import _parser, parse_seeds

    commands = [shlex.split(line.lstrip("#").split("  #")[0])[3:] for line in path.read_text().splitlines()
                if line.startswith("#") and "python -m prefopt " in line]
    assert commands, "the header shows how to run the recipe"
    for args in commands:
        ns = _parser().parse_args(args)
        assert (ROOT / ns.recipe).resolve() == path, f"{args}: names another recipe"
        load_recipe(str(path), ns.set + ([f"data.folds={ns.folds}"] if getattr(ns, "folds", None) else []))
        parse_seeds(getattr(ns, "seeds", None))


@pytest.mark.parametrize("path", TUNED, ids=lambda p: p.stem)
def test_tuned_header_matches_its_trials(path):
    """The header of results/tuned/<name>.yaml (trial, count, sampler, best value, where the trials are) says
    what its `tuned:` record and results/tuning/<name>/trials.csv hold."""
    import re

    import pandas as pd

    recipe = load_recipe(str(path))
    t = recipe.tuned
    m = re.search(r"trial (\d+) of (\d+) \((\w+)\), best (\w+ \w+) ([\d.]+); trials in (\S+)/\.",
                  path.read_text().splitlines()[0])
    assert m, "header"
    assert (int(m[1]), int(m[2]), m[3], m[4]) == (t["trial"], t["trials"], t["sampler"], t["metric"])
    trials = pd.read_csv(ROOT / m[6] / "trials.csv")
    assert len(trials) == t["trials"] and m[6] == f"results/tuning/{t['recipe']}"
    best = trials.loc[trials["validation_reward_auc"].idxmax()]
    assert int(best.trial) == t["trial"] and float(m[5]) == pytest.approx(best.validation_reward_auc, abs=5e-5)
    for key, value in t["chosen"].items():
        assert best[key] == pytest.approx(value) and recipe.train[key] == value


def test_every_recipe_and_seed_is_scored_on_the_same_test_rows():
    """The recipes' `eval_fraction: # the same rows for every recipe on this file` and `split_seed: # ...and
    for every training seed`: one test split for every shipped recipe and seed, the one tuning recorded."""
    from prefopt.preflight import check_data

    splits = {(p.stem, seed): check_data(load_recipe(str(p), [f"seed={seed}"])).report["eval_fingerprint"]
              for p in RECIPES for seed in (42, 3)}
    assert len(set(splits.values())) == 1, splits
    assert {load_recipe(str(p)).tuned["test_split"] for p in TUNED} <= set(splits.values())

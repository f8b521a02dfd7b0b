"""`prefopt tune`: every recipe gets the same number of trials over its method's search space, each trial an
ordinary run scored on the validation split; the best trial's settings become a recipe for `prefopt run`.

    results/tuning/<recipe>/runs/<recipe>/seed<seed>-<fingerprint>/   the trials (ordinary run directories)
    results/tuning/<recipe>/trials.csv                                trial, settings, validation metric
    results/tuning/<recipe>/tuning.png                                the metric against each setting
    results/tuned/<recipe>.yaml                                       the recipe with the best trial's settings

The trial settings are drawn up front (prefopt.search, seeded by tune.seed), so an interrupted tuning run
resumes by running the same command: finished trials are found by their fingerprint and not rerun. The
test split is never scored by a trial (eval.split: validation drops it before evaluation) and the choice
reads only the trials' validation metrics.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import yaml

from .errors import UserError, raise_all
from .recipe import Recipe, apply_sets, parse_set, read_yaml
from .recipe_checks import check_space_limits

TUNING, TUNED = "tuning", "tuned"


def space_of(recipe: Recipe) -> dict:
    from .config_fields import field_names
    from .methods import get_method
    from .search import check, merge, owned_by_the_run

    spec = get_method(recipe.method, file=recipe.source)
    space = merge(spec.search, recipe.tune.space)
    if not space:
        raise UserError(recipe.source, "tune.space", f"nothing to search for {recipe.method}: its default space "
                        "was dropped; give at least one train.* key with {low, high} or {values: [...]}")
    check(space, field_names(spec.config), file=recipe.source, fixed=spec.fixed, owned=owned_by_the_run(spec))
    check_space_limits(recipe, space)
    return space


def check_sets_not_searched(recipe: Recipe, sets) -> None:
    """A recipe file's train.X is its untuned value, which the search replaces (that is what tuning is for);
    a `--set train.X=...` given to `prefopt tune` asks for X held fixed, and would be replaced in every trial
    without a word: refused, with the way to hold it fixed."""
    searched = space_of(recipe)
    for item in sets:
        keys, _ = parse_set(item)
        if len(keys) == 2 and keys[0] == "train" and keys[1] in searched:
            raise UserError("--set", ".".join(keys), f"{keys[1]} is searched by `prefopt tune` (tune.space, or "
                            f"{recipe.method}'s default space), so every trial would replace this value; to hold it "
                            f"fixed, also give --set tune.space.{keys[1]}=null")


def check_space_config(recipe: Recipe, space: dict, report: dict, epochs: int) -> None:
    """The method's TRL config built (never trained; no model, nothing written) at every combination of the
    space's limits: its own checks (warmup_steps >= 0, a known scheduler, ...) ran only as each trial began,
    so a range reaching a refused value failed minutes into tuning, after earlier trials had trained."""
    from .methods import get_method
    from .trainer_config import config_kwargs
    from .search import corners, shown

    spec = get_method(recipe.method, file=recipe.source)
    config_class = spec.config_class()
    # the searched keys at TRL's or the method's defaults: what each key is tried against on its own
    base = {k: v for k, v in recipe.train.items() if k not in space}

    def refusal(values: dict) -> str | None:
        r = copy.deepcopy(recipe)
        r.train = {**base, **values}
        try:  # output_dir is only recorded by the config; nothing is created under it
            config_class(**config_kwargs(r, spec, report, epochs, Path(recipe.name)))
        except (ValueError, TypeError) as e:
            return (str(e).splitlines() or [type(e).__name__])[0]
        return None

    for corner in corners(space):
        why = refusal(corner)
        if why is None:
            continue
        own = refusal({})
        if own is not None:  # not the space's doing: the recipe's own train.* (said as the run says it)
            raise UserError(recipe.source, "train", f"{config_class.__name__} rejected the settings: {own}")
        for key, value in corner.items():
            alone = refusal({key: value})
            if alone is not None:
                raise UserError(recipe.source, f"tune.space.{key}", f"its range ({shown(space[key])}) reaches "
                                f"{value!r}, which {config_class.__name__} refuses: {alone}; narrow the range")
        raise UserError(recipe.source, "tune.space", f"{config_class.__name__} refuses the settings {corner} "
                        f"(the limits of {', '.join(f'{k}: {shown(space[k])}' for k in corner)}): {why}; narrow "
                        "one of the ranges")


def trial_recipes(recipe: Recipe, trials: int) -> tuple[list[dict], list[Recipe], str]:
    """(settings, trial recipe) of every trial, in trial order, and the fingerprint of the test split the
    trials hold out (the tuned recipe keeps it: tuned.test_split)."""
    from .search import settings

    if recipe.data.folds > 1:
        raise UserError(recipe.source, "data.folds", "tuning chooses on one split's validation prompts, and "
                        "cross-fitting would later score those prompts as test prompts; tune with data.folds: 1 "
                        "(--set data.folds=1)")
    if recipe.data.validation_fraction == 0:
        raise UserError(recipe.source, "data.validation_fraction", "tuning scores trials on the validation split; "
                        "set it above 0 (0.1 keeps a tenth of the prompts apart)")
    from .methods import get_method
    from .preflight import check_validation_metric, prepare_data

    untuned = copy.deepcopy(recipe)
    untuned.tuned = None  # a tuned recipe tuned again chooses afresh, on whatever split it now has
    prepared, epochs = prepare_data(untuned, get_method(recipe.method))
    test_split = prepared.report.get("test_fingerprint", prepared.report["eval_fingerprint"])
    # every trial would score NaN on a metric the validation split cannot compute: say so before the first
    check_validation_metric(recipe, prepared, recipe.tune.metric, "tune.metric")
    space = space_of(recipe)
    check_space_config(recipe, space, prepared.report, epochs)
    chosen = settings(space, trials, seed=recipe.tune.seed, sampler=recipe.tune.sampler)
    if len(chosen) < trials:  # every recipe gets the same number of distinct trials, or none is tuned
        raise UserError(recipe.source, "tune.space", f"its search space has only {len(chosen)} distinct settings "
                        f"for {trials} trials; widen it or ask for --trials {len(chosen)} for every recipe")
    from .recipe_checks import check_values

    out = []
    for i, values in enumerate(chosen, 1):
        r = copy.deepcopy(recipe)
        r.seeds, r.tuned = None, None
        r.train = {**r.train, **values}
        r.eval.split, r.eval.select, r.eval.verifier, r.eval.prompts = "validation", "last", None, None
        r.data.folds, r.data.fold = 1, None
        try:  # a drawn value the recipe itself would refuse (a KTO batch of 1) fails here, before any trial
            check_values(r)
        except UserError as e:
            raise UserError(recipe.source, "tune.space", f"trial {i} draws {values}, which a recipe may not set: "
                            f"{e.field}: {e.message}") from None
        out.append(r)
    return chosen, out, test_split


def best_trial(values: list[float], metric: str) -> int | None:
    """Index of the best validation value (NaN never wins; the earliest among equals)."""
    from .selection import HIGHER_IS_BETTER

    sign = 1 if HIGHER_IS_BETTER[metric] else -1
    scored = [(sign * v, -i) for i, v in enumerate(values) if v == v]
    return -max(scored)[1] if scored else None


def tune_recipes(recipes: list[Recipe], *, results: str = "results", trials: int | None = None,
                 engine: str = "auto", address=None, storage=None, max_concurrent=None, sets=(),
                 force: bool = False) -> list[Path]:
    """Tune every recipe with the same trial count; returns the tuned recipe files written. force: train
    every trial again (a finished one waits in its cache/replaced/ until its retraining finishes, as with
    `prefopt run --force`)."""
    from .batch import check_options, run_jobs

    check_options(engine, address, storage, max_concurrent)  # bad input: one line, before anything is written
    results = Path(results)
    names = [r.name for r in recipes]
    for r in recipes:
        if names.count(r.name) > 1:  # their trials, tables and tuned recipe would overwrite each other
            raise UserError(r.source, "name", f"two recipes named {r.name!r} in one `prefopt tune`; rename one")
    counts = {trials or r.tune.trials for r in recipes}
    if len(counts) > 1:
        raise UserError(recipes[-1].source, "tune.trials", "every recipe gets the same number of trials, and these "
                        f"ask for {', '.join(str(r.tune.trials) + ' (' + r.name + ')' for r in recipes)}; give "
                        "--trials N or make them equal")
    plans = []
    for recipe in recipes:
        n = trials or recipe.tune.trials
        check_sets_not_searched(recipe, sets)
        chosen, jobs, test_split = trial_recipes(recipe, n)
        # the tuned recipe is the file as the trials trained it, read now: read after the last trial (hours
        # later), an edit made meanwhile went into it, credited with settings tuned on the recipe before it
        raw = apply_sets(read_yaml(recipe.source), list(sets))
        plans.append((recipe, chosen, jobs, results / TUNING / recipe.name, test_split, raw))
    from .results import check_results_dir

    # where the tables and the tuned recipes go must take them, said before the first trial and not after the last
    for folder in [where for *_, where, _, _ in plans] + [results / TUNED]:
        check_results_dir(folder)
    failure = None
    try:
        runs = run_jobs([(j, where) for _, _, jobs, where, _, _ in plans for j in jobs], results=results, engine=engine,
                        address=address, storage=storage, max_concurrent=max_concurrent, force=force)
    except (Exception, KeyboardInterrupt) as e:  # (a failed or interrupted trial: said below, after the writing)
        failure, runs = e, None
    # each recipe whose trials all finished gets its table and tuned recipe, whatever became of the others: one
    # recipe's failed or interrupted trial left every recipe's finished tuning unwritten
    from . import results as res

    written, problems, at = [], [], 0
    for recipe, chosen, jobs, where, test_split, raw in plans:
        mine = runs[at:at + len(jobs)] if runs else [res.run_dir(where, j.name, j.seed, j.fingerprint(), j.data.fold)
                                                     for j in jobs]
        at += len(jobs)
        if runs is None and not all(res.is_finished(run) for run in mine):
            continue
        try:
            written.append(write_tuning(recipe, chosen, mine, where, test_split, results=results, raw=raw))
        except UserError as e:
            problems.append(e)
    if failure is None and not problems:
        return written
    import sys

    for path in written:  # (stdout is left to the success line: the command failed)
        print(f"prefopt: tuned recipe {path} (its trials finished; the rest did not, below)", file=sys.stderr)
    if failure is not None:
        raise failure
    raise_all(problems)


def write_tuning(recipe: Recipe, chosen: list[dict], runs: list[Path], where: Path, test_split: str | None, *,
                 results: Path, raw: dict) -> Path:
    """The trials' table and plot, and the tuned recipe with the best trial's settings (its path returned);
    raw: the recipe file as the trials were planned from it, with any --set."""
    import json

    from .plots import png, tuning_figure
    from .results import write_atomic

    metrics = [json.loads((run / "metrics.json").read_text()) for run in runs]
    table = trials_table(chosen, metrics, recipe.tune.metric, [r.name for r in runs])
    write_atomic(where / "trials.csv", table.to_csv(index=False))
    write_atomic(where / "tuning.png", png(tuning_figure(table, recipe.tune.metric, recipe.name)))
    best = best_trial(table[f"validation_{recipe.tune.metric}"].tolist(), recipe.tune.metric)
    if best is None:
        raise UserError(recipe.source, "tune.metric", f"no trial recorded a validation {recipe.tune.metric}; "
                        "pick another tune.metric")
    path = results / TUNED / f"{recipe.name}.yaml"
    write_atomic(path, tuned_yaml(recipe, chosen[best], trial=best, trials=len(runs),
                                  value=float(table[f"validation_{recipe.tune.metric}"][best]), raw=raw,
                                  results=results, test_split=test_split))
    return path


def trials_table(chosen: list[dict], metrics: list[dict], metric: str, run_ids: list[str]):
    import pandas as pd

    # the chosen metric first; reward_auc beside it when the choice was made on another metric
    shown = [metric] + [m for m in ("reward_auc",) if m != metric]
    rows = [{"trial": i, **values, **{f"validation_{k}": m.get(k, math.nan) for k in shown},
             "train_seconds": m.get("train_seconds"), "run_id": run_ids[i]}
            for i, (values, m) in enumerate(zip(chosen, metrics))]
    return pd.DataFrame(rows)


def tuned_yaml(recipe: Recipe, values: dict, *, trial: int, trials: int, value: float, sets=(),
               results: str | Path = "results", test_split: str | None = None, raw: dict | None = None) -> str:
    """The recipe as written (with any --set), the chosen train.* values in, named <name>_tuned, and a
    `tuned:` record the runs carry into the summary; `test_split` (the fingerprint of the test split the
    trials held out) lets a run refuse another split. Its header names the folders under `results` (--results).
    raw: the recipe file as read when the trials were planned (else it is read now, with `sets`)."""
    raw = copy.deepcopy(raw) if raw is not None else apply_sets(read_yaml(recipe.source), list(sets))
    raw["name"] = f"{recipe.name}_tuned"
    raw["train"] = {**(raw.get("train") or {}), **values}
    raw.pop("seeds", None)
    if isinstance(raw.get("eval"), dict):  # scored on the test split: a recipe's eval.split: validation would score
        raw["eval"].pop("split", None)    # the settings on the prompts they were chosen on (the winner's own number)
    # tune.seed drew the trials' settings: with the sampler and the trial count, what reproduces them (a recipe
    # leaving it at its default held it nowhere)
    raw["tuned"] = {"recipe": recipe.name, "trials": trials, "trial": trial, "sampler": recipe.tune.sampler,
                    "seed": recipe.tune.seed, "metric": f"validation {recipe.tune.metric}", "value": round(value, 6),
                    **({"test_split": test_split} if test_split else {}), "chosen": values}
    head = (f"# {recipe.name} with the settings `prefopt tune` chose: trial {trial} of {trials} ({recipe.tune.sampler}"
            f"), best validation {recipe.tune.metric} {value:.4f}; trials in {Path(results) / TUNING / recipe.name}/.\n"
            f"#\n#   python -m prefopt run {Path(results) / TUNED / recipe.name}.yaml --seeds 1,2,42   # scored on the test split\n")
    return head + yaml.safe_dump(raw, sort_keys=False)

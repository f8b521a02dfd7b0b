"""Value checks of a recipe: what `load_recipe` has built is checked against the registries (methods,
backends, strategies, verifiers, metrics), the TRL config's fields and types, and the rules that tie
sections together; all without a heavy import, so `prefopt list` and `prefopt data` report them too.
`check_train_fields` is the exception: it takes the imported TRL config class, so the runner calls it late.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re

from .errors import UserError, UserErrors, did_you_mean, raise_all
from .recipe import Recipe, _type_ok


def check_values(r: Recipe) -> None:
    """Value checks that need no heavy import (names are checked against their registries)."""
    from .methods import get_method
    from .models import BACKENDS

    f = r.source
    spec = get_method(r.method, file=f)
    errors: list[UserError] = []  # every value problem of every section in one go, as load_recipe's keys

    def bad(field: str, message: str) -> None:
        errors.append(UserError(f, field, message))

    def one_of(field: str, value, choices, what: str) -> None:
        if value not in choices:
            bad(field, f"unknown {what} '{value}'; {did_you_mean(value, choices)}")

    one_of("model.backend", r.model.backend, BACKENDS, "backend")
    one_of("model.dtype", r.model.dtype, ("auto", "float32", "bfloat16", "float16"), "dtype")
    from .data import PAIRINGS, STRATEGIES

    # named here too (prepare_data checks them again, with the method's form), so that they are reported
    # beside the other sections' problems rather than after them are fixed
    one_of("data.strategy", r.data.strategy, STRATEGIES, "strategy")
    one_of("data.pairing", r.data.pairing, PAIRINGS, "pairing")
    if not 0 < r.data.eval_fraction < 1:
        bad("data.eval_fraction", f"must be between 0 and 1 (exclusive), got {r.data.eval_fraction}; "
            "0.1 holds out a tenth of the prompts")
    elif not 0 <= r.data.validation_fraction < 1:
        bad("data.validation_fraction", f"must be from 0 (no validation split) to below "
            f"1 - eval_fraction, got {r.data.validation_fraction}; 0.1 keeps a tenth of the prompts apart")
    elif r.data.eval_fraction + r.data.validation_fraction >= 1:
        # the two together, not validation_fraction alone: "got 0.1; 0.1 keeps a tenth apart" was the advice
        # given for a default validation_fraction beside a raised eval_fraction (0.9)
        left = 1 - r.data.eval_fraction
        bad("data.validation_fraction", f"must be below 1 - eval_fraction ({left:.3g}), got "
            f"{r.data.validation_fraction}: test and validation prompts together would leave none to train on; "
            "lower data.eval_fraction or data.validation_fraction (0 for no validation split)")
    w = r.data.weights
    if isinstance(w, str) and w != "auto" or isinstance(w, dict) and (
            set(w) != {"desirable", "undesirable"} or not all(_type_ok(v, float) and v > 0 for v in w.values())):
        bad("data.weights", "expected auto or {desirable: <positive number>, undesirable: "
            "<positive number>}")
    errors += train_errors(spec, r.train, f)
    lr = r.train.get("learning_rate", 1)
    # torch's optimizer refuses a negative (or NaN) rate only as training starts, and an infinite one trains
    # to NaN; a value of another type is train_errors' (or, its TRL source unread, the trainer's) to report
    if _type_ok(lr, float) and not 0 < lr < math.inf:
        bad("train.learning_rate", f"must be above 0 and finite, got {lr}; 0 would "
            "train nothing and a negative rate climbs the loss")
    from .selection import HIGHER_IS_BETTER, SELECTIONS

    one_of("eval.select", r.eval.select, SELECTIONS, "value")
    one_of("eval.select_metric", r.eval.select_metric, HIGHER_IS_BETTER, "metric")
    if r.eval.select == "best" and (r.data.validation_fraction == 0 or not r.model.lora.enabled):
        bad("eval.select", "best needs a validation split and a LoRA adapter to keep: set "
            "data.validation_fraction above 0 and model.lora.enabled: true, or use eval.select: last")
    for key in ("batch_size", "max_new_tokens"):  # 0 or less failed only after training, in evaluation
        if getattr(r.eval, key) < 1:
            bad(f"eval.{key}", f"must be 1 or more, got {getattr(r.eval, key)}")
    if r.eval.verifier not in (None, "auto"):
        from .verifiers import get_verifier

        try:
            get_verifier(r.eval.verifier, f)
        except UserError as e:
            errors.append(e)
    from .search import owned_by_the_run

    owned = owned_by_the_run(spec)  # what the run sets itself would be overwritten without a word
    for key, value in r.train.items():
        if spec.weight_fields and key in spec.weight_fields:
            bad(f"train.{key}", "per-label weights come from data.weights (auto: the KTO paper's "
                "rule); set data.weights: {desirable: x, undesirable: y} instead")
        elif key in owned:
            bad(f"train.{key}", f"{owned[key]} (the recipe's seed, the run's folder); remove the key")
        elif key in spec.fixed and value != spec.fixed[key]:
            bad(f"train.{key}", f"{r.method} needs {spec.fixed[key]!r} here; remove the key")
    bs = r.train.get("per_device_train_batch_size")
    if bs is not None and isinstance(bs, int) and bs < spec.min_batch_size:
        bad("train.per_device_train_batch_size", f"must be at least {spec.min_batch_size} for "
            f"{r.method} ({spec.min_batch_reason}); set it to {spec.min_batch_size} or more")
    if r.data.folds < 1 or r.data.folds > 100:
        bad("data.folds", f"must be a whole number from 1 (one test split) to 100, got "
            f"{r.data.folds}; 5 folds score every prompt once, each by a model trained on 80%")
    if r.tuned is not None:
        chosen = r.tuned.get("chosen") if isinstance(r.tuned, dict) else None
        if not isinstance(chosen, dict):
            bad("tuned.chosen", "missing: the `tuned:` section is written by `prefopt tune` "
                "(results/tuned/<name>.yaml); remove it from a recipe you wrote yourself")
        # the summary credits tuning with these values: the run must train with them
        changed = sorted(k for k, v in chosen.items() if r.train.get(k) != v) if isinstance(chosen, dict) else []
        if changed:
            bad(f"train.{changed[0]}", f"is {r.train.get(changed[0])!r}, but `prefopt tune` chose "
                f"{chosen[changed[0]]!r} (tuned.chosen) and the summary reports the run as tuned "
                "with it; keep the chosen value, or change the untuned recipe and tune again")
    split = r.tuned.get("test_split") if isinstance(r.tuned, dict) else None
    if split is not None and not (isinstance(split, str) and re.fullmatch(r"[0-9a-f]{64}", split)):
        bad("tuned.test_split", "must be the test split's fingerprint as `prefopt tune` wrote it (64 hex "
            "digits); restore it from the tuned recipe, or remove the line to skip the check")
    if r.tuned and r.data.folds > 1:
        bad("data.folds", "this recipe's settings were chosen by `prefopt tune` on validation "
            "prompts of one split; cross-fitting would score those prompts as test prompts. Keep "
            "data.folds: 1, or cross-fit the untuned recipe")
    if r.tuned and r.eval.split == "validation":
        bad("eval.split", "this recipe's settings were chosen by `prefopt tune` on the validation split; scored "
            "there, it would score the prompts they were chosen on. Remove eval.split (the test split)")
    if r.data.fold is not None and 1 <= r.data.folds <= 100 and not 0 <= r.data.fold < r.data.folds:
        bad("data.fold", f"must be a fold number from 0 to {r.data.folds - 1} with data.folds: "
            f"{r.data.folds}, got {r.data.fold}; leave it out to run every fold")
    from .search import SAMPLERS, check as check_space

    one_of("eval.split", r.eval.split, ("test", "validation"), "split")
    if r.eval.split == "validation" and (r.data.validation_fraction == 0 or r.eval.select == "best"):
        bad("eval.split", "validation scores the run on the validation split: it needs "
            "data.validation_fraction above 0 and eval.select: last (best would choose on the same rows)")
    one_of("tune.sampler", r.tune.sampler, SAMPLERS, "sampler")
    one_of("tune.metric", r.tune.metric, HIGHER_IS_BETTER, "validation metric")
    if r.tune.trials < 1:
        bad("tune.trials", f"must be at least 1, got {r.tune.trials}")
    if r.tune.seed < 0:
        bad("tune.seed", f"must be 0 or more, got {r.tune.seed}")
    if r.data.split_seed < 0:
        bad("data.split_seed", "must be a non-negative integer")
    if r.seed < 0:
        bad("seed", f"must be a non-negative integer, got {r.seed}")
    # the name is a folder under results/ (runs/<name>, tuning/<name>, tuned/<name>.yaml): one plain name
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]*", r.name) or ".." in r.name:
        bad("name", f"must be a plain folder name (letters, digits, _ . + -, no / or ..), got "
            f"{r.name!r}; it names the run's folder under results/")
    for i, s in enumerate(r.seeds or []):
        if s < 0:
            bad(f"seeds[{i}]", "seeds must be non-negative integers")
    raise_all(errors)
    # last: a space's limits are checked as recipes of their own, so the recipe's own problems go first
    if r.tune.space:
        from .config_fields import field_names
        from .search import merge

        given = {k: v for k, v in r.tune.space.items() if v is not None}
        if given:
            pers = {p.get("per") for p in given.values() if isinstance(p, dict) and isinstance(p.get("per"), str)}
            space = merge({k: spec.search[k] for k in spec.search if k in pers}, given)
            check_space(space, field_names(spec.config), file=f, fixed=spec.fixed, owned=owned_by_the_run(spec))
            check_space_limits(r, space)


def check_space_limits(r: Recipe, space: dict) -> None:
    """A checked space's values at their limits pass the checks a recipe's own values do (types, the
    learning rate's sign, KTO's smallest batch): a range that reaches a value a trial could not train with
    is refused now, not when that trial's turn comes, nor only under the tune.seed that happens to draw it."""
    from .search import extremes

    for key, value in extremes(space):
        at = copy.deepcopy(r)
        at.train, at.tune.space, at.tuned = {**r.train, key: value}, None, None
        try:
            check_values(at)
        except UserError as e:
            first = e.errors[0] if isinstance(e, UserErrors) else e
            raise UserError(r.source, f"tune.space.{key}", f"reaches {value!r}, which a recipe may not set: "
                            f"{first.field}: {first.message}") from None


def train_errors(spec, train: dict, file: str) -> list[UserError]:
    """train.* keys and values against the method's TRL config fields and their declared types, read from
    source (no torch import); when that source cannot be read, `check_train_fields` still checks the keys at
    run time."""
    import ast

    from .config_fields import field_types, type_mismatch

    types, cls = field_types(spec.config), spec.config.partition(":")[2]
    if types is None:
        return []
    return [UserError(file, f"train.{k}", f"not a field of {cls}; {did_you_mean(k, types)}") if k not in types
            else UserError(file, f"train.{k}", f"expected {ast.unparse(types[k])} ({cls} declares it so), got {v!r}")
            for k, v in train.items() if k not in types or type_mismatch(types[k], v)]


def check_train_fields(r: Recipe, config_class) -> None:
    """Every train.* key must be a field of the method's TRL config (imports trl: call it late)."""
    _report_unknown(r, {f.name for f in dataclasses.fields(config_class) if f.init}, config_class.__name__)


def _report_unknown(r: Recipe, names, class_name: str) -> None:
    errors = [UserError(r.source, f"train.{k}", f"not a field of {class_name}; {did_you_mean(k, names)}")
              for k in r.train if k not in names]
    raise_all(errors)

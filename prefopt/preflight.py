"""What a run will train and score on, settled and checked before anything is written: the train settings
a method's TRL config gets, the data shaped exactly as the trainer will see it, and the checks `prefopt data`
and `prefopt run` share, so both refuse the same recipes with the same message. No torch is imported here
(the tokenizer alone counts prompt lengths), so `prefopt data` stays light.
"""

from __future__ import annotations

import math
import os

from .data.io import load_prompts, question, row_numbers_of
from .errors import UserError
from .methods import MethodSpec, get_method
from .recipe import Recipe

TRL_DEFAULT_BATCH_SIZE = 8  # transformers.TrainingArguments.per_device_train_batch_size
TRL_DEFAULT_EPOCHS = 3.0  # transformers.TrainingArguments.num_train_epochs

# prefopt's own defaults for every method (a recipe's train.* overrides them): a per-step log, so the
# training curves have every step, and periodic checkpoints, so an interrupted run resumes.
BASE_TRAIN = {"logging_steps": 1, "save_strategy": "steps", "save_steps": 20, "save_total_limit": 2,
              "report_to": "none"}


def world() -> tuple[int, int]:
    """(rank, world size) from the variables torchrun and accelerate launch set."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def train_settings(recipe: Recipe, spec: MethodSpec) -> dict:
    return {**BASE_TRAIN, **spec.defaults, **recipe.train, **spec.fixed}


def prepare_data(recipe: Recipe, spec: MethodSpec, world_size: int = 1):
    """Load and shape the data exactly as the trainer will see it (pure; no torch)."""
    from .data import generation_test_fingerprint, prepare
    from .data.io import load_rows

    d, t = recipe.data, train_settings(recipe, spec)
    rows = load_rows(d.path, d.format, d.split)
    weights = d.weights if d.weights == "auto" else (d.weights["desirable"], d.weights["undesirable"])
    kwargs = dict(file=d.path, method=recipe.method, form=spec.form, strategy=d.strategy,
                  eval_fraction=d.eval_fraction, validation_fraction=d.validation_fraction,
                  seed=recipe.seed, split_seed=d.split_seed, folds=d.folds, fold=d.fold or 0,
                  batch_size=t.get("per_device_train_batch_size", TRL_DEFAULT_BATCH_SIZE), world_size=world_size,
                  weights=weights, pairing=d.pairing, max_pairs_per_prompt=d.max_pairs_per_prompt)
    prepared = prepare(rows, epochs=1, **kwargs)
    epochs = planned_epochs(t, len(prepared.train), world_size) if spec.ordered else 1
    if epochs > 1:  # ordered methods get one materialized ordering per epoch and train one pass over them
        prepared = prepare(rows, epochs=epochs, **kwargs)
    check_selection(recipe, prepared)
    check_tuned_split(recipe, prepared.report)
    if recipe.eval.split == "validation":
        return _on_validation(prepared), epochs
    # the verifier and the prompts it checks are settled (every value it reads checked) before any training
    from .verifiers import resolve

    source, verify = d.path, prepared.eval_rows.drop_duplicates("prompt_key")
    numbers = row_numbers_of(verify.set_index("row_id"))  # the file's row numbers, for a message about one
    if recipe.eval.prompts and recipe.eval.verifier is not None:  # (verifier null: no generation test at all)
        source, verify = recipe.eval.prompts, load_prompts(recipe.eval.prompts)
        numbers = row_numbers_of(verify)
        check_unseen(recipe, prepared, verify)
    verifier, note = resolve(recipe.eval.verifier, verify.columns, verify.to_dict("records"),
                             recipe=recipe.source, data=source, row_numbers=numbers)
    if recipe.eval.prompts and recipe.eval.verifier is not None and verifier is None:
        raise UserError(recipe.eval.prompts, "eval.prompts", f"{note}; add the verifier's column to each prompt")
    prepared.verify = verify if verifier else None
    prepared.report.update(verifier=verifier.name if verifier else None, verifier_note=note,
                           verified_prompts_from=source if verifier else None,
                           verified_prompts=len(verify) if verifier else 0,
                           generation_test_fingerprint=generation_test_fingerprint(
                               verify, verifier.name, verifier.column) if verifier else None)
    return prepared, epochs


def check_data(recipe: Recipe):
    """What `prefopt data` checks (the recipe's data shaped as the trainer will see it, prompts against
    max_length), without a model: the prepared data, or the UserError a run of this recipe would meet."""
    return checked_data(recipe)[0]


def checked_data(recipe: Recipe):
    from .config_fields import field_default
    from .models import local_model_dir

    spec = get_method(recipe.method, file=recipe.source)
    prepared, epochs = prepare_data(recipe, spec, world()[1])
    # the TRL config's own default when the recipe sets none, as the run's built config will hold; the
    # tokenizer only when it is already on disk (an alias is converted by its first run)
    max_length = train_settings(recipe, spec).get("max_length", field_default(spec.config, "max_length"))
    check_prompt_lengths(recipe, prepared, max_length, local_model_dir(recipe.model.name))
    return prepared, epochs


def check_tuned_split(recipe: Recipe, report: dict) -> None:
    """A tuned recipe is scored on the test split its tuning held out: on another split (other data,
    split_seed or eval_fraction), prompts its settings were chosen on could be test prompts."""
    split = (recipe.tuned or {}).get("test_split")
    if split is not None and report["eval_fingerprint"] != split:
        d = recipe.data
        raise UserError(recipe.source, "data", f"its test split ({d.path}, split_seed {d.split_seed}, eval_fraction "
                        f"{d.eval_fraction}) is not the one `prefopt tune` held out when it chose these settings "
                        "(tuned.test_split), so prompts they were chosen on may be test prompts here; keep the "
                        "data section the tuning used, or tune again on this split")


def check_unseen(recipe: Recipe, prepared, verify) -> None:
    """The generation test's prompts must be ones the run never trains or chooses on: a prompt the data asks
    would measure recall of its desirable answer, not a better answer to a new question."""
    seen = set(map(question, prepared.train["prompt"]))
    if prepared.validation_rows is not None and len(prepared.validation_rows):
        seen |= set(map(question, prepared.validation_rows["prompt"]))
    shared = [i for i, p in enumerate(verify["prompt"]) if question(p) in seen]
    if shared:
        numbers = row_numbers_of(verify)
        first = f"row {numbers[shared[0]]}" if numbers is not None else f"prompt {shared[0] + 1}"
        raise UserError(recipe.eval.prompts, "eval.prompts", f"{len(shared)} of its {len(verify)} prompts are asked "
                        f"in the training or validation rows of {recipe.data.path} (first: {first}); "
                        "the generation test needs prompts the data never asks: remove them")


def check_selection(recipe: Recipe, prepared) -> None:
    """`eval.select: best` needs its metric defined on the validation split; checked before training, since
    otherwise every checkpoint scores NaN and nothing can be chosen after the whole training has run."""
    if recipe.eval.select == "best":
        check_validation_metric(recipe, prepared, recipe.eval.select_metric, "eval.select_metric")


def check_validation_metric(recipe: Recipe, prepared, metric: str, field: str) -> None:
    """`metric` can be computed on the validation split (what `eval.select: best` and `prefopt tune` choose
    on): a pair metric needs pairs there, reward_auc both labels, desirable_nll desirable rows."""
    rows, pairs = prepared.validation_rows, prepared.validation_pairs
    if rows is None:
        return
    labels, no_pairs = set(rows["label"].astype(bool)), pairs is None or len(pairs) == 0
    pair = "pairs (a desirable and an undesirable completion of one prompt)"
    needs = {"reward_margin": (pair, no_pairs), "preference_accuracy": (pair, no_pairs),
             "reward_auc": ("rows of both labels", len(labels) < 2),
             "desirable_nll": ("desirable rows", True not in labels), "kl": ("rows", len(rows) == 0)}
    missing, lacking = needs.get(metric, ("", False))
    if lacking:
        # offer only the metrics this split can give: an empty split (a small file) gives none
        usable = [m for m, (_, lacks) in needs.items() if not lacks]
        other = f"choose a metric it allows ({', '.join(usable)}) or " if usable else ""
        # (rows of one label are not "none" of rows of both labels: say what is there)
        has = "every row is " + ("desirable" if True in labels else "undesirable") \
            if metric == "reward_auc" and len(rows) else "it has none"
        raise UserError(recipe.source, field, f"{metric} needs {missing} in the validation "
                        f"split ({len(rows)} rows), and {has}; {other}raise data.validation_fraction "
                        "(or add prompts)")


def _on_validation(prepared):
    """A run scored on the validation split (a tuning trial): the validation rows and pairs take the test
    split's place and the test rows are dropped here, before anything could score them; no generation test
    (its prompts are a test set too). The report's eval_* fields then describe the validation split."""
    from .data import pair_metrics_note

    r = prepared.report
    prepared.eval_rows, prepared.eval_pairs = prepared.validation_rows, prepared.validation_pairs
    prepared.validation_rows = prepared.validation_pairs = prepared.verify = None
    note = pair_metrics_note(prepared.eval_rows, prepared.eval_pairs, "validation")
    r.update(scored_split="validation", test_fingerprint=r["eval_fingerprint"],  # the split a tuned recipe keeps
             eval_rows=r["validation_rows"], eval_prompts=r["validation_prompts"],
             eval_pairs=r["validation_pairs"], pair_metrics_note=note, eval_fingerprint=r["validation_fingerprint"],
             verifier=None,
             verifier_note="a validation-split run takes no generation test", verified_prompts=0,
             verified_prompts_from=None)
    return prepared


def check_prompt_lengths(recipe: Recipe, prepared, max_length: int | None, model_dir) -> None:
    """Every prompt of every split must leave room for a completion under max_length; checked with the
    tokenizer alone, before anything is written. TRL would otherwise drop or cut training rows minutes later,
    and a held-out row cut to its prompt would be scored as a completion of no tokens (log-prob 0)."""
    from .models import prompt_token_counts

    if not max_length or model_dir is None:
        return
    from .data.io import prompt_keys

    splits = [(kind, dict(zip(prompt_keys(rows["prompt"]), rows["prompt"])))
              for kind, rows in (("training", prepared.train), ("test", prepared.eval_rows),
                                 ("validation", prepared.validation_rows)) if rows is not None and len(rows)]
    every = [p for _, unique in splits for p in unique.values()]
    counted = prompt_token_counts(model_dir, every)  # one tokenizer load for all of them
    if counted is None:
        return
    # every split in one line, with the longest prompt of all: told of one split at a time and of no prompt, a
    # user raised max_length to the bound given and met the next split's, still not knowing which to shorten
    at, over, longest, where = 0, [], 0, None
    for kind, unique in splits:
        counts, at = counted[at:at + len(unique)], at + len(unique)
        if max(counts) >= max_length:
            over.append(f"{sum(c >= max_length for c in counts)} of {len(counts)} {kind}")
        for prompt, count in zip(unique.values(), counts):
            if count > longest:
                said = prompt if isinstance(prompt, str) else " ".join(m["content"] for m in prompt)
                longest, where = count, " ".join(said.split())
    if over:
        # the prompt's opening, not a row number: the split's tables are renumbered (and paired) by now
        shown = repr(where if len(where) <= 50 else where[:47] + "...")
        raise UserError(recipe.source, "train.max_length", f"{', '.join(over)} prompts are at least "
                        f"max_length={max_length} tokens (longest {longest}: {shown}), leaving no room for a completion; "
                        f"raise train.max_length above {longest} or shorten those prompts")
    warn_cut_completions(prepared, max_length, model_dir)


def warn_cut_completions(prepared, max_length: int, model_dir) -> None:
    """Rows longer than max_length keep their prompt and lose the end of their completion, in training and in
    scoring alike (a prompt one token short of max_length leaves one completion token): said in one warning
    line, as the data report's other warnings, since a cut answer is trained and scored as if whole."""
    import pandas as pd

    from .data.io import prompt_keys
    from .models import completion_token_counts

    pairs = []
    for rows in (prepared.train, prepared.eval_rows, prepared.validation_rows):
        for column in ("completion", "chosen", "rejected"):
            if rows is not None and column in rows:
                pairs += zip(rows["prompt"], rows[column])
    unique = list(dict(zip(prompt_keys(pd.Series([[p, c] for p, c in pairs], dtype=object)), pairs)).values())
    counted = completion_token_counts(model_dir, unique) or []
    cut = [(start, total) for start, total in counted if total > max_length]
    if cut:
        kept, whole = min((max_length - s, t - s) for s, t in cut)
        prepared.report.setdefault("data_warnings", []).append(
            f"{prepared.report['data_path']}: {len(cut)} of {len(counted)} distinct rows are longer than "
            f"train.max_length={max_length} tokens (longest {max(t for _, t in cut)}): their completions are cut to fit, in training and in scoring (as few as "
            f"{kept} of a completion's {whole} tokens kept); raise train.max_length or shorten those rows")


def planned_epochs(t: dict, epoch_rows: int, world_size: int) -> int:
    per_step = t.get("per_device_train_batch_size", TRL_DEFAULT_BATCH_SIZE) * \
        t.get("gradient_accumulation_steps", 1) * world_size
    if t.get("max_steps", -1) > 0:
        return max(1, math.ceil(t["max_steps"] / max(1, math.ceil(epoch_rows / per_step))))
    return max(1, math.ceil(t.get("num_train_epochs", TRL_DEFAULT_EPOCHS)))

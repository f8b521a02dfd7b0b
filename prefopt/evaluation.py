"""Held-out evaluation of a trained model: the method-neutral metrics on the test split, the verified
generation test, and the per-item records they come from. Writes nothing: the runner writes the records
and the reference cache entries this returns. torch is imported only inside the functions.
"""

from __future__ import annotations

import time
from pathlib import Path

from .console import phase
from .recipe import Recipe


def precision_used(recipe: Recipe, args) -> dict:
    """model.dtype as resolved here, with the autocast flag the trainer really got (train.bf16 may set it)."""
    from .models import resolve_precision

    return {**resolve_precision(recipe.model.dtype).to_dict(), "autocast_bf16": bool(getattr(args, "bf16", False))}


def evaluate(recipe: Recipe, model, tok, prepared, args, cache: Path | None = None,
             backend: str | None = None) -> tuple[dict, dict, dict]:
    """Held-out metrics and the per-item records they come from ({"rows": [...], "generations": [...]}).
    Rows are scored in the weights' own precision, never under autocast (`scored_in`): the reward and the KL
    are differences of log-probabilities, and bf16 rounding of each layer's output swallows a small LoRA
    update (one float32-trained DPO adapter scored under bf16 autocast: KL 0.0061 instead of 0.0102,
    reward_margin 0.085 instead of 0.169). Generation runs at the precision the run trained in (bf16
    autocast when the config had it). With `cache` (a results directory) the reference's scores and
    generations are read from it when present; what had to be computed comes back as cache entries
    (path -> bytes) for the caller to write. Call it when training is over: it takes off the autocast wrapper
    accelerate puts on a mixed-precision model's forward (which would override any context set here).
    `backend` (the one the runner picked: transformers or unsloth) keys the cache: both wrap the model in the
    same PEFT classes, so the model's own type cannot tell them apart."""
    from accelerate.utils import extract_model_from_parallel

    model = extract_model_from_parallel(model, keep_fp32_wrapper=False)
    return _evaluate(recipe, model, tok, prepared, args, cache, backend)


def _autocast(model, args, enabled: bool = True):
    """bf16 autocast as the run trained (when enabled), else explicitly off: evaluation may be called from
    inside a trainer's own autocast."""
    import torch

    device_type = next(model.parameters()).device.type
    return torch.autocast(device_type, dtype=torch.bfloat16, enabled=enabled and bool(getattr(args, "bf16", False)))


def scored_in(model) -> str:
    """The precision held-out rows are scored in: the weights' dtype (no autocast), e.g. "float32"."""
    return str(next(model.parameters()).dtype).removeprefix("torch.")


def _reference_keys(recipe: Recipe, model, prepared, args, backend: str | None = None) -> dict:
    """Cache entry names for the reference's scores and generations: everything they depend on."""
    from . import refcache
    from .data.io import prompt_keys

    backend = backend or type(model).__module__.split(".")[0]
    device = next(model.parameters()).device
    common = dict(model=refcache.model_identity(recipe.model.name), backend=backend,
                  device=str(device), hardware=refcache.hardware(device),
                  batch_size=recipe.eval.batch_size, **refcache.computed_by())
    rows = prepared.eval_rows
    from .metrics import REF_TOP_K

    keys = {"scores": refcache.key("scores", **common, scored_in=scored_in(model), top_k=REF_TOP_K,
                                   max_length=getattr(args, "max_length", None), rows=list(prompt_keys(rows["prompt"])),
                                   completions=list(prompt_keys(rows["completion"])))}
    if prepared.verify is not None:
        v = prepared.verify
        keys["generations"] = refcache.key("generations", **common, precision=precision_used(recipe, args),
                                           max_new_tokens=recipe.eval.max_new_tokens,
                                           batches="by prompt length", prompts=list(prompt_keys(v["prompt"])))
    return keys


def _evaluate(recipe: Recipe, model, tok, prepared, args, cache: Path | None,
              backend: str | None = None) -> tuple[dict, dict, dict]:
    from . import refcache
    from .console import progress
    from .metrics import item_records, score_rows, summarize, verified_success

    start = time.perf_counter()
    entries = {}
    keys = _reference_keys(recipe, model, prepared, args, backend) if cache is not None else {}
    cached_scores = refcache.load_scores(refcache.path(cache, keys["scores"])) if keys else None
    cached_texts = refcache.load_texts(refcache.path(cache, keys["generations"])) if "generations" in keys else None
    reference = None
    needed = cached_scores is None or (prepared.verify is not None and cached_texts is None)
    if needed and not hasattr(model, "disable_adapter"):  # full fine-tuning: pi_ref needs its own copy
        from .models import load_model

        reference, _ = load_model(recipe.model.name, dtype=recipe.model.dtype, file=recipe.source)
        reference.to(next(model.parameters()).device)
    rows = prepared.eval_rows.to_dict("records")
    pairs = prepared.eval_pairs.to_dict("records")
    with phase(f"scoring {len(rows)} held-out rows (policy{'' if cached_scores else ' and reference'})"), \
            progress(len(rows), "scoring") as bar, _autocast(model, args, enabled=False):
        scores = score_rows(model, tok, rows, batch_size=recipe.eval.batch_size, cached=cached_scores,
                            max_length=getattr(args, "max_length", None), reference=reference, bar=bar)
    if keys and cached_scores is None:
        entries[refcache.path(cache, keys["scores"])] = refcache.dump_scores(scores["reference"])
    metrics = summarize(rows, scores, pairs)
    metrics["scored_in"] = scored_in(model)
    note = prepared.report.get("pair_metrics_note")
    if note:  # NaN pair metrics say why (one rated completion per prompt: KTO's or SFT's own data)
        metrics["pair_metrics_note"] = note
    items = {"rows": item_records(rows, scores)}
    verifier = prepared.report["verifier"]
    if verifier is None:
        metrics["verified_note"] = prepared.report["verifier_note"]
    else:
        from .verifiers import get_verifier

        verify = prepared.verify.to_dict("records")
        where = "test" if recipe.eval.prompts else "held-out"
        both = "" if cached_texts else " and reference"
        with phase(f"generating for {len(verify)} {where} prompts (policy{both}, greedy)"), \
                progress(2 * len(verify), "generating") as bar, _autocast(model, args):
            verified, generations, ref_texts = verified_success(
                model, tok, verify, get_verifier(verifier), batch_size=recipe.eval.batch_size,
                max_new_tokens=recipe.eval.max_new_tokens, reference=reference, reference_texts=cached_texts,
                bar=bar)
        if "generations" in keys and cached_texts is None:
            entries[refcache.path(cache, keys["generations"])] = refcache.dump_texts(ref_texts)
        metrics.update(verified)
        items["generations"] = generations
    metrics["eval_seconds"] = time.perf_counter() - start
    metrics["reference_cached"] = {"scores": cached_scores is not None, "generations": cached_texts is not None}
    return metrics, items, entries

"""The TRL config and the LoRA settings a run trains under, and the two things asked of TRL itself before
its trainer is built (can it run on this machine; which positions its log-prob head scores).

Built from the resolved recipe, the method's spec and the data report: no model, nothing written, so
`prefopt batch` (runner.check_run), tuning and scripts/bench_overhead.py build the same config as a run.
The runner stays the one that trains and writes.
"""

from __future__ import annotations

from pathlib import Path

from .errors import UserError
from .methods import MethodSpec
from .preflight import TRL_DEFAULT_EPOCHS, train_settings
from .recipe import Recipe


def config_kwargs(recipe: Recipe, spec: MethodSpec, report: dict, epochs: int, run: Path) -> dict:
    """Everything the method's TRL config is built from (scripts/bench_overhead.py feeds the same dict
    to a plain TRL script)."""
    t = train_settings(recipe, spec)
    if spec.weight_fields:
        t[spec.weight_fields[0]] = report["desirable_weight"]
        t[spec.weight_fields[1]] = report["undesirable_weight"]
    if spec.ordered and t.get("max_steps", -1) <= 0:
        # the data already holds `epochs` orderings back to back: one pass over them
        t["num_train_epochs"] = t.get("num_train_epochs", TRL_DEFAULT_EPOCHS) / epochs
    # bf16 autocast where model.dtype resolves to it here (a GPU with bf16, a CPU with native bf16
    # instructions); TRL's own default (bf16 on) would fail or crawl elsewhere.
    from .models import resolve_precision

    t.setdefault("bf16", resolve_precision(recipe.model.dtype).autocast)
    # Without use_cpu, accelerate sets up no process group on a CPU-only machine: under torchrun every
    # process would train alone on all the data instead of its shard.
    t.setdefault("use_cpu", not _accelerator_available())
    t.update(output_dir=str(run / "checkpoints"), seed=recipe.seed)
    return _current_names(t, spec)


def _current_names(t: dict, spec: MethodSpec) -> dict:
    """transformers >= 5.2x renamed gradient_checkpointing to activation_checkpointing and warns on the old
    name; recipes keep the old one, which every supported version accepts, and it is passed under the
    name this version reads."""
    import dataclasses

    fields = {f.name for f in dataclasses.fields(spec.config_class())}
    for old, new in (("gradient_checkpointing", "activation_checkpointing"),
                     ("gradient_checkpointing_kwargs", "activation_checkpointing_kwargs")):
        if old in t and new in fields and new not in t:
            t[new] = t.pop(old)
    return t


def check_trainer_runs_here(trainer_class, file: str) -> None:
    """TRL 1.15's DPO and KTO trainers compute log-probabilities only through a Triton kernel that TRL
    imports optionally: without Triton (any CPU-only torch) they would crash at the first step, after the
    model load. TRL 1.16 has a plain-torch fallback. Asked of TRL itself, not of the method's name."""
    import sys

    import trl
    from trl.trainer import utils as trl_utils

    fused_head = hasattr(sys.modules[trainer_class.__module__], "add_fused_lm_head")
    if fused_head and getattr(trl_utils, "_ChunkedLogProbFunction", True) is None:
        raise UserError(file, "method", f"trl {trl.__version__}'s {trainer_class.__name__} needs Triton, which this "
                        "torch build lacks (CPU); use a CUDA torch build, or on CPU: pip install 'trl>=1.16,<1.17'")


def _on_every_device(device) -> bool:
    return True


def score_completion_tokens_only() -> bool:
    """TRL's fused log-prob head (KTO and APO, DPO and IPO, SFT) scores only the completion tokens on CUDA/XPU,
    but on any other device every position of the batch, prompt and padding included, each over the whole
    vocabulary in float32, and then zeroes the extra ones: its comment says this keeps tile shapes fixed for
    compiled devices (Neuron). Eager CPU has nothing to recompile, so prefopt takes the compact path there too;
    the tokens scored, and so losses and gradients, are the same. Only TRL's choice of positions is changed
    (`trl.trainer.utils._use_triton`); its kernel still picks the plain-torch tiles on CPU. Returns whether
    the switch applies (False on TRL versions without it)."""
    from trl.trainer import utils as trl_utils

    if not hasattr(trl_utils, "_use_triton"):
        return False
    trl_utils._use_triton = _on_every_device
    return True


def build_config(recipe: Recipe, spec: MethodSpec, config_class, report: dict, epochs: int, run: Path):
    try:
        return config_class(**config_kwargs(recipe, spec, report, epochs, run))
    except (ValueError, TypeError) as e:
        raise UserError(recipe.source, "train", f"{config_class.__name__} rejected the settings: "
                        f"{str(e).splitlines()[0]}") from None


def _accelerator_available() -> bool:
    import torch

    return bool(torch.accelerator.is_available())


def lora_kwargs(recipe: Recipe) -> dict | None:
    lora = recipe.model.lora
    if not lora.enabled:
        return None
    return {"r": lora.r, "lora_alpha": lora.alpha, "lora_dropout": lora.dropout, "target_modules": lora.target_modules}

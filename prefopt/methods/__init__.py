"""Method registry.

A method is one module in this package that defines `SPEC = MethodSpec(...)`: the TRL config/trainer
pair, the data form it consumes and its defaults. The runner only ever asks the spec; a method is one
new module here plus one recipe. Modules are found by scanning the package, and nothing
heavy is imported until a config or trainer class is actually asked for.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field

from ..errors import UserError, did_you_mean

FORMS = ("unpaired", "paired", "desirable")
# LoRA takes rates about ten times full fine-tuning's (QLoRA: 2e-4 for 7B-13B; the shipped recipes use 1e-4 to
# 5e-4 at 64 steps): one decade either side of the shipped values, log-uniform
LORA_LR = {"low": 3.0e-5, "high": 1.0e-3, "log": True}  # as prefopt.data.FORMS (not imported: this module stays light)


@dataclass(frozen=True)
class MethodSpec:
    name: str
    description: str
    form: str  # "unpaired": (prompt, completion, label) rows; "paired": (prompt, chosen, rejected);
    # "desirable": (prompt, completion) of the desirable rows only
    config: str  # "module:Class" of the TRL config dataclass
    trainer: str  # "module:Class" of the TRL trainer
    defaults: dict = field(default_factory=dict)  # train.* defaults that differ from TRL's own
    # train.* values the method needs; a recipe that sets another value is an error
    fixed: dict = field(default_factory=dict)
    # Config fields holding per-label loss weights (desirable, undesirable), when the loss has them;
    # they are set from data.weights (auto: the KTO paper's rule), never from train.*.
    weight_fields: tuple[str, str] | None = None
    min_batch_size: int = 1  # smallest per_device_train_batch_size the loss works with
    min_batch_reason: str = ""
    # The trainer reads rows in dataset order (the data strategy decides batch composition).
    ordered: bool = False
    # `prefopt tune`'s default search space (prefopt.search): the learning rate and the method's main
    # parameter, sized for LoRA on a small model; every method gets the same number of trials over it
    search: dict = field(default_factory=dict)

    def config_class(self):
        return _load(self.config)

    def trainer_class(self):
        return _load(self.trainer)


def _load(target: str):
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def methods() -> dict[str, MethodSpec]:
    found = {}
    for info in pkgutil.iter_modules(__path__):
        spec = getattr(importlib.import_module(f"{__name__}.{info.name}"), "SPEC", None)
        if isinstance(spec, MethodSpec):
            assert spec.form in FORMS, f"{info.name}: form must be one of {FORMS}"
            found[spec.name] = spec
    return found


def get_method(name: str, *, file: str | None = None) -> MethodSpec:
    registry = methods()
    if name not in registry:
        raise UserError(file, "method", f"unknown method '{name}'; {did_you_mean(name, registry)}")
    return registry[name]

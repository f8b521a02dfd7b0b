"""KTO (Ethayarajh et al., 2024): unpaired desirable/undesirable completions."""

from . import LORA_LR, MethodSpec

SPEC = MethodSpec(
    name="kto",
    description="Kahneman-Tversky Optimization on unpaired labels (trl.KTOTrainer)",
    form="unpaired",
    config="trl:KTOConfig",
    trainer="trl:KTOTrainer",
    defaults={"beta": 0.1},
    # KTOTrainer rotates completions inside each consecutive block of per_device_train_batch_size rows to
    # build its KL estimate, so rows must reach it in dataset order: the data strategy sets that order.
    fixed={"train_sampling_strategy": "sequential"},
    weight_fields=("desirable_weight", "undesirable_weight"),
    min_batch_size=2,
    min_batch_reason="KTO's KL term pairs each row with another completion of its micro-batch",
    ordered=True,
    # beta: the KTO paper and TRL default 0.1; the paper found 0.01-0.5 workable, lower for bigger models
    search={"learning_rate": LORA_LR, "beta": {"low": 0.02, "high": 0.5, "log": True}},
)

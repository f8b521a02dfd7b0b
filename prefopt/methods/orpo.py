"""ORPO (Hong et al., 2024): SFT plus an odds-ratio penalty, no reference model."""

from . import LORA_LR, MethodSpec

SPEC = MethodSpec(
    name="orpo",
    description="Odds Ratio Preference Optimization on pairs, reference-free (trl.experimental.orpo)",
    form="paired",
    config="trl.experimental.orpo:ORPOConfig",
    trainer="trl.experimental.orpo:ORPOTrainer",
    # ORPOTrainer's pair collator needs every column; it turns this off itself, with a notice each run
    defaults={"beta": 0.1, "remove_unused_columns": False},
    # lambda: the ORPO paper's 0.1 (TRL default) up to 1.0 (its Mistral runs used 0.05-0.2; more is stronger
    # preference pressure against the SFT term)
    search={"learning_rate": LORA_LR, "beta": {"low": 0.05, "high": 1.0, "log": True}},
)

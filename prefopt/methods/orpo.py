"""ORPO (Hong et al., 2024): SFT plus an odds-ratio penalty, no reference model."""

from . import MethodSpec

SPEC = MethodSpec(
    name="orpo",
    description="Odds Ratio Preference Optimization on pairs, reference-free (trl.experimental.orpo)",
    form="paired",
    config="trl.experimental.orpo:ORPOConfig",
    trainer="trl.experimental.orpo:ORPOTrainer",
    # ORPOTrainer's pair collator needs every column; it turns this off itself, with a notice each run
    defaults={"beta": 0.1, "remove_unused_columns": False},
)

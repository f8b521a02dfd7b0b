"""ORPO (Hong et al., 2024): SFT plus an odds-ratio penalty, no reference model."""

from . import MethodSpec

SPEC = MethodSpec(
    name="orpo",
    description="Odds Ratio Preference Optimization on pairs, reference-free (trl.experimental.orpo)",
    form="paired",
    config="trl.experimental.orpo:ORPOConfig",
    trainer="trl.experimental.orpo:ORPOTrainer",
    defaults={"beta": 0.1},
)

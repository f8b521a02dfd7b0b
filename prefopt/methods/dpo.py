"""DPO (Rafailov et al., 2023): pairs of chosen/rejected completions against a frozen reference."""

from . import MethodSpec

SPEC = MethodSpec(
    name="dpo",
    description="Direct Preference Optimization on (prompt, chosen, rejected) pairs (trl.DPOTrainer)",
    form="paired",
    config="trl:DPOConfig",
    trainer="trl:DPOTrainer",
    defaults={"beta": 0.1},
)

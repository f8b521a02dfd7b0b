"""DPO (Rafailov et al., 2023): pairs of chosen/rejected completions against a frozen reference."""

from . import LORA_LR, MethodSpec

SPEC = MethodSpec(
    name="dpo",
    description="Direct Preference Optimization on (prompt, chosen, rejected) pairs (trl.DPOTrainer)",
    form="paired",
    config="trl:DPOConfig",
    trainer="trl:DPOTrainer",
    defaults={"beta": 0.1},
    # beta: DPO's 0.1 (TRL default); the HF preference-tuning study swept 0.01-0.9, best results 0.01-0.1
    search={"learning_rate": LORA_LR, "beta": {"low": 0.02, "high": 0.5, "log": True}},
)

"""Supervised fine-tuning on the desirable completions only: the baseline a preference method must beat
(the KTO paper's comparison). Scored like every method: its reward is still log pi_theta - log pi_ref."""

from . import LORA_LR, MethodSpec

SPEC = MethodSpec(
    name="sft",
    description="supervised fine-tuning on the desirable completions only, the baseline (trl.SFTTrainer)",
    form="desirable",
    config="trl:SFTConfig",
    trainer="trl:SFTTrainer",
    # loss on completion tokens only (TRL's default for prompt-completion rows, stated so it cannot drift)
    defaults={"completion_only_loss": True},
    # SFT has no preference parameter: the learning rate alone
    search={"learning_rate": LORA_LR},
)

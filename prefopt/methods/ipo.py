"""IPO (Azar et al., 2023): DPO's squared loss on the log-ratio margin, which does not drive it to
infinity on deterministic preferences; TRL length-normalises it, and its beta is IPO's tau."""

from . import LORA_LR, MethodSpec

SPEC = MethodSpec(
    name="ipo",
    description="Identity Preference Optimization on pairs, with reference (trl.DPOTrainer, loss ipo)",
    form="paired",
    config="trl:DPOConfig",
    trainer="trl:DPOTrainer",
    # beta is IPO's tau: the loss pulls the length-normalised log-ratio margin towards 1/(2 tau); 0.5 puts that
    # target at 1 nat per token, the scale of SimPO's per-token margins (TRL's 0.1 would target 5)
    defaults={"beta": 0.5},
    fixed={"loss_type": ["ipo"]},
    # tau: margin target 1/(2 tau) from 5 down to 0.5 nats per token (the IPO paper leaves tau to the user;
    # the HF study's best IPO runs had tau 0.1-0.9)
    search={"learning_rate": LORA_LR, "beta": {"low": 0.1, "high": 1.0, "log": True}},
)

"""SimPO (Meng et al., 2024): reference-free, length-normalised log-likelihood margin with a target
margin gamma/beta; pure SimPO (no behaviour-cloning term), through TRL's CPO trainer."""

from . import LORA_LR, MethodSpec

SPEC = MethodSpec(
    name="simpo",
    description="Simple Preference Optimization on pairs, reference-free (trl.experimental.cpo, loss simpo)",
    form="paired",
    config="trl.experimental.cpo:CPOConfig",
    trainer="trl.experimental.cpo:CPOTrainer",
    # the paper's instruct-model settings: beta 2.0-2.5, gamma/beta about 0.5 (TRL's simpo_gamma is gamma)
    defaults={"beta": 2.0, "simpo_gamma": 1.0, "remove_unused_columns": False},
    # cpo_alpha > 0 adds CPO's NLL term (CPO-SimPO); pure SimPO needs 0
    fixed={"loss_type": "simpo", "cpo_alpha": 0.0},
    # the SimPO paper tuned beta over 2-10 and the margin gamma over 0.3-1.6 nats; its released configs keep
    # gamma/beta near 0.5, so gamma is drawn as a multiple of beta, 0.1-1.0 of it
    search={"learning_rate": LORA_LR, "beta": {"low": 1.0, "high": 10.0, "log": True},
            "simpo_gamma": {"per": "beta", "low": 0.1, "high": 1.0}},
)

"""SimPO (Meng et al., 2024): reference-free, length-normalised log-likelihood margin with a target
margin gamma/beta; pure SimPO (no behaviour-cloning term), through TRL's CPO trainer."""

from . import MethodSpec

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
)

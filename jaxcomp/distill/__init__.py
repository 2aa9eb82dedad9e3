"""Knowledge distillation: pure loss functions over logits and features,
feature capture for linen and NNX models, a jitted teacher/student step,
teacher-output caching, and the experiment family hook.

Example:
    >>> import jax.numpy as jnp
    >>> import jaxcomp.distill as kd
    >>> z = jnp.array([[2.0, 0.0, -1.0]])
    >>> float(kd.soft_target_kl(z, z, temperature=20.0))
    0.0
"""

from jaxcomp.distill.attention import attention_map, attention_transfer
from jaxcomp.distill.augment import jitter
from jaxcomp.distill.cache import cached_extra_batch, teacher_outputs
from jaxcomp.distill.capture import FeatureModel, capture, feature_shapes
from jaxcomp.distill.dist import dist_loss
from jaxcomp.distill.dkd import dkd_loss, dkd_terms
from jaxcomp.distill.epochs import fit_scan, make_data_epoch
from jaxcomp.distill.hint import hint_loss, init_projection, project
from jaxcomp.distill.lm import distill_lm, lm_distill_loss, states_forward, with_hidden_states
from jaxcomp.distill.logits import hard_cross_entropy, kd_loss, logit_mse, soft_target_kl
from jaxcomp.distill.objective import (
    METHODS,
    distill_term,
    logit_objective,
    loss_state,
    make_loss_fn,
)
from jaxcomp.distill.relational import rkd_angle, rkd_distance, rkd_loss
from jaxcomp.distill.similarity import pkt_loss, sp_loss
from jaxcomp.distill.step import FEATURE_LOSSES, Distiller, FeatureTerm, distiller

__all__ = [
    "Distiller", "FEATURE_LOSSES", "FeatureModel", "FeatureTerm", "METHODS", "attention_map",
    "attention_transfer", "cached_extra_batch", "capture", "dist_loss", "distill_lm",
    "distill_term", "distiller", "dkd_loss", "dkd_terms", "feature_shapes", "fit_scan",
    "hard_cross_entropy", "hint_loss", "init_projection", "jitter", "kd_loss",
    "lm_distill_loss", "logit_mse", "logit_objective", "loss_state", "make_data_epoch",
    "make_loss_fn", "pkt_loss", "project", "rkd_angle", "rkd_distance", "rkd_loss",
    "soft_target_kl", "sp_loss", "states_forward", "teacher_outputs", "with_hidden_states",
]

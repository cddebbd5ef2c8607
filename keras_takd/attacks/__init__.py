"""Adversarial attacks on Keras models that return logits.

Carlini & Wagner's L2, L0 and L-infinity attacks (arXiv:1608.04644), the Fast Minimum-Norm
attack (FMN, arXiv:2102.12827), projected gradient descent (arXiv:1706.06083), Auto-PGD with the
CE and DLR losses (arXiv:2003.01690), the fast gradient sign method (arXiv:1412.6572) and the
Jacobian-based saliency map attack (JSMA, arXiv:1511.07528), batched and compiled with
`tf.function`. Every attack returns an `AttackResult`; `all_targets` runs a targeted attack
towards every wrong class and reports C&W's best, average and worst case; `autoattack_lite` runs
APGD-CE then APGD-T (AutoAttack without FAB and Square).
"""

from keras_takd.attacks.all_targets import AllTargetsResult, all_targets
from keras_takd.attacks.apgd import apgd
from keras_takd.attacks.autoattack_lite import AutoAttackLiteResult, autoattack_lite
from keras_takd.attacks.carlini_wagner.l0 import carlini_wagner_l0
from keras_takd.attacks.carlini_wagner.l2 import carlini_wagner_l2
from keras_takd.attacks.carlini_wagner.linf import carlini_wagner_linf
from keras_takd.attacks.common import AttackResult
from keras_takd.attacks.fast_gradient_sign import fast_gradient_sign
from keras_takd.attacks.fast_minimum_norm import fast_minimum_norm
from keras_takd.attacks.jacobian_saliency_map import jacobian_saliency_map
from keras_takd.attacks.projected_gradient_descent import pgd_perturb, projected_gradient_descent

__all__ = [
    "AllTargetsResult",
    "AttackResult",
    "AutoAttackLiteResult",
    "all_targets",
    "apgd",
    "autoattack_lite",
    "carlini_wagner_l0",
    "carlini_wagner_l2",
    "carlini_wagner_linf",
    "fast_gradient_sign",
    "fast_minimum_norm",
    "jacobian_saliency_map",
    "pgd_perturb",
    "projected_gradient_descent",
]

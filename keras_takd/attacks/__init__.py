"""Adversarial attacks on Keras models that return logits.

Carlini & Wagner's L2, L0 and L-infinity attacks (arXiv:1608.04644), projected gradient descent
(arXiv:1706.06083) and the fast gradient sign method (arXiv:1412.6572), batched and compiled
with `tf.function`. Every attack returns an `AttackResult`.
"""

from keras_takd.attacks.common import AttackResult

__all__ = ["AttackResult"]

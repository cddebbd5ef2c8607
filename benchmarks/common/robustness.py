"""Robust accuracy under cross-entropy and DLR attacks: the gradient-masking check.

PGD-CE (Madry et al., arXiv:1706.06083; step 0.01, random start) and APGD with the CE and
the scale-invariant DLR loss (Croce & Hein, arXiv:2003.01690), on the same images. A model
whose robustness under CE vanishes under DLR masks its gradients.
"""

from __future__ import annotations

import numpy as np

from common.timing import timed

ATTACKS = ("pgd_ce", "apgd_ce", "apgd_dlr")


def attack_all(model, x, y, eps: float, steps: int):
    """Per image, whether each attack fooled `model` within L-inf `eps` (same images, order).

    Args:
        model: a Keras model returning logits.
        x: images in [0, 1]; `y` their labels.
        eps: the L-inf radius.
        steps: the steps of every attack.

    Returns:
        `(fooled, seconds)`: `{attack: bool [N]}` and `{attack: Timing.as_dict()}`, for the
        attacks of `ATTACKS`.
    """
    from keras_takd import attacks

    runs = {
        "pgd_ce": lambda: attacks.projected_gradient_descent(model, x, y, eps, 0.01, steps),
        "apgd_ce": lambda: attacks.apgd(model, x, y, eps, loss="ce", steps=steps),
        "apgd_dlr": lambda: attacks.apgd(model, x, y, eps, loss="dlr", steps=steps),
    }
    fooled, seconds = {}, {}
    for name, run in runs.items():
        with timed() as timing:
            fooled[name] = np.asarray(run().success, bool)
        seconds[name] = timing.as_dict()
    return fooled, seconds

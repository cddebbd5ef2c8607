"""foolbox 3.3.4's Fast Minimum-Norm attacks (L2FMNAttack, LInfFMNAttack, L0FMNAttack).

The peer of keras_takd's `fast_minimum_norm` in `fmn_vs_cw.py` (arXiv:2102.12827), run on a
Keras 3 model through foolbox's `TensorFlowModel` (TF eager, via eagerpy). foolbox is not a
dependency: install it into a folder of its own and pass that folder as `--foolbox_path`:
`pip install --no-deps --target /work/tmp/foolbox_env foolbox==3.3.4 eagerpy GitPython gitdb smmap`.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
from common.counting import CountingModel
from common.timing import timed

FOOLBOX_CLASSES = {"l2": "L2FMNAttack", "linf": "LInfFMNAttack", "l0": "L0FMNAttack"}


def require(foolbox_path: str) -> None:
    """Checks that foolbox imports from `foolbox_path` (or the environment).

    Raises:
        ValueError: it does not, with the command that installs it.
    """
    sys.path.insert(0, foolbox_path)
    try:
        import foolbox  # noqa: F401
    except ImportError as error:
        raise ValueError(
            f"--foolbox_path: cannot import foolbox from {foolbox_path} ({error}); "
            "pip install --no-deps --target <folder> foolbox==3.3.4 eagerpy GitPython gitdb "
            "smmap, or leave it out with --skip=foolbox"
        ) from None


def run_foolbox(norm: str, model, x, y, steps: int, foolbox_path: str) -> dict[str, Any]:
    """foolbox's FMN on a Keras 3 model through its TensorFlowModel (eager)."""
    sys.path.insert(0, foolbox_path)
    import foolbox
    import tensorflow as tf

    counting = CountingModel(model)
    fmodel = foolbox.TensorFlowModel(counting, bounds=(0.0, 1.0))
    attack = getattr(foolbox.attacks, FOOLBOX_CLASSES[norm])(steps=steps)
    with timed() as timing:
        _, advs, _ = attack(fmodel, tf.constant(x), tf.constant(y), epsilons=None)
    x_adv = np.asarray(advs.numpy() if hasattr(advs, "numpy") else advs, np.float32)
    from keras_takd.attacks.common import finalize_result

    # Verified like ours: classified by the model, distances of the returned images.
    result = finalize_result(model, x, x_adv, y, targeted=False, target=None, const=np.nan)
    distance = {"l2": result.l2, "linf": result.linf, "l0": result.l0}[norm]
    return {
        "success": result.success.tolist(),
        "distance": distance.astype(np.float64).tolist(),
        "timing": timing.as_dict(),
        "passes": counting.snapshot(),
        "version": foolbox.__version__,
    }

"""ART 1.20's Carlini-Wagner attacks (CarliniL2Method, CarliniL0Method, CarliniLInfMethod).

The reference runner of `cw_speed_vs_references.py`: the Adversarial Robustness Toolbox
(github.com/Trusted-AI/adversarial-robustness-toolbox) through a `TensorFlowV2Classifier`,
with keras_takd's settings translated to ART's arguments. ART is not a dependency of
keras_takd: `pip install adversarial-robustness-toolbox==1.20.1`.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from common.environment import require_package
from common.reports import attack_summary
from common.timing import BudgetExceeded, timed

# ART's L0 runs a full binary search over c in each pixel-freezing round; the original has none.
ART_L0_BINARY_STEPS = 5
ART_CLASSES = {"l2": "CarliniL2Method", "l0": "CarliniL0Method", "linf": "CarliniLInfMethod"}


def require() -> None:
    """Checks that art imports; ValueError with how to install it if not."""
    require_package(
        "art", "pip install adversarial-robustness-toolbox==1.20.1", "leave it out with --skip=art"
    )


def _art_attack(kind, classifier, settings, n):
    """ART's attack of `kind` with the shared `settings`, for batches of `n` images."""
    from art.attacks import evasion

    common = dict(targeted=False, verbose=False)
    if kind == "l2":
        return evasion.CarliniL2Method(
            classifier,
            confidence=settings["confidence"],
            learning_rate=settings["learning_rate"],
            binary_search_steps=settings["binary_search_steps"],
            max_iter=settings["max_iterations"],
            initial_const=settings["initial_const"],
            batch_size=n,
            **common,
        )
    if kind == "l0":
        return evasion.CarliniL0Method(
            classifier,
            confidence=settings["confidence"],
            learning_rate=settings["learning_rate"],
            binary_search_steps=ART_L0_BINARY_STEPS,
            max_iter=settings["max_iterations"],
            initial_const=settings["initial_const"],
            warm_start=True,
            batch_size=n,
            **common,
        )
    return evasion.CarliniLInfMethod(
        classifier,
        confidence=settings["confidence"],
        learning_rate=settings["learning_rate"],
        max_iter=settings["max_iterations"],
        decrease_factor=settings["decrease_factor"],
        initial_const=settings["initial_const"],
        largest_const=settings["largest_const"],
        const_factor=2.0,
        batch_size=1,
        **common,
    )


def run_art(kind, model, x, y, settings, budget_s: float) -> dict[str, Any]:
    """Runs ART's attack on `x` (L2/L0 in one batch, L-inf one image at a time, as ART does).

    ART's `_loss_gradient` is wrapped to count optimiser rows and to stop the run once
    `budget_s` has passed; a stopped run is reported with `finished: False`.
    """
    import keras
    from art.attacks.evasion import carlini
    from art.estimators.classification import TensorFlowV2Classifier

    classifier = TensorFlowV2Classifier(
        model=model,
        nb_classes=10,
        input_shape=x.shape[1:],
        clip_values=(0.0, 1.0),
        loss_object=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    counter = {"rows": 0, "deadline": float("inf")}
    originals = {}
    for cls in (carlini.CarliniL2Method, carlini.CarliniLInfMethod):
        originals[cls] = cls.__dict__["_loss_gradient"]

        def counted(self, z_logits, *args, _original=originals[cls], **kwargs):
            if time.perf_counter() > counter["deadline"]:
                raise BudgetExceeded
            counter["rows"] += int(np.shape(z_logits)[0])
            return _original(self, z_logits, *args, **kwargs)

        cls._loss_gradient = counted
    model.reset()
    model.count_eager = True  # ART computes its gradients eagerly
    x_adv, finished, done = x.copy(), True, 0
    try:
        per_image = kind == "linf"
        attack = _art_attack(kind, classifier, settings, 1 if per_image else len(x))
        counter["deadline"] = time.perf_counter() + budget_s
        with timed() as t:
            try:
                if per_image:
                    for i in range(len(x)):
                        x_adv[i : i + 1] = attack.generate(x[i : i + 1], y=y[i : i + 1])
                        done += 1
                else:
                    x_adv = attack.generate(x, y=y)
                    done = len(x)
            except BudgetExceeded:
                finished = False
    finally:
        model.count_eager = False
        for cls, original in originals.items():
            cls._loss_gradient = original
    counts = model.snapshot()
    extra = {
        "art_class": ART_CLASSES[kind],
        "art_batch_size": 1 if kind == "linf" else len(x),
        "finished": finished,
        "images_finished": done,
        "budget_s": budget_s,
        "model_passes": counts,
        "optimizer_image_iterations": counter["rows"],
        "optimizer_image_iterations_per_s": counter["rows"] / t.wall_s,
        "model_backward_rows_per_s": counts["backward_rows"] / t.wall_s,
    }
    if kind == "l0":
        extra["art_binary_search_steps"] = ART_L0_BINARY_STEPS
    if not finished:
        # Unfinished images keep their original; only finished ones count for quality.
        x_adv[done:] = x[done:]
    logits = model.model.predict(x_adv, batch_size=500, verbose=0)
    success = np.argmax(logits, axis=-1) != y
    if not finished:
        success[done:] = False
    return attack_summary(kind, x, x_adv, success, t, extra)

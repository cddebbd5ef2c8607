"""cleverhans 4's tf2 `carlini_wagner_l2`, the reference that does not run under Keras 3.

The reference runner of `cw_speed_vs_references.py`: it records the exact error cleverhans
raises (or its results, where it runs). cleverhans is not a dependency of keras_takd:
`pip install cleverhans==4.0.0`.
"""

from __future__ import annotations

import time
import traceback
from typing import Any

import numpy as np
from common.environment import require_package
from common.reports import attack_summary
from common.timing import BudgetExceeded, timed


def require() -> None:
    """Checks that cleverhans imports; ValueError with how to install it if not."""
    require_package(
        "cleverhans", "pip install cleverhans==4.0.0", "leave it out with --skip=cleverhans"
    )


class _DeadlineModel:
    """Raises `BudgetExceeded` when called (eagerly) after a deadline."""

    def __init__(self, model, budget_s: float):
        self.model = model
        self.deadline = time.perf_counter() + budget_s

    def __call__(self, x, **kwargs):
        if time.perf_counter() > self.deadline:
            raise BudgetExceeded
        return self.model(x, **kwargs)


def run_cleverhans(model, x, y, settings, budget_s: float) -> dict[str, Any]:
    """cleverhans 4's tf2 carlini_wagner_l2 with the shared L2 settings, or the error it raises."""

    record: dict[str, Any] = {"library": "cleverhans"}
    model.reset()
    model.count_eager = True
    try:
        from cleverhans.tf2.attacks.carlini_wagner_l2 import carlini_wagner_l2 as cw_l2

        wrapped = _DeadlineModel(model, budget_s)
        with timed() as t:
            x_adv = cw_l2(
                wrapped,
                x,
                y=y,
                targeted=False,
                batch_size=len(x),
                clip_min=0.0,
                clip_max=1.0,
                binary_search_steps=settings["binary_search_steps"],
                max_iterations=settings["max_iterations"],
                abort_early=settings["abort_early"],
                confidence=settings["confidence"],
                initial_const=settings["initial_const"],
                learning_rate=settings["learning_rate"],
            )
    except BudgetExceeded:
        return record | {"runs": False, "error": f"stopped after the {budget_s} s budget"}
    except Exception as error:  # noqa: BLE001 - the exact error is the result here
        lines = traceback.format_exception(error)
        return record | {
            "runs": False,
            "error": f"{type(error).__name__}: {error}",
            "traceback_tail": "".join(lines[-6:]),
        }
    finally:
        model.count_eager = False
    x_adv = np.asarray(x_adv, np.float32)
    counts = model.snapshot()
    logits = model.model.predict(x_adv, batch_size=500, verbose=0)
    success = np.argmax(logits, axis=-1) != y
    x_adv = np.where(success[:, None, None, None], x_adv, x)
    extra = {
        "runs": True,
        "batch_size": len(x),
        "model_passes": counts,
        "optimizer_image_iterations": counts["backward_rows"],
        "optimizer_image_iterations_per_s": counts["backward_rows"] / t.wall_s,
        "model_backward_rows_per_s": counts["backward_rows"] / t.wall_s,
    }
    return record | attack_summary("l2", x, x_adv, success, t, extra)

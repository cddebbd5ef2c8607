"""The indicator units: each attack's attacked images checked for the indicators of failure.

Pintor et al., "Indicators of Attack Failure" (arXiv:2106.09947): after an attack unit, its
indicator unit `<attack>_indicators` flags, per attacked image, silent success, incomplete
optimisation, vanishing gradients and unconstrained failure (`schema.INDICATORS`). An
indicator unit is computed from its attack unit's content and counts only beside the attack
unit it was computed from (`same_indicators`); its settings are recorded in it, so a change of
them recomputes it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from keras_takd.takd.evaluation.config import FIXED_ARGUMENTS
from keras_takd.takd.schema import APGD_ATTACKS, INDICATORS, JSMA_ATTACK

INDICATOR_SUFFIX = "_indicators"
# The settings of the indicator units; recorded in each, which is recomputed if they change.
# "precision": the vanishing-gradient check's gradients are float64 (units cached before it
# was, with float32 gradients that gave other flags with and without oneDNN, lack it).
INDICATOR_SETTINGS = {
    "loss": "margin",
    "threshold": 1e-10,
    "precision": "float64",
    "unconstrained": "the attack's own failures (a minimal-norm attack's budget is unbounded)",
}
# APGD's: the attack itself, with its own loss, at an eps covering the whole box.
APGD_INDICATOR_SETTINGS = INDICATOR_SETTINGS | {
    "unconstrained": "APGD with its own loss at eps = the box width, from the clean image",
    "unconstrained_steps": 100,
}


def indicator_settings(attack: str) -> dict:
    """The settings of `attack`'s indicator unit (recorded in it; a change recomputes it)."""
    return APGD_INDICATOR_SETTINGS if attack in APGD_ATTACKS else INDICATOR_SETTINGS


def has_indicators(attack: str) -> bool:
    """Whether `attack`'s units are checked by an indicator unit: every attack's but JSMA's,
    whose per-image record is per (image, target) pair and which has no loss to check."""
    return attack != JSMA_ATTACK


def indicator_unit(attack: str) -> str:
    """The name of the unit that checks `attack`'s images for the indicators of failure."""
    return attack + INDICATOR_SUFFIX


def indicated_attack(kind: str) -> str | None:
    """The attack an indicator unit `kind` checks, or None if `kind` is no indicator unit."""
    return kind.removesuffix(INDICATOR_SUFFIX) if kind.endswith(INDICATOR_SUFFIX) else None


def same_indicators(cached: Mapping, done: Mapping, attack: str) -> bool:
    """An indicator unit counts only beside the attack unit it was computed from."""
    return attack in done and done[attack].get("checksum") == cached.get("attack_checksum")


def indicator_flags(
    attack: str, target, x: np.ndarray, y: np.ndarray, attack_unit: Mapping
) -> dict:
    """The indicators of attack failure (`schema.INDICATORS`) on the images `attack` attacked.

    Silent success comes from the attack unit's record of what its search found (None for
    units written before it was recorded), incomplete optimisation from its record of the last
    solve. The gradient check uses the attack's target (softmax(logits / T) for the
    gradient-masking one). Unconstrained failure (Pintor et al.: the attack itself, with an
    unbounded budget, fails) is the attack's own failures for the minimal-norm attacks (C&W,
    FMN), whose budget is unbounded already; for the fixed-budget APGD it is the same APGD (its
    own loss, CE or DLR) at eps = the box width, started at the clean image. (A cross-entropy
    PGD stand-in would test PGD's cross-entropy, which saturates on the logits of a model
    trained at high T, not the attack: it flagged APGD-DLR on images APGD-DLR had fooled.)

    Args:
        attack: the checked attack's prefix (e.g. "l2", "l2_softmax_T", "apgd_ce").
        target: what the attack attacked (the model, or softmax(logits / T)).
        x: the images of the attack unit's block.
        y: their labels.
        attack_unit: the cached attack unit ("per_image" with block-relative "index").

    Returns:
        The indicator unit's content: "index", "flags" (indicator -> per attacked image bool,
        or None if not checked), "settings" and the attack unit's "attack_checksum".
    """
    per = attack_unit["per_image"] or {}
    index = np.asarray(per.get("index", []), np.int64)
    flags: dict[str, list | None] = dict.fromkeys(INDICATORS)
    if index.size:
        flags |= _flags(attack, target, x[index], y[index], per)
    return {
        "index": index.tolist(),
        "flags": flags,
        "settings": indicator_settings(attack),
        "attack_checksum": attack_unit["checksum"],
    }


def _flags(attack: str, target, x: np.ndarray, y: np.ndarray, per: Mapping) -> dict:
    """The flags of the attacked images `x` (see `indicator_flags`)."""
    from keras_takd import attacks  # TensorFlow: only when computing
    from keras_takd.attacks import indicators

    flags = {}
    if per.get("found") is not None:
        flags["silent_success"] = (
            np.asarray(per["found"], bool) & ~np.asarray(per["success"], bool)
        ).tolist()
    if per.get("incomplete") is not None:
        flags["incomplete_optimization"] = list(per["incomplete"])
    flags["vanishing_gradients"] = indicators.vanishing_gradients(
        target, x, y, loss=INDICATOR_SETTINGS["loss"], threshold=INDICATOR_SETTINGS["threshold"]
    ).tolist()
    if attack in APGD_ATTACKS:
        unbounded = attacks.apgd(
            target,
            x,
            y,
            eps=1.0,  # the [0, 1] box's width: every image in the box is allowed
            loss=FIXED_ARGUMENTS[attack]["loss"],
            steps=APGD_INDICATOR_SETTINGS["unconstrained_steps"],
            random_start=False,
        )
        flags["unconstrained_failure"] = (~unbounded.success).tolist()
    else:
        flags["unconstrained_failure"] = (~np.asarray(per["success"], bool)).tolist()
    return flags


def indicator_counts(attack: str, flags: Mapping[str, list | None]) -> dict[str, float]:
    """`<attack>_<indicator>` columns: how many images tripped each (NaN if not checked)."""
    return {
        f"{attack}_{name}": math.nan if flags.get(name) is None else int(sum(flags[name]))
        for name in INDICATORS
    }


def indicator_warnings(
    row: Mapping, kind: str, value: Mapping, explained: set[str] | None = None
) -> list[str]:
    """One warning line per indicator that tripped on a just-computed indicator unit.

    Args:
        row: the model's results row.
        kind: the unit's kind (lines only for indicator units).
        value: the unit.
        explained: the indicators already explained in this evaluation; an indicator's
            explanation follows its first warning only, and it is added here.
    """
    attack = indicated_attack(kind)
    if attack is None:
        return []
    explained = set() if explained is None else explained
    where = f"{row['dataset']} T={float(row['temperature']):g} stage {int(row['stage'])}"
    lines = []
    counts = indicator_counts(attack, value["flags"]).values()
    for name, count in zip(INDICATORS, counts, strict=True):
        if not pd.isna(count) and count > 0:
            line = (
                f"warning: {where} {attack}: indicator of attack failure '{name}' tripped on "
                f"{count} of {len(value['index'])} attacked images"
            )
            if name not in explained:
                explained.add(name)
                line += f" ({INDICATORS[name]}); its robustness numbers may overstate the model"
            lines.append(line)
    return lines

"""Papernot et al.'s claim (arXiv:1511.04508, claim 10 of `keras_takd.takd.analysis.claims`):
distillation at a high T cuts the adversarial success rate (95.89% -> 0.45% on MNIST). Ours:
C&W L2 success within the L2 budget, T = 1 teacher vs the highest-T student, on the same
images where per-image data exist; agrees if it falls by more than half.
"""

from __future__ import annotations

import dataclasses
import math

import pandas as pd

from keras_takd.core import statistics
from keras_takd.takd.analysis.claims.common import (
    Claim,
    Context,
    interval_text,
    no_data,
    pct,
    success_of,
)

PAPERNOT_CLAIM = "distillation at high T cuts the adversarial success rate"
PAPERNOT_QUOTE = (
    'abstract: "The study shows that defensive distillation can reduce effectiveness of '
    'sample creation from 95% to less than 0.5% on a studied DNN." (95.89% -> 0.45%: JSMA, '
    "MNIST, T = 100)"
)


def papernot_claims(ctx: Context) -> list[Claim]:
    """Claim 10 for the dataset of `ctx` (one claim, or "no data")."""
    column, source = "l2_budget_success_rate", "Papernot et al."
    sweep = ctx.sweep
    test = "success within the budget at the highest T < half the T = 1 teacher's (95% CI)"
    if column not in sweep or sweep[column].isna().all():
        return [no_data(source, PAPERNOT_CLAIM, "", test, "no data", PAPERNOT_QUOTE)]
    rows = sweep.dropna(subset=[column])
    base = rows[(rows["stage"] == 1) & (rows["temperature"] == rows["temperature"].min())]
    last = rows[rows["stage"] == rows["stage"].max()]
    last = last[last["temperature"] == last["temperature"].max()]
    if base.empty or last.empty:
        return [no_data(source, PAPERNOT_CLAIM, "", test, "no data", PAPERNOT_QUOTE)]
    base, last = base.iloc[0], last.iloc[0]
    if last["temperature"] <= max(base["temperature"], 1.0):  # no distillation at a high T
        return [no_data(source, PAPERNOT_CLAIM, "", test, "no T above 1", PAPERNOT_QUOTE)]
    budget = float(base.get("l2_budget", math.nan))
    images = ctx.images("l2")
    if images is not None:
        within = {}
        for key, row in (("base", base), ("last", last)):
            chosen = images[
                (images["temperature"] == row["temperature"]) & (images["stage"] == row["stage"])
            ].set_index("image")
            within[key] = chosen["success"] & (chosen["distance"] <= budget)
            within[key] = within[key].where(chosen["correct"])
        pair = pd.DataFrame(within).dropna().astype(float)
        estimate = statistics.paired_difference(
            pair["last"], 0.5 * pair["base"], ctx.ci_level, ctx.seed
        )
        before, after = pair["base"].mean(), pair["last"].mean()
        n = str(estimate.n)
    else:
        first, second = success_of(base, "l2", ctx, True), success_of(last, "l2", ctx, True)
        half = dataclasses.replace(
            first, estimate=first.estimate / 2, low=first.low / 2, high=first.high / 2
        )
        estimate = statistics.proportion_difference(second, half, ctx.ci_level)
        before, after, n = first.estimate, second.estimate, str(min(first.n, second.n))
    return [
        Claim(
            source,
            PAPERNOT_CLAIM,
            "95.89% -> 0.45% (JSMA, MNIST, T = 100)",
            f"C&W L2 within {budget:g}: {pct(before)} (T = {base['temperature']:g} teacher) "
            f"-> {pct(after)} (T = {last['temperature']:g}, stage {int(last['stage'])})",
            interval_text(estimate, 3) + " (after - before / 2)",
            n,
            test,
            statistics.verdict(estimate, "negative"),
            PAPERNOT_QUOTE,
        )
    ]

"""Croce & Hein's claim (arXiv:2003.01690, claim 12 of `keras_takd.takd.analysis.claims`), when
the evaluation ran APGD-CE and APGD-DLR at the same eps: cross-entropy attacks underrate a
distilled model and the logit-scale-invariant DLR loss does not, so at the highest T APGD-DLR
fools more images than APGD-CE, every stage, on the same images (McNemar).
"""

from __future__ import annotations

import numpy as np

from keras_takd.core import statistics
from keras_takd.takd import schema
from keras_takd.takd.analysis.claims.common import (
    Claim,
    Context,
    interval_text,
    no_data,
    pct,
    success_differences,
)

APGD_CLAIM = "cross-entropy attacks underrate a distilled model; APGD-DLR does not"
APGD_QUOTE = (
    'abstract: "In this paper we first propose two extensions of the PGD-attack overcoming '
    'failures due to suboptimal step size and problems of the objective function."'
)


def croce_hein_claims(ctx: Context) -> list[Claim]:
    """Claim 12, only when both APGD attacks ran (at one eps) on the highest T's models."""
    columns = [f"{a}_{c}" for a in schema.APGD_ATTACKS for c in ("success_rate", "eps")]
    if not all(c in ctx.sweep and ctx.sweep[c].notna().any() for c in columns):
        return []
    rows = ctx.sweep.dropna(subset=columns)
    high = rows[rows["temperature"] == rows["temperature"].max()]
    source, test = (
        "Croce & Hein",
        "APGD-DLR success - APGD-CE success > 0 at the highest T, every stage",
    )
    if not np.allclose(high["apgd_ce_eps"], high["apgd_dlr_eps"]):
        why = "APGD-CE and APGD-DLR ran at other eps"
        return [no_data(source, APGD_CLAIM, "", test, why, APGD_QUOTE)]
    dlr, ce, differences = success_differences(ctx, high, "apgd_dlr", "apgd_ce")
    return [
        Claim(
            source,
            APGD_CLAIM,
            "CE-based attacks look weaker on distilled models",
            f"T = {high['temperature'].iloc[0]:g}, eps = {high['apgd_ce_eps'].iloc[0]:g}: "
            f"APGD-DLR fools {', '.join(pct(d.estimate) for d in dlr)} vs APGD-CE "
            f"{', '.join(pct(c.estimate) for c in ce)} (per stage)",
            ", ".join(interval_text(d, 2) for d in differences),
            ", ".join(str(d.n) for d in differences),
            test,
            statistics.combine([statistics.verdict(d, "positive") for d in differences]),
            APGD_QUOTE,
        )
    ]

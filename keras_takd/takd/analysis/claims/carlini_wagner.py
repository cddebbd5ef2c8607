"""Carlini & Wagner's claims (arXiv:1608.04644, claim 11 of `keras_takd.takd.analysis.claims`):
distillation does not stop their attacks (the L2 attack on the logits succeeds on >= 95% of
the images of every model), and attacking softmax(logits / T) instead masks the gradient
(the same attack succeeds less often at the highest T).

Both are claims about every model ("successful on both distilled and undistilled neural
networks"), so over several seeds (issue 25) they stay per model: each model of each seed is
one more model that must hold, and the masking check pairs each model's two attacks on its own
seed's images (`common.success_differences`); no seeds are mixed and none is averaged.
"""

from __future__ import annotations

from keras_takd.core import statistics
from keras_takd.core.statistics import DISAGREES
from keras_takd.takd import schema
from keras_takd.takd.analysis.claims.common import (
    Claim,
    Context,
    interval_text,
    no_data,
    pct,
    success_differences,
    success_of,
)

CARLINI_CLAIM = "distillation does not stop the L2 attack on the logits"
MASKING_CLAIM = "attacking softmax(z / T) instead of the logits masks the gradient"
CARLINI_QUOTE = (
    'abstract: "In this paper, we demonstrate that defensive distillation does not '
    "significantly increase the robustness of neural networks by introducing three new attack "
    "algorithms that are successful on both distilled and undistilled neural networks with "
    '100% probability."'
)
MASKING_QUOTE = (
    "section VIII (Evaluating Defensive Distillation), in our words, not a quote: a distilled "
    "network's softmax saturates, so attacks that follow its gradient fail, while the same "
    "attack on the logits Z succeeds"
)


def carlini_wagner_claims(ctx: Context) -> list[Claim]:
    """Claim 11 for the dataset of `ctx`: the attack on the logits, then the masking check."""
    source, claims, df = "Carlini & Wagner", [], ctx.rows
    if "l2_success_rate" in df and df["l2_success_rate"].notna().any():
        rows = df.dropna(subset=["l2_success_rate"])
        rates = [success_of(row, "l2", ctx) for _, row in rows.iterrows()]
        verdicts = [statistics.within(r, 0.95, 1.0) for r in rates]
        verdict = DISAGREES if DISAGREES in verdicts else statistics.combine(verdicts)
        worst = min(rates, key=lambda r: r.estimate)
        claims.append(
            Claim(
                source,
                CARLINI_CLAIM,
                "100%",
                f"lowest {pct(worst.estimate)} of {len(rates)} models",
                interval_text(worst, 3) + " (lowest model)",
                str(worst.n) if worst.n else "unknown",
                "every model's success CI >= 95%",
                verdict,
                CARLINI_QUOTE,
            )
        )
    else:
        claims.append(no_data(source, CARLINI_CLAIM, "", "", "no l2 columns", CARLINI_QUOTE))
    masked = f"{schema.MASKED_L2_PREFIX}_success_rate"
    if masked in ctx.sweep and ctx.sweep[masked].notna().any():
        rows = ctx.sweep.dropna(subset=[masked])
        high = rows[rows["temperature"] == rows["temperature"].max()]
        softmax, logits, differences = success_differences(ctx, high, schema.MASKED_L2_PREFIX, "l2")
        verdicts = [statistics.verdict(d, "negative") for d in differences]
        claims.append(
            Claim(
                source,
                MASKING_CLAIM,
                "attack fails on the softmax of a distilled model",
                f"T = {high['temperature'].iloc[0]:g}: softmax(z/T) "
                f"{', '.join(pct(s.estimate) for s in softmax)} vs logits "
                f"{', '.join(pct(lg.estimate) for lg in logits)} "
                f"(per stage{' and seed' if len(ctx.seeds) > 1 else ''})",
                ", ".join(interval_text(d, 2) for d in differences),
                ", ".join(str(d.n) for d in differences),
                "softmax success - logits success < 0 at the highest T, every stage",
                statistics.combine(verdicts),
                MASKING_QUOTE,
            )
        )
    return claims

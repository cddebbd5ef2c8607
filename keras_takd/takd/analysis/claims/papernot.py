"""Papernot et al.'s claim (arXiv:1511.04508, claim 10 of `keras_takd.takd.analysis.claims`):
defensive distillation at a high T cuts the adversarial success rate, 95.89% -> 0.45% on MNIST
at T = 100 (their Table/Fig. 8 numbers, the abstract's "from 95% to less than 0.5%").

Their number is a JSMA result (arXiv:1511.07528, all 9 targets of each test image, theta = +1,
gamma = 14.5%, on the softmax F at T = 1 as the distilled network is deployed), so it is tested
with that attack on that protocol (`schema.JSMA_ATTACK`), per (image, target) attack pair:

* "distillation cuts JSMA's success rate": each distilled network (stage 2, distilled at T from
  the teacher trained at T, as theirs) against the normally trained network (the T = 1
  teacher), on the attack pairs attacked under both; exact McNemar on the discordant pairs,
  Holm over the temperatures, a bootstrap interval resampling images (the pairs of an image
  are not independent); agrees when it falls at every T;
* "to less than 0.5% at T = 100": the distilled network's success rate at T = 100 (or the
  highest T, said so), its Wilson interval over the pairs against the paper's 0.5%.

Beside them, the C&W L2 row answers another question, Carlini & Wagner's: does distillation
stop an attack built to get around it (L2 on the logits, within the L2 budget)? Agrees if its
success falls by more than half. Models of two run folders (e.g. the T = 1 teacher of one and
a T = 100 chain of another) pair up by test image; two runs whose JSMA rows imply different
labels for one image (different test sets) are refused.

Over several seeds (a `seed` column, issue 25) the JSMA claims are "no data", saying so: they
pair one T = 1 teacher with one distilled network on (image, target) pairs across run folders,
and no study has run JSMA on several seeds; the tables of one seed give them. The C&W L2 row is
made at the seed level: per seed, success within the budget at the highest T - half the
T = 1 teacher's, from that seed's own models and images; across seeds the mean and its
t-interval over seeds (`replicates.seed_mean`), agreeing when it lies below 0.
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
    mcnemar_text,
    mean_verdict,
    no_data,
    pct,
    per_seed_text,
    success_of,
)
from keras_takd.takd.analysis.replicates import seed_mean
from keras_takd.takd.analysis.statistics import (
    SEED_COLUMN,
    attack_pair_test,
    attacked,
    with_holm,
    with_seed,
)
from keras_takd.takd.schema import JSMA_ATTACK

SOURCE = "Papernot et al."
PAPERNOT_CLAIM = "distillation at high T cuts the adversarial success rate (C&W L2 in JSMA's place)"
JSMA_CLAIM = "distillation at high T cuts JSMA's success rate (the paper's attack and protocol)"
JSMA_FLOOR_CLAIM = "JSMA's success on the distilled network falls below 0.5% at T = 100"
PAPER = "95.89% -> 0.45% (JSMA, MNIST, T = 100)"
PAPER_T = 100.0
FLOOR = 0.005  # "less than 0.5%"
PAPERNOT_QUOTE = (
    'abstract: "The study shows that defensive distillation can reduce effectiveness of '
    'sample creation from 95% to less than 0.5% on a studied DNN." (95.89% -> 0.45%: JSMA, '
    "MNIST, T = 100)"
)


def papernot_claims(ctx: Context) -> list[Claim]:
    """Claim 10 for the dataset of `ctx`: JSMA as the paper ran it, then C&W L2 beside it;
    over several seeds JSMA's claims are "no data" and the C&W L2 row is made per seed."""
    seeds = max([ctx.seeds, ctx.image_seeds(JSMA_ATTACK)], key=len)
    if len(seeds) > 1:
        why = (
            f"{len(seeds)} seeds ({', '.join(map(str, seeds))}): this claim compares one "
            "chain's T = 1 teacher with its distilled network; needs the tables of one seed"
        )
        return [
            no_data(SOURCE, JSMA_CLAIM, PAPER, "", why, PAPERNOT_QUOTE),
            _seed_level_budget_claim(ctx),
        ]
    return [*_jsma_claims(ctx), _carlini_wagner_claim(ctx)]


def implied_labels(images: pd.DataFrame) -> pd.Series:
    """Each attacked image's true class as a targeted all-targets attack's rows imply it: the
    one class missing from its targets. Indexed by (temperature, stage, image).

    Args:
        images: per-image rows of one all-targets attack (a row per image and target).
    """
    rows = attacked(images)
    targets = rows.groupby(["temperature", "stage", "image"])["target"]
    classes = targets.count() + 1
    return classes * (classes - 1) // 2 - targets.sum()


def check_one_test_set(images: pd.DataFrame) -> None:
    """Raises ValueError unless every model's rows imply one label per image (one test set).

    Raises:
        ValueError: naming the image and the labels its rows imply.
    """
    labels = implied_labels(images).groupby(level="image")
    spread = labels.nunique()
    if (spread > 1).any():
        image = int(spread.index[(spread > 1).argmax()])
        found = sorted(labels.get_group(image).unique().tolist())
        raise ValueError(
            f"JSMA rows of test image {image} imply the labels {found}: expected models of one "
            "test set (the same images in the same order) to pair them image by image"
        )


def _model_rows(images: pd.DataFrame, temperature: float, stage: int) -> pd.DataFrame:
    return images[(images["temperature"] == temperature) & (images["stage"] == stage)]


def _jsma_claims(ctx: Context) -> list[Claim]:
    test = (
        "per T, distilled - T = 1 teacher success < 0 on the same (image, target) pairs: "
        "exact McNemar, Holm over the T; bootstrap CI resampling images"
    )
    images = ctx.images(JSMA_ATTACK)
    if images is None:
        why = "no JSMA rows: evaluate with --attacks=...,jsma"
        return [no_data(SOURCE, JSMA_CLAIM, PAPER, test, why, PAPERNOT_QUOTE)]
    check_one_test_set(images)
    base = _model_rows(images, 1.0, 1)
    distilled = sorted({t for t in images.loc[images["stage"] == 2, "temperature"] if t > 1})
    if base.empty or not distilled:
        why = "no T = 1 teacher" if base.empty else "no model distilled at T > 1"
        return [no_data(SOURCE, JSMA_CLAIM, PAPER, test, why, PAPERNOT_QUOTE)]
    tests = with_holm(
        {
            t: attack_pair_test(_model_rows(images, t, 2), base, ctx.ci_level, ctx.seed)
            for t in distilled
        }
    )
    before = attacked(base)["success"].mean()
    parts = [
        f"T = {t:g}: {pct(attacked(_model_rows(images, t, 2))['success'].mean())}, "
        f"{100 * test.difference.estimate:+.2f} points {interval_text(test.difference, 2, 100)} "
        f"({mcnemar_text(test)})"
        for t, test in tests.items()
    ]
    verdicts = [mean_verdict(t, "negative", 1 - ctx.ci_level) for t in tests.values()]
    return [
        Claim(
            SOURCE,
            JSMA_CLAIM,
            PAPER,
            f"T = 1 teacher {pct(before)} -> distilled (stage 2) " + "; ".join(parts),
            "per T, in points",
            ", ".join(f"{t.difference.n} pairs" for t in tests.values()),
            test,
            statistics.combine(verdicts),
            PAPERNOT_QUOTE,
        ),
        _floor_claim(ctx, images, distilled),
    ]


def _floor_claim(ctx: Context, images: pd.DataFrame, distilled: list[float]) -> Claim:
    """The distilled network's JSMA success at T = 100 (else the highest T) against 0.5%."""
    t = PAPER_T if PAPER_T in distilled else distilled[-1]
    rows = attacked(_model_rows(images, t, 2))
    rate = statistics.proportion(int(rows["success"].sum()), len(rows), ctx.ci_level)
    where = "" if t == PAPER_T else f" (no T = 100 model: at T = {t:g}, the highest)"
    return Claim(
        SOURCE,
        JSMA_FLOOR_CLAIM,
        "0.45% at T = 100",
        f"{pct(rate.estimate)} at T = {t:g}{where}",
        interval_text(rate, 2, 100) + " %" if not math.isnan(rate.low) else "no interval",
        f"{rate.n} pairs",
        "Wilson CI of the distilled network's success over its attack pairs below 0.5%",
        statistics.within(rate, 0.0, FLOOR) if t == PAPER_T else statistics.INCONCLUSIVE,
        PAPERNOT_QUOTE,
    )


BUDGET_TEST = (
    "success within the budget at the highest T < half the T = 1 teacher's (95% CI); "
    "answers Carlini & Wagner's question (does distillation stop an attack built for it?)"
)


def _budget_models(rows: pd.DataFrame) -> tuple[pd.Series, pd.Series] | str:
    """The T = 1 (lowest T) teacher and the highest-T last model of one chain's rows with C&W
    L2 success within the budget, or why there are none."""
    column = "l2_budget_success_rate"
    if column not in rows or rows[column].isna().all():
        return "no data"
    rows = rows.dropna(subset=[column])
    base = rows[(rows["stage"] == 1) & (rows["temperature"] == rows["temperature"].min())]
    last = rows[rows["stage"] == rows["stage"].max()]
    last = last[last["temperature"] == last["temperature"].max()]
    if base.empty or last.empty:
        return "no data"
    base, last = base.iloc[0], last.iloc[0]
    if last["temperature"] <= max(base["temperature"], 1.0):  # no distillation at a high T
        return "no T above 1"
    return base, last


def _budget_change(ctx: Context, base: pd.Series, last: pd.Series, seed: int | None = None):
    """(success within the budget before, after, after - before / 2 as an `Estimate`, its n):
    paired on the images of `seed` (None: the only one) where per-image rows exist."""
    budget = float(base.get("l2_budget", math.nan))
    images = ctx.images("l2", seed=seed)
    if images is not None:
        within = {}
        for key, row in (("base", base), ("last", last)):
            chosen = _model_rows(images, row["temperature"], row["stage"]).set_index("image")
            within[key] = chosen["success"] & (chosen["distance"] <= budget)
            within[key] = within[key].where(chosen["correct"])
        pair = pd.DataFrame(within).dropna().astype(float)
        estimate = statistics.paired_difference(
            pair["last"], 0.5 * pair["base"], ctx.ci_level, ctx.seed
        )
        return pair["base"].mean(), pair["last"].mean(), estimate, str(estimate.n)
    first, second = success_of(base, "l2", ctx, True), success_of(last, "l2", ctx, True)
    half = dataclasses.replace(
        first, estimate=first.estimate / 2, low=first.low / 2, high=first.high / 2
    )
    estimate = statistics.proportion_difference(second, half, ctx.ci_level)
    return first.estimate, second.estimate, estimate, str(min(first.n, second.n))


def _carlini_wagner_claim(ctx: Context) -> Claim:
    """C&W L2 success within the L2 budget, T = 1 teacher vs the highest-T student, on the
    same images where per-image data exist: Carlini & Wagner's question, not Papernot's."""
    found = _budget_models(ctx.sweep)
    if isinstance(found, str):
        return no_data(SOURCE, PAPERNOT_CLAIM, "", BUDGET_TEST, found, PAPERNOT_QUOTE)
    base, last = found
    before, after, estimate, n = _budget_change(ctx, base, last)
    return Claim(
        SOURCE,
        PAPERNOT_CLAIM,
        "95.89% -> 0.45% (JSMA, MNIST, T = 100)",
        f"C&W L2 within {float(base.get('l2_budget', math.nan)):g}: {pct(before)} "
        f"(T = {base['temperature']:g} teacher) "
        f"-> {pct(after)} (T = {last['temperature']:g}, stage {int(last['stage'])})",
        interval_text(estimate, 3) + " (after - before / 2)",
        n,
        BUDGET_TEST,
        statistics.verdict(estimate, "negative"),
        PAPERNOT_QUOTE,
    )


def _seed_level_budget_claim(ctx: Context) -> Claim:
    """The C&W L2 row over seeds: per seed after - before / 2 from its own chain (paired on its
    images where they exist), across seeds the mean and its t-interval, below 0."""
    changes = {}
    for seed, rows in with_seed(ctx.sweep).groupby(SEED_COLUMN):
        found = _budget_models(rows)
        if not isinstance(found, str):
            changes[int(seed)] = (*found, *_budget_change(ctx, *found, seed=int(seed))[:3])
    test = f"{BUDGET_TEST}; per seed, then the t-interval over seeds"
    if not changes:
        return no_data(SOURCE, PAPERNOT_CLAIM, "", test, "no data", PAPERNOT_QUOTE)
    base, last = next(iter(changes.values()))[:2]
    mean = seed_mean([c[4].estimate for c in changes.values()], ctx.ci_level)
    before = sum(c[2] for c in changes.values()) / len(changes)
    after = sum(c[3] for c in changes.values()) / len(changes)
    detail = per_seed_text({seed: c[4].estimate for seed, c in changes.items()}, 3)
    return Claim(
        SOURCE,
        PAPERNOT_CLAIM,
        "95.89% -> 0.45% (JSMA, MNIST, T = 100)",
        f"C&W L2 within {float(base.get('l2_budget', math.nan)):g}: {pct(before)} "
        f"(T = {base['temperature']:g} teacher) -> {pct(after)} (T = {last['temperature']:g}, "
        f"stage {int(last['stage'])}), means over {mean.n} seeds; after - before / 2 {detail}",
        interval_text(mean, 3) + " (after - before / 2, t over seeds)",
        f"{mean.n} seeds",
        test,
        statistics.verdict(mean, "negative"),
        PAPERNOT_QUOTE,
    )

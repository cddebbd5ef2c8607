"""Mandal & Guo's robustness claims at the seed level, on a synthetic 3-seed per-image table
whose answer is known."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from keras_takd.core.statistics import AGREES, DISAGREES, INCONCLUSIVE
from keras_takd.takd.analysis.claims.common import NOT_VALIDATED, Context
from keras_takd.takd.analysis.claims.mandal_guo import mandal_guo_claims
from keras_takd.takd.analysis.claims.seed_level import seed_level_claims
from keras_takd.takd.analysis.replicates import seeds_needed

# Per seed, the student's distance exceeds the teacher's by exactly this on every image at
# T = 40 (no noise), and the assistant sits halfway; at T = 1 every model is the same.
EFFECTS = {0: 0.10, 1: 0.20, 2: 0.30}


def _per_image(n=20, effects=EFFECTS, temperatures=(1.0, 40.0), attack="l2"):
    """C&W L2 (`attack`) rows; FMN's seed-level verdicts also need C&W beside them."""
    rng = np.random.default_rng(0)
    rows = []
    for seed, effect in effects.items():
        for t in temperatures:
            base = 1.5 + 0.3 * rng.standard_normal(n)
            for stage, role in enumerate(("teacher", "assistant", "student"), 1):
                shift = effect * (stage - 1) / 2 if t == 40.0 else 0.0
                rows += [
                    {"dataset": "mnist", "temperature": t, "stage": stage, "role": role}
                    | {"stages": 3, "attack": attack, "image": i, "correct": True}
                    | {"success": True, "distance": d + shift, "seed": seed}
                    for i, d in enumerate(base)
                ]
    return pd.DataFrame(rows)


def _context(per_image, primary=None):
    models = per_image.drop_duplicates(["temperature", "stage", "seed"])
    return Context(models, per_image, "mnist", 0.95, 0, primary_comparison=primary)


def test_the_seed_level_claim_is_the_t_test_of_the_seed_means_and_the_primary_comes_first():
    claims = seed_level_claims(_context(_per_image()), "student-teacher@40")
    first = claims[0]
    assert first.claim.startswith("primary comparison: C&W L2, seed level: the student")
    assert "T = 40" in first.claim
    means = np.array(list(EFFECTS.values()))
    assert first.ours.startswith(f"{means.mean():+.4f} over 3 seeds")
    low, high = stats.t.interval(0.95, 2, loc=means.mean(), scale=stats.sem(means))
    assert first.interval == f"[{low:+.4f}, {high:+.4f}] (t over seeds)"
    assert first.n == "3 seeds, 60 images"
    p = stats.ttest_1samp(means, 0.0).pvalue  # about 0.05: three seeds decide little
    assert f"p = {p:.2g}" in first.ours
    assert first.verdict == (AGREES if p < 0.05 else INCONCLUSIVE)
    for seed, effect in EFFECTS.items():
        assert f"{seed} {effect:+.4f}" in first.ours  # the per-seed detail
    assert "within-seed SD 0.0000" in first.ours  # no noise within a seed
    assert sum(c.claim.startswith("primary") for c in claims) == 1
    # section V-C as worded, then every comparison at both T; at T = 1 nothing differs
    assert len(claims) == 7
    assert "seed level: on average the student is more robust" in claims[1].claim
    at_1 = [c for c in claims if "T = 1" in c.claim]
    assert at_1 and all(c.verdict == INCONCLUSIVE for c in at_1)


def test_without_a_declared_primary_the_comparisons_keep_their_order_and_use_holm():
    claims = seed_level_claims(_context(_per_image()))
    assert not any(c.claim.startswith("primary") for c in claims)
    assert all("Holm over the T" in c.test for c in claims)
    with pytest.raises(ValueError, match="student-teacher@<T>"):
        seed_level_claims(_context(_per_image()), "student-nobody@40")


def test_the_paper_claims_take_the_seed_level_path_with_several_seeds():
    claims = mandal_guo_claims(_context(_per_image(), "student-teacher@40"))
    seed_level = [c for c in claims if "seed level" in c.claim]
    # the 7 comparisons, then the T trend of each norm (C&W L0 and L-inf: no data here)
    assert len(seed_level) == 10 and seed_level[0].claim.startswith("primary comparison")
    assert all("robustness increases with T" in c.claim for c in seed_level[7:])


@pytest.mark.parametrize("sign, verdict", [(1, AGREES), (-1, DISAGREES)])
def test_section_v_c_as_worded_at_the_seed_level(sign, verdict):
    """Seeds that agree closely (effects 0.20, 0.21, 0.22) at the one T: the t-test of the
    seed means decides, for student - teacher and student - assistant alike."""
    effects = {s: sign * (0.20 + 0.01 * s) for s in range(3)}
    claims = seed_level_claims(_context(_per_image(effects=effects, temperatures=(40.0,))))
    worded = claims[0]
    assert "seed level: on average the student" in worded.claim
    assert worded.verdict == verdict
    assert worded.n == "3 seeds"
    above = "1 of 1 T" if sign > 0 else "0 of 1 T"
    assert f"student - teacher: above 0 at {above}" in worded.ours


def _with_cw(per_image, ratio, spread=0.005, at=(1.0, 40.0)):
    """The FMN rows, and C&W L2 rows on the same images of the models at `at`: each FMN
    distance / `ratio`, times 1 + a small noise (`spread`)."""
    rng = np.random.default_rng(1)
    fmn = per_image.assign(attack="fmn_l2")
    cw = fmn[fmn["temperature"].isin(at)].assign(attack="l2")
    cw["distance"] = cw["distance"] / ratio * (1 + spread * rng.standard_normal(len(cw)))
    return pd.concat([fmn, cw], ignore_index=True)


def _claim(claims, start):
    return next(c for c in claims if c.claim.startswith(start))


@pytest.mark.parametrize("ratio, validated", [(1.0, True), (0.95, False)])
def test_fmn_decides_alone_only_at_a_t_where_its_ratio_to_c_and_w_is_within_2_percent(
    ratio, validated
):
    effects = {s: 0.20 + 0.01 * s for s in range(3)}
    table = _with_cw(_per_image(effects=effects, attack="fmn_l2"), ratio, at=(40.0,))
    claims = seed_level_claims(_context(table))
    check = _claim(claims, "the replicates' measure: FMN L2 measures as C&W L2 at T = 40")
    assert check.verdict == (AGREES if validated else DISAGREES)
    assert check.ours.startswith(f"{ratio:.3f} over 9 models of 3 chains")
    assert check.n == "20 images, 180 pairs"  # resampled by image, pooled over the models
    low, high = (float(x) for x in check.interval.strip("[]").split(", "))
    assert low - 0.001 <= ratio <= high + 0.001 and high - low < 0.01  # printed to 3 digits
    fmn = _claim(
        claims, "FMN L2, seed level: the student is more robust than the teacher at T = 40"
    )
    cw = _claim(claims, "C&W L2, seed level: the student is more robust than the teacher at T = 40")
    assert cw.verdict == AGREES  # C&W decides on its own: it is the reference
    assert fmn.verdict == (AGREES if validated else NOT_VALIDATED)
    assert "ratio to C&W L2 has its 95% interval within 1 +- 0.02" in fmn.test
    assert ("not within 1 +- 0.02" in fmn.ours) is not validated
    # T = 1 has no C&W: its FMN verdicts (inconclusive here: nothing differs) are never firm
    at_1 = _claim(
        claims, "FMN L2, seed level: the student is more robust than the teacher at T = 1"
    )
    assert "no C&W L2 on these models at T = 1 to validate it" in at_1.ours


def test_without_c_and_w_an_fmn_effect_is_not_decided():
    effects = {s: 0.20 + 0.01 * s for s in range(3)}
    claims = seed_level_claims(_context(_per_image(effects=effects, attack="fmn_l2")))
    fmn = _claim(
        claims, "FMN L2, seed level: the student is more robust than the teacher at T = 40"
    )
    assert fmn.verdict == NOT_VALIDATED  # the t-test alone would agree (p < 0.001)
    assert not any("replicates' measure" in c.claim for c in claims)


def test_each_comparison_says_how_many_seeds_its_between_seed_sd_needs():
    table = _per_image()
    claims = seed_level_claims(replace(_context(table), seed_half_width=0.03))
    first = _claim(
        claims, "C&W L2, seed level: the student is more robust than the teacher at T = 40"
    )
    sd = np.std(list(EFFECTS.values()), ddof=1)  # 0.1
    assert f"between-seed SD {sd:.4f}" in first.ours
    assert first.ours.endswith(f"seeds for a +-0.03 t-interval: {seeds_needed(sd, 0.03)}")
    assert seeds_needed(sd, 0.03) == 46  # t(0.975, 45) * 0.1 / sqrt(46) = 0.0297
    without = seed_level_claims(_context(table))
    assert not any("seeds for a" in c.ours for c in without)


def test_an_attack_run_on_one_seed_only_has_no_seed_level_interval():
    """C&W beside FMN on seed 0 only (as the replicate study runs it): its rows say they rest
    on one seed, with no interval and no p, never a firm verdict."""
    effects = {s: 0.20 + 0.01 * s for s in range(3)}
    table = _with_cw(_per_image(effects=effects, attack="fmn_l2"), 1.0)
    table = table[(table["attack"] == "fmn_l2") | (table["seed"] == 0)]
    claims = seed_level_claims(_context(table))
    cw = _claim(claims, "C&W L2, seed level: the student is more robust than the teacher at T = 40")
    assert cw.ours.startswith("+0.20") and "on seed 0 alone" in cw.ours
    assert "nan" not in cw.ours and cw.interval == "no interval"
    assert cw.n.startswith("1 seeds") and cw.verdict == INCONCLUSIVE

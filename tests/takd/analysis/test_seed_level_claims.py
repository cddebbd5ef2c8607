"""Mandal & Guo's robustness claims at the seed level, on a synthetic 3-seed per-image table
whose answer is known."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from keras_takd.core.statistics import AGREES, DISAGREES, INCONCLUSIVE
from keras_takd.takd.analysis.claims.common import Context
from keras_takd.takd.analysis.claims.mandal_guo import mandal_guo_claims, seed_level_claims

# Per seed, the student's distance exceeds the teacher's by exactly this on every image at
# T = 40 (no noise), and the assistant sits halfway; at T = 1 every model is the same.
EFFECTS = {0: 0.10, 1: 0.20, 2: 0.30}


def _per_image(n=20, effects=EFFECTS, temperatures=(1.0, 40.0)):
    rng = np.random.default_rng(0)
    rows = []
    for seed, effect in effects.items():
        for t in temperatures:
            base = 1.5 + 0.3 * rng.standard_normal(n)
            for stage, role in enumerate(("teacher", "assistant", "student"), 1):
                shift = effect * (stage - 1) / 2 if t == 40.0 else 0.0
                rows += [
                    {"dataset": "mnist", "temperature": t, "stage": stage, "role": role}
                    | {"stages": 3, "attack": "fmn_l2", "image": i, "correct": True}
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
    assert first.claim.startswith("primary comparison: FMN L2, seed level: the student")
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

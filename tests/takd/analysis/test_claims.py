"""keras_takd.takd.analysis.claims on hand-built tables with known verdicts."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from keras_takd.takd import schema
from keras_takd.takd.analysis import statistics, tables
from keras_takd.takd.analysis.claims import report
from keras_takd.takd.analysis.claims.carlini_wagner import CARLINI_CLAIM, MASKING_CLAIM
from keras_takd.takd.analysis.claims.common import NOT_TESTED, NOT_VALIDATED
from keras_takd.takd.analysis.claims.croce_hein import APGD_CLAIM
from keras_takd.takd.analysis.claims.mandal_guo_paper import (
    BASELINE_CLAIM,
    CENTRAL_CLAIM,
    CONFIDENCE_CLAIM,
    VARIATION_CLAIM,
)
from keras_takd.takd.analysis.claims.papernot import (
    JSMA_CLAIM,
    JSMA_FLOOR_CLAIM,
    PAPERNOT_CLAIM,
)

TEMPERATURES = (1.0, 10.0, 40.0)
ROLES = ("teacher", "assistant", "student")
# So large that every proportion's interval is a few 1e-4 wide: the verdicts are the rules'.
HUGE = 10_000_000
IMAGES = 60
RULES = {
    # teacher 99.38% at T = 1, falling 0.01 point per T step; distilled 0.05 points above
    "test_accuracy": lambda t, s: 0.9938 - 0.0001 * TEMPERATURES.index(t) + 0.0005 * (s > 1),
    "sensitivity_logits_zero_fraction": lambda t, s: t / 100,
    "sensitivity_softmax_zero_fraction": lambda t, s: t / 50,
    "confidence": lambda t, s: 0.9 + 0.01 * (TEMPERATURES.index(t) == 1),
    "l0_mean": lambda t, s: 10 + t + s,
    "l2_mean": lambda t, s: 1 + t / 10 + s / 10,
    "linf_mean": lambda t, s: 0.1 + t / 100 + s / 100,
    "l2_success_rate": lambda t, s: 1.0,
    "l2_budget": lambda t, s: 1.0,
    "l2_budget_success_rate": lambda t, s: 0.9 if t == 1 else 0.1,
    "l2_softmax_T_success_rate": lambda t, s: 1.0 if t == 1 else 0.2,
}


def paper_like(**overrides) -> pd.DataFrame:
    """A 3-stage sweep that follows every claim, and a 4-step chain at T = 5 and 20.

    `overrides` maps a column to a function (temperature, stage) -> value replacing its rule.
    """
    rules = RULES | overrides
    counts = {"metric_images": HUGE, "l2_attacked": HUGE, "l2_softmax_T_attacked": HUGE}
    rows = []
    for t in TEMPERATURES:
        for stage, role in enumerate(ROLES, 1):
            row = {"dataset": "mnist", "temperature": t, "stage": stage, "role": role}
            rows.append(row | {"stages": 3} | counts | {c: f(t, stage) for c, f in rules.items()})
    for t in (5.0, 20.0):
        for stage in range(1, 5):
            role = {1: "teacher", 4: "student"}.get(stage, f"step-{stage}")
            row = {"dataset": "mnist", "temperature": t, "stage": stage, "role": role, "stages": 4}
            rows.append(row | counts | {"test_accuracy": 0.99, "l2_mean": 1.0 + stage / 10})
    return pd.DataFrame(rows)


def per_image_like(table: pd.DataFrame, shift=None, noise: float = 0.01) -> pd.DataFrame:
    """Per-image rows whose distances are the table's means plus a per-image offset shared by
    every model (so paired differences are the rules') and a little noise of each model's.

    `shift` (attack, temperature, stage) -> value is added to every image of that model.
    Image 0 goes against every rule (its distance is the table's mean of the attack minus the
    model's offset from it), so no comparison or trend is the same on every image: data
    without spread decide nothing (`keras_takd.core.statistics.NO_SPREAD`).
    """
    rng = np.random.default_rng(0)
    offsets = rng.normal(0, 0.3, IMAGES)
    rows = []
    for _, model in table.iterrows():
        for attack in schema.ATTACKS:
            mean = model.get(f"{attack}_mean")
            if mean is None or pd.isna(mean):
                continue
            extra = shift(attack, model["temperature"], model["stage"]) if shift else 0.0
            distances = mean + extra + offsets + rng.normal(0, noise, IMAGES)
            distances[0] += 2 * (table[f"{attack}_mean"].mean() - mean - extra)
            for image, distance in enumerate(distances):
                rows.append(
                    {c: model[c] for c in (*schema.KEY_COLUMNS, "role", "stages")}
                    | {"attack": attack, "image": image, "correct": True, "success": True}
                    | {"distance": max(distance, 0.01), "const": np.nan}
                )
    return pd.DataFrame(rows, columns=list(schema.PER_IMAGE_COLUMNS))


def _verdicts(table, per_image=None):
    return {c.claim: c.verdict for c in report.check_claims(table, "mnist", per_image)}


def test_a_table_that_follows_the_papers_agrees_with_every_claim_it_can_decide():
    table = paper_like()
    verdicts = _verdicts(table, per_image_like(table))
    undecided = {claim for claim, verdict in verdicts.items() if verdict != "agrees"}
    assert undecided == {CONFIDENCE_CLAIM, JSMA_CLAIM}, verdicts  # Fig. 6 is a CIFAR-10 claim
    assert verdicts[CONFIDENCE_CLAIM] == NOT_TESTED
    assert verdicts[JSMA_CLAIM] == "no data"  # no JSMA rows
    assert len(verdicts) == 55  # 4 accuracy, 2 sensitivity, 3 x 14 robustness (trend, the
    # claim as worded, 3 comparisons pooled and at 3 T), confidence, 2 multi-step, Papernot's
    # with JSMA and with C&W L2, 2 C&W
    claims = report.check_claims(table, "mnist", per_image_like(table))
    by_name = {c.claim: c for c in claims}
    assert all(c.quote for c in claims)  # every claim quotes its paper's sentence
    assert by_name[f"C&W L2: {CENTRAL_CLAIM}"].quote.startswith('V-C: "Also, on average')
    central = by_name["C&W L2: the student is more robust than the assistant at T = 40"]
    assert float(central.ours.split()[0]) == pytest.approx(0.1, abs=0.01)
    assert central.n == str(IMAGES) and central.interval.startswith("[+0.09")
    assert by_name[BASELINE_CLAIM].ours == "99.38%"


def test_without_per_image_data_robustness_is_inconclusive_not_agreement():
    verdicts = _verdicts(paper_like())
    for attack in ("L0", "L2", "L-inf"):
        assert verdicts[f"C&W {attack}: robustness increases with T"] == "inconclusive"
        assert verdicts[f"C&W {attack}: the student is the most robust on average"] == (
            "inconclusive"
        )
    assert verdicts[BASELINE_CLAIM] == "agrees"  # proportions keep their intervals


def test_a_less_robust_student_disagrees_and_pure_noise_is_inconclusive():
    table = paper_like()
    weaker = per_image_like(table, shift=lambda a, t, s: -0.2 * (a == "l2") * (s == 3))
    verdicts = _verdicts(table, weaker)
    assert verdicts["C&W L2: the student is more robust than the assistant (pooled over T)"] == (
        "disagrees"
    )
    assert verdicts["C&W L2: the assistant is more robust than the teacher (pooled over T)"] == (
        "agrees"
    )
    flat = paper_like(l2_mean=lambda t, s: 1.5)
    noisy = _verdicts(flat, per_image_like(flat, noise=0.2))
    for t in TEMPERATURES:
        claim = f"C&W L2: the student is more robust than the assistant at T = {t:g}"
        assert noisy[claim] == "inconclusive", claim


@pytest.mark.parametrize(
    "column, rule, claim",
    [
        ("test_accuracy", lambda t, s: 0.985, BASELINE_CLAIM),
        ("test_accuracy", lambda t, s: 0.99 - 0.002 * (s == 3), VARIATION_CLAIM),
        ("test_accuracy", lambda t, s: 0.99 + t / 1e4, "accuracy decreases with T"),
        ("l2_mean", lambda t, s: 5 - t / 10, "C&W L2: robustness increases with T"),
        ("l2_success_rate", lambda t, s: 0.5, CARLINI_CLAIM),
        # softmax(z / T) attacked more successfully than the logits at the highest T
        ("l2_success_rate", lambda t, s: 1.0 if t < 40 else 0.1, MASKING_CLAIM),
    ],
)
def test_breaking_one_rule_turns_its_claim_to_disagrees(column, rule, claim):
    table = paper_like(**{column: rule})
    verdicts = _verdicts(table, per_image_like(table))
    assert verdicts[claim] == "disagrees"
    assert verdicts["C&W L-inf: robustness increases with T"] == "agrees"


def test_multistep_robustness_trend_is_read_from_the_longer_chain():
    table = paper_like()
    chain = table["stages"] == 4
    table.loc[chain, "l2_mean"] = 2.0 - table.loc[chain, "stage"] / 10
    verdicts = _verdicts(table, per_image_like(table))
    assert verdicts["multi-step: C&W L2 robustness rises with the step (Fig. 8)"] == "disagrees"
    assert verdicts["C&W L2: robustness increases with T"] == "agrees"  # the sweep is untouched


def test_missing_columns_and_too_few_temperatures_give_no_data():
    table = paper_like()[lambda df: (df["temperature"] != 40.0) & (df["stages"] == 3)]
    verdicts = _verdicts(table.drop(columns=["confidence"]))
    assert verdicts["accuracy decreases with T"] == "no data"  # two temperatures
    assert verdicts[CONFIDENCE_CLAIM] == NOT_TESTED  # MNIST results, a CIFAR-10 figure
    cifar = table.drop(columns=["confidence"]).assign(dataset="cifar10")
    assert {c.claim: c.verdict for c in report.check_claims(cifar, "cifar10")}[
        CONFIDENCE_CLAIM
    ] == "no data"
    assert verdicts["multi-step distillation (section VI)"] == "no data"
    with pytest.raises(ValueError, match="no rows of dataset 'cifar10'"):
        report.check_claims(table, "cifar10")
    with pytest.raises(ValueError, match="ci_level"):
        report.check_claims(table, "mnist", ci_level=1.0)


@pytest.mark.parametrize(
    "index, values, expected",
    [
        # Spearman's rho by hand: Pearson's r of the ranks, ties sharing their mean rank
        ((1, 2, 5, 10), (3, 1, 2, 2), -1 / 10**0.5),  # value ranks 4, 1, 2.5, 2.5
        ((1, 2, 3, 4), (1, 1, 2, 3), 3 / 10**0.5),  # value ranks 1.5, 1.5, 3, 4
        ((1, 2, 3), (3, 2, 1), -1.0),
    ],
)
def test_rho_is_spearman_with_ties(index, values, expected):
    curve = pd.Series(values, index=pd.Index(index, dtype=float))
    assert statistics.curve_rho(curve) == pytest.approx(expected)


def test_gradient_masking_is_compared_image_by_image_when_both_attacks_have_rows():
    table = paper_like()
    per_image = per_image_like(table)
    masked = per_image[per_image["attack"] == "l2"].assign(attack=schema.MASKED_L2_PREFIX)
    fails = (masked["temperature"] == 40.0) & (masked["image"] % 2 == 0)
    masked.loc[fails, ["success", "distance"]] = [False, np.nan]  # half the images at T = 40
    claim = {
        c.claim: c for c in report.check_claims(table, "mnist", pd.concat([per_image, masked]))
    }[MASKING_CLAIM]
    assert claim.verdict == "agrees"
    assert claim.n == ", ".join([str(IMAGES)] * 3)  # paired: the same images, per stage
    assert claim.interval.startswith("[-0.")


def test_a_run_at_t_1_only_has_no_data_for_distillation_at_high_t():
    """Papernot's claim compares the T = 1 teacher with distillation at a high T: with T = 1
    alone (the decisive run's first chain) there is nothing to compare, not a disagreement."""
    table = paper_like()
    table = table[(table["temperature"] == 1.0) & (table["stages"] == 3)]
    verdicts = _verdicts(table, per_image_like(table))
    assert verdicts[PAPERNOT_CLAIM] == "no data"
    assert _verdicts(paper_like())[PAPERNOT_CLAIM] == "agrees"


def _with_apgd(ce_fools, dlr_fools, dlr_eps=0.3):
    """paper_like() with APGD-CE and APGD-DLR rows: `*_fools(temperature, image)` -> success."""
    attacks = {"apgd_ce": (ce_fools, 0.3), "apgd_dlr": (dlr_fools, dlr_eps)}
    table = paper_like(
        **{f"{a}_eps": (lambda t, s, e=eps: e) for a, (_, eps) in attacks.items()},
        **{
            f"{a}_success_rate": (lambda t, s, f=fools: np.mean([f(t, i) for i in range(IMAGES)]))
            for a, (fools, _) in attacks.items()
        },
    )
    table = table.assign(apgd_ce_attacked=IMAGES, apgd_dlr_attacked=IMAGES)
    per_image = per_image_like(table)
    l2 = per_image[per_image["attack"] == "l2"]
    extra = []
    for attack, (fools, _) in attacks.items():
        rows = l2.assign(attack=attack)
        pairs = zip(rows["temperature"], rows["image"], strict=True)
        rows["success"] = [bool(fools(t, i)) for t, i in pairs]
        extra.append(rows)
    return table, pd.concat([per_image, *extra])


def _apgd_claim(table, per_image):
    return {c.claim: c for c in report.check_claims(table, "mnist", per_image)}[APGD_CLAIM]


def test_apgd_dlr_fooling_more_images_than_apgd_ce_at_high_t_agrees_image_by_image():
    """Croce & Hein's gradient masking: CE fools 1 in 10 images at T = 40, DLR every one."""
    table, per_image = _with_apgd(lambda t, i: t < 40 or i % 10 == 0, lambda t, i: True)
    claim = _apgd_claim(table, per_image)
    assert claim.verdict == "agrees"
    assert claim.n == ", ".join([str(IMAGES)] * 3)  # paired: the same images, per stage
    assert claim.interval.startswith("[+0.")  # DLR - CE = +0.9, bootstrap interval


def test_apgd_ce_fooling_more_images_disagrees_and_other_eps_give_no_data():
    table, per_image = _with_apgd(lambda t, i: True, lambda t, i: i % 2 == 0)
    assert _apgd_claim(table, per_image).verdict == "disagrees"
    table, per_image = _with_apgd(lambda t, i: False, lambda t, i: True, dlr_eps=0.2)
    assert _apgd_claim(table, per_image).verdict == "no data"
    assert APGD_CLAIM not in _verdicts(paper_like())  # only when APGD ran


def _central_verdicts(shift):
    """The claims of paper_like() with L2 per-image distances moved by `shift`(T, stage)."""
    table = paper_like(l2_mean=lambda t, s: 1.5)
    per_image = per_image_like(table, shift=lambda a, t, s: shift(t, s) * (a == "l2"))
    return {c.claim: c for c in report.check_claims(table, "mnist", per_image)}


def test_the_central_claim_is_tested_as_worded_in_most_temperatures():
    """Section V-C: student above teacher and above assistant on average, in most cases. A
    student below its assistant at one T of three still agrees (the old rule, all three
    comparisons at one T, would not); below its teacher at two of three T disagrees."""
    most = _central_verdicts(lambda t, s: {2: 0.05, 3: 0.1 if t > 1 else 0.02}.get(s, 0.0))
    assert most[f"C&W L2: {CENTRAL_CLAIM}"].verdict == "agrees"
    t1 = "C&W L2: the student is more robust than the assistant at T = 1"
    assert most[t1].verdict == "disagrees"
    worse = _central_verdicts(lambda t, s: -0.1 * (s == 3) * (t > 1))
    assert worse[f"C&W L2: {CENTRAL_CLAIM}"].verdict == "disagrees"
    noise = _central_verdicts(lambda t, s: 0.0)
    assert noise[f"C&W L2: {CENTRAL_CLAIM}"].verdict == "inconclusive"


def test_the_p_beside_a_mean_is_the_paired_t_test_holm_adjusted_over_the_temperatures():
    table = paper_like(l2_mean=lambda t, s: 1.5)
    per_image = per_image_like(table, shift=lambda a, t, s: 0.004 * (s == 3) * t / 10, noise=0.05)
    claims = {c.claim: c for c in report.check_claims(table, "mnist", per_image)}
    l2 = per_image[per_image["attack"] == "l2"].set_index("image")
    p_values = []
    for t in TEMPERATURES:
        at_t = l2[(l2["temperature"] == t) & (l2["stage"] == 1)]["distance"]
        student = l2[(l2["temperature"] == t) & (l2["stage"] == 3)]["distance"]
        p_values.append(stats.ttest_1samp(student - at_t, 0.0).pvalue)
    adjusted = statistics.holm(p_values)
    for t, p, holm_p in zip(TEMPERATURES, p_values, adjusted, strict=True):
        claim = claims[f"C&W L2: the student is more robust than the teacher at T = {t:g}"]
        assert f"t p = {p:.2g}, Holm p = {holm_p:.2g}; Wilcoxon p = " in claim.ours
        assert claim.verdict == ("agrees" if holm_p < 0.05 else "inconclusive")


def test_robustness_over_t_is_tested_on_the_mean_not_a_mean_per_image_rho():
    """Most images a little less robust at T = 40, a quarter much more: the mean rises (the
    paper's metric), the mean per-image rank correlation falls."""
    table = paper_like(l2_mean=lambda t, s: 1.5)
    per_image = per_image_like(table)
    at_40 = (per_image["attack"] == "l2") & (per_image["temperature"] == 40.0)
    per_image.loc[at_40, "distance"] += np.where(per_image.loc[at_40, "image"] < 45, -0.05, 1.0)
    claim = {c.claim: c for c in report.check_claims(table, "mnist", per_image)}[
        "C&W L2: robustness increases with T"
    ]
    assert claim.verdict == "agrees"
    assert claim.ours.startswith("T = 40 - T = 1: teacher +0.21")


def test_c_and_w_and_fmn_of_one_norm_make_one_measure_the_smallest_found_and_say_so():
    """C&W L0 on the first 30 images of every model, FMN L0 on all 100: each image counts the
    smaller of the two; the claims name the measure and say how it is made."""
    table = paper_like()
    cw = per_image_like(table)
    cw = cw[(cw["attack"] == "l0") & (cw["image"] < 30)]
    fmn = per_image_like(table).query("attack == 'l0'").assign(attack="fmn_l0")
    fmn["distance"] *= 0.9  # FMN finds smaller L0 on most images
    fmn.loc[fmn["image"] == 1, "distance"] += 10.0  # but not on image 1
    per_image = pd.concat([cw, fmn], ignore_index=True)
    claims = {c.claim: c for c in report.check_claims(table, "mnist", per_image)}
    name = "L0 (smallest of C&W L0, FMN L0)"
    central = claims[f"{name}: the student is more robust than the assistant at T = 40"]
    assert "smallest perturbation any of the attacks found" in central.test
    assert central.n == str(IMAGES)
    at_40 = per_image[per_image["temperature"] == 40.0]
    smallest = at_40.groupby(["stage", "image"])["distance"].min()
    expected = (smallest[3] - smallest[2]).mean()
    assert float(central.ours.split()[0]) == pytest.approx(expected, abs=5e-5)
    # on images 30-99 FMN L0 measures alone, and one chain cannot validate it against C&W
    trend = claims[f"{name}: robustness increases with T"]
    assert trend.verdict == NOT_VALIDATED
    assert "FMN L0 / C&W L0 at T = 1 is 0.9" in trend.ours  # FMN 10% below C&W but on image 1
    assert "not within 1 +- 0.02 and rests on 1 chain(s), fewer than 2" in trend.ours
    assert "decided by FMN L0 alone only at a T where" in trend.test
    cw_everywhere = per_image_like(table).query("attack == 'l0'")
    both = pd.concat([cw_everywhere, fmn], ignore_index=True)
    trend = {c.claim: c for c in report.check_claims(table, "mnist", both)}[trend.claim]
    assert trend.verdict == "agrees"  # C&W beside FMN on every image: FMN never alone
    fmn_only = {c.claim for c in report.check_claims(table, "mnist", fmn)}
    assert "FMN L0: robustness increases with T" in fmn_only
    section = report.attacks_markdown(per_image).splitlines()
    assert "FMN / C&W [95% CI]" in section[2]
    rows = [line for line in section if line.startswith("| L0 | ")]
    assert len(rows) == len(table[table["stages"] == 3])  # one per model of the sweep
    assert all(line.split(" | ")[3] == "30" for line in rows)  # the 30 images C&W attacked
    assert report.attacks_markdown(fmn) is None


def test_several_seeds_are_refused_by_name_not_mixed_image_by_image():
    table = paper_like()
    one = per_image_like(table)
    two = pd.concat([one.assign(seed=0), one.assign(seed=1)])
    with pytest.raises(ValueError, match=r"seeds \[0, 1\].*expected one seed"):
        report.check_claims(table, "mnist", two)
    assert _verdicts(table, one.assign(seed=5)) == _verdicts(table, one)  # one seed is fine


def _predictions_like(table: pd.DataFrame, wrong) -> pd.DataFrame:
    """10,000 test images per model of `table`; the model (T, stage) misclassifies the first
    `wrong(t, stage)` of them, so the wrong images of two models are nested."""
    image = np.arange(10_000)
    frames = []
    for _, model in table.iterrows():
        prediction = np.where(image < wrong(model["temperature"], model["stage"]), 1, 0)
        frames.append(
            pd.DataFrame(
                {c: model[c] for c in (*schema.KEY_COLUMNS, "role", "stages")}, image
            ).assign(image=image, label=0, prediction=prediction)
        )
    return pd.concat(frames, ignore_index=True)[list(schema.PREDICTION_COLUMNS)]


def _accuracy_claims(extra: int, paired: bool) -> dict:
    """The accuracy claims when each distilled model gets `extra` more of 10,000 test images
    right than its teacher (99.00%) and nothing else changes."""

    def wrong(t, stage):
        return 100 - extra * (stage > 1)

    table = paper_like(test_accuracy=lambda t, s: 1 - wrong(t, s) / 10_000)
    table["metric_images"] = 10_000
    sweep = table[table["stages"] == 3]
    predictions = _predictions_like(sweep, wrong) if paired else None
    claims = report.check_claims(table, "mnist", predictions=predictions)
    return {c.claim: c for c in claims}


MORE_ACCURATE = "at a fixed T distilled models are more accurate in most cases"


def test_paired_accuracy_decides_what_unpaired_intervals_cannot():
    # 10 images more of 10,000: unpaired, a Wald interval of +/- 0.27 points; paired, 10
    # discordant images all one way, McNemar p = 2 / 2**10, Holm over 6 pairs 0.012.
    unpaired, paired = _accuracy_claims(10, False), _accuracy_claims(10, True)
    assert unpaired[MORE_ACCURATE].verdict == "inconclusive"
    assert "unpaired" in unpaired[MORE_ACCURATE].test
    assert paired[MORE_ACCURATE].verdict == "agrees"
    assert "McNemar" in paired[MORE_ACCURATE].test
    # "varies little" (<= 0.15 points): 5 images more is 0.05 points, inside the bound paired
    # (a bootstrap interval of about +/- 0.04) and not unpaired (+/- 0.27 crosses it)
    assert _accuracy_claims(5, False)[VARIATION_CLAIM].verdict == "inconclusive"
    varies = _accuracy_claims(5, True)[VARIATION_CLAIM]
    assert varies.verdict == "agrees" and "McNemar p = 0.062 (5 vs 0 discordant)" in varies.ours


def test_paired_accuracy_falling_below_the_teacher_disagrees():
    claims = _accuracy_claims(-30, True)  # every distilled model 30 images worse
    assert claims[MORE_ACCURATE].verdict == "disagrees"
    assert claims[MORE_ACCURATE].ours.startswith("0 of 6 (T, stage) pairs more accurate, 6 less")


def _jsma_rows(model: dict, success_rate: float, images: int = 100, label_of=None) -> list[dict]:
    """JSMA's rows on one model: every image (label image % 10) attacked towards its 9 wrong
    classes; the first round(success_rate * pairs) pairs succeed, changing 3% of the pixels."""
    label_of = label_of or (lambda image: image % 10)
    rows = []
    for image in range(images):
        for target in (c for c in range(10) if c != label_of(image)):
            success = len(rows) < round(success_rate * images * 9)
            rows.append(
                model
                | {"attack": "jsma", "image": image, "target": target, "correct": True}
                | {"success": success, "distance": 0.03 if success else np.nan}
            )
    return rows


def _jsma_run(folder, temperatures, rates, label_of=None):
    """A run folder: a 2-stage chain per T, results.csv and per_image.csv with JSMA rows."""
    folder.mkdir()
    results, per_image = [], []
    for t in temperatures:
        for stage, role in ((1, "teacher"), (2, "student")):
            model = {"dataset": "mnist", "temperature": t, "stage": stage, "role": role}
            model |= {"stages": 2}
            results.append(model | {"test_accuracy": 0.99})
            per_image += _jsma_rows(model, rates[t, stage], label_of=label_of)
    pd.DataFrame(results).to_csv(folder / "results.csv", index=False)
    frame = pd.DataFrame(per_image, columns=list(schema.PER_IMAGE_COLUMNS))
    frame.to_csv(folder / "per_image.csv", index=False)
    return folder / "results.csv"


def _jsma_claims(tmp_path, rates_100, label_of=None) -> dict:
    """The JSMA claims of a T = 1 run (teacher 95.9%) beside a T = 100 run of another folder."""
    tmp_path.mkdir(exist_ok=True)
    decisive = _jsma_run(tmp_path / "a", [1.0], {(1.0, 1): 0.9589, (1.0, 2): 0.95})
    hot = _jsma_run(tmp_path / "b", [100.0], rates_100, label_of)
    text = report.render([decisive, hot])
    table, images, _ = tables.read_tables([decisive, hot])
    claims = report.check_claims(table, "mnist", images)
    return {c.claim: c for c in claims} | {"markdown": text}


def test_papernots_claim_is_tested_with_jsma_across_two_run_folders(tmp_path):
    claims = _jsma_claims(tmp_path, {(100.0, 1): 0.9, (100.0, 2): 0.0})
    falls, floor = claims[JSMA_CLAIM], claims[JSMA_FLOOR_CLAIM]
    assert falls.verdict == "agrees" and falls.n == "900 pairs"
    assert falls.ours.startswith("T = 1 teacher 95.89% -> distilled (stage 2) T = 100: 0.00%")
    assert "McNemar p = " in falls.ours and falls.paper == "95.89% -> 0.45% (JSMA, MNIST, T = 100)"
    # 0 of 900 pairs: a Wilson interval up to 0.42%, below the paper's 0.5%
    assert floor.verdict == "agrees" and floor.ours == "0.00% at T = 100"
    few = _jsma_claims(tmp_path / "few", {(100.0, 1): 0.9, (100.0, 2): 0.002})
    assert few[JSMA_FLOOR_CLAIM].verdict == "inconclusive"  # 2 of 900: up to 0.8%
    assert JSMA_CLAIM in claims["markdown"]


def test_jsma_success_that_stays_high_disagrees(tmp_path):
    claims = _jsma_claims(tmp_path, {(100.0, 1): 0.9, (100.0, 2): 0.97})
    assert claims[JSMA_CLAIM].verdict == "disagrees"
    assert claims[JSMA_FLOOR_CLAIM].verdict == "disagrees"


def test_two_run_folders_of_different_test_sets_are_refused(tmp_path):
    with pytest.raises(ValueError, match="JSMA rows of test image 0 imply the labels"):
        _jsma_claims(tmp_path, {(100.0, 1): 0.9, (100.0, 2): 0.0}, lambda image: image % 10 + 1)


def test_without_jsma_rows_papernots_claim_says_how_to_get_them():
    claims = {c.claim: c for c in report.check_claims(paper_like(), "mnist")}
    assert claims[JSMA_CLAIM].verdict == "no data"
    assert "--attacks=...,jsma" in claims[JSMA_CLAIM].ours

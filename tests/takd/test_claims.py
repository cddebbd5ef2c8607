"""keras_takd.takd.claims and the compare CLI on hand-built results tables with known verdicts."""

import pandas as pd
import pytest

from keras_takd.takd import claims

TEMPERATURES = (1.0, 10.0, 40.0)
ROLES = ("teacher", "assistant", "student")


def paper_like(**overrides) -> pd.DataFrame:
    """A 3-stage sweep that agrees with every claim, and a 4-step chain at T = 5 and 20.

    `overrides` maps a column to a function (temperature, stage) -> value replacing its rule.
    """
    rules = {
        # teacher 99.38% at T = 1, falling 0.01 point per T step; distilled 0.05 points above
        "test_accuracy": lambda t, s: 0.9938 - 0.0001 * TEMPERATURES.index(t) + 0.0005 * (s > 1),
        "sensitivity_logits_zero_fraction": lambda t, s: t / 100,
        "sensitivity_softmax_zero_fraction": lambda t, s: t / 50,
        "confidence": lambda t, s: 0.9 + 0.01 * (TEMPERATURES.index(t) == 1),  # up, then down
        "l0_mean": lambda t, s: 10 + t + s,
        "l2_mean": lambda t, s: 1 + t / 10 + s / 10,
        "linf_mean": lambda t, s: 0.1 + t / 100 + s / 100,
        "l2_success_rate": lambda t, s: 1.0,
        "l2_budget": lambda t, s: 1.0,
        "l2_budget_success_rate": lambda t, s: 0.9 if t == 1 else 0.1,
        "l2_softmax_T_success_rate": lambda t, s: 1.0 if t == 1 else 0.2,
    } | overrides
    rows = []
    for t in TEMPERATURES:
        for stage, role in enumerate(ROLES, 1):
            row = {"dataset": "mnist", "temperature": t, "stage": stage, "role": role}
            rows.append(row | {"stages": 3} | {c: f(t, stage) for c, f in rules.items()})
    for t in (5.0, 20.0):
        for stage in range(1, 5):
            role = {1: "teacher", 4: "student"}.get(stage, f"step-{stage}")
            row = {"dataset": "mnist", "temperature": t, "stage": stage, "role": role, "stages": 4}
            rows.append(row | {"test_accuracy": 0.99, "l2_mean": 1.0 + stage / 10})
    return pd.DataFrame(rows)


def _verdicts(table):
    return {c.claim: c.verdict for c in claims.check_claims(table, "mnist")}


def test_a_table_that_follows_the_papers_agrees_with_every_claim():
    verdicts = _verdicts(paper_like())
    assert set(verdicts.values()) == {"agrees"}, verdicts
    assert len(verdicts) == 18  # 4 accuracy, 2 sensitivity, 6 robustness, 1 confidence,
    # 2 multi-step (accuracy, L2: the only attack column of the chain), 1 Papernot, 2 C&W
    ours = {c.claim: c.ours for c in claims.check_claims(paper_like(), "mnist")}
    assert ours["baseline accuracy (T = 1 teacher)"] == "99.38%"
    assert ours["accuracy varies little with distillation"].startswith("max 0.05%")


@pytest.mark.parametrize(
    "column, rule, claim",
    [
        ("test_accuracy", lambda t, s: 0.985, "baseline accuracy (T = 1 teacher)"),
        (
            "test_accuracy",
            lambda t, s: 0.99 - 0.002 * (s == 3),
            "accuracy varies little with distillation",
        ),
        ("test_accuracy", lambda t, s: 0.99 + t / 1e4, "accuracy decreases with T"),
        ("l2_mean", lambda t, s: 2 - t / 100, "C&W L2: robustness increases with T"),
        ("l0_mean", lambda t, s: 10 + t - s, "C&W L0: the student is the most robust on average"),
        ("confidence", lambda t, s: t / 100, "confidence has no concrete trend over T (Fig. 6)"),
        (
            "l2_budget_success_rate",
            lambda t, s: 0.9 - t / 1000,
            "distillation at high T cuts the adversarial success rate",
        ),
        (
            "l2_success_rate",
            lambda t, s: 0.5,
            "distillation does not stop the L2 attack on the logits",
        ),
    ],
)
def test_breaking_one_rule_turns_exactly_its_claim_to_disagrees(column, rule, claim):
    verdicts = _verdicts(paper_like(**{column: rule}))
    assert verdicts[claim] == "disagrees"
    assert verdicts["C&W L-inf: robustness increases with T"] == "agrees"


def test_a_constant_series_has_no_trend():
    verdicts = _verdicts(paper_like(sensitivity_logits_zero_fraction=lambda t, s: 0.0))
    name = "higher T: more gradients < 1e-10 (Fig. 4), " + claims.SENSITIVITIES["logits"]
    assert verdicts[name] == "disagrees"  # 0% at every T does not increase
    flat = _verdicts(paper_like(confidence=lambda t, s: 0.98))
    assert flat[claims.CONFIDENCE_CLAIM] == "agrees"


def test_multistep_robustness_trend_is_read_from_the_longer_chain():
    table = paper_like()
    chain = table["stages"] == 4
    table.loc[chain, "l2_mean"] = 2.0 - table.loc[chain, "stage"] / 10
    verdicts = _verdicts(table)
    assert verdicts["multi-step: C&W l2 robustness (mean over T) rises with the step"] == (
        "disagrees"
    )
    assert verdicts["C&W L2: robustness increases with T"] == "agrees"  # the sweep is untouched


def test_missing_columns_and_too_few_temperatures_give_no_data():
    table = paper_like()[lambda df: (df["temperature"] != 40.0) & (df["stages"] == 3)]
    verdicts = _verdicts(table.drop(columns=["confidence"]))
    assert verdicts["accuracy decreases with T"] == "no data"  # two temperatures
    assert verdicts[claims.CONFIDENCE_CLAIM] == "no data"
    assert verdicts["multi-step distillation (section VI)"] == "no data"
    with pytest.raises(ValueError, match="no rows of dataset 'cifar10'"):
        claims.check_claims(table, "cifar10")


def test_compare_cli_prints_and_writes_the_markdown(cli, tmp_path):
    results = tmp_path / "results.csv"
    paper_like().to_csv(results, index=False)
    out = tmp_path / "figures" / "claims.md"
    done = cli("keras_takd.takd.compare", f"--results={results}", f"--out={out}")
    assert done.returncode == 0, done.stderr
    assert out.read_text() == done.stdout
    assert "| Mandal & Guo | baseline accuracy (T = 1 teacher) | 99.38% | 99.38% |" in done.stdout
    assert "**disagrees**" not in done.stdout
    # the numbers behind the claims: a row per chain length, T and stage
    assert (
        "| chain | T | stage | role | accuracy | logits grad < 1e-10 | softmax grad < 1e-10 |"
        in done.stdout
    )
    assert "| 3 | 40 | 3 | student | 99.41% | 40.0% | 80.0% |" in done.stdout
    assert "| 4 | 20 | 4 | student | 99.00% |" in done.stdout

    missing = cli("keras_takd.takd.compare", f"--results={tmp_path / 'none.csv'}")
    assert missing.returncode != 0
    assert missing.stderr.strip().splitlines()[-1].startswith("keras-takd-compare: error:")


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
    assert claims._rho(curve) == pytest.approx(expected)

"""Checks a results table against the claims of Mandal & Guo, Papernot et al. and Carlini & Wagner.

Each `Claim` sets what a paper says beside what our results show and a verdict:

* "agrees" / "disagrees": the results decide it by the rule stated in the claim's `test`;
* "no data": the columns or rows it needs are missing (e.g. no multi-step chain was run).

The claims (Mandal & Guo section V-VI unless noted), per dataset:

1. Baseline accuracy of the T = 1 teacher (99.38% MNIST, 77.72% CIFAR-10): agrees within
   `BASELINE_TOLERANCE` (absolute).
2. Accuracy varies little with distillation (max |student or assistant - teacher at the same T|
   <= 0.15% MNIST, 1.2% CIFAR-10).
3. Accuracy decreases with T: Spearman rho(T, accuracy) < 0 for each role.
4. At a fixed T the distilled models are more accurate "in most cases": more than half the
   (T, distilled stage) pairs at least as accurate as their teacher.
5. Higher T makes more input gradients vanish (Fig. 4): rho(T, fraction of images whose
   sensitivity < 1e-10) > 0 for the teachers, for the gradient of the sum of logits (the
   authors' code) and of the T = 1 softmax (Papernot's), one claim each.
6. Robustness (mean minimal perturbation) increases with T, per attack and role: rho > 0.
7. The student is more robust than the teacher and the assistant on average over T, per attack.
8. Confidence shows no concrete trend over T (|rho| < 0.5 for every role).
9. Multi-step (section VI): accuracy varies little with the step (same bound as 2), and
   robustness averaged over T increases with the step (rho(step, mean over T) > 0).
10. Papernot et al. (arXiv:1511.04508): distillation at high T cuts the adversarial success rate
    (95.89% -> 0.45% for their attack on MNIST). Ours: C&W L2 success within the L2 budget,
    T = 1 teacher vs the highest-T student; agrees if it falls by more than half.
11. Carlini & Wagner (arXiv:1608.04644): distillation does not stop their attacks: the L2 attack
    against the logits succeeds on >= 95% of images for every model; and the same attack
    against softmax(logits / T) (the gradient-masking check) succeeds less often at high T.

Spearman's rho over 7 temperatures is a coarse test, and with few attacked images the noise of
a mean perturbation is large; the table reports the numbers so a reader can judge.

The command line is `python -m keras_takd.takd.compare` (it prints these tables as Markdown).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import pandas as pd

from keras_takd.takd import schema
from keras_takd.takd.figures import ROLES, chain_length, dataset_label

BASELINE = {"mnist": 0.9938, "cifar10": 0.7772}
ACCURACY_VARIATION = {"mnist": 0.0015, "cifar10": 0.012}
BASELINE_TOLERANCE = 0.005

BASELINE_CLAIM = "baseline accuracy (T = 1 teacher)"
VARIATION_CLAIM = "accuracy varies little with distillation"
CONFIDENCE_CLAIM = "confidence has no concrete trend over T (Fig. 6)"
PAPERNOT_CLAIM = "distillation at high T cuts the adversarial success rate"
CARLINI_CLAIM = "distillation does not stop the L2 attack on the logits"
# Fig. 4 of Mandal & Guo: the fraction of test images whose mean |input gradient| < 1e-10, of
# the sum of the logits (the authors' code) and of the T = 1 softmax (Papernot's gradient).
SENSITIVITIES = {
    "logits": "gradient of the sum of logits (the authors' code)",
    "softmax": "gradient of the T = 1 softmax (Papernot)",
}


@dataclasses.dataclass(frozen=True)
class Claim:
    """One claim: who says it, what they report, what we measured, and the verdict."""

    source: str
    claim: str
    paper: str
    ours: str
    test: str
    verdict: str  # "agrees", "disagrees" or "no data" (e.g. fewer than 3 temperatures)


def _verdict(ok: bool) -> str:
    return "agrees" if ok else "disagrees"


def _trend(rhos: dict[str, float], ok) -> str:
    """The verdict on correlations: "no data" if any is undefined, else whether all pass ok."""
    if not rhos or any(pd.isna(r) for r in rhos.values()):
        return "no data"
    return _verdict(all(ok(r) for r in rhos.values()))


def _no_data(source: str, claim: str, paper: str, test: str, why: str) -> Claim:
    return Claim(source, claim, paper, why, test, "no data")


def _rho(curve: pd.Series) -> float:
    """Spearman's rank correlation between a curve's index (T or step) and its values: nan for
    fewer than 3 distinct points, 0 for constant values (no trend at all, e.g. a fraction that
    stays 0% at every T)."""
    curve = curve.dropna()
    if curve.index.nunique() < 3:
        return float("nan")
    if curve.nunique() < 2:
        return 0.0
    # Spearman's rho is Pearson's r of the average ranks (ties share their mean rank), as
    # scipy.stats.spearmanr computes it; ranking here keeps scipy out of the dependencies.
    index_ranks = pd.Series(curve.index, dtype=float).rank()
    value_ranks = pd.Series(curve.to_numpy(), dtype=float).rank()
    return float(index_ranks.corr(value_ranks, method="pearson"))


def _rhos_by_role(curves: dict[str, pd.Series]) -> dict[str, float]:
    return {role: _rho(curve) for role, curve in curves.items()}


def _pct(value: float) -> str:
    return f"{100 * value:.2f}%"


def _sweep(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of three-model chains (teacher, assistant, student)."""
    return df[chain_length(df) <= 3]


def _by_role(df: pd.DataFrame, column: str) -> dict[str, pd.Series]:
    """{role: column by temperature} for the roles with data."""
    out = {}
    for role in ROLES:
        rows = df[(df["role"] == role)].dropna(subset=[column]) if column in df else df.iloc[:0]
        if not rows.empty:
            out[role] = rows.groupby("temperature")[column].mean().sort_index()
    return out


def _accuracy_claims(df: pd.DataFrame, dataset: str) -> list[Claim]:
    sweep = _sweep(df)
    source = "Mandal & Guo"
    claims = []
    teacher_t1 = sweep[(sweep["role"] == "teacher") & (sweep["temperature"] == 1.0)]
    test = f"within {100 * BASELINE_TOLERANCE:.1f} points"
    if teacher_t1.empty or dataset not in BASELINE:
        claims.append(_no_data(source, BASELINE_CLAIM, "", test, "no T = 1 teacher"))
    else:
        ours = float(teacher_t1["test_accuracy"].iloc[0])
        gap = abs(ours - BASELINE[dataset])
        claims.append(
            Claim(
                source,
                BASELINE_CLAIM,
                _pct(BASELINE[dataset]),
                _pct(ours),
                test,
                _verdict(gap <= BASELINE_TOLERANCE),
            )
        )
    diffs = _distilled_minus_teacher(sweep, "test_accuracy")
    bound = ACCURACY_VARIATION.get(dataset)
    test = "max |distilled - teacher at the same T| <= the paper's"
    if diffs.empty or bound is None:
        claims.append(_no_data(source, VARIATION_CLAIM, "", test, "no distilled rows"))
    else:
        worst = float(diffs.abs().max())
        claims.append(
            Claim(
                source,
                VARIATION_CLAIM,
                f"<= {_pct(bound)}",
                f"max {_pct(worst)} (mean {_pct(float(diffs.mean()))})",
                test,
                _verdict(worst <= bound),
            )
        )
    curves = _by_role(sweep, "test_accuracy")
    rhos = _rhos_by_role(curves)
    test = "Spearman rho(T, accuracy) < 0 for every role"
    claims.append(
        Claim(
            source,
            "accuracy decreases with T",
            "decreasing",
            _rhos(rhos),
            test,
            _trend(rhos, lambda r: r < 0),
        )
    )
    if not diffs.empty:
        share = float((diffs >= 0).mean())
        claims.append(
            Claim(
                source,
                "at a fixed T distilled models are more accurate in most cases",
                "most cases",
                f"{share:.0%} of {len(diffs)} (T, stage) pairs",
                "more than half at least as accurate as their teacher",
                _verdict(share > 0.5),
            )
        )
    return claims


def _rhos(rhos: dict[str, float]) -> str:
    return ", ".join(f"{role} {r:+.2f}" for role, r in rhos.items())


def _distilled_minus_teacher(rows: pd.DataFrame, column: str) -> pd.Series:
    """column(distilled stage) - column(teacher) at the same temperature, one per row."""
    if column not in rows:
        return pd.Series(dtype=float)
    teachers = rows[rows["stage"] == 1].groupby("temperature")[column].mean()
    distilled = rows[rows["stage"] > 1].dropna(subset=[column])
    return (distilled[column] - distilled["temperature"].map(teachers)).dropna()


def _sensitivity_claims(df: pd.DataFrame) -> list[Claim]:
    test = "Spearman rho(T, fraction) > 0 for the teachers"
    source = "Mandal & Guo"
    claims = []
    for of, what in SENSITIVITIES.items():
        name = f"higher T: more gradients < 1e-10 (Fig. 4), {what}"
        teachers = _by_role(_sweep(df), f"sensitivity_{of}_zero_fraction").get("teacher")
        if teachers is None or len(teachers) < 3:
            claims.append(_no_data(source, name, "increasing", test, "fewer than 3 T"))
            continue
        rho = _rho(teachers)
        ours = (
            f"rho {rho:+.2f}; {_pct(float(teachers.iloc[0]))} at T = {teachers.index[0]:g}, "
            f"{_pct(float(teachers.iloc[-1]))} at T = {teachers.index[-1]:g}"
        )
        claims.append(
            Claim(source, name, "increasing", ours, test, _trend({"teacher": rho}, lambda r: r > 0))
        )
    return claims


def _robustness_claims(df: pd.DataFrame) -> list[Claim]:
    sweep = _sweep(df)
    source = "Mandal & Guo"
    claims = []
    for attack in schema.ATTACKS:
        column = f"{attack}_mean"
        curves = _by_role(sweep, column)
        name = f"C&W {attack.upper().replace('LINF', 'L-inf')}"
        test = "Spearman rho(T, mean perturbation) > 0 for every role"
        if not curves:
            claims.append(
                _no_data(source, f"{name}: robustness increases with T", "", test, "no data")
            )
            continue
        rhos = _rhos_by_role(curves)
        claims.append(
            Claim(
                source,
                f"{name}: robustness increases with T",
                "increasing",
                _rhos(rhos),
                test,
                _trend(rhos, lambda r: r > 0),
            )
        )
        means = {role: float(c.mean()) for role, c in curves.items()}
        test = "student's mean over T above the teacher's and the assistant's"
        if "student" not in means or len(means) < 2:
            continue
        others = [means[r] for r in ("teacher", "assistant") if r in means]
        claims.append(
            Claim(
                source,
                f"{name}: the student is the most robust on average",
                "student > assistant, teacher",
                ", ".join(f"{role} {m:.4g}" for role, m in means.items()),
                test,
                _verdict(all(means["student"] > m for m in others)),
            )
        )
    return claims


def _confidence_claims(df: pd.DataFrame) -> list[Claim]:
    curves = _by_role(_sweep(df), "confidence")
    test = "|Spearman rho(T, confidence)| < 0.5 for every role"
    source = "Mandal & Guo"
    if not curves:
        return [_no_data(source, CONFIDENCE_CLAIM, "", test, "no data")]
    rhos = _rhos_by_role(curves)
    return [
        Claim(
            source,
            CONFIDENCE_CLAIM,
            "no trend",
            _rhos(rhos),
            test,
            _trend(rhos, lambda r: abs(r) < 0.5),
        )
    ]


def _multistep_claims(df: pd.DataFrame, dataset: str) -> list[Claim]:
    chains = df[chain_length(df) > 3]
    source = "Mandal & Guo"
    if chains.empty:
        return [_no_data(source, "multi-step distillation (section VI)", "", "", "no chain > 3")]
    claims = []
    diffs = _distilled_minus_teacher(chains, "test_accuracy")
    bound = ACCURACY_VARIATION.get(dataset)
    if not diffs.empty and bound is not None:
        worst = float(diffs.abs().max())
        claims.append(
            Claim(
                source,
                "multi-step: accuracy varies little with the step (Fig. 7)",
                f"<= {_pct(bound)}",
                f"max {_pct(worst)}",
                "max |step k - teacher at the same T| <= the paper's bound",
                _verdict(worst <= bound),
            )
        )
    for attack in schema.ATTACKS:
        column = f"{attack}_mean"
        if column not in chains or chains[column].isna().all():
            continue
        by_step = chains.groupby("stage")[column].mean().dropna().sort_index()
        rho = _rho(by_step)
        claims.append(
            Claim(
                source,
                f"multi-step: C&W {attack} robustness (mean over T) rises with the step",
                "increasing (Fig. 8)",
                f"rho {rho:+.2f}; step 1 {by_step.iloc[0]:.4g}, step {by_step.index[-1]} "
                f"{by_step.iloc[-1]:.4g}",
                "Spearman rho(step, mean over T) > 0",
                _trend({"steps": rho}, lambda r: r > 0),
            )
        )
    return claims


def _papernot_claims(df: pd.DataFrame) -> list[Claim]:
    column = "l2_budget_success_rate"
    sweep = _sweep(df)
    source = "Papernot et al."
    test = "success at the budget falls by more than half from the T = 1 teacher"
    if column not in sweep or sweep[column].isna().all():
        return [_no_data(source, PAPERNOT_CLAIM, "", test, "no data")]
    rows = sweep.dropna(subset=[column])
    base = rows[(rows["stage"] == 1) & (rows["temperature"] == rows["temperature"].min())]
    last = rows[rows["stage"] == rows["stage"].max()]
    last = last[last["temperature"] == last["temperature"].max()]
    if base.empty or last.empty:
        return [_no_data(source, PAPERNOT_CLAIM, "", test, "no data")]
    before, after = float(base[column].iloc[0]), float(last[column].iloc[0])
    budget = float(rows["l2_budget"].iloc[0]) if "l2_budget" in rows else float("nan")
    return [
        Claim(
            source,
            PAPERNOT_CLAIM,
            "95.89% -> 0.45% (JSMA, MNIST, T = 100)",
            f"C&W L2 within {budget:g}: {_pct(before)} (T = {base['temperature'].iloc[0]:g} "
            f"teacher) -> {_pct(after)} (T = {last['temperature'].iloc[0]:g}, stage "
            f"{int(last['stage'].iloc[0])})",
            test,
            _verdict(after < before / 2),
        )
    ]


def _carlini_claims(df: pd.DataFrame) -> list[Claim]:
    source = "Carlini & Wagner"
    claims = []
    if "l2_success_rate" in df and df["l2_success_rate"].notna().any():
        rates = df["l2_success_rate"].dropna()
        claims.append(
            Claim(
                source,
                CARLINI_CLAIM,
                "100%",
                f"min {_pct(float(rates.min()))} over {len(rates)} models",
                "success >= 95% for every model",
                _verdict(float(rates.min()) >= 0.95),
            )
        )
    else:
        claims.append(_no_data(source, CARLINI_CLAIM, "", "", "no l2 columns"))
    masked = "l2_softmax_T_success_rate"
    if masked in df and df[masked].notna().any():
        rows = df.dropna(subset=[masked])
        low, high = rows["temperature"].min(), rows["temperature"].max()
        at_low = float(rows.loc[rows["temperature"] == low, masked].mean())
        at_high = float(rows.loc[rows["temperature"] == high, masked].mean())
        logits = float(rows.loc[rows["temperature"] == high, "l2_success_rate"].mean())
        claims.append(
            Claim(
                source,
                "attacking softmax(z / T) instead of the logits masks the gradient",
                "attack fails on the softmax of a distilled model",
                f"softmax(z/T): {_pct(at_low)} at T = {low:g}, {_pct(at_high)} at T = "
                f"{high:g}; logits at T = {high:g}: {_pct(logits)}",
                "softmax success at the highest T below the logits' success",
                _verdict(at_high < logits),
            )
        )
    return claims


def check_claims(df: pd.DataFrame, dataset: str) -> list[Claim]:
    """Every claim of the module docstring for one dataset of a results table."""
    rows = df[df["dataset"] == dataset]
    if rows.empty:
        raise ValueError(f"no rows of dataset {dataset!r} in the results")
    return [
        *_accuracy_claims(rows, dataset),
        *_sensitivity_claims(rows),
        *_robustness_claims(rows),
        *_confidence_claims(rows),
        *_multistep_claims(rows, dataset),
        *_papernot_claims(rows),
        *_carlini_claims(rows),
    ]


def to_markdown(claims: Sequence[Claim], dataset: str) -> str:
    """A Markdown table of the claims, headed by the dataset's name."""
    lines = [
        f"### {dataset_label(dataset)}",
        "",
        "| source | claim | paper | ours | test | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for c in claims:
        cells = (c.source, c.claim, c.paper, c.ours, c.test, f"**{c.verdict}**")
        lines.append("| " + " | ".join(str(x).replace("|", "\\|") for x in cells) + " |")
    return "\n".join(lines) + "\n"


SUMMARY_COLUMNS = {
    "test_accuracy": ("accuracy", lambda v: f"{100 * v:.2f}%"),
    "sensitivity_logits_zero_fraction": ("logits grad < 1e-10", lambda v: f"{100 * v:.1f}%"),
    "sensitivity_softmax_zero_fraction": ("softmax grad < 1e-10", lambda v: f"{100 * v:.1f}%"),
    "confidence": ("confidence", lambda v: f"{v:.3f}"),
    "l0_mean": ("L0 mean (px)", lambda v: f"{v:.1f}"),
    "l2_mean": ("L2 mean", lambda v: f"{v:.3f}"),
    "linf_mean": ("L-inf mean", lambda v: f"{v:.3f}"),
    "l2_budget_success_rate": ("L2 <= budget", lambda v: f"{100 * v:.0f}%"),
    "l2_softmax_T_success_rate": ("L2 on softmax(z/T)", lambda v: f"{100 * v:.0f}%"),
}


def summary_markdown(df: pd.DataFrame, dataset: str) -> str:
    """The numbers behind the claims: one row per (chain length, T, stage) of `dataset`."""
    rows = df[df["dataset"] == dataset].assign(_chain=lambda d: chain_length(d).astype(int))
    rows = rows.sort_values(["_chain", "temperature", "stage"], kind="stable")
    columns = [c for c in SUMMARY_COLUMNS if c in rows and rows[c].notna().any()]
    header = ["chain", "T", "stage", "role"] + [SUMMARY_COLUMNS[c][0] for c in columns]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for _, row in rows.iterrows():
        cells = [str(row["_chain"]), f"{row['temperature']:g}", str(int(row["stage"])), row["role"]]
        cells += ["" if pd.isna(row[c]) else SUMMARY_COLUMNS[c][1](row[c]) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"

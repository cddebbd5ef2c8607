"""The paired L0 and L-inf differences of figures/decisive/fmn_l0_linf (its README's table).

On the images both models classify correctly and FMN fooled on both, per temperature and
comparison: the mean per-image difference (later model - earlier) with its 95% t-interval and
the paired t-test's p (`scipy.stats.ttest_1samp` on the differences), unadjusted.

    python figures/decisive/fmn_l0_linf/paired_differences.py
"""

import pathlib

import pandas as pd
from scipy import stats

COMPARISONS = [
    (3, 2, "student - assistant"),
    (2, 1, "assistant - teacher"),
    (3, 1, "student - teacher"),
]

rows = pd.read_csv(pathlib.Path(__file__).with_name("per_image.csv"))
rows = rows[rows["correct"] & rows["success"]]
print("| T | attack | comparison | mean difference [95% CI] | paired t p | n |")
print("|---|---|---|---|---|---|")
for (temperature, attack), part in rows.groupby(["temperature", "attack"]):
    distance = part.pivot(index="image", columns="stage", values="distance")
    for later, earlier, name in COMPARISONS:
        difference = (distance[later] - distance[earlier]).dropna()
        test = stats.ttest_1samp(difference, 0.0)
        interval = test.confidence_interval(0.95)
        print(
            f"| {temperature:g} | {attack} | {name} | {difference.mean():+.4g} "
            f"[{interval.low:+.4g}, {interval.high:+.4g}] | {test.pvalue:.2g} | {len(difference)} |"
        )

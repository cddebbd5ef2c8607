"""Attack statistics and the results CSV: sufficient statistics per shard, columns, writing.

A shard holds sums and counts per attack (`attack_statistics`), so shards merge exactly
(`keras_takd.takd.evaluation.shards`); `final_columns` turns them into the `METRIC_COLUMNS`.
"""

from __future__ import annotations

import math
import pathlib
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from keras_takd.core import files, metrics
from keras_takd.core.results import update_results
from keras_takd.takd.analysis.tables import SEED_COLUMN
from keras_takd.takd.evaluation.runs import (
    Run,
    check_results_file,
    model_key_columns,
    stat_columns,
)
from keras_takd.takd.schema import (
    APGD_ATTACKS,
    ATTACK_PREFIXES,
    CHAIN_COLUMNS,
    CHAIN_LENGTH_COLUMN,
    CONFIG_COLUMN,
    INDICATORS,
    METRIC_COLUMNS,
    OPTIONAL_ATTACK_COLUMNS,
    SHARD_COLUMNS,
    STAT_SUFFIXES,
    attack_norm,
)


def attack_statistics(
    result, prefix: str, correct: np.ndarray, budget: float | None = None
) -> dict[str, float]:
    """Sufficient statistics of one attack on one block of images (mergeable across shards).

    Args:
        result: the `AttackResult` over the correctly classified images, in order.
        prefix: the column prefix ("l0", "l2", "linf", "l2_softmax_T", or an optional attack's).
        correct: the mask [n] of correctly classified images of the block.
        budget: if given, also count successes within it (in the prefix's norm).

    Returns:
        {attacked, excluded, successes, sum, max} and, with a budget, {budget, within}.
    """
    norm = attack_norm(prefix)
    summary = metrics.robustness_summary(result, prefix, correct, norm)
    attacked = summary[f"{prefix}_attacked"]
    distances = np.asarray(getattr(result, norm), np.float64)[np.asarray(result.success, bool)]
    stats = {
        "attacked": attacked,
        "excluded": summary[f"{prefix}_excluded"],
        "successes": int(distances.size),
        "sum": math.fsum(distances.tolist()),
        "max": summary[f"{prefix}_max"],
    }
    if budget is not None:
        rate = metrics.success_at_budget(result, norm, budget, correct)
        stats["budget"] = float(budget)
        stats["within"] = int(round(rate * attacked)) if attacked else 0
    return stats


def empty_statistics(excluded: int, budget: float | None) -> dict:
    stats = {"attacked": 0, "excluded": excluded, "successes": 0, "sum": 0.0, "max": math.nan}
    return stats | ({"budget": float(budget), "within": 0} if budget is not None else {})


def final_columns(prefix: str, stats: Mapping[str, float]) -> dict[str, float]:
    """The METRIC_COLUMNS (or OPTIONAL_ATTACK_COLUMNS) of one attack from its statistics."""
    attacked, successes = int(stats["attacked"]), int(stats["successes"])
    if prefix in APGD_ATTACKS:  # a fixed-budget attack: robust accuracy at its eps
        images = attacked + int(stats["excluded"])
        return {
            f"{prefix}_eps": float(stats["eps"]),
            f"{prefix}_robust_accuracy": (attacked - successes) / images if images else math.nan,
            f"{prefix}_success_rate": successes / attacked if attacked else math.nan,
            f"{prefix}_attacked": attacked,
            f"{prefix}_excluded": int(stats["excluded"]),
        }
    row = {
        f"{prefix}_mean": stats["sum"] / successes if successes else math.nan,
        f"{prefix}_max": float(stats["max"]) if successes else math.nan,
        f"{prefix}_success_rate": successes / attacked if attacked else math.nan,
        f"{prefix}_attacked": attacked,
        f"{prefix}_excluded": int(stats["excluded"]),
    }
    if "budget" in stats and not pd.isna(stats["budget"]):
        row[f"{prefix}_budget"] = float(stats["budget"])
        row[f"{prefix}_budget_success_rate"] = (
            int(stats["within"]) / attacked if attacked else math.nan
        )
    return row


def shard_columns(prefix: str, stats: Mapping[str, float]) -> dict[str, float]:
    row = {f"{prefix}_{s}": stats[s] for s in STAT_SUFFIXES}
    if "eps" in stats:
        row[f"{prefix}_eps"] = stats["eps"]
    if "budget" in stats:
        row[f"{prefix}_budget"] = stats["budget"]
        row[f"{prefix}_budget_within"] = stats["within"]
    return row


def _column_order(columns, sharded: bool) -> list[str]:
    """Training columns (a run of several seeds' `seed` after `stage`), stages, [shard
    columns], metric columns, [stats], then the rest."""
    chain = [*CHAIN_COLUMNS, CHAIN_LENGTH_COLUMN]
    chain.insert(chain.index("stage") + 1, SEED_COLUMN)
    order = chain + (list(SHARD_COLUMNS) if sharded else []) + list(METRIC_COLUMNS)
    order += list(OPTIONAL_ATTACK_COLUMNS) + stat_columns(ATTACK_PREFIXES) + [CONFIG_COLUMN]
    order = list(dict.fromkeys(order))
    columns = list(columns)
    return [c for c in order if c in columns] + [c for c in columns if c not in order]


def write_results(
    path: str | pathlib.Path, rows: Sequence[dict], config: str, sharded: bool = False
) -> pd.DataFrame:
    """Upserts rows into a results CSV (via `core.results.update_results`), columns in order.

    Raises:
        ValueError, ConfigMismatchError: see `check_results_file`.
    """
    check_results_file(path, config, sharded=sharded, run=_fake_run(rows))
    key = model_key_columns({k for row in rows for k in row})
    table = tidy(update_results(path, rows, key, CHAIN_COLUMNS), sharded)
    files.write_csv_atomic(path, table)  # again: canonical column order and integer counts
    return table


def tidy(table: pd.DataFrame, sharded: bool) -> pd.DataFrame:
    """Columns in `_column_order`; counts as integers (nullable), whatever rows had them."""
    table = table[_column_order(table.columns, sharded)].copy()
    counts = ("stage", "stages", "epochs", "metric_images", *SHARD_COLUMNS)
    for column in table.columns:
        suffixes = ("_attacked", "_excluded", "_successes", "_within", *INDICATORS)
        if column in counts or column.endswith(suffixes):
            values = pd.to_numeric(table[column], errors="coerce")
            if values.notna().any() and (values.dropna() % 1 == 0).all():
                table[column] = values.astype("Int64")
    return table


def _fake_run(rows: Sequence[dict]) -> Run:
    """Lets the columns of the rows being written count as known."""
    return Run(pathlib.Path("."), {}, pd.DataFrame(columns=sorted({k for r in rows for k in r})))

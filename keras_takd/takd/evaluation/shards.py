"""Merging the shard CSVs of one sharded evaluation into the table an unsharded run writes.

Shards hold sums and counts per attack, so the merge is exact: mean = sum / successes, max =
max of maxima (up to float round-off of the sums, about 1e-16 relative).
"""

from __future__ import annotations

import math
import pathlib
from collections.abc import Sequence
from typing import Any

import pandas as pd

from keras_takd.core.results import ConfigMismatchError
from keras_takd.takd.evaluation.runs import check_results_file, read_csv, stat_columns
from keras_takd.takd.evaluation.tables import final_columns, tidy
from keras_takd.takd.schema import (
    ATTACK_PREFIXES,
    CONFIG_COLUMN,
    KEY_COLUMNS,
    SHARD_COLUMNS,
    indicator_columns,
)


def merge_shards(paths: Sequence[str | pathlib.Path]) -> pd.DataFrame:
    """Combines the shard CSVs of one evaluation into the table an unsharded run writes.

    Args:
        paths: every `results_shard<i>of<N>.csv` of the evaluation, i = 0 .. N - 1.

    Returns:
        The merged table (columns as in an unsharded results.csv).

    Raises:
        FileNotFoundError: a path is missing.
        ValueError: a file is not a shard CSV, shards are missing or repeated, hold different
            models, or one shard lacks an attack that another has.
        ConfigMismatchError: the shards come from different evaluation configurations.
    """
    shards = [_read_shard(pathlib.Path(p)) for p in paths]
    if not shards:
        raise ValueError("no shard CSV given")
    _check_shard_set(paths, shards)
    key = list(KEY_COLUMNS)
    ordered = [s.sort_values(key, kind="stable").reset_index(drop=True) for s in shards]
    by_index = sorted(zip(paths, ordered, strict=True), key=lambda pair: pair[1].shard_index[0])
    rows = [_merge_row([(p, s.iloc[i]) for p, s in by_index]) for i in range(len(ordered[0]))]
    return tidy(pd.DataFrame(rows), sharded=False)


def _read_shard(path: pathlib.Path) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"shard CSV {path} not found")
    table = read_csv(path)
    missing = [c for c in (*KEY_COLUMNS, *SHARD_COLUMNS, CONFIG_COLUMN) if c not in table.columns]
    if missing or table.empty:
        raise ValueError(
            f"{path} is not a shard CSV of keras_takd.takd.evaluate (lacks {missing} or has no "
            "rows)"
        )
    check_results_file(path, None, sharded=True)
    for column in SHARD_COLUMNS + (CONFIG_COLUMN,):
        if table[column].nunique(dropna=False) != 1:
            raise ValueError(f"{path} mixes several values of {column}: not one shard's CSV")
    return table


def _check_shard_set(paths, shards: list[pd.DataFrame]) -> None:
    configs = {str(s[CONFIG_COLUMN][0]) for s in shards}
    if len(configs) > 1:
        raise ConfigMismatchError(
            f"the shards come from different evaluation configurations {sorted(configs)}: "
            "merge only shards of one evaluation"
        )
    counts = {int(s.num_shards[0]) for s in shards}
    indices = sorted(int(s.shard_index[0]) for s in shards)
    if len(counts) > 1 or indices != list(range(max(counts))):
        raise ValueError(
            f"expected shards 0..{max(counts) - 1} of {max(counts)} once each, got shard "
            f"indices {indices} (num_shards {sorted(counts)})"
        )
    keys = [set(map(tuple, s[list(KEY_COLUMNS)].astype(str).values)) for s in shards]
    for path, k in zip(paths, keys, strict=True):
        if k != keys[0]:
            raise ValueError(f"{path} holds other models than {paths[0]}: not shards of one run")


def _merge_row(parts: list[tuple[Any, pd.Series]]) -> dict:
    """One model's merged row from its row in every shard, in shard order."""
    first = parts[0][1]
    row = {c: first[c] for c in first.index if c not in stat_columns(ATTACK_PREFIXES)}
    for column in SHARD_COLUMNS:
        row.pop(column)
    for prefix in ATTACK_PREFIXES:
        present = [
            f"{prefix}_attacked" in s.index and not pd.isna(s[f"{prefix}_attacked"])
            for _, s in parts
        ]
        if not any(present):
            continue
        if not all(present):
            lacking = [str(p) for (p, _), ok in zip(parts, present, strict=True) if not ok]
            raise ValueError(
                f"{lacking[0]} lacks {prefix} results for {first['dataset']} "
                f"T={first['temperature']:g} stage {first['stage']}: finish that shard first"
            )
        row |= final_columns(prefix, _merge_statistics(prefix, [s for _, s in parts]))
        row |= _merge_indicators(prefix, [s for _, s in parts])
    return row


def _merge_indicators(prefix: str, rows: list[pd.Series]) -> dict:
    """Indicator counts added over shards; NaN unless every shard checked the indicator, and
    no column at all if none did (an evaluation run with --noindicators)."""
    merged = {}
    for column in indicator_columns(prefix):
        counts = [s.get(column, math.nan) for s in rows]
        if not any(column in s.index for s in rows):
            continue
        merged[column] = math.nan if any(pd.isna(c) for c in counts) else int(sum(counts))
    return merged


def _merge_statistics(prefix: str, rows: list[pd.Series]) -> dict:
    """Adds counts and sums, takes the largest max over shards with successes."""
    stats = {
        name: sum(int(s[f"{prefix}_{name}"]) for s in rows)
        for name in ("attacked", "excluded", "successes")
    }
    stats["sum"] = math.fsum(float(s[f"{prefix}_sum"]) for s in rows)
    maxima = [float(s[f"{prefix}_max"]) for s in rows if s[f"{prefix}_successes"]]
    stats["max"] = max(maxima, default=math.nan)
    if f"{prefix}_eps" in rows[0].index:  # APGD's radius, the same in every shard
        stats["eps"] = float(rows[0][f"{prefix}_eps"])
    if f"{prefix}_budget_within" in rows[0].index and not pd.isna(rows[0][f"{prefix}_budget"]):
        stats["budget"] = float(rows[0][f"{prefix}_budget"])
        stats["within"] = sum(int(s[f"{prefix}_budget_within"]) for s in rows)
    return stats

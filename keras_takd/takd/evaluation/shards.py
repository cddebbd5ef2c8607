"""Merging the shard CSVs of one sharded evaluation into the table an unsharded run writes.

Shards hold sums and counts per attack, so the merge is exact: mean = sum / successes, max =
max of maxima (up to float64 round-off of the sums, about 1e-16 relative). The merged table can
still differ from an unsharded run's by more (issue 23 measured about 4e-9 relative): a shard's
attack runs its images in other batches, and float32 results depend on the batch an image is
computed in. Each shard CSV holds
its evaluation's id (which hashes the test set) and each model's weights (`WEIGHTS_COLUMN`),
so shards of different runs or test sets are refused, never mixed. `write_merged` writes a
merge into a run's record under the run's locks, after checking the shards' models against
the run's.
"""

from __future__ import annotations

import math
import pathlib
from collections.abc import Sequence
from typing import Any

import pandas as pd

from keras_takd.core import files, locking, record
from keras_takd.core.results import ConfigMismatchError
from keras_takd.takd import exports
from keras_takd.takd.analysis.tables import SEED_COLUMN
from keras_takd.takd.evaluation.per_image import merge_per_image, write_per_image
from keras_takd.takd.evaluation.runs import (
    WEIGHTS_COLUMN,
    check_results_file,
    model_key_columns,
    read_csv,
    read_run,
    row_seed,
    stat_columns,
)
from keras_takd.takd.evaluation.tables import final_columns, tidy, write_results
from keras_takd.takd.evaluation.units import load_model
from keras_takd.takd.schema import (
    ATTACK_PREFIXES,
    CHAIN_COLUMNS,
    CHAIN_LENGTH_COLUMN,
    CONFIG_COLUMN,
    KEY_COLUMNS,
    METRIC_COLUMNS,
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
            models or a model with different weights, or one shard lacks an attack that
            another has.
        ConfigMismatchError: the shards come from different evaluation configurations.
    """
    shards = [_read_shard(pathlib.Path(p)) for p in paths]
    if not shards:
        raise ValueError("no shard CSV given")
    _check_shard_set(paths, shards)
    key = list(model_key_columns(shards[0].columns))
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
    if WEIGHTS_COLUMN not in table.columns:
        raise ValueError(
            f"{path} records no model weights ({WEIGHTS_COLUMN}): written by an earlier "
            "version; evaluate the shard again"
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
    keys = [set(map(_key, s.to_dict("records"))) for s in shards]
    for path, k in zip(paths, keys, strict=True):
        if k != keys[0]:
            raise ValueError(f"{path} holds other models than {paths[0]}: not shards of one run")
    _check_weights(paths, shards)


def _check_weights(paths, shards: list[pd.DataFrame]) -> None:
    """Raises ValueError naming the first model whose weights differ between two shards."""
    first = _weights(shards[0])
    for path, shard in zip(paths[1:], shards[1:], strict=True):
        for model, sha in _weights(shard).items():
            if sha != first[model]:
                raise ValueError(
                    f"{_model_name(model)} has weights {first[model][:12]} in {paths[0]} and "
                    f"{sha[:12]} in {path}: shards of different runs are not merged"
                )


def _weights(shard: pd.DataFrame) -> dict[tuple, str]:
    """{model key: weights sha256} of a shard CSV."""
    return {_key(row): str(row[WEIGHTS_COLUMN]) for row in shard.to_dict("records")}


def _model_name(key: tuple) -> str:
    dataset, temperature, seed, stage = key
    seed = "" if seed is None else f" seed {seed}"
    return f"{dataset}{seed} T={float(temperature):g} stage {stage}"


def _merge_row(parts: list[tuple[Any, pd.Series]]) -> dict:
    """One model's merged row from its row in every shard, in shard order."""
    first = parts[0][1]
    row = {c: first[c] for c in first.index if c not in stat_columns(ATTACK_PREFIXES)}
    for column in (*SHARD_COLUMNS, WEIGHTS_COLUMN):
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
                f"{lacking[0]} lacks {prefix} results for {_model_name(_key(first))}: finish "
                "that shard first"
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


def write_merged(
    output: str | pathlib.Path, paths: Sequence[str | pathlib.Path]
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Merges shards (`merge_shards`, `merge_per_image`) and writes the merged tables.

    Into a run's results.csv: the run's record is written instead (results.csv and
    per_image.csv are its exports), holding the run's lock shared (so no training changes
    its models meanwhile) and the record's lock, after checking that every merged model is
    one of the run's, with the same chain length and weights. Elsewhere: `output` and the
    per-image table beside it are written (rows upserted) as CSVs.

    Args:
        output: the results CSV to write.
        paths: every shard CSV of the evaluation (see `merge_shards`).

    Returns:
        The results table written, and the per-image table (None if a shard lacks one).

    Raises:
        FileNotFoundError, ValueError, ConfigMismatchError: see `merge_shards`.
        FolderInUseError: a training holds the run's folder.
        ValueError: a merged model is not the run's (its key, chain length or weights).
        ConfigMismatchError: `output` holds results of another configuration.
    """
    merged, per_image = merge_shards(paths), merge_per_image(paths)
    output = pathlib.Path(output)
    evaluation = str(merged[CONFIG_COLUMN].iloc[0])
    folder = output.parent
    if output.name != exports.RESULTS or not record.models(folder):
        table = write_results(output, merged.to_dict("records"), evaluation)
        if per_image is not None:
            write_per_image(output, per_image.to_dict("records"))
        return table, per_image
    with locking.hold_lock(folder / locking.RUN_LOCK, shared=True):
        seeds = _check_run(folder, merged, _weights(_read_shard(pathlib.Path(paths[0]))))
        training = (set(CHAIN_COLUMNS) | {CHAIN_LENGTH_COLUMN}) - set(METRIC_COLUMNS)
        columns = [
            {k: v for k, v in row.items() if k not in training}
            | {c: row[c] for c in KEY_COLUMNS}
            | {SEED_COLUMN: seeds[_key(row)]}
            for row in merged.to_dict("records")
        ]
        rows = [] if per_image is None else per_image.to_dict("records")
        rows = [row | {SEED_COLUMN: seeds[_key(row)]} for row in rows]
        config = folder / "eval" / evaluation / "config.json"
        identity = files.read_json(config) if config.is_file() else {}
        with record.writing(folder) as connection:
            record.put_evaluation(connection, evaluation, identity)
            record.put_evaluation_rows(connection, evaluation, columns, rows)
        return exports.export_run(folder), per_image


def _key(row) -> tuple:
    """A row's model: (dataset, temperature, seed, stage), the seed None in a run of one
    seed."""
    return str(row["dataset"]), float(row["temperature"]), row_seed(row), int(row["stage"])


def _check_run(
    folder: pathlib.Path, merged: pd.DataFrame, weights: dict[tuple, str]
) -> dict[tuple, int]:
    """{model key: seed} of the run's models, after checking the merged ones are the run's.

    Raises:
        ValueError: naming the first merged model the run lacks, or whose chain length or
            weights differ from the run's.
    """
    run = read_run(folder)
    seeded = SEED_COLUMN in merged.columns  # a run of one seed's rows name none
    models = {_key(m if seeded else m | {SEED_COLUMN: None}): m for m in record.models(folder)}
    for row in merged.to_dict("records"):
        model, name = models.get(_key(row)), _model_name(_key(row))
        if model is None:
            raise ValueError(f"{name} is merged but {folder} has no such model: not its shards")
        if int(model["stages"]) != int(row[CHAIN_LENGTH_COLUMN]):
            raise ValueError(
                f"{name} of a chain of {int(row[CHAIN_LENGTH_COLUMN])} stages is merged, "
                f"{folder} has a chain of {model['stages']}: evaluate the run again"
            )
        _, sha = load_model(run.model_file(row))
        if sha != weights[_key(row)]:
            raise ValueError(
                f"{name} has weights {weights[_key(row)][:12]} in the shards and {sha[:12]} "
                f"in {folder}: not its shards"
            )
    return {key: int(model[SEED_COLUMN]) for key, model in models.items()}

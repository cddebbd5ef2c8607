"""Reads and checks the tables the analysis starts from: results CSVs and per-image CSVs.

The one place that knows where a per-image table lives (`per_image_path`: results.csv ->
per_image.csv, results_shard<i>of<N>.csv -> per_image_shard<i>of<N>.csv, <name>.csv ->
<name>_per_image.csv, all beside the results CSV), the one reader of each kind of table
(`read_results`, `read_per_image`) and the names every analysis shares: the roles of a
three-model chain (Mandal & Guo, "Improving Defensive Distillation using Teacher Assistant",
sections V-VI: teacher -> assistant -> student), each row's chain length and a dataset's
printed name. Needs neither TensorFlow nor
matplotlib.
"""

from __future__ import annotations

import pathlib
from collections.abc import Sequence

import pandas as pd

from keras_takd.takd.schema import (
    CHAIN_LENGTH_COLUMN,
    INDICATORS,
    KEY_COLUMNS,
    PER_IMAGE_COLUMNS,
    ROLE_COLUMN,
)

ROLES = ("teacher", "assistant", "student")
"""The models of a three-model chain, in order (`schema.ROLE_COLUMN`)."""

RESULTS_REQUIRED = (*KEY_COLUMNS, ROLE_COLUMN)
"""What every results row must hold: the key and the model's role in its chain."""
PER_IMAGE_REQUIRED = (*RESULTS_REQUIRED, "attack", "image", "correct", "success", "distance")
"""What a per-image table must hold; the other `schema.PER_IMAGE_COLUMNS` may be absent (tables
written before them): `stages` is then inferred (`chain_length`), the rest comes back empty."""
SORT_COLUMNS = [*KEY_COLUMNS, "attack", "image"]

PathOrPaths = str | pathlib.Path | Sequence[str | pathlib.Path]


def dataset_label(dataset: str) -> str:
    """A reader's name for a dataset value ("cifar10" -> "CIFAR-10")."""
    return {"mnist": "MNIST", "cifar10": "CIFAR-10"}.get(dataset, str(dataset))


def chain_length(df: pd.DataFrame) -> pd.Series:
    """Models in each row's chain: the `stages` column if present, else the largest stage
    among the rows of the same dataset and temperature."""
    inferred = df.groupby(["dataset", "temperature"])["stage"].transform("max")
    if CHAIN_LENGTH_COLUMN in df.columns:
        return df[CHAIN_LENGTH_COLUMN].fillna(inferred)
    return inferred


def per_image_path(results_path: str | pathlib.Path) -> pathlib.Path:
    """Where the per-image table of a results CSV lives (the one rule, for writers and readers).

    results.csv -> per_image.csv, results_shard<i>of<N>.csv -> per_image_shard<i>of<N>.csv,
    any other <name>.csv -> <name>_per_image.csv (all in the same folder).
    """
    path = pathlib.Path(results_path)
    if path.stem == "results" or path.stem.startswith("results_shard"):
        return path.with_name("per_image" + path.stem[len("results") :] + ".csv")
    return path.with_name(f"{path.stem}_per_image.csv")


def per_image_paths(
    results_paths: Sequence[str | pathlib.Path], given: Sequence[str | pathlib.Path] | None = None
) -> list[pathlib.Path]:
    """The per-image CSVs of some results CSVs: `given` if any, else those that exist beside
    them (`per_image_path`)."""
    if given:
        return [pathlib.Path(p) for p in given]
    beside = [per_image_path(p) for p in results_paths]
    return [p for p in beside if p.is_file()]


def check_results(df: pd.DataFrame) -> None:
    """Checks that a results table has the key columns and at least one row.

    Raises:
        ValueError: naming the missing key columns, or saying the table is empty.
    """
    missing = [c for c in RESULTS_REQUIRED if c not in df.columns]
    if missing:
        raise ValueError(
            f"results lack the key columns {missing}: expected {list(RESULTS_REQUIRED)} "
            f"(found {list(df.columns)[:8]})"
        )
    if df.empty:
        raise ValueError("results hold no rows")


def check_per_image(df: pd.DataFrame) -> None:
    """Checks that a per-image table has the columns of `PER_IMAGE_REQUIRED`.

    Raises:
        ValueError: naming the missing columns.
    """
    missing = [c for c in PER_IMAGE_REQUIRED if c not in df.columns]
    if missing:
        raise ValueError(
            f"per-image data lack the columns {missing}: expected {list(PER_IMAGE_REQUIRED)} "
            f"(keras_takd.takd.schema.PER_IMAGE_COLUMNS; found {list(df.columns)[:8]})"
        )


def as_bool(column: pd.Series) -> pd.Series:
    """A column of truth values as bool, whether read as bool, number or text ("True", "1")."""
    if column.dtype == bool:
        return column
    if pd.api.types.is_numeric_dtype(column):
        return column.fillna(0).astype(bool)
    return column.astype(str).str.strip().str.lower().isin(("true", "1", "1.0"))


def tidy(rows: Sequence[dict] | pd.DataFrame) -> pd.DataFrame:
    """Per-image rows in `schema.PER_IMAGE_COLUMNS` order and types, sorted by model, attack
    and image (absent columns come back empty)."""
    table = pd.DataFrame(rows, columns=list(PER_IMAGE_COLUMNS))
    table = table.astype({"correct": bool, "success": bool, "image": int})
    table = table.astype({name: "boolean" for name in INDICATORS})  # empty: not checked
    table = table.astype({"iterations": "Int64"})
    return table.sort_values(SORT_COLUMNS, kind="stable").reset_index(drop=True)


def _as_paths(paths: PathOrPaths, what: str) -> list[pathlib.Path]:
    if isinstance(paths, (str, pathlib.Path)):
        paths = [paths]
    if not paths:
        raise ValueError(f"no {what} file given")
    return [pathlib.Path(p) for p in paths]


def _read_csv(path: pathlib.Path, what: str, hint: str = "") -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"{what} file {str(path)!r} not found{hint}")
    try:
        return pd.read_csv(path)
    except (ValueError, UnicodeDecodeError) as error:  # pandas' parser errors are ValueErrors
        reason = " ".join(str(error).split())
        raise ValueError(f"{path} is not a readable CSV ({reason})") from None


def _checked(df: pd.DataFrame, path: pathlib.Path, check, numeric: Sequence[str]) -> pd.DataFrame:
    """`df` checked, its `numeric` columns numbers, with a `stages` column inferred within the
    file where it has none (chains of one file do not mix with another's)."""
    try:
        check(df)
        for column in numeric:
            df[column] = pd.to_numeric(df[column], errors="raise")
    except ValueError as error:
        raise ValueError(f"{path}: {' '.join(str(error).split())}") from None
    if CHAIN_LENGTH_COLUMN not in df.columns:
        df[CHAIN_LENGTH_COLUMN] = chain_length(df)
    return df


def read_results(paths: PathOrPaths) -> pd.DataFrame:
    """Reads and checks one or more results CSVs (see `check_results`) into one table.

    Files without a `stages` column get one, inferred within each file, so that e.g. a
    three-stage temperature sweep and a seven-stage chain written to separate CSVs stay apart.

    Args:
        paths: a CSV path or a sequence of them.

    Returns:
        The rows of every file, in file order.

    Raises:
        FileNotFoundError: if a path is not a file.
        ValueError: if a file is not a CSV with the key columns, numeric temperature and
            stage, and at least one row.
    """
    tables = [
        _checked(_read_csv(p, "results"), p, check_results, ("temperature", "stage"))
        for p in _as_paths(paths, "results")
    ]
    return pd.concat(tables, ignore_index=True)


def _read_per_image_one(path: pathlib.Path) -> pd.DataFrame:
    if path.is_dir():  # a run folder: the table beside its results.csv
        path = per_image_path(path / "results.csv")
    hint = ": evaluate the run with keras_takd.takd.evaluate first"
    df = _checked(
        _read_csv(path, "per-image", hint), path, check_per_image, ("temperature", "stage", "image")
    )
    return df.assign(correct=as_bool(df["correct"]), success=as_bool(df["success"]))


def read_per_image(paths: PathOrPaths) -> pd.DataFrame:
    """Reads and checks one or more per-image tables into one (`tidy`: the columns of
    `schema.PER_IMAGE_COLUMNS`, sorted by model, attack and image).

    Args:
        paths: a per-image CSV, a run folder evaluated by `keras_takd.takd.evaluate` (its
            per_image.csv), or a sequence of them.

    Returns:
        The table. Files without a `stages` column get one, inferred within each file.

    Raises:
        FileNotFoundError: if a path is neither a file nor a folder holding per_image.csv.
        ValueError: if a file is not a CSV with the columns of `PER_IMAGE_REQUIRED` and
            numeric temperature, stage and image.
    """
    tables = [_read_per_image_one(p) for p in _as_paths(paths, "per-image")]
    return tidy(pd.concat(tables, ignore_index=True))


def read_tables(
    results: Sequence[str | pathlib.Path], per_image: Sequence[str | pathlib.Path] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame | None, list[pathlib.Path]]:
    """The results CSVs and their per-image tables, read and checked once for an analysis.

    Args:
        results: results CSVs (`read_results`).
        per_image: per-image CSVs of the same models; default: those beside the results CSVs
            (`per_image_path`), where they exist.

    Returns:
        (results table, per-image table or None when there is none, the per-image paths read).

    Raises:
        FileNotFoundError, ValueError: see `read_results` and `read_per_image`.
    """
    table = read_results(results)
    paths = per_image_paths(results, per_image)
    return table, (read_per_image(paths) if paths else None), paths

"""Reads and checks the tables the analysis starts from: results CSVs and per-image CSVs.

The one place that knows where a per-image table lives (`per_image_path`: results.csv ->
per_image.csv, results_shard<i>of<N>.csv -> per_image_shard<i>of<N>.csv, <name>.csv ->
<name>_per_image.csv, all beside the results CSV) and where its per-image predictions are read
(`predictions_path`: predictions.csv, or predictions.csv.gz where only that exists), the one
reader of each kind of table (`read_results`, `read_per_image`, both through `read_tables`;
`read_predictions`; a file whose name ends in .gz is read gzip-decompressed) and the names
every analysis shares: the roles of a three-model chain (Mandal & Guo, "Improving Defensive
Distillation using Teacher Assistant", sections V-VI: teacher -> assistant -> student), each
row's chain length and a dataset's printed name. Needs neither TensorFlow nor matplotlib.

Parsing is strict, for exported and hand-made CSVs alike, so summary, claims and figures never
disagree about a table: a boolean is true or false (any case), 1 or 0; a number is a number
(an empty cell, or nan, is a missing one); a distance is >= 0 and finite on a successful row;
a key (dataset, temperature, stage, chain length and seed where present; per image also attack
and image) appears once across every input; a per-image row belongs to a model of the results.
Anything else is a one-line `ValueError` naming the file, the line (1-based, the header is line
1) and the column.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import pathlib
import zlib
from collections.abc import Callable, Sequence
from typing import TextIO

import numpy as np
import pandas as pd

from keras_takd.takd.schema import (
    ATTACK_PREFIXES,
    CHAIN_COLUMNS,
    CHAIN_LENGTH_COLUMN,
    CONFIG_COLUMN,
    INDICATORS,
    KEY_COLUMNS,
    PER_IMAGE_COLUMNS,
    PREDICTION_COLUMNS,
    RESULT_COLUMNS,
    ROLE_COLUMN,
    SHARD_COLUMNS,
)

ROLES = ("teacher", "assistant", "student")
"""The models of a three-model chain, in order (`schema.ROLE_COLUMN`)."""

RESULTS_REQUIRED = (*KEY_COLUMNS, ROLE_COLUMN)
"""What every results row must hold: the key and the model's role in its chain."""
PER_IMAGE_REQUIRED = (*RESULTS_REQUIRED, "attack", "image", "correct", "success", "distance")
"""What a per-image table must hold; the other `schema.PER_IMAGE_COLUMNS` may be absent (tables
written before them): `stages` is then inferred (`chain_length`), the rest comes back empty."""
SORT_COLUMNS = [*KEY_COLUMNS, "attack", "image", "target"]
UNTARGETED = -1
"""The `target` of a per-image row of an untargeted attack, or of an image not attacked."""
SEED_COLUMN = "seed"
"""The training seed of a model, a key column where a table has it (absent: one seed)."""
MODEL_COLUMNS = (*KEY_COLUMNS, CHAIN_LENGTH_COLUMN, SEED_COLUMN)
"""The columns that name one model, where a table has them."""

PathOrPaths = str | pathlib.Path | Sequence[str | pathlib.Path]

_MISSING = frozenset({"", "nan", "na", "<na>", "n/a", "null", "none"})
"""Cells that mean "no value" (lower case, stripped): what pandas writes for NaN, and kin."""
_BOOLEANS = {"true": True, "1": True, "false": False, "0": False}
_LINE, _SOURCE = "_line", "_source"  # where each row was read, until the checks are done
_GZIP_SUFFIX = ".gz"


@dataclasses.dataclass(frozen=True)
class _Kind:
    """How the cells of a column are parsed: as text, number, integer or boolean, which parsed
    values are `valid`, whether a value is `required`, and the words of an error."""

    parse: str
    expected: str
    valid: Callable[[pd.Series], pd.Series] | None = None
    required: bool = False


_NAME = _Kind("text", "a name", required=True)
_TEXT = _Kind("text", "text")
_TEMPERATURE = _Kind("number", "a finite number > 0", lambda v: np.isfinite(v) & (v > 0), True)
_STAGE = _Kind("integer", "an integer >= 1", lambda v: v >= 1, required=True)
_CHAIN = _Kind("integer", "an integer >= 1", lambda v: v >= 1)
_SEED = _Kind("integer", "an integer")
_IMAGE = _Kind("integer", "an integer >= 0", lambda v: v >= 0, required=True)
_COUNT = _Kind("integer", "an integer >= 0", lambda v: v >= 0)
_NUMBER = _Kind("number", "a number")
_DISTANCE = _Kind("number", "a number >= 0", lambda v: v >= 0)
_TRUTH = _Kind("boolean", "a boolean: expected true or false (any case), 1 or 0", required=True)
_FLAG = _Kind("boolean", "a boolean or empty: expected true or false (any case), 1 or 0")

_MODEL_KINDS = {
    "dataset": _NAME,
    "temperature": _TEMPERATURE,
    "stage": _STAGE,
    ROLE_COLUMN: _NAME,
    CHAIN_LENGTH_COLUMN: _CHAIN,
    SEED_COLUMN: _SEED,
}
_PER_IMAGE_KINDS = _MODEL_KINDS | {
    "attack": _NAME,
    "image": _IMAGE,
    "target": _Kind("integer", "an integer >= -1 (-1: untargeted)", lambda v: v >= UNTARGETED),
    "correct": _TRUTH,
    "success": _TRUTH,
    "distance": _DISTANCE,
    "const": _NUMBER,
    "iterations": _COUNT,
    **dict.fromkeys(INDICATORS, _FLAG),
}
_PREDICTION_KINDS = _MODEL_KINDS | {"image": _IMAGE, "label": _IMAGE, "prediction": _IMAGE}
_RESULTS_TEXT = ("saved_model", "keras_model", CONFIG_COLUMN)
_RESULTS_KINDS = (
    dict.fromkeys((*RESULT_COLUMNS, *CHAIN_COLUMNS, *SHARD_COLUMNS), _NUMBER)
    | dict.fromkeys(_RESULTS_TEXT, _TEXT)
    | {f"{prefix}_{s}": _DISTANCE for prefix in ATTACK_PREFIXES for s in ("mean", "max")}
    | _MODEL_KINDS
)
"""Every column a results CSV of the schema may hold; others are numbers if every cell is one,
else text (as pandas would read them)."""


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


def predictions_csv_path(results_path: str | pathlib.Path) -> pathlib.Path:
    """Where the evaluation writes the per-image predictions of a results CSV (plain CSV), by
    `per_image_path`'s rule: results.csv -> predictions.csv, results_shard<i>of<N>.csv ->
    predictions_shard<i>of<N>.csv, <name>.csv -> <name>_predictions.csv."""
    path = per_image_path(results_path)
    if path.stem.startswith("per_image"):
        return path.with_name("predictions" + path.stem[len("per_image") :] + ".csv")
    return path.with_name(path.stem.removesuffix("_per_image") + "_predictions.csv")


def predictions_path(results_path: str | pathlib.Path) -> pathlib.Path:
    """Where the per-image predictions of a results CSV are read (the one rule for readers).

    The plain CSV the evaluation writes (`predictions_csv_path`), or where only it exists its
    gzip-compressed copy, the same name + ".gz" (figures/decisive/predictions.csv.gz: a
    committed table kept small); where neither exists, the plain CSV.

    Raises:
        ValueError: both exist (which one holds the predictions would be a guess).
    """
    plain = predictions_csv_path(results_path)
    compressed = plain.with_name(plain.name + _GZIP_SUFFIX)
    if not compressed.is_file():
        return plain
    if plain.is_file():
        raise ValueError(
            f"predictions {plain} and {compressed} both exist: expected one of them (the "
            "same table plain or gzip-compressed; remove the other)"
        )
    return compressed


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
    """A column of truth values as bool, whether held as bool, number or text.

    Raises:
        ValueError: a text cell other than true or false (any case), 1 or 0.
    """
    if column.dtype == bool:
        return column
    if pd.api.types.is_numeric_dtype(column):
        return column.fillna(0).astype(bool)
    values = column.astype(str).str.strip().str.lower().map(_BOOLEANS)
    if values.isna().any():
        bad = column[values.isna()].iloc[0]
        raise ValueError(f"column {column.name}: {bad!r} is not {_TRUTH.expected}")
    return values.astype(bool)


def tidy(rows: Sequence[dict] | pd.DataFrame) -> pd.DataFrame:
    """Per-image rows in `schema.PER_IMAGE_COLUMNS` order and types, sorted by model, attack
    and image (absent columns come back empty; a `seed` column is kept, after `stage`)."""
    table = pd.DataFrame(rows, columns=_with_seed(list(PER_IMAGE_COLUMNS), rows))
    table["target"] = table["target"].fillna(UNTARGETED)  # tables from before the column
    table = table.astype({"correct": bool, "success": bool, "image": int, "target": int})
    table = table.astype({name: "boolean" for name in INDICATORS})  # empty: not checked
    table = table.astype({"iterations": "Int64"})
    return table.sort_values(_with_seed(SORT_COLUMNS, table), kind="stable").reset_index(drop=True)


def _with_seed(columns: list[str], rows: Sequence[dict] | pd.DataFrame) -> list[str]:
    """`columns` with `seed` after `stage` if the rows have a seed (a run of several seeds)."""
    if isinstance(rows, pd.DataFrame):
        seeded = SEED_COLUMN in rows.columns
    else:
        seeded = any(SEED_COLUMN in row for row in rows)
    if not seeded:
        return columns
    stage = columns.index("stage")
    return [*columns[: stage + 1], SEED_COLUMN, *columns[stage + 1 :]]


def _as_paths(
    paths: PathOrPaths, what: str, locate: Callable[[pathlib.Path], pathlib.Path] = pathlib.Path
) -> list[pathlib.Path]:
    """The files given (`locate` of each path), each once (resolved, symbolic links followed).

    Raises:
        ValueError: none given, or one given twice (its rows would count twice).
    """
    if isinstance(paths, (str, pathlib.Path)):
        paths = [paths]
    if not paths:
        raise ValueError(f"no {what} file given")
    seen: dict[pathlib.Path, pathlib.Path] = {}
    for path in (locate(pathlib.Path(p)) for p in paths):
        first = seen.setdefault(path.resolve(), path)
        if first is not path:
            same = "" if str(first) == str(path) else f" (as {first} too, the same file)"
            raise ValueError(
                f"{what} file {path} is given twice{same}: expected each file once (its rows "
                "would count twice)"
            )
    return list(seen.values())


def _read_csv(path: pathlib.Path, what: str, hint: str = "") -> pd.DataFrame:
    """The cells of a CSV as text, with the line (1-based, header 1) each row starts on.

    Raises:
        FileNotFoundError: not a file.
        ValueError: not a CSV: no header, a column named twice, a row with another number of
            fields than the header, bytes that are not UTF-8, or a .gz file that is not
            gzip-compressed whole.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{what} file {str(path)!r} not found{hint}")
    try:
        with _open_text(path) as stream:
            reader = csv.reader(stream)
            header = _checked_header(path, next(reader, None))
            rows, lines, line = [], [], reader.line_num
            for row in reader:
                if row:  # a blank line is no row
                    if len(row) != len(header):
                        raise ValueError(
                            f"{path} line {line + 1}: {len(row)} fields, expected "
                            f"{len(header)} as in the header"
                        )
                    rows.append(row)
                    lines.append(line + 1)
                line = reader.line_num
    except (csv.Error, UnicodeDecodeError, gzip.BadGzipFile, EOFError, zlib.error) as error:
        raise ValueError(f"{path} is not a readable CSV ({' '.join(str(error).split())})") from None
    return pd.DataFrame(rows, columns=header, dtype=object).assign(**{_LINE: lines})


def _open_text(path: pathlib.Path) -> TextIO:
    """A CSV's text, decompressed where its name ends in ".gz" (`predictions_path`)."""
    if path.suffix == _GZIP_SUFFIX:
        return gzip.open(path, "rt", newline="", encoding="utf-8-sig")
    return path.open(newline="", encoding="utf-8-sig")


def _checked_header(path: pathlib.Path, header: list[str] | None) -> list[str]:
    if not header:
        raise ValueError(f"{path} is not a readable CSV (no header line)")
    twice = sorted({name for name in header if header.count(name) > 1})
    if twice:
        raise ValueError(f"{path} line 1: the columns {twice} appear twice: expected one each")
    return header


def _parse(cells: pd.Series, kind: _Kind) -> tuple[pd.Series, pd.Series]:
    """The values of a column of text cells, and which cells are not `kind` (each distinct
    cell parsed once)."""
    codes, distinct = pd.factorize(cells)
    values, bad = _parse_distinct(pd.Series(distinct, dtype=object), kind)
    values = values.take(codes).set_axis(cells.index)
    return values, bad.take(codes).set_axis(cells.index)


def _parse_distinct(cells: pd.Series, kind: _Kind) -> tuple[pd.Series, pd.Series]:
    text = cells.str.strip()
    missing = text.str.lower().isin(_MISSING)
    bad = missing & kind.required
    if kind.parse == "text":
        return cells.where(~missing), bad
    if kind.parse == "boolean":
        values = text.str.lower().map(_BOOLEANS)
        bad |= values.isna() & ~missing
        return (values.astype(bool) if kind.required else values.astype("boolean")), bad
    values = pd.to_numeric(text.where(~missing), errors="coerce")
    bad |= values.isna() & ~missing
    given = values.notna()
    if kind.parse == "integer":
        bad |= given & ~(np.isfinite(values) & (values == np.round(values)))
    if kind.valid is not None:
        bad |= given & ~kind.valid(values)
    if kind.parse == "integer" and not (bad | missing).any():
        values = values.astype("int64")
    return values, bad


def _parse_table(raw: pd.DataFrame, path: pathlib.Path, kinds: dict[str, _Kind]) -> pd.DataFrame:
    """`raw`'s text cells parsed by the `kinds` of their columns; a column of no kind is
    numbers if every cell is one, else text.

    Raises:
        ValueError: naming the file, line and column of the first bad cell.
    """
    table = raw.copy()
    for column in raw.columns.drop(_LINE):
        kind = kinds.get(column)
        values, bad = _parse(raw[column], kind or _NUMBER)
        if kind is None and bad.any():
            values, bad = _parse(raw[column], _TEXT)
        if bad.any():
            where = bad.idxmax()
            raise ValueError(
                f"{path} line {raw.at[where, _LINE]}, column {column}: "
                f"{raw.at[where, column]!r} is not {kind.expected}"
            )
        table[column] = values
    return table


def _model_columns(table: pd.DataFrame) -> list[str]:
    return [column for column in MODEL_COLUMNS if column in table.columns]


def _refuse_duplicates(table: pd.DataFrame, columns: list[str], what: str) -> None:
    """Raises ValueError naming the first row (file, line) whose key repeats an earlier one's."""
    repeated = table.duplicated(columns)
    if not repeated.any():
        return
    later = repeated.idxmax()
    keys, key = table[columns], table.loc[later, columns]
    earlier = ((keys == key) | (keys.isna() & key.isna())).all(axis=1).idxmax()
    source = table.at[later, _SOURCE]
    if table.at[earlier, _SOURCE] == source:
        first, expected = "", f"one row per {what}"
    else:
        first = f"{table.at[earlier, _SOURCE]} "
        expected = f"each {what} in one input only (the same run given twice?)"
    raise ValueError(
        f"{source} line {table.at[later, _LINE]}, columns {', '.join(columns)}: the {what} of "
        f"{first}line {table.at[earlier, _LINE]} again ({_values(key)}): expected {expected}"
    )


def _values(row: pd.Series) -> str:
    return ", ".join(str(value) for value in row)


def _checked(raw: pd.DataFrame, path: pathlib.Path, check, kinds) -> pd.DataFrame:
    """`raw` checked (`check_results` or `check_per_image`) and parsed, with a `stages`
    column inferred within the file where it has none (chains of one file do not mix with
    another's), and its path in `_SOURCE`."""
    try:
        check(raw)
    except ValueError as error:
        raise ValueError(f"{path}: {' '.join(str(error).split())}") from None
    table = _parse_table(raw, path, kinds)
    if CHAIN_LENGTH_COLUMN not in table.columns:
        table[CHAIN_LENGTH_COLUMN] = chain_length(table)
    return table.assign(**{_SOURCE: str(path)})


def _read_results_table(paths: PathOrPaths) -> pd.DataFrame:
    """`read_results`, with where each row was read (`_SOURCE`, `_LINE`)."""
    tables = [
        _checked(_read_csv(p, "results"), p, check_results, _RESULTS_KINDS)
        for p in _as_paths(paths, "results")
    ]
    table = pd.concat(tables, ignore_index=True)
    _refuse_duplicates(table, _model_columns(table), "model")
    return table


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
        ValueError: a file given twice, a file that is not a CSV with the key columns and at
            least one row, a cell that is not of its column's kind (a temperature not a finite
            number > 0, a stage not an integer >= 1, a mean or max distance < 0, a metric not
            a number), or a model (dataset, temperature, stage, chain length, seed) in two
            rows of one file or of two files: one line naming the file, line and column.
    """
    return _read_results_table(paths).drop(columns=[_SOURCE, _LINE])


def _check_distances(table: pd.DataFrame, path: pathlib.Path) -> None:
    """Raises ValueError naming the first successful row without a finite distance."""
    lacking = table["success"] & ~np.isfinite(table["distance"].astype(float))
    if lacking.any():
        where = lacking.idxmax()
        raise ValueError(
            f"{path} line {table.at[where, _LINE]}, column distance: no finite distance on a "
            f"successful row (found {float(table.at[where, 'distance']):g}): expected the minimal "
            "perturbation found, a number >= 0"
        )


def _check_models(table: pd.DataFrame, path: pathlib.Path, results: pd.DataFrame) -> None:
    """Raises ValueError naming the first per-image row of a model `results` lack, compared on
    the model columns `table` has of its own (before any chain length is inferred)."""
    columns = [c for c in _model_columns(table) if c in results.columns]
    known = results[columns].drop_duplicates()
    merged = table[columns].merge(known, how="left", on=columns, indicator=True)
    lacking = (merged["_merge"] == "left_only").to_numpy()
    if lacking.any():
        where = table.index[lacking.argmax()]
        raise ValueError(
            f"{path} line {table.at[where, _LINE]}, columns {', '.join(columns)}: "
            f"{_values(table.loc[where, columns])} is no model of the results: expected "
            "per-image rows only of models the results CSVs list (their per-image table)"
        )


def _read_per_image_one(path: pathlib.Path, results: pd.DataFrame | None) -> pd.DataFrame:
    hint = ": evaluate the run with keras_takd.takd.evaluate first"
    raw = _read_csv(path, "per-image", hint)
    if results is not None and CHAIN_LENGTH_COLUMN not in raw.columns:
        results = results.drop(columns=CHAIN_LENGTH_COLUMN)  # no chain length to compare
    table = _checked(raw, path, check_per_image, _PER_IMAGE_KINDS)
    _check_distances(table, path)
    if results is not None:
        _check_models(table, path, results)
    return table


def _per_image_file(path: pathlib.Path) -> pathlib.Path:
    """A per-image CSV, or the one of a run folder (beside its results.csv)."""
    return per_image_path(path / "results.csv") if path.is_dir() else path


def read_per_image(paths: PathOrPaths, results: pd.DataFrame | None = None) -> pd.DataFrame:
    """Reads and checks one or more per-image tables into one (`tidy`: the columns of
    `schema.PER_IMAGE_COLUMNS`, sorted by model, attack and image).

    Args:
        paths: a per-image CSV, a run folder evaluated by `keras_takd.takd.evaluate` (its
            per_image.csv), or a sequence of them.
        results: the results table (`read_results`) whose models every row must belong to;
            None: not checked.

    Returns:
        The table. Files without a `stages` column get one, inferred within each file.

    Raises:
        FileNotFoundError: if a path is neither a file nor a folder holding per_image.csv.
        ValueError: a file given twice, a file that is not a CSV with the columns of
            `PER_IMAGE_REQUIRED`, a cell that is not of its column's kind (a boolean not true,
            false, 1 or 0; a distance < 0, or not finite on a successful row; ...), an image
            in two rows (model, attack, image, target), or a row of a model `results` lack:
            one line naming the file, line and column.
    """
    files = _as_paths(paths, "per-image", _per_image_file)
    table = pd.concat([_read_per_image_one(p, results) for p in files], ignore_index=True)
    targeted = ["target"] if "target" in table.columns else []
    _refuse_duplicates(table, [*_model_columns(table), "attack", "image", *targeted], "image")
    return tidy(table)


def tidy_predictions(rows: Sequence[dict] | pd.DataFrame) -> pd.DataFrame:
    """Prediction rows in `schema.PREDICTION_COLUMNS` order, sorted by model and image."""
    table = pd.DataFrame(rows, columns=_with_seed(list(PREDICTION_COLUMNS), rows))
    table = table.astype({"image": int, "label": int, "prediction": int})
    order = _with_seed([*KEY_COLUMNS, "image"], table)
    return table.sort_values(order, kind="stable").reset_index(drop=True)


def _check_predictions(df: pd.DataFrame) -> None:
    missing = [c for c in PREDICTION_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(
            f"predictions lack the columns {missing}: expected {list(PREDICTION_COLUMNS)} "
            "(keras_takd.takd.schema.PREDICTION_COLUMNS)"
        )


def _check_test_set(table: pd.DataFrame) -> None:
    """Raises ValueError unless every model's predictions label each image alike (one test
    set: pairing by image index across runs is only meaningful on the same images)."""
    labels = table.groupby("image")["label"].nunique()
    if (labels > 1).any():
        image = int(labels.index[(labels > 1).argmax()])
        sources = sorted(table.loc[table["image"] == image, _SOURCE].unique())
        raise ValueError(
            f"test image {image} has different labels in {', '.join(sources)}: expected runs "
            "of one test set (the same images in the same order) to pair models image by image"
        )


def read_predictions(paths: PathOrPaths, results: pd.DataFrame | None = None) -> pd.DataFrame:
    """Reads and checks the per-image predictions of one or more evaluations into one table.

    Args:
        paths: predictions CSVs, plain or gzip-compressed (.gz): `predictions_path` of each
            results CSV.
        results: the results table whose models every row must belong to; None: not checked.

    Returns:
        The table (`tidy_predictions`), one row per (model, test image).

    Raises:
        FileNotFoundError: a path is not a file.
        ValueError: a file that is not a predictions CSV, a cell not of its column's kind (an
            image, label or prediction not an integer >= 0), an image of a model in two rows,
            a row of a model `results` lack, or two files whose labels of one image differ
            (two different test sets): one line naming the file, line and column.
    """
    tables = []
    for path in _as_paths(paths, "predictions"):
        raw = _read_csv(path, "predictions", ": evaluate the run with keras_takd.takd.evaluate")
        table = _checked(raw, path, _check_predictions, _PREDICTION_KINDS)
        if results is not None:
            _check_models(table, path, results)
        tables.append(table)
    table = pd.concat(tables, ignore_index=True)
    _refuse_duplicates(table, [*_model_columns(table), "image"], "image")
    _check_test_set(table)
    return tidy_predictions(table)


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
        FileNotFoundError, ValueError: see `read_results` and `read_per_image` (every
            per-image row must be of a model of the results).
    """
    table = read_results(results)
    paths = per_image_paths(results, per_image)
    return table, (read_per_image(paths, table) if paths else None), paths

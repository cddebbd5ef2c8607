"""A trained chain run as evaluation sees it, and the checks a results CSV must pass.

A run's results.csv is checked before any path is built from it: only columns a keras_takd
results file has; in every row the run's own dataset label (run.json), a finite temperature
> 0 and an integer stage >= 1. The rows of a run of several seeds (issue 25) carry their
`seed`, which names their model folders (`keras_takd.takd.layout`); a run of one seed's do
not. Every path built from a row (the model) and the evaluation's folder must resolve
inside the run folder, so a forged results.csv cannot make an evaluation read or write
elsewhere. An evaluation holds its own lock file (one per shard) and a shared lock on
the run folder (`lock_evaluation`), so trainings and the same shard never run beside it.

TensorFlow-free, so `keras_takd.takd.evaluate` refuses a bad run folder or results file before
the slow TensorFlow import.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import pathlib
from collections.abc import Iterator

import pandas as pd

from keras_takd.core import files, locking, record
from keras_takd.core.results import ConfigMismatchError
from keras_takd.takd import layout
from keras_takd.takd.analysis.tables import SEED_COLUMN
from keras_takd.takd.schema import (
    APGD_ATTACKS,
    ATTACK_PREFIXES,
    BUDGET_NORMS,
    CHAIN_COLUMNS,
    CHAIN_LENGTH_COLUMN,
    CONFIG_COLUMN,
    KEY_COLUMNS,
    RESULT_COLUMNS,
    SHARD_COLUMNS,
    STAT_SUFFIXES,
)

WEIGHTS_COLUMN = "weights_sha256"
"""A shard CSV's column of each model's `units.weights_sha256`, which `merge_shards` checks."""


def stat_columns(prefixes) -> list[str]:
    """The sufficient-statistic columns of a shard CSV for attacks of these prefixes."""
    columns = [f"{p}_{s}" for p in prefixes for s in STAT_SUFFIXES]
    columns += [f"{p}_eps" for p in prefixes if p in APGD_ATTACKS]
    return columns + [f"{n}_budget{s}" for n in BUDGET_NORMS for s in ("", "_within")]


@dataclasses.dataclass(frozen=True)
class Run:
    """A training run of `keras_takd.main`: its run.json and its trained models' rows."""

    output_dir: pathlib.Path
    run_json: dict
    rows: pd.DataFrame

    @property
    def dataset(self) -> str:
        return self.run_json["configuration"]["data"]["dataset"]

    @property
    def test_images(self) -> int:
        return int(self.run_json["configuration"]["data"]["test_images"])

    @property
    def label(self) -> str:
        """The dataset label of the run's rows and folders (e.g. cifar10-jpeg-standin)."""
        data = self.run_json["configuration"]["data"]
        return str(data.get("label", data["dataset"]))

    @property
    def flags(self) -> dict:
        return self.run_json.get("run_info", {}).get("flags", {}) or {}

    def model_path(self, row) -> pathlib.Path:
        """The row's `.keras` file, checked to be inside the run folder.

        Raises:
            ValueError: the path resolves outside the run folder.
        """
        return self.inside(self.output_dir / _model_folder(row) / "model.keras")

    def model_file(self, row) -> pathlib.Path:
        """`model_path`, checked to be a complete `.keras` file.

        Raises:
            FileNotFoundError: the model is missing.
            ValueError: it is corrupt, or outside the run folder.
        """
        return files.check_keras_file(self.model_path(row))

    def inside(self, path: pathlib.Path) -> pathlib.Path:
        """`path` if it resolves (symbolic links followed) inside the run folder.

        Raises:
            ValueError: it resolves elsewhere.
        """
        return files.inside(self.output_dir, path)


def _model_folder(row) -> pathlib.PurePath:
    """`<dataset>/T<temperature>/stage<k>` of a checked row (`.../seed<s>/stage<k>` if the row
    has a seed: a run of several seeds)."""
    seed = row_seed(row)
    return layout.model_folder(str(row["dataset"]), row["temperature"], row["stage"], seed)


def row_seed(row) -> int | None:
    """The `seed` of a row of a run of several seeds, None in a run of one seed."""
    seed = row.get(SEED_COLUMN) if hasattr(row, "get") else None
    return None if seed is None or pd.isna(seed) else int(seed)


def model_key_columns(columns) -> tuple[str, ...]:
    """The columns that identify a model in a table with these columns: `KEY_COLUMNS`, and
    `seed` before `stage` where the table has it (a run of several seeds)."""
    if SEED_COLUMN not in columns:
        return KEY_COLUMNS
    return ("dataset", "temperature", SEED_COLUMN, "stage")


def read_run(output_dir: str | pathlib.Path) -> Run:
    """Reads and checks a training run (run.json, results.csv) without loading TensorFlow.

    Raises:
        FileNotFoundError: output_dir, its run.json or its results.csv is missing.
        files.NotRegularFileError: run.json or results.csv is a FIFO, a folder or a device.
        ValueError: they are not what `keras_takd.main` writes (a column no keras_takd results
            file has; a row of another dataset, a temperature that is not a finite number
            > 0, a stage that is not an integer >= 1), or the run has no models.
    """
    out = pathlib.Path(output_dir)
    if not out.is_dir():
        raise FileNotFoundError(
            f"output_dir {out} does not exist: train with keras_takd.main first"
        )
    for name in ("run.json", "results.csv"):
        if not files.check_regular(files.inside(out, out / name)).is_file():
            raise FileNotFoundError(
                f"{out} is not a keras_takd run: no {name} (train with keras_takd.main first)"
            )
    try:
        run_json = files.read_json(out / "run.json")
        run_json["configuration"]["data"]["dataset"]
        int(run_json["configuration"]["data"]["test_images"])
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"{out}/run.json is not a keras_takd run.json") from None
    rows = _model_rows(out, run_json)
    missing = [c for c in KEY_COLUMNS if c not in rows.columns]
    if missing or rows.empty:
        raise ValueError(f"{out}/results.csv is not a keras_takd results file (or has no rows)")
    run = Run(out, run_json, rows)
    problem = _foreign_columns(rows.columns, known_columns(None, sharded=True))
    if problem:
        raise ValueError(f"{out}/results.csv {problem}: not a keras_takd results file")
    _check_keys(out / "results.csv", rows, run.label)
    run.inside(out / "eval")  # the unit cache, written before any model is loaded
    return run


def _model_rows(out: pathlib.Path, run_json: dict) -> pd.DataFrame:
    """The run's models: from its record (results.csv is its export, never read back), or
    from results.csv for a run trained before records existed. Their `seed` is kept in a run
    of several seeds (run.json's `replicates.seed_folders`), where it names their folders."""
    models = record.models(out)
    if not models:
        return read_csv(out / "results.csv")
    rows = pd.DataFrame(models)
    return rows if layout.seed_folders(run_json) else rows.drop(columns=SEED_COLUMN)


def _check_keys(path: pathlib.Path, rows: pd.DataFrame, label: str) -> None:
    """Raises ValueError naming the first row whose key is not one a run of `label` writes."""
    if pathlib.PurePath(label).name != label or label in ("", ".", ".."):
        raise ValueError(f"{path.parent}/run.json names the dataset {label!r}: not a folder name")
    for number, row in enumerate(rows.itertuples(index=False), start=1):
        temperature = pd.to_numeric(row.temperature, errors="coerce")
        stage = pd.to_numeric(row.stage, errors="coerce")
        if str(row.dataset) != label:
            problem = f"dataset {row.dataset!r}, expected this run's {label!r} (run.json)"
        elif not (math.isfinite(temperature) and temperature > 0):
            problem = f"temperature {row.temperature!r}, expected a finite number > 0"
        elif not (math.isfinite(stage) and stage >= 1 and stage == int(stage)):
            problem = f"stage {row.stage!r}, expected an integer >= 1"
        elif not _seed_ok(getattr(row, SEED_COLUMN, 0)):
            problem = f"seed {getattr(row, SEED_COLUMN)!r}, expected an integer >= 0"
        else:
            continue
        raise ValueError(f"{path} row {number} has {problem}")


def _seed_ok(seed) -> bool:
    seed = pd.to_numeric(seed, errors="coerce")
    return bool(math.isfinite(seed) and seed >= 0 and seed == int(seed))


def _foreign_columns(columns, known: set[str]) -> str | None:
    """What is wrong with a results CSV's columns ("lacks ...", "has foreign ..."), or None."""
    missing = [c for c in KEY_COLUMNS if c not in columns]
    foreign = sorted(set(columns) - known)
    if missing:
        return f"lacks the key columns {missing}"
    return f"has foreign columns {foreign}" if foreign else None


@contextlib.contextmanager
def lock_evaluation(run: Run, shard_index: int = 0, num_shards: int = 1) -> Iterator[Run]:
    """Holds the locks of an evaluation process for the `with` block.

    Two locks in the run folder: `run.lock` shared (a training holds it exclusively), so no
    training runs on the folder meanwhile but the shards of an evaluation run side by side;
    and `evaluate.lock` (`evaluate_shard<i>of<N>.lock` for a shard) exclusively, so no other
    process evaluates the same shard.

    Raises:
        FolderInUseError: a training or the same shard's evaluation holds the folder; the
            message names its PID.
    """
    name = "evaluate" if num_shards == 1 else f"evaluate_shard{shard_index}of{num_shards}"
    with (
        locking.hold_lock(run.output_dir / locking.RUN_LOCK, shared=True),
        locking.hold_lock(run.output_dir / f"{name}.lock"),
    ):
        yield run


def read_csv(path: pathlib.Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not a readable CSV ({' '.join(str(e).split())})") from None


def known_columns(run: Run | None = None, sharded: bool = False) -> set[str]:
    """The columns a keras_takd results CSV may hold (of `run`'s own results.csv too)."""
    from_metrics = set(RESULT_COLUMNS) | {CHAIN_LENGTH_COLUMN, CONFIG_COLUMN}
    own = set(run.rows.columns) if run is not None else set()
    known = from_metrics | set(CHAIN_COLUMNS) | {SEED_COLUMN} | own
    if sharded:
        known |= set(SHARD_COLUMNS) | set(stat_columns(ATTACK_PREFIXES)) | {WEIGHTS_COLUMN}
    return known


def check_results_file(
    path: str | pathlib.Path, config: str | None, run: Run | None = None, sharded: bool = False
) -> None:
    """Checks that a results CSV may receive rows of evaluation configuration `config`.

    A missing file is fine. Otherwise it must be a keras_takd results CSV (the key columns,
    no column that no keras_takd results file has) whose `eval_config` values, if any, are
    `config` (None: skip that check).

    Raises:
        ValueError: foreign columns or an unreadable file.
        ConfigMismatchError: rows of another evaluation configuration.
    """
    path = pathlib.Path(path)
    if not path.exists():
        return
    table = read_csv(path)
    problem = _foreign_columns(table.columns, known_columns(run, sharded))
    if problem:
        raise ValueError(
            f"{path} {problem}: not a keras_takd results file; choose another results path"
        )
    if config is not None and CONFIG_COLUMN in table.columns:
        others = sorted(set(table[CONFIG_COLUMN].dropna().astype(str)) - {config})
        if others:
            raise ConfigMismatchError(
                f"{path} holds evaluation results of configuration {others[0]} (see "
                f"eval/{others[0]}/config.json), this run is {config}: use the same settings, "
                "another results path, or --replace"
            )

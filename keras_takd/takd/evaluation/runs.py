"""A trained chain run as evaluation sees it, and the checks a results CSV must pass.

TensorFlow-free, so `keras_takd.takd.evaluate` refuses a bad run folder or results file before
the slow TensorFlow import.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import pandas as pd

from keras_takd.core.results import ConfigMismatchError
from keras_takd.takd.schema import (
    ATTACKS,
    BUDGET_NORMS,
    CHAIN_COLUMNS,
    CHAIN_LENGTH_COLUMN,
    CONFIG_COLUMN,
    KEY_COLUMNS,
    MASKED_L2_PREFIX,
    RESULT_COLUMNS,
    SHARD_COLUMNS,
    STAT_SUFFIXES,
)


def stat_columns(prefixes) -> list[str]:
    """The sufficient-statistic columns of a shard CSV for attacks of these prefixes."""
    columns = [f"{p}_{s}" for p in prefixes for s in STAT_SUFFIXES]
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
    def flags(self) -> dict:
        return self.run_json.get("run_info", {}).get("flags", {}) or {}

    def model_path(self, row) -> pathlib.Path:
        return (
            self.output_dir
            / str(row["dataset"])
            / f"T{float(row['temperature']):g}"
            / f"stage{int(row['stage'])}"
            / "model.keras"
        )


def read_run(output_dir: str | pathlib.Path) -> Run:
    """Reads and checks a training run (run.json, results.csv) without loading TensorFlow.

    Raises:
        FileNotFoundError: output_dir, its run.json or its results.csv is missing.
        ValueError: they are not what `keras_takd.main` writes, or the run has no models.
    """
    out = pathlib.Path(output_dir)
    if not out.is_dir():
        raise FileNotFoundError(
            f"output_dir {out} does not exist: train with keras_takd.main first"
        )
    for name in ("run.json", "results.csv"):
        if not (out / name).is_file():
            raise FileNotFoundError(
                f"{out} is not a keras_takd run: no {name} (train with keras_takd.main first)"
            )
    try:
        run_json = json.loads((out / "run.json").read_text())
        run_json["configuration"]["data"]["dataset"]
        int(run_json["configuration"]["data"]["test_images"])
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"{out}/run.json is not a keras_takd run.json") from None
    rows = read_csv(out / "results.csv")
    missing = [c for c in KEY_COLUMNS if c not in rows.columns]
    if missing or rows.empty:
        raise ValueError(f"{out}/results.csv is not a keras_takd results file (or has no rows)")
    return Run(out, run_json, rows)


def read_csv(path: pathlib.Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not a readable CSV ({' '.join(str(e).split())})") from None


def known_columns(run: Run | None = None, sharded: bool = False) -> set[str]:
    """The columns a keras_takd results CSV may hold (of `run`'s own results.csv too)."""
    from_metrics = set(RESULT_COLUMNS) | {CHAIN_LENGTH_COLUMN, CONFIG_COLUMN}
    own = set(run.rows.columns) if run is not None else set()
    known = from_metrics | set(CHAIN_COLUMNS) | own
    if sharded:
        known |= set(SHARD_COLUMNS) | set(stat_columns(ATTACKS + (MASKED_L2_PREFIX,)))
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
    missing = [c for c in KEY_COLUMNS if c not in table.columns]
    foreign = sorted(set(table.columns) - known_columns(run, sharded))
    if missing or foreign:
        problem = (
            f"lacks the key columns {missing}" if missing else f"has foreign columns {foreign}"
        )
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

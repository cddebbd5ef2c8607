"""Run folders and results tables: configuration checks and atomic, keyed CSV updates.

TensorFlow-free, so command lines can refuse a mismatched `--output_dir` before the slow
TensorFlow import, and every pipeline (chains, evaluation, smoothed-teacher distillation)
records and checks its configuration the same way.
"""

from __future__ import annotations

import pathlib
import platform
import sys
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from keras_takd.core import files, record

DECLARED = "declared"
"""The run_info entry of what a study declared before it ran (`prepare_run_dir` writes it once)."""


class ConfigMismatchError(ValueError):
    """A run folder, results file or cache holds results made with another configuration.

    The one error type for that refusal, whichever pipeline (training, evaluation, smoothed
    distillation) or file (run.json, a results CSV, a shard) it comes from.
    """


def library_versions() -> dict[str, str]:
    """Versions of Python and the libraries that decide the numbers."""
    import keras
    import tensorflow as tf

    import keras_takd

    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "keras_takd": keras_takd.__version__,
    }


def check_same_config(previous: Mapping, current: Mapping, where: str | pathlib.Path) -> None:
    """Raises ConfigMismatchError naming the first setting that differs.

    Both configurations are mappings of sections (e.g. "train", "data") to flat mappings of
    settings.
    """
    for section in sorted(set(previous) | set(current)):
        old, new = previous.get(section, {}), current.get(section, {})
        for name in sorted(set(old) | set(new)):
            if old.get(name) != new.get(name):
                raise ConfigMismatchError(
                    f"{where} holds results made with {name}={old.get(name)!r}, this run asks "
                    f"{name}={new.get(name)!r}: use another output_dir or the same settings"
                )


def prepare_run_dir(
    output_dir: str | pathlib.Path, configuration: Mapping, run_info: Mapping | None = None
) -> pathlib.Path:
    """Checks `output_dir` is writable and holds no run of another configuration.

    Writes run.json (the configuration, `run_info` such as the command-line flags, and the
    library versions) when the directory is new or was made with the same configuration. On a
    run folder that has one, what the call does not bring is kept: each recorded `run_info`
    entry it does not name, and the recorded command line when it brings no `run_info` (a
    Python call on a folder a command trained keeps that command's flags and data source).

    What a study declared before it ran (`run_info[DECLARED]`, e.g. its primary comparison
    and its number of seeds) is written once: a later call may bring the same or none, and a
    run folder that already holds results (results.csv) without one cannot be given one.

    Args:
        output_dir: the run folder; created if missing.
        configuration: sections of settings that decide the results (see check_same_config).
        run_info: recorded (e.g. the command-line flags), over what run.json records; never
            compared, but for `DECLARED`.

    Returns:
        The run folder.

    Raises:
        OSError: the directory cannot be created or written.
        files.NotRegularFileError: run.json is a FIFO, a folder or a device.
        ValueError: a link in the run folder (run.json, a dataset's folder...) leads out of it.
        ConfigMismatchError: run.json records another configuration or declaration, or is
            not ours, or `run_info` declares something for a folder that holds results
            without a declaration.
    """
    out = files.check_links_inside(files.check_writable(output_dir))
    run_json = files.inside(out, out / "run.json")
    recorded = {}
    if run_json.exists():
        recorded = _read_run_json(run_json)
        check_same_config(recorded["configuration"], configuration, out)
    info = {**recorded.get("run_info", {}), **(run_info or {})}
    declared = _checked_declaration(out, recorded.get("run_info", {}), run_info or {})
    if declared is not None:
        info[DECLARED] = declared
    files.write_json_atomic(
        run_json,
        {
            "configuration": dict(configuration),
            "run_info": info,
            "versions": library_versions(),
            "argv": sys.argv if run_info or not recorded else recorded.get("argv", sys.argv),
        },
    )
    return out


def check_declaration(output_dir: str | pathlib.Path, run_info: Mapping) -> None:
    """What `prepare_run_dir` checks of a declaration, without writing: commands call it
    before importing TensorFlow, so a refused declaration fails fast.

    Args:
        output_dir: the run folder (it may not exist yet).
        run_info: what the command would record (`DECLARED`: its declaration, if any).

    Raises:
        ConfigMismatchError: `run_info` declares other than the run folder records, or
            declares something for a folder that holds models without a declaration, or
            run.json is not a keras_takd one.
    """
    out = pathlib.Path(output_dir)
    run_json = out / "run.json"
    recorded = _read_run_json(run_json).get("run_info", {}) if run_json.is_file() else {}
    _checked_declaration(out, recorded, run_info)


def _checked_declaration(out: pathlib.Path, recorded: Mapping, run_info: Mapping) -> Mapping | None:
    """The declaration the run folder records (`recorded`: its run.json's run_info), once
    `run_info` is found to bring the same or none; or None when it records none and
    `run_info` may declare (the folder holds no models yet).

    Raises:
        ConfigMismatchError: `run_info` declares another, or declares one too late.
    """
    declared = recorded_declaration(recorded)
    if declared is None:
        _declared_first(out, run_info)
        return None
    return _same_declaration(declared, run_info, out)


def recorded_declaration(run_info: Mapping) -> Mapping | None:
    """What a run.json's `run_info` records as declared before its study ran: `DECLARED`, or,
    in runs made before it was kept apart, the recorded flags' primary_comparison and
    num_seeds; None when nothing was declared."""
    if DECLARED in run_info:
        return run_info[DECLARED]
    flags = run_info.get("flags") or {}
    if not flags.get("primary_comparison"):
        return None
    return {"primary_comparison": flags["primary_comparison"], "num_seeds": flags.get("num_seeds")}


def _declared_first(out: pathlib.Path, run_info: Mapping) -> None:
    """Refuses a declaration in `run_info` for a run folder that already holds models (in its
    record, or its results.csv export) and records none: it would be made after the study ran.

    Raises:
        ConfigMismatchError: it does; the message names the declaration.
    """
    if DECLARED in run_info and (record.models(out) or (out / "results.csv").exists()):
        raise ConfigMismatchError(
            f"{out} holds models trained without a declaration; this run declares "
            f"{_settings_text(run_info[DECLARED])}, but a declaration is made before its study "
            "runs (use a new output_dir, or run without --primary_comparison)"
        )


def _same_declaration(recorded: Mapping, run_info: Mapping, out: pathlib.Path) -> Mapping:
    """The recorded declaration, once `run_info` is found to bring the same or none.

    Raises:
        ConfigMismatchError: `run_info` declares something else; the message names both.
    """
    declared = run_info.get(DECLARED)
    if declared is not None and dict(declared) != dict(recorded):
        raise ConfigMismatchError(
            f"{out} records the declaration {_settings_text(recorded)}, made before its study "
            f"ran; this run declares {_settings_text(declared)}: a declaration is not changed "
            "once made (run without --primary_comparison, or use another output_dir)"
        )
    return recorded


def _settings_text(settings: Mapping) -> str:
    """ "num_seeds=10, primary_comparison='student-teacher@40'", in name order."""
    return ", ".join(f"{name}={value!r}" for name, value in sorted(settings.items()))


def _read_run_json(run_json: pathlib.Path) -> dict:
    """The recorded run.json, refused unless it is a keras_takd one."""
    try:
        recorded = files.read_json(run_json)
    except ValueError:
        recorded = None
    if not (
        isinstance(recorded, dict)
        and isinstance(recorded.get("configuration"), dict)
        and isinstance(recorded.get("run_info", {}), dict)
    ):
        raise ConfigMismatchError(
            f"{run_json} is not a keras_takd run.json: use another output_dir"
        )
    return recorded


def update_results(
    csv_path: str | pathlib.Path,
    rows: Sequence[dict],
    key: Sequence[str],
    order: Sequence[str] = (),
) -> pd.DataFrame:
    """Upserts rows into a results CSV, atomically: a row replaces the old row of its key.

    Args:
        csv_path: the CSV (created if missing).
        rows: the new rows, each holding every `key` column.
        key: the columns that identify a row, e.g. (dataset, temperature, stage).
        order: columns to put first, in this order; the others follow as they come.

    Returns:
        The whole table, sorted by its key columns.

    Raises:
        files.NotRegularFileError: `csv_path` is a FIFO, a folder or a device.
        ConfigMismatchError: the existing CSV lacks a key column (it is not ours).
    """
    csv_path, key = pathlib.Path(csv_path), list(key)
    new = pd.DataFrame(list(rows))
    if files.check_regular(csv_path).exists():  # a FIFO would block the read
        old = pd.read_csv(csv_path)
        missing = [c for c in key if c not in old.columns]
        if missing:
            raise ConfigMismatchError(
                f"{csv_path} lacks the key columns {missing}: it is not a keras_takd results file"
            )
        keys = set(map(tuple, new[key].astype(str).values))
        stale = old[key].astype(str).apply(tuple, axis=1).isin(keys)
        new = pd.concat([old[~stale], new], ignore_index=True)
    columns = [c for c in order if c in new.columns]
    columns += [c for c in new.columns if c not in columns]
    table = new[columns].sort_values(key, kind="stable").reset_index(drop=True)
    files.write_csv_atomic(csv_path, table)
    return table

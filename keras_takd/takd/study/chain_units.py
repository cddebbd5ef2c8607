"""Training a chain (dataset, T, seed) a stage at a time, as units of a study: settings in,
files and rows out.

A chain unit trains one stage of a chain (`ChainUnit.stage`; the warm start with the first).
It is a function of paths and settings (`train_chain`): it loads the data itself, trains the
stage with `keras_takd.takd.chains.run_chain` in a scratch folder of the process it runs in (a
Ray worker, or the calling process), and returns the trained files' bytes and their rows. It
writes nothing into the run folder: the calling process alone does, with `write_chain` (files
first, each stage's metadata.json last, then the rows into the run's record), so a cluster
needs no shared filesystem and a killed driver leaves no half stage. The next stage's unit
(`next_unit`) follows once a stage is written, so a study killed mid-chain resumes at the
stage it was training, not at the chain's first; each stage has its own seed, so the weights
are those of a chain trained at once.

The unit carries the files of the run folder it resumes from (the warm-start weights and the
chain's finished stages), so `run_chain` skips them. A unit that finds no warm start trains
it (one epoch at the seed's fixed seed, op determinism on: the same weights in every task on
the same kind of machine); `write_chain` keeps the first written. In a study of several seeds
each chain keeps its seed's folders (`keras_takd.takd.layout`: `<label>/init/seed<s>`,
`<label>/T<T>/seed<s>/stage<k>`), as `keras_takd.main --num_seeds` lays them out.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence

from keras_takd.core import files, locking, record
from keras_takd.takd import layout
from keras_takd.takd.exports import export_run

# The row columns that hold a path into the run folder (rewritten from the scratch folder).
_PATH_COLUMNS = ("keras_model", "saved_model")
_METADATA = "metadata.json"
# A unit holds a lock in its scratch folder while it runs, so that the folder of a unit killed
# mid-stage (a Ray worker of a stopped study) can be told apart, by its free lock, and removed;
# a lock younger than _STALE_AFTER seconds is left alone (a unit may be taking it).
_SCRATCH_PREFIX = "keras_takd_stage_"
_SCRATCH_LOCK = "scratch.lock"
_STALE_AFTER = 60.0


@dataclasses.dataclass(frozen=True)
class ChainUnit:
    """One chain to train: its data, temperature, seed and the files it resumes from.

    Attributes:
        data: keyword arguments of `keras_takd.core.data.load_dataset` (paths absolute).
        label: the dataset's label, the first folder of its models in the run folder.
        temperature: the chain's distillation temperature.
        seed: the chain's seed.
        stages: models in the chain.
        config: its `keras_takd.core.distillation.TrainConfig` (seed = `seed`).
        run_info: what run.json records (the flags).
        deterministic: op determinism on while it trains.
        inputs: {path relative to the run folder: bytes} of the files it resumes from.
        seed_folders: the run keeps each seed in a folder of its own (a run of several seeds).
        stage: the stage it trains (the earlier ones are in `inputs`); None: the whole chain.
    """

    data: Mapping
    label: str
    temperature: float
    seed: int
    stages: int
    config: object
    run_info: Mapping
    deterministic: bool = True
    inputs: Mapping[str, bytes] = dataclasses.field(default_factory=dict)
    seed_folders: bool = False
    stage: int | None = None

    @property
    def name(self) -> str:
        """ "training mnist T=20 seed 0 stage 2", as progress and error lines name the unit."""
        stage = "" if self.stage is None else f" stage {self.stage}"
        return f"training {self.label} T={self.temperature:g} seed {self.seed}{stage}"

    @property
    def folder_seed(self) -> int | None:
        """The seed that names the chain's folders, or None in a run of one seed."""
        return layout.folder_seed(self.seed, self.seed_folders)


def trained(
    models: Sequence[Mapping], label: str, temperature: float, seed: int, stages: int
) -> bool:
    """Whether the run's record, whose model rows are `models` (`record.models`), holds every
    stage of the chain (dataset, T, seed)."""
    found = {
        int(row["stage"])
        for row in models
        if row["dataset"] == label
        and math.isclose(float(row["temperature"]), temperature)
        and int(row["seed"]) == seed
    }
    return found >= set(range(1, stages + 1))


def resumed_files(
    out: pathlib.Path, label: str, temperature: float, stages: int, seed: int | None = None
) -> dict:
    """{relative path: bytes} of the warm start and the chain's finished stages in `out`.

    A stage counts as finished when its metadata.json exists (written last); only its
    model.keras and metadata.json are needed to resume from it. `seed` names the chain's
    folders in a run of several seeds (None: one seed, `keras_takd.takd.layout`).
    """
    folders = [layout.init_folder(label, seed)]
    folders += [layout.model_folder(label, temperature, k, seed) for k in range(1, stages + 1)]
    found = {}
    for folder in folders:
        if (out / folder / _METADATA).is_file():
            for name in ("model.keras", _METADATA):
                found[str(folder / name)] = files.read_bytes(files.inside(out, out / folder / name))
    return found


def next_stage(
    inputs: Mapping[str, bytes],
    label: str,
    temperature: float,
    stages: int,
    seed: int | None = None,
) -> int:
    """The first stage of the chain (label, T, `seed`'s folders or None) that `inputs`
    (`resumed_files`) do not hold finished.

    When every stage's files are there but the record lacks the chain's rows (a run killed
    between the two), it is the last stage: "training" it finds every stage written, trains
    nothing, and writes the rows.
    """
    for stage in range(1, stages + 1):
        folder = layout.model_folder(label, temperature, stage, seed)
        if str(folder / _METADATA) not in inputs:
            return stage
    return stages


def next_unit(out: pathlib.Path, unit: ChainUnit) -> ChainUnit | None:
    """The unit of the chain's stage after `unit`'s, now that `unit`'s result is written into
    the run folder `out` (its inputs read from there), or None after the last stage."""
    if unit.stage is None or unit.stage >= unit.stages:
        return None
    inputs = resumed_files(out, unit.label, unit.temperature, unit.stages, unit.folder_seed)
    return dataclasses.replace(unit, stage=unit.stage + 1, inputs=inputs)


def train_chain(unit: ChainUnit) -> dict:
    """Trains the stage of `unit` (the whole chain without one) in a scratch folder and
    returns what it produced.

    Runs wherever the executor puts it; writes nothing outside its scratch folder.

    Args:
        unit: the chain (see `ChainUnit`).

    Returns:
        {"files": {relative path: bytes, or None for a folder}, "rows": the chain's results
        rows, "warnings": the lines of stages that did not learn, "seconds": the wall time,
        "scratch": the scratch folder the rows' paths point into}; the rows are of every
        stage up to the one trained.

    Raises:
        ValueError, OSError: as `load_dataset` and `run_chain` raise them.
    """
    from keras_takd.core.data import load_dataset
    from keras_takd.core.seeding import set_seed
    from keras_takd.takd.chains import run_chain

    start = time.perf_counter()
    remove_stale_scratch()
    data = load_dataset(**unit.data)
    warnings: list[str] = []
    with (
        tempfile.TemporaryDirectory(prefix=_SCRATCH_PREFIX, ignore_cleanup_errors=True) as scratch,
        locking.hold_lock(pathlib.Path(scratch) / _SCRATCH_LOCK),
    ):
        scratch = pathlib.Path(scratch)
        for relative, content in unit.inputs.items():
            files.write_atomic(scratch / relative, lambda tmp, c=content: tmp.write_bytes(c))
        set_seed(unit.seed, deterministic=unit.deterministic)
        table = run_chain(
            data,
            [unit.temperature],
            unit.stages,
            scratch,
            unit.config,
            dict(unit.run_info),
            verbose=0,
            log=None,
            on_warning=warnings.append,
            seeds=[unit.seed],
            seed_folders=unit.seed_folders,
            last_stage=unit.stage,
        )
        produced = _produced(scratch, unit)
    rows = [row | {"seed": unit.seed} for row in table.to_dict("records")]
    seconds = time.perf_counter() - start
    return dict(files=produced, rows=rows, warnings=warnings, seconds=seconds, scratch=str(scratch))


def remove_stale_scratch(folder: str | pathlib.Path | None = None) -> list[pathlib.Path]:
    """Removes the scratch folders of units that no longer run: a unit killed mid-stage (a
    stopped study's Ray worker) cannot remove its own.

    A folder is stale when no process holds its lock and the lock is older than a minute;
    folders without a lock are not a unit's and are kept.

    Args:
        folder: where the scratch folders are; default: the temporary folder.

    Returns:
        The folders removed.
    """
    removed = []
    for path in pathlib.Path(folder or tempfile.gettempdir()).glob(f"{_SCRATCH_PREFIX}*"):
        lock = path / _SCRATCH_LOCK
        try:
            if time.time() - lock.stat().st_mtime < _STALE_AFTER:
                continue
            with locking.hold_lock(lock):
                shutil.rmtree(path, ignore_errors=True)
        except OSError:  # no lock (not a unit's folder), held (running), or gone
            continue
        removed.append(path)
    return removed


def _produced(scratch: pathlib.Path, unit: ChainUnit) -> dict:
    """The chain's new files (and folders, as None) under the scratch folder's `<label>/`."""
    produced = {}
    for path in sorted((scratch / unit.label).rglob("*")):
        relative = str(path.relative_to(scratch))
        if "backup" in path.relative_to(scratch).parts or relative in unit.inputs:
            continue
        produced[relative] = None if path.is_dir() else path.read_bytes()
    return produced


def write_chain(out: pathlib.Path, result: Mapping) -> list[dict]:
    """Writes a `train_chain` result into the run folder `out`: files, then rows, then exports.

    Folders first, then files, each stage's metadata.json (the mark of a finished stage) after
    its model; a warm start already in `out` is kept. The rows' paths are moved from the
    task's scratch folder to `out`.

    Args:
        out: the run folder (this process holds its lock).
        result: what `train_chain` returned.

    Returns:
        The chain's rows as written into the record.

    Raises:
        ValueError: a returned path resolves outside `out`.
    """
    scratch = str(result["scratch"])
    order = sorted(result["files"].items(), key=lambda item: _write_order(item[0], item[1]))
    for relative, content in order:
        path = files.inside(out, out / relative)
        if content is None:
            path.mkdir(parents=True, exist_ok=True)
        elif not (_is_warm_start(relative) and path.exists()):
            if path.name == _METADATA:
                content = _moved_metadata(content, scratch, out)
            files.write_atomic(path, lambda tmp, c=content: tmp.write_bytes(c))
    rows = [_moved(row, scratch, out) for row in result["rows"]]
    with record.writing(out) as connection:
        record.put_models(connection, rows)
    export_run(out)
    return rows


def _is_warm_start(relative: str) -> bool:
    """Whether a path relative to the run folder is in a warm start's folder (`<label>/init`,
    `<label>/init/seed<s>`)."""
    return pathlib.PurePath(relative).parts[1:2] == ("init",)


def _write_order(relative: str, content: bytes | None) -> tuple:
    return (content is not None, pathlib.Path(relative).name == _METADATA, relative)


def _moved(row: Mapping, scratch: str, out: pathlib.Path) -> dict:
    """The row with its paths moved from `scratch` to `out`."""
    moved = dict(row)
    for column in _PATH_COLUMNS:
        if isinstance(moved.get(column), str) and moved[column].startswith(scratch):
            moved[column] = str(out) + moved[column][len(scratch) :]
    return moved


def _moved_metadata(content: bytes, scratch: str, out: pathlib.Path) -> bytes:
    metadata = json.loads(content)
    if "row" in metadata:
        metadata["row"] = _moved(metadata["row"], scratch, out)
    return (json.dumps(metadata, indent=2, sort_keys=True, default=str) + "\n").encode()


def chain_units(
    out: pathlib.Path,
    models: Sequence[Mapping],
    label: str,
    temperatures: Sequence[float],
    seeds: Sequence[int],
    stages: int,
    settings: Mapping,
) -> tuple[list[ChainUnit], int]:
    """The chains (T, seed) the record does not hold yet, each as the unit of its first
    stage not yet in the run folder, and how many chains the record holds.

    Args:
        out: the run folder.
        models: the model rows its record holds (`record.models(out)`, read once).
        label: the dataset's label.
        temperatures, seeds: every chain is one (temperature, seed).
        stages: models per chain.
        settings: the other `ChainUnit` fields (data, config, run_info, deterministic); each
            unit's config takes its seed. Several seeds keep each seed in its own folders.
    """
    todo, done = [], 0
    seed_folders = len(seeds) > 1
    for seed in seeds:
        for temperature in temperatures:
            if trained(models, label, temperature, seed, stages):
                done += 1
                continue
            unit = ChainUnit(
                label=label,
                temperature=temperature,
                seed=seed,
                stages=stages,
                seed_folders=seed_folders,
                **{**settings, "config": dataclasses.replace(settings["config"], seed=seed)},
            )
            inputs = resumed_files(out, label, temperature, stages, unit.folder_seed)
            stage = next_stage(inputs, label, temperature, stages, unit.folder_seed)
            todo.append(dataclasses.replace(unit, inputs=inputs, stage=stage))
    return todo, done

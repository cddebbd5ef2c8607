"""Distillation chains: teacher -> assistant -> student -> ..., resumable, into an output_dir.

Stage 1 is trained on hard labels at temperature T; stage k+1 is distilled from stage k at the
same T (Papernot et al. 2016, arXiv:1511.04508; Mandal & Guo, teacher-assistant chains).
Two stages are Papernot's defensive distillation, three the paper's teacher -> assistant ->
student, seven its multi-step experiment.

Layout of `output_dir`:

    run.json                                  training configuration, flags, versions
    record.sqlite                             the run's record (`keras_takd.core.record`)
    results.csv                               one row per (dataset, temperature, stage)
    <dataset>/init/model.keras                the shared warm-start weights (1 epoch, T = 1)
    <dataset>/T<temperature>/stage<k>/model.keras
    <dataset>/T<temperature>/stage<k>/saved_model/    its SavedModel: 3 signatures (docs/usage.md)
    <dataset>/T<temperature>/stage<k>/metadata.json   written last: marks the stage complete

Several seeds (replicates, issue 25) train independent chains, each with its own
initialisation, warm start and data order, each seed in a folder of its own
(`<dataset>/init/seed<s>`, `<dataset>/T<temperature>/seed<s>/stage<k>`, `keras_takd.takd.layout`),
and results.csv gains a `seed` column. One seed keeps the layout above. A run of several seeds
resumed with more trains only the new seeds' stages.

`<dataset>` is the data's label (`keras_takd.core.data.Dataset.label`): the dataset's name, or
e.g. `cifar10-jpeg-standin` for the lossy CIFAR-10 stand-in, so its results never pass for
CIFAR-10's. The same label fills results.csv's `dataset` column; models are built by name.

A stage whose metadata exists is never retrained; a stage killed mid-training resumes from its
last finished epoch (keras BackupAndRestore under `stage<k>/backup`; an incomplete backup is
discarded and the stage starts over, `keras_takd.core.training`). A stage whose loss or weights
become NaN or infinite ends the run with `NonFiniteError` before it is saved; the stages
finished before it keep their files and rows. The run holds `run.lock` in output_dir for its
whole life (`keras_takd.core.locking`), so a second process on the same folder is refused.

A stage that did not learn (test accuracy at most twice chance, or a soft loss that stayed at
its value for uniform outputs, ln(classes), through every epoch) is still saved, and a
one-line warning says so (`learning_warning`).
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
import time
import warnings
from collections.abc import Callable, Sequence

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from keras_takd.core import export, files, locking, metrics, record
from keras_takd.core.data import NUM_CLASSES, Dataset
from keras_takd.core.distillation import TrainConfig, distil, train_on_labels
from keras_takd.core.layers import check_temperature
from keras_takd.core.models import build_model
from keras_takd.core.results import ConfigMismatchError, check_same_config, prepare_run_dir
from keras_takd.core.seeding import set_seed, unit_seed
from keras_takd.core.training import guarded_fit
from keras_takd.takd import layout
from keras_takd.takd.exports import export_run

STRATEGIES = ("default", "mirrored", "multi_worker")
# A stage "did not learn" at a test accuracy of at most this many times chance (1 / classes),
# or when its soft loss stayed within this of ln(classes) (times T^2 if scaled) every epoch.
CHANCE_FACTOR = 2.0
FLAT_SOFT_LOSS_TOLERANCE = 1e-3


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The tf.distribute strategy a chain trains under.

    Args:
        name: "default" (no distribution), "mirrored" (all local GPUs, one replica each) or
            "multi_worker" (MultiWorkerMirroredStrategy: every worker named in the TF_CONFIG
            environment variable runs the same command). Keras 3's `fit` fails under it
            (keras-team/keras#20585; reproduced here with two local workers, tensorflow 2.21,
            keras 3.15), so `keras_takd.main` refuses it; it is kept for a fixed Keras.

    Raises:
        ValueError: for another name.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"unknown strategy {name!r}: expected one of {', '.join(STRATEGIES)}")


def role_name(stage: int, stages: int) -> str:
    """teacher (stage 1), student (the last), assistant (the middle of 3), else step-k."""
    if stage == 1:
        return "teacher"
    if stage == stages:
        return "student"
    return "assistant" if stages == 3 else f"step-{stage}"


def _data_fingerprint(data: Dataset) -> dict:
    """The data a run trains and tests on: its name, counts and content (images and labels)."""
    from keras_takd.core import identity

    fingerprint = {
        "dataset": data.name,
        "train_images": len(data.x_train),
        "validation_images": len(data.x_val),
        "test_images": len(data.x_test),
        "content_sha256": identity.array_sha256(
            data.x_train, data.y_train, data.x_val, data.y_val, data.x_test, data.y_test
        ),
    }
    if data.label != data.name:  # a stand-in; runs on the real data keep their fingerprint
        fingerprint["label"] = data.label
    return fingerprint


def prepare_output_dir(
    output_dir: str | pathlib.Path,
    data: Dataset,
    config: TrainConfig,
    run_info: dict | None = None,
    seed_folders: bool = False,
) -> pathlib.Path:
    """Checks and records a chain run's folder (see `keras_takd.core.results.prepare_run_dir`).

    A run of several seeds (`seed_folders`) records its training settings without the seed
    (each stage's metadata records its own) and `replicates.seed_folders`, so the run can be
    resumed with more seeds, and a run of one seed is refused on its folder and vice versa.
    """
    train = dataclasses.asdict(config)
    configuration = {"train": train, "data": _data_fingerprint(data)}
    if seed_folders:
        del train["seed"]
        configuration["replicates"] = {"seed_folders": True}
    _check_same_layout(pathlib.Path(output_dir), seed_folders)
    run_json = files.check_regular(pathlib.Path(output_dir) / "run.json")
    if run_json.is_file():
        recorded = files.read_json(run_json).get("configuration", {})
        configuration = _as_recorded(configuration, recorded)
    return prepare_run_dir(output_dir, configuration, run_info)


def _as_recorded(wanted: dict, recorded: dict) -> dict:
    """`wanted` without the data's content hash when `recorded` (a run or stage trained
    before versions hashed the data's content) has none: such a run is compared, as it was
    made, on the data's name and counts only."""
    if "content_sha256" in recorded.get("data", {}) or "data" not in wanted:
        return wanted
    data = {k: v for k, v in wanted["data"].items() if k != "content_sha256"}
    return {**wanted, "data": data}


def _check_same_layout(out: pathlib.Path, seed_folders: bool) -> None:
    """Raises ConfigMismatchError when output_dir holds a run of one seed and several are
    asked, or the other way round (their model folders differ, `keras_takd.takd.layout`)."""
    run_json = files.check_regular(out / "run.json")
    if not run_json.is_file():
        return
    try:
        recorded = files.read_json(run_json)["configuration"]
        recorded["train"]
    except (ValueError, KeyError, TypeError):
        return  # not a chain run's run.json: prepare_run_dir names what is wrong
    if bool(recorded.get("replicates", {}).get("seed_folders")) == seed_folders:
        return
    if seed_folders:
        raise ConfigMismatchError(
            f"{out} holds a run of one seed (<dataset>/T<T>/stage<k>), this run asks several "
            "seeds: train them in another output_dir (one seed a run: --num_seeds=1)"
        )
    raise ConfigMismatchError(
        f"{out} holds a run of several seeds (<dataset>/T<T>/seed<s>/stage<k>), this run asks "
        "one: give it as many seeds or more (--num_seeds > 1), or use another output_dir"
    )


def _stage_fingerprint(data: Dataset, config: TrainConfig, temperature: float, stage: int) -> dict:
    return {
        "train": dataclasses.asdict(config),
        "data": _data_fingerprint(data),
        "unit": {"temperature": temperature, "stage": stage},
    }


def _load_if_complete(stage_dir: pathlib.Path, fingerprint: dict) -> dict | None:
    """Returns the stage's metadata if it finished with this configuration, else None."""
    meta_path = files.check_regular(stage_dir / "metadata.json")  # a FIFO would block
    if not meta_path.exists():
        return None
    metadata = files.read_json(meta_path)
    recorded = metadata["fingerprint"]
    check_same_config(recorded, _as_recorded(fingerprint, recorded), stage_dir)
    return metadata


def _warm_start_weights(
    data: Dataset, out: pathlib.Path, config: TrainConfig, verbose, log, seed: int | None
) -> list[np.ndarray]:
    """The shared initial weights: one epoch at T = 1 on hard labels (Carlini's `_init`);
    `seed` names the chain's folder in a run of several seeds (None: one seed)."""
    init_dir = out / layout.init_folder(data.label, seed)
    fingerprint = _stage_fingerprint(data, config, 1.0, 0)
    if _load_if_complete(init_dir, fingerprint) is None:
        of = "" if seed is None else f" of seed {seed}"
        log(f"{data.label} warm start{of}: 1 epoch at T = 1 on hard labels, shared by every stage")
        set_seed(unit_seed(config.seed, data.name, "init"), deterministic=False)
        model = build_model(data.name)

        def fit(guards):
            x, y = data.x_train, data.y_train
            return train_on_labels(
                model, x, y, 1.0, config, epochs=1, callbacks=guards, verbose=verbose
            )

        guarded_fit(fit, model, f"{data.label} warm start (T=1)")
        export.save_model_atomic(model, init_dir / "model.keras")
        files.write_json_atomic(init_dir / "metadata.json", {"fingerprint": fingerprint})
    return export.load_model(init_dir / "model.keras").get_weights()


def _train_stage(
    data: Dataset,
    config: TrainConfig,
    temperature: float,
    stage: int,
    teacher: keras.Model | None,
    init_weights,
    stage_dir: pathlib.Path,
    callbacks,
    verbose,
    what: str,
    note: Callable[[str], None],
) -> tuple[keras.Model, float, float, list]:
    """Trains one stage; raises `NonFiniteError` naming `what` and the epoch if it diverges."""
    set_seed(unit_seed(config.seed, data.name, temperature, stage), deterministic=False)
    model = build_model(data.name)
    if init_weights is not None:
        model.set_weights(init_weights)

    def fit(guards):
        kwargs = dict(
            validation_data=(data.x_val, data.y_val) if len(data.x_val) else None,
            callbacks=[*guards, *callbacks],
            verbose=verbose,
        )
        x, y = data.x_train, data.y_train
        if teacher is None:
            return train_on_labels(model, x, y, temperature, config, **kwargs)
        return distil(model, teacher, x, y, temperature, config, **kwargs)

    start = time.perf_counter()
    history = guarded_fit(fit, model, what, stage_dir / "backup", note)
    seconds = time.perf_counter() - start
    val_accuracy = history.history.get("val_accuracy", [float("nan")])[-1]
    return model, seconds, float(val_accuracy), history.history.get("soft_loss", [])


def learning_warning(
    row: dict,
    soft_losses=(),
    scale_soft_loss: bool = False,
    num_classes: int = NUM_CLASSES,
) -> str | None:
    """One line saying a stage did not learn, or None if it did.

    A stage did not learn when its test accuracy is at most `CHANCE_FACTOR` times chance, or
    when its soft loss (the cross-entropy to the teacher's softmax(z / T)) stayed within
    `FLAT_SOFT_LOSS_TOLERANCE` of ln(classes), its value for uniform outputs, every epoch.

    Args:
        row: the stage's results row (dataset, temperature, stage, role, test_accuracy; a
            `seed`, named after the dataset, in a run of several seeds).
        soft_losses: the stage's soft loss per epoch (empty for a teacher).
        scale_soft_loss: the soft loss was multiplied by T^2.
        num_classes: number of classes; chance is 1 / num_classes.
    """
    temperature = float(row["temperature"])
    uniform = math.log(num_classes) * (temperature**2 if scale_soft_loss else 1.0)
    tolerance = FLAT_SOFT_LOSS_TOLERANCE * (temperature**2 if scale_soft_loss else 1.0)
    flat = len(soft_losses) > 0 and all(abs(v - uniform) <= tolerance for v in soft_losses)
    accuracy = float(row["test_accuracy"])
    near_chance = accuracy <= CHANCE_FACTOR / num_classes
    if not (flat or near_chance):
        return None
    what = [f"test accuracy {100 * accuracy:.1f}% (chance {100 / num_classes:.0f}%)"]
    if flat:
        what.append(f"soft loss never left ln({num_classes}) = {uniform:.4f}")
    hints = _learning_hints(temperature, int(row["stage"]) > 1, scale_soft_loss)
    seed = "" if row.get("seed") is None else f" seed {row['seed']}"
    return (
        f"{row['dataset']}{seed} T={temperature:g} stage {row['stage']} {row['role']} did not "
        "learn: "
        f"{', '.join(what)}; saved anyway. Try {hints}"
    )


def _learning_hints(temperature: float, distilled: bool, scale_soft_loss: bool) -> str:
    """The settings that could help a stage learn, each named only where it can apply.

    More epochs always can; --scale_soft_loss only a distilled stage (a teacher has no soft
    loss) at T > 1 (at T = 1 it multiplies by 1) that was not scaled already; a lower
    --temperature only a stage at T > 1.
    """
    hints = ["more --epochs"]
    if distilled and temperature > 1 and not scale_soft_loss:
        hints.append("--scale_soft_loss")
    if temperature > 1:
        hints.append("a lower --temperature")
    return ", ".join(hints[:-1]) + f" or {hints[-1]}" if len(hints) > 1 else hints[0]


def _print_line(line: str) -> None:
    print(line, flush=True)  # before Keras' own progress output, so it labels it


def run_chain(
    data: Dataset,
    temperatures: Sequence[float],
    stages: int,
    output_dir: str | pathlib.Path,
    config: TrainConfig | None = None,
    run_info: dict | None = None,
    callbacks: Sequence = (),
    verbose="auto",
    on_stage: Callable[[dict, bool], None] | None = None,
    strategy: tf.distribute.Strategy | None = None,
    log: Callable[[str], None] | None = _print_line,
    on_warning: Callable[[str], None] | None = None,
    seeds: Sequence[int] | None = None,
    seed_folders: bool | None = None,
    last_stage: int | None = None,
) -> pd.DataFrame:
    """Trains chains of `stages` models at each temperature and writes them to output_dir.

    Args:
        data: the dataset (see `keras_takd.core.data.load_dataset`).
        temperatures: distillation temperatures, one chain each.
        stages: models per chain: 1 (teacher only), 2 (Papernot), 3 (teacher -> assistant ->
            student), 7 (the paper's multi-step chain), ...
        output_dir: where models, SavedModels, results.csv and run.json go.
        config: training hyperparameters (default: the paper's, `TrainConfig()`).
        run_info: recorded in run.json (e.g. the command-line flags).
        callbacks: extra Keras callbacks for every stage's training.
        verbose: Keras verbosity while training.
        on_stage: called as on_stage(row, already_complete) for each stage's results row
            (with its `seed`).
        strategy: the tf.distribute strategy to build and train the models under (see
            `make_strategy`); None: the default strategy.
        log: called with one line before each training (the warm start, each stage: its
            T, stage, role and epochs), so Keras' progress lines below it are labelled;
            default: printed; None: quiet.
        on_warning: called with the one-line `learning_warning` of a stage that did not
            learn; None: `warnings.warn(line, RuntimeWarning)`.
        seeds: the seeds of independent chains at each temperature, each its own
            initialisation, warm start and data order (`config.seed` replaced by each), in
            per-seed folders (`keras_takd.takd.layout`) when there are several. None: one
            chain per temperature, of `config.seed`.
        seed_folders: keep each seed in a folder of its own; None: when there are several
            seeds. True for one seed of a run of several (the study trains each chain apart,
            `keras_takd.takd.study.chain_units`).
        last_stage: train the stages up to this one only (the chain keeps its length
            `stages`: roles and rows are those of the whole chain); None: every stage. Each
            stage has its own seed (`core.seeding.unit_seed`), so a chain trained a stage at a
            time, each in a new process, has the weights of one trained at once.

    Returns:
        The whole results table of output_dir (also written to results.csv).

    Raises:
        ValueError: stages < 1, last_stage outside [1, stages], a temperature that is not >
            0, a seed listed twice or below 0; a finished stage's model file is corrupt.
        NonFiniteError: a stage's loss or weights became NaN or infinite (a ValueError).
        ConfigMismatchError: output_dir holds results of another configuration, or of one
            seed when several are asked (or of several when one is).
        FolderInUseError: another process holds output_dir (an OSError).
        OSError: output_dir cannot be written.
    """
    if stages < 1:
        raise ValueError(f"stages must be >= 1, got {stages}")
    last_stage = stages if last_stage is None else int(last_stage)
    if not 1 <= last_stage <= stages:
        raise ValueError(
            f"last_stage must be in [1, {stages}] (the chain's stages), got {last_stage}"
        )
    if not temperatures:
        raise ValueError("temperatures must list at least one temperature")
    temperatures = [check_temperature(t) for t in temperatures]
    config = config or TrainConfig()
    seeds = _check_seeds(seeds, config.seed)
    log = log or (lambda line: None)
    on_warning = on_warning or (lambda line: warnings.warn(line, RuntimeWarning, stacklevel=3))
    seed_folders = len(seeds) > 1 if seed_folders is None else bool(seed_folders)
    out = files.check_writable(output_dir)
    with locking.lock_run_folder(out), (strategy or tf.distribute.get_strategy()).scope():
        out = prepare_output_dir(out, data, config, run_info, seed_folders)
        table = None
        for seed in seeds:
            chain = _Chain(data, dataclasses.replace(config, seed=seed), out, seed_folders)
            init_weights = (
                _warm_start_weights(data, out, chain.config, verbose, log, chain.folder_seed)
                if config.warm_start
                else None
            )
            for temperature in temperatures:
                teacher = None
                for stage in range(1, last_stage + 1):
                    teacher, row, complete, warning = _run_stage(
                        chain,
                        temperature,
                        stage,
                        stages,
                        teacher,
                        init_weights,
                        callbacks,
                        verbose,
                        log,
                        on_warning,
                    )
                    table = _record_model(out, row)
                    if on_stage is not None:
                        on_stage(row, complete)
                    if warning is not None:
                        on_warning(warning)
        return table


def _check_seeds(seeds: Sequence[int] | None, default: int) -> list[int]:
    """The seeds as a list of distinct ints >= 0 (None: [default]); ValueError otherwise."""
    seeds = [default] if seeds is None else [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ValueError(f"seeds must be one or more distinct integers >= 0, got {seeds}")
    return seeds


@dataclasses.dataclass(frozen=True)
class _Chain:
    """One seed's chains of a run: its data, its settings (their seed the chain's), the run
    folder, and whether the run keeps each seed in a folder of its own."""

    data: Dataset
    config: TrainConfig
    out: pathlib.Path
    seed_folders: bool

    @property
    def folder_seed(self) -> int | None:
        """The seed that names the chain's folders, or None in a run of one seed."""
        return layout.folder_seed(self.config.seed, self.seed_folders)

    def stage_dir(self, temperature: float, stage: int) -> pathlib.Path:
        return self.out / layout.model_folder(self.data.label, temperature, stage, self.folder_seed)

    def describe(self, temperature: float, stage: int, stages: int) -> str:
        """ "mnist T=20 stage 2 assistant", with "seed 3" after the label in a run of seeds."""
        seed = "" if self.folder_seed is None else f" seed {self.folder_seed}"
        role = role_name(stage, stages)
        return f"{self.data.label}{seed} T={temperature:g} stage {stage} {role}"


def _run_stage(
    chain: _Chain,
    temperature: float,
    stage: int,
    stages: int,
    teacher: keras.Model | None,
    init_weights,
    callbacks,
    verbose,
    log: Callable[[str], None],
    on_warning: Callable[[str], None],
) -> tuple[keras.Model, dict, bool, str | None]:
    """Trains a stage unless it is complete; returns its model, its results row, whether it
    was complete already, and its `learning_warning` (None if it learned or was complete)."""
    data, config = chain.data, chain.config
    stage_dir = chain.stage_dir(temperature, stage)
    fingerprint = _stage_fingerprint(data, config, temperature, stage)
    metadata = _load_if_complete(stage_dir, fingerprint)
    complete, warning = metadata is not None, None
    if not complete:
        what = chain.describe(temperature, stage, stages)
        epochs = f"{config.epochs} epoch{'s' if config.epochs != 1 else ''}"
        log(f"{what}: training, {epochs}")
        model, seconds, val_accuracy, soft_losses = _train_stage(
            data,
            config,
            temperature,
            stage,
            teacher,
            init_weights,
            stage_dir,
            callbacks,
            verbose,
            what,
            on_warning,
        )
        row = {
            "dataset": data.label,
            "temperature": temperature,
            "stage": stage,
            "role": role_name(stage, stages),
            "test_accuracy": metrics.accuracy(model, data.x_test, data.y_test, 1024),
            "val_accuracy": val_accuracy,
            "train_seconds": round(seconds, 3),
            "epochs": config.epochs,
            **layout.stage_paths(stage_dir),
        }
        metadata = _save_stage(model, data, stage_dir, fingerprint, row)
        named = row | {"seed": chain.folder_seed}  # the warning names a run of seeds' seed
        warning = learning_warning(named, soft_losses, config.scale_soft_loss)
    else:
        model = export.load_model(stage_dir / "model.keras")
    # A stage's model does not depend on the chain's length; its role and row do. Its paths
    # are where it is now (a run folder copied elsewhere resumes with its own models).
    row = dict(metadata["row"], role=role_name(stage, stages), stages=stages, seed=config.seed)
    return model, row | layout.stage_paths(stage_dir), complete, warning


def _record_model(out: pathlib.Path, row: dict) -> pd.DataFrame:
    """Writes a stage's row (with its seed) into the run's record, only training's columns,
    and exports it.

    The model's evaluation columns live in the record's own tables, so rerunning or extending
    a training keeps them (results.csv is regenerated from the record, never read back).
    """
    with record.writing(out) as connection:
        record.put_models(connection, [row])
    return export_run(out)


def _save_stage(model, data, stage_dir, fingerprint, row) -> dict:
    export.save_model_atomic(model, stage_dir / "model.keras")
    export.export_saved_model(model, stage_dir / "saved_model")
    metadata = {"fingerprint": fingerprint, "row": row}
    files.write_json_atomic(stage_dir / "metadata.json", metadata)
    return metadata


def stage_summary(row: dict, already_complete: bool = False) -> str:
    """One line describing a finished stage, for progress output."""
    return (
        f"{row['dataset']} T={row['temperature']:g} stage {row['stage']} "
        f"{row['role']:<9} test accuracy {100 * row['test_accuracy']:.2f}% "
        f"({row['train_seconds']:.1f} s){' [already complete]' if already_complete else ''}"
        f" -> {pathlib.Path(row['keras_model']).parent}"
    )

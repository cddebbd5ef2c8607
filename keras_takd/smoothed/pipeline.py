"""The smoothed-KD study of Katz & Reches (2022), end to end, resumable, into an output_dir.

"Knowledge Distillation via Smoothed Models and Adversarial Robustness" distils a deterministic
student from the smoothed colored-noise-injection (CNI) teacher of Nemcovsky et al. 2020
(arXiv:1911.07198). `run_smoothed_kd` runs its four steps:

1. teacher: a CNI network (`cni_model`, colored noise on the convolutions, white noise on the
   last layer as in the reference code) trained with PGD adversarial training
   (`keras_takd.smoothed.adversarial.adversarial_train`);
2. soft targets: the smoothed teacher's aggregated outputs over M noisy passes on the
   training set, both aggregations (`SmoothedClassifier.aggregate`), cached;
3. student: a deterministic network distilled from the chosen aggregation with the Hinton
   loss (Table 1, `perturb_distil_weight=0`) or adversarially (Table 2,
   `keras_takd.smoothed.adversarial.AdversarialDistillerModel`), exported as a SavedModel;
4. evaluation: white-box clean and PGD accuracy of the CNI, the smoothed CNI (both
   aggregations) and the student (results.csv, Tables 1-2), and the transfer matrix
   (transfer.csv, Table 3 and Figs. 4-6, `keras_takd.smoothed.transfer`) with its figures.

Layout of `output_dir` (each step's last file marks it complete; every file is written
through a temporary name and a rename, so a killed run resumes where it stopped, and a
half-trained model resumes from its last epoch through keras BackupAndRestore; a backup left
incomplete is discarded and that model trained from its first epoch,
`keras_takd.core.training`). A model whose loss or weights become NaN or infinite ends the run
with `NonFiniteError` before it is saved. The run holds `run.lock` for its whole life
(`keras_takd.core.locking`), so a second process on the same folder is refused at once:

    run.json                         configuration, flags, library versions
    run.lock                         the lock file; names the running process's PID
    teacher/model.keras              the CNI teacher
    teacher/metadata.json            teacher training history and time (marks it complete)
    soft_targets.npz                 prediction / soft_prediction smoothing on the training set
    student/model.keras              the deterministic student
    student/saved_model/             its SavedModel (serve, serving_default, probabilities)
    student/curves.json              per-epoch clean / PGD accuracy (with curve_size > 0)
    student/metadata.json            student training history, curves and time (marks it
                                     complete)
    student_from_<aggregation>/      with compare_aggregations: the student distilled from
                                     the other aggregation (model.keras, curves.json,
                                     metadata.json; no SavedModel, not in the transfer matrix)
    results.csv                      one row per model (and aggregation; "none" for the single
                                     networks): clean and white-box PGD accuracy; the second
                                     student is "kd_student_from_<aggregation>"
    transfer.csv                     the transfer matrix (keras_takd.smoothed.transfer.COLUMNS)
    figures/transfer_<source>.png    accuracy vs PGD step k, one panel per eps
    student_epochs.csv               with curve_size > 0: per student (aggregation) and epoch,
                                     clean and PGD accuracy on training and test images
    figures/student_epochs.png       with curve_size > 0: clean and PGD accuracy vs epoch on
                                     training and test images, per student (Figs. 1-3)

results.csv's `dataset` column holds the data's label (`keras_takd.core.data.Dataset.label`),
e.g. `cifar10-jpeg-standin` for the lossy CIFAR-10 stand-in. A model whose clean accuracy is
at most twice chance, or a student whose soft loss stayed at its value for uniform outputs
(ln(classes) T^2) every epoch, gets a one-line warning (`learning_warnings`); it is kept.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import time
import warnings
from collections.abc import Callable, Mapping

import keras
import numpy as np
import pandas as pd

from keras_takd.attacks.projected_gradient_descent import projected_gradient_descent
from keras_takd.core import export, files, locking
from keras_takd.core.data import NUM_CLASSES, Dataset
from keras_takd.core.models import carlini_cnn, wide_resnet
from keras_takd.core.results import prepare_run_dir
from keras_takd.core.seeding import set_seed, unit_seed
from keras_takd.core.training import guarded_fit
from keras_takd.smoothed import figures as plotting_transfer
from keras_takd.smoothed import transfer
from keras_takd.smoothed.adversarial import (
    AdversarialConfig,
    EpochAccuracyCurves,
    adversarial_distil,
    adversarial_train,
)
from keras_takd.smoothed.noise_injection import cni_model
from keras_takd.smoothed.smoothing import AGGREGATIONS, SmoothedClassifier

ARCHITECTURES = ("wide_resnet", "carlini_cnn")
RESULT_COLUMNS = (
    "dataset",
    "model",
    "aggregation",
    "clean_accuracy",
    "pgd_accuracy",
    "eps_255",
    "pgd_steps",
    "num_images",
)
MODEL_NAMES = ("cni", "smoothed_cni", "kd_student")
CURVE_COLUMNS = (
    "epoch",
    "train_clean_accuracy",
    "train_pgd_accuracy",
    "test_clean_accuracy",
    "test_pgd_accuracy",
)
# A model "did not learn" at a clean accuracy of at most this many times chance, or when the
# student's soft loss stayed within this (times T^2) of ln(classes) every epoch.
CHANCE_FACTOR = 2.0
FLAT_SOFT_LOSS_TOLERANCE = 1e-3


@dataclasses.dataclass(frozen=True)
class SmoothedKDConfig:
    """Settings of one smoothed-KD run (the paper's defaults where it states them).

    Attributes:
        architecture: "wide_resnet" (the paper) or "carlini_cnn" (small, for tests).
        depth: WRN depth (28).
        teacher_widen_factor: WRN widen factor k of the CNI teacher (10).
        student_widen_factor: WRN widen factor of the student (10).
        noise: "colored" (CNI, the paper's teacher) or "white" (PNI) weight noise.
        teacher: Adam / schedule / PGD settings of the teacher's adversarial training.
        adversarial_weight: weight of the adversarial term in the teacher's loss.
        student: Adam / schedule / PGD settings of the student's (adversarial) distillation.
        temperature: distillation temperature T.
        distil_weight: w, teacher-vs-label weight (0.5 in Table 1, 0.75 in Table 2).
        perturb_distil_weight: p, weight of the perturbed term (0 Table 1, 0.25 Table 2).
        aggregation: the teacher output distilled, "prediction" or "soft_prediction".
        num_samples: M, noisy passes of the smoothed teacher (512).
        attack_samples: passes averaged in the gradients when attacking the smoothed model.
        chunk_size: passes per compiled call of the smoothed teacher.
        eval_size: test images of the PGD evaluation and the transfer matrix.
        eval_eps_255: radius of the white-box PGD evaluation, in 1/255 (8).
        pgd_steps: PGD iterations of the evaluation and transfer attacks (10).
        transfer_eps_255: radii of the transfer matrix, in 1/255 (2, 8, 30).
        curve_size: after every student epoch, clean and PGD accuracy (eval_eps_255,
            pgd_steps) on the first `curve_size` training and test images (Figs. 1-3); 0 off.
        compare_aggregations: also distil a second student, identically, from the other
            aggregation (Fig. 1 sets prediction and soft prediction smoothing side by side).
        seed: seed of everything.
    """

    architecture: str = "wide_resnet"
    depth: int = 28
    teacher_widen_factor: int = 10
    student_widen_factor: int = 10
    noise: str = "colored"
    teacher: AdversarialConfig = AdversarialConfig()
    adversarial_weight: float = 0.5
    student: AdversarialConfig = AdversarialConfig()
    temperature: float = 1.0
    distil_weight: float = 0.75
    perturb_distil_weight: float = 0.25
    aggregation: str = "soft_prediction"
    num_samples: int = 512
    attack_samples: int = 8
    chunk_size: int = 32
    eval_size: int = 1000
    eval_eps_255: float = 8.0
    pgd_steps: int = 10
    transfer_eps_255: tuple[float, ...] = transfer.PAPER_EPS_255
    curve_size: int = 0
    compare_aggregations: bool = False
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "transfer_eps_255", tuple(float(e) for e in self.transfer_eps_255))
        checks = (
            ("architecture", self.architecture in ARCHITECTURES, f"one of {ARCHITECTURES}"),
            ("aggregation", self.aggregation in AGGREGATIONS, f"one of {AGGREGATIONS}"),
            ("temperature", self.temperature > 0, "> 0"),
            ("distil_weight", 0 <= self.distil_weight <= 1, "in [0, 1]"),
            ("perturb_distil_weight", 0 <= self.perturb_distil_weight <= 1, "in [0, 1]"),
            ("adversarial_weight", 0 <= self.adversarial_weight <= 1, "in [0, 1]"),
            ("num_samples", self.num_samples >= 1, ">= 1"),
            ("attack_samples", self.attack_samples >= 1, ">= 1"),
            ("chunk_size", self.chunk_size >= 1, ">= 1"),
            ("eval_size", self.eval_size >= 1, ">= 1"),
            ("curve_size", self.curve_size >= 0, ">= 0"),
            ("eval_eps_255", 0 < self.eval_eps_255 <= 255, "in (0, 255]"),
            ("pgd_steps", self.pgd_steps >= 1, ">= 1"),
            (
                "transfer_eps_255",
                bool(self.transfer_eps_255) and all(0 < e <= 255 for e in self.transfer_eps_255),
                "radii in (0, 255]",
            ),
        )
        for name, ok, expected in checks:
            if not ok:
                raise ValueError(f"{name} must be {expected}, got {getattr(self, name)!r}")


def _flatten(settings: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def run_configuration(data: Dataset, config: SmoothedKDConfig) -> dict:
    """The settings recorded in run.json and compared on resume, as flat JSON-typed sections."""
    # A JSON round trip, so tuples compare equal to the lists read back from run.json.
    settings = json.loads(json.dumps(dataclasses.asdict(config)))
    return {
        "smoothed_kd": _flatten(settings),
        "data": {
            "dataset": data.name,
            "train_images": len(data.x_train),
            "validation_images": len(data.x_val),
            "test_images": len(data.x_test),
        },
    }


def build_networks(
    config: SmoothedKDConfig, input_shape: tuple[int, ...]
) -> tuple[keras.Model, keras.Model]:
    """A fresh CNI teacher and a fresh deterministic student, both returning logits."""
    if config.architecture == "wide_resnet":
        common = {"depth": config.depth, "num_classes": NUM_CLASSES, "input_shape": input_shape}
        teacher_kwargs = {**common, "widen_factor": config.teacher_widen_factor}
        student = wide_resnet(widen_factor=config.student_widen_factor, **common)
    else:
        params = (16, 16, 32, 32, 64, 64)
        teacher_kwargs = {"input_shape": input_shape, "params": params}
        student = carlini_cnn(input_shape, params, name="student_cnn")
    teacher = cni_model(
        base=config.architecture,
        noise=config.noise,
        dense_noise="white",
        seed=unit_seed(config.seed, "noise"),
        **teacher_kwargs,
    )
    return teacher, student


def _history(history: keras.callbacks.History) -> dict:
    return {k: [float(v) for v in values] for k, values in history.history.items()}


def _finished(directory: pathlib.Path) -> bool:
    """Whether the stage in `directory` finished: its metadata.json is there.

    Raises:
        files.NotRegularFileError: metadata.json is a FIFO, a folder or a device.
    """
    return files.check_regular(directory / "metadata.json").exists()


def _train_teacher(data: Dataset, config: SmoothedKDConfig, out: pathlib.Path, verbose, log):
    directory = out / "teacher"
    if _finished(directory):
        return export.load_model(directory / "model.keras")
    set_seed(unit_seed(config.seed, "teacher"), deterministic=False)
    teacher, _ = build_networks(config, data.input_shape)
    start = time.perf_counter()
    history = guarded_fit(
        lambda guards: adversarial_train(
            teacher,
            data.x_train,
            data.y_train,
            config.teacher,
            adversarial_weight=config.adversarial_weight,
            validation_data=(data.x_val, data.y_val) if len(data.x_val) else None,
            callbacks=guards,
            verbose=verbose,
        ),
        teacher,
        f"{data.label} CNI teacher",
        directory / "backup",
        log,
    )
    export.save_model_atomic(teacher, directory / "model.keras")
    metadata = {"history": _history(history), "train_seconds": time.perf_counter() - start}
    files.write_json_atomic(directory / "metadata.json", metadata)
    return teacher


def _soft_targets(data, config, out, smoothed: SmoothedClassifier) -> dict[str, np.ndarray]:
    path = out / "soft_targets.npz"
    if not files.check_regular(path).exists():  # a FIFO would block np.load
        outputs = smoothed.aggregate(data.x_train, temperature=config.temperature)
        files.save_npz_atomic(path, **outputs._asdict())
    with np.load(path, allow_pickle=False) as arrays:
        return {name: arrays[name] for name in AGGREGATIONS}


def student_directories(config: SmoothedKDConfig) -> dict[str, str]:
    """Aggregation -> folder of the student distilled from it: `student` for
    `config.aggregation`, `student_from_<other>` for the other with `compare_aggregations`."""
    others = [a for a in AGGREGATIONS if a != config.aggregation]
    extra = {a: f"student_from_{a}" for a in others} if config.compare_aggregations else {}
    return {config.aggregation: "student", **extra}


def _curve_callback(data, config, directory, student) -> list[EpochAccuracyCurves]:
    if not config.curve_size:
        return []
    n = config.curve_size
    eps = config.eval_eps_255 / 255
    return [
        EpochAccuracyCurves(
            network=student,
            sets={
                "train": (data.x_train[:n], data.y_train[:n]),
                "test": (data.x_test[:n], data.y_test[:n]),
            },
            eps=eps,
            step_size=transfer.STEP_SIZE_FACTOR * eps / config.pgd_steps,
            steps=config.pgd_steps,
            seed=unit_seed(config.seed, "curves"),
            path=directory / "curves.json",
        )
    ]


def _train_student(
    data, config, out, soft_targets, verbose, aggregation: str, folder: str, log
) -> keras.Model:
    """Distils the student of one aggregation into `out/folder` (or loads it, when done)."""
    directory = out / folder
    if _finished(directory):
        return export.load_model(directory / "model.keras")
    unit = "student" if folder == "student" else f"student/{aggregation}"
    set_seed(unit_seed(config.seed, unit), deterministic=False)
    _, student = build_networks(config, data.input_shape)
    curves = _curve_callback(data, config, directory, student)
    start = time.perf_counter()
    history = guarded_fit(
        lambda guards: adversarial_distil(
            student,
            data.x_train,
            data.y_train,
            soft_targets[aggregation],
            config.student,
            temperature=config.temperature,
            distil_weight=config.distil_weight,
            perturb_distil_weight=config.perturb_distil_weight,
            callbacks=[*curves, *guards],
            verbose=verbose,
        ),
        student,
        f"{data.label} {folder} (from {aggregation}, T={config.temperature:g})",
        directory / "backup",
        log,
    )
    export.save_model_atomic(student, directory / "model.keras")
    if folder == "student":
        export.export_saved_model(student, directory / "saved_model")
    metadata = {
        "aggregation": aggregation,
        "history": _history(history),
        "curves": curves[0].records() if curves else [],
        "train_seconds": time.perf_counter() - start,
    }
    files.write_json_atomic(directory / "metadata.json", metadata)
    return student


def _white_box_results(x, y, config, teacher, smoothed, students, label) -> pd.DataFrame:
    """Clean and white-box PGD accuracy of each model (Tables 1-2)."""
    eps = config.eval_eps_255 / 255
    step_size = transfer.STEP_SIZE_FACTOR * eps / config.pgd_steps
    attacked = transfer.smoothed_transfer_model("s", smoothed, config.attack_samples).logits

    def pgd(model):
        return projected_gradient_descent(
            model, x, y, eps, step_size, config.pgd_steps, seed=config.seed, keep_failed=True
        ).x_adv

    rows = []
    for name, model in (("cni", teacher), *students.items()):
        entry = transfer.keras_transfer_model(name, model)
        rows.append((name, "none", entry.predict(x), entry.predict(pgd(model))))
    x_adv = pgd(attacked)
    clean_outputs, adv_outputs = smoothed.aggregate(x), smoothed.aggregate(x_adv)
    for aggregation in AGGREGATIONS:
        clean = np.argmax(getattr(clean_outputs, aggregation), axis=-1)
        adversarial = np.argmax(getattr(adv_outputs, aggregation), axis=-1)
        rows.append(("smoothed_cni", aggregation, clean, adversarial))
    table = pd.DataFrame(
        [
            (
                label,
                name,
                agg,
                np.mean(c == y),
                np.mean(a == y),
                config.eval_eps_255,
                config.pgd_steps,
            )
            for name, agg, c, a in rows
        ],
        columns=list(RESULT_COLUMNS[:-1]),
    )
    table["num_images"] = len(x)
    return table


def learning_warnings(
    results: pd.DataFrame,
    soft_losses: Mapping[str, list[float]],
    temperature: float,
    num_classes: int = NUM_CLASSES,
) -> list[str]:
    """One line per model that did not learn (see the module docstring).

    Args:
        results: the white-box results table (dataset, model, aggregation, clean_accuracy,
            num_images).
        soft_losses: student folder -> its soft loss per epoch (scaled by T^2).
        temperature: the distillation temperature T.
        num_classes: number of classes; chance is 1 / num_classes.
    """
    advice = "saved anyway. Try more --teacher_epochs / --student_epochs or a lower --temperature"
    lines = []
    for row in results.itertuples():
        if row.clean_accuracy <= CHANCE_FACTOR / num_classes:
            aggregation = "" if row.aggregation == "none" else f" ({row.aggregation})"
            lines.append(
                f"{row.dataset} {row.model}{aggregation} did not learn: clean accuracy "
                f"{100 * row.clean_accuracy:.1f}% on {row.num_images} test images (chance "
                f"{100 / num_classes:.0f}%); {advice}"
            )
    uniform = math.log(num_classes) * temperature**2
    tolerance = FLAT_SOFT_LOSS_TOLERANCE * temperature**2
    for folder, losses in soft_losses.items():
        if losses and all(abs(v - uniform) <= tolerance for v in losses):
            lines.append(
                f"{folder} did not learn from its teacher: its soft loss never left "
                f"ln({num_classes}) T^2 = {uniform:.4f}; {advice}"
            )
    return lines


def run_smoothed_kd(
    data: Dataset,
    output_dir: str | os.PathLike,
    config: SmoothedKDConfig | None = None,
    run_info: dict | None = None,
    verbose="auto",
    log: Callable[[str], None] = print,
    on_warning: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Runs (or resumes) teacher, soft targets, student, evaluation and transfer matrix.

    Args:
        data: the dataset (`keras_takd.core.data.load_dataset`); evaluation uses its first
            `config.eval_size` test images.
        output_dir: where every output goes (layout in the module docstring).
        config: the settings; defaults to the paper's (`SmoothedKDConfig()`).
        run_info: recorded in run.json (e.g. the command-line flags).
        verbose: Keras verbosity while training.
        log: called with one line per finished step.
        on_warning: called with each line of `learning_warnings` when the results are
            computed; None: `warnings.warn(line, RuntimeWarning)`.

    Returns:
        The transfer matrix (also in transfer.csv).

    Raises:
        ValueError: eval_size larger than the test set, or curve_size than either set; a
            finished model's file is corrupt.
        NonFiniteError: a model's loss or weights became NaN or infinite (a ValueError).
        ConfigMismatchError: output_dir holds a run with other settings.
        FolderInUseError: another process holds output_dir (an OSError).
        OSError: output_dir cannot be written.
    """
    config = config or SmoothedKDConfig()
    if config.eval_size > len(data.x_test):
        raise ValueError(
            f"eval_size={config.eval_size} is larger than the {len(data.x_test)} test images"
        )
    if config.curve_size > min(len(data.x_train), len(data.x_test)):
        raise ValueError(
            f"curve_size={config.curve_size} is larger than the {len(data.x_train)} training"
            f" or the {len(data.x_test)} test images"
        )
    out = files.check_writable(output_dir)
    with locking.lock_run_folder(out):
        prepare_run_dir(out, run_configuration(data, config), run_info)
        return _run_steps(data, out, config, verbose, log, on_warning)


def _run_steps(data, out, config, verbose, log, on_warning) -> pd.DataFrame:
    """`run_smoothed_kd`'s four steps, in a checked and locked output_dir."""
    teacher = _train_teacher(data, config, out, verbose, log)
    log(f"teacher ready: {out / 'teacher' / 'model.keras'}")
    smoothed = SmoothedClassifier(teacher, config.num_samples, config.chunk_size)
    soft_targets = _soft_targets(data, config, out, smoothed)
    log(f"soft targets ready: {out / 'soft_targets.npz'}")
    students, histories, soft_losses = {}, {}, {}
    for aggregation, folder in student_directories(config).items():
        name = "kd_student" if folder == "student" else f"kd_{folder}"
        students[name] = _train_student(
            data, config, out, soft_targets, verbose, aggregation, folder, log
        )
        metadata = files.read_json(out / folder / "metadata.json")
        histories[aggregation] = metadata.get("curves", [])
        soft_losses[folder] = metadata.get("history", {}).get("soft_loss", [])
        log(f"student distilled from {aggregation} ready: {out / folder}")
    student = students["kd_student"]
    if config.curve_size:
        table = pd.concat(
            [pd.DataFrame(records).assign(aggregation=a) for a, records in histories.items()]
        )
        files.write_csv_atomic(out / "student_epochs.csv", table[["aggregation", *CURVE_COLUMNS]])
        path = plotting_transfer.write_curve_figure(histories, config, out / "figures")
        log(f"per-epoch accuracy: {out / 'student_epochs.csv'}, {path}")
    x, y = data.x_test[: config.eval_size], data.y_test[: config.eval_size]
    if not files.check_regular(out / "results.csv").exists():
        set_seed(unit_seed(config.seed, "results"), deterministic=False)
        results = _white_box_results(x, y, config, teacher, smoothed, students, data.label)
        files.write_csv_atomic(out / "results.csv", results)
        warn = on_warning or (lambda line: warnings.warn(line, RuntimeWarning, stacklevel=4))
        for line in learning_warnings(results, soft_losses, config.temperature):
            warn(line)
    log(f"results: {out / 'results.csv'}")
    if files.check_regular(out / "transfer.csv").exists():
        matrix = pd.read_csv(out / "transfer.csv")
    else:
        set_seed(unit_seed(config.seed, "transfer"), deterministic=False)
        models = [
            transfer.keras_transfer_model("cni", teacher),
            transfer.smoothed_transfer_model("smoothed_cni", smoothed, config.attack_samples),
            transfer.keras_transfer_model("kd_student", student),
        ]
        matrix = transfer.transfer_matrix(
            models,
            x,
            y,
            eps_values=[e / 255 for e in config.transfer_eps_255],
            steps=config.pgd_steps,
            seed=config.seed,
            on_source=lambda name, eps: log(f"transfer: attacked {name} at eps {eps * 255:g}/255"),
        )
        files.write_csv_atomic(out / "transfer.csv", matrix)
    plotting_transfer.write_transfer_figures(matrix, out / "figures")
    log(f"transfer matrix: {out / 'transfer.csv'} ({len(matrix)} rows)")
    return matrix


def describe_results(output_dir: str | os.PathLike) -> str:
    """The results table and the paper's Table 3 view (eps 8/255), as text."""
    out = pathlib.Path(output_dir)
    results = pd.read_csv(out / "results.csv")
    matrix = pd.read_csv(out / "transfer.csv")
    eps = 8.0 if np.isclose(matrix["eps_255"], 8.0).any() else float(matrix["eps_255"].iloc[0])
    table3 = transfer.transfer_table(matrix, eps_255=eps)
    return (
        f"{results.to_string(index=False)}\n\ntransfer at eps {eps:g}/255, "
        f"PGD-{int(matrix['k'].max())}:\n{table3.to_string(index=False)}"
    )

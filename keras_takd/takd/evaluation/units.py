"""Units of work of an evaluation, their cache, and `evaluate_run`, which runs the missing ones.

A unit is one model's attack-free metrics, or one attack on one model's block of images. Each
finished unit is a JSON file under `<output_dir>/eval/<config id>/` (see the package
docstring); the results CSV is rewritten after every unit.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import pathlib
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from keras_takd.core import files, metrics
from keras_takd.core.results import ConfigMismatchError
from keras_takd.takd.evaluation.config import (
    FIXED_ARGUMENTS,
    EvaluationConfig,
    attack_function,
    config_id,
    shard_results_path,
)
from keras_takd.takd.evaluation.per_image import unit_rows, write_per_image
from keras_takd.takd.evaluation.runs import (
    Run,
    check_results_file,
    known_columns,
    read_csv,
    read_run,
)
from keras_takd.takd.evaluation.tables import (
    attack_statistics,
    empty_statistics,
    final_columns,
    shard_columns,
    write_results,
)
from keras_takd.takd.schema import (
    APGD_ATTACKS,
    ATTACK_PREFIXES,
    ATTACKS,
    CHAIN_COLUMNS,
    CHAIN_LENGTH_COLUMN,
    CONFIG_COLUMN,
    INDICATORS,
    KEY_COLUMNS,
    MASKED_L2_PREFIX,
    SHARD_COLUMNS,
    attack_norm,
)

# Version of the cached units' layout: a unit of another version is recomputed, never read.
# 2: units are tied to the model's weights (not its file) and carry a checksum of their content.
UNIT_SCHEMA = 2


def weights_sha256(model) -> str:
    """A sha256 of a model's weights: their order, dtypes, shapes and values.

    Unlike the hash of the saved file (which holds the save date), it is the same for two
    trainings that gave the same weights, e.g. the same run retrained with op determinism on
    another day, so cached units stay valid for it. Layer names are left out: they depend on
    how many layers the process built before.
    """
    import keras  # TensorFlow: only when a model is loaded

    digest = hashlib.sha256()
    for k, weight in enumerate(model.weights):
        array = np.ascontiguousarray(keras.ops.convert_to_numpy(weight))
        digest.update(f"{k}:{array.dtype.str}:{array.shape};".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def unit_checksum(unit: Mapping) -> str:
    """The sha256 of a unit's content (every key but "checksum"), canonical JSON."""
    body = {k: v for k, v in unit.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _valid_content(unit: Mapping, kind: str) -> bool:
    """Whether a unit holds what its kind needs, with the right types and lengths."""
    try:
        start, stop = unit["images"]
        if not (isinstance(start, int) and isinstance(stop, int) and 0 <= start <= stop):
            return False
        if not isinstance(unit.get("seconds"), (int, float)):
            return False
        if kind == "metrics":
            return all(isinstance(v, (int, float)) for v in unit["metrics"].values())
        if kind.endswith(INDICATOR_SUFFIX):
            n = len(unit["index"])
            attack = kind.removesuffix(INDICATOR_SUFFIX)
            return unit["settings"] == indicator_settings(attack) and all(
                flags is None or len(flags) == n for flags in unit["flags"].values()
            )
        stats, per = unit["statistics"], unit["per_image"]
        if not isinstance(stats, dict) or not all(
            isinstance(v, (int, float)) for v in stats.values()
        ):
            return False
        if not per:  # no image classified correctly
            return True
        n = len(per["index"])
        lists = [per[key] for key in ("success", "distance", "const")]
        lists += [per[key] for key in ("found", "iterations", "incomplete") if key in per]
        return all(len(values) == n for values in lists) and all(
            isinstance(i, int) and 0 <= i < stop - start for i in per["index"]
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        return False


def _load_unit(
    path: pathlib.Path, weights_sha: str, images, kind: str, note: Callable[[str], None]
) -> dict | None:
    """The cached unit if it is intact and was computed for these weights and images.

    A unit that is not intact (unreadable, of another schema version, not matching its
    checksum, or lacking what its kind needs) is never trusted: `note` gets one line saying
    why, and the unit is recomputed. A unit of another model or other images is silently
    recomputed: that is what a cache is for.
    """
    if not path.is_file():
        return None
    try:
        cached = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        cached = None
    if not isinstance(cached, dict):
        note(f"{path}: not a unit (unreadable JSON); recomputing it")
        return None
    if cached.get("schema") != UNIT_SCHEMA:
        note(
            f"{path}: unit schema {cached.get('schema', 1)!r}, this version reads "
            f"{UNIT_SCHEMA}; recomputing it"
        )
        return None
    if cached.get("checksum") != unit_checksum(cached):
        note(f"{path}: its content does not match its checksum (edited or damaged); recomputing it")
        return None
    if not _valid_content(cached, kind):
        note(f"{path}: lacks what a {kind} unit holds; recomputing it")
        return None
    if cached.get("weights_sha256") != weights_sha or cached["images"] != list(images):
        return None
    return cached


def _run_attack(name, model, x, y, correct, temperature, config: EvaluationConfig, verbose):
    """Attacks the correctly classified images of a block; returns (statistics, per_image)."""
    prefix = name
    attack = "l2" if name == MASKED_L2_PREFIX else name
    budget = config.budgets.get(name) if name in ATTACKS else None
    # APGD's statistics carry its radius: robust accuracy means nothing without it.
    eps = {"eps": float(config.attack_options[name]["eps"])} if name in APGD_ATTACKS else {}
    if not correct.any():
        return empty_statistics(int((~correct).sum()), budget) | eps, {}
    target = model
    if name == MASKED_L2_PREFIX:  # softmax(logits / T): what a gradient-masked attacker sees
        from keras_takd.core.models import with_temperature  # TensorFlow: only when attacking

        target = with_temperature(model, temperature)
    kwargs = dict(config.attack_options[attack], verbose=verbose) | FIXED_ARGUMENTS.get(attack, {})
    if name == MASKED_L2_PREFIX:
        kwargs["allow_probabilities"] = True
    result = attack_function(attack)(target, x[correct], y[correct], **kwargs)
    stats = attack_statistics(result, prefix, correct, budget) | eps
    per_image = {
        "index": np.flatnonzero(correct).tolist(),
        "success": np.asarray(result.success, bool).tolist(),
        "distance": np.asarray(getattr(result, attack_norm(attack)), np.float64).tolist(),
        "const": np.asarray(result.const, np.float64).tolist(),
    }
    if result.found is not None:  # for indicators.silent_success, afterwards
        per_image["found"] = np.asarray(result.found, bool).tolist()
    if result.iterations is not None:
        per_image["iterations"] = np.asarray(result.iterations, np.int64).tolist()
    if result.incomplete is not None:  # for the incomplete-optimisation indicator
        per_image["incomplete"] = np.asarray(result.incomplete, bool).tolist()
    return stats, per_image


@dataclasses.dataclass
class _Model:
    row: dict
    path: pathlib.Path
    unit_dir: pathlib.Path
    keras_model: Any = None
    sha: str = ""  # weights_sha256, set by load()

    def load(self):
        if self.keras_model is None:
            import keras

            self.keras_model = keras.saving.load_model(self.path)
            self.sha = weights_sha256(self.keras_model)
        return self.keras_model


def _models(run: Run, cache: pathlib.Path) -> list[_Model]:
    produced = known_columns(None, sharded=True) - set(CHAIN_COLUMNS)
    rows = run.rows.sort_values(list(KEY_COLUMNS), kind="stable")
    chain_length = rows.groupby(["dataset", "temperature"])["stage"].transform("max")
    models = []
    for (_, row), stages in zip(rows.iterrows(), chain_length, strict=True):
        base = {c: row[c] for c in row.index if c not in produced}
        if pd.isna(base.get(CHAIN_LENGTH_COLUMN)):  # runs from before the column
            base[CHAIN_LENGTH_COLUMN] = int(stages)
        # Both paths checked inside the run folder; the model file complete (else named).
        model = _Model(base, run.model_file(row), run.unit_dir(cache, row))
        model.load()  # the cache is keyed by the weights
        models.append(model)
    return models


def evaluate_run(
    output_dir: str | pathlib.Path,
    data,
    config: EvaluationConfig | None = None,
    results_path: str | pathlib.Path | None = None,
    verbose: bool = False,
    log: Callable[[str], None] | None = None,
    replace: bool = False,
) -> pd.DataFrame:
    """Evaluates every model of a training run; resumable, shardable (package docstring).

    Args:
        output_dir: a `keras_takd.main` run (run.json, results.csv, the models).
        data: the run's `keras_takd.core.data.Dataset` (only the test set is used; it must have
            as many test images as the run's).
        config: what to compute (default: `EvaluationConfig()`, the paper's C&W evaluation
            of 1,000 images with the attacks' default options).
        results_path: the CSV to write (default: output_dir/results.csv, or
            output_dir/results_shard<i>of<N>.csv for a shard).
        verbose: show the attacks' progress bars.
        log: called with progress lines: the number of units to compute at the start, then
            for each unit a line when it starts (with its expected time, from the finished
            units of the same kind) and one when it ends (its results and the time left).
            None: quiet.
        replace: if `results_path` holds the evaluation of another configuration, drop its
            evaluation columns (keeping the training columns) instead of refusing. Nothing is
            lost: its units stay cached under eval/<its config>/, and rerunning with its
            settings writes them back without recomputing.

    Returns:
        The results table written to `results_path`.

    Raises:
        FileNotFoundError, ValueError: not a run, or image counts the test set cannot hold.
        ConfigMismatchError: `results_path` holds results of another configuration.
    """
    config = config or EvaluationConfig()
    run = read_run(output_dir)
    log = log or (lambda line: None)
    x, y = _check_data(run, data)
    config.check_test_images(len(x))
    identity = config.identity(run.dataset, len(x))
    cid = config_id(identity)
    default_path = shard_results_path(run.output_dir, config.shard_index, config.num_shards)
    path = pathlib.Path(results_path or default_path)
    if replace:
        _drop_other_evaluation(path, cid, run, config.sharded)
    check_results_file(path, cid, run, config.sharded)
    cache = run.inside(run.output_dir / "eval" / cid)  # a link out of the run is refused
    files.write_json_atomic(cache / "config.json", identity)
    metric_images = identity["metric_images"]
    attacked = list(config.attacks)
    attacked += [MASKED_L2_PREFIX] if config.gradient_masking and "l2" in config.attacks else []
    units = (["metrics"] if config.shard_index == 0 else []) + attacked
    units += [indicator_unit(a) for a in attacked] if config.indicators else []
    models = _models(run, cache)
    done = {id(m): _cached_units(m, config, metric_images, log) for m in models}

    def table():
        rows = [_row(m, done[id(m)], cid, config) for m in models]
        written = write_results(path, rows, cid, config.sharded)
        write_per_image(path, _per_image_rows(models, done))
        return written

    result = table()
    todo = [(m, u) for m in models for u in units if u not in done[id(m)]]
    log(
        f"evaluation {cid}: {len(models)} models x {len(units)} units ({', '.join(units)}), "
        f"{len(todo)} to compute, {len(models) * len(units) - len(todo)} cached in {cache}"
    )
    for k, (model, unit) in enumerate(todo, 1):
        step = f"[{k}/{len(todo)}]"
        log(f"{step} {_start_line(model.row, unit, config, metric_images, models, done)}")
        began = time.perf_counter()
        if unit == "metrics":
            value = _metrics_unit(model, x[:metric_images], y[:metric_images])
            unit_path = model.unit_dir / "metrics.json"
        elif unit.endswith(INDICATOR_SUFFIX):
            attack = unit[: -len(INDICATOR_SUFFIX)]
            start, stop = config.block(attack)
            value = _indicator_unit(attack, model, x[start:stop], y[start:stop], done[id(model)])
            value["images"] = [start, stop]
            unit_path = model.unit_dir / config.shard_dir / f"{unit}.json"
        else:
            start, stop = config.block(unit)
            value = _attack_unit(unit, model, x[start:stop], y[start:stop], config, verbose)
            value["images"] = [start, stop]
            unit_path = model.unit_dir / config.shard_dir / f"{unit}.json"
        value |= {
            "schema": UNIT_SCHEMA,
            "weights_sha256": model.sha,
            "seconds": time.perf_counter() - began,
        }
        value["checksum"] = unit_checksum(value)
        files.write_json_atomic(unit_path, value)
        done[id(model)][unit] = value
        result = table()
        left = _time_left([u for _, u in todo[k:]], models, done)
        log(f"{step} {_unit_line(model.row, unit, value)}{left}")
        for line in _indicator_warnings(model.row, unit, value):
            log(line)
    return result


INDICATOR_SUFFIX = "_indicators"
# The settings of the indicator units; recorded in each, which is recomputed if they change.
INDICATOR_SETTINGS = {
    "loss": "margin",
    "threshold": 1e-10,
    "unconstrained": "the attack's own failures (a minimal-norm attack's budget is unbounded)",
}
# APGD's: the attack itself, with its own loss, at an eps covering the whole box.
APGD_INDICATOR_SETTINGS = INDICATOR_SETTINGS | {
    "unconstrained": "APGD with its own loss at eps = the box width, from the clean image",
    "unconstrained_steps": 100,
}


def indicator_settings(attack: str) -> dict:
    """The settings of `attack`'s indicator unit (recorded in it; a change recomputes it)."""
    return APGD_INDICATOR_SETTINGS if attack in APGD_ATTACKS else INDICATOR_SETTINGS


def indicator_unit(attack: str) -> str:
    """The name of the unit that checks `attack`'s images for the indicators of failure."""
    return attack + INDICATOR_SUFFIX


def _same_indicators(cached: Mapping, done: Mapping, attack: str) -> bool:
    """An indicator unit counts only beside the attack unit it was computed from."""
    return attack in done and done[attack].get("checksum") == cached.get("attack_checksum")


def _indicator_unit(attack: str, model: _Model, x, y, done: Mapping) -> dict:
    """The indicators of attack failure (`schema.INDICATORS`) on the images `attack` attacked.

    Silent success comes from the attack unit's record of what its search found (None for
    units written before it was recorded), incomplete optimisation from its record of the last
    solve. The gradient check uses the attack's target (softmax(logits / T) for the
    gradient-masking one). Unconstrained failure (Pintor et al.: the attack itself, with an
    unbounded budget, fails) is the attack's own failures for the minimal-norm attacks (C&W,
    FMN), whose budget is unbounded already; for the fixed-budget APGD it is the same APGD (its
    own loss, CE or DLR) at eps = the box width, started at the clean image. (A cross-entropy
    PGD stand-in would test PGD's cross-entropy, which saturates on the logits of a model
    trained at high T, not the attack: it flagged APGD-DLR on images APGD-DLR had fooled.)
    """
    from keras_takd import attacks  # TensorFlow: only when computing
    from keras_takd.attacks import indicators

    attack_unit = done[attack]
    per = attack_unit["per_image"] or {}
    index = np.asarray(per.get("index", []), np.int64)
    flags: dict[str, list | None] = dict.fromkeys(INDICATORS)
    if index.size:
        target = _target(attack, model)
        if per.get("found") is not None:
            flags["silent_success"] = (
                np.asarray(per["found"], bool) & ~np.asarray(per["success"], bool)
            ).tolist()
        if per.get("incomplete") is not None:
            flags["incomplete_optimization"] = list(per["incomplete"])
        flags["vanishing_gradients"] = indicators.vanishing_gradients(
            target,
            x[index],
            y[index],
            loss=INDICATOR_SETTINGS["loss"],
            threshold=INDICATOR_SETTINGS["threshold"],
        ).tolist()
        if attack in APGD_ATTACKS:
            unbounded = attacks.apgd(
                target,
                x[index],
                y[index],
                eps=1.0,  # the [0, 1] box's width: every image in the box is allowed
                loss=FIXED_ARGUMENTS[attack]["loss"],
                steps=APGD_INDICATOR_SETTINGS["unconstrained_steps"],
                random_start=False,
            )
            flags["unconstrained_failure"] = (~unbounded.success).tolist()
        else:
            flags["unconstrained_failure"] = (~np.asarray(per["success"], bool)).tolist()
    return {
        "index": index.tolist(),
        "flags": flags,
        "settings": indicator_settings(attack),
        "attack_checksum": attack_unit["checksum"],
    }


def _target(attack: str, model: _Model):
    """What `attack` attacks: the model's logits, or softmax(logits / T) for the masked L2."""
    keras_model = model.load()
    if attack != MASKED_L2_PREFIX:
        return keras_model
    from keras_takd.core.models import with_temperature

    return with_temperature(keras_model, float(model.row["temperature"]))


def indicator_counts(attack: str, flags: Mapping[str, list | None]) -> dict[str, float]:
    """`<attack>_<indicator>` columns: how many images tripped each (NaN if not checked)."""
    return {
        f"{attack}_{name}": math.nan if flags.get(name) is None else int(sum(flags[name]))
        for name in INDICATORS
    }


def _indicator_warnings(row: Mapping, unit: str, value: Mapping) -> list[str]:
    """One warning line per indicator that tripped on a just-computed indicator unit."""
    if not unit.endswith(INDICATOR_SUFFIX):
        return []
    attack = unit[: -len(INDICATOR_SUFFIX)]
    where = f"{row['dataset']} T={float(row['temperature']):g} stage {int(row['stage'])}"
    lines = []
    counts = indicator_counts(attack, value["flags"]).values()
    for name, count in zip(INDICATORS, counts, strict=True):
        if not pd.isna(count) and count > 0:
            lines.append(
                f"warning: {where} {attack}: indicator of attack failure '{name}' tripped on "
                f"{count} of {len(value['index'])} attacked images ({INDICATORS[name]}); "
                "its robustness numbers may overstate the model"
            )
    return lines


def _drop_other_evaluation(path: pathlib.Path, config: str, run: Run, sharded: bool) -> None:
    """Rewrites `path` with only its training columns if it holds another configuration."""
    try:
        check_results_file(path, config, run, sharded)
    except ConfigMismatchError:
        table = read_csv(path)
        kept = [c for c in table.columns if c in CHAIN_COLUMNS or c in SHARD_COLUMNS]
        files.write_csv_atomic(path, table[kept])


def _check_data(run: Run, data) -> tuple[np.ndarray, np.ndarray]:
    if data.name != run.dataset or len(data.x_test) != run.test_images:
        raise ValueError(
            f"{run.output_dir} was trained on {run.test_images} {run.dataset} test images, the "
            f"data given has {len(data.x_test)} {data.name} test images: load the run's data"
        )
    return np.asarray(data.x_test, np.float32), np.asarray(data.y_test)


def _cached_units(model: _Model, config: EvaluationConfig, metric_images: int, note) -> dict:
    done = {}
    path = model.unit_dir / "metrics.json"
    cached = _load_unit(path, model.sha, [0, metric_images], "metrics", note)
    if cached is not None:
        done["metrics"] = cached
    for attack in ATTACK_PREFIXES:
        for unit in (attack, indicator_unit(attack)):
            path = model.unit_dir / config.shard_dir / f"{unit}.json"
            cached = _load_unit(path, model.sha, config.block(attack), unit, note)
            if cached is not None and (unit == attack or _same_indicators(cached, done, attack)):
                done[unit] = cached
    return done


def _metrics_unit(model: _Model, x, y) -> dict:
    values = metrics.model_metrics(model.load(), x, y)
    return {"metrics": {"metric_images": len(x), **values}, "images": [0, len(x)]}


def _attack_unit(unit, model: _Model, x, y, config: EvaluationConfig, verbose) -> dict:
    keras_model = model.load()
    correct = metrics.correctly_classified(keras_model, x, y)
    temperature = float(model.row["temperature"])
    stats, per_image = _run_attack(unit, keras_model, x, y, correct, temperature, config, verbose)
    return {"statistics": stats, "per_image": per_image}


def _row(model: _Model, done: Mapping, cid: str, config: EvaluationConfig) -> dict:
    row = dict(model.row)
    if config.sharded:
        row |= {"shard_index": config.shard_index, "num_shards": config.num_shards}
    if "metrics" in done and config.shard_index == 0:
        start, stop = done["metrics"]["images"]
        row |= {"metric_images": stop - start, **done["metrics"]["metrics"]}
    for unit in ATTACK_PREFIXES:
        if unit in done:
            stats = done[unit]["statistics"]
            row |= shard_columns(unit, stats) if config.sharded else final_columns(unit, stats)
        if indicator_unit(unit) in done:
            row |= indicator_counts(unit, done[indicator_unit(unit)]["flags"])
    row[CONFIG_COLUMN] = cid
    return row


def _per_image_rows(models: list[_Model], done: Mapping) -> list[dict]:
    rows = []
    for model in models:
        for unit in ATTACK_PREFIXES:
            if unit in done[id(model)]:
                flags = done[id(model)].get(indicator_unit(unit))
                rows += unit_rows(model.row, unit, done[id(model)][unit], flags)
    return rows


def _seconds_by_unit(models: list[_Model], done: Mapping) -> dict[str, list[float]]:
    """The measured seconds of every finished unit (cached or just computed), by kind."""
    seconds = {}
    for model in models:
        for unit, value in done[id(model)].items():
            if isinstance(value.get("seconds"), (int, float)):
                seconds.setdefault(unit, []).append(float(value["seconds"]))
    return seconds


def _duration(seconds: float) -> str:
    if seconds < 0.5:
        return "under 1 s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _start_line(row, unit, config: EvaluationConfig, metric_images, models, done) -> str:
    where = f"{row['dataset']} T={float(row['temperature']):g} stage {int(row['stage'])}"
    start, stop = (0, metric_images) if unit == "metrics" else config.block(unit)
    measured = _seconds_by_unit(models, done).get(unit, [])
    expected = (
        f"about {_duration(float(np.mean(measured)))} (mean of {len(measured)} finished)"
        if measured
        else "first of its kind, no estimate yet"
    )
    return f"{where} {unit} on test images {start}-{stop}: started, {expected}"


def _time_left(remaining: list[str], models, done) -> str:
    """ "; about 12 min left" from the mean time of each kind, or why there is no estimate."""
    if not remaining:
        return "; evaluation complete"
    measured = _seconds_by_unit(models, done)
    unknown = sorted({u for u in remaining if u not in measured})
    left = sum(float(np.mean(measured[u])) for u in remaining if u in measured)
    units = f"{len(remaining)} unit{'s' if len(remaining) > 1 else ''}"
    text = f"; {units} left, about {_duration(left)}"
    return text + (f" plus the {', '.join(unknown)} units" if unknown else "")


def _unit_line(row: Mapping, unit: str, value: Mapping) -> str:
    where = f"{row['dataset']} T={float(row['temperature']):g} stage {int(row['stage'])}"
    if unit == "metrics":
        m = value["metrics"]
        what = f"accuracy {100 * m['test_accuracy']:.2f}%, confidence {m['confidence']:.3f}"
    elif unit.endswith(INDICATOR_SUFFIX):
        counts = indicator_counts(unit[: -len(INDICATOR_SUFFIX)], value["flags"])
        what = ", ".join(
            f"{name} {'-' if pd.isna(n) else int(n)}"
            for name, n in zip(INDICATORS, counts.values(), strict=True)
        )
        what += f" of {len(value['index'])} attacked images"
    elif unit in APGD_ATTACKS:
        s = final_columns(unit, value["statistics"])
        what = (
            f"robust accuracy {s[f'{unit}_robust_accuracy']:.2f} at eps {s[f'{unit}_eps']:g}, "
            f"success {s[f'{unit}_success_rate']:.2f} of {s[f'{unit}_attacked']}"
        )
    else:
        s = final_columns(unit, value["statistics"])
        what = (
            f"success {s[f'{unit}_success_rate']:.2f} of {s[f'{unit}_attacked']}, "
            f"mean {s[f'{unit}_mean']:.4g}, max {s[f'{unit}_max']:.4g}"
        )
    return f"{where} {unit}: {what} ({value['seconds']:.1f} s)"

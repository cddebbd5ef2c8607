"""Per-image fidelity of keras_takd's C&W attacks to Carlini's original code.

Runs Carlini's ORIGINAL `l2_attack.py`, `l0_attack.py` and `li_attack.py` (github.com/carlini/
nn_robust_attacks, fetched outside this repository; pass its folder as `--original_repo`) under
`tensorflow.compat.v1` in graph mode, in a subprocess of its own, side by side with
`keras_takd.attacks.carlini_wagner_l2`, `carlini_wagner_l0` and `carlini_wagner_linf`, on the
same trained MNIST model (the paper's network, `keras_takd.core.models.build_model("mnist")`,
trained 3 epochs at T = 1 with `keras_takd.core.distillation.train_on_labels`, as
`benchmarks/cw_speed_vs_references.py` trains it) and the same first N correctly classified test
images, untargeted, with the originals' defaults (L2: 9 binary steps x `--l2_iterations`; L0 and
L-inf: `--l0_iterations` / `--linf_iterations` per c).

The originals work on the box [-0.5, 0.5] and call `model.predict` on a graph tensor; the
adapter `references.carlini_original.OriginalModel` rebuilds the same Keras weights from plain
TF1 ops (conv, ReLU, max-pool, dense) and adds 0.5, so both sides attack one function. The
original L2 runs with batch_size=1 (its abort rule is whole-batch); keras_takd runs all images
in one batch with its default per-example rule, which equals batch_size=1. The original L2
returns an all-zero image where it failed; that is read as a failure. Success of the original's
images is decided by the adapter's logits (the original's own model), of keras_takd's by the
Keras model. The original's distortions are measured in its own box, against the image it was
given.

Three sides per attack (`--sides`): the original, keras_takd with all images in one batch
("ours", the comparison), and keras_takd one image at a time ("ours_single": the same batch
size as the original, and against "ours" the noise floor of float round-off). Every result is
cached in `--work_dir/cache/<attack>/<side>-<key>/`, per image for the original and for
ours_single, where the key hashes the settings, the model's weights and (for keras_takd) the
attack sources, so an interrupted run resumes where it stopped and never mixes models or code.
The original's printed log is kept with each image. `--original_patches` runs the original
with one numpy function swapped for a diagnosis (its code is not changed): `tf_atanh` uses
TensorFlow's float32 atanh for `np.arctanh`, `stable_argsort` a stable sort for `np.argsort`.

Writes `benchmarks/results/cw_fidelity_to_carlini.csv` (one row per attack and image),
`cw_fidelity_to_carlini.json` (settings, model, timings, agreement) and
`cw_fidelity_to_carlini.md`, from every image whose original and batched results are cached. An
attack with nothing cached keeps its rows and summary from the report already in `--output_dir`.
`--report_only` redraws the .md from the csv and json, computing nothing.

Autograph re-reads the attacks' source files when it traces, so run it from a copy of the tree
that nobody edits meanwhile (`git archive HEAD | tar -x -C DIR`, then `PYTHONPATH=DIR`).

Run (hours on two busy cores; the originals take most of it; see benchmarks/README.md):
    nice -n 19 python benchmarks/cw_fidelity_to_carlini.py --attacks=linf,l0 \\
        --original_repo=/work/ext/nn_robust_attacks --work_dir=/work/tmp/fidelity
    nice -n 19 python benchmarks/cw_fidelity_to_carlini.py --images=3 --l2_iterations=100 \\
        --l2_binary_steps=3 --l0_iterations=100 --linf_iterations=100 --output_dir=/tmp/fid
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pathlib
import subprocess
import sys
import time
from typing import Any

import numpy as np
from absl import flags
from analysis.cw_fidelity import (
    NAME,
    add_pair_columns,
    compare,
    read_report,
    rewrite_markdown,
    summarize,
    write_report,
)
from common import cache, models
from common.environment import (
    REPO,
    RESULTS_DIR,
    carlini_wagner_attack,
    carlini_wagner_module,
    git_commit,
)
from references import carlini_original
from references.carlini_original import ATTACKS, PATCHES

from keras_takd.core import cli, files
from keras_takd.takd.evaluation.units import weights_sha256

SIDES = ("original", "ours", "ours_single")

FLAGS = flags.FLAGS
flags.DEFINE_integer("images", 20, "Correctly classified test images to attack.", lower_bound=1)
flags.DEFINE_integer("l2_iterations", 1000, "C&W L2 iterations per binary step.", lower_bound=1)
flags.DEFINE_integer("l2_binary_steps", 9, "C&W L2 binary-search steps.", lower_bound=1)
flags.DEFINE_integer("l0_iterations", 1000, "C&W L0 iterations per c.", lower_bound=1)
flags.DEFINE_integer("linf_iterations", 1000, "C&W L-inf iterations per c.", lower_bound=1)
flags.DEFINE_list("attacks", list(ATTACKS), "Attacks to run, in this order: l2, l0, linf.")
flags.register_validator(
    "attacks", lambda v: set(v) <= set(ATTACKS), "attacks: any of l2, l0, linf"
)
flags.DEFINE_list(
    "sides",
    list(SIDES),
    "What to compute: original, ours (batched), ours_single. The report "
    "is written from whatever is cached.",
)
flags.register_validator(
    "sides", lambda v: set(v) <= set(SIDES), "sides: any of original, ours, ours_single"
)
flags.DEFINE_list(
    "original_patches",
    [],
    "Diagnosis only: run the original with tf_atanh and/or "
    "stable_argsort (cached apart; the report uses the unpatched original).",
)
flags.register_validator(
    "original_patches", lambda v: set(v) <= set(PATCHES), "any of tf_atanh, stable_argsort"
)
flags.DEFINE_string(
    "original_repo", "/work/ext/nn_robust_attacks", "Checkout of carlini/nn_robust_attacks."
)
flags.DEFINE_string("work_dir", "/work/runs/fidelity", "Model, caches and scratch, outside git.")
flags.DEFINE_string("data_dir", "/work/shared/data", "Folder holding mnist.npz.")
flags.DEFINE_integer("train_epochs", 3, "Epochs of the MNIST model.", lower_bound=1)
flags.DEFINE_string("output_dir", str(RESULTS_DIR), "Where the csv, json and md go.")
flags.DEFINE_float("rtol", 1e-3, "Relative tolerance of an L2 or L-inf distortion match.")
flags.DEFINE_bool(
    "reuse_original",
    True,
    "Reuse the originals' cached per-image results (same settings, model, image and code).",
)
flags.DEFINE_bool(
    "report_only",
    False,
    "Compute nothing: redraw <output_dir>/cw_fidelity_to_carlini.md from its csv and json.",
)
flags.DEFINE_enum(
    "run_original", None, list(ATTACKS), "Internal: run one original in this (sub)process."
)


def settings(attack: str, l2_steps: int, iterations: dict[str, int]) -> dict[str, Any]:
    """The originals' defaults, untargeted, shared by both sides."""
    if attack == "l2":
        return dict(
            confidence=0.0,
            learning_rate=1e-2,
            binary_search_steps=l2_steps,
            max_iterations=iterations["l2"],
            abort_early=True,
            initial_const=1e-3,
        )
    if attack == "l0":
        return dict(
            learning_rate=1e-2,
            max_iterations=iterations["l0"],
            abort_early=True,
            initial_const=1e-3,
            largest_const=2e6,
            const_factor=2.0,
        )
    return dict(
        learning_rate=5e-3,
        max_iterations=iterations["linf"],
        abort_early=True,
        initial_const=1e-5,
        largest_const=20.0,
        const_factor=2.0,
        decrease_factor=0.9,
    )


# --- the model, the images and the caches ---


def prepare(work_dir: pathlib.Path, data_dir: str, epochs: int, n_images: int, seed: int = 0):
    """Loads or trains the benchmark model; saves its weights and the images for the originals.

    The model is `common.models.prepare_model`'s, cached in `work_dir`.

    Returns:
        `(model, x, y, info)`: the Keras model, the first `n_images` correctly classified
        test images in [0, 1] and their labels, and a record of the model (with the sha256 of
        its weights, which every cache key includes).
    """
    model, data, right, info = models.prepare_model(work_dir, data_dir, epochs, seed)
    correct = np.flatnonzero(right)[:n_images]
    x, y = data.x_test[correct].astype(np.float32), data.y_test[correct].astype(np.int64)
    weights = {f"arr_{i}": w for i, w in enumerate(model.get_weights())}
    files.save_npz_atomic(work_dir / "weights.npz", **weights)
    files.save_npz_atomic(work_dir / "images.npz", x=x, y=y, index=correct)
    info |= {"test_indices": correct.tolist(), "weights_sha256": weights_sha256(model)}
    files.write_text_atomic(work_dir / "model.json", json.dumps(info, indent=2) + "\n")
    return model, x, y, info


def load_prepared(work_dir: pathlib.Path):
    """The images and model record that `prepare` saved, without loading the model.

    Returns:
        `(x, y, info)`, or None when `prepare` has not run in `work_dir`.
    """
    if not (work_dir / "model.json").exists():
        return None
    info = json.loads((work_dir / "model.json").read_text())
    if "weights_sha256" not in info:
        return None  # written before the caches were keyed by weights_sha256: prepare again
    data = np.load(work_dir / "images.npz")
    return data["x"], data["y"], info


def _ours_cache(work_dir, attack, side, options, model_sha256):
    return cache.cache_folder(
        work_dir,
        attack,
        side,
        settings=options,
        weights_sha256=model_sha256,
        attacks_sha1=_attacks_digest(),
    )


def _attacks_digest() -> str:
    """SHA-1 of the imported keras_takd.attacks sources: a code change starts a new cache."""
    import keras_takd.attacks

    digest = hashlib.sha1()
    for path in sorted(pathlib.Path(keras_takd.attacks.__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def _start_original(attack, original_repo, work_dir, l2_steps, iterations, patches=()):
    argv = [sys.executable, __file__, f"--run_original={attack}"]
    argv += [f"--original_repo={original_repo}", f"--work_dir={work_dir}"]
    argv += [f"--{k}={v}" for k, v in _iteration_flags(l2_steps, iterations).items()]
    argv += [f"--original_patches={','.join(patches)}"]
    subprocess.run(argv, check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


# --- keras_takd (main process) ---


def run_ours(attack: str, model, x, y, indices, options, folder: pathlib.Path) -> None:
    """keras_takd with every image in one batch; cached as one file for these images."""
    path = folder / f"batch-{_indices_digest(indices)}.npz"
    if path.exists():
        return
    start = time.process_time()
    result = carlini_wagner_attack(attack)(model, x, y, batch_size=len(x), **options)
    seconds = time.process_time() - start
    files.save_npz_atomic(
        path,
        index=np.asarray(indices),
        x_adv=result.x_adv,
        success=result.success,
        const=result.const,
        cpu_seconds=seconds,
    )
    print(f"[{attack} ours] {len(x)} images: {seconds:.0f} CPU s", file=sys.stderr, flush=True)


def run_ours_single(attack: str, model, x, y, indices, options, folder: pathlib.Path) -> None:
    """keras_takd one image at a time, caching each image (and its solves) as it ends."""
    for i, index in enumerate(indices):
        with cache.claim(cache.image_file(folder, index)) as mine:
            if mine:
                _run_ours_image(attack, model, x[i : i + 1], y[i : i + 1], index, options, folder)


def _run_ours_image(attack, model, x, y, index, options, folder) -> None:
    """keras_takd on one image (batch size 1), cached with the trace of its solves."""
    solves: list[dict[str, Any]] = []
    start = time.process_time()
    with _trace_solves(attack, solves):
        result = carlini_wagner_attack(attack)(model, x, y, batch_size=1, **options)
    seconds = time.process_time() - start
    files.save_npz_atomic(
        cache.image_file(folder, index),
        x_adv=result.x_adv[0],
        success=result.success[0],
        const=result.const[0],
        cpu_seconds=seconds,
        solves=json.dumps(solves),
    )
    print(
        f"[{attack} ours_single] test image {index}: {seconds:.0f} CPU s",
        file=sys.stderr,
        flush=True,
    )


@contextlib.contextmanager
def _trace_solves(attack: str, solves: list[dict[str, Any]]):
    """Records every solve's end in keras_takd's L0 / L-inf search, as the original prints it.

    Diagnosis only: wraps the private `advance` of the attack's search class (a snapshot of
    the tree is imported, so it cannot change under the run). L0: c, success, pixels frozen
    before the solve and pixels changed by its image. L-inf: c, success, tau and the
    distortion reached. Nothing is recorded for L2 or when the class is not found.
    """
    search = carlini_wagner_module("search")
    module = carlini_wagner_module(attack)
    cls = getattr(module, {"l0": "_L0Search", "linf": "_LinfSearch"}.get(attack, ""), None)
    if cls is None or not hasattr(cls, "advance"):
        yield
        return
    advance = cls.advance

    def traced(self, state, slot, example):
        solved = int(state["status"][slot]) == search.SOLVED
        entry = {"const": float(state["const"][slot]), "solved": solved}
        delta = np.abs(state["x_sol"][slot] - self.x[example])
        if attack == "l0":
            entry["frozen"] = int(np.sum(state["mask"][slot] == 0))
            entry["changed"] = int(np.sum(np.any(delta >= 1e-4, axis=-1))) if solved else None
        else:
            entry["tau"] = float(state["tau"][slot])
            entry["reached"] = float(np.max(delta)) if solved else None
        solves.append(entry)
        return advance(self, state, slot, example)

    cls.advance = traced
    try:
        yield
    finally:
        cls.advance = advance


def _indices_digest(indices) -> str:
    return hashlib.sha1(json.dumps([int(i) for i in indices]).encode()).hexdigest()[:12]


# --- comparison ---


def load_sides(attack, work_dir, x, indices, options, model_sha256, original_repo):
    """The cached results of every side for the images whose original result is cached.

    Returns:
        `{"done": positions of those images, side: [per-image dict or None, ...]}`; each dict
        holds "x_adv" (in [0, 1]), "success" and, where recorded, "const", "cpu_seconds",
        "log" (original) or "solves" (ours_single).
    """
    folder = carlini_original.original_cache(work_dir, attack, options, model_sha256, original_repo)
    done = [i for i, index in enumerate(indices) if cache.image_file(folder, index).exists()]
    sides: dict[str, Any] = {"done": np.asarray(done, np.int64), "original": []}
    for i in done:
        sides["original"].append(dict(np.load(cache.image_file(folder, indices[i]))))
    batch = _ours_cache(work_dir, attack, "ours", options, model_sha256)
    batch = batch / f"batch-{_indices_digest(indices)}.npz"
    batched = dict(np.load(batch)) if batch.exists() else None
    sides["ours"] = [
        None if batched is None else {key: batched[key][i] for key in ("x_adv", "success", "const")}
        for i in done
    ]
    single = _ours_cache(work_dir, attack, "ours_single", options, model_sha256)
    sides["ours_single"] = [
        dict(np.load(cache.image_file(single, indices[i])))
        if cache.image_file(single, indices[i]).exists()
        else None
        for i in done
    ]
    return sides


# --- the report ---


def run_fidelity(
    *,
    attacks_to_run: list[str],
    sides: list[str],
    original_repo: str,
    work_dir: pathlib.Path,
    data_dir: str,
    train_epochs: int,
    n_images: int,
    l2_steps: int,
    iterations: dict[str, int],
    rtol: float,
    output_dir: pathlib.Path,
    reuse_original: bool = True,
    original_patches: list[str] = (),
):
    """Computes the missing results of the given sides and rewrites the report; returns it.

    Every result is cached in `work_dir` (see the module docstring), so runs of different
    sides or attacks, in turn or side by side, add up to one report.
    """
    carlini_original.require(original_repo)
    prepared = load_prepared(work_dir)
    needs_model = attacks_to_run and {"ours", "ours_single"} & set(sides)
    if prepared is None or len(prepared[0]) != n_images:
        model, x, y, info = prepare(work_dir, data_dir, train_epochs, n_images)
    else:
        (x, y, info), model = prepared, None
        if needs_model:
            import keras

            model = keras.models.load_model(info["cache"])
            if weights_sha256(model) != info["weights_sha256"]:
                raise ValueError(f"{info['cache']} is not the model of {work_dir}/model.json")
    from keras_takd import attacks  # noqa: F401  (loaded now: later edits to the tree can't leak in)

    indices, digest = info["test_indices"], info["weights_sha256"]
    command = " ".join(["python", f"benchmarks/{NAME}.py", *sys.argv[1:]])
    for attack in attacks_to_run:
        options = settings(attack, l2_steps, iterations)
        _record_command(work_dir, attack, command)
        if "original" in sides:
            folder = carlini_original.original_cache(
                work_dir, attack, options, digest, original_repo
            )
            if not reuse_original:
                for path in folder.glob("image*.npz"):
                    path.unlink()
            _start_original(attack, original_repo, work_dir, l2_steps, iterations)
        if original_patches:
            _start_original(attack, original_repo, work_dir, l2_steps, iterations, original_patches)
        if "ours" in sides:
            folder = _ours_cache(work_dir, attack, "ours", options, digest)
            run_ours(attack, model, x, y, indices, options, folder)
        if "ours_single" in sides:
            folder = _ours_cache(work_dir, attack, "ours_single", options, digest)
            run_ours_single(attack, model, x, y, indices, options, folder)
        frame = report(work_dir, output_dir, original_repo, x, y, info, l2_steps, iterations, rtol)
    if not attacks_to_run:
        frame = report(work_dir, output_dir, original_repo, x, y, info, l2_steps, iterations, rtol)
    return frame


def report(work_dir, output_dir, original_repo, x, y, info, l2_steps, iterations, rtol):
    """Writes the report from every attack's cached results in `work_dir`; returns its rows.

    An attack with no cached pair (original and batched keras_takd) keeps its rows, settings
    and timings from the report already in `output_dir`.
    """
    import pandas as pd

    previous_frame, previous = read_report(output_dir)
    frames, runs = [], {}
    for attack in ATTACKS:
        options = settings(attack, l2_steps, iterations)
        sides = load_sides(
            attack,
            work_dir,
            x,
            info["test_indices"],
            options,
            info["weights_sha256"],
            original_repo,
        )
        ours = [r for r in sides["ours"] + sides["ours_single"] if r is not None]
        if len(sides["done"]) and ours:
            frames.append(compare(attack, x, y, sides, rtol))
            batched = next((r for r in sides["ours"] if r is not None), None)
            single = [r for r in sides["ours_single"] if r is not None]
            runs[attack] = {
                "commands": _recorded_commands(work_dir, attack),
                "keras_takd": git_commit(REPO, short=False),
                "model": {key: info[key] for key in ("cache", "weights_sha256")},
                "settings": options,
                "seconds": {
                    "original_cpu_seconds": sum(float(r["cpu_seconds"]) for r in sides["original"]),
                    "ours_cpu_seconds": None
                    if batched is None
                    else _batch_seconds(work_dir, attack, options, info),
                    "ours_single_cpu_seconds": sum(float(r["cpu_seconds"]) for r in single),
                },
            }
        elif attack in previous.get("runs", {}):
            part = previous_frame[previous_frame["attack"] == attack].copy()
            add_pair_columns(part, attack, rtol)
            frames.append(part)
            runs[attack] = previous["runs"][attack]
    if not frames:
        raise ValueError(
            f"nothing to report: no attack has both the original's and our results cached in "
            f"{work_dir}, nor a report in {output_dir}; expected a run with --sides=original too"
        )
    frame = pd.concat(frames, ignore_index=True)
    record = {
        "original": "carlini/nn_robust_attacks " + git_commit(original_repo, short=False),
        "model": info,
        "images": len(info["test_indices"]),
        "rtol": rtol,
        "runs": runs,
        "settings": {attack: run["settings"] for attack, run in runs.items()},
        "summary": summarize(frame, {a: run["seconds"] for a, run in runs.items()}),
    }
    write_report(output_dir, frame, record)
    return frame


def _batch_seconds(work_dir, attack, options, info) -> float:
    folder = _ours_cache(work_dir, attack, "ours", options, info["weights_sha256"])
    saved = np.load(folder / f"batch-{_indices_digest(info['test_indices'])}.npz")
    return float(saved["cpu_seconds"])


def _record_command(work_dir: pathlib.Path, attack: str, command: str) -> None:
    path = work_dir / f"commands_{attack}.json"
    commands = json.loads(path.read_text()) if path.exists() else []
    if command not in commands:
        files.write_text_atomic(path, json.dumps(commands + [command], indent=2))


def _recorded_commands(work_dir: pathlib.Path, attack: str) -> list[str]:
    path = work_dir / f"commands_{attack}.json"
    return json.loads(path.read_text()) if path.exists() else []


def _iteration_flags(l2_steps: int, iterations: dict[str, int]) -> dict[str, int]:
    return {
        "l2_binary_steps": l2_steps,
        "l2_iterations": iterations["l2"],
        "l0_iterations": iterations["l0"],
        "linf_iterations": iterations["linf"],
    }


def main(argv: list[str]) -> None:
    del argv
    iterations = {
        "l2": FLAGS.l2_iterations,
        "l0": FLAGS.l0_iterations,
        "linf": FLAGS.linf_iterations,
    }
    work_dir = pathlib.Path(FLAGS.work_dir)
    if FLAGS.report_only:
        rewrite_markdown(pathlib.Path(FLAGS.output_dir))
        return
    if FLAGS.run_original:
        options = settings(FLAGS.run_original, FLAGS.l2_binary_steps, iterations)
        carlini_original.run_original(
            FLAGS.run_original, FLAGS.original_repo, work_dir, options, FLAGS.original_patches
        )
        return
    run_fidelity(
        attacks_to_run=FLAGS.attacks,
        sides=FLAGS.sides,
        original_repo=FLAGS.original_repo,
        work_dir=work_dir,
        data_dir=FLAGS.data_dir,
        train_epochs=FLAGS.train_epochs,
        n_images=FLAGS.images,
        l2_steps=FLAGS.l2_binary_steps,
        iterations=iterations,
        rtol=FLAGS.rtol,
        output_dir=pathlib.Path(FLAGS.output_dir),
        reuse_original=FLAGS.reuse_original,
        original_patches=FLAGS.original_patches,
    )


if __name__ == "__main__":
    cli.run_main(main, NAME)  # bad input: one line and exit 1, not a traceback

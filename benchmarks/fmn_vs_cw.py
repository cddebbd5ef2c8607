"""Benchmark of FMN against Carlini & Wagner at the paper's settings, and of APGD against PGD.

On the benchmark MNIST model (`common.models.prepare_model`: the paper's network, 3
epochs at T = 1) and on a defensively distilled one (teacher and student at T = 40, 3 epochs
each), on the first N test images that BOTH models classify correctly, per norm (L2, L-inf,
L0) it runs on the same images

* `keras_takd.attacks.fast_minimum_norm` (arXiv:2102.12827) with 1,000 steps and its defaults
  (alpha_0 = 1, or 10 for L-inf, annealed to alpha_0 / 100; gamma_0 = 0.05 to 0.001), and
* the C&W attack of that norm at its paper's settings (the functions' defaults: L2 9 binary
  steps x up to 10,000 iterations; L0 and L-inf up to 1,000 iterations per c),

and reports mean and median distortion over each attack's successes, the per-image ratio
FMN / C&W on the images both fooled (median, 90th percentile), success, wall seconds and the
forward + backward passes counted by `common.counting.CountingModel` (rows = images, padding
included). foolbox 3.3.4's FMN (TF eager through eagerpy, installed outside the package with
`pip install --target`) runs as the peer on the same images and step count where it runs.

It also reports robust accuracy at L-inf eps = 0.3 of PGD-CE (100 steps of 0.01, random
start), APGD-CE and APGD-DLR (100 steps each) on both models: the gradient-masking check.

With --distilled_run the distilled model is instead a well-trained one from a keras_takd.main
run (stage --distilled_stage at --temperature), and --cw_l2_per_image reuses that run's
evaluation of C&W L2 at the paper's settings (its per_image.csv) instead of re-running it.

The floor part measures the per-iteration cost of FMN and APGD against the bare compiled
forward + backward loop through the same pass counter, as benchmarks/cw_speed_vs_references.py
does for C&W.

Everything is cached per chunk of images in --output_dir (outside the repository), in a folder
named by a hash of both models' weights and the chosen images, so a run that is stopped
resumes where it was, a larger --images extends the comparison, and another model never reads
them. The report is rewritten after every chunk. --models computes only the named models,
and --num_shards / --shard_index only every num_shards-th chunk, so that several processes can
share the cores.
A larger --images after reading a verdict is another look at it: --looks widens the intervals
to Pocock's nominal level for that many looks.

Run (two busy cores: at the lowest priority):
    nice -n 19 python benchmarks/fmn_vs_cw.py --images=20
    nice -n 19 python benchmarks/fmn_vs_cw.py --images=100   # extends the same cache
Writes benchmarks/results/fmn_vs_cw.json and fmn_vs_cw.md; `--report_only` redraws the .md
from the .json.
"""

from __future__ import annotations

import functools
import hashlib
import json
import pathlib
import sys
from typing import Any

import numpy as np
from absl import flags, logging
from analysis.fmn_vs_cw import NAME, add_pairs, confidence_level, markdown_report, merge_chunks
from common import cache, environment, reports, robustness
from common.counting import CountingModel, measure_floor
from common.models import load_run_model, prepare_distilled, prepare_model
from common.timing import timed, utc_now
from references import foolbox

from keras_takd.core import cli

FLAGS = flags.FLAGS
flags.DEFINE_integer(
    "images", 20, "Test images correctly classified by both models.", lower_bound=1
)
flags.DEFINE_integer("chunk", 10, "Images per cached chunk (and per attack batch).", lower_bound=1)
flags.DEFINE_integer("fmn_steps", 1000, "FMN steps (the paper's 1,000).", lower_bound=1)
flags.DEFINE_integer("robust_images", 100, "Images of the robust-accuracy check.", lower_bound=1)
flags.DEFINE_float("robust_eps", 0.3, "L-inf eps of the robust-accuracy check.", lower_bound=0)
flags.DEFINE_integer("train_epochs", 3, "Epochs of each model (and of the T = 40 teacher).")
flags.DEFINE_float("temperature", 40.0, "Temperature of the distilled model.", lower_bound=1)
flags.DEFINE_list("norms", ["l2", "linf", "l0"], "Norms to compare, in order.")
flags.DEFINE_list("skip", [], "Parts to skip: any of cw, foolbox, robust, floor.")
flags.DEFINE_list(
    "models",
    [],
    "Compute only these models (names as in the report: T1, T40_distilled, T40_run_stage2); "
    "the others' results are read from the cache. One process per model spreads the run over "
    "cores. Empty: all.",
)
flags.DEFINE_string(
    "distilled_run",
    None,
    "A keras_takd.main run folder (e.g. the decisive run's): attack its model of stage "
    "--distilled_stage at --temperature instead of training the small distilled model.",
)
flags.DEFINE_integer(
    "distilled_stage",
    2,
    "Stage of --distilled_run to attack; 2 is Papernot et al.'s distilled network (a teacher "
    "trained at T, then a student distilled from it at T).",
    lower_bound=1,
)
flags.DEFINE_string(
    "cw_l2_per_image",
    None,
    "per_image.csv of a keras_takd evaluation of --distilled_run with C&W L2 at the paper's "
    "settings (e.g. figures/decisive/per_image.csv): where its rows cover the images, they are "
    "the distilled model's C&W L2 results (not re-run, so not timed or counted here).",
)
flags.DEFINE_integer("floor_iterations", 200, "Iterations per floor round.", lower_bound=1)
flags.DEFINE_integer(
    "looks",
    1,
    "How many times the FMN / C&W verdicts have been read, counting this one (each extension of "
    "--images after reading a verdict adds one). Above 1 the ratio intervals are widened to "
    "Pocock's nominal level for that many looks, so that the chance of a false verdict over all "
    "looks stays 5%.",
    lower_bound=1,
    upper_bound=5,
)
flags.DEFINE_integer(
    "num_shards", 1, "Split the chunks of each comparison over this many processes.", lower_bound=1
)
flags.DEFINE_integer(
    "shard_index",
    0,
    "The chunks this process computes: those whose index modulo --num_shards is this one "
    "(the others are read from the cache when another process has written them).",
    lower_bound=0,
)
flags.DEFINE_integer("floor_rounds", 3, "Interleaved floor / attack rounds.", lower_bound=1)
flags.DEFINE_integer("floor_batch", 100, "Batch size of the floor comparison.", lower_bound=1)
flags.DEFINE_float(
    "floor_apgd_eps", 0.01, "APGD's eps in the floor comparison: small, so no row is fooled."
)
flags.DEFINE_string("cache_dir", "/tmp/keras_takd_benchmarks", "Trained-model cache.")
flags.DEFINE_string("data_dir", "/work/shared/data", "Folder holding mnist.npz.")
flags.DEFINE_string("output_dir", "/work/tmp/minimal_norm", "Per-chunk cache, outside git.")
flags.DEFINE_string("results_dir", str(environment.RESULTS_DIR), "Report folder.")
flags.DEFINE_string("results_name", NAME, "Report files: <results_dir>/<results_name>.{json,md}.")
flags.DEFINE_integer(
    "foolbox_images", 10, "Images foolbox's FMN attacks (the first ones).", lower_bound=1
)
flags.DEFINE_string("foolbox_path", "/work/tmp/foolbox_env", "pip --target folder of foolbox.")
flags.DEFINE_bool(
    "cached_only",
    False,
    "Compute nothing: rewrite the report from the cached chunks (e.g. while "
    "another process is still filling the cache).",
)
flags.DEFINE_bool(
    "report_only",
    False,
    "Compute nothing, read no cache: redraw <results_dir>/<results_name>.md from its json.",
)
flags.register_validator(
    "norms", lambda v: set(v) <= {"l2", "linf", "l0"}, "norms: any of l2, linf, l0"
)
flags.register_validator(
    "skip",
    lambda v: set(v) <= {"cw", "foolbox", "robust", "floor"},
    "skip: any of cw, foolbox, robust, floor",
)
flags.register_multi_flags_validator(
    ["num_shards", "shard_index"],
    lambda v: v["shard_index"] < v["num_shards"],
    "--shard_index must be below --num_shards",
)

CW_FUNCTIONS = {"l2": "carlini_wagner_l2", "linf": "carlini_wagner_linf", "l0": "carlini_wagner_l0"}


@functools.cache
def _read_per_image(path: str):
    """The per-image table at `path`, read once for all the chunks that reuse it."""
    from keras_takd.takd.analysis.tables import read_per_image

    return read_per_image(path)


def cw_from_per_image(path: str, temperature: float, stage: int, images: np.ndarray):
    """C&W L2 results of `images` from a keras_takd per_image.csv, or None if it lacks one.

    Raises:
        ValueError: the table says the model misclassifies one of the images (another model
            or another run than the one attacked here).
    """
    table = _read_per_image(path)
    rows = table[
        (table["attack"] == "l2")
        & np.isclose(table["temperature"].astype(float), temperature)
        & (table["stage"].astype(int) == stage)
    ].set_index("image")
    if not set(images.tolist()) <= set(rows.index):
        return None
    rows = rows.loc[images]
    if not rows["correct"].astype(bool).all():
        raise ValueError(
            f"--cw_l2_per_image: {path} has images the T = {temperature:g} stage {stage} model "
            "misclassifies but the attacked model classifies correctly: another model's table"
        )
    return {
        "success": rows["success"].astype(bool).tolist(),
        "distance": rows["distance"].astype(float).tolist(),
        "timing": None,
        "passes": None,
        "source": str(path),
    }


def measure_attack_floor(model, x, y, iterations: int, rounds: int, apgd_eps: float):
    """Per-iteration cost of FMN (each norm) and APGD (CE, DLR) against the bare floor.

    As `benchmarks/cw_speed_vs_references.py` does for C&W: each round runs the compiled forward
    + backward floor (`common.counting.measure_floor`) and the attack (in alternating order),
    both through the same pass counter, on the same batch; the ratio of the attack's backward
    rows per second to the floor's is the share of the floor's speed left after the attack's own
    work. FMN always runs all its steps on every row; APGD runs at an eps small enough that no
    row is fooled.
    """
    from keras_takd import attacks

    counting = CountingModel(model, count_eager=False)
    n = len(x)
    runs = {
        f"fmn_{norm}": lambda norm=norm: attacks.fast_minimum_norm(
            counting, x, y, norm=norm, steps=iterations, batch_size=n
        )
        for norm in ("l2", "linf", "l0")
    } | {
        f"apgd_{loss}": lambda loss=loss: attacks.apgd(
            counting, x, y, apgd_eps, loss=loss, steps=iterations, batch_size=n
        )
        for loss in ("ce", "dlr")
    }
    out = {}
    for name, run in runs.items():
        run()  # trace with the same settings
        ratios = []
        for round_index in range(rounds):
            if round_index % 2:  # alternate the order, so that neither always runs first
                rate = _attack_rate(counting, run)
                floor = measure_floor(counting, x, n, iterations, 1)
            else:
                floor = measure_floor(counting, x, n, iterations, 1)
                rate = _attack_rate(counting, run)
            ratios.append(rate / floor["image_iterations_per_s_median"])
        out[name] = {
            "ratio_to_floor_median": float(np.median(ratios)),
            "ratios": ratios,
            "iterations": iterations,
            "batch_size": n,
        }
        print(f"floor: {name} {np.median(ratios):.2f}x ({', '.join(f'{r:.2f}' for r in ratios)})")
    return out


def _attack_rate(counting, run) -> float:
    """Backward rows per second of one `run()`, through the pass counter."""
    counting.reset()
    with timed() as timing:
        run()
    return counting.snapshot()["backward_rows"] / timing.wall_s


def distortion(result, norm: str) -> np.ndarray:
    return {"l2": result.l2, "linf": result.linf, "l0": result.l0}[norm].astype(np.float64)


def run_chunk(kind: str, norm: str, counting, x, y, fmn_steps: int) -> dict[str, Any]:
    """One attack on one chunk: per-image success and distortion, seconds and passes."""
    from keras_takd import attacks

    counting.reset()
    with timed() as timing:
        if kind == "fmn":
            result = attacks.fast_minimum_norm(counting, x, y, norm=norm, steps=fmn_steps)
        else:
            result = getattr(attacks, CW_FUNCTIONS[norm])(counting, x, y, batch_size=len(x))
    return {
        "success": result.success.tolist(),
        "distance": distortion(result, norm).tolist(),
        "timing": timing.as_dict(),
        "passes": counting.snapshot(),
    }


def run_robust(model, x, y, eps: float) -> dict[str, Any]:
    """Robust accuracy at L-inf eps of PGD-CE, APGD-CE and APGD-DLR (same images, 100 steps)."""
    fooled, seconds = robustness.attack_all(model, x, y, eps, steps=100)
    return {
        name: {"robust_accuracy": float(1 - hit.mean()), "images": len(x), "timing": seconds[name]}
        for name, hit in fooled.items()
    }


def chunk_folder(
    output_dir: pathlib.Path, models: dict, chosen: np.ndarray, create: bool = True
) -> pathlib.Path:
    """The folder of this comparison's cached chunks, named by its models and its images.

    Its name is a hash of every model's weights (`weights_sha256`, as the evaluation's units
    are keyed) and of the chosen test images, which `key.json` in it spells out. A chunk is
    therefore read only for the models and images it was computed on, and another model's
    chunks are neither read nor overwritten: they stay in their own folder.
    """
    from keras_takd.takd.evaluation.units import weights_sha256

    key = {
        "weights_sha256": {name: weights_sha256(model) for name, model in models.items()},
        "image_indices": chosen.tolist(),
    }
    text = json.dumps(key, sort_keys=True)
    folder = output_dir / hashlib.sha256(text.encode()).hexdigest()[:12]
    if not folder.exists():
        others = len(list(output_dir.glob("*/key.json")))
        logging.info(
            "No cached chunks of these models and images in %s (%d other comparisons there); "
            "new folder %s",
            output_dir,
            others,
            folder.name,
        )
        if create:
            folder.mkdir(parents=True, exist_ok=True)  # another shard may have made it
            (folder / "key.json").write_text(text + "\n")
    return folder


def run_benchmark(flag_values) -> dict[str, Any]:
    import keras

    from keras_takd.core.data import load_dataset

    out = pathlib.Path(flag_values.output_dir)
    cache_dir = pathlib.Path(flag_values.cache_dir)
    data = load_dataset("mnist", flag_values.data_dir, validation_size=0)
    t1, _, _, t1_info = prepare_model(cache_dir, flag_values.data_dir, flag_values.train_epochs)
    temperature = flag_values.temperature
    if flag_values.distilled_run:
        t40, t40_info = load_run_model(
            flag_values.distilled_run, temperature, flag_values.distilled_stage
        )
        distilled = f"T{temperature:g}_run_stage{flag_values.distilled_stage}"
    else:
        t40, t40_info = prepare_distilled(cache_dir, data, flag_values.train_epochs, temperature)
        distilled = f"T{temperature:g}_distilled"
    models = {"T1": t1, distilled: t40}
    unknown = set(flag_values.models) - set(models)
    if unknown:
        raise ValueError(f"--models: unknown {sorted(unknown)}; expected some of {list(models)}")

    def computes(name: str) -> bool:
        return not flag_values.cached_only and (
            not flag_values.models or name in flag_values.models
        )

    correct = np.ones(len(data.y_test), bool)
    accuracy = {}
    for name, model in models.items():
        right = model.predict(data.x_test, batch_size=500, verbose=0).argmax(1) == data.y_test
        accuracy[name] = float(right.mean())
        correct &= right
    chosen = np.flatnonzero(correct)
    out = chunk_folder(out, models, chosen, create=not flag_values.cached_only)
    results: dict[str, Any] = {
        "command": " ".join(["python", *sys.argv]),
        "started_utc": utc_now(),
        "machine": environment.machine_info(),
        "versions": environment.versions(["tensorflow", "keras", "numpy"]),
        "keras_takd_commit": environment.git_commit(environment.REPO),
        "models": {"T1": t1_info, distilled: t40_info},
        "test_accuracy": accuracy,
        "images_requested": flag_values.images,
        "image_indices": chosen[: flag_values.images].tolist(),
        "chunk_cache": str(out),
        "fmn_steps": flag_values.fmn_steps,
        "looks": flag_values.looks,
        "confidence_level": confidence_level(flag_values.looks),
        "robust": {},
        "comparisons": {},
    }
    save = lambda: _write(  # noqa: E731
        results, pathlib.Path(flag_values.results_dir), flag_values.results_name
    )
    if "robust" not in flag_values.skip:
        x_r, y_r = (
            data.x_test[chosen[: flag_values.robust_images]],
            data.y_test[chosen[: flag_values.robust_images]],
        )
        for name, model in models.items():
            path = out / name / f"robust_eps{flag_values.robust_eps:g}_n{len(x_r)}.json"
            robust = cache.cached(
                path, run_robust, model, x_r, y_r, flag_values.robust_eps, compute=computes(name)
            )
            if robust is not None:
                results["robust"][name] = robust
        save()
    if "floor" not in flag_values.skip:
        n = flag_values.floor_batch
        iterations, rounds = flag_values.floor_iterations, flag_values.floor_rounds
        path = out / "T1" / f"floor_it{iterations}_batch{n}_rounds{rounds}.json"
        floor = cache.cached(
            path,
            measure_attack_floor,
            t1,
            data.x_test[chosen[:n]],
            data.y_test[chosen[:n]],
            flag_values.floor_iterations,
            flag_values.floor_rounds,
            flag_values.floor_apgd_eps,
            compute=computes("T1"),
        )
        if floor is not None:
            results["floor"] = floor
        save()

    def reused_cw(rows: np.ndarray) -> dict[str, Any] | None:
        if not (flag_values.cw_l2_per_image and flag_values.distilled_run):
            return None
        return cw_from_per_image(
            flag_values.cw_l2_per_image, temperature, flag_values.distilled_stage, rows
        )

    def compare(kind: str, images: int) -> None:
        for name, model in models.items():
            counting = CountingModel(model, count_eager=False)
            for norm in flag_values.norms:
                chunks = []
                for start in range(0, images, flag_values.chunk):
                    rows = chosen[start : min(start + flag_values.chunk, images)]
                    tag = kind if kind == "cw" else f"{kind}_steps{flag_values.fmn_steps}"
                    path = out / name / norm / f"{tag}_{start}_{start + len(rows)}.json"
                    chunk = None
                    entry = results["comparisons"].setdefault(name, {}).setdefault(norm, {})
                    if kind == "cw" and norm == "l2" and name == distilled:
                        if start >= entry.get("fmn", {}).get("images", 0):
                            break  # reused rows go only as far as FMN's, which they pair with
                        chunk = reused_cw(rows)
                    if chunk is None:
                        shard = start // flag_values.chunk % flag_values.num_shards
                        x, y, steps = data.x_test[rows], data.y_test[rows], flag_values.fmn_steps
                        function, *args = (
                            (
                                foolbox.run_foolbox,
                                norm,
                                model,
                                x,
                                y,
                                steps,
                                flag_values.foolbox_path,
                            )
                            if kind == "foolbox"
                            else (run_chunk, kind, norm, counting, x, y, steps)
                        )
                        compute = computes(name) and shard == flag_values.shard_index
                        chunk = cache.cached(path, function, *args, compute=compute)
                    chunks.append(chunk)
                    entry[kind] = merge_chunks(chunks)
                    save()

    compare("fmn", flag_values.images)
    if "foolbox" not in flag_values.skip:
        compare("foolbox", min(flag_values.foolbox_images, flag_values.images))
    if "cw" not in flag_values.skip:
        compare("cw", flag_values.images)  # the long part, last
    keras.backend.clear_session()
    results["finished_utc"] = utc_now()
    save()
    return results


def _write(results: dict[str, Any], results_dir: pathlib.Path, name: str) -> None:
    add_pairs(results)
    reports.write_results(results_dir, name, results, markdown_report)


def main(argv: list[str]) -> None:
    del argv
    if FLAGS.report_only:
        reports.rewrite_report(FLAGS.results_dir, FLAGS.results_name, markdown_report)
        return
    if "foolbox" not in FLAGS.skip and not FLAGS.cached_only:
        foolbox.require(FLAGS.foolbox_path)
    run_benchmark(FLAGS)


if __name__ == "__main__":
    cli.run_main(main, NAME)  # bad input: one line and exit 1, not a traceback

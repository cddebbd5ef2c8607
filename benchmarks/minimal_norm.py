"""Benchmark of FMN against Carlini & Wagner at the paper's settings, and of APGD against PGD.

Issue 12: on the benchmark MNIST model (`_bench_util.prepare_model`: the paper's network, 3
epochs at T = 1) and on a defensively distilled one (teacher and student at T = 40, 3 epochs
each), on the first N test images that BOTH models classify correctly, per norm (L2, L-inf,
L0) it runs on the same images

* `keras_takd.attacks.fast_minimum_norm` (arXiv:2102.12827) with 1,000 steps and its defaults
  (alpha_0 = 1, or 10 for L-inf, annealed to alpha_0 / 100; gamma_0 = 0.05 to 0.001), and
* the C&W attack of that norm at its paper's settings (the functions' defaults: L2 9 binary
  steps x up to 10,000 iterations; L0 and L-inf up to 1,000 iterations per c),

and reports mean and median distortion over each attack's successes, the per-image ratio
FMN / C&W on the images both fooled (median, 90th percentile), success, wall seconds and the
forward + backward passes counted by `_bench_util.CountingModel` (rows = images, padding
included). foolbox 3.3.4's FMN (TF eager through eagerpy, installed outside the package with
`pip install --target`) runs as the peer on the same images and step count where it runs.

It also reports robust accuracy at L-inf eps = 0.3 of PGD-CE (100 steps of 0.01, random
start), APGD-CE and APGD-DLR (100 steps each) on both models: the gradient-masking check.

Everything is cached per chunk of images in --output_dir (outside the repository), so a run
that is stopped resumes where it was, and a larger --images extends the comparison. The report
is rewritten after every chunk.

Run (two busy cores: at the lowest priority):
    nice -n 19 python benchmarks/minimal_norm.py --images=20
    nice -n 19 python benchmarks/minimal_norm.py --images=100   # extends the same cache
Writes benchmarks/results/minimal_norm.json and minimal_norm.md.
"""

from __future__ import annotations

import json
import pathlib
import sys
import time
import traceback
from typing import Any

import numpy as np
from absl import app, flags

_REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(_REPO / "benchmarks"))
import _bench_util as util  # noqa: E402

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
flags.DEFINE_list("skip", [], "Parts to skip: any of cw, foolbox, robust.")
flags.DEFINE_string("cache_dir", "/tmp/keras_takd_benchmarks", "Trained-model cache.")
flags.DEFINE_string("data_dir", "/work/shared/data", "Folder holding mnist.npz.")
flags.DEFINE_string("output_dir", "/work/tmp/minimal_norm", "Per-chunk cache, outside git.")
flags.DEFINE_string("results_dir", str(_REPO / "benchmarks" / "results"), "Report folder.")
flags.DEFINE_string("foolbox_path", "/work/tmp/foolbox_env", "pip --target folder of foolbox.")
flags.DEFINE_bool(
    "cached_only",
    False,
    "Compute nothing: rewrite the report from the cached chunks (e.g. while "
    "another process is still filling the cache).",
)
flags.register_validator(
    "norms", lambda v: set(v) <= {"l2", "linf", "l0"}, "norms: any of l2, linf, l0"
)
flags.register_validator(
    "skip", lambda v: set(v) <= {"cw", "foolbox", "robust"}, "skip: any of cw, foolbox, robust"
)

CW_FUNCTIONS = {"l2": "carlini_wagner_l2", "linf": "carlini_wagner_linf", "l0": "carlini_wagner_l0"}
FOOLBOX_CLASSES = {"l2": "L2FMNAttack", "linf": "LInfFMNAttack", "l0": "L0FMNAttack"}


def prepare_distilled(cache_dir: pathlib.Path, data, epochs: int, temperature: float, seed=0):
    """Papernot et al.'s defensive distillation: a teacher and a student both at T."""
    import keras

    from keras_takd.core.distillation import TrainConfig, distil, train_on_labels
    from keras_takd.core.models import build_model

    path = cache_dir / f"mnist_cnn_T{temperature:g}_distilled_epochs{epochs}_seed{seed}.keras"
    if path.exists():
        return keras.models.load_model(path), {"cache": str(path), "train_seconds": None}
    config = TrainConfig(epochs=epochs, seed=seed)
    start = time.perf_counter()
    keras.utils.set_random_seed(seed)
    teacher = build_model("mnist")
    train_on_labels(teacher, data.x_train, data.y_train, temperature, config, verbose=2)
    student = build_model("mnist")
    distil(student, teacher, data.x_train, data.y_train, temperature, config, verbose=2)
    cache_dir.mkdir(parents=True, exist_ok=True)
    student.save(path)
    return student, {"cache": str(path), "train_seconds": time.perf_counter() - start}


def distortion(result, norm: str) -> np.ndarray:
    return {"l2": result.l2, "linf": result.linf, "l0": result.l0}[norm].astype(np.float64)


def run_chunk(kind: str, norm: str, counting, x, y, fmn_steps: int) -> dict[str, Any]:
    """One attack on one chunk: per-image success and distortion, seconds and passes."""
    from keras_takd import attacks

    counting.reset()
    with util.timed() as timing:
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


def run_foolbox(norm: str, model, x, y, steps: int, foolbox_path: str) -> dict[str, Any]:
    """foolbox's FMN on a Keras 3 model through its TensorFlowModel (eager)."""
    sys.path.insert(0, foolbox_path)
    import foolbox
    import tensorflow as tf

    counting = util.CountingModel(model)
    fmodel = foolbox.TensorFlowModel(counting, bounds=(0.0, 1.0))
    attack = getattr(foolbox.attacks, FOOLBOX_CLASSES[norm])(steps=steps)
    with util.timed() as timing:
        _, advs, _ = attack(fmodel, tf.constant(x), tf.constant(y), epsilons=None)
    x_adv = np.asarray(advs.numpy() if hasattr(advs, "numpy") else advs, np.float32)
    from keras_takd.attacks import common

    # Verified like ours: classified by the model, distances of the returned images.
    result = common.finalize_result(model, x, x_adv, y, targeted=False, target=None, const=np.nan)
    return {
        "success": result.success.tolist(),
        "distance": distortion(result, norm).tolist(),
        "timing": timing.as_dict(),
        "passes": counting.snapshot(),
        "version": foolbox.__version__,
    }


def run_robust(model, x, y, eps: float) -> dict[str, Any]:
    """Robust accuracy at L-inf eps of PGD-CE, APGD-CE and APGD-DLR (same images)."""
    from keras_takd import attacks

    runs = {
        "pgd_ce": lambda: attacks.projected_gradient_descent(model, x, y, eps, 0.01, 100),
        "apgd_ce": lambda: attacks.apgd(model, x, y, eps, loss="ce", steps=100),
        "apgd_dlr": lambda: attacks.apgd(model, x, y, eps, loss="dlr", steps=100),
    }
    out = {}
    for name, run in runs.items():
        with util.timed() as timing:
            result = run()
        out[name] = {
            "robust_accuracy": float(1 - result.success.mean()),
            "images": len(x),
            "timing": timing.as_dict(),
        }
    return out


_CACHED_ONLY = [False]


def _cached(path: pathlib.Path, function, *args) -> dict[str, Any] | None:
    """`function(*args)`, or its result cached at `path` by an earlier run (errors too).

    None when it is not cached and the run computes nothing (--cached_only).
    """
    if path.exists():
        return json.loads(path.read_text())
    if _CACHED_ONLY[0]:
        return None
    try:
        value = function(*args)
    except Exception as error:  # noqa: BLE001  (a peer's failure is a result, not a crash)
        value = {"error": f"{type(error).__name__}: {error}", "trace": traceback.format_exc()}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value))
    return value


def _ratio_stats(fmn: dict, cw: dict) -> dict[str, Any]:
    both = np.array(fmn["success"]) & np.array(cw["success"])
    ratio = np.array(fmn["distance"])[both] / np.maximum(np.array(cw["distance"])[both], 1e-12)
    if ratio.size == 0:
        return {"images_both": 0}
    return {
        "images_both": int(both.sum()),
        "ratio_median": float(np.median(ratio)),
        "ratio_p90": float(np.percentile(ratio, 90)),
        "fmn_below_or_equal": int(np.sum(ratio <= 1.0)),
    }


def _merge(chunks: list[dict]) -> dict[str, Any]:
    """Concatenates the per-image lists of chunks and sums their seconds and passes."""
    chunks = [c for c in chunks if c is not None]
    good = [c for c in chunks if "error" not in c]
    if not good:
        return {"error": chunks[0]["error"]} if chunks else {}
    success = np.concatenate([c["success"] for c in good]).astype(bool)
    distance = np.concatenate([c["distance"] for c in good])
    passes = sum(c["passes"]["forward_rows"] + c["passes"]["backward_rows"] for c in good)
    wall = sum(c["timing"]["wall_s"] for c in good)
    cpu = sum(c["timing"]["cpu_s"] for c in good)
    return {
        "images": int(success.size),
        "success": success.tolist(),
        "distance": distance.tolist(),
        "success_rate": float(success.mean()),
        **{f"distortion_{k}": v for k, v in util.distortion_stats(distance, success).items()},
        "wall_s": wall,
        "wall_s_per_image": wall / success.size,
        "passes_per_image": passes / success.size,
        # Image passes per CPU second: the cost of a pass, whatever else ran on the machine.
        "passes_per_cpu_s": passes / max(cpu, 1e-9),
        "cpu_share_min": min(c["timing"]["cpu_share"] for c in good),
    }


def run_benchmark(flag_values) -> dict[str, Any]:
    import keras

    from keras_takd.core.data import load_dataset

    _CACHED_ONLY[0] = flag_values.cached_only
    out = pathlib.Path(flag_values.output_dir)
    cache = pathlib.Path(flag_values.cache_dir)
    data = load_dataset("mnist", flag_values.data_dir, validation_size=0)
    t1, _, _, t1_info = util.prepare_model(cache, flag_values.data_dir, flag_values.train_epochs)
    t40, t40_info = prepare_distilled(
        cache, data, flag_values.train_epochs, flag_values.temperature
    )
    models = {"T1": t1, f"T{flag_values.temperature:g}_distilled": t40}
    correct = np.ones(len(data.y_test), bool)
    accuracy = {}
    for name, model in models.items():
        right = model.predict(data.x_test, batch_size=500, verbose=0).argmax(1) == data.y_test
        accuracy[name] = float(right.mean())
        correct &= right
    chosen = np.flatnonzero(correct)
    results: dict[str, Any] = {
        "command": " ".join(["python", *sys.argv]),
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": util.machine_info(),
        "versions": util.versions(["tensorflow", "keras", "numpy"]),
        "keras_takd_commit": util.git_commit(str(_REPO)),
        "models": {"T1": t1_info, "distilled": t40_info},
        "test_accuracy": accuracy,
        "images_requested": flag_values.images,
        "image_indices": chosen[: flag_values.images].tolist(),
        "fmn_steps": flag_values.fmn_steps,
        "robust": {},
        "comparisons": {},
    }
    save = lambda: _write(results, pathlib.Path(flag_values.results_dir))  # noqa: E731
    if "robust" not in flag_values.skip:
        x_r, y_r = (
            data.x_test[chosen[: flag_values.robust_images]],
            data.y_test[chosen[: flag_values.robust_images]],
        )
        for name, model in models.items():
            path = out / name / f"robust_eps{flag_values.robust_eps:g}_n{len(x_r)}.json"
            robust = _cached(path, run_robust, model, x_r, y_r, flag_values.robust_eps)
            if robust is not None:
                results["robust"][name] = robust
        save()

    def compare(kind: str) -> None:
        for name, model in models.items():
            counting = util.CountingModel(model, count_eager=False)
            for norm in flag_values.norms:
                chunks = []
                for start in range(0, flag_values.images, flag_values.chunk):
                    rows = chosen[start : min(start + flag_values.chunk, flag_values.images)]
                    tag = f"{kind}_steps{flag_values.fmn_steps}" if kind == "fmn" else kind
                    path = out / name / norm / f"{tag}_{start}_{start + len(rows)}.json"
                    chunks.append(
                        _cached(
                            path,
                            run_chunk,
                            kind,
                            norm,
                            counting,
                            data.x_test[rows],
                            data.y_test[rows],
                            flag_values.fmn_steps,
                        )
                    )
                    entry = results["comparisons"].setdefault(name, {}).setdefault(norm, {})
                    entry[kind] = _merge(chunks)
                    save()

    compare("fmn")
    if "foolbox" not in flag_values.skip:
        for name, model in models.items():
            for norm in flag_values.norms:
                rows = chosen[: min(flag_values.chunk, flag_values.images)]
                path = (
                    out / name / norm / f"foolbox_steps{flag_values.fmn_steps}_0_{len(rows)}.json"
                )
                value = _cached(
                    path,
                    run_foolbox,
                    norm,
                    model,
                    data.x_test[rows],
                    data.y_test[rows],
                    flag_values.fmn_steps,
                    flag_values.foolbox_path,
                )
                entry = results["comparisons"][name][norm]
                if value is not None:
                    entry["foolbox"] = _merge([value]) | {"version": value.get("version")}
                save()
    if "cw" not in flag_values.skip:
        compare("cw")  # the long part, last
    keras.backend.clear_session()
    results["finished_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    save()
    return results


def _write(results: dict[str, Any], results_dir: pathlib.Path) -> None:
    for entries in results["comparisons"].values():
        for entry in entries.values():
            if "fmn" in entry and "cw" in entry and "error" not in entry["cw"] and entry["cw"]:
                n = min(entry["fmn"].get("images", 0), entry["cw"].get("images", 0))
                entry["paired"] = _ratio_stats(
                    {k: entry["fmn"][k][:n] for k in ("success", "distance")},
                    {k: entry["cw"][k][:n] for k in ("success", "distance")},
                ) | {"images": n}
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "minimal_norm.json").write_text(json.dumps(results, indent=1) + "\n")
    (results_dir / "minimal_norm.md").write_text(markdown_report(results))


def _fmt(value, digits=3) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def markdown_report(results: dict[str, Any]) -> str:
    lines = [
        "# FMN against C&W at the paper's settings; APGD against PGD",
        "",
        f"Command: `{results['command']}` (started {results['started_utc']}, "
        f"finished {results.get('finished_utc', 'not yet: partial')}).",
        f"Commit {results['keras_takd_commit']}; {results['machine']['cpu']}, "
        f"{results['machine']['cores_usable']} cores. FMN: {results['fmn_steps']} steps.",
        "Test accuracy: "
        + ", ".join(f"{k} {v:.4f}" for k, v in results.get("test_accuracy", {}).items())
        + f"; images: the first {results['images_requested']} test images both classify "
        "correctly.",
        "",
        "Distortion: mean / median over each attack's successes; ratio FMN / C&W per image on "
        "the images both fooled. Passes: forward + backward rows per image (padding included), "
        "counted inside the compiled loops; passes / CPU s compares the cost of a pass.",
        "",
        "| model | norm | attack | images | success | mean | median | ratio median | "
        "ratio p90 | s / image | passes / image | passes / CPU s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, entries in results["comparisons"].items():
        for norm, entry in entries.items():
            paired = entry.get("paired", {})
            for kind in ("fmn", "cw", "foolbox"):
                r = entry.get(kind)
                if not r:
                    continue
                if "error" in r:
                    lines.append(f"| {name} | {norm} | {kind} | - | error: {r['error'][:80]} |")
                    continue
                ratio = kind == "fmn" and paired.get("images_both")
                lines.append(
                    f"| {name} | {norm} | {kind} | {r['images']} | {r['success_rate']:.2f} | "
                    f"{_fmt(r['distortion_mean'], 4)} | {_fmt(r['distortion_median'], 4)} | "
                    f"{_fmt(paired.get('ratio_median'), 4) if ratio else ''} | "
                    f"{_fmt(paired.get('ratio_p90'), 4) if ratio else ''} | "
                    f"{r['wall_s_per_image']:.3g} | {r['passes_per_image']:.0f} | "
                    f"{r.get('passes_per_cpu_s', float('nan')):.0f} |"
                )
    if results["robust"]:
        lines += [
            "",
            "Robust accuracy at L-inf eps = 0.3 (100 steps each; PGD step 0.01, random start):",
            "",
            "| model | images | PGD-CE | APGD-CE | APGD-DLR |",
            "|---|---|---|---|---|",
        ]
        for name, r in results["robust"].items():
            if "error" in r:
                lines.append(f"| {name} | error: {r['error'][:80]} |")
                continue
            accs = " | ".join(
                f"{r[k]['robust_accuracy']:.2f}" for k in ("pgd_ce", "apgd_ce", "apgd_dlr")
            )
            lines.append(f"| {name} | {r['pgd_ce']['images']} | {accs} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    del argv
    run_benchmark(FLAGS)


if __name__ == "__main__":
    app.run(main)

"""Our JSMA against cleverhans 3.1's `jsma_symbolic`, attack pair by attack pair.

`keras_takd.attacks.jacobian_saliency_map` re-implements Papernot et al.'s JSMA
(arXiv:1511.07528) batched in TensorFlow 2. This benchmark runs it and cleverhans 3.1's
symbolic JSMA (`references.cleverhans_jsma`, under `tf.compat.v1`) on the same weights: a
small ReLU MLP (784-100-10) trained here for --train_epochs on the first --train_images MNIST
training images with seed 0, whose numpy weights build the reference's graph. On the first
--images test images the model classifies correctly, each image is attacked towards every
other class (the all-targets protocol, 9 attack pairs per image), with theta = +1 and
gamma = 14.5% (the papers' MNIST settings), once with the gradients of the softmax F (the
papers; cleverhans differentiates its model's `get_logits`, here returning F) and once with
those of the logits Z (cleverhans' own choice).

Both sides' images are judged the same way, by the Keras model: success is the target class
predicted; a changed pixel moved by more than 1e-4. Per gradient mode it reports the rate of
pairs where both agree on success, the success rate of each side (Wilson 95% intervals), on the
pairs both fooled the rate of equal changed-pixel counts and of identical images, and the
time per attack pair (wall and CPU seconds; ours includes its compile, which the report gives
apart from a second, cached run).

Where the two are built to differ (documented in `keras_takd.attacks.jacobian_saliency_map`):
cleverhans treats a pair whose saliency is 0 as inadmissible and, when no pair scores above 0,
keeps "changing" feature 0 until its iteration limit; ours stops that image.

    git clone https://github.com/cleverhans-lab/cleverhans /work/ext/cleverhans
    git -C /work/ext/cleverhans checkout v3.1.0
    python benchmarks/jsma_fidelity.py --cleverhans_path=/work/ext/cleverhans

Writes benchmarks/results/jsma_fidelity.json and jsma_fidelity.md; `--report_only` redraws the
.md from the .json.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
from absl import flags
from common import reports
from common.environment import REPO, RESULTS_DIR, git_commit, machine_info, versions
from common.reports import estimate_dict
from common.timing import timed, utc_now
from references import cleverhans_jsma as reference

from keras_takd.core import cli

NAME = "jsma_fidelity"
NUM_CLASSES = 10

FLAGS = flags.FLAGS
flags.DEFINE_integer("images", 12, "Test images, each attacked towards 9 targets.", lower_bound=1)
flags.DEFINE_integer("train_images", 10000, "MNIST training images of the MLP.", lower_bound=100)
flags.DEFINE_integer("train_epochs", 3, "Epochs of the MLP.", lower_bound=1)
flags.DEFINE_float("theta", 1.0, "The change of a chosen feature.")
flags.DEFINE_float("gamma", 0.145, "The maximum distortion.", lower_bound=0.0, upper_bound=1.0)
flags.DEFINE_list("gradients", ["softmax", "logits"], "Gradient modes to compare, in order.")
flags.DEFINE_string("cleverhans_path", "/work/ext/cleverhans", "cleverhans v3.1.0 checkout.")
flags.DEFINE_string("data_dir", str(REPO.parent / "shared" / "data"), "Folder of mnist.npz.")
flags.DEFINE_string("results_dir", str(RESULTS_DIR), "Report folder.")
flags.DEFINE_string("results_name", NAME, "Report files: <results_dir>/<results_name>.{json,md}.")
flags.DEFINE_bool(
    "report_only", False, "Compute nothing: redraw <results_dir>/<results_name>.md from its json."
)
flags.register_validator(
    "gradients",
    lambda v: bool(v) and set(v) <= {"softmax", "logits"},
    "--gradients: some of softmax, logits",
)


def train_mlp(data_dir: str, train_images: int, epochs: int):
    """The 784-100-10 ReLU MLP, trained with seed 0; returns it and the MNIST test split."""
    import keras

    with np.load(f"{data_dir}/mnist.npz", allow_pickle=False) as f:
        x_train = f["x_train"][:train_images, ..., None].astype(np.float32) / 255.0
        y_train = f["y_train"][:train_images].astype(np.int64)
        x_test = f["x_test"][..., None].astype(np.float32) / 255.0
        y_test = f["y_test"].astype(np.int64)
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Flatten(),
            keras.layers.Dense(100, activation="relu"),
            keras.layers.Dense(NUM_CLASSES),
        ],
        name="jsma_fidelity_mlp",
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(x_train, y_train, batch_size=64, epochs=epochs, verbose=0)
    return model, x_test, y_test


def judge(model, x: np.ndarray, x_adv: np.ndarray, target: np.ndarray):
    """Success (the target predicted) and changed pixels of each pair, by the Keras model."""
    from keras_takd.attacks.common import perturbation_norms
    from keras_takd.core.metrics import predict_logits

    success = np.argmax(predict_logits(model, x_adv, 256), axis=1) == target
    l0, _, _ = perturbation_norms(x_adv, x)
    return success, l0


def compare(ours: dict[str, np.ndarray], theirs: dict[str, np.ndarray]) -> dict[str, Any]:
    from keras_takd.core.statistics import proportion

    n = len(ours["success"])
    both = ours["success"] & theirs["success"]
    same_l0 = ours["l0"][both] == theirs["l0"][both]
    same_image = np.all((ours["x_adv"] == theirs["x_adv"]).reshape(n, -1), axis=1)[both]
    return {
        "pairs": n,
        "success_ours": estimate_dict(proportion(int(ours["success"].sum()), n)),
        "success_theirs": estimate_dict(proportion(int(theirs["success"].sum()), n)),
        "success_agree": estimate_dict(
            proportion(int((ours["success"] == theirs["success"]).sum()), n)
        ),
        "both_fooled": int(both.sum()),
        "same_changed_pixels": estimate_dict(proportion(int(same_l0.sum()), int(both.sum()))),
        "same_image": estimate_dict(proportion(int(same_image.sum()), int(both.sum()))),
        "mean_changed_pixels_ours": float(ours["l0"][both].mean()) if both.any() else None,
        "mean_changed_pixels_theirs": float(theirs["l0"][both].mean()) if both.any() else None,
        "largest_changed_pixel_gap": int(np.abs(ours["l0"][both] - theirs["l0"][both]).max())
        if both.any()
        else None,
    }


def run_benchmark() -> dict[str, Any]:
    from keras_takd.attacks import all_targets, jacobian_saliency_map
    from keras_takd.core.metrics import correctly_classified

    jsma_symbolic = reference.load_jsma_symbolic(FLAGS.cleverhans_path)
    with timed() as train_time:
        model, x_test, y_test = train_mlp(FLAGS.data_dir, FLAGS.train_images, FLAGS.train_epochs)
    right = correctly_classified(model, x_test, y_test)
    index = np.flatnonzero(right)[: FLAGS.images]
    x, y = x_test[index], y_test[index]
    weights = [np.asarray(w, np.float32) for w in model.get_weights()]
    results: dict[str, Any] = {
        "command": "python benchmarks/jsma_fidelity.py " + " ".join(sys.argv[1:]),
        "started": utc_now(),
        "commit": git_commit(REPO),
        "cleverhans_commit": git_commit(FLAGS.cleverhans_path),
        "machine": machine_info(),
        "versions": versions(["tensorflow", "keras", "numpy"]),
        "model": f"784-100-10 ReLU MLP, {FLAGS.train_epochs} epochs on {FLAGS.train_images} "
        "MNIST training images, Adam 1e-3, batch 64, seed 0",
        "train_seconds": train_time.wall_s,
        "test_accuracy": float(right.mean()),
        "images": int(len(index)),
        "last_image_index": int(index[-1]),
        "theta": FLAGS.theta,
        "gamma": FLAGS.gamma,
        "cells": [],
    }
    for gradients in FLAGS.gradients:
        options = {"theta": FLAGS.theta, "gamma": FLAGS.gamma, "gradients": gradients}
        with timed() as first_time:
            ours_run = all_targets(jacobian_saliency_map, model, x, y, **options)
        with timed() as ours_time:
            ours_run = all_targets(jacobian_saliency_map, model, x, y, **options)
        pairs_x = x[ours_run.image_index]
        target = ours_run.result.target
        with timed() as theirs_time:
            x_theirs = reference.run(
                jsma_symbolic,
                weights,
                pairs_x,
                target,
                softmax=gradients == "softmax",
                theta=FLAGS.theta,
                gamma=FLAGS.gamma,
                num_classes=NUM_CLASSES,
            )
        theirs_success, theirs_l0 = judge(model, pairs_x, x_theirs, target)
        ours = {"success": ours_run.result.success, "l0": ours_run.result.l0}
        ours["x_adv"] = ours_run.result.x_adv
        theirs = {"success": theirs_success, "l0": theirs_l0, "x_adv": x_theirs}
        cell = {"gradients": gradients, **compare(ours, theirs)}
        cell["seconds"] = {
            "ours_first_call": first_time.as_dict(),
            "ours": ours_time.as_dict(),
            "theirs": theirs_time.as_dict(),
        }
        results["cells"].append(cell)
        print(
            f"{gradients}: success agree {cell['success_agree']['estimate']:.1%}, same changed "
            f"pixels {cell['same_changed_pixels']['estimate']:.1%}; "
            f"{ours_time.wall_s:.1f} s ours, {theirs_time.wall_s:.1f} s theirs",
            flush=True,
        )
        _write(results)
    results["finished"] = utc_now()
    _write(results)
    return results


def _write(results: dict[str, Any]) -> None:
    reports.write_results(FLAGS.results_dir, FLAGS.results_name, results, markdown_report)


def _rate(e: dict[str, float]) -> str:
    if not e["n"]:
        return "-"
    return f"{e['estimate']:.1%} [{e['low']:.1%}, {e['high']:.1%}] of {e['n']}"


def _per_pair_ms(seconds: dict[str, float], pairs: int, key: str = "wall_s") -> str:
    return f"{1000 * seconds[key] / pairs:.0f}"


def markdown_report(results: dict[str, Any]) -> str:
    lines = [
        "# JSMA against cleverhans 3.1's jsma_symbolic, pair by pair",
        "",
        f"Command: `{results['command']}` (started {results['started']}, finished "
        f"{results.get('finished', 'not yet: partial')}). keras_takd {results['commit']}, "
        f"cleverhans {results['cleverhans_commit']} (v3.1.0) under tf.compat.v1; "
        f"{results['machine']['cpu']}, {results['machine']['cores_usable']} cores.",
        "",
        f"Model: {results['model']} (test accuracy {results['test_accuracy']:.2%}); the "
        f"reference's graph is built from the same weights. {results['images']} test images the "
        f"model classifies correctly (the first ones, up to index {results['last_image_index']}), "
        f"each attacked towards the 9 other classes; theta = {results['theta']:g}, gamma = "
        f"{results['gamma']:.1%}. Both sides judged by the Keras model; rates with Wilson 95% "
        "intervals. Changed pixels and images compared on the pairs both fooled.",
        "",
        "| gradients | pairs | success, ours | success, theirs | success agrees | both fooled "
        "| same changed pixels | same image | mean changed pixels ours / theirs "
        "| ms per pair ours / theirs (CPU) | ours' first call (compiles), ms per pair |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in results["cells"]:
        s, n = c["seconds"], c["pairs"]
        lines.append(
            f"| {c['gradients']} | {n} | {_rate(c['success_ours'])} | "
            f"{_rate(c['success_theirs'])} | {_rate(c['success_agree'])} | {c['both_fooled']} | "
            f"{_rate(c['same_changed_pixels'])} | {_rate(c['same_image'])} | "
            f"{reports.fmt(c['mean_changed_pixels_ours'])} / "
            f"{reports.fmt(c['mean_changed_pixels_theirs'])} | "
            f"{_per_pair_ms(s['ours'], n)} / {_per_pair_ms(s['theirs'], n)} "
            f"({_per_pair_ms(s['ours'], n, 'cpu_s')} / {_per_pair_ms(s['theirs'], n, 'cpu_s')}) | "
            f"{_per_pair_ms(s['ours_first_call'], n)} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    del argv
    if FLAGS.report_only:
        reports.rewrite_report(FLAGS.results_dir, FLAGS.results_name, markdown_report)
        return
    run_benchmark()


if __name__ == "__main__":
    cli.run_main(main, NAME)  # bad input: one line and exit 1, not a traceback

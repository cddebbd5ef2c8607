"""Per-image fidelity of keras_takd's C&W attacks to Carlini's original code (issue 11).

Runs Carlini's ORIGINAL `l2_attack.py`, `l0_attack.py` and `li_attack.py` (github.com/carlini/
nn_robust_attacks, fetched outside this repository; pass its folder as `--original_repo`) under
`tensorflow.compat.v1` in graph mode, each in a subprocess of its own, side by side with
`keras_takd.attacks.carlini_wagner_l2`, `carlini_wagner_l0` and `carlini_wagner_linf`, on the
same trained MNIST model (the paper's network, `keras_takd.core.models.build_model("mnist")`,
trained 3 epochs at T = 1 with `keras_takd.core.distillation.train_on_labels`, as
`benchmarks/attacks.py` trains it) and the same first N correctly classified test images,
untargeted, with the originals' defaults (L2: 9 binary steps x `--l2_iterations`; L0 and
L-inf: `--l0_iterations` / `--linf_iterations` per c).

The originals work on the box [-0.5, 0.5] and call `model.predict` on a graph tensor; the
adapter `_OriginalModel` rebuilds the same Keras weights from plain TF1 ops (conv, ReLU,
max-pool, dense) and adds 0.5, so both sides attack one function. The original L2 runs with
batch_size=1 (its abort rule is whole-batch); keras_takd runs all images in one batch with
its default per-example rule, which equals batch_size=1. The original L2 returns an all-zero
image where it failed; that is read as a failure. Success of the original's images is decided
by the adapter's logits (the original's own model), of keras_takd's by the Keras model.

Writes `benchmarks/results/carlini_fidelity.csv` (one row per attack and image),
`carlini_fidelity.json` (settings, model, timings, agreement) and `carlini_fidelity.md`.

Autograph re-reads the attacks' source files when it traces, so run it from a copy of the tree
that nobody edits meanwhile (`git archive HEAD | tar -x -C DIR`, then `PYTHONPATH=DIR`).

Run (about an hour on two busy cores; the originals take most of it):
    nice -n 10 python benchmarks/carlini_fidelity.py --original_repo=/work/ext/nn_robust_attacks
    nice -n 10 python benchmarks/carlini_fidelity.py --images=3 --l2_iterations=100 \\
        --l2_binary_steps=3 --l0_iterations=100 --linf_iterations=100 --output_dir=/tmp/fid
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pathlib
import subprocess
import sys
import time
from typing import Any

import numpy as np
from absl import app, flags

_REPO = pathlib.Path(__file__).resolve().parents[1]
_RESULTS_DIR = _REPO / "benchmarks" / "results"
ATTACKS = ("l2", "l0", "linf")
# The originals' box; the adapter adds this to reach the Keras model's [0, 1] box.
_SHIFT = 0.5

FLAGS = flags.FLAGS
flags.DEFINE_integer("images", 20, "Correctly classified test images to attack.", lower_bound=1)
flags.DEFINE_integer("l2_iterations", 1000, "C&W L2 iterations per binary step.", lower_bound=1)
flags.DEFINE_integer("l2_binary_steps", 9, "C&W L2 binary-search steps.", lower_bound=1)
flags.DEFINE_integer("l0_iterations", 1000, "C&W L0 iterations per c.", lower_bound=1)
flags.DEFINE_integer("linf_iterations", 1000, "C&W L-inf iterations per c.", lower_bound=1)
flags.DEFINE_list("attacks", list(ATTACKS), "Attacks to run: any of l2, l0, linf.")
flags.register_validator(
    "attacks", lambda v: set(v) <= set(ATTACKS), "attacks: any of l2, l0, linf"
)
flags.DEFINE_string(
    "original_repo", "/work/ext/nn_robust_attacks", "Checkout of carlini/nn_robust_attacks."
)
flags.DEFINE_string("work_dir", "/work/runs/fidelity", "Model cache and scratch, outside git.")
flags.DEFINE_string("data_dir", "/work/shared/data", "Folder holding mnist.npz.")
flags.DEFINE_integer("train_epochs", 3, "Epochs of the MNIST model.", lower_bound=1)
flags.DEFINE_string("output_dir", str(_RESULTS_DIR), "Where the csv, json and md go.")
flags.DEFINE_float("rtol", 1e-3, "Relative tolerance of an L2 or L-inf distortion match.")
flags.DEFINE_bool(
    "noise_floor",
    True,
    "Also run keras_takd one image at a time: how far its own answers move with float round-off.",
)
flags.DEFINE_bool(
    "reuse_original",
    False,
    "Reuse an original's saved images from --work_dir when they were made with these settings.",
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


# --- the model and images (main process) ---


def prepare(work_dir: pathlib.Path, data_dir: str, epochs: int, n_images: int, seed: int = 0):
    """Loads or trains the benchmark model; saves its weights and the images for the originals.

    Returns:
        `(model, x, y, info)`: the Keras model, the first `n_images` correctly classified
        test images in [0, 1] and their labels, and a record of the model.
    """
    import keras

    from keras_takd.core.data import load_dataset
    from keras_takd.core.distillation import TrainConfig, train_on_labels
    from keras_takd.core.models import build_model

    data = load_dataset("mnist", data_dir, validation_size=0)
    path = work_dir / f"mnist_cnn_T1_epochs{epochs}_seed{seed}.keras"
    if path.exists():
        model = keras.models.load_model(path)
    else:
        keras.utils.set_random_seed(seed)
        model = build_model("mnist")
        train_on_labels(
            model, data.x_train, data.y_train, 1.0, TrainConfig(epochs=epochs, seed=seed)
        )
        work_dir.mkdir(parents=True, exist_ok=True)
        model.save(path)
    predicted = np.argmax(model.predict(data.x_test, batch_size=500, verbose=0), axis=-1)
    correct = np.flatnonzero(predicted == data.y_test)[:n_images]
    x, y = data.x_test[correct].astype(np.float32), data.y_test[correct].astype(np.int64)
    np.savez(work_dir / "weights.npz", *model.get_weights())
    np.savez(work_dir / "images.npz", x=x, y=y, index=correct)
    info = {
        "builder": 'keras_takd.core.models.build_model("mnist")',
        "training": f"train_on_labels, T=1, TrainConfig(epochs={epochs}, seed={seed})",
        "cache": str(path),
        "test_accuracy": float(np.mean(predicted == data.y_test)),
        "test_indices": correct.tolist(),
    }
    return model, x, y, info


# --- the originals (subprocess, graph mode) ---


class _OriginalModel:
    """The benchmark network in plain TF1 ops, with the interface the originals expect.

    `predict(x)` maps images in [-0.5, 0.5] to logits by adding 0.5 and applying the Keras
    model's weights (four 3x3 valid convolutions with ReLU, max-pooling after each pair, two
    ReLU dense layers and the logits layer; dropout is off at inference).
    """

    image_size, num_channels, num_labels = 28, 1, 10

    def __init__(self, tf1: Any, weights: list[np.ndarray]):
        self.tf = tf1
        self.weights = [tf1.constant(w) for w in weights]

    def predict(self, x):
        tf, w = self.tf, self.weights
        h = x + _SHIFT
        for block in range(2):
            for conv in range(2):
                kernel, bias = w[4 * block + 2 * conv], w[4 * block + 2 * conv + 1]
                h = tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(h, kernel, 1, "VALID"), bias))
            h = tf.nn.max_pool2d(h, 2, 2, "VALID")
        h = tf.reshape(h, [-1, int(np.prod(h.shape[1:]))])
        h = tf.nn.relu(tf.matmul(h, w[8]) + w[9])
        h = tf.nn.relu(tf.matmul(h, w[10]) + w[11])
        return tf.matmul(h, w[12]) + w[13]


def _import_original(repo: str, module_name: str, tf1: Any):
    """Imports an original module with `tensorflow` bound to `tensorflow.compat.v1`."""
    import importlib

    real = sys.modules["tensorflow"]
    sys.path.insert(0, repo)
    sys.modules["tensorflow"] = tf1
    try:
        return importlib.import_module(module_name)
    finally:
        sys.modules["tensorflow"] = real
        sys.path.remove(repo)


def run_original(attack: str, repo: str, work_dir: pathlib.Path, options: dict[str, Any]) -> None:
    """Runs one original attack image by image and saves its images, logits and seconds."""
    import tensorflow.compat.v1 as tf1

    tf1.disable_v2_behavior()
    weights = np.load(work_dir / "weights.npz")
    weights = [weights[f"arr_{i}"] for i in range(len(weights.files))]
    data = np.load(work_dir / "images.npz")
    x, y = data["x"] - np.float32(_SHIFT), data["y"]
    onehot = np.eye(10, dtype=np.float32)[y]
    sess = tf1.Session()
    model = _OriginalModel(tf1, weights)
    module = _import_original(
        repo, {"l2": "l2_attack", "l0": "l0_attack", "linf": "li_attack"}[attack], tf1
    )
    adv, found, seconds = np.zeros_like(x), np.zeros(len(x), bool), np.zeros(len(x))
    with contextlib.redirect_stdout(io.StringIO()):
        if attack == "l2":
            attacker = module.CarliniL2(
                sess, model, batch_size=1, targeted=False, boxmin=-0.5, boxmax=0.5, **options
            )
        elif attack == "l0":
            attacker = module.CarliniL0(sess, model, targeted=False, **options)
        else:
            attacker = module.CarliniLi(sess, model, targeted=False, **options)
        for i in range(len(x)):
            start = time.process_time()
            if attack == "l2":
                out = attacker.attack_batch(x[i : i + 1], onehot[i : i + 1])[0]
                found[i] = np.any(out != 0)  # the original's failure is an all-zero image
            else:
                out = attacker.attack_single(x[i], onehot[i])
                found[i] = out is not None  # L0 returns None when its first solve fails
                out = x[i] if out is None else out
            seconds[i] = time.process_time() - start
            adv[i] = np.reshape(out, x[i].shape)
        image = tf1.placeholder(tf1.float32, [None, 28, 28, 1])
        logits = sess.run(model.predict(image), {image: adv})
    np.savez(
        work_dir / f"original_{attack}.npz",
        settings=json.dumps(options, sort_keys=True),
        images=data["index"],
        x_adv=adv + np.float32(_SHIFT),
        logits=logits,
        found=found,
        cpu_seconds=seconds,
    )


# --- comparison (main process) ---


def run_ours(
    attack: str, model, x: np.ndarray, y: np.ndarray, options: dict[str, Any], batch_size: int
):
    """keras_takd's attack in batches of `batch_size`; returns the result and CPU seconds."""
    from keras_takd import attacks

    function = {
        "l2": attacks.carlini_wagner_l2,
        "l0": attacks.carlini_wagner_l0,
        "linf": attacks.carlini_wagner_linf,
    }[attack]
    start = time.process_time()
    result = function(model, x, y, batch_size=batch_size, **options)
    return result, time.process_time() - start


def compare(attack: str, x, y, ours, original: dict[str, np.ndarray], rtol: float, single=None):
    """Per-image rows: both sides' success and distortions, and whether they match."""
    import pandas as pd

    from keras_takd.attacks.common import perturbation_norms

    success = original["found"] & (np.argmax(original["logits"], axis=-1) != y)
    x_adv = np.where(success[:, None, None, None], original["x_adv"], x)
    l0, l2, linf = perturbation_norms(x_adv, x)
    frame = pd.DataFrame(
        {
            "attack": attack,
            "image": np.arange(len(x)),
            "label": y,
            "original_success": success,
            "ours_success": ours.success,
            "original_l0": l0,
            "ours_l0": ours.l0,
            "original_l2": l2,
            "ours_l2": ours.l2,
            "original_linf": linf,
            "ours_linf": ours.linf,
        }
    )
    metric = {"l2": "l2", "l0": "l0", "linf": "linf"}[attack]
    a, b = frame[f"original_{metric}"].to_numpy(float), frame[f"ours_{metric}"].to_numpy(float)
    frame["relative_difference"] = np.abs(a - b) / np.maximum(np.maximum(a, b), 1e-12)
    same_success = frame["original_success"] == frame["ours_success"]
    close = (a == b) if attack == "l0" else np.isclose(a, b, rtol=rtol, atol=1e-6)
    frame["match"] = same_success & (close | ~frame["original_success"])
    if single is not None:
        # keras_takd one image at a time against keras_takd batched: the float noise floor.
        c = getattr(single, metric).astype(float)
        frame["ours_single_success"] = single.success
        frame[f"ours_single_{metric}"] = c
        same = (c == b) if attack == "l0" else np.isclose(c, b, rtol=rtol, atol=1e-6)
        frame["self_match"] = (single.success == ours.success) & (same | ~ours.success)
    return frame


def summarize(frame, seconds: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Agreement per attack: images, same success, matching distortion, their spread."""
    out = {}
    for attack, part in frame.groupby("attack", sort=False):
        out[attack] = {
            "images": len(part),
            "original_success": int(part["original_success"].sum()),
            "ours_success": int(part["ours_success"].sum()),
            "same_success": int((part["original_success"] == part["ours_success"]).sum()),
            "match": int(part["match"].sum()),
            "median_relative_difference": float(part["relative_difference"].median()),
            "max_relative_difference": float(part["relative_difference"].max()),
            "original_mean_distortion": float(part[f"original_{attack}"].mean()),
            "ours_mean_distortion": float(part[f"ours_{attack}"].mean()),
            "ours_single_vs_batched_match": (
                int(part["self_match"].sum()) if "self_match" in part else None
            ),
            **seconds[attack],
        }
    return out


def write_report(output_dir: pathlib.Path, frame, record: dict[str, Any]) -> None:
    """The csv, json and a short markdown table."""
    output_dir.mkdir(parents=True, exist_ok=True)
    frame.to_csv(output_dir / "carlini_fidelity.csv", index=False)
    (output_dir / "carlini_fidelity.json").write_text(json.dumps(record, indent=2) + "\n")
    lines = [
        "# keras_takd against Carlini's original attacks, per image",
        "",
        f"Model: {record['model']['builder']}, {record['model']['training']}, test accuracy "
        f"{record['model']['test_accuracy']:.4f}. Images: the first {record['images']} "
        "correctly classified MNIST test images, untargeted. A match is the same success and, "
        f"for successes, the same L0 or L2 / L-inf within rtol {record['rtol']}.",
        "",
        "| attack | images | success (original / ours) | same success | match | "
        "median / max rel. diff. | mean distortion (original / ours) | CPU s (original / ours) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for attack, s in record["summary"].items():
        lines.append(
            f"| {attack} | {s['images']} | {s['original_success']} / {s['ours_success']} | "
            f"{s['same_success']} | {s['match']} | {s['median_relative_difference']:.2g} / "
            f"{s['max_relative_difference']:.2g} | {s['original_mean_distortion']:.4g} / "
            f"{s['ours_mean_distortion']:.4g} | {s['original_cpu_seconds']:.0f} / "
            f"{s['ours_cpu_seconds']:.0f} |"
        )
    lines += [
        "",
        "The noise floor: keras_takd one image at a time against keras_takd batched, same "
        "match rule: "
        + ", ".join(
            f"{a} {s['ours_single_vs_batched_match']}/{s['images']}"
            if s["ours_single_vs_batched_match"] is not None
            else f"{a} not run"
            for a, s in record["summary"].items()
        )
        + ".",
        "",
        "Commands: " + "; ".join(f"`{c}`" for c in record["commands"]),
        "",
    ]
    (output_dir / "carlini_fidelity.md").write_text("\n".join(lines))


def run_fidelity(
    *,
    attacks_to_run: list[str],
    original_repo: str,
    work_dir: pathlib.Path,
    data_dir: str,
    train_epochs: int,
    n_images: int,
    l2_steps: int,
    iterations: dict[str, int],
    rtol: float,
    output_dir: pathlib.Path,
    noise_floor: bool,
    reuse_original: bool = False,
):
    """Runs both sides of every attack and writes the report; returns the per-image frame.

    After each attack its rows go to `work_dir` and the report is rewritten from every
    attack's rows there, so a run of one attack adds to earlier runs of the others.
    """
    if not (pathlib.Path(original_repo) / "l2_attack.py").exists():
        raise FileNotFoundError(f"no l2_attack.py in --original_repo={original_repo}")
    model, x, y, info = prepare(work_dir, data_dir, train_epochs, n_images)
    from keras_takd import attacks  # noqa: F401  (loaded now: later edits to the tree can't leak in)

    command = " ".join(["python", "benchmarks/carlini_fidelity.py", *sys.argv[1:]])
    for attack in attacks_to_run:
        options = settings(attack, l2_steps, iterations)
        saved = work_dir / f"original_{attack}.npz"
        if not (reuse_original and _same_run(saved, options, info["test_indices"])):
            argv = [sys.executable, __file__, f"--run_original={attack}"]
            argv += [f"--original_repo={original_repo}", f"--work_dir={work_dir}"]
            argv += [f"--{k}={v}" for k, v in _iteration_flags(l2_steps, iterations).items()]
            subprocess.run(argv, check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
        original = dict(np.load(saved))
        ours, our_seconds = run_ours(attack, model, x, y, options, len(x))
        single = run_ours(attack, model, x, y, options, 1)[0] if noise_floor else None
        frame = compare(attack, x, y, ours, original, rtol, single)
        part = {
            "command": command,
            "keras_takd": _git_head(str(_REPO)),
            "settings": options,
            "seconds": {
                "original_cpu_seconds": float(original["cpu_seconds"].sum()),
                "ours_cpu_seconds": our_seconds,
            },
        }
        # Each attack's rows are kept in work_dir, so runs of different attacks add up.
        frame.to_csv(work_dir / f"fidelity_{attack}.csv", index=False)
        (work_dir / f"fidelity_{attack}.json").write_text(json.dumps(part, indent=2))
        print(summarize(frame, {attack: part["seconds"]})[attack], flush=True)
        frame = _report_all(work_dir, output_dir, original_repo, info, n_images, rtol)
    return frame


def _report_all(work_dir, output_dir, original_repo, info, n_images, rtol):
    """Writes the report from every attack's saved rows in `work_dir`; returns them."""
    import pandas as pd

    frames, parts = [], {}
    for attack in ATTACKS:
        if (work_dir / f"fidelity_{attack}.json").exists():
            frames.append(pd.read_csv(work_dir / f"fidelity_{attack}.csv"))
            parts[attack] = json.loads((work_dir / f"fidelity_{attack}.json").read_text())
    frame = pd.concat(frames, ignore_index=True)
    record = {
        "commands": sorted({part["command"] for part in parts.values()}),
        "original": "carlini/nn_robust_attacks " + _git_head(original_repo),
        "keras_takd": sorted({part["keras_takd"] for part in parts.values()}),
        "model": info,
        "images": n_images,
        "rtol": rtol,
        "settings": {attack: part["settings"] for attack, part in parts.items()},
        "summary": summarize(frame, {a: part["seconds"] for a, part in parts.items()}),
    }
    write_report(output_dir, frame, record)
    return frame


def _same_run(path: pathlib.Path, options: dict[str, Any], indices: list[int]) -> bool:
    """Whether a saved original run used these settings on these test images."""
    if not path.exists():
        return False
    saved = np.load(path)
    return (
        "settings" in saved.files
        and str(saved["settings"]) == json.dumps(options, sort_keys=True)
        and saved["images"].tolist() == list(indices)
    )


def _iteration_flags(l2_steps: int, iterations: dict[str, int]) -> dict[str, int]:
    return {
        "l2_binary_steps": l2_steps,
        "l2_iterations": iterations["l2"],
        "l0_iterations": iterations["l0"],
        "linf_iterations": iterations["linf"],
    }


def _git_head(repo: str) -> str:
    if repo == str(_REPO) and os.environ.get("KERAS_TAKD_COMMIT"):
        return os.environ["KERAS_TAKD_COMMIT"]  # a snapshot of the tree has no .git
    try:
        return subprocess.run(
            ["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "(commit unknown)"


def main(argv: list[str]) -> None:
    del argv
    iterations = {
        "l2": FLAGS.l2_iterations,
        "l0": FLAGS.l0_iterations,
        "linf": FLAGS.linf_iterations,
    }
    work_dir = pathlib.Path(FLAGS.work_dir)
    if FLAGS.run_original:
        options = settings(FLAGS.run_original, FLAGS.l2_binary_steps, iterations)
        run_original(FLAGS.run_original, FLAGS.original_repo, work_dir, options)
        return
    run_fidelity(
        attacks_to_run=FLAGS.attacks,
        original_repo=FLAGS.original_repo,
        work_dir=work_dir,
        data_dir=FLAGS.data_dir,
        train_epochs=FLAGS.train_epochs,
        n_images=FLAGS.images,
        l2_steps=FLAGS.l2_binary_steps,
        iterations=iterations,
        rtol=FLAGS.rtol,
        output_dir=pathlib.Path(FLAGS.output_dir),
        noise_floor=FLAGS.noise_floor,
        reuse_original=FLAGS.reuse_original,
    )


if __name__ == "__main__":
    app.run(main)

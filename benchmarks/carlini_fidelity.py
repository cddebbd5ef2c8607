"""Per-image fidelity of keras_takd's C&W attacks to Carlini's original code (issue 11).

Runs Carlini's ORIGINAL `l2_attack.py`, `l0_attack.py` and `li_attack.py` (github.com/carlini/
nn_robust_attacks, fetched outside this repository; pass its folder as `--original_repo`) under
`tensorflow.compat.v1` in graph mode, in a subprocess of its own, side by side with
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
by the adapter's logits (the original's own model), of keras_takd's by the Keras model. The
original's distortions are measured in its own box, against the image it was given.

Three sides per attack (`--sides`): the original, keras_takd with all images in one batch
("ours", the comparison), and keras_takd one image at a time ("ours_single": the same batch
size as the original, and against "ours" the noise floor of float round-off). Every result is
cached in `--work_dir/cache/<attack>/<side>-<key>/`, per image for the original and for
ours_single, where the key hashes the settings, the model's weights and (for keras_takd) the
attack sources, so an interrupted run resumes where it stopped and never mixes models or code.
The original's printed log is kept with each image. `--original_patches` runs the original
with one numpy function swapped for a diagnosis (its code is not changed): `tf_atanh` uses
TensorFlow's float32 atanh for `np.arctanh`, `stable_argsort` a stable sort for `np.argsort`.

Writes `benchmarks/results/carlini_fidelity.csv` (one row per attack and image),
`carlini_fidelity.json` (settings, model, timings, agreement) and `carlini_fidelity.md`, from
every image whose original and batched results are cached. An attack with nothing cached
keeps its rows and summary from the report already in `--output_dir`.

Autograph re-reads the attacks' source files when it traces, so run it from a copy of the tree
that nobody edits meanwhile (`git archive HEAD | tar -x -C DIR`, then `PYTHONPATH=DIR`).

Run (hours on two busy cores; the originals take most of it; see benchmarks/README.md):
    nice -n 19 python benchmarks/carlini_fidelity.py --attacks=linf,l0 \\
        --original_repo=/work/ext/nn_robust_attacks --work_dir=/work/tmp/fidelity
    nice -n 19 python benchmarks/carlini_fidelity.py --images=3 --l2_iterations=100 \\
        --l2_binary_steps=3 --l0_iterations=100 --linf_iterations=100 --output_dir=/tmp/fid
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import pathlib
import subprocess
import sys
import time
import types
import warnings
from typing import Any

import numpy as np
from absl import app, flags

_REPO = pathlib.Path(__file__).resolve().parents[1]
_RESULTS_DIR = _REPO / "benchmarks" / "results"
ATTACKS = ("l2", "l0", "linf")
SIDES = ("original", "ours", "ours_single")
PATCHES = ("tf_atanh", "stable_argsort")
# The originals' box; the adapter adds this to reach the Keras model's [0, 1] box.
_SHIFT = 0.5

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
flags.DEFINE_string("output_dir", str(_RESULTS_DIR), "Where the csv, json and md go.")
flags.DEFINE_float("rtol", 1e-3, "Relative tolerance of an L2 or L-inf distortion match.")
flags.DEFINE_bool(
    "reuse_original",
    True,
    "Reuse the originals' cached per-image results (same settings, model, image and code).",
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

    Returns:
        `(model, x, y, info)`: the Keras model, the first `n_images` correctly classified
        test images in [0, 1] and their labels, and a record of the model (with the SHA-1 of
        its weights, which every cache key includes).
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
    weights = model.get_weights()
    _save_npz(work_dir / "weights.npz", *weights)
    _save_npz(work_dir / "images.npz", x=x, y=y, index=correct)
    info = {
        "builder": 'keras_takd.core.models.build_model("mnist")',
        "training": f"train_on_labels, T=1, TrainConfig(epochs={epochs}, seed={seed})",
        "cache": str(path),
        "test_accuracy": float(np.mean(predicted == data.y_test)),
        "test_indices": correct.tolist(),
        "weights_sha1": weights_digest(weights),
    }
    _write_text(work_dir / "model.json", json.dumps(info, indent=2) + "\n")
    return model, x, y, info


def load_prepared(work_dir: pathlib.Path):
    """The images and model record that `prepare` saved, without loading the model.

    Returns:
        `(x, y, info)`, or None when `prepare` has not run in `work_dir`.
    """
    if not (work_dir / "model.json").exists():
        return None
    data = np.load(work_dir / "images.npz")
    return data["x"], data["y"], json.loads((work_dir / "model.json").read_text())


def weights_digest(weights: list[np.ndarray]) -> str:
    """SHA-1 of the model's weights, in order."""
    digest = hashlib.sha1()
    for w in weights:
        digest.update(np.ascontiguousarray(w, np.float32).tobytes())
    return digest.hexdigest()


def cache_folder(work_dir: pathlib.Path, attack: str, side: str, **key: Any) -> pathlib.Path:
    """`work_dir/cache/<attack>/<side>-<12 hex digits of the key>/`; the key is written there."""
    text = json.dumps(key, sort_keys=True)
    folder = work_dir / "cache" / attack / f"{side}-{hashlib.sha1(text.encode()).hexdigest()[:12]}"
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "key.json").exists():
        (folder / "key.json").write_text(json.dumps(key, indent=2, sort_keys=True) + "\n")
    return folder


def _original_cache(work_dir, attack, options, weights_sha1, repo, patches=()):
    return cache_folder(
        work_dir,
        attack,
        "original" + "".join(f"+{p}" for p in sorted(patches)),
        settings=options,
        weights_sha1=weights_sha1,
        original=_git_head(repo),
    )


def _ours_cache(work_dir, attack, side, options, weights_sha1):
    return cache_folder(
        work_dir,
        attack,
        side,
        settings=options,
        weights_sha1=weights_sha1,
        attacks_sha1=_attacks_digest(),
    )


def _attacks_digest() -> str:
    """SHA-1 of the imported keras_takd.attacks sources: a code change starts a new cache."""
    import keras_takd.attacks

    digest = hashlib.sha1()
    for path in sorted(pathlib.Path(keras_takd.attacks.__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def _image_file(folder: pathlib.Path, test_index: int) -> pathlib.Path:
    return folder / f"image{int(test_index):05d}.npz"


@contextlib.contextmanager
def _claim(path: pathlib.Path):
    """Yields True when this process should compute `path`: not done, not held elsewhere.

    A lock file next to `path` holds the pid of the process computing it, so several workers
    can share one cache; a lock whose process is gone is taken over.
    """
    lock = path.with_name(path.name + ".lock")
    if path.exists():
        yield False
        return
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        try:
            os.kill(int(lock.read_text()), 0)
            yield False  # its process is alive (an empty lock is being written)
            return
        except ValueError:
            yield False
            return
        except (ProcessLookupError, FileNotFoundError):
            lock.unlink(missing_ok=True)
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    try:
        yield not path.exists()
    finally:
        lock.unlink(missing_ok=True)


def _save_npz(path: pathlib.Path, *args, **kwargs) -> None:
    """np.savez through a temporary file, so a killed run never leaves half a file."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp.npz")
    np.savez(tmp, *args, **kwargs)
    os.replace(tmp, path)


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


def _patched_numpy(patches: list[str], tf1: Any, sess: Any) -> types.SimpleNamespace:
    """numpy, as the original module sees it, with diagnostic swaps (see the docstring)."""
    namespace = types.SimpleNamespace(**{name: getattr(np, name) for name in dir(np)})
    if "tf_atanh" in patches:
        value = tf1.placeholder(tf1.float32)
        atanh = tf1.atanh(value)
        namespace.arctanh = lambda a: sess.run(atanh, {value: np.asarray(a, np.float32)})
    if "stable_argsort" in patches:
        namespace.argsort = lambda a, *args, **kw: np.argsort(a, *args, kind="stable", **kw)
    return namespace


def run_original(
    attack: str,
    repo: str,
    work_dir: pathlib.Path,
    options: dict[str, Any],
    patches: list[str],
) -> None:
    """Runs one original attack image by image, caching each image's result as it ends.

    Each image's file holds its adversarial image in the original's box (`x_adv_box`), the
    adapter's logits there, whether the original returned a solution, its CPU seconds and
    what the original printed.
    """
    import tensorflow.compat.v1 as tf1

    tf1.disable_v2_behavior()
    weights = np.load(work_dir / "weights.npz")
    weights = [weights[f"arr_{i}"] for i in range(len(weights.files))]
    folder = _original_cache(work_dir, attack, options, weights_digest(weights), repo, patches)
    data = np.load(work_dir / "images.npz")
    x, y, indices = data["x"] - np.float32(_SHIFT), data["y"], data["index"]
    todo = [i for i in range(len(x)) if not _image_file(folder, indices[i]).exists()]
    if not todo:
        return
    onehot = np.eye(10, dtype=np.float32)[y]
    sess = tf1.Session()
    model = _OriginalModel(tf1, weights)
    module = _import_original(
        repo, {"l2": "l2_attack", "l0": "l0_attack", "linf": "li_attack"}[attack], tf1
    )
    if patches:
        module.np = _patched_numpy(patches, tf1, sess)
    with contextlib.redirect_stdout(io.StringIO()):
        if attack == "l2":
            attacker = module.CarliniL2(
                sess, model, batch_size=1, targeted=False, boxmin=-0.5, boxmax=0.5, **options
            )
        elif attack == "l0":
            attacker = module.CarliniL0(sess, model, targeted=False, **options)
        else:
            attacker = module.CarliniLi(sess, model, targeted=False, **options)
    for i in todo:
        with _claim(_image_file(folder, indices[i])) as mine:
            if mine:
                _run_original_image(
                    attack, attacker, sess, model, x[i], onehot[i], folder, indices[i], patches
                )


def _run_original_image(attack, attacker, sess, model, x, onehot, folder, index, patches):
    """Runs the original on one image (in its box) and caches the result."""
    import tensorflow.compat.v1 as tf1

    log = io.StringIO()
    start = time.process_time()
    with contextlib.redirect_stdout(log):
        if attack == "l2":
            out = attacker.attack_batch(x[None], onehot[None])[0]
            found = bool(np.any(out != 0))  # the original's failure is an all-zero image
        else:
            out = attacker.attack_single(x, onehot)
            found = out is not None  # L0 returns None when its first solve fails
            out = x if out is None else out
    seconds = time.process_time() - start
    adv = np.reshape(out, x.shape).astype(np.float32)
    image = tf1.placeholder(tf1.float32, [None, *x.shape])
    _save_npz(
        _image_file(folder, index),
        x_adv_box=adv,
        logits=sess.run(model.predict(image), {image: adv[None]})[0],
        found=found,
        cpu_seconds=seconds,
        log=log.getvalue(),
    )
    name = "+".join(["original", *patches])
    print(f"[{attack} {name}] test image {index}: {seconds:.0f} CPU s", file=sys.stderr, flush=True)


def _start_original(attack, original_repo, work_dir, l2_steps, iterations, patches=()):
    argv = [sys.executable, __file__, f"--run_original={attack}"]
    argv += [f"--original_repo={original_repo}", f"--work_dir={work_dir}"]
    argv += [f"--{k}={v}" for k, v in _iteration_flags(l2_steps, iterations).items()]
    argv += [f"--original_patches={','.join(patches)}"]
    subprocess.run(argv, check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


# --- keras_takd (main process) ---


def _attack_function(attack: str):
    from keras_takd import attacks

    return {
        "l2": attacks.carlini_wagner_l2,
        "l0": attacks.carlini_wagner_l0,
        "linf": attacks.carlini_wagner_linf,
    }[attack]


def run_ours(attack: str, model, x, y, indices, options, folder: pathlib.Path) -> None:
    """keras_takd with every image in one batch; cached as one file for these images."""
    path = folder / f"batch-{_indices_digest(indices)}.npz"
    if path.exists():
        return
    start = time.process_time()
    result = _attack_function(attack)(model, x, y, batch_size=len(x), **options)
    seconds = time.process_time() - start
    _save_npz(
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
        with _claim(_image_file(folder, index)) as mine:
            if mine:
                _run_ours_image(attack, model, x[i : i + 1], y[i : i + 1], index, options, folder)


def _run_ours_image(attack, model, x, y, index, options, folder) -> None:
    """keras_takd on one image (batch size 1), cached with the trace of its solves."""
    solves: list[dict[str, Any]] = []
    start = time.process_time()
    with _trace_solves(attack, solves):
        result = _attack_function(attack)(model, x, y, batch_size=1, **options)
    seconds = time.process_time() - start
    _save_npz(
        _image_file(folder, index),
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
    import importlib

    from keras_takd.attacks.carlini_wagner import search

    module = importlib.import_module(f"keras_takd.attacks.carlini_wagner.{attack}")
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

# The pairs compared per image: (first side, second side, column prefix of the result).
PAIRS = (
    ("original", "ours", ""),  # the comparison: keras_takd batched against the original
    ("original", "ours_single", "single_"),  # both one image at a time
    ("ours", "ours_single", "self_"),  # keras_takd against itself: the float noise floor
)


def load_sides(attack, work_dir, x, indices, options, weights_sha1, original_repo):
    """The cached results of every side for the images whose original result is cached.

    Returns:
        `{"done": positions of those images, side: [per-image dict or None, ...]}`; each dict
        holds "x_adv" (in [0, 1]), "success" and, where recorded, "const", "cpu_seconds",
        "log" (original) or "solves" (ours_single).
    """
    folder = _original_cache(work_dir, attack, options, weights_sha1, original_repo)
    done = [i for i, index in enumerate(indices) if _image_file(folder, index).exists()]
    sides: dict[str, Any] = {"done": np.asarray(done, np.int64), "original": []}
    for i in done:
        sides["original"].append(dict(np.load(_image_file(folder, indices[i]))))
    batch = _ours_cache(work_dir, attack, "ours", options, weights_sha1)
    batch = batch / f"batch-{_indices_digest(indices)}.npz"
    batched = dict(np.load(batch)) if batch.exists() else None
    sides["ours"] = [
        None if batched is None else {key: batched[key][i] for key in ("x_adv", "success", "const")}
        for i in done
    ]
    single = _ours_cache(work_dir, attack, "ours_single", options, weights_sha1)
    sides["ours_single"] = [
        dict(np.load(_image_file(single, indices[i])))
        if _image_file(single, indices[i]).exists()
        else None
        for i in done
    ]
    return sides


def compare(attack, x, y, sides, rtol: float):
    """Per-image rows: each side's success and distortions, and whether the sides match.

    A match is the same success and, where the first side succeeded, the same L0 or an L2 /
    L-inf within `rtol` (`within_1pct`: within 1%). `match` compares keras_takd batched with
    the original, `single_match` keras_takd one image at a time with the original and
    `self_match` keras_takd one at a time with batched; empty where a side is not cached. The
    original's success is decided by the adapter's logits and its distortions are measured
    in its own box; keras_takd's success by the Keras model.
    """
    import pandas as pd

    from keras_takd.attacks.common import perturbation_norms

    done = sides["done"]
    x, y = x[done], y[done]
    frame = pd.DataFrame({"attack": attack, "image": done, "label": y})
    norms = {}
    for side in ("original", "ours", "ours_single"):
        rows = sides[side]
        have = np.array([r is not None for r in rows], bool)
        if side == "original":
            logits = np.stack([r["logits"] for r in rows])
            success = np.array([bool(r["found"]) for r in rows]) & (logits.argmax(-1) != y)
            base = x - np.float32(_SHIFT)
            adv = np.stack([r["x_adv_box"] for r in rows])
        else:
            success = np.array([bool(r["success"]) if r is not None else False for r in rows])
            base = x
            adv = np.stack(
                [r["x_adv"] if r is not None else xi for r, xi in zip(rows, x, strict=True)]
            )
        adv = np.where(success[:, None, None, None], adv, base)
        values = dict(zip(("l0", "l2", "linf"), perturbation_norms(adv, base), strict=True))
        norms[side] = (have, success, values[attack].astype(float))
        frame[f"{side}_success"] = pd.array(np.where(have, success, None), dtype="boolean")
        for metric, value in values.items():
            frame[f"{side}_{metric}"] = np.where(have, value, np.nan)
    add_pair_columns(frame, attack, rtol)
    frame["original_const"] = [_original_const(attack, str(r["log"])) for r in sides["original"]]
    for side in ("ours", "ours_single"):
        frame[f"{side}_const"] = [np.nan if r is None else float(r["const"]) for r in sides[side]]
    frame["original_cpu_seconds"] = [float(r["cpu_seconds"]) for r in sides["original"]]
    frame["ours_single_cpu_seconds"] = [
        np.nan if r is None else float(r["cpu_seconds"]) for r in sides["ours_single"]
    ]
    frame["single_max_pixel_difference"] = [
        np.nan if r is None else float(np.max(np.abs(r["x_adv"] - _SHIFT - o["x_adv_box"])))
        for r, o in zip(sides["ours_single"], sides["original"], strict=True)
    ]
    frame["single_diverges_at"] = [
        None
        if r is None or "solves" not in r
        else _divergence(attack, str(o["log"]), str(r["solves"]))
        for r, o in zip(sides["ours_single"], sides["original"], strict=True)
    ]
    return frame


def add_pair_columns(frame, attack: str, rtol: float) -> None:
    """Adds each pair's relative difference, match and within-1% columns, from the sides'."""
    import pandas as pd

    for first, second, prefix in PAIRS:
        if f"{first}_{attack}" not in frame or f"{second}_{attack}" not in frame:
            continue
        a = frame[f"{first}_{attack}"].to_numpy(float)
        b = frame[f"{second}_{attack}"].to_numpy(float)
        both = ~np.isnan(a) & ~np.isnan(b)
        success_a = frame[f"{first}_success"].fillna(False).to_numpy(bool)
        success_b = frame[f"{second}_success"].fillna(False).to_numpy(bool)
        frame[f"{prefix}relative_difference"] = np.where(both, _relative_difference(a, b), np.nan)
        for column, tolerance in (("match", rtol), ("within_1pct", 1e-2)):
            value = _match(attack, success_a, a, success_b, b, tolerance)
            frame[f"{prefix}{column}"] = pd.array(np.where(both, value, None), dtype="boolean")


def _relative_difference(a, b):
    return np.abs(a - b) / np.maximum(np.maximum(a, b), 1e-12)


def _match(attack, success_a, a, success_b, b, rtol):
    """Same success and, where the first side succeeded, the same distortion."""
    close = (a == b) if attack == "l0" else np.isclose(a, b, rtol=rtol, atol=1e-6)
    return (success_a == success_b) & (close | ~success_a)


def _original_const(attack: str, log: str) -> float:
    """The c of the original's last successful solve, from what it printed (not for L2)."""
    const, last = np.nan, np.nan
    for line in log.splitlines():
        if line.startswith("try const"):
            const = float(line.split()[-1])
        elif line.startswith("Tau ") or "Equal count:" in line:
            last = const
    return last if attack != "l2" else np.nan


def solve_sequences(attack: str, log: str, solves: str) -> tuple[list[float], list[float]]:
    """What each successful solve left, per side: the original's printout and our trace.

    L0: the pixels the solution changed ("Equal count" in the original). L-inf: the new tau
    before the decrease factor, min(tau, distortion reached) ("Tau" in the original).
    """
    ours = [s for s in json.loads(solves) if s["solved"]]
    if attack == "l0":
        original = [float(line.split()[-1]) for line in log.splitlines() if "Equal count:" in line]
        return original, [float(s["changed"]) for s in ours]
    original = [float(line.split()[-1]) for line in log.splitlines() if line.startswith("Tau ")]
    return original, [min(s["tau"], s["reached"]) for s in ours]


def _divergence(attack: str, log: str, solves: str) -> str:
    """The first successful solve after which the two sides stand apart, e.g. "7 of 31/30"."""
    original, ours = solve_sequences(attack, log, solves)
    for k, (a, b) in enumerate(zip(original, ours, strict=False)):
        if not np.isclose(a, b, rtol=1e-6, atol=0):
            return f"{k + 1} of {len(original)}/{len(ours)}"
    if len(original) == len(ours):
        return f"never ({len(original)} solves)"
    return f"{min(len(original), len(ours)) + 1} of {len(original)}/{len(ours)}"


def summarize(frame, seconds: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Agreement per attack and pair of sides: success, matching distortion, their spread."""
    out = {}
    for attack, part in frame.groupby("attack", sort=False):
        out[attack] = {
            "images": len(part),
            "batched": _pair_summary(part, attack, "original", "ours", ""),
            "one_at_a_time": _pair_summary(part, attack, "original", "ours_single", "single_"),
            "noise_floor": _pair_summary(part, attack, "ours", "ours_single", "self_"),
            **seconds[attack],
        }
    return out


def _pair_summary(part, attack, first, second, prefix) -> dict[str, Any] | None:
    """One pair's counts over the images both sides have; None if there are none."""
    if f"{prefix}match" not in part:
        return None
    part = part[part[f"{prefix}match"].notna()]
    if part.empty:
        return None
    success_a = part[f"{first}_success"].astype(bool)
    success_b = part[f"{second}_success"].astype(bool)
    a, b = part[f"{first}_{attack}"], part[f"{second}_{attack}"]
    ratio = (b / a)[success_a & success_b].to_numpy(float)
    return {
        "images": len(part),
        f"{first}_success": int(success_a.sum()),
        f"{second}_success": int(success_b.sum()),
        "same_success": int((success_a == success_b).sum()),
        "match": int(part[f"{prefix}match"].astype(bool).sum()),
        "within_1pct": int(part[f"{prefix}within_1pct"].astype(bool).sum()),
        "median_relative_difference": float(part[f"{prefix}relative_difference"].median()),
        "max_relative_difference": float(part[f"{prefix}relative_difference"].max()),
        "median_ratio": float(np.median(ratio)) if ratio.size else None,
        "median_ratio_95ci": _median_interval(ratio),
        f"{first}_mean_distortion": float(a.mean()),
        f"{second}_mean_distortion": float(b.mean()),
    }


def _median_interval(ratio: np.ndarray) -> list[float] | None:
    """95% bootstrap interval of the median ratio, resampling images: BCa, or the percentile
    interval where BCa is undefined (most resamples' medians equal, e.g. all at exactly 1)."""
    from scipy import stats

    if ratio.size < 3 or np.ptp(ratio) == 0:
        return None
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():  # a degenerate BCa warns, then gives nan: next method
            warnings.simplefilter("ignore")
            result = stats.bootstrap(
                (ratio,), np.median, confidence_level=0.95, n_resamples=9999, random_state=0,
                method=method,
            )  # fmt: skip
        low, high = result.confidence_interval
        if np.isfinite(low) and np.isfinite(high):
            return [float(low), float(high)]
    return None


# --- the report ---

# Everything below this line in the markdown report is kept when the report is rewritten.
NOTES_MARKER = "<!-- Notes below this line are written by hand and kept on every rewrite. -->"
_NAMES = {"l0": "L0", "l2": "L2", "linf": "L-inf"}
_PAIR_NAMES = {
    "batched": "original / ours batched",
    "one_at_a_time": "original / ours one at a time",
    "noise_floor": "ours batched / one at a time",
}


def write_report(output_dir: pathlib.Path, frame, record: dict[str, Any]) -> None:
    """The csv, json and a markdown summary with per-image tables (hand notes kept)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    _write_text(output_dir / "carlini_fidelity.csv", frame.to_csv(index=False))
    _write_text(output_dir / "carlini_fidelity.json", json.dumps(record, indent=2) + "\n")
    md = output_dir / "carlini_fidelity.md"
    notes = ""
    if md.exists() and NOTES_MARKER in md.read_text():
        notes = md.read_text().split(NOTES_MARKER, 1)[1]
    lines = [
        "# keras_takd against Carlini's original attacks, per image",
        "",
        f"Model: {record['model']['builder']}, {record['model']['training']}, test accuracy "
        f"{record['model']['test_accuracy']:.4f}. Images: the first correctly classified MNIST "
        "test images, untargeted. A match is the same success and, for successes, the same L0 "
        f"or L2 / L-inf within rtol {record['rtol']}; within 1%: rtol 0.01. Ratio: second / "
        "first distortion over the images both fooled, median [95% bootstrap interval]. Each "
        "pair counts the images both of its sides have finished.",
        "",
        "| attack | pair | images | success | same success | match | within 1% | "
        "median / max rel. diff. | median ratio [95% CI] | mean distortion |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for attack, s in record["summary"].items():
        for pair, name in _PAIR_NAMES.items():
            if s.get(pair):
                lines.append(_summary_row(_NAMES[attack], name, s[pair]))
    lines += ["", "CPU seconds over the finished images:", ""]
    for attack, s in record["summary"].items():
        parts = [
            f"{key.removesuffix('_cpu_seconds').replace('_', ' ')} {value:.0f}"
            for key, value in s.items()
            if key.endswith("_cpu_seconds") and value
        ]
        lines.append(f"- {_NAMES[attack]}: " + ", ".join(parts))
    lines.append("")
    for attack in record["summary"]:
        lines += _image_table(frame[frame["attack"] == attack], attack)
    lines += ["Commands:", ""]
    for attack, run in record["runs"].items():
        lines += [f"- {_NAMES[attack]}: " + "; ".join(f"`{c}`" for c in run["commands"])]
    lines += ["", NOTES_MARKER + notes.rstrip("\n"), ""]
    _write_text(md, "\n".join(lines))


def _summary_row(attack: str, name: str, s: dict[str, Any]) -> str:
    successes = [
        value for key, value in s.items() if key.endswith("_success") and key != "same_success"
    ]
    distortions = [value for key, value in s.items() if key.endswith("_mean_distortion")]
    ratio = "" if s["median_ratio"] is None else f"{s['median_ratio']:.4f}"
    if s["median_ratio_95ci"]:
        ratio += " [{:.4f}, {:.4f}]".format(*s["median_ratio_95ci"])
    return (
        f"| {attack} | {name} | {s['images']} | {successes[0]} / {successes[1]} | "
        f"{s['same_success']} | {s['match']} | {s['within_1pct']} | "
        f"{s['median_relative_difference']:.2g} / {s['max_relative_difference']:.2g} | {ratio} | "
        f"{distortions[0]:.4g} / {distortions[1]:.4g} |"
    )


def _image_table(part, attack: str) -> list[str]:
    """One markdown row per image: each side's success and distortion, and the matches."""
    import pandas as pd

    unit = " (pixels)" if attack == "l0" else ""
    fmt = (lambda v: f"{v:.0f}") if attack == "l0" else (lambda v: f"{v:.6g}")  # noqa: E731
    head = [
        "image",
        "label",
        "success (orig / batched / single)",
        f"{_NAMES[attack]}{unit} original",
        "batched",
        "single",
        "rel. diff. batched / single",
        "match batched / single",
        "c (orig / single)",
        "single diverges at solve",
    ]
    lines = [f"**{_NAMES[attack]}**", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in part.iterrows():
        cells = [str(int(r["image"])), str(int(r["label"]))]
        cells.append(
            " / ".join(_yes(r.get(f"{s}_success")) for s in ("original", "ours", "ours_single"))
        )
        cells += [_number(r.get(f"{s}_{attack}"), fmt) for s in ("original", "ours", "ours_single")]
        cells.append(
            " / ".join(
                _number(r.get(f"{p}relative_difference"), "{:.2g}".format) for p in ("", "single_")
            )
        )
        cells.append(" / ".join(_yes(r.get(f"{p}match")) for p in ("", "single_")))
        cells.append(
            " / ".join(
                _number(r.get(f"{s}_const"), "{:.4g}".format) for s in ("original", "ours_single")
            )
        )
        diverges = r.get("single_diverges_at")
        cells.append("-" if diverges is None or pd.isna(diverges) else str(diverges))
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def _yes(value) -> str:
    import pandas as pd

    return "-" if value is None or pd.isna(value) else ("yes" if bool(value) else "no")


def _number(value, fmt) -> str:
    import pandas as pd

    return "-" if value is None or pd.isna(value) else fmt(float(value))


def _write_text(path: pathlib.Path, text: str) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


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
    if not (pathlib.Path(original_repo) / "l2_attack.py").exists():
        raise FileNotFoundError(f"no l2_attack.py in --original_repo={original_repo}")
    prepared = load_prepared(work_dir)
    needs_model = attacks_to_run and {"ours", "ours_single"} & set(sides)
    if prepared is None or len(prepared[0]) != n_images:
        model, x, y, info = prepare(work_dir, data_dir, train_epochs, n_images)
    else:
        (x, y, info), model = prepared, None
        if needs_model:
            import keras

            model = keras.models.load_model(info["cache"])
            if weights_digest(model.get_weights()) != info["weights_sha1"]:
                raise ValueError(f"{info['cache']} is not the model of {work_dir}/model.json")
    from keras_takd import attacks  # noqa: F401  (loaded now: later edits to the tree can't leak in)

    indices, digest = info["test_indices"], info["weights_sha1"]
    command = " ".join(["python", "benchmarks/carlini_fidelity.py", *sys.argv[1:]])
    for attack in attacks_to_run:
        options = settings(attack, l2_steps, iterations)
        _record_command(work_dir, attack, command)
        if "original" in sides:
            folder = _original_cache(work_dir, attack, options, digest, original_repo)
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

    previous_frame, previous = _previous_report(output_dir)
    frames, runs = [], {}
    for attack in ATTACKS:
        options = settings(attack, l2_steps, iterations)
        sides = load_sides(
            attack,
            work_dir,
            x,
            info["test_indices"],
            options,
            info["weights_sha1"],
            original_repo,
        )
        ours = [r for r in sides["ours"] + sides["ours_single"] if r is not None]
        if len(sides["done"]) and ours:
            frames.append(compare(attack, x, y, sides, rtol))
            batched = next((r for r in sides["ours"] if r is not None), None)
            single = [r for r in sides["ours_single"] if r is not None]
            runs[attack] = {
                "commands": _recorded_commands(work_dir, attack),
                "keras_takd": _git_head(str(_REPO)),
                "model": {key: info[key] for key in ("cache", "weights_sha1")},
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
    frame = pd.concat(frames, ignore_index=True)
    record = {
        "original": "carlini/nn_robust_attacks " + _git_head(original_repo),
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
    folder = _ours_cache(work_dir, attack, "ours", options, info["weights_sha1"])
    saved = np.load(folder / f"batch-{_indices_digest(info['test_indices'])}.npz")
    return float(saved["cpu_seconds"])


def _previous_report(output_dir: pathlib.Path):
    """The rows and record of the report in `output_dir` ({} if none), in today's layout."""
    import pandas as pd

    csv, js = output_dir / "carlini_fidelity.csv", output_dir / "carlini_fidelity.json"
    if not (csv.exists() and js.exists()):
        return None, {}
    record = json.loads(js.read_text())
    if "runs" not in record:  # the layout before per-image caches: one command list
        record["runs"] = {
            attack: {
                "commands": [c for c in record["commands"] if f"--attacks={attack}" in c]
                or record["commands"],
                "keras_takd": ", ".join(record["keras_takd"]),
                "model": {"cache": record["model"]["cache"]},
                "settings": record["settings"][attack],
                "seconds": {
                    key: record["summary"][attack][key]
                    for key in ("original_cpu_seconds", "ours_cpu_seconds")
                },
            }
            for attack in record["summary"]
        }
    return pd.read_csv(csv), record


def _record_command(work_dir: pathlib.Path, attack: str, command: str) -> None:
    path = work_dir / f"commands_{attack}.json"
    commands = json.loads(path.read_text()) if path.exists() else []
    if command not in commands:
        _write_text(path, json.dumps(commands + [command], indent=2))


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
        run_original(
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
    app.run(main)

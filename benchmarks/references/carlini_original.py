"""Carlini's original C&W attacks (github.com/carlini/nn_robust_attacks), run in graph mode.

The reference runner of `cw_fidelity_to_carlini.py`: it imports the original `l2_attack.py`,
`l0_attack.py` and `li_attack.py` from a checkout outside this repository with `tensorflow`
bound to `tensorflow.compat.v1`, and attacks the benchmark network rebuilt from plain TF1 ops
(`OriginalModel`) in the originals' box [-0.5, 0.5], one image at a time, caching each image.
Fetch the code with `git clone https://github.com/carlini/nn_robust_attacks`.
"""

from __future__ import annotations

import contextlib
import io
import json
import pathlib
import sys
import time
import types
from typing import Any

import numpy as np
from common import cache
from common.environment import git_commit

from keras_takd.core import files

ATTACKS = ("l2", "l0", "linf")
MODULES = {"l2": "l2_attack", "l0": "l0_attack", "linf": "li_attack"}
PATCHES = ("tf_atanh", "stable_argsort")
# The originals' box; the adapter adds this to reach the Keras model's [0, 1] box.
SHIFT = 0.5


def require(repo: str) -> None:
    """Checks that `repo` is a checkout of carlini/nn_robust_attacks.

    Raises:
        FileNotFoundError: it has no l2_attack.py, with where to get it.
    """
    if not (pathlib.Path(repo) / "l2_attack.py").exists():
        raise FileNotFoundError(
            f"--original_repo: no l2_attack.py in {repo}; expected a clone of "
            "https://github.com/carlini/nn_robust_attacks"
        )


def original_cache(work_dir, attack, options, weights_sha256, repo, patches=()) -> pathlib.Path:
    """The cache folder of one original attack: its settings, the model, the code, the patches."""
    return cache.cache_folder(
        work_dir,
        attack,
        "original" + "".join(f"+{p}" for p in sorted(patches)),
        settings=options,
        weights_sha256=weights_sha256,
        original=git_commit(repo, short=False),
    )


class OriginalModel:
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
        h = x + SHIFT
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
    digest = json.loads((work_dir / "model.json").read_text())["weights_sha256"]
    folder = original_cache(work_dir, attack, options, digest, repo, patches)
    data = np.load(work_dir / "images.npz")
    x, y, indices = data["x"] - np.float32(SHIFT), data["y"], data["index"]
    todo = [i for i in range(len(x)) if not cache.image_file(folder, indices[i]).exists()]
    if not todo:
        return
    onehot = np.eye(10, dtype=np.float32)[y]
    sess = tf1.Session()
    model = OriginalModel(tf1, weights)
    module = _import_original(repo, MODULES[attack], tf1)
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
        with cache.claim(cache.image_file(folder, indices[i])) as mine:
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
    files.save_npz_atomic(
        cache.image_file(folder, index),
        x_adv_box=adv,
        logits=sess.run(model.predict(image), {image: adv[None]})[0],
        found=found,
        cpu_seconds=seconds,
        log=log.getvalue(),
    )
    name = "+".join(["original", *patches])
    print(f"[{attack} {name}] test image {index}: {seconds:.0f} CPU s", file=sys.stderr, flush=True)

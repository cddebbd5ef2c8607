"""cleverhans 3.1's `jsma_symbolic` (Papernot et al.'s JSMA), run under `tf.compat.v1`.

The reference of `jsma_fidelity.py`. cleverhans is not a dependency and its 3.1 package does
not import under TensorFlow 2 and numpy 2, so only the function's own source is read from a
checkout of tag v3.1.0 (`git clone https://github.com/cleverhans-lab/cleverhans
/work/ext/cleverhans && git -C /work/ext/cleverhans checkout v3.1.0`), from
`cleverhans/attacks/saliency_map_method.py`, and run in a TF1 graph with two textual changes,
both about shapes and neither about the algorithm: `int(y_target.shape[-1].value)` becomes
`int(y_target.shape[-1])` and `int(np.product(x.shape[1:]).value)` becomes
`int(np.prod(x.shape[1:]))` (TF2 shapes hold ints; numpy 2 has no `product`). Its helpers
`reduce_sum`, `reduce_max`, `reduce_any` (cleverhans.compat) are TF's own.
"""

from __future__ import annotations

import pathlib
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

SOURCE = "cleverhans/attacks/saliency_map_method.py"
SHAPE_FIXES = (
    ("int(y_target.shape[-1].value)", "int(y_target.shape[-1])"),
    ("int(np.product(x.shape[1:]).value)", "int(np.prod(x.shape[1:]))"),
)


def load_jsma_symbolic(cleverhans_path: str) -> Callable[..., Any]:
    """`jsma_symbolic` from a cleverhans v3.1.0 checkout, bound to `tf.compat.v1`.

    Raises:
        FileNotFoundError: if the checkout has no saliency_map_method.py.
        ValueError: if its source is not v3.1.0's (a shape fix does not apply).
    """
    import tensorflow as tf

    path = pathlib.Path(cleverhans_path) / SOURCE
    if not path.is_file():
        raise FileNotFoundError(
            f"--cleverhans_path: no {path}; expected a cleverhans v3.1.0 checkout"
        )
    text = path.read_text()
    source = text[text.index("def jsma_symbolic(") :]
    for old, new in SHAPE_FIXES:
        if old not in source:
            raise ValueError(f"{path}: no {old!r}; expected cleverhans v3.1.0's jsma_symbolic")
        source = source.replace(old, new)
    v1 = tf.compat.v1
    namespace = {
        "np": np,
        "tf": v1,
        "warnings": warnings,
        "xrange": range,
        "reduce_sum": v1.reduce_sum,
        "reduce_max": v1.reduce_max,
        "reduce_any": v1.reduce_any,
        "tf_dtype": tf.float32,
    }
    exec(compile(source, str(path), "exec"), namespace)  # noqa: S102 - the reference's own code
    return namespace["jsma_symbolic"]


class _DenseModel:
    """cleverhans' model interface over a ReLU MLP given as numpy weights."""

    def __init__(self, weights: list[np.ndarray], softmax: bool):
        self.weights = weights
        self.softmax = softmax

    def get_logits(self, x):
        import tensorflow as tf

        h = tf.reshape(x, [-1, int(np.prod(x.shape[1:]))])
        layers = list(zip(self.weights[::2], self.weights[1::2], strict=True))
        for i, (kernel, bias) in enumerate(layers):
            h = tf.matmul(h, tf.constant(kernel)) + tf.constant(bias)
            if i < len(layers) - 1:
                h = tf.nn.relu(h)
        # With softmax=True the "logits" cleverhans differentiates are F = softmax(Z).
        return tf.nn.softmax(h) if self.softmax else h


def run(
    jsma_symbolic: Callable[..., Any],
    weights: list[np.ndarray],
    x: np.ndarray,
    target: np.ndarray,
    *,
    softmax: bool,
    theta: float,
    gamma: float,
    num_classes: int,
) -> np.ndarray:
    """Runs cleverhans' JSMA on all of `x` at once in a fresh graph; returns its images."""
    import tensorflow as tf

    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        x_in = v1.placeholder(tf.float32, [None, *x.shape[1:]])
        y_in = v1.placeholder(tf.float32, [None, num_classes])
        x_adv = jsma_symbolic(x_in, y_in, _DenseModel(weights, softmax), theta, gamma, 0.0, 1.0)
        with v1.Session(graph=graph) as session:
            onehot = np.eye(num_classes, dtype=np.float32)[target]
            return session.run(x_adv, {x_in: x, y_in: onehot})

"""Per-example Lp norms and projections onto Lp balls, in TensorFlow ops.

The shared geometry of the norm-bounded attacks (`apgd`) and the minimal-norm ones
(`fast_minimum_norm`): every function treats axis 0 as the batch and all other axes as one
flat vector per example. The L1 projection is the sort-based Euclidean projection onto the
L1 ball of Duchi, Shalev-Shwartz, Singer & Chandra (ICML 2008); the L0 "projection" keeps the
k entries of largest magnitude, as Pintor et al. (arXiv:2102.12827, Algorithm 1) use it.
"""

from __future__ import annotations

import tensorflow as tf

from keras_takd.attacks.optimizers import expand_to

NORMS = ("l0", "l1", "l2", "linf")
# Dual exponents: |<g, d>| <= ||g||_dual ||d||_p (Hoelder); L0 has none.
DUAL_NORMS = {"l1": "linf", "l2": "l2", "linf": "l1"}
TINY = 1e-12


def _flat(t: tf.Tensor) -> tf.Tensor:
    return tf.reshape(t, [tf.shape(t)[0], -1])


def lp_norm(t: tf.Tensor, norm: str) -> tf.Tensor:
    """The `norm` ("l0", "l1", "l2" or "linf") of each example of `t`, float32 [N].

    L0 counts the entries that are not exactly zero.
    """
    flat = _flat(t)
    if norm == "l0":
        return tf.reduce_sum(tf.cast(tf.not_equal(flat, 0.0), tf.float32), axis=1)
    if norm == "l1":
        return tf.reduce_sum(tf.abs(flat), axis=1)
    if norm == "l2":
        return tf.sqrt(tf.reduce_sum(tf.square(flat), axis=1))
    if norm == "linf":
        return tf.reduce_max(tf.abs(flat), axis=1)
    raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")


def normalize_l2(t: tf.Tensor) -> tf.Tensor:
    """`t` divided by its per-example L2 norm (zero rows stay zero)."""
    return t / expand_to(tf.maximum(lp_norm(t, "l2"), TINY), t)


def project_ball(delta: tf.Tensor, eps: tf.Tensor, norm: str) -> tf.Tensor:
    """Projects each example of `delta` onto the `norm` ball of radius `eps` around zero.

    Args:
        delta: perturbations [N, ...].
        eps: radii, a scalar or float32 [N] (may be +inf: no projection); for "l0" the number
            of entries to keep.
        norm: "l0", "l1", "l2" or "linf".

    Returns:
        The projected perturbations, shaped like `delta`. L2 scales down (PGD's and APGD's
        rule); L-inf clips; L1 is Duchi et al.'s Euclidean projection; L0 keeps the `eps`
        entries of largest magnitude (all entries tied with the smallest kept one stay).
    """
    eps = tf.broadcast_to(tf.cast(eps, tf.float32), tf.shape(delta)[:1])
    if norm == "linf":
        bound = expand_to(eps, delta)
        return tf.clip_by_value(delta, -bound, bound)
    if norm == "l2":
        scale = tf.minimum(1.0, eps / (lp_norm(delta, "l2") + TINY))
        return delta * expand_to(scale, delta)
    if norm == "l1":
        return tf.reshape(_project_l1(_flat(delta), eps), tf.shape(delta))
    if norm == "l0":
        return tf.reshape(_keep_largest(_flat(delta), eps), tf.shape(delta))
    raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")


def _project_l1(flat: tf.Tensor, eps: tf.Tensor) -> tf.Tensor:
    """Duchi et al. (2008), Fig. 1: soft-thresholding at the theta that gives ||w||_1 = eps."""
    magnitude = tf.abs(flat)
    inside = tf.reduce_sum(magnitude, axis=1) <= eps
    finite_eps = tf.where(inside, 0.0, eps)  # keeps inf out of the arithmetic below
    ranked = tf.sort(magnitude, axis=1, direction="DESCENDING")
    cumulative = tf.cumsum(ranked, axis=1)
    index = tf.range(1, tf.shape(flat)[1] + 1, dtype=tf.float32)
    positive = ranked - (cumulative - finite_eps[:, None]) / index > 0
    rho = tf.reduce_max(tf.where(positive, index, 0.0), axis=1)  # >= 1 when eps > 0
    rho = tf.maximum(rho, 1.0)
    at_rho = tf.gather(cumulative, tf.cast(rho, tf.int32) - 1, batch_dims=1)
    theta = tf.maximum((at_rho - finite_eps) / rho, 0.0)
    projected = tf.sign(flat) * tf.maximum(magnitude - theta[:, None], 0.0)
    return tf.where(inside[:, None], flat, projected)


def _keep_largest(flat: tf.Tensor, count: tf.Tensor) -> tf.Tensor:
    """Zeroes all but the `count` entries of largest magnitude of each row."""
    magnitude = tf.abs(flat)
    ranked = tf.sort(magnitude, axis=1, direction="DESCENDING")
    features = tf.shape(flat)[1]
    k = tf.cast(tf.minimum(count, tf.cast(features, tf.float32)), tf.int32)
    threshold = tf.gather(ranked, tf.maximum(k, 1) - 1, batch_dims=1)
    keep = (magnitude >= threshold[:, None]) & (k[:, None] > 0)
    return tf.where(keep, flat, 0.0)


def clip_to_box(x: tf.Tensor, delta: tf.Tensor, clip_min: float, clip_max: float) -> tf.Tensor:
    """The perturbation that keeps x + delta inside [clip_min, clip_max]."""
    return tf.clip_by_value(x + delta, clip_min, clip_max) - x

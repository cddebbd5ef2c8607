"""Seeding: reproducible runs, and a stable seed per unit of work so a resumed run matches.

Tests and runs that train fix the seeds AND enable TensorFlow op determinism; either alone
leaves the numbers free to move between runs (thread timing changes reduction orders).
"""

from __future__ import annotations

import zlib


def set_seed(seed: int, deterministic: bool = True) -> None:
    """Seeds Python, NumPy and TensorFlow; with `deterministic`, enables op determinism."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def unit_seed(seed: int, *parts) -> int:
    """A stable seed for one unit of work (e.g. a chain's stage), from the run's seed.

    Each unit is seeded as a fresh run would seed it, so a run resumed after a kill trains
    the remaining units exactly as an uninterrupted run would.

    Args:
        seed: the run's seed.
        *parts: what names the unit (e.g. dataset, temperature, stage); joined with "/".

    Returns:
        An int in [0, 2**31 - 1).
    """
    return zlib.crc32("/".join(map(str, (seed, *parts))).encode()) % (2**31 - 1)

"""Fixtures of the chain study's tests: a small results table with its per-image table."""

import pandas as pd
import pytest

from keras_takd.takd import schema


def _chain_tables(
    images: int = 5, misclassified=(), unfooled=(), temperatures=(1.0, 20.0)
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Results and per-image rows of a three-model chain per temperature, C&W L2 only.

    Later stages need larger perturbations (0.1 per stage) plus a little image noise.
    `misclassified` and `unfooled` hold (temperature, stage, image) triples: that model
    misclassifies the image (not attacked), or the attack fails on it. The results rows hold
    the means, maxima and success rates of the per-image rows.
    """
    results, per_image = [], []
    for t in temperatures:
        for s, r in ((1, "teacher"), (2, "assistant"), (3, "student")):
            key = {"dataset": "mnist", "temperature": t, "stage": s, "role": r, "stages": 3}
            rows = []
            for i in range(images):
                correct = (t, s, i) not in misclassified
                success = correct and (t, s, i) not in unfooled
                distance = 1.0 + 0.1 * s + 0.01 * ((i * 7 + s) % 5) if success else float("nan")
                rows.append(
                    key
                    | {"attack": "l2", "image": i, "correct": correct, "success": success}
                    | {"distance": distance, "const": 1.0}
                )
            per_image += rows
            fooled = [row["distance"] for row in rows if row["success"]]
            attacked = sum(row["correct"] for row in rows)
            results.append(
                key
                | {"l2_mean": sum(fooled) / len(fooled), "l2_max": max(fooled)}
                | {"l2_success_rate": len(fooled) / attacked, "l2_attacked": attacked}
                | {"l2_excluded": images - attacked}
            )
    per_image = pd.DataFrame(per_image, columns=list(schema.PER_IMAGE_COLUMNS))
    return pd.DataFrame(results), per_image


@pytest.fixture
def chain_tables():
    """`chain_tables(images=5, misclassified=(), unfooled=(), temperatures=(1.0, 20.0))` ->
    (results, per_image) of three-model chains, C&W L2 only (see `_chain_tables`)."""
    return _chain_tables

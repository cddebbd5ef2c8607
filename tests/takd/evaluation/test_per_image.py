"""The per-image table's writers: one row per image of a unit's block, the table beside its
results CSV, and the shards' tables concatenated."""

import gzip
import math

import pandas as pd
import pytest

from keras_takd.takd.evaluation import per_image
from keras_takd.takd.schema import INDICATORS, PER_IMAGE_COLUMNS

ROW = {"dataset": "mnist", "temperature": 5.0, "stage": 2, "role": "student", "stages": 2}
# A block of images [10, 14): images 11 and 13 classified correctly and attacked.
UNIT = {
    "images": [10, 14],
    "per_image": {
        "index": [1, 3],
        "success": [True, False],
        "distance": [0.5, 7.0],
        "const": [0.01, 1.0],
        "iterations": [12, 40],
    },
}
INDICATOR_UNIT = {
    "index": [1, 3],
    "flags": {name: [False, True] for name in INDICATORS} | {"silent_success": None},
}


def test_unit_rows_give_one_row_per_image_of_the_block():
    rows = per_image.unit_rows(ROW, "l2", UNIT, INDICATOR_UNIT)
    assert [r["image"] for r in rows] == [10, 11, 12, 13]
    assert [r["correct"] for r in rows] == [False, True, False, True]
    assert [r["success"] for r in rows] == [False, True, False, False]
    assert rows[1]["distance"] == 0.5 and math.isnan(rows[3]["distance"])  # failed: no distance
    assert [r["iterations"] for r in rows] == [None, 12, None, 40]
    assert rows[3]["const"] == 1.0 and math.isnan(rows[0]["const"])
    assert rows[3]["vanishing_gradients"] is True and rows[0]["vanishing_gradients"] is None
    assert "silent_success" not in rows[1]  # not checked: left empty
    assert {r["attack"] for r in rows} == {"l2"} and {r["stage"] for r in rows} == {2}


def test_a_unit_without_attacked_images_gives_rows_marked_incorrect():
    rows = per_image.unit_rows(ROW, "linf", {"images": [0, 3], "per_image": {}})
    assert [(r["image"], r["correct"], r["success"]) for r in rows] == [
        (0, False, False),
        (1, False, False),
        (2, False, False),
    ]


def test_write_per_image_writes_the_sorted_table_beside_the_results(tmp_path):
    rows = per_image.unit_rows(ROW, "l2", UNIT, INDICATOR_UNIT)
    rows += per_image.unit_rows(ROW | {"stage": 1, "role": "teacher"}, "l2", UNIT)
    table = per_image.write_per_image(tmp_path / "results.csv", rows)
    assert list(table.columns) == list(PER_IMAGE_COLUMNS)
    assert list(table["stage"]) == [1] * 4 + [2] * 4
    assert table["vanishing_gradients"].iloc[:4].isna().all()  # stage 1: no indicators
    written = pd.read_csv(tmp_path / "per_image.csv")
    assert list(written.columns) == list(PER_IMAGE_COLUMNS) and len(written) == 8
    other = per_image.write_per_image(tmp_path / "whole.csv", rows)
    pd.testing.assert_frame_equal(other, table)
    assert (tmp_path / "whole_per_image.csv").is_file()


def test_merge_per_image_concatenates_the_shards_tables_or_says_none(tmp_path):
    paths = [tmp_path / f"results_shard{i}of2.csv" for i in (0, 1)]
    halves = [dict(UNIT, images=[10, 12]), dict(UNIT, images=[12, 14])]
    halves[0]["per_image"] = {k: v[:1] for k, v in UNIT["per_image"].items()}
    halves[1]["per_image"] = {k: v[1:] for k, v in UNIT["per_image"].items()}
    halves[1]["per_image"]["index"] = [1]
    for path, unit in zip(paths, halves, strict=True):
        per_image.write_per_image(path, per_image.unit_rows(ROW, "l2", unit))
    merged = per_image.merge_per_image(paths[::-1])
    whole = per_image.tidy(per_image.unit_rows(ROW, "l2", UNIT))
    pd.testing.assert_frame_equal(merged, whole, check_dtype=False)
    (tmp_path / "per_image_shard1of2.csv").unlink()
    assert per_image.merge_per_image(paths) is None


def test_merged_shards_keep_shard_0s_predictions(tmp_path):
    shards = [tmp_path / f"results_shard{i}of2.csv" for i in range(2)]
    model = {"dataset": "mnist", "temperature": 1.0, "stage": 1, "role": "teacher", "stages": 1}
    rows = [model | {"image": i, "label": 2, "prediction": 2 - i} for i in range(3)]
    per_image.write_predictions(shards[0], rows)  # shard 0 computes the metrics
    where = per_image.merge_predictions(shards, tmp_path / "results.csv")
    assert where == tmp_path / "predictions.csv"
    merged = pd.read_csv(where)
    assert list(merged["prediction"]) == [2, 1, 0] and list(merged["label"]) == [2, 2, 2]
    assert per_image.merge_predictions(shards[1:], tmp_path / "other.csv") is None


def test_predictions_are_written_plain_beside_a_compressed_copy(tmp_path):
    """A folder whose predictions were committed gzip-compressed (figures/decisive) still gets
    plain CSV from the evaluation, never text under a .gz name."""
    compressed = tmp_path / "predictions.csv.gz"
    compressed.write_bytes(gzip.compress(b"dataset,image\n", mtime=0))
    model = {"dataset": "mnist", "temperature": 1.0, "stage": 1, "role": "teacher", "stages": 1}
    rows = [model | {"image": i, "label": 2, "prediction": 2} for i in range(3)]
    per_image.write_predictions(tmp_path / "results.csv", rows)
    assert pd.read_csv(tmp_path / "predictions.csv", compression=None)["image"].tolist() == [
        0,
        1,
        2,
    ]
    assert gzip.decompress(compressed.read_bytes()) == b"dataset,image\n"


def test_identical_predictions_of_every_shard_are_taken_once_and_differing_ones_refused(
    tmp_path,
):
    """Shards of earlier versions each wrote every model's predictions."""
    shards = [tmp_path / f"results_shard{i}of2.csv" for i in range(2)]
    model = {"dataset": "mnist", "temperature": 1.0, "stage": 1, "role": "teacher", "stages": 1}
    rows = [model | {"image": i, "label": 2, "prediction": 2 - i} for i in range(3)]
    for shard in shards:
        per_image.write_predictions(shard, rows)
    merged = pd.read_csv(per_image.merge_predictions(shards, tmp_path / "results.csv"))
    assert list(merged["image"]) == [0, 1, 2]
    per_image.write_predictions(shards[1], [rows[0] | {"prediction": 7}, *rows[1:]])
    with pytest.raises(ValueError, match="expected each image in one input only"):
        per_image.merge_predictions(shards, tmp_path / "again.csv")

"""keras_takd.takd.analysis.tables: one locator rule and one reader per kind of table."""

import pathlib

import pandas as pd
import pytest

from keras_takd.takd import schema
from keras_takd.takd.analysis import tables


@pytest.mark.parametrize(
    "results, expected",
    [
        ("run/results.csv", "run/per_image.csv"),
        ("run/results_shard1of4.csv", "run/per_image_shard1of4.csv"),
        ("figures/results_mnist_cpu.csv", "figures/results_mnist_cpu_per_image.csv"),
    ],
)
def test_per_image_path_is_the_one_rule(results, expected):
    assert str(tables.per_image_path(results)) == expected


def test_per_image_paths_are_those_given_else_those_beside(tmp_path):
    (tmp_path / "per_image.csv").write_text("")
    results = [tmp_path / "results.csv", tmp_path / "other.csv"]
    assert tables.per_image_paths(results) == [tmp_path / "per_image.csv"]
    assert tables.per_image_paths(results, ["x.csv"]) == [pathlib.Path("x.csv")]  # as given


def test_read_per_image_takes_a_file_a_run_folder_or_several(tmp_path, chain_tables):
    _, per_image = chain_tables()
    minimal = per_image[list(tables.PER_IMAGE_REQUIRED)]  # no stages, const, indicators
    minimal.iloc[::-1].to_csv(tmp_path / "per_image.csv", index=False)
    read = tables.read_per_image(tmp_path)
    assert list(read.columns) == list(schema.PER_IMAGE_COLUMNS)
    assert read["correct"].dtype == bool and set(read[schema.CHAIN_LENGTH_COLUMN]) == {3}
    assert read[["temperature", "stage", "image"]].equals(
        per_image[["temperature", "stage", "image"]]
    )  # sorted by model, attack and image
    both = tables.read_per_image([tmp_path / "per_image.csv", tmp_path])
    assert len(both) == 2 * len(per_image)


@pytest.mark.parametrize(
    "content, error, match",
    [
        (None, FileNotFoundError, "evaluate the run with keras_takd.takd.evaluate first"),
        ("image\n0\n", ValueError, "per-image data lack the columns"),
        (
            "dataset,temperature,stage,role,attack,image,correct,success,distance\n"
            "mnist,hot,1,teacher,l2,0,True,True,1.0\n",
            ValueError,
            "Unable to parse",
        ),
    ],
)
def test_read_per_image_refuses_missing_or_foreign_files(tmp_path, content, error, match):
    if content is not None:
        (tmp_path / "per_image.csv").write_text(content)
    with pytest.raises(error, match=match):
        tables.read_per_image(tmp_path / "per_image.csv")


def test_read_results_checks_every_file(tmp_path):
    pd.DataFrame({"epoch": [1]}).to_csv(tmp_path / "results.csv", index=False)
    with pytest.raises(ValueError, match="key columns"):
        tables.read_results(tmp_path / "results.csv")
    with pytest.raises(ValueError, match="no results file given"):
        tables.read_results([])

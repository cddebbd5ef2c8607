"""keras_takd.takd.analysis.tables: one locator rule and one reader per kind of table."""

import gzip
import pathlib
import shutil

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
    other = tmp_path / "other"
    other.mkdir()
    per_image.assign(dataset="cifar10").to_csv(other / "per_image.csv", index=False)
    both = tables.read_per_image([tmp_path / "per_image.csv", other])
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
            "per_image.csv line 2, column temperature: 'hot' is not a finite number > 0",
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


def _write(folder: pathlib.Path, chain_tables, **settings) -> tuple[pathlib.Path, pathlib.Path]:
    """results.csv and per_image.csv of `chain_tables(**settings)` in `folder`: 6 models (T = 1
    and 20) on lines 2-7, 5 images each: per-image lines 2-31, T = 20 stage 3 on 27-31."""
    folder.mkdir(exist_ok=True)
    results, per_image = chain_tables(**settings)
    results.to_csv(folder / "results.csv", index=False)
    per_image.to_csv(folder / "per_image.csv", index=False)
    return folder / "results.csv", folder / "per_image.csv"


def _edit(path: pathlib.Path, line: int, column: str, value: str) -> None:
    """Sets one cell of a CSV without quoted fields; `line` counts from 1, the header's."""
    lines = path.read_text().splitlines()
    cells = lines[line - 1].split(",")
    cells[lines[0].split(",").index(column)] = value
    lines[line - 1] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")


def _append(path: pathlib.Path, line: int) -> None:
    """Appends a copy of `line` (counting from 1) to a CSV."""
    path.write_text(path.read_text() + path.read_text().splitlines()[line - 1] + "\n")


def _one_line_error(call, error=ValueError) -> str:
    with pytest.raises(error) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    "table, column, value, problem",
    [
        ("per_image", "success", "no", "'no' is not a boolean: expected true or false (any case)"),
        ("per_image", "correct", "yes", "'yes' is not a boolean"),
        ("per_image", "success", "1.0", "'1.0' is not a boolean"),
        ("per_image", "success", "", "'' is not a boolean"),
        ("per_image", "distance", "far", "'far' is not a number >= 0"),
        ("per_image", "distance", "-0.5", "'-0.5' is not a number >= 0"),
        ("per_image", "distance", "", "no finite distance on a successful row"),
        ("per_image", "distance", "nan", "no finite distance on a successful row"),
        ("per_image", "image", "2.5", "'2.5' is not an integer >= 0"),
        ("per_image", "stage", "0", "'0' is not an integer >= 1"),
        ("per_image", "temperature", "hot", "'hot' is not a finite number > 0"),
        ("per_image", "attack", "", "'' is not a name"),
        ("results", "temperature", "hot", "'hot' is not a finite number > 0"),
        ("results", "stage", "1.5", "'1.5' is not an integer >= 1"),
        ("results", "l2_mean", "-1.0", "'-1.0' is not a number >= 0"),
        ("results", "l2_success_rate", "high", "'high' is not a number"),
        ("results", "dataset", "", "'' is not a name"),
    ],
)
def test_a_bad_cell_is_one_line_naming_file_line_and_column(
    tmp_path, chain_tables, table, column, value, problem
):
    path = dict(zip(("results", "per_image"), _write(tmp_path, chain_tables), strict=True))[table]
    _edit(path, 4, column, value)
    read = {"results": tables.read_results, "per_image": tables.read_per_image}[table]
    message = _one_line_error(lambda: read(path))
    assert message.startswith(f"{path} line 4, column {column}: {problem}")


def test_booleans_are_true_or_false_in_any_case_or_1_or_0(tmp_path, chain_tables):
    """One "0" or "FALSE" in a column leaves every other cell as it was (hole 7)."""
    _, per_image = _write(tmp_path, chain_tables)
    _edit(per_image, 2, "success", "0")
    _edit(per_image, 3, "success", "FALSE")
    _edit(per_image, 4, "success", "TRUE")
    _edit(per_image, 5, "correct", "1")
    _edit(per_image, 6, "success", "false")
    read = tables.read_per_image(per_image)
    assert read["success"].dtype == bool and read["correct"].dtype == bool
    assert int(read["success"].sum()) == len(read) - 3 and read["correct"].all()


def test_a_duplicate_key_is_one_line_naming_both_lines(tmp_path, chain_tables):
    results, per_image = _write(tmp_path, chain_tables)
    _append(results, 3)
    message = _one_line_error(lambda: tables.read_results(results))
    assert message.startswith(
        f"{results} line 8, columns dataset, temperature, stage, stages: the model of line 3"
    )
    _append(per_image, 2)
    message = _one_line_error(lambda: tables.read_per_image(per_image))
    assert message.startswith(
        f"{per_image} line 32, columns dataset, temperature, stage, stages, attack, image, target: "
        "the image of line 2"
    )


def test_a_per_image_row_of_a_model_the_results_lack_is_refused(tmp_path, chain_tables):
    results, per_image = _write(tmp_path, chain_tables)
    lines = results.read_text().splitlines()
    results.write_text("\n".join(lines[:-1]) + "\n")  # no T = 20 student
    message = _one_line_error(lambda: tables.read_tables([results]))
    assert message.startswith(
        f"{per_image} line 27, columns dataset, temperature, stage, stages: "
        "mnist, 20.0, 3, 3 is no model of the results"
    )
    rows = tables.read_results(results)
    with pytest.raises(ValueError, match="line 27"):
        tables.read_per_image(per_image, results=rows)


def test_the_same_results_given_twice_are_refused(tmp_path, chain_tables):
    """Hole 5: the same file twice, or two files holding the same models, never count twice."""
    results, per_image = _write(tmp_path, chain_tables)
    message = _one_line_error(lambda: tables.read_results([results, results]))
    assert "is given twice" in message
    message = _one_line_error(lambda: tables.read_per_image([per_image, tmp_path]))
    assert "is given twice" in message
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(results, copy / "results.csv")
    shutil.copy(per_image, copy / "per_image.csv")
    message = _one_line_error(lambda: tables.read_tables([results, copy / "results.csv"]))
    assert message.startswith(f"{copy / 'results.csv'} line 2, columns dataset, temperature")
    assert f"the model of {results} line 2" in message


def test_runs_whose_keys_differ_are_read_together_and_never_paired(tmp_path, chain_tables):
    first, _ = _write(tmp_path / "a", chain_tables, temperatures=(1.0,))
    second, _ = _write(tmp_path / "b", chain_tables, temperatures=(20.0,))
    rows, images, paths = tables.read_tables([first, second])
    assert len(rows) == 6 and len(images) == 30 and len(paths) == 2
    longer = tmp_path / "c"
    longer.mkdir()
    chain = pd.read_csv(first).assign(stages=7)  # a 7-model chain's first three models
    chain.to_csv(longer / "results.csv", index=False)
    assert len(tables.read_results([first, longer / "results.csv"])) == 6


@pytest.mark.parametrize(
    "results, expected",
    [
        ("results.csv", "predictions.csv"),
        ("results_shard0of2.csv", "predictions_shard0of2.csv"),
        ("decisive.csv", "decisive_predictions.csv"),
    ],
)
def test_predictions_path_follows_the_per_image_rule(tmp_path, results, expected):
    assert tables.predictions_csv_path(tmp_path / results) == tmp_path / expected
    assert tables.predictions_path(tmp_path / results) == tmp_path / expected  # none there yet


def test_predictions_are_read_plain_or_gzip_compressed_and_never_both(tmp_path):
    results = tmp_path / "results.csv"
    plain = tmp_path / "predictions.csv"
    compressed = tmp_path / "predictions.csv.gz"
    _predictions(1.0, [3, 1, 4]).to_csv(plain, index=False)
    assert tables.predictions_path(results) == plain
    expected = tables.read_predictions(plain)
    compressed.write_bytes(gzip.compress(plain.read_bytes(), mtime=0))
    message = _one_line_error(lambda: tables.predictions_path(results))
    assert f"predictions {plain} and {compressed} both exist: expected one of them" in message
    plain.unlink()
    assert tables.predictions_path(results) == compressed
    pd.testing.assert_frame_equal(tables.read_predictions(compressed), expected)


def test_a_gz_file_that_is_not_gzip_is_one_line(tmp_path):
    broken = tmp_path / "predictions.csv.gz"
    _predictions(1.0, [3, 1, 4]).to_csv(broken, index=False, compression=None)
    message = _one_line_error(lambda: tables.read_predictions(broken))
    assert message.startswith(f"{broken} is not a readable CSV (")
    whole = gzip.compress(broken.read_bytes(), mtime=0)
    broken.write_bytes(whole[: len(whole) // 2])  # cut short
    assert _one_line_error(lambda: tables.read_predictions(broken)).startswith(f"{broken} is not")


def _predictions(temperature: float, labels) -> pd.DataFrame:
    model = {"dataset": "mnist", "temperature": temperature, "stage": 1, "role": "teacher"}
    return pd.DataFrame(
        [
            model | {"stages": 1, "image": i, "label": y, "prediction": y}
            for i, y in enumerate(labels)
        ]
    )


def test_predictions_of_two_runs_pair_on_one_test_set_and_refuse_two(tmp_path):
    first, same, other = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.csv"
    _predictions(1.0, [3, 1, 4]).to_csv(first, index=False)
    _predictions(100.0, [3, 1, 4]).to_csv(same, index=False)
    _predictions(100.0, [3, 1, 5]).to_csv(other, index=False)
    table = tables.read_predictions([first, same])
    assert len(table) == 6 and set(table["temperature"]) == {1.0, 100.0}
    with pytest.raises(ValueError, match=r"test image 2 has different labels in .*a\.csv.*c\.csv"):
        tables.read_predictions([first, other])

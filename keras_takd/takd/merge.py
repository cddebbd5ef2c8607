r"""Merge the shard CSVs of a sharded `keras_takd.takd.evaluate` run into one results CSV.

The shards hold sums and counts of the attack statistics (see `keras_takd.takd.evaluation`), so the
merged table equals the one an unsharded evaluation writes: mean = sum / successes, max = max.

  python -m keras_takd.takd.merge \
      --results=runs/mnist_takd/results_shard0of2.csv,runs/mnist_takd/results_shard1of2.csv \
      --output=runs/mnist_takd/results.csv

`--output` may be a new file or a results CSV of the same run (its rows are updated); a file
holding results of another evaluation configuration is refused. The shards' per-image tables
(`per_image_shard<i>of<N>.csv` beside each shard CSV) are concatenated into the per-image table
beside `--output` (`per_image.csv` for a `results.csv`).
"""

from __future__ import annotations

from absl import flags

from keras_takd.core.cli import run_main
from keras_takd.takd import evaluation
from keras_takd.takd.analysis import tables

_RESULTS = flags.DEFINE_list("results", None, "Comma-separated shard CSVs, one per shard index.")
_OUTPUT = flags.DEFINE_string("output", None, "The merged results CSV to write (or update).")
flags.mark_flags_as_required(["results", "output"])


def main(argv: list[str]) -> None:
    del argv  # run_main refuses positional arguments
    merged = evaluation.merge_shards(_RESULTS.value)
    rows = merged.to_dict("records")
    table = evaluation.write_results(_OUTPUT.value, rows, str(merged["eval_config"].iloc[0]))
    print(f"merged {len(_RESULTS.value)} shards: {_OUTPUT.value} ({len(table)} rows)")
    per_image = evaluation.merge_per_image(_RESULTS.value)
    if per_image is None:
        print("no per-image tables beside every shard CSV: per_image.csv not written")
    else:
        evaluation.write_per_image(_OUTPUT.value, per_image.to_dict("records"))
        where = tables.per_image_path(_OUTPUT.value)
        print(f"per-image table: {where} ({len(per_image)} rows)")
    predictions = evaluation.merge_predictions(_RESULTS.value, _OUTPUT.value)
    if predictions is not None:  # the per-image predictions of shard 0's metrics
        print(f"predictions: {predictions}")


def run() -> None:
    """Console-script entry point `keras-takd-merge`."""
    run_main(main, "keras-takd-merge")


if __name__ == "__main__":
    run()

r"""Merge the shard CSVs of a sharded `keras_takd.takd.evaluate` run into one results CSV.

The shards hold sums and counts of the attack statistics (see `keras_takd.takd.evaluation`), so the
merged table equals the one an unsharded evaluation writes: mean = sum / successes, max = max.

  python -m keras_takd.takd.merge \
      --results=runs/mnist_takd/results_shard0of2.csv,runs/mnist_takd/results_shard1of2.csv \
      --output=runs/mnist_takd/results.csv

`--output` may be a new file or a results CSV of the same run (its rows are updated); a file
holding results of another evaluation configuration is refused. Shards of different runs (a
model with other weights in two shards) or of another test set are refused. Into a run's own
results.csv, the merge is written to the run's record, under the run's lock (refused while a
training runs) and only if every merged model is one of the run's, with its chain length and
weights; results.csv and per_image.csv are then exported from the record. The shards'
per-image tables (`per_image_shard<i>of<N>.csv` beside each shard CSV) are concatenated into
the per-image table beside `--output` (`per_image.csv` for a `results.csv`).
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
    table, per_image = evaluation.write_merged(_OUTPUT.value, _RESULTS.value)
    print(f"merged {len(_RESULTS.value)} shards: {_OUTPUT.value} ({len(table)} rows)")
    if per_image is None:
        print("no per-image tables beside every shard CSV: per_image.csv not written")
    else:
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

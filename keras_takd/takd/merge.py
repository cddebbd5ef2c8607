r"""Merge the shard CSVs of a sharded `keras_takd.takd.evaluate` run into one results CSV.

The shards hold sums and counts of the attack statistics (see `keras_takd.takd.evaluation`), so the
merged table equals the one an unsharded evaluation writes: mean = sum / successes, max = max.

  python -m keras_takd.takd.merge \
      --inputs=runs/mnist_takd/results_shard0of2.csv,runs/mnist_takd/results_shard1of2.csv \
      --output=runs/mnist_takd/results.csv

`--output` may be a new file or a results CSV of the same run (its rows are updated); a file
holding results of another evaluation configuration is refused.
"""

from __future__ import annotations

from absl import flags

from keras_takd.core.cli import run_main
from keras_takd.takd import evaluation

_INPUTS = flags.DEFINE_list("inputs", None, "Comma-separated shard CSVs, one per shard index.")
_OUTPUT = flags.DEFINE_string("output", None, "The merged results CSV to write (or update).")
flags.mark_flags_as_required(["inputs", "output"])


def main(argv: list[str]) -> None:
    del argv  # run_main refuses positional arguments
    merged = evaluation.merge_shards(_INPUTS.value)
    rows = merged.to_dict("records")
    table = evaluation.write_results(_OUTPUT.value, rows, str(merged["eval_config"].iloc[0]))
    print(f"merged {len(_INPUTS.value)} shards: {_OUTPUT.value} ({len(table)} rows)")


def run() -> None:
    """Console-script entry point `keras-takd-merge`."""
    run_main(main, "keras-takd-merge")


if __name__ == "__main__":
    run()

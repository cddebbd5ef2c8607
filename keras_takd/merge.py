r"""Merge the shard CSVs of a sharded `keras_takd.evaluate` run into one results CSV.

The shards hold sums and counts of the attack statistics (see `keras_takd.evaluation`), so the
merged table equals the one an unsharded evaluation writes: mean = sum / successes, max = max.

  python -m keras_takd.merge \
      --inputs=runs/mnist_takd/results_shard0of2.csv,runs/mnist_takd/results_shard1of2.csv \
      --output=runs/mnist_takd/results.csv

`--output` may be a new file or a results CSV of the same run (its rows are updated); a file
holding results of another evaluation configuration is refused.
"""

from __future__ import annotations

from absl import flags

from keras_takd import evaluation
from keras_takd.main import run_main

_INPUTS = flags.DEFINE_list("inputs", None, "Comma-separated shard CSVs, one per shard index.")
_OUTPUT = flags.DEFINE_string("output", None, "The merged results CSV to write (or update).")
flags.mark_flags_as_required(["inputs", "output"])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments: {' '.join(argv[1:])}")
    merged = evaluation.merge_shards(_INPUTS.value)
    rows = merged.to_dict("records")
    table = evaluation.write_results(_OUTPUT.value, rows, str(merged["eval_config"].iloc[0]))
    print(f"merged {len(_INPUTS.value)} shards: {_OUTPUT.value} ({len(table)} rows)")


def run() -> None:
    """Console-script entry point."""
    run_main(main)


if __name__ == "__main__":
    run()

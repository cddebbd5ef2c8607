"""How many epochs does a chain's teacher need? Its test accuracy after every epoch.

The decisive run (flags/mnist_decisive.cfg) must train long enough that its T = 1 teacher is
within 0.3 points of its 50-epoch accuracy (99.39% on MNIST with the paper's settings;
figures/cpu/README.md, "Earlier single runs"). The learning-rate schedule decays per step
and the seeds depend on the unit, not on the epoch count, so an E-epoch run is the first E
epochs of a longer one: one run of `--max_epochs` epochs with the test accuracy recorded after
each epoch gives the accuracy of every shorter run.

  python benchmarks/teacher_epochs.py --data_dir=../shared/data --max_epochs=12
  python benchmarks/teacher_epochs.py --report_only  # redraw the .md from the .json

Writes benchmarks/results/teacher_epochs.json (the summary and every epoch's accuracy),
teacher_epochs.md and teacher_epochs.csv (epoch, test_accuracy).
"""

import os
import pathlib
import tempfile
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402
from common import reports  # noqa: E402
from common.environment import RESULTS_DIR  # noqa: E402

from keras_takd.core import cli, files  # noqa: E402

NAME = "teacher_epochs"

_DATA_DIR = flags.DEFINE_string("data_dir", "../shared/data", "Folder with mnist.npz.")
_TEMPERATURE = flags.DEFINE_float("temperature", 1.0, "Temperature of the teacher.")
_MAX_EPOCHS = flags.DEFINE_integer("max_epochs", 12, "Epochs to train.", lower_bound=1)
_REFERENCE = flags.DEFINE_float(
    "reference",
    0.9939,
    "Test accuracy after 50 epochs (measured, figures/cpu/README.md).",
    lower_bound=0,
)
_TOLERANCE = flags.DEFINE_float("tolerance", 0.003, "Allowed shortfall from the reference.")
_OUT = flags.DEFINE_string("out", str(RESULTS_DIR / NAME), "Result stem.")
_REPORT_ONLY = flags.DEFINE_bool(
    "report_only", False, "Compute nothing: redraw <out>.md from <out>.json."
)


def accuracy_by_epoch(data_dir: str, temperature: float, max_epochs: int) -> list[dict]:
    """Trains one teacher `max_epochs` epochs at `temperature`; its test accuracy per epoch.

    Returns:
        `[{"epoch": 1, "test_accuracy": ...}, ...]`.
    """
    import keras
    import numpy as np

    from keras_takd.core.data import load_dataset
    from keras_takd.core.distillation import TrainConfig
    from keras_takd.takd.chains import run_chain

    data = load_dataset("mnist", data_dir)
    records = []

    class TestAccuracy(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logits = self.model.predict(data.x_test, batch_size=1024, verbose=0)
            accuracy = float(np.mean(np.argmax(logits, -1) == data.y_test))
            records.append({"epoch": epoch + 1, "test_accuracy": accuracy})
            print(f"epoch {epoch + 1}: test accuracy {100 * accuracy:.2f}%", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        config = TrainConfig(epochs=max_epochs)
        run_chain(data, [temperature], 1, tmp, config=config, callbacks=[TestAccuracy()], verbose=0)
    return records


def markdown_report(summary: dict[str, Any]) -> str:
    """The report: each epoch's test accuracy and the first within the tolerance."""
    bound = summary["reference_50_epochs"] - summary["tolerance"]
    first = summary["first_epoch_within_tolerance"]
    lines = [
        "# Teacher epochs: test accuracy of a chain's teacher after every epoch",
        "",
        f"Command: `{summary['command']}`.",
        "",
        f"Teacher at T = {summary['temperature']:g}. Reference: "
        f"{summary['reference_50_epochs']:.2%} after 50 epochs; within "
        f"{100 * summary['tolerance']:.1f} points of it means at least {bound:.2%}. "
        + (f"First epoch within: {first}." if first else "No epoch is within."),
        "",
        "| epoch | test accuracy |",
        "|---|---|",
    ]
    for row in summary["test_accuracy_by_epoch"]:
        lines.append(f"| {row['epoch']} | {row['test_accuracy']:.2%} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    del argv
    out = pathlib.Path(_OUT.value)
    if _REPORT_ONLY.value:
        reports.rewrite_report(out.parent, out.name, markdown_report)
        return
    import pandas as pd

    records = accuracy_by_epoch(_DATA_DIR.value, _TEMPERATURE.value, _MAX_EPOCHS.value)
    table = pd.DataFrame(records)
    reached = table[table.test_accuracy >= _REFERENCE.value - _TOLERANCE.value]
    summary = {
        "temperature": _TEMPERATURE.value,
        "reference_50_epochs": _REFERENCE.value,
        "tolerance": _TOLERANCE.value,
        "first_epoch_within_tolerance": int(reached.epoch.min()) if len(reached) else None,
        "command": "python benchmarks/teacher_epochs.py "
        + " ".join(
            f"--{name}={flags.FLAGS[name].value}"
            for name in ("data_dir", "temperature", "max_epochs")
        ),
        "test_accuracy_by_epoch": records,
    }
    files.write_csv_atomic(out.with_suffix(".csv"), table)
    reports.write_results(out.parent, out.name, summary, markdown_report, indent=2)
    print(markdown_report(summary))


if __name__ == "__main__":
    cli.run_main(main, NAME)  # bad input: one line and exit 1, not a traceback

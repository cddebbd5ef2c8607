"""Measurement: test accuracy of a chain's teacher after every epoch, to size a run's epochs.

The decisive run (flags/mnist_decisive.cfg) must train long enough that its T = 1 teacher is
within 0.3 points of its 50-epoch accuracy (99.39% on MNIST with the paper's settings; README,
"Earlier single runs"). The learning-rate schedule decays per step and the seeds depend on the
unit, not on the epoch count, so an E-epoch run is the first E epochs of a longer one: one run
of `--max_epochs` epochs with the test accuracy recorded after each epoch gives the accuracy of
every shorter run.

  python benchmarks/teacher_epochs.py --data_dir=../shared/data --max_epochs=12

Writes benchmarks/results/teacher_epochs.csv (epoch, test_accuracy) and a JSON summary.
"""

import json
import os
import pathlib
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

_DATA_DIR = flags.DEFINE_string("data_dir", "../shared/data", "Folder with mnist.npz.")
_TEMPERATURE = flags.DEFINE_float("temperature", 1.0, "Temperature of the teacher.")
_MAX_EPOCHS = flags.DEFINE_integer("max_epochs", 12, "Epochs to train.", lower_bound=1)
_REFERENCE = flags.DEFINE_float(
    "reference", 0.9939, "Test accuracy after 50 epochs (measured, README).", lower_bound=0
)
_TOLERANCE = flags.DEFINE_float("tolerance", 0.003, "Allowed shortfall from the reference.")
_OUT = flags.DEFINE_string(
    "out", str(pathlib.Path(__file__).parent / "results" / "teacher_epochs"), "Result stem."
)


def main(argv):
    del argv
    import keras
    import numpy as np
    import pandas as pd

    from keras_takd.core.data import load_dataset
    from keras_takd.core.distillation import TrainConfig
    from keras_takd.takd.chains import run_chain

    data = load_dataset("mnist", _DATA_DIR.value)
    records = []

    class TestAccuracy(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logits = self.model.predict(data.x_test, batch_size=1024, verbose=0)
            accuracy = float(np.mean(np.argmax(logits, -1) == data.y_test))
            records.append({"epoch": epoch + 1, "test_accuracy": accuracy})
            print(f"epoch {epoch + 1}: test accuracy {100 * accuracy:.2f}%", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        run_chain(
            data,
            [_TEMPERATURE.value],
            1,
            tmp,
            config=TrainConfig(epochs=_MAX_EPOCHS.value),
            callbacks=[TestAccuracy()],
            verbose=0,
        )
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
    }
    out = pathlib.Path(_OUT.value)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out.with_suffix(".csv"), index=False)
    out.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    app.run(main)

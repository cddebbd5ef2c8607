"""The flags that training (`keras_takd.takd.train`) and evaluation (`.evaluate`) share.

absl flag names are global, so a flag both commands take is defined here, once, and each
command module imports this module; neither imports the other to borrow its flags.
"""

from __future__ import annotations

from absl import flags

OUTPUT_DIR = flags.DEFINE_string(
    "output_dir",
    "runs",
    "The run folder: where training writes models, SavedModels, results.csv and run.json, "
    "and what evaluation reads and adds its columns to.",
)
DATA_DIR = flags.DEFINE_string(
    "data_dir",
    None,
    "Folder holding <dataset>.npz (uint8 x_train, y_train, x_test, y_test); a folder without "
    "it is refused. Unset: tensorflow-datasets loads (the first time downloads) the dataset. "
    "Evaluation defaults to the training run's.",
)

"""Where a chain run keeps its models: the one place that names a run folder's model folders.

A run of one seed keeps the layout every run had before replicates (issue 25), so runs
trained then load unchanged; a run of several seeds (independent chains) gives each seed a
folder of its own:

    one seed        <dataset>/init                 <dataset>/T<T>/stage<k>
    several seeds   <dataset>/init/seed<s>         <dataset>/T<T>/seed<s>/stage<k>

TensorFlow-free, so evaluation can build the same paths before its TensorFlow import.
"""

from __future__ import annotations

import pathlib


def init_folder(label: str, seed: int | None = None) -> pathlib.PurePath:
    """The warm start's folder, relative to the run folder.

    Args:
        label: the dataset's label (`keras_takd.core.data.Dataset.label`).
        seed: the chain's seed in a run of several seeds; None in a run of one seed.
    """
    folder = pathlib.PurePath(label, "init")
    return folder if seed is None else folder / f"seed{int(seed)}"


def model_folder(
    label: str, temperature: float, stage: int, seed: int | None = None
) -> pathlib.PurePath:
    """A stage's folder, relative to the run folder.

    Args:
        label: the dataset's label.
        temperature: the chain's temperature T.
        stage: the model's stage (1 = the teacher).
        seed: the chain's seed in a run of several seeds; None in a run of one seed.
    """
    folder = pathlib.PurePath(label, f"T{float(temperature):g}")
    if seed is not None:
        folder /= f"seed{int(seed)}"
    return folder / f"stage{int(stage)}"

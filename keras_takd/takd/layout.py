"""Where a chain run keeps its models: the one place that names a run folder's model folders.

A run of one seed keeps the layout every run had before replicates (issue 25), so runs
trained then load unchanged; a run of several seeds (independent chains) gives each seed a
folder of its own:

    one seed        <dataset>/init                 <dataset>/T<T>/stage<k>
    several seeds   <dataset>/init/seed<s>         <dataset>/T<T>/seed<s>/stage<k>

A model row's `saved_model` and `keras_model` paths are rebuilt from this layout in the run
folder (`model_paths`, `stage_paths`) when training resumes there, and when the tables are
exported with the recorded paths gone, so a run folder copied or moved elsewhere points at
its own models once the folder it was trained in is deleted.

TensorFlow-free, so evaluation can build the same paths before its TensorFlow import.
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping


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


def folder_seed(seed: int, seeded: bool) -> int | None:
    """The seed that names a chain's folders.

    Args:
        seed: the chain's seed.
        seeded: whether the run keeps each seed in a folder of its own (`seed_folders`).

    Returns:
        `seed` in a run of several seeds, None in a run of one seed.
    """
    return seed if seeded else None


def seed_folders(run_json: Mapping) -> bool:
    """Whether a run keeps each seed in a folder of its own: run.json's
    `configuration.replicates.seed_folders`, which a run of several seeds records."""
    return bool(run_json.get("configuration", {}).get("replicates", {}).get("seed_folders"))


def model_paths(folder: str | pathlib.Path, row: Mapping, seeded: bool) -> dict[str, str]:
    """The `saved_model` and `keras_model` paths of a model row in the run folder `folder`.

    Args:
        folder: the run folder.
        row: the model's dataset (label), temperature, stage and seed.
        seeded: whether the run keeps each seed in a folder of its own (`seed_folders`).
    """
    seed = folder_seed(row["seed"], seeded)
    folder = pathlib.Path(folder)
    return stage_paths(
        folder / model_folder(row["dataset"], row["temperature"], row["stage"], seed)
    )


def stage_paths(stage_dir: pathlib.Path) -> dict[str, str]:
    """The `saved_model` and `keras_model` columns of the model in the folder `stage_dir`."""
    return {
        "saved_model": str(stage_dir / "saved_model"),
        "keras_model": str(stage_dir / "model.keras"),
    }

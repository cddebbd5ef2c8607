"""Loading a unit's model: a model file that is not a loadable .keras is named, not retried."""

import json
import os
import zipfile

import pytest

from keras_takd.core.files import NotRegularFileError
from keras_takd.takd.evaluation.units import load_model


def _keras_file(path, config: str):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", config)
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.15.0"}))
        archive.writestr("model.weights.h5", b"")
    return path


@pytest.mark.parametrize("kind", ["folder", "FIFO"])
def test_a_model_file_that_is_not_a_regular_file_is_named(tmp_path, kind, no_hang):
    model = tmp_path / "model.keras"
    model.mkdir() if kind == "folder" else os.mkfifo(model)
    with no_hang(), pytest.raises(NotRegularFileError, match=f"{model} is a {kind}, expected"):
        load_model(model)


def test_a_model_file_with_a_broken_config_is_named(tmp_path):
    model = _keras_file(tmp_path / "model.keras", '{"class_name": "Sequential", "config": {')
    with pytest.raises(ValueError, match=f"^model file {model} is corrupt .its config.json is not"):
        load_model(model)


def test_a_model_file_keras_cannot_rebuild_is_named(tmp_path):
    config = {"module": "nowhere", "class_name": "NoSuchModel", "config": {}}
    model = _keras_file(tmp_path / "model.keras", json.dumps(config))
    with pytest.raises(ValueError, match=f"^model file {model} cannot be loaded by Keras: "):
        load_model(model)

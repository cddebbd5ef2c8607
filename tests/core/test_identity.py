"""Identities of models, arrays and code (keras_takd.core.identity)."""

import zipfile

import keras
import numpy as np
import pytest

from keras_takd.core import identity


def _saved(path, activation="relu", optimizer="adam"):
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(3, activation=activation)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2)(hidden))
    model.compile(optimizer=optimizer, loss="mse")
    model.save(path)
    return path


def test_architecture_ignores_layer_names_and_compile_settings(tmp_path):
    first = _saved(tmp_path / "a.keras")
    second = _saved(tmp_path / "b.keras", optimizer="sgd")  # new layer names, other optimizer
    assert identity.architecture_sha256(first) == identity.architecture_sha256(second)


def test_architecture_survives_a_load_and_save(tmp_path):
    """A model built with a shared dtype policy saves its memory address (`shared_object_id`);
    loaded and saved again, it has none: the same architecture all the same."""
    policy = keras.DTypePolicy("float32")
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(3, dtype=policy)(inputs)
    keras.Model(inputs, keras.layers.Dense(2, dtype=policy)(hidden)).save(tmp_path / "a.keras")
    keras.saving.load_model(tmp_path / "a.keras").save(tmp_path / "b.keras")
    with zipfile.ZipFile(tmp_path / "a.keras") as archive:
        assert b"shared_object_id" in archive.read("config.json")
    first, second = (identity.architecture_sha256(tmp_path / n) for n in ("a.keras", "b.keras"))
    assert first == second


def test_architecture_changes_with_an_activation(tmp_path):
    relu = _saved(tmp_path / "relu.keras")
    sigmoid = _saved(tmp_path / "sigmoid.keras", activation="sigmoid")
    assert identity.architecture_sha256(relu) != identity.architecture_sha256(sigmoid)


def test_architecture_of_a_broken_file_names_it(tmp_path):
    broken = tmp_path / "broken.keras"
    with zipfile.ZipFile(broken, "w") as archive:
        archive.writestr("config.json", '{"class_name": "Func')
    with pytest.raises(ValueError, match="broken.keras"):
        identity.architecture_sha256(broken)
    with pytest.raises(ValueError, match="missing.keras"):
        identity.architecture_sha256(tmp_path / "missing.keras")


def test_array_identity_follows_values_dtypes_and_order():
    x, y = np.zeros((3, 2), np.float32), np.arange(3)
    assert identity.array_sha256(x, y) == identity.array_sha256(x.copy(), y.copy())
    assert identity.array_sha256(255 - x, y) != identity.array_sha256(x, y)
    assert identity.array_sha256(x.astype(np.float64), y) != identity.array_sha256(x, y)
    assert identity.array_sha256(y, x) != identity.array_sha256(x, y)


def test_source_identity_covers_what_a_module_imports_and_nothing_else():
    closure = identity._closure("keras_takd.attacks.carlini_wagner.l0")
    assert "keras_takd.attacks.common" in closure
    assert "keras_takd.attacks.carlini_wagner.search" in closure
    assert "keras_takd.attacks.apgd" not in closure
    assert not any(name.startswith("keras_takd.takd") for name in closure)
    l2 = identity.source_sha256("keras_takd.attacks.carlini_wagner.l2")
    assert l2 != identity.source_sha256("keras_takd.attacks.apgd")
    with pytest.raises(ValueError, match="numpy"):
        identity.source_sha256("numpy")


def test_differences_name_each_part_that_differs():
    recorded = {"weights_sha256": "a" * 64, "test_set_sha256": "b" * 64}
    wanted = {"weights_sha256": "a" * 64, "test_set_sha256": "c" * 64, "code_sha256": "d" * 64}
    assert identity.differences(recorded, wanted) == [
        f"test_set_sha256 {'b' * 12} recorded, {'c' * 12} now",
        f"code_sha256 none recorded, {'d' * 12} now",
    ]
    assert identity.differences(wanted, wanted) == []


def test_a_model_file_that_is_a_fifo_is_named_at_once(tmp_path, no_hang):
    import os

    model = tmp_path / "model.keras"
    os.mkfifo(model)
    with no_hang(), pytest.raises(ValueError, match=f"^{model}: .*{model} is a FIFO, expected"):
        identity.architecture_sha256(model)

"""Models saved before the package was restructured (flat `keras_takd.<module>`) still load.

Keras records each custom object's module and its registered name; the registered names
(`keras_takd>TemperatureSoftmax`, `keras_takd>DistillerModel`) did not change, so a file
that names the old modules must load with the same weights and outputs.
"""

import json
import zipfile

import keras
import numpy as np
import pytest

from keras_takd.core.distillation import DistillerModel
from keras_takd.core.layers import TemperatureSoftmax
from keras_takd.core.models import build_model, with_temperature

OLD_MODULES = {
    "keras_takd.core.layers": "keras_takd.layers",
    "keras_takd.core.distillation": "keras_takd.distillation",
}


def _as_saved_before_the_move(path, old_path):
    """Copies a .keras archive with every keras_takd module path set to its old name."""
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(old_path, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "config.json":
                text = data.decode()
                for new, old in OLD_MODULES.items():
                    text = text.replace(f'"{new}"', f'"{old}"')
                assert '"keras_takd.core.' not in text
                data = text.encode()
            target.writestr(item, data)


@pytest.mark.parametrize("kind", ["tempered", "distiller"])
def test_a_model_saved_under_the_old_module_names_loads(tmp_path, kind):
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).uniform(size=(4, 28, 28, 1)).astype("float32")
    if kind == "tempered":
        model = with_temperature(build_model("mnist"), 20.0)
    else:
        model = DistillerModel(build_model("mnist"), None, temperature=7.0, distil_weight=0.5)
    model(x)
    model.save(tmp_path / "new.keras")
    _as_saved_before_the_move(tmp_path / "new.keras", tmp_path / "old.keras")
    old_config = json.loads(zipfile.ZipFile(tmp_path / "old.keras").read("config.json"))
    assert "keras_takd.layers" in json.dumps(old_config) or kind == "distiller"

    loaded = keras.saving.load_model(tmp_path / "old.keras")
    np.testing.assert_allclose(loaded(x), model(x), rtol=1e-6, atol=1e-7)
    if kind == "tempered":
        layer = [la for la in loaded.layers if isinstance(la, TemperatureSoftmax)][0]
        assert layer.temperature == 20.0
    else:
        assert isinstance(loaded, DistillerModel) and loaded.temperature == 7.0

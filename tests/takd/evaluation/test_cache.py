"""The unit cache: paths, checksums, a unit stored and read back, and what is never trusted."""

import json

import pytest

from keras_takd.core import metrics
from keras_takd.takd.evaluation import cache
from keras_takd.takd.evaluation.config import EvaluationConfig
from keras_takd.takd.evaluation.indicator_units import INDICATOR_SETTINGS

SHA = "a" * 64
CONFIG = EvaluationConfig(attacks=("l2",), num_images=4, shard_index=1, num_shards=2)
ATTACK_RESULT = {
    "statistics": {"attacked": 1, "excluded": 1, "successes": 1, "sum": 0.5, "max": 0.5},
    "per_image": {"index": [1], "success": [True], "distance": [0.5], "const": [0.1]},
    "images": [2, 4],
    "seconds": 1.5,
}


def test_unit_paths_split_attack_units_by_shard_but_not_the_metrics(tmp_path):
    assert cache.unit_path(tmp_path, "metrics", CONFIG) == tmp_path / "metrics.json"
    assert cache.unit_path(tmp_path, "l2", CONFIG) == tmp_path / "shard1of2" / "l2.json"
    indicators = cache.unit_path(tmp_path, "l2_indicators", CONFIG)
    assert indicators == tmp_path / "shard1of2" / "l2_indicators.json"


def test_a_stored_unit_is_read_back_for_its_weights_and_images_only(tmp_path):
    path = cache.unit_path(tmp_path, "l2", CONFIG)
    stored = cache.store_unit(path, ATTACK_RESULT, SHA)
    assert stored == ATTACK_RESULT | {
        "schema": cache.UNIT_SCHEMA, "weights_sha256": SHA, "checksum": stored["checksum"],
    }  # fmt: skip
    assert stored["checksum"] == cache.unit_checksum(stored)
    assert json.loads(path.read_text()) == stored
    notes = []
    assert cache.load_unit(path, SHA, [2, 4], "l2", notes.append) == stored
    assert cache.load_unit(path, "b" * 64, [2, 4], "l2", notes.append) is None  # other weights
    assert cache.load_unit(path, SHA, [0, 4], "l2", notes.append) is None  # other images
    assert cache.load_unit(tmp_path / "none.json", SHA, [2, 4], "l2", notes.append) is None
    assert notes == []  # none of these is damage: silently recomputed


def test_the_checksum_ignores_key_order_and_itself():
    unit = dict(ATTACK_RESULT)
    assert cache.unit_checksum(unit) == cache.unit_checksum(dict(reversed(unit.items())))
    assert cache.unit_checksum(unit | {"checksum": "x"}) == cache.unit_checksum(unit)
    assert cache.unit_checksum(unit | {"seconds": 2.0}) != cache.unit_checksum(unit)


@pytest.mark.parametrize(
    "damage, why",
    [
        (lambda path: path.write_text("{"), "not a unit (unreadable JSON)"),
        (lambda path: path.write_text("[]"), "not a unit (unreadable JSON)"),
        (lambda path: _edit(path, seconds=9.0), "does not match its checksum"),
        (lambda path: _edit(path, schema=1, rechecksum=True), "unit schema 1"),
        (lambda path: _edit(path, per_image={}, images=[0], rechecksum=True), "lacks what"),
    ],
)
def test_a_damaged_unit_is_named_in_one_note_and_recomputed(tmp_path, damage, why):
    path = cache.unit_path(tmp_path, "l2", CONFIG)
    cache.store_unit(path, ATTACK_RESULT, SHA)
    damage(path)
    notes = []
    assert cache.load_unit(path, SHA, [2, 4], "l2", notes.append) is None
    assert len(notes) == 1 and notes[0].startswith(f"{path}: ") and why in notes[0]
    assert notes[0].endswith("; recomputing it")


def _edit(path, rechecksum=False, **changes):
    unit = json.loads(path.read_text()) | changes
    if rechecksum:
        unit["checksum"] = cache.unit_checksum(unit)
    path.write_text(json.dumps(unit))


def test_cached_units_keep_an_indicator_unit_only_beside_its_attack_unit(tmp_path):
    config = EvaluationConfig(attacks=("l2",), num_images=4)
    indicator = {
        "index": [1],
        "flags": {"vanishing_gradients": [False], "silent_success": None},
        "settings": INDICATOR_SETTINGS,
        "images": [0, 4],
        "seconds": 0.1,
    }
    attack_result = ATTACK_RESULT | {"images": [0, 4]}
    attack = cache.store_unit(cache.unit_path(tmp_path, "l2", config), attack_result, SHA)
    path = cache.unit_path(tmp_path, "l2_indicators", config)
    cache.store_unit(path, indicator | {"attack_checksum": attack["checksum"]}, SHA)
    notes = []
    done = cache.cached_units(tmp_path, SHA, config, 16, notes.append)
    assert sorted(done) == ["l2", "l2_indicators"]
    cache.store_unit(path, indicator | {"attack_checksum": "of an older l2 unit"}, SHA)
    assert sorted(cache.cached_units(tmp_path, SHA, config, 16, notes.append)) == ["l2"]
    assert notes == []


METRICS_RESULT = {
    "metrics": {
        "metric_images": 16,
        "test_accuracy": 0.9,
        "sensitivity_softmax_zero_fraction": 0.5,
    },
    "settings": metrics.SENSITIVITY_SETTINGS,
    "predictions": [7] * 16,
    "images": [0, 16],
    "seconds": 2.0,
}
INDICATOR_RESULT = {
    "index": [1],
    "flags": {"vanishing_gradients": [False], "silent_success": None},
    "settings": INDICATOR_SETTINGS,
    "attack_checksum": "of the l2 unit",
    "images": [2, 4],
    "seconds": 0.1,
}


@pytest.mark.parametrize(
    "kind, result, earlier_settings",
    [
        # Metrics units of the float32 sensitivities recorded no settings.
        ("metrics", METRICS_RESULT, None),
        ("metrics", METRICS_RESULT, metrics.SENSITIVITY_SETTINGS | {"precision": "float32"}),
        # Indicator units of the float32 vanishing-gradient check recorded no precision.
        (
            "l2_indicators",
            INDICATOR_RESULT,
            {k: v for k, v in INDICATOR_SETTINGS.items() if k != "precision"},
        ),
    ],
)
def test_a_unit_computed_by_an_earlier_rule_is_named_in_a_note_and_recomputed(
    tmp_path, kind, result, earlier_settings
):
    path = cache.unit_path(tmp_path, kind, CONFIG)
    images = result["images"]
    stored = cache.store_unit(path, result, SHA)
    notes = []
    assert cache.load_unit(path, SHA, images, kind, notes.append) == stored
    assert notes == []
    earlier = {k: v for k, v in result.items() if k != "settings"}
    if earlier_settings is not None:
        earlier["settings"] = earlier_settings
    cache.store_unit(path, earlier, SHA)
    assert cache.load_unit(path, SHA, images, kind, notes.append) is None
    assert len(notes) == 1 and "computed with settings" in notes[0]
    assert repr(cache.unit_settings(kind)) in notes[0] and notes[0].endswith("; recomputing it")


@pytest.mark.parametrize("predictions", [None, [7] * 15, [7.5] * 16])
def test_a_metrics_unit_without_a_prediction_per_image_is_recomputed(tmp_path, predictions):
    path = cache.unit_path(tmp_path, "metrics", CONFIG)
    unit = {k: v for k, v in METRICS_RESULT.items() if k != "predictions"}
    if predictions is not None:  # else: cached before predictions were kept
        unit["predictions"] = predictions
    cache.store_unit(path, unit, SHA)
    notes = []
    assert cache.load_unit(path, SHA, [0, 16], "metrics", notes.append) is None
    assert notes == [f"{path}: lacks what a metrics unit holds; recomputing it"]


def test_only_metrics_and_indicator_units_record_settings():
    assert cache.unit_settings("metrics")["precision"] == "float64"
    assert cache.unit_settings("l2_indicators")["precision"] == "float64"
    assert cache.unit_settings("apgd_ce_indicators")["precision"] == "float64"
    assert cache.unit_settings("l2") is None

"""The unit cache: units stored in the run's record, reused only on their full identity, and
what is never trusted."""

import contextlib
import json
import sqlite3

import pytest

from keras_takd.core import metrics
from keras_takd.takd.evaluation import cache
from keras_takd.takd.evaluation.config import EvaluationConfig
from keras_takd.takd.evaluation.indicator_units import INDICATOR_SETTINGS

CONFIG = EvaluationConfig(attacks=("l2",), num_images=4, shard_index=1, num_shards=2)
EVALUATION = ("e1", {"num_images": 4})
MODEL = {"weights_sha256": "a" * 64, "architecture_sha256": "b" * 64}
MODEL_KEY = ("mnist", 5.0, 0, 1)
TEST_SET = "c" * 64
ATTACK_RESULT = {
    "statistics": {"attacked": 1, "excluded": 1, "successes": 1, "sum": 0.5, "max": float("nan")},
    "per_image": {"index": [1], "success": [True], "distance": [0.5], "const": [0.1]},
    "images": [2, 4],
    "seconds": 1.5,
}
INDICATOR_RESULT = {
    "index": [1],
    "flags": {"vanishing_gradients": [False], "silent_success": None},
    "settings": INDICATOR_SETTINGS,
    "images": [2, 4],
    "seconds": 0.1,
}


def _wanted(kind="l2", model=MODEL, test_set=TEST_SET, config=CONFIG, images=(2, 4)):
    return {kind: (images, cache.unit_identity(kind, config, model, test_set))}


def _store(folder, kind="l2", result=ATTACK_RESULT, **wanted):
    images, identity = _wanted(kind, **wanted)[kind]
    return cache.store_unit(folder, EVALUATION, (*MODEL_KEY, kind, *images), identity, result)


def _cached(folder, wanted, notes):
    stored = cache.stored_units(folder, EVALUATION[0])
    return cache.cached_units(
        stored, MODEL_KEY, wanted, lambda kind: f"stage 1 {kind}", notes.append
    )


def test_a_stored_unit_is_read_back_for_its_identity(tmp_path):
    stored = _store(tmp_path)
    assert stored == ATTACK_RESULT | {"schema": cache.UNIT_SCHEMA, "checksum": stored["checksum"]}
    assert stored["checksum"] == cache.unit_checksum(stored)
    notes = []
    (done,) = _cached(tmp_path, _wanted(), notes).values()
    assert json.dumps(done, sort_keys=True) == json.dumps(stored, sort_keys=True)  # NaN too
    assert _cached(tmp_path, _wanted(images=(0, 4)), notes) == {}  # other images: not stored
    assert _cached(tmp_path, _wanted("linf"), notes) == {}
    assert notes == []


@pytest.mark.parametrize(
    "changed, named",
    [
        ({"model": MODEL | {"weights_sha256": "d" * 64}}, "weights_sha256 aaaaaaaaaaaa recorded"),
        ({"model": MODEL | {"architecture_sha256": "d" * 64}}, "architecture_sha256 bbbbbbbbbbbb"),
        ({"test_set": "d" * 64}, "test_set_sha256 cccccccccccc recorded, dddddddddddd now"),
        (
            {"config": EvaluationConfig(attacks=("l2",), num_images=4, budgets={"l2": 2.0})},
            "settings",
        ),
    ],
)
def test_a_unit_of_another_identity_is_named_in_one_line_and_recomputed(tmp_path, changed, named):
    _store(tmp_path)
    notes = []
    assert _cached(tmp_path, _wanted(**changed), notes) == {}
    (note,) = notes
    assert note.startswith("stage 1 l2: ") and named in note and note.endswith("; recomputing it")


def test_a_unit_of_other_code_is_named_and_recomputed(tmp_path, monkeypatch):
    _store(tmp_path)
    wanted = _wanted()
    wanted["l2"][1]["code_sha256"] = "e" * 64  # as if the attack's module had been edited
    notes = []
    assert _cached(tmp_path, wanted, notes) == {}
    assert len(notes) == 1 and "code_sha256" in notes[0]


def test_the_code_identity_is_the_attacks_module_and_what_it_imports():
    assert cache.code_sha256("l2") == cache.code_sha256("l2_softmax_T")  # the same attack
    assert len({cache.code_sha256(k) for k in ("l2", "linf", "metrics", "l2_indicators")}) == 4


def test_the_checksum_ignores_key_order_and_itself():
    unit = dict(ATTACK_RESULT)
    assert cache.unit_checksum(unit) == cache.unit_checksum(dict(reversed(unit.items())))
    assert cache.unit_checksum(unit | {"checksum": "x"}) == cache.unit_checksum(unit)
    assert cache.unit_checksum(unit | {"seconds": 2.0}) != cache.unit_checksum(unit)


def _edit(folder, rechecksum=False, **changes):
    """Edits the stored unit's payload in the record, as a hand or a bug would."""
    with contextlib.closing(sqlite3.connect(folder / "record.sqlite")) as connection:
        with connection:
            payload = json.loads(connection.execute("SELECT payload FROM units").fetchone()[0])
            payload |= changes
            if rechecksum:
                payload["checksum"] = cache.unit_checksum(payload)
            connection.execute("UPDATE units SET payload = ?", (json.dumps(payload),))


@pytest.mark.parametrize(
    "damage, why",
    [
        (lambda folder: _edit(folder, seconds=9.0), "does not match its checksum"),
        (lambda folder: _edit(folder, schema=2, rechecksum=True), "unit schema 2"),
        (lambda folder: _edit(folder, per_image={}, images=[0], rechecksum=True), "lacks what"),
    ],
)
def test_a_damaged_unit_is_named_in_one_note_and_recomputed(tmp_path, damage, why):
    _store(tmp_path)
    damage(tmp_path)
    notes = []
    assert _cached(tmp_path, _wanted(), notes) == {}
    assert len(notes) == 1 and notes[0].startswith("stage 1 l2: ") and why in notes[0]
    assert notes[0].endswith("; recomputing it")


def test_cached_units_keep_an_indicator_unit_only_beside_its_attack_unit(tmp_path):
    attack = _store(tmp_path)
    _store(tmp_path, "l2_indicators", INDICATOR_RESULT | {"attack_checksum": attack["checksum"]})
    wanted = _wanted() | _wanted("l2_indicators")
    notes = []
    assert sorted(_cached(tmp_path, wanted, notes)) == ["l2", "l2_indicators"]
    _store(tmp_path, "l2_indicators", INDICATOR_RESULT | {"attack_checksum": "of an older unit"})
    assert sorted(_cached(tmp_path, wanted, notes)) == ["l2"]
    assert notes == []


def test_a_unit_is_stored_again_in_place_and_a_shard_beside_the_whole(tmp_path):
    _store(tmp_path)
    _store(tmp_path, result=ATTACK_RESULT | {"seconds": 3.0})  # recomputed: replaces it
    _store(tmp_path, images=(0, 4), result=ATTACK_RESULT | {"images": [0, 4]})
    stored = cache.stored_units(tmp_path, EVALUATION[0])
    assert sorted(stored) == [(*MODEL_KEY, "l2", 0, 4), (*MODEL_KEY, "l2", 2, 4)]
    assert stored[(*MODEL_KEY, "l2", 2, 4)]["payload"]["seconds"] == 3.0


def test_each_unit_records_its_settings():
    assert cache.unit_settings("metrics", CONFIG) == json.loads(
        json.dumps(metrics.SENSITIVITY_SETTINGS)
    )
    assert cache.unit_settings("l2_indicators", CONFIG)["precision"] == "float64"
    assert cache.unit_settings("apgd_ce_indicators", CONFIG)["precision"] == "float64"
    l2 = cache.unit_settings("l2", CONFIG)
    assert l2["options"]["binary_search_steps"] == 9 and l2["budget"] == 1.0
    assert cache.unit_settings("l2_softmax_T", CONFIG)["options"] == l2["options"]
    assert cache.unit_settings("l2_softmax_T", CONFIG)["budget"] is None


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


@pytest.mark.parametrize("predictions", [None, [7] * 15, [7.5] * 16])
def test_a_metrics_unit_without_a_prediction_per_image_is_recomputed(tmp_path, predictions):
    unit = {k: v for k, v in METRICS_RESULT.items() if k != "predictions"}
    if predictions is not None:  # else: cached before predictions were kept
        unit["predictions"] = predictions
    _store(tmp_path, "metrics", unit, images=(0, 16))
    notes = []
    assert _cached(tmp_path, _wanted("metrics", images=(0, 16)), notes) == {}
    assert notes == ["stage 1 metrics: lacks what a metrics unit holds; recomputing it"]
    _store(tmp_path, "metrics", METRICS_RESULT, images=(0, 16))
    assert list(_cached(tmp_path, _wanted("metrics", images=(0, 16)), notes)) == ["metrics"]

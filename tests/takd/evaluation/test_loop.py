"""The executor seam: units run in any order or in threads give the serial run's tables; a
cached unit is never handed to the executor; a unit's compute function writes nothing."""

import concurrent.futures
import shutil

import numpy as np
import pytest

from keras_takd.takd.evaluation import EvaluationConfig, executors, loop, units

NUM_IMAGES = 8
SETTINGS = dict(attacks=("l2", "linf"), num_images=NUM_IMAGES, metric_images=16)


class ReversedExecutor:
    """Takes every unit first, runs them last to first; records what it was handed."""

    def __init__(self):
        self.handed = []

    def map(self, fn, work):
        taken = list(work)
        self.handed += [(unit.model_path.parent.name, unit.kind) for unit in taken]
        for unit in reversed(taken):
            yield unit, fn(unit)


class ThreadExecutor:
    """Runs the units in a pool of two threads, yielding them as they finish."""

    def map(self, fn, work):
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            futures = {pool.submit(fn, unit): unit for unit in work}
            for future in concurrent.futures.as_completed(futures):
                yield futures[future], future.result()


@pytest.mark.parametrize("executor", [ReversedExecutor, ThreadExecutor])
def test_any_executor_writes_the_tables_of_the_serial_run(
    tiny_run, monkeypatch, evaluate, fake_attacks, executor, stored_units
):
    run_dir, data = tiny_run
    other = shutil.copytree(run_dir, run_dir.parent / "other")
    fake_attacks().install(monkeypatch)
    serial = evaluate(run_dir, data, **SETTINGS)
    lines = []
    table = evaluate(other, data, **SETTINGS, executor=executor(), log=lines.append)
    assert table.equals(serial)
    for name in ("results.csv", "per_image.csv"):
        assert (other / name).read_bytes() == (run_dir / name).read_bytes(), name
    assert stored_units(other) == stored_units(run_dir) != []
    assert sum(line.endswith("; evaluation complete") for line in lines) == 1


def test_a_cached_unit_is_never_handed_to_the_executor(
    tiny_run, monkeypatch, evaluate, fake_attacks, forget_unit
):
    run_dir, data = tiny_run
    fake_attacks().install(monkeypatch)
    settings = SETTINGS | {"attacks": ("l2",), "gradient_masking": False}
    first = ReversedExecutor()
    evaluate(run_dir, data, **settings, executor=first)
    assert first.handed == [
        ("stage1", "metrics"), ("stage1", "l2"), ("stage2", "metrics"), ("stage2", "l2"),
        ("stage1", "l2_indicators"), ("stage2", "l2_indicators"),
    ]  # fmt: skip
    more = ReversedExecutor()  # linf added: only its units are computed
    evaluate(run_dir, data, **SETTINGS | {"gradient_masking": False}, executor=more)
    assert more.handed == [
        ("stage1", "linf"), ("stage2", "linf"), ("stage1", "linf_indicators"),
        ("stage2", "linf_indicators"),
    ]  # fmt: skip
    forget_unit(run_dir, 2, "l2")  # a lost unit: it and the indicator unit computed from it
    again = ReversedExecutor()
    evaluate(run_dir, data, **SETTINGS | {"gradient_masking": False}, executor=again)
    assert again.handed == [("stage2", "l2"), ("stage2", "l2_indicators")]
    done = ReversedExecutor()
    evaluate(run_dir, data, **SETTINGS | {"gradient_masking": False}, executor=done)
    assert done.handed == []


def test_a_unit_returns_its_result_and_writes_nothing(tiny_run, monkeypatch, fake_attacks):
    run_dir, data = tiny_run
    fake = fake_attacks()
    fake.install(monkeypatch)
    model_path = run_dir / "mnist/T5/stage1/model.keras"
    _, sha = units.load_model(model_path)
    before = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*")}
    x, y = np.asarray(data.x_test[:NUM_IMAGES], np.float32), data.y_test[:NUM_IMAGES]
    config = EvaluationConfig(**SETTINGS)
    unit = units.Unit("l2_softmax_T", model_path, sha, 5.0, (0, NUM_IMAGES), x, y, config)
    result = units.compute_unit(unit)
    assert {p: p.stat().st_mtime_ns for p in run_dir.rglob("*")} == before
    assert sorted(result) == ["images", "per_image", "seconds", "statistics"]
    assert result["images"] == [0, NUM_IMAGES] and fake.calls[0]["probabilities"]
    indicators = units.compute_unit(
        units.Unit("l2_softmax_T_indicators", model_path, sha, 5.0, (0, NUM_IMAGES), x, y,
                   config, attack_unit=result | {"checksum": "c"})
    )  # fmt: skip
    assert indicators["attack_checksum"] == "c"
    assert len(indicators["flags"]["vanishing_gradients"]) == len(result["per_image"]["index"])


def test_a_unit_is_refused_a_model_with_other_weights(tiny_run):
    run_dir, data = tiny_run
    model_path = run_dir / "mnist/T5/stage1/model.keras"
    config = EvaluationConfig(**SETTINGS)
    unit = units.Unit("metrics", model_path, "0" * 64, 5.0, (0, 4), data.x_test[:4],
                      data.y_test[:4], config)  # fmt: skip
    with pytest.raises(ValueError, match="holds weights .*, expected 000000000000: the model"):
        units.compute_unit(unit)


def test_units_are_equal_by_the_work_they_name_not_their_arrays(tmp_path):
    config = EvaluationConfig()
    one = units.Unit("l2", tmp_path / "m.keras", "s", 5.0, (0, 2), np.zeros(2), np.zeros(2), config)
    same = units.Unit("l2", tmp_path / "m.keras", "s", 5.0, (0, 2), np.ones(2), np.ones(2), config)
    assert one == same and hash(one) == hash(same) and len({one, same}) == 1
    other = units.Unit("l2", tmp_path / "m.keras", "s", 5.0, (2, 4), np.ones(2), np.ones(2), config)
    assert other != one


def test_the_serial_executor_runs_in_order_and_raises_after_the_finished_units():
    def fn(k):
        if k == 3:
            raise KeyboardInterrupt("killed")
        return k * k

    finished = []
    with pytest.raises(KeyboardInterrupt):
        for unit, result in executors.SerialExecutor().map(fn, range(5)):
            finished.append((unit, result))
    assert finished == [(0, 0), (1, 1), (2, 4)]


def test_run_units_announces_each_unit_as_it_is_taken_and_stores_each_result(monkeypatch):
    monkeypatch.setattr(loop, "compute_unit", lambda unit: unit * 10)
    events = []
    loop.run_units(
        [1, 2],
        executors.SerialExecutor(),
        store=lambda unit, result: events.append(("store", unit, result)),
        announce=lambda unit: events.append(("start", unit)),
    )
    assert events == [("start", 1), ("store", 1, 10), ("start", 2), ("store", 2, 20)]

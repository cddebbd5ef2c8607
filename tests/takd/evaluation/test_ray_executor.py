"""The Ray executor on a local two-node Ray cluster: the serial run's tables, a worker killed
mid-unit, a unit that raises, a killed driver resumed, an unreachable address.

Tolerance. A task runs the same compute function on the same model file and images as the
serial loop, with op determinism on as in this session, on the same CPU: the per-image table
(every attack's distances and constants) is compared byte for byte. The results table is
compared to 1e-12 relative: a task's TensorFlow has one thread per unit CPU where the serial
run has the machine's, and the float64 mean of the sensitivities came out one unit in the
last place apart (0.0025476548085156536 and ...655): the order of a multi-threaded sum.
"""

import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pandas as pd
import pytest

ray = pytest.importorskip("ray", reason="ray is not installed (pip install -e '.[test]')")

from keras_takd.takd.evaluation import loop  # noqa: E402
from keras_takd.takd.evaluation.ray_executor import RayExecutor, UnitFailedError  # noqa: E402
from keras_takd.takd.evaluation.units import compute_unit, load_model  # noqa: E402

pytestmark = pytest.mark.slow

FEW = {"l2": {"max_iterations": 10, "binary_search_steps": 2}}
SETTINGS = dict(
    attacks=("l2",), num_images=4, metric_images=16, attack_options=FEW, gradient_masking=False
)
REPO = pathlib.Path(__file__).resolve().parents[3]


def _serial_and_ray_copies(tiny_run, evaluate):
    """(serial run folder evaluated, an untouched copy, data)."""
    run_dir, data = tiny_run
    other = shutil.copytree(run_dir, run_dir.parent / "on_ray")
    evaluate(run_dir, data, **SETTINGS)
    return run_dir, other, data


def _assert_serial_tables(run_dir, serial):
    """The per-image tables byte-equal, the results tables to 1e-12 (module docstring)."""
    per_image = "per_image.csv"
    assert (run_dir / per_image).read_bytes() == (serial / per_image).read_bytes()
    results = [pd.read_csv(folder / "results.csv") for folder in (run_dir, serial)]
    pd.testing.assert_frame_equal(*results, check_exact=False, rtol=1e-12, atol=0)


def test_ray_gives_the_serial_tables(cluster, tiny_run, evaluate, stored_units):
    serial, other, data = _serial_and_ray_copies(tiny_run, evaluate)
    lines = []
    evaluate(other, data, **SETTINGS, executor=RayExecutor(), log=lines.append)
    _assert_serial_tables(other, serial)
    assert stored_units(other) == stored_units(serial) != []
    assert sum(line.endswith("; evaluation complete") for line in lines) == 1


class KilledOnce:
    """Computes a unit; the first call on any worker kills that worker with SIGKILL mid-unit
    (while it loads the model), leaving `marker` behind."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __call__(self, unit):
        if unit.kind == "l2" and not self.marker.exists():
            self.marker.touch()
            threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGKILL)).start()
            time.sleep(5)  # the unit is running when the kill comes
        return compute_unit(unit)


def test_a_worker_killed_mid_unit_reruns_it(cluster, tiny_run, evaluate, monkeypatch, tmp_path):
    serial, other, data = _serial_and_ray_copies(tiny_run, evaluate)
    marker = tmp_path / "killed"
    monkeypatch.setattr(loop, "compute_unit", KilledOnce(marker))
    evaluate(other, data, **SETTINGS, executor=RayExecutor(max_retries=1))
    assert marker.exists()  # the kill happened
    _assert_serial_tables(other, serial)


class RaiseOn:
    """Computes a unit, but raises on the l2 unit of the model with weights `sha`, once
    `stored()` is true (the other unit is in the run's record): the units run side by side,
    so without the wait the raise could come before the other unit is stored, and the test
    would depend on timing."""

    def __init__(self, sha: str, stored):
        self.sha, self.stored = sha, stored

    def __call__(self, unit):
        if unit.kind == "l2" and unit.weights_sha256 == self.sha:
            deadline = time.monotonic() + 300
            while not self.stored():
                if time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            raise ValueError("bad unit")
        return compute_unit(unit)


def test_a_unit_that_raises_stops_with_its_name_and_keeps_the_finished(
    cluster, tiny_run, evaluate, monkeypatch, stored_units
):
    run_dir, data = tiny_run
    _, stage2 = load_model(run_dir / "mnist/T5/stage2/model.keras")
    stage1_l2 = (1, "l2", 0, 4)

    def stored():
        return stage1_l2 in stored_units(run_dir)

    monkeypatch.setattr(loop, "compute_unit", RaiseOn(stage2, stored))
    with pytest.raises(UnitFailedError) as failure:
        evaluate(run_dir, data, **SETTINGS, executor=RayExecutor(max_retries=0))
    message = str(failure.value)
    assert "\n" not in message
    assert message.startswith("unit l2 of ") and "stage2" in message
    assert message.endswith("(images 0:4) raised ValueError: bad unit")
    assert stage1_l2 in stored_units(run_dir)  # computed before the failure, stored


def _evaluate_command(run_dir, address, data_dir):
    return [
        sys.executable, "-m", "keras_takd.takd.evaluate", f"--output_dir={run_dir}",
        f"--data_dir={data_dir}",
        "--attacks=l2", "--num_images=4", "--metric_images=16", "--l2_max_iterations=10",
        "--l2_binary_search_steps=2", "--nogradient_masking", "--executor=ray",
        f"--ray_address={address}",
    ]  # fmt: skip


def _environment():
    return {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def test_a_killed_driver_resumes_computing_only_the_missing_units(
    cluster, tiny_run, shared_data_dir, stored_units
):
    run_dir, _ = tiny_run
    command = _evaluate_command(run_dir, cluster.address, shared_data_dir)
    driver = subprocess.Popen(command, env=_environment(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 300
    while not stored_units(run_dir) and driver.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    driver.send_signal(signal.SIGKILL)
    _, stderr = driver.communicate()
    assert driver.returncode == -signal.SIGKILL, stderr
    stored = stored_units(run_dir)
    assert 0 < len(stored) < 6  # 2 models x (metrics, l2, l2_indicators)
    again = subprocess.run(command, env=_environment(), capture_output=True, text=True,
                           timeout=300)  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert f"{6 - len(stored)} to compute, {len(stored)} cached" in again.stdout
    assert len(stored_units(run_dir)) == 6


def test_an_unreachable_address_is_one_line_within_30_seconds(tiny_run, shared_data_dir):
    run_dir, _ = tiny_run
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
    began = time.monotonic()
    command = _evaluate_command(run_dir, address, shared_data_dir)
    result = subprocess.run(command, env=_environment(), capture_output=True, text=True,
                            timeout=60)  # fmt: skip
    assert time.monotonic() - began < 30
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"keras-takd-evaluate: error: no Ray cluster answered at {address}")

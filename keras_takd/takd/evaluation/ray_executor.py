"""The Ray executor: an evaluation's units as Ray tasks, on this machine or on a cluster.

Behind the `executors.Executor` seam. `ray.init()` with no address starts a local Ray on this
machine; an address (or RAY_ADDRESS) joins a running cluster (`ray start --head`). Each task
gets the unit (its settings and images) and its model file's BYTES through Ray's object store,
put there once per model: a node needs the package and nothing of the run folder, so a
cluster needs no shared filesystem. The task writes the model to its node's temporary folder
(never into the run folder), computes the unit with the evaluation's compute function and
returns the result to the calling process, which alone stores it (`loop`).

Resources: each task asks for `cpus_per_unit` CPUs and `gpus_per_unit` GPUs; TensorFlow's
thread pools inside it match its CPUs; a CPU-only task sees no GPU, a GPU task has memory
growth on; op determinism is on in a task when it is on in the calling process. A worker that
dies mid-unit (killed, out of memory) has its unit rerun at most `max_retries` times; a unit
that raises is not rerun: the evaluation stops with one line naming it (`UnitFailedError`).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import socket
import tempfile
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import ray

# Errors of Ray's machinery (not of the unit): the worker or its node died, memory ran out.
_DIED = ("WorkerCrashedError", "OutOfMemoryError", "NodeDiedError", "LocalRayletDiedError")
# Where a task keeps the model files it was sent (outside any run folder), by weights.
_MODEL_FOLDER = "keras_takd_models"
_CONNECT_SECONDS = 30


class UnitFailedError(ValueError):
    """A unit raised, or its worker kept dying: one line naming the unit and why."""


@dataclasses.dataclass(frozen=True)
class _TaskSettings:
    """What a task sets up in its worker before computing."""

    cpus: int
    gpus: int
    deterministic: bool


class RayExecutor:
    """Runs units as Ray tasks and yields each result as it comes back (`Executor.map`).

    Args:
        address: a Ray cluster to join ("host:port", or "auto"); None: RAY_ADDRESS if set,
            else a local Ray started on this machine. Joined (or started) here; ignored if
            Ray is already initialized in this process.
        cpus_per_unit: CPUs each unit's task reserves (and TensorFlow's thread pools use).
        gpus_per_unit: GPUs each unit's task reserves (0: the task sees no GPU).
        max_retries: how many times a unit whose worker died is rerun before it is reported.
            A local Ray started here also caps the memory monitor's reruns with it (Ray's
            task_oom_retries, unbounded by default); on a cluster, start each node with
            RAY_task_oom_retries=<n> (README).

    Raises:
        ValueError: a resource or retry count out of range.
        ConnectionError: `address` did not answer within 30 seconds.
    """

    def __init__(
        self,
        address: str | None = None,
        cpus_per_unit: int = 1,
        gpus_per_unit: int = 0,
        max_retries: int = 3,
    ) -> None:
        if cpus_per_unit < 1 or gpus_per_unit < 0 or max_retries < 0:
            raise ValueError(
                f"cpus_per_unit={cpus_per_unit}, gpus_per_unit={gpus_per_unit}, max_retries="
                f"{max_retries}: expected cpus_per_unit >= 1, gpus_per_unit >= 0, max_retries >= 0"
            )
        self.cpus, self.gpus, self.max_retries = cpus_per_unit, gpus_per_unit, max_retries
        connect(address or os.environ.get("RAY_ADDRESS") or None, max_retries)

    def map(self, fn: Callable[[Any], dict], units: Iterable[Any]) -> Iterator[tuple[Any, dict]]:
        """Runs `fn` on every unit as a Ray task (see `Executor.map`).

        As many units are in flight as the cluster has room for; a unit is taken from
        `units` when it is submitted, and from a growing `executors.UnitQueue` again after
        each result is yielded.

        Args:
            fn: the compute function, e.g. `units.compute_unit`.
            units: `units.Unit`s (a unit's `model_path` is read here and sent to its task),
                or units without a model file (`fn` gets them as they are).

        Returns:
            An iterator of (unit, fn(unit)) as each finishes.

        Raises:
            UnitFailedError: a unit raised, or its worker died more than `max_retries` times;
                the units finished before are yielded first.
        """
        settings = _TaskSettings(self.cpus, self.gpus, _deterministic())
        task = ray.remote(_run_unit).options(
            num_cpus=self.cpus,
            num_gpus=self.gpus,
            max_retries=self.max_retries,
            retry_exceptions=False,
            runtime_env=_runtime_env(settings),
        )
        models: dict[tuple[str, str], Any] = {}  # one object per model file
        pending: dict[Any, Any] = {}  # task -> unit
        work, room = iter(units), self.room()
        try:
            yield from self._run(task, fn, settings, work, room, models, pending)
        finally:
            for ref in pending:  # stopped early: nothing is left running
                ray.cancel(ref, force=True)

    def _run(self, task, fn, settings, work, room, models, pending):
        """Keeps `room` tasks in flight; yields each result; raises for a failed unit."""
        while True:
            for unit in work:
                model = _model_object(unit, models)
                pending[task.remote(fn, unit, model, settings)] = unit
                if len(pending) >= room:
                    break
            if not pending:
                return
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            unit = pending.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayError as error:
                yield from _finished(pending)  # kept: the units done meanwhile
                raise UnitFailedError(_failure(unit, error, self.max_retries)) from None
            yield unit, result

    def room(self) -> int:
        """How many units the cluster can run at once (at least 1)."""
        resources = ray.cluster_resources()
        room = int(resources.get("CPU", 1) // self.cpus)
        if self.gpus:
            room = min(room, int(resources.get("GPU", 0) // self.gpus))
        return max(room, 1)


def connect(address: str | None, max_retries: int = 3) -> None:
    """Initializes Ray in this process: joined to `address`, or a local Ray started here.

    Args:
        address: "host:port" or "auto" of a running cluster; None starts a local Ray.
        max_retries: for a local Ray, the cap on the reruns of a task the memory monitor
            killed (a cluster's nodes set theirs when they start).

    Raises:
        ConnectionError: `address` did not answer within 30 seconds.
    """
    if ray.is_initialized():
        return
    if address is None:
        # A Ray of this process: with no address, ray.init joins the latest Ray that another
        # process runs on this machine (e.g. another study's local Ray), if there is one.
        ray.init(
            address="local",
            include_dashboard=False,
            configure_logging=False,
            _system_config={"task_oom_retries": max_retries},
        )
        return
    _probe(address)  # ray.init retries an unreachable address for minutes
    try:
        ray.init(address=address, configure_logging=False)
    except (ConnectionError, TimeoutError, RuntimeError) as e:
        raise ConnectionError(_unreachable(address, f"{type(e).__name__}: {e}")) from None


def _probe(address: str) -> None:
    """Raises ConnectionError unless host:port accepts a connection within 30 seconds."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():  # "auto", "ray://...": ray.init reads or checks them
        return
    try:
        socket.create_connection((host, int(port)), timeout=_CONNECT_SECONDS).close()
    except OSError as e:
        raise ConnectionError(_unreachable(address, str(e) or type(e).__name__)) from None


def _unreachable(address: str, why: str) -> str:
    return (
        f"no Ray cluster answered at {address} ({why}): expected the address of a running "
        "cluster as `ray start --head` prints it (host:port), or no address for a local Ray"
    )


def _deterministic() -> bool:
    """Whether op determinism is on in this process (tasks then turn it on too)."""
    # TensorFlow has no public getter for the switch `enable_op_determinism` turns on.
    from tensorflow.python.framework import config

    return bool(config.is_op_determinism_enabled())


def _runtime_env(settings: _TaskSettings) -> dict:
    """The tasks' environment: one per settings, so a worker never serves two.

    TensorFlow's thread pools and devices are fixed once it has run, and Ray reuses a
    worker only for tasks of the same runtime environment. A CPU-only task is given
    CUDA_VISIBLE_DEVICES="" again: Ray 2.60 leaves it unset for num_gpus=0
    (ray-project/ray#54868), and TensorFlow would take every GPU of the node.
    """
    env = {"KERAS_TAKD_TASK_SETTINGS": repr(settings)}
    if settings.gpus == 0:
        env["RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO"] = "1"
    return {"env_vars": env}


def _model_object(unit, models: dict) -> Any:
    """The object holding the unit's model file, put in the object store once per file.

    None for a unit without a model file (e.g. training a chain, `keras_takd.takd.study`).
    """
    if getattr(unit, "model_path", None) is None:
        return None
    key = (str(unit.model_path), unit.weights_sha256)
    if key not in models:
        models[key] = ray.put(pathlib.Path(unit.model_path).read_bytes())
    return models[key]


def _finished(pending: dict) -> Iterator[tuple[Any, dict]]:
    """The pending units that have already finished without error, with their results."""
    ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0)
    for ref in ready:
        unit = pending.pop(ref)
        try:
            yield unit, ray.get(ref)
        except ray.exceptions.RayError:
            continue


def unit_name(unit) -> str:
    """A unit as the user knows it: its `name`, or its kind, model file and images."""
    if hasattr(unit, "name"):
        return unit.name
    start, stop = unit.images
    return f"{unit.kind} of {unit.model_path} (images {start}:{stop})"


def _failure(unit, error: Exception, max_retries: int) -> str:
    """One line: which unit, and whether it raised or its worker kept dying."""
    if type(error).__name__ in _DIED:
        return (
            f"unit {unit_name(unit)}: its worker died {max_retries + 1} times "
            f"({type(error).__name__}); raise --max_retries, or give units more memory"
        )
    cause = getattr(error, "cause", None) or error
    message = str(cause).strip().splitlines()
    return f"unit {unit_name(unit)} raised {type(cause).__name__}: {message[0] if message else ''}"


def _run_unit(fn: Callable, unit, model: bytes | None, settings: _TaskSettings) -> dict:
    """Inside a task: sets up TensorFlow, writes the model to this node, computes the unit."""
    _configure_tensorflow(settings)
    if model is None:
        return fn(unit)
    local = _local_model(model, unit.weights_sha256)
    return fn(dataclasses.replace(unit, model_path=local))


def _local_model(model: bytes, sha: str) -> pathlib.Path:
    """The model file on this node's temporary folder (written once per weights)."""
    folder = pathlib.Path(tempfile.gettempdir()) / _MODEL_FOLDER
    path = folder / f"{sha}.keras"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        fd, partial = tempfile.mkstemp(dir=folder, suffix=".partial")
        with os.fdopen(fd, "wb") as out:
            out.write(model)
        os.replace(partial, path)  # atomic: a task killed mid-write leaves no half model
    return path


_CONFIGURED: list[_TaskSettings] = []  # the settings this worker process set up, once


def _configure_tensorflow(settings: _TaskSettings) -> None:
    """Thread pools of the task's CPUs, its GPUs (or none), op determinism; once per worker.

    Raises:
        RuntimeError: this worker was set up for other settings (TensorFlow's pools and
            devices cannot change once it has run).
    """
    if _CONFIGURED:
        if _CONFIGURED[0] != settings:
            raise RuntimeError(f"worker set up for {_CONFIGURED[0]}, task wants {settings}")
        return
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(settings.cpus)
    tf.config.threading.set_inter_op_parallelism_threads(settings.cpus)
    gpus = tf.config.list_physical_devices("GPU")
    if settings.gpus == 0:
        tf.config.set_visible_devices([], "GPU")
    for gpu in gpus if settings.gpus else []:
        tf.config.experimental.set_memory_growth(gpu, True)
    if settings.deterministic:
        tf.config.experimental.enable_op_determinism()
    _CONFIGURED.append(settings)

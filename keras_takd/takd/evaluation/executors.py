"""Where the units of an evaluation run: the executor seam.

The evaluation loop (`loop.evaluate_run`) hands the units it needs to an executor and stores
each result as it comes back; an executor only runs `fn` on units and yields what it returned.
It may run them in any order, in this process or in others (`ray_executor.RayExecutor`), as
long as `fn(unit)` runs to completion for every unit it yields: `fn` writes nothing, so a unit
lost with its worker is simply computed again by the next evaluation.

The units may also come from a `UnitQueue` that the caller fills while it reads the results
(the study, `keras_takd.takd.study`, puts a chain's evaluation units in it when the chain
comes back): an executor takes a unit from the queue whenever it has room, and its `map` ends
when the queue is empty and no unit is running.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, Protocol, TypeVar

U = TypeVar("U")
R = TypeVar("R")


class Executor(Protocol):
    """Runs a function on units of work, yielding each result as it finishes."""

    def map(self, fn: Callable[[U], R], units: Iterable[U]) -> Iterator[tuple[U, R]]:
        """Runs `fn` on every unit; yields (unit, fn(unit)) as each finishes, in any order.

        Args:
            fn: the compute function (a function of the unit alone; it writes nothing).
            units: the units. An executor takes them from the iterable as it starts them,
                so the loop can announce a unit when it is taken; from a `UnitQueue`, it
                takes again whenever it has room, after each result it yields.

        Returns:
            An iterator of (unit, result); an exception of `fn` is raised from it.
        """
        ...


class SerialExecutor:
    """The default executor: the units one after another, in order, in this process."""

    def map(self, fn: Callable[[U], R], units: Iterable[U]) -> Iterator[tuple[U, R]]:
        """Runs `fn` on each unit in turn (see `Executor.map`)."""
        for unit in units:
            yield unit, fn(unit)


class UnitQueue(Generic[U]):
    """The units of an executor's `map` that grows while it runs, by priority.

    Iterating takes the unit of the lowest priority (the first put among equals). Unlike
    most iterators, a queue that ran dry (StopIteration) yields again once units are put in
    it: an executor's `map` re-reads it after each result it yields, and ends when it is
    empty with no unit running. Both executors here do.

    Args:
        taken: called with each unit as the executor takes it (None: nothing).
    """

    def __init__(self, taken: Callable[[U], None] | None = None) -> None:
        self._heap: list[tuple[int, int, U]] = []
        self._order = itertools.count()
        self._taken = taken

    def put(self, units: Iterable[U], priority: int = 0) -> None:
        """Adds `units`, taken before every unit of a higher `priority` and after the rest."""
        for unit in units:
            heapq.heappush(self._heap, (priority, next(self._order), unit))

    def __len__(self) -> int:
        return len(self._heap)

    def __iter__(self) -> UnitQueue[U]:
        return self

    def __next__(self) -> U:
        if not self._heap:
            raise StopIteration
        *_, unit = heapq.heappop(self._heap)
        if self._taken is not None:
            self._taken(unit)
        return unit

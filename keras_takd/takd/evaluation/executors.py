"""Where the units of an evaluation run: the executor seam.

The evaluation loop (`loop.evaluate_run`) hands the units it needs to an executor and stores
each result as it comes back; an executor only runs `fn` on units and yields what it returned.
It may run them in any order, in this process or in others (`ray_executor.RayExecutor`), as
long as `fn(unit)` runs to completion for every unit it yields: `fn` writes nothing, so a unit
lost with its worker is simply computed again by the next evaluation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Protocol, TypeVar

U = TypeVar("U")
R = TypeVar("R")


class Executor(Protocol):
    """Runs a function on units of work, yielding each result as it finishes."""

    def map(self, fn: Callable[[U], R], units: Iterable[U]) -> Iterator[tuple[U, R]]:
        """Runs `fn` on every unit; yields (unit, fn(unit)) as each finishes, in any order.

        Args:
            fn: the compute function (a function of the unit alone; it writes nothing).
            units: the units. An executor takes them from the iterable as it starts them,
                so the loop can announce a unit when it is taken.

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

"""The progress of a whole study: units done / running / left and the time left, one line each.

A study's units are its chains to train and its models' evaluation units, all on one
executor (`keras_takd.takd.evaluation.executors`). The study's scheduler tells
`StudyProgress` each unit the executor takes and each that returns (its result), and how many
units of each kind the run's record holds; it logs one line per finished unit, with the
seconds the unit took where it ran ("... l2 done (4.2 s); ..."). The time left is the mean
measured time of each kind of unit (`evaluation.progress.time_left`) times the units left of
that kind, divided by the units that run at once.
"""

from __future__ import annotations

import collections
import pathlib
from collections.abc import Callable, Mapping, Sequence

from keras_takd.takd.evaluation import progress

TRAIN = "train"  # the kind of a chain unit


class StudyProgress:
    """Counts a study's units and logs a line for each that finishes.

    Args:
        log: called with each progress line.
        chains: (chains to train, chains already trained).
        models_per_chain: the stages of a chain.
        kinds: the kinds of a model's evaluation units.
        workers: how many units run at once.
        stages_left: the stages the chains to train still need, one training unit each
            (`chain_units.ChainUnit.stage`); None: every stage of them.
    """

    def __init__(
        self,
        log: Callable[[str], None],
        chains: tuple[int, int],
        models_per_chain: int,
        kinds: Sequence[str],
        workers: int = 1,
        stages_left: int | None = None,
    ) -> None:
        self._log, self._kinds = log, list(kinds)
        todo, trained = chains
        self._models = (todo + trained) * models_per_chain
        self.total = self._models * (1 + len(self._kinds))
        left = todo * models_per_chain if stages_left is None else stages_left
        self.unfinished = collections.Counter({TRAIN: left})
        self.evaluated({})
        self.running = 0
        self._workers = max(workers, 1)
        self._measured: dict[str, list[float]] = {}

    def taken(self, unit) -> None:
        """The executor took `unit`: it runs until `finished`."""
        self.running += 1

    def finished(self, unit, result: Mapping) -> None:
        """`unit` returned `result`: logs its line, with its "seconds" (which also time its
        kind)."""
        self.running -= 1
        kind = getattr(unit, "kind", TRAIN)
        self.unfinished[kind] = max(self.unfinished[kind] - 1, 0)
        seconds = result.get("seconds")
        took = ""
        if isinstance(seconds, (int, float)):
            self._measured.setdefault(kind, []).append(float(seconds))
            took = f" ({seconds:.1f} s)"
        self._log(self.line(f"{_name(unit)} done{took}"))

    def evaluated(self, stored: Mapping[str, int]) -> None:
        """The run's record holds `stored[kind]` units of each kind (computed or cached)."""
        for kind in self._kinds:
            self.unfinished[kind] = self._models - stored.get(kind, 0)

    def line(self, what: str) -> str:
        """ "study: <what>; 7 of 40 units done, 1 running, 32 left, about 5 min left"."""
        unfinished = sum(self.unfinished.values())  # the running units among them
        done, left = self.total - unfinished, unfinished - self.running
        remaining = list(self.unfinished.elements())
        per_worker = {k: [s / self._workers for s in v] for k, v in self._measured.items()}
        eta = progress.time_left(remaining, per_worker).removeprefix("; ")
        eta = eta.replace(f"{len(remaining)} unit{'s' if len(remaining) > 1 else ''} left, ", "")
        if not remaining:
            eta = "study complete"
        elif not set(remaining) & set(self._measured):
            eta = "no estimate of the time left yet"
        else:
            eta = f"{eta} left"
        return (
            f"study: {what}; {done} of {self.total} units done, {self.running} running, "
            f"{left} left, {eta}"
        )


def _name(unit) -> str:
    """A chain unit's name, or an evaluation unit's model folder and kind."""
    if hasattr(unit, "name"):
        return unit.name
    folder = pathlib.Path(unit.model_path).parent  # <label>/T<temperature>/stage<k>
    return f"{pathlib.PurePath(*folder.parts[-3:])} {unit.kind}"

"""A whole study in one call: train every chain, evaluate every unit, write tables, claims, figures.

Mandal & Guo, "Improving Defensive Distillation using Teacher Assistant"; Papernot et al.,
arXiv:1511.04508. The study is a set of units with dependencies: training a chain (dataset,
T, seed; `chain_units`) a stage at a time -> evaluating each of its models (one unit per
model, kind and image block; `keras_takd.takd.evaluation`) -> the tables, claims and
figures. Every unit runs on one executor (`keras_takd.takd.evaluation.executors`: in this
process, or Ray tasks), and this process alone writes the run folder and its record.

One scheduler hands every unit to the executor: the chains' first stages to train at first,
and a model's evaluation units (its metrics and attacks, then each indicator unit once its
attack unit is stored) and its chain's next stage the moment this process has written the
model, ahead of the chains still waiting. So
a model's attacks start as soon as it exists, while other chains train and other models'
units run, and no worker waits for a whole evaluation to end. A chain the record holds is not
trained again, a stage written is not trained again and a stored unit is not computed again,
so a killed study resumes by running the same command, a chain at the stage it was
training; the models it finds trained are evaluated first.
"""

from __future__ import annotations

import collections
import functools
import pathlib
from collections.abc import Callable, Mapping, Sequence

import pandas as pd

from keras_takd.core import files, locking, record
from keras_takd.takd.evaluation import progress
from keras_takd.takd.evaluation.executors import Executor, UnitQueue
from keras_takd.takd.evaluation.indicator_units import indicated_attack
from keras_takd.takd.study.chain_units import (
    ChainUnit,
    chain_units,
    next_unit,
    train_chain,
    write_chain,
)
from keras_takd.takd.study.progress import StudyProgress

# The queue's priorities: a written model's metrics and attack units first, so they start as
# soon as it exists; then the indicator units (after their attacks, as `evaluate_run` runs
# them); then the next stage of a chain begun, so that begun chains finish first; the chains
# to begin last.
_ATTACKS, _INDICATORS, _NEXT_STAGE, _TRAINING = 0, 1, 2, 3


def run_study(
    output_dir: str | pathlib.Path,
    data_settings: Mapping,
    chains: Mapping,
    train_config,
    evaluation_config,
    executor=None,
    run_info: Mapping | None = None,
    figures_dir: str | pathlib.Path | None = None,
    caption: str | None = None,
    ci_level: float = 0.95,
    workers: int = 1,
    log: Callable[[str], None] = print,
    verbose: bool = False,
) -> pd.DataFrame:
    """Trains, evaluates and reports a study into `output_dir` (module docstring).

    Args:
        output_dir: the run folder (created; a folder of another configuration is refused).
        data_settings: keyword arguments of `keras_takd.core.data.load_dataset`.
        chains: {"temperatures", "stages", "seeds", "deterministic"}: one chain per
            (temperature, seed) (`keras_takd.takd.train.chain_settings`).
        train_config: the chains' `TrainConfig` (each chain takes its own seed).
        evaluation_config: the `keras_takd.takd.evaluation.EvaluationConfig` (unsharded).
        executor: where the units run (default: in this process, one after another).
        run_info: what run.json records (e.g. the flags).
        figures_dir: where the figures and claims.md go (default: `<output_dir>/figures`).
        caption: a line printed with the figures and claims.
        ci_level: the level of every confidence interval.
        workers: how many units the executor runs at once (for the time left).
        log: called with every progress line.
        verbose: show the attacks' progress bars.

    Returns:
        The study's results table (also `<output_dir>/results.csv`).

    Raises:
        ValueError: a sharded evaluation, or what training and evaluation refuse.
        FolderInUseError: another process uses `output_dir`.
        UnitFailedError: a unit raised, or its worker kept dying (the finished units are kept).
    """
    from keras_takd.core.data import load_dataset
    from keras_takd.core.seeding import set_seed
    from keras_takd.takd.chains import prepare_output_dir
    from keras_takd.takd.evaluation.executors import SerialExecutor
    from keras_takd.takd.evaluation.loop import open_evaluation, unit_kinds

    _check_unsharded(evaluation_config)
    data_settings = _absolute_data_dir(data_settings)
    data = load_dataset(**data_settings)
    if chains["deterministic"]:  # before any task: a Ray task follows this process's switch
        set_seed(chains["seeds"][0], deterministic=True)
    out = files.check_writable(output_dir)
    run_info = {**(run_info or {}), "data_source": data.source}
    with locking.lock_run_folder(out):
        prepare_output_dir(out, data, train_config, run_info, len(chains["seeds"]) > 1)
        settings = dict(
            data=data_settings,
            config=train_config,
            run_info=run_info,
            deterministic=chains["deterministic"],
        )
        temperatures, seeds, stages = (chains[k] for k in ("temperatures", "seeds", "stages"))
        held = record.models(out)  # read once: trained chains, a killed chain's first stages
        todo, trained = chain_units(out, held, data.label, temperatures, seeds, stages, settings)
        first, later = unit_kinds(evaluation_config)
        stages_left = sum(stages - unit.stage + 1 for unit in todo)
        study = StudyProgress(
            log, (len(todo), trained), stages, first + later, workers, stages_left=stages_left
        )
        opening = f"{_chains(len(todo))} to train, {trained} trained"
        plan = functools.partial(
            open_evaluation, out, data, evaluation_config, verbose=verbose, log=log
        )
        scheduler = _Scheduler(out, plan, study, log)
        table = scheduler.run(
            executor or SerialExecutor(), todo, evaluate_first=bool(held), opening=opening
        )
    log(study.line("tables written"))
    _report(out, figures_dir, caption, ci_level, log)
    return table


def compute(unit) -> dict:
    """The study's compute function (any executor runs it): trains a chain, or computes an
    evaluation unit (`keras_takd.takd.evaluation.units.compute_unit`)."""
    if isinstance(unit, ChainUnit):
        return train_chain(unit)
    from keras_takd.takd.evaluation.units import compute_unit

    return compute_unit(unit)


class _Scheduler:
    """Hands a study's units to one executor as their inputs come to exist; stores each result.

    Args:
        out: the run folder (this process holds its lock and alone writes it).
        plan: opens the evaluation of the run folder as it is (`loop.open_evaluation`);
            called again after each chain is written, so that its models join the plan.
        study: the progress lines.
        log: called with the chains' lines.
    """

    def __init__(self, out: pathlib.Path, plan: Callable, study: StudyProgress, log) -> None:
        self.out, self.plan, self.study, self.log = out, plan, study, log
        self.queue = UnitQueue(self._taken)
        self.queued: set[tuple[pathlib.Path, str]] = set()  # (model, kind) put in the queue
        self.evaluation = None  # the current plan; none before the first model exists
        self.heartbeat = None

    def run(
        self, executor: Executor, chains: Sequence[ChainUnit], evaluate_first: bool, opening: str
    ) -> pd.DataFrame:
        """Trains `chains` and evaluates every model; returns the results table.

        Args:
            executor: where every unit runs.
            chains: the chains to train.
            evaluate_first: the record holds trained models (their units go first).
            opening: what the first progress line says, logged once the units the record
                holds are counted as done.
        """
        self.heartbeat = progress.Heartbeat(self.log)
        try:
            if evaluate_first:
                self._replan()
            self.log(self.study.line(opening))
            self.queue.put(chains, _TRAINING)
            for unit, result in executor.map(compute, self.queue):
                self.study.finished(unit, result)
                if isinstance(unit, ChainUnit):
                    self._written(unit, result)
                else:
                    self.evaluation.store(unit, result)
                self._put_ready()
        finally:
            self.heartbeat.stop()
        return self.evaluation.table

    def _taken(self, unit) -> None:
        self.study.taken(unit)
        if not isinstance(unit, ChainUnit):
            self.evaluation.announce(unit)

    def _written(self, unit: ChainUnit, result: Mapping) -> None:
        """Writes a trained stage into the run folder, then plans its model's units and its
        chain's next stage."""
        from keras_takd.takd.chains import stage_summary

        for row in write_chain(self.out, result):
            if unit.stage is None or int(row["stage"]) == unit.stage:
                self.log(stage_summary(row))
        for line in result["warnings"]:
            self.log(f"warning: {line}")
        following = next_unit(self.out, unit)
        if following is not None:
            self.queue.put([following], _NEXT_STAGE)
        self._replan()

    def _replan(self) -> None:
        """The evaluation of every model written so far; a unit running stays in the plan
        (it is not in the record yet) and is stored through it when it returns."""
        self.evaluation = self.plan()
        self.evaluation.heartbeat = self.heartbeat
        stored = collections.Counter(k for m in self.evaluation.models for k in m.done)
        self.study.evaluated(stored)
        self._put_ready()

    def _put_ready(self) -> None:
        """Puts in the queue every unit whose inputs exist that it never held."""
        for unit in self.evaluation.ready_units() if self.evaluation else []:
            if (unit.model_path, unit.kind) not in self.queued:
                self.queued.add((unit.model_path, unit.kind))
                self.queue.put([unit], _INDICATORS if indicated_attack(unit.kind) else _ATTACKS)


def _check_unsharded(evaluation_config) -> None:
    if evaluation_config.sharded:
        raise ValueError(
            f"num_shards={evaluation_config.num_shards}: a study evaluates every image itself; "
            "expected num_shards=1 (spread the work with the Ray executor instead)"
        )


def _chains(count: int) -> str:
    return f"{count} chain{'' if count == 1 else 's'}"


def _absolute_data_dir(data_settings: Mapping) -> dict:
    """The settings with data_dir absolute, so a task finds it from any working folder."""
    settings = dict(data_settings)
    if settings.get("data_dir"):
        settings["data_dir"] = str(pathlib.Path(settings["data_dir"]).resolve())
    return settings


def _report(
    out: pathlib.Path,
    figures_dir: str | pathlib.Path | None,
    caption: str | None,
    ci_level: float,
    log: Callable[[str], None],
) -> None:
    """Writes the claims (claims.md) and the figures of the study's results into figures_dir."""
    from keras_takd.takd.analysis.claims import report
    from keras_takd.takd.analysis.figures import catalog

    folder = files.check_writable(figures_dir or out / "figures")
    results = [str(out / "results.csv")]
    files.write_text_atomic(folder / "claims.md", report.render(results, None, caption, ci_level))
    log(catalog.write_figures(results, folder, per_image=None, caption=caption, ci_level=ci_level))
    log(f"claims: {folder / 'claims.md'}")

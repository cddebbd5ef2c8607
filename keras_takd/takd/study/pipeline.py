"""A whole study in one call: train every chain, evaluate every unit, write tables, claims, figures.

Mandal & Guo, "Improving Defensive Distillation using Teacher Assistant"; Papernot et al.,
arXiv:1511.04508. The study is a set of units with dependencies: training a chain (dataset,
T, seed; `chain_units`) -> evaluating each of its models (one unit per model, kind and image
block; `keras_takd.takd.evaluation`) -> the tables, claims and figures. Every unit runs on one
executor (`keras_takd.takd.evaluation.executors`: in this process, or Ray tasks), and this
process alone writes the run folder and its record.

A chain's evaluation units are handed to the executor as soon as the chain is written, while
the other chains keep training on the executor's other workers; chains that finish meanwhile
are written, and evaluated, when that evaluation has returned (this process waits on one
evaluation at a time, so the units of a chain that finishes during another chain's
evaluation start when it ends). A chain
the record holds is not trained again and a stored unit is not computed again, so a killed
study resumes by running the same command.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Mapping

import pandas as pd

from keras_takd.core import files, locking
from keras_takd.takd.study.chain_units import chain_units, train_chain, write_chain
from keras_takd.takd.study.progress import StudyProgress


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
    from keras_takd.takd import evaluation
    from keras_takd.takd.chains import prepare_output_dir, stage_summary
    from keras_takd.takd.evaluation.executors import SerialExecutor
    from keras_takd.takd.evaluation.loop import unit_kinds

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
        todo, trained = chain_units(out, data.label, temperatures, seeds, stages, settings)
        first, later = unit_kinds(evaluation_config)
        study = StudyProgress(
            executor or SerialExecutor(), log, (len(todo), trained), stages, first + later, workers
        )
        log(study.line(f"{_chains(len(todo))} to train, {trained} trained"))

        def evaluate() -> pd.DataFrame:
            table = evaluation.evaluate_run(
                out, data, evaluation_config, verbose=verbose, log=log, executor=study
            )
            study.evaluated(len(table))
            return table

        # The models already trained are evaluated with the first chain that finishes (each
        # evaluation covers every model of the record), or at once if none is left to train.
        table = None if todo else evaluate()
        for _, result in study.map(train_chain, todo):
            for row in write_chain(out, result):
                log(stage_summary(row))
            for line in result["warnings"]:
                log(f"warning: {line}")
            table = evaluate()
    log(study.line("tables written"))
    _report(out, figures_dir, caption, ci_level, log)
    return table


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

r"""A paper-scale plan: units, compute and wall time of the full study, from measured unit costs.

Issue 24, item 7. Runs no attack and trains nothing. It counts the study's units from the
repository's flagfiles, read with the training and evaluation commands' own absl flags:
MNIST and CIFAR-10, the paper's sweep (flags/*_takd.cfg) and multi-step chains
(flags/*_multistep.cfg), each evaluated as its flags/*_eval.cfg says, plus issue 25's replicate
study. It prices every unit from measured costs, each cited to its file, and simulates list
scheduling over the dependency graph (warm start -> chain -> its models' units -> their
indicator units; a unit starts when what it needs exists, longest ready unit first) on 1, 8
and 64 CPU workers of 2 cores (this machine's) and on 1 and 8 GPUs.

  python benchmarks/paper_scale_plan.py
  python benchmarks/paper_scale_plan.py --report_only  # redraw the .md from the .json

Writes benchmarks/results/paper_scale_plan.json and paper_scale_plan.md.
"""

from __future__ import annotations

import contextlib
import copy
import glob
import heapq
import json
import math
import os
import statistics
import sys
from collections import defaultdict
from typing import Any, NamedTuple

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import flags  # noqa: E402
from common import reports  # noqa: E402
from common.environment import REPO, RESULTS_DIR, git_commit  # noqa: E402
from common.timing import utc_now  # noqa: E402

from keras_takd.core import cli  # noqa: E402
from keras_takd.takd.evaluation.config import EvaluationConfig, shard_range  # noqa: E402
from keras_takd.takd.evaluation.indicator_units import indicator_unit  # noqa: E402
from keras_takd.takd.schema import MASKED_L2_PREFIX  # noqa: E402

_NAME = "paper_scale_plan"
# The study's parts: (name, training flagfile, evaluation flagfile, flag overrides, seeds).
# Issue 25's replicate study has no flagfile on this branch yet; it is modelled as 10 seeds x
# T in {1, 40} x 3 stages trained as flags/mnist_decisive.cfg (10 epochs a model), evaluated
# with FMN L2 on the first 100 test images.
_PARTS = (
    ("MNIST sweep", "flags/mnist_takd.cfg", "flags/mnist_takd_eval.cfg", [], 1),
    ("CIFAR-10 sweep", "flags/cifar10_takd.cfg", "flags/cifar10_takd_eval.cfg", [], 1),
    ("MNIST multi-step", "flags/mnist_multistep.cfg", "flags/mnist_multistep_eval.cfg", [], 1),
    (
        "CIFAR-10 multi-step",
        "flags/cifar10_multistep.cfg",
        "flags/cifar10_multistep_eval.cfg",
        [],
        1,
    ),
    (
        "MNIST replicates (modelled)",
        "flags/mnist_decisive.cfg",
        "flags/mnist_decisive_eval.cfg",
        ["--temperature=1,40", "--attacks=fmn_l2", "--num_images=100"],
        10,
    ),
)
_TRAIN_FLAGS = ("dataset", "stages", "temperature", "epochs", "warm_start", "validation_size")
_TRAIN_FLAGS += ("train_size", "test_size")
_EVAL_FLAGS = ("attacks", "num_images", "attack_images", "gradient_masking", "indicators")
_EVAL_FLAGS += ("metric_images",)
# The datasets' standard (train, test) splits; the flagfiles hold out --validation_size.
_SPLITS = {"mnist": (60_000, 10_000), "cifar10": (50_000, 10_000)}
_CPU_WORKERS = (1, 8, 64)
_GPUS = (1, 8)
_DECISIVE = "figures/decisive"
_FMN_VS_CW = "benchmarks/results/fmn_vs_cw_decisive.json"
_EXECUTORS = "benchmarks/results/evaluation_executors.json"

_RESULTS_DIR = flags.DEFINE_string("results_dir", str(RESULTS_DIR), "Report folder.")
_REPORT_ONLY = flags.DEFINE_bool(
    "report_only", False, "Compute nothing: redraw <results_dir>/paper_scale_plan.md from its json."
)
_BLOCK = flags.DEFINE_integer(
    "block_images", 100, "Images per attack unit (the costs were measured at batch 100).", 1
)
_GPU_TRAIN = flags.DEFINE_float(
    "gpu_speedup_training", 10.0, "ASSUMED: one GPU trains this many times faster.", 1.0
)
_GPU_EVAL = flags.DEFINE_float(
    "gpu_speedup_evaluation", 30.0, "ASSUMED: one GPU evaluates this many times faster.", 1.0
)


class _Task(NamedTuple):
    """One unit of the study: its name, whether it trains, its seconds on a worker, its input."""

    name: str
    training: bool
    seconds: float
    after: str | None


def _read_flags(flagfile: str, names: tuple[str, ...], overrides: list[str]) -> dict[str, Any]:
    """The values the commands' flags `names` take from `flagfile` (and `overrides` after it).

    Flags the flagfile does not set keep the commands' defaults; nested flagfiles are read
    relative to the repository root, as the commands read them from there.
    """
    from keras_takd.takd import evaluate, train  # noqa: F401  (they define the flags)

    values = flags.FlagValues()
    for name in names:
        values[name] = copy.deepcopy(flags.FLAGS[name])
    with contextlib.chdir(REPO):
        argv = values.read_flags_from_files([f"--flagfile={flagfile}", *overrides], False)
    values(["plan", *argv], known_only=True)
    return {name: values[name].value for name in names}


def _json(path: str) -> Any:
    with open(REPO / path) as f:
        return json.load(f)


def _seconds_per_image(pattern: str) -> float:
    """The median seconds per image of the committed evaluation units matching `pattern`."""
    units = [_json(p) for p in glob.glob(str(REPO / pattern), recursive=True)]
    if not units:
        raise FileNotFoundError(f"no evaluation units match {pattern}; expected the decisive run's")
    return statistics.median(u["seconds"] / (u["images"][1] - u["images"][0]) for u in units)


def _measured_costs() -> dict[str, dict[str, Any]]:
    """Every measured per-unit cost the plan uses: seconds on one 2-core worker, and its source."""
    import pandas as pd

    costs = {}
    for model, norms in _json(_FMN_VS_CW)["comparisons"].items():
        for norm, sides in norms.items():
            for side, kind in (("cw", norm), ("fmn", f"fmn_{norm}")):
                run = sides.get(side, {})
                if run.get("wall_s") is not None:
                    per_image = run["wall_s"] / run["images"]
                    if per_image > costs.get(kind, {}).get("seconds", 0):
                        source = (
                            f"{_FMN_VS_CW}: {model}, the slower model, {run['images']} images, "
                            f"cpu share {run['cpu_share_min']:.2f} (two processes on 2 cores)"
                        )
                        costs[kind] = {"seconds": per_image, "per": "image", "source": source}
    masked = "as C&W L2: the same attack on softmax(z / T) (abort early may end it sooner)"
    costs[MASKED_L2_PREFIX] = dict(costs["l2"], source=masked)
    table = pd.read_csv(REPO / _DECISIVE / "results.csv")
    train_images = _json(f"{_DECISIVE}/run.json")["configuration"]["data"]["train_images"]
    epoch = float((table["train_seconds"] / table["epochs"]).median())
    costs["epoch"] = {
        "seconds": epoch / train_images,
        "per": "training image-epoch",
        "source": f"{_DECISIVE}/results.csv: median train_seconds / epochs of its "
        f"{len(table)} models, {epoch:.1f} s an epoch of {train_images:,} images",
    }
    for kind, unit in (("metrics", "metrics"), ("indicators", "l2_indicators")):
        pattern = f"{_DECISIVE}/eval/*/mnist/*/*/**/{unit}.json"
        source = f"{_DECISIVE}/eval/*/{unit}.json: median of the units"
        costs[kind] = {"seconds": _seconds_per_image(pattern), "per": "image", "source": source}
    return costs


def _checks() -> dict[str, Any]:
    """Measurements the plan does not use but that bound its costs."""
    throughput = _json("benchmarks/results/distillation_throughput.json")
    return {
        "decisive_l2_seconds_per_image": _seconds_per_image(f"{_DECISIVE}/eval/*/**/l2.json"),
        "distiller_over_plain_fit": throughput["ratio_distiller_over_plain"],
    }


def _overheads() -> dict[str, Any]:
    """Seconds per unit beyond its compute, serially and on Ray (evaluation_executors.json)."""
    runs = _json(_EXECUTORS)
    workers = {"serial": 1, "ray": runs["machine"]["cores_usable"]}  # one CPU per Ray unit
    return {
        executor: (workers[executor] * runs[executor]["timing"]["wall_s"] - run["unit_seconds"])
        / run["units"]
        for executor, run in ((e, runs[e]) for e in workers)
    } | {"source": _EXECUTORS}


def _multiply_adds(dataset: str) -> int:
    """Multiply-adds of one forward pass of the paper's network for `dataset`."""
    from keras_takd.core.models import build_model

    return sum(
        math.prod(layer.output.shape[1:-1]) * math.prod(layer.kernel.shape)
        for layer in build_model(dataset).layers
        if hasattr(layer, "kernel")
    )


def _cifar_factor() -> dict[str, Any]:
    """How much more a CIFAR-10 image costs than an MNIST one: their networks' multiply-adds."""
    macs = {dataset: _multiply_adds(dataset) for dataset in _SPLITS}
    return {"multiply_adds": macs, "ratio": macs["cifar10"] / macs["mnist"]}


def _part_tasks(part: tuple, costs: dict, cifar: float) -> tuple[list[_Task], dict[str, Any]]:
    """The units of one study part and what its flagfiles say."""
    name, train_file, eval_file, overrides, seeds = part
    train = _read_flags(train_file, _TRAIN_FLAGS, overrides)
    evaluation = _read_flags(eval_file, _EVAL_FLAGS, overrides)
    dataset = train["dataset"]
    factor = cifar if dataset == "cifar10" else 1.0
    train_images = train["train_size"] or _SPLITS[dataset][0] - train["validation_size"]
    test_images = train["test_size"] or _SPLITS[dataset][1]
    config = _evaluation_config(evaluation)
    epoch = costs["epoch"]["seconds"] * train_images * factor
    per_image = {kind: cost["seconds"] * factor for kind, cost in costs.items()}
    tasks = []
    for seed in range(seeds):
        warm = f"{name} seed {seed} warm start"
        if train["warm_start"]:
            tasks.append(_Task(warm, True, epoch, None))
        for t in train["temperature"]:
            chain = f"{name} seed {seed} T={t}"
            seconds = epoch * train["stages"] * train["epochs"]
            tasks.append(_Task(chain, True, seconds, warm if train["warm_start"] else None))
            for stage in range(1, train["stages"] + 1):
                model = f"{chain} stage {stage}"
                metric = evaluation["metric_images"] or test_images
                tasks.append(_Task(f"{model} metrics", False, per_image["metrics"] * metric, chain))
                tasks += _attack_tasks(model, chain, config, per_image)
    described = {
        "name": name,
        "flagfiles": [train_file, eval_file],
        "overrides": overrides,
        "seeds": seeds,
        "dataset": dataset,
        "temperatures": train["temperature"],
        "stages": train["stages"],
        "epochs": train["epochs"],
        "attacks": {kind: config.images_of(kind) for kind in _attacked(config)},
        "chains": seeds * len(train["temperature"]),
        "models": seeds * len(train["temperature"]) * train["stages"],
    }
    return tasks, described


def _evaluation_config(values: dict[str, Any]) -> EvaluationConfig:
    """The evaluation's settings from its flags' values, as `keras_takd.takd.evaluate` makes it."""
    counts = (item.partition("=") for item in values["attack_images"])
    return EvaluationConfig(
        attacks=tuple(values["attacks"]),
        num_images=values["num_images"],
        gradient_masking=values["gradient_masking"],
        attack_images={attack: int(count) for attack, _, count in counts},
        metric_images=values["metric_images"],
        indicators=values["indicators"],
    )


def _attacked(config: EvaluationConfig) -> list[str]:
    """The attack units of each model, as `keras_takd.takd.evaluation.loop` lists them."""
    masked = config.gradient_masking and "l2" in config.attacks
    return list(config.attacks) + ([MASKED_L2_PREFIX] if masked else [])


def _attack_tasks(model: str, chain: str, config: EvaluationConfig, per_image: dict) -> list:
    """A model's attack units, one per block of images, each followed by its indicator unit."""
    tasks = []
    for kind in _attacked(config):
        images = config.images_of(kind)
        blocks = math.ceil(images / _BLOCK.value)
        for start, stop in (shard_range(images, i, blocks) for i in range(blocks)):
            attack = f"{model} {kind} {start}-{stop}"
            tasks.append(_Task(attack, False, per_image[kind] * (stop - start), chain))
            if config.indicators:
                check = f"{model} {indicator_unit(kind)} {start}-{stop}"
                tasks.append(_Task(check, False, per_image["indicators"] * (stop - start), attack))
    return tasks


def _durations(tasks: list[_Task], speedup: tuple[float, float], overhead: float) -> dict:
    """Each unit's seconds on a worker `speedup` (training, evaluation) times as fast."""
    return {t.name: t.seconds / speedup[0 if t.training else 1] + overhead for t in tasks}


def _critical_path(tasks: list[_Task], seconds: dict[str, float]) -> float:
    """The longest chain of dependent units (each unit waits for at most one other)."""
    finish = {}
    for task in tasks:  # listed after the unit it waits for
        finish[task.name] = finish.get(task.after, 0.0) + seconds[task.name]
    return max(finish.values())


def _wall(tasks: list[_Task], seconds: dict[str, float], workers: int) -> float:
    """Wall time of list scheduling on `workers`: the longest ready unit goes to a free worker."""
    waiting = defaultdict(list)
    ready = []
    for task in tasks:
        if task.after is None:
            ready.append((-seconds[task.name], task.name))
        else:
            waiting[task.after].append(task.name)
    heapq.heapify(ready)
    running, now = [], 0.0
    while ready or running:
        while ready and len(running) < workers:
            _, name = heapq.heappop(ready)
            heapq.heappush(running, (now + seconds[name], name))
        now, done = heapq.heappop(running)
        for name in waiting.pop(done, []):
            heapq.heappush(ready, (-seconds[name], name))
    return now


def _schedule(tasks: list[_Task], overheads: dict) -> dict[str, Any]:
    """Units, compute, critical path and wall time of `tasks` on every configuration."""
    cpu = _durations(tasks, (1.0, 1.0), overheads["ray"])
    gpu = _durations(tasks, (_GPU_TRAIN.value, _GPU_EVAL.value), overheads["ray"])
    serial = _durations(tasks, (1.0, 1.0), overheads["serial"])
    wall = {f"cpu_{n}": _wall(tasks, cpu if n > 1 else serial, n) for n in _CPU_WORKERS}
    wall |= {f"gpu_{n}": _wall(tasks, gpu, n) for n in _GPUS}
    return {
        "units": {
            "train": sum(t.training for t in tasks),
            "evaluate": sum(not t.training for t in tasks),
        },
        "compute_s": {"cpu": sum(cpu.values()), "gpu": sum(gpu.values())},
        "critical_path_s": {"cpu": _critical_path(tasks, cpu), "gpu": _critical_path(tasks, gpu)},
        "wall_s": wall,
    }


def plan() -> dict[str, Any]:
    """The plan's record: settings, measured costs, each study part and the whole study."""
    costs, overheads, cifar = _measured_costs(), _overheads(), _cifar_factor()
    parts, everything = [], []
    for part in _PARTS:
        tasks, described = _part_tasks(part, costs, cifar["ratio"])
        parts.append(described | _schedule(tasks, overheads))
        everything += tasks
    return {
        "date": utc_now(),
        "commit": git_commit(REPO),
        "settings": {
            "block_images": _BLOCK.value,
            "gpu_speedup_training": _GPU_TRAIN.value,
            "gpu_speedup_evaluation": _GPU_EVAL.value,
            "cpu_workers": list(_CPU_WORKERS),
            "gpus": list(_GPUS),
        },
        "costs": costs,
        "overheads": overheads,
        "checks": _checks(),
        "cifar10": cifar,
        "parts": parts,
        "whole": _schedule(everything, overheads),
    }


def _span(seconds: float) -> str:
    """ "25 min" below an hour, "5.2 h" below two days, else "12.3 d"."""
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h" if seconds < 172_800 else f"{seconds / 86_400:,.1f} d"


def _configurations(settings: dict[str, Any]) -> dict[str, str]:
    """{key of "wall_s": column label} of the CPU and GPU configurations."""
    cpus = {f"cpu_{n}": f"{n} CPU worker{'s' * (n > 1)}" for n in settings["cpu_workers"]}
    return cpus | {f"gpu_{n}": f"{n} GPU{'s' * (n > 1)}" for n in settings["gpus"]}


def _row(name: str, r: dict[str, Any], settings: dict[str, Any]) -> str:
    units = r["units"]["train"] + r["units"]["evaluate"]
    walls = " | ".join(_span(r["wall_s"][key]) for key in _configurations(settings))
    return (
        f"| {name} | {r['units']['train']:,} + {r['units']['evaluate']:,} = {units:,} | "
        f"{_span(r['compute_s']['cpu'])} / {_span(r['compute_s']['gpu'])} | "
        f"{_span(r['critical_path_s']['cpu'])} / {_span(r['critical_path_s']['gpu'])} | {walls} |"
    )


def _bound_line(whole: dict[str, Any]) -> str:
    """Where more workers stop helping: compute / critical path."""
    cpu, gpu = (whole["compute_s"][k] / whole["critical_path_s"][k] for k in ("cpu", "gpu"))
    return (
        "Up to about compute / critical path workers, the wall time is the compute shared out; "
        f"beyond, the longest chain bounds it: about {cpu:,.0f} CPU workers or {gpu:,.0f} GPUs "
        "for the whole study."
    )


def markdown(results: dict[str, Any]) -> str:
    """The report, drawn from the plan's record alone."""
    s, c = results["settings"], results["cifar10"]
    workers = " | ".join(_configurations(s).values())
    lines = [
        "# A paper-scale plan from measured unit costs",
        "",
        f"Computed {results['date']} on commit {results['commit']} by "
        "`python benchmarks/paper_scale_plan.py` (no attack run, nothing trained). A CPU worker "
        "has 2 cores, as the machine the costs were measured on; it and a GPU run one unit at a "
        f"time. Attack units are blocks of {s['block_images']} images.",
        "",
        "## The study",
        "",
        "| part | flagfiles | seeds x T x stages | epochs a model | attacks (images a model) |",
        "|---|---|---|---|---|",
    ]
    for p in results["parts"]:
        attacks = ", ".join(f"{k} {n:,}" for k, n in p["attacks"].items())
        flagfiles = ", ".join(f"`{f}`" for f in p["flagfiles"])
        extra = f" with `{' '.join(p['overrides'])}`" if p["overrides"] else ""
        lines.append(
            f"| {p['name']} | {flagfiles}{extra} | {p['seeds']} x {len(p['temperatures'])} x "
            f"{p['stages']} | {p['epochs']} | {attacks} |"
        )
    lines += [
        "",
        "Every model also has a metrics unit (accuracy, sensitivity, confidence on the test set) "
        "and an indicator unit after each attack block. The replicate study (issue 25) has no "
        "flagfile here yet: it is modelled as 10 seeds x T in {1, 40} x 3 stages trained as "
        "`flags/mnist_decisive.cfg`, FMN L2 on 100 images.",
        "",
        "## Measured costs (one 2-core worker)",
        "",
        "| cost | seconds | per | source |",
        "|---|---|---|---|",
        *(
            f"| {k} | {v['seconds']:.3g} | {v['per']} | {v['source']} |"
            for k, v in results["costs"].items()
        ),
        f"| executor overhead | {results['overheads']['serial']:.2f} serial, "
        f"{results['overheads']['ray']:.2f} Ray | unit | {results['overheads']['source']} |",
        "",
        "Checks: the decisive run's C&W L2 units (the same settings, 50 images a unit, two "
        "processes on 2 cores) took a median "
        f"{results['checks']['decisive_l2_seconds_per_image']:.1f} s an image "
        "(`figures/decisive/eval/*/l2.json`). A distilled stage is priced as a "
        "teacher's: an epoch of distillation took "
        f"{results['checks']['distiller_over_plain_fit']:.3f}x one of plain training "
        "(`benchmarks/results/distillation_throughput.json`). The attack costs were measured "
        "with two processes sharing the 2 cores, so a worker running one unit alone may be "
        "faster. The training epochs were timed with other jobs on the cores at times: the "
        "decisive run's README gives about 15 minutes for a chain of 30 epochs on idle cores.",
        "",
        "**Estimates, not measurements:**",
        "",
        f"- CIFAR-10: no CIFAR-10 unit of this study has been timed. Its units are priced as "
        f"MNIST's times the ratio of the two networks' multiply-adds per image, "
        f"{c['multiply_adds']['cifar10']:,} / {c['multiply_adds']['mnist']:,} = "
        f"{c['ratio']:.2f}x (`build_model`), assuming time proportional to arithmetic (the "
        "attacks run at the forward + backward floor, benchmarks/README.md). L0 may cost more: "
        "its solves grow with the pixels it must change.",
        f"- GPUs: none measured. One GPU is assumed {s['gpu_speedup_training']:g}x a 2-core "
        f"worker for training and {s['gpu_speedup_evaluation']:g}x for evaluation units "
        "(batches of 100-128 small images keep a GPU's kernels short); replace with "
        "--gpu_speedup_training / --gpu_speedup_evaluation once measured.",
        "- Every image is priced as attacked; misclassified ones are skipped in a real run, so "
        "CIFAR-10 (78% accurate in the paper) costs less than shown.",
        "",
        "## Compute and wall time",
        "",
        "Compute and critical path: on a CPU worker / on a GPU. Compute: the sum of the units' "
        "seconds. Critical path: the longest "
        "chain warm start -> chain -> attack block -> indicators. Wall: list scheduling over "
        "that graph, the longest ready unit first; 1 CPU worker runs serially (its overhead), "
        "every other configuration on Ray.",
        "",
        f"| part | units (train + evaluate) | compute | critical path | {workers} |",
        "|---|---|---|---|" + "---|" * (len(s["cpu_workers"]) + len(s["gpus"])),
        *(_row(p["name"], p, s) for p in results["parts"]),
        _row("**whole study**", results["whole"], s),
        "",
        _bound_line(results["whole"]),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    del argv
    if _REPORT_ONLY.value:
        reports.rewrite_report(_RESULTS_DIR.value, _NAME, markdown)
        return
    print(reports.write_results(_RESULTS_DIR.value, _NAME, plan(), markdown).read_text())


if __name__ == "__main__":
    cli.run_main(main, _NAME)

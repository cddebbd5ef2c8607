"""Gradient masking of a trained distillation chain, shown by APGD: robust accuracy at L-inf eps.

On the models of a real run instead of the benchmark's small distilled one (`fmn_vs_cw.py`):
for every model of the chain at each --temperatures value of a `keras_takd.main` run (e.g.
the decisive run, `flags/mnist_decisive.cfg`), on the first --images test images that EVERY
model of the chain classifies correctly, it runs at L-inf eps (MNIST: 0.3)

* PGD-CE: 100 steps of 0.01 from a random start (Madry et al.'s MNIST attack at 100 steps),
* APGD-CE and APGD-DLR (Croce & Hein, arXiv:2003.01690): 100 steps, one restart each,

and reports each model's robust accuracy per attack with its Wilson 95% interval, the robust
accuracy against the worst of the three per image (what AutoAttack reports; FAB and Square are
not run, so it is an upper bound), and the paired difference APGD-CE - APGD-DLR on the same
images with its bootstrap interval and McNemar's exact p (`keras_takd.core.statistics`).

A network trained at temperature T has logits about T times larger than at T = 1, which
saturates the softmax: cross-entropy gradients vanish on most images (Carlini & Wagner 2016,
arXiv:1607.04311). DLR is invariant to the logits' scale. So on a distilled model the CE
attacks should leave a high robust accuracy that DLR removes.

Run (about a minute of CPU per model for 500 images):
    python -m keras_takd.main --flagfile=flags/mnist_decisive.cfg --data_dir=../shared/data \\
        --temperature=40 --output_dir=/work/runs/mnist_decisive
    python benchmarks/gradient_masking.py --run=/work/runs/mnist_decisive --temperatures=40
Writes benchmarks/results/gradient_masking.json and gradient_masking.md; `--report_only` redraws
the .md from the .json.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
from absl import flags
from common import reports, robustness
from common.environment import REPO, RESULTS_DIR, git_commit, machine_info, versions
from common.models import run_chain
from common.reports import estimate_dict
from common.timing import utc_now

from keras_takd.core import cli

NAME = "gradient_masking"

FLAGS = flags.FLAGS
flags.DEFINE_string("run", None, "Folder of a keras_takd.main run (run.json, results.csv).")
flags.DEFINE_list("temperatures", ["40"], "Temperatures of the run whose chains are attacked.")
flags.DEFINE_integer("images", 500, "Test images every model classifies correctly.", lower_bound=1)
flags.DEFINE_float("eps", 0.3, "L-inf radius (MNIST's standard 0.3).", lower_bound=0)
flags.DEFINE_integer("steps", 100, "Steps of every attack.", lower_bound=1)
flags.DEFINE_string("data_dir", str(REPO.parent / "shared" / "data"), "Folder of mnist.npz.")
flags.DEFINE_string("results_dir", str(RESULTS_DIR), "Report folder.")
flags.DEFINE_bool(
    "report_only", False, "Compute nothing: redraw <results_dir>/gradient_masking.md from its json."
)


def model_report(fooled: dict[str, np.ndarray]) -> dict[str, Any]:
    """Robust accuracies with Wilson intervals, the worst case, and CE - DLR paired."""
    from keras_takd.core import statistics

    estimate = estimate_dict
    n = len(next(iter(fooled.values())))
    out = {
        name: estimate(statistics.proportion(int((~hit).sum()), n)) for name, hit in fooled.items()
    }
    worst = np.any(np.stack(list(fooled.values())), axis=0)
    out["worst"] = estimate(statistics.proportion(int((~worst).sum()), n))
    difference = statistics.paired_rate_difference(~fooled["apgd_ce"], ~fooled["apgd_dlr"])
    out["apgd_ce_minus_dlr"] = {**estimate(difference), "mcnemar_p": difference.p_value}
    return out


def run_benchmark() -> dict[str, Any]:
    from keras_takd.core.data import load_dataset
    from keras_takd.core.metrics import correctly_classified

    started = utc_now()
    chains, data = {}, None
    for text in FLAGS.temperatures:
        temperature = float(text)
        run, models = run_chain(FLAGS.run, temperature)
        if data is None:
            data = load_dataset(run.dataset, data_dir=FLAGS.data_dir)
        correct = np.all(
            [correctly_classified(m, data.x_test, data.y_test) for m in models.values()], axis=0
        )
        index = np.flatnonzero(correct)[: FLAGS.images]
        if len(index) < FLAGS.images:
            raise ValueError(f"only {len(index)} test images are classified correctly by all")
        x, y = data.x_test[index], data.y_test[index]
        chain = {"images": int(len(index)), "last_image_index": int(index[-1]), "models": {}}
        for name, model in models.items():
            fooled, seconds = robustness.attack_all(model, x, y, FLAGS.eps, FLAGS.steps)
            report = model_report(fooled)
            chain["models"][name] = {"robust_accuracy": report, "timing": seconds}
            print(name, {k: round(v["estimate"], 3) for k, v in report.items()}, flush=True)
        chains[f"T={temperature:g}"] = chain
    return {
        "command": "python benchmarks/gradient_masking.py " + " ".join(sys.argv[1:]),
        "started": started,
        "finished": utc_now(),
        "commit": git_commit(REPO),
        "machine": machine_info(),
        "versions": versions(["tensorflow", "keras", "scipy"]),
        "settings": {
            "eps": FLAGS.eps,
            "steps": FLAGS.steps,
            "pgd_step_size": 0.01,
            "pgd_random_start": True,
            "apgd_restarts": 1,
            "seed": 0,
        },
        "run_flags": run.flags,
        "chains": chains,
    }


def _cell(e: dict[str, float]) -> str:
    return f"{e['estimate']:.1%} [{e['low']:.1%}, {e['high']:.1%}]"


def markdown_report(results: dict[str, Any]) -> str:
    s = results["settings"]
    lines = [
        "# Gradient masking of a distillation chain: robust accuracy at L-inf eps",
        "",
        f"Command: `{results['command']}` ({results['started']} to {results['finished']}), "
        f"commit {results['commit']}.",
        f"eps = {s['eps']}, {s['steps']} steps per attack; PGD-CE: step {s['pgd_step_size']}, "
        "random start; APGD: one restart, seed 0. Robust accuracy (share of images NOT fooled) "
        "with its Wilson 95% interval; worst = not fooled by any of the three (FAB and Square "
        "not run: an upper bound). CE - DLR: paired on the same images, percentile-bootstrap "
        "95% interval, McNemar's exact p.",
        "",
    ]
    for chain_name, chain in results["chains"].items():
        lines += [
            f"## {chain_name}: the first {chain['images']} test images every model of the chain "
            f"classifies correctly (up to test index {chain['last_image_index']})",
            "",
            "| model | PGD-CE | APGD-CE | APGD-DLR | worst of three | APGD-CE - APGD-DLR (p) |",
            "|---|---|---|---|---|---|",
        ]
        for name, entry in chain["models"].items():
            r = entry["robust_accuracy"]
            d = r["apgd_ce_minus_dlr"]
            lines.append(
                f"| {name} | {_cell(r['pgd_ce'])} | {_cell(r['apgd_ce'])} | {_cell(r['apgd_dlr'])} "
                f"| {_cell(r['worst'])} | {d['estimate']:+.1%} [{d['low']:+.1%}, {d['high']:+.1%}] "
                f"(p = {d['mcnemar_p']:.2g}) |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    del argv
    from keras_takd.core import seeding

    if FLAGS.report_only:
        reports.rewrite_report(FLAGS.results_dir, NAME, markdown_report)
        return
    if not FLAGS.run:
        raise ValueError("--run: missing; expected the folder of a keras_takd.main run")
    seeding.set_seed(0)
    results = run_benchmark()
    reports.write_results(FLAGS.results_dir, NAME, results, markdown_report)
    print(markdown_report(results))


if __name__ == "__main__":
    cli.run_main(main, NAME)  # bad input: one line and exit 1, not a traceback

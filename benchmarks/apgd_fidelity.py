"""APGD and autoattack_lite against the authors' own code (fra31/auto-attack), side by side.

`keras_takd.attacks.apgd` re-implements Croce & Hein's Auto-PGD (arXiv:2003.01690) in
TensorFlow. This benchmark checks it against the authors' PyTorch code, run on the same
network with the same weights: the MNIST network's Keras weights are copied into an
equivalent PyTorch module (`torch_copy`; the largest logit difference is reported), and on the
first --images test images that both models below classify correctly, for every radius of
--linf_eps and --l2_eps it runs

* APGD-CE and APGD-DLR (100 steps, one restart, seed 0): ours (`apgd`) and theirs
  (`autoattack.autopgd_base.APGDAttack`);
* APGD-CE then APGD-T on the survivors: ours (`autoattack_lite`, 9 target classes) and theirs
  (`autoattack.AutoAttack(version="custom", attacks_to_run=["apgd-ce", "apgd-t"])`).

Both sides' images are checked the same way: inside the eps-ball (up to 1e-5) and the box,
and classified by the Keras model. Per attack it reports both robust accuracies (Wilson 95%
intervals) and the paired difference of the fooled rates, ours - theirs, on the same images:
bootstrap 95% interval and McNemar's exact p (`keras_takd.core.statistics`); when no image
differs the bootstrap interval collapses to 0, so the interval is then +- the Wilson 95% upper
bound of the rate of differing images (0 of n), which bounds the difference. The verdict is
"same within 2 points" when the interval lies inside [-0.02, 0.02], "ours stronger" or
"theirs stronger" when it excludes 0, and "inconclusive" otherwise.

The two random starts differ by design (documented in `keras_takd.attacks.apgd`), so single
images may differ; the rates should not.

Models: the benchmark MNIST network (`common.models.prepare_model`, T = 1) and Papernot et al.'s
defensively distilled one at T = 40 (`common.models.prepare_distilled`), whose logits are about
40 times larger: the case where cross-entropy saturates and DLR should not.

The authors' code and PyTorch are not dependencies. Fetch the code outside the repository and
install PyTorch (the CPU build) into a folder of its own:
    git clone https://github.com/fra31/auto-attack /work/tmp/autoattack
    pip install --no-deps --target /work/tmp/torch_env torch==2.13.0 filelock sympy mpmath \\
        networkx jinja2 markupsafe fsspec typing_extensions
    python benchmarks/apgd_fidelity.py --autoattack_path=/work/tmp/autoattack \\
        --torch_path=/work/tmp/torch_env
Writes benchmarks/results/apgd_fidelity.json and apgd_fidelity.md; `--report_only` redraws the
.md from the .json.
"""

from __future__ import annotations

import dataclasses
import pathlib
import sys
from typing import Any

import numpy as np
from absl import flags
from common import reports
from common.environment import REPO, RESULTS_DIR, git_commit, machine_info, versions
from common.models import prepare_distilled, prepare_model
from common.reports import estimate_dict
from common.timing import timed, utc_now
from references import autoattack as reference

from keras_takd.core import cli

NAME = "apgd_fidelity"

FLAGS = flags.FLAGS
flags.DEFINE_integer("images", 500, "Test images both models classify correctly.", lower_bound=1)
flags.DEFINE_list("linf_eps", ["0.1", "0.2", "0.3"], "L-inf radii.")
flags.DEFINE_list("l2_eps", ["1.5"], "L2 radii.")
flags.DEFINE_integer("steps", 100, "Iterations of every APGD run.", lower_bound=1)
flags.DEFINE_list(
    "attacks", ["apgd_ce", "apgd_dlr", "autoattack_lite"], "Attacks to compare, in order."
)
flags.DEFINE_integer("train_epochs", 3, "Epochs of each model (as fmn_vs_cw.py).")
flags.DEFINE_float("temperature", 40.0, "Temperature of the distilled model.", lower_bound=1)
flags.DEFINE_string("autoattack_path", "/work/tmp/autoattack", "Clone of fra31/auto-attack.")
flags.DEFINE_string("torch_path", "/work/tmp/torch_env", "pip --target folder of PyTorch.")
flags.DEFINE_string("cache_dir", "/tmp/keras_takd_benchmarks", "Trained-model cache.")
flags.DEFINE_string("data_dir", str(REPO.parent / "shared" / "data"), "Folder of mnist.npz.")
flags.DEFINE_string("results_dir", str(RESULTS_DIR), "Report folder.")
flags.DEFINE_string("results_name", NAME, "Report files: <results_dir>/<results_name>.{json,md}.")
flags.DEFINE_list("models", [], "Models to attack (default both): T1, T<temperature>_distilled.")
flags.DEFINE_bool(
    "torch_flush_denormal",
    False,
    "Run theirs with torch.set_flush_denormal(True): float32 results below 1.2e-38 become 0, "
    "as in TensorFlow on the CPU (a diagnosis of where the two differ).",
)
flags.DEFINE_bool(
    "report_only", False, "Compute nothing: redraw <results_dir>/<results_name>.md from its json."
)
flags.register_validator(
    "attacks",
    lambda v: bool(v) and set(v) <= {"apgd_ce", "apgd_dlr", "autoattack_lite"},
    "--attacks: some of apgd_ce, apgd_dlr, autoattack_lite",
)

TOLERANCE = 1e-5  # of the eps-ball and box checks (float32 arithmetic)
MARGIN = 0.02  # "same within 2 points"


def ours(model, attack: str, x, y, eps: float, norm: str, steps: int) -> np.ndarray:
    """Our attack on `model`; returns the adversarial images."""
    from keras_takd import attacks

    if attack == "autoattack_lite":
        return attacks.autoattack_lite(model, x, y, eps, norm, steps=steps, seed=0).x_adv
    loss = attack.removeprefix("apgd_")
    return attacks.apgd(model, x, y, eps, norm, loss=loss, steps=steps, seed=0).x_adv


def fooled(model, x, x_adv, y, eps: float, norm: str) -> np.ndarray:
    """Per image, whether `x_adv` is inside the ball and the box and misclassified.

    Raises:
        ValueError: an image leaves the ball or the box (the attack is broken).
    """
    from keras_takd.core.metrics import correctly_classified

    delta = (x_adv - x).reshape(len(x), -1)
    size = np.abs(delta).max(1) if norm == "linf" else np.linalg.norm(delta, axis=1)
    if size.max() > eps * (1 + TOLERANCE) + TOLERANCE:
        raise ValueError(f"an image leaves the {norm} ball of {eps}: {size.max()}")
    if x_adv.min() < -TOLERANCE or x_adv.max() > 1 + TOLERANCE:
        raise ValueError(f"an image leaves the box [0, 1]: [{x_adv.min()}, {x_adv.max()}]")
    return ~correctly_classified(model, np.clip(x_adv, 0, 1), y)


def compare(ours_fooled: np.ndarray, theirs_fooled: np.ndarray) -> dict[str, Any]:
    """Both robust accuracies and the paired difference of fooled rates, with a verdict."""
    from keras_takd.core import statistics

    n = len(ours_fooled)
    differing = int((ours_fooled != theirs_fooled).sum())
    difference = statistics.paired_rate_difference(ours_fooled, theirs_fooled)
    if differing == 0:
        # The bootstrap interval collapses to [0, 0] when no image differs. |difference| is
        # at most the rate of differing images, whose Wilson upper bound is the honest width.
        bound = statistics.proportion(0, n).high
        difference = dataclasses.replace(difference, low=-bound, high=bound)
    if statistics.within(difference, -MARGIN, MARGIN) == statistics.AGREES:
        verdict = f"same within {MARGIN:.0%}"
    elif statistics.within(difference, 0.0, 0.0) == statistics.DISAGREES:  # excludes 0
        verdict = "ours stronger" if difference.estimate > 0 else "theirs stronger"
    else:
        verdict = "inconclusive"
    return {
        "robust_ours": estimate_dict(statistics.proportion(int((~ours_fooled).sum()), n)),
        "robust_theirs": estimate_dict(statistics.proportion(int((~theirs_fooled).sum()), n)),
        "fooled_ours_minus_theirs": estimate_dict(difference) | {"mcnemar_p": difference.p_value},
        "images_differing": differing,
        "verdict": verdict,
    }


def run_benchmark() -> dict[str, Any]:
    autoattack, torch = reference.import_autoattack(FLAGS.autoattack_path, FLAGS.torch_path)
    from keras_takd.core.metrics import correctly_classified

    cache = pathlib.Path(FLAGS.cache_dir)
    t1, data, _, t1_info = prepare_model(cache, FLAGS.data_dir, FLAGS.train_epochs)
    distilled, distilled_info = prepare_distilled(
        cache, data, FLAGS.train_epochs, FLAGS.temperature
    )
    models = {"T1": t1, f"T{FLAGS.temperature:g}_distilled": distilled}
    unknown = set(FLAGS.models) - set(models)
    if unknown:
        raise ValueError(f"--models: unknown {sorted(unknown)}; expected some of {list(models)}")
    right = {name: correctly_classified(m, data.x_test, data.y_test) for name, m in models.items()}
    correct = np.all(list(right.values()), axis=0)
    index = np.flatnonzero(correct)[: FLAGS.images]
    x, y = data.x_test[index], data.y_test[index]
    results: dict[str, Any] = {
        "command": "python benchmarks/apgd_fidelity.py " + " ".join(sys.argv[1:]),
        "started": utc_now(),
        "commit": git_commit(REPO),
        "autoattack_commit": git_commit(FLAGS.autoattack_path),
        "machine": machine_info(),
        "versions": versions(["tensorflow", "keras", "scipy"]) | {"torch": torch.__version__},
        "models": {"T1": t1_info, f"T{FLAGS.temperature:g}_distilled": distilled_info},
        "test_accuracy": {name: float(r.mean()) for name, r in right.items()},
        "images": int(len(index)),
        "last_image_index": int(index[-1]),
        "steps": FLAGS.steps,
        "torch_flush_denormal": FLAGS.torch_flush_denormal,
        "copies": {},
        "cells": [],
    }
    torch.manual_seed(0)
    if FLAGS.torch_flush_denormal and not torch.set_flush_denormal(True):
        raise ValueError("--torch_flush_denormal: this CPU cannot flush denormals in PyTorch")
    grid = [("linf", float(e)) for e in FLAGS.linf_eps] + [("l2", float(e)) for e in FLAGS.l2_eps]
    attacked = {n: m for n, m in models.items() if not FLAGS.models or n in FLAGS.models}
    for name, model in attacked.items():
        net = reference.torch_copy(model, torch)
        keras_logits = np.asarray(model.predict(x, batch_size=500, verbose=0))
        with torch.no_grad():
            torch_logits = net(torch.from_numpy(x)).numpy()
        gap = float(np.abs(keras_logits - torch_logits).max())
        results["copies"][name] = {
            "max_abs_logit_difference": gap,
            "max_abs_logit": float(np.abs(keras_logits).max()),
            "same_prediction": bool(np.all(keras_logits.argmax(1) == torch_logits.argmax(1))),
        }
        for norm, eps in grid:
            for attack in FLAGS.attacks:
                cell: dict[str, Any] = {"model": name, "norm": norm, "eps": eps, "attack": attack}
                with timed() as ours_time:
                    ours_fooled = fooled(
                        model, x, ours(model, attack, x, y, eps, norm, FLAGS.steps), y, eps, norm
                    )
                with timed() as theirs_time:
                    x_theirs = reference.run(
                        autoattack, torch, net, attack, x, y, eps, norm, FLAGS.steps
                    )
                theirs_fooled = fooled(model, x, x_theirs, y, eps, norm)
                cell |= compare(ours_fooled, theirs_fooled)
                cell["seconds"] = {"ours": ours_time.as_dict(), "theirs": theirs_time.as_dict()}
                results["cells"].append(cell)
                print(
                    f"{name} {norm} {eps:g} {attack}: robust ours "
                    f"{cell['robust_ours']['estimate']:.3f}, theirs "
                    f"{cell['robust_theirs']['estimate']:.3f}: {cell['verdict']}",
                    flush=True,
                )
                _write(results)
    results["finished"] = utc_now()
    _write(results)
    return results


def _write(results: dict[str, Any]) -> None:
    reports.write_results(FLAGS.results_dir, FLAGS.results_name, results, markdown_report)


def _rate(e: dict[str, float]) -> str:
    return f"{e['estimate']:.1%} [{e['low']:.1%}, {e['high']:.1%}]"


def markdown_report(results: dict[str, Any]) -> str:
    lines = [
        "# APGD and autoattack_lite against the authors' code (fra31/auto-attack)",
        "",
        f"Command: `{results['command']}` (started {results['started']}, finished "
        f"{results.get('finished', 'not yet: partial')}). keras_takd {results['commit']}, "
        f"auto-attack {results['autoattack_commit']}, torch {results['versions']['torch']}; "
        f"{results['machine']['cpu']}, {results['machine']['cores_usable']} cores.",
        "",
        "Test accuracy: "
        + ", ".join(f"{k} {v:.2%}" for k, v in results["test_accuracy"].items())
        + f". {results['images']} test images both models classify correctly (the first ones, up "
        f"to index {results['last_image_index']}); {results['steps']} steps per APGD run, one "
        "restart, seed 0"
        + (
            "; theirs with denormals flushed to zero (`torch.set_flush_denormal(True)`)"
            if results.get("torch_flush_denormal")
            else ""
        )
        + ". Robust accuracy with Wilson 95% intervals; fooled rate ours - "
        "theirs paired on the same images, bootstrap 95% interval (when no image differs: "
        "+- the Wilson upper bound of the rate of differing images) and McNemar's exact p.",
        "",
        "PyTorch copies of the Keras models: "
        + "; ".join(
            f"{name}: largest logit difference {c['max_abs_logit_difference']:.2g} "
            f"(largest logit {c['max_abs_logit']:.3g}), "
            f"{'same' if c['same_prediction'] else 'NOT the same'} predictions"
            for name, c in results["copies"].items()
        )
        + ".",
        "",
        "| model | norm | eps | attack | robust, ours | robust, theirs | fooled ours - theirs "
        "| McNemar p | images differing | verdict | s ours / theirs |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in results["cells"]:
        d = c["fooled_ours_minus_theirs"]
        lines.append(
            f"| {c['model']} | {c['norm']} | {c['eps']:g} | {c['attack']} | "
            f"{_rate(c['robust_ours'])} | {_rate(c['robust_theirs'])} | "
            f"{d['estimate']:+.1%} [{d['low']:+.1%}, {d['high']:+.1%}] | {d['mcnemar_p']:.2g} | "
            f"{c['images_differing']} | {c['verdict']} | "
            f"{c['seconds']['ours']['wall_s']:.1f} / "
            f"{c['seconds']['theirs']['wall_s']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    del argv
    if FLAGS.report_only:
        reports.rewrite_report(FLAGS.results_dir, FLAGS.results_name, markdown_report)
        return
    run_benchmark()


if __name__ == "__main__":
    cli.run_main(main, NAME)  # bad input: one line and exit 1, not a traceback

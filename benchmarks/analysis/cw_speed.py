"""The C&W speed report (`cw_speed_vs_references.py`): its three targets and its tables.

Targets: batched keras_takd at >= 0.8x the floor's image-iterations per second; batched
>= 10x one image at a time at a mean distortion within 5%; >= 10x ART at equal or lower
distortion and equal or higher success.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from common.reports import fmt

NAME = "cw_speed_vs_references"


def _subset_mean(record: dict[str, Any], n: int, both: np.ndarray | None = None) -> float:
    """Mean distortion of `record` over its first n images that succeeded (and `both`)."""
    success = np.asarray(record["per_image_success"][:n], bool)
    if both is not None:
        success &= both
    values = np.asarray(record["per_image_distortion"][:n])[success]
    return float(np.mean(values)) if values.size else float("nan")


def _art_l2_projection(art: dict[str, Any], settings: dict[str, Any]) -> float | None:
    """Seconds ART's L2 would need to finish, from its measured seconds per optimiser row.

    ART 1.20's CarliniL2Method runs all max_iter iterations of every binary-search step on the
    whole batch (it stops early only when every learning rate has fallen to 0), so its work is
    known in advance.
    """
    rows = art["optimizer_image_iterations"]
    if not rows:
        return None
    planned = settings["l2"]["binary_search_steps"] * settings["l2"]["max_iterations"]
    return art["seconds"] / rows * planned * art["images"]


def evaluate_targets(results: dict[str, Any], images: int) -> list[dict[str, Any]]:
    """The three targets, each with the numbers it was decided on."""
    targets = []
    floor = results.get("floor", {}).get("batch", {})
    floor_rate = floor.get("image_iterations_per_s_median")
    floor_cpu_rate = floor.get("image_iterations_per_cpu_s_median", float("nan"))
    floor_share = float(np.median([r["cpu_share"] for r in floor.get("repeats", [])] or [0]))
    gain = results.get("floor", {}).get("batching_gain", {}).get("ratio_median", float("nan"))
    for kind, runs in results["attacks"].items():
        batched = runs.get("keras_takd_batched")
        single = runs.get("keras_takd_one_at_a_time")
        art = runs.get("art")
        if batched and floor_rate:
            ratio = batched["optimizer_image_iterations_per_s"] / floor_rate
            cpu_ratio = batched["optimizer_image_iterations_per_cpu_s"] / floor_cpu_rate
            overhead = runs.get("overhead", {}).get("ratio_to_floor_median", float("nan"))
            useful = 1.0 - batched["padding_or_idle_row_fraction"]
            # The floor and a long attack run minutes apart, under different loads; the
            # interleaved ratio does not, so it decides, times the share of useful rows.
            value = overhead * useful
            targets.append(
                {
                    "target": f"{kind}: batched >= 0.8x floor image-iterations/s",
                    "value": round(value, 3),
                    "detail": f"interleaved per-iteration cost {overhead:.2f}x the floor x"
                    f" {100 * useful:.1f}% of computed rows that were iterations of the algorithm"
                    f" = {value:.2f}x; end to end (floor measured minutes earlier) per wall"
                    f" second {ratio:.2f}x ({batched['optimizer_image_iterations_per_s']:.0f}"
                    f" vs {floor_rate:.0f}, cpu share {batched['timing']['cpu_share']:.2f} vs"
                    f" {floor_share:.2f}), per CPU second {cpu_ratio:.2f}x",
                    "pass": bool(value >= 0.8) if np.isfinite(value) else None,
                }
            )
        if kind in ("l0", "linf") and batched and single:
            k = single["images"]
            speedup = (single["seconds_per_image"] * images) / batched["seconds"]
            cpu_speedup = single["cpu_seconds_per_image"] * images / batched["timing"]["cpu_s"]
            single_mean = _subset_mean(single, k)
            batched_mean = _subset_mean(batched, k)
            gap = abs(batched_mean - single_mean) / single_mean if single_mean else float("nan")
            targets.append(
                {
                    "target": f"{kind}: batched >= 10x one-at-a-time, mean distortion within 5%",
                    "value": round(speedup, 2),
                    "detail": f"one-at-a-time {single['seconds_per_image']:.2f} s/image x {images}"
                    f" vs batched {batched['seconds']:.1f} s; in CPU seconds {cpu_speedup:.1f}x;"
                    f" the floor itself is only {gain:.1f}x cheaper per image-iteration at batch"
                    f" {batched['batch_size']} than at batch 1 on this machine; mean {kind} on"
                    f" the first {k}: batched {batched_mean:.4g}, one-at-a-time"
                    f" {single_mean:.4g} ({100 * gap:.1f}% apart)",
                    "pass": bool(min(speedup, cpu_speedup) >= 10 and gap <= 0.05),
                }
            )
        if batched and art:
            k = art["images_finished"]  # quality is compared on the images ART finished
            speedup = art["seconds_per_image"] / batched["seconds_per_image"]
            cpu_speedup = art["cpu_seconds_per_image"] / batched["cpu_seconds_per_image"]
            if art["finished"]:
                speedup_text = f"{speedup:.1f}x, in CPU seconds {cpu_speedup:.1f}x"
            else:
                speedup_text = (
                    f">= {speedup:.1f}x, in CPU seconds >= {cpu_speedup:.1f}x"
                    " (ART stopped at its budget)"
                )
                projected = _art_l2_projection(art, results["settings"]) if kind == "l2" else None
                if projected:
                    speedup_text += (
                        f"; projected {projected / art['images']:.1f} s/image ="
                        f" {projected / art['images'] / batched['seconds_per_image']:.0f}x"
                    )
            ours = np.asarray(batched["per_image_success"][:k], bool)
            theirs = np.asarray(art["per_image_success"][:k], bool)
            both = ours & theirs
            ours_mean, art_mean = _subset_mean(batched, k, both), _subset_mean(art, k, both)
            quality = ours.mean() >= theirs.mean() and (not both.any() or ours_mean <= art_mean)
            evaluable = k > 0
            targets.append(
                {
                    "target": f"{kind}: >= 10x ART, distortion <=, success >=",
                    "value": round(speedup, 2),
                    "detail": f"seconds/image ART {art['seconds_per_image']:.2f} vs batched"
                    f" {batched['seconds_per_image']:.3f} ({speedup_text}); "
                    + (
                        f"on the {k} images ART finished: success {ours.mean():.2f} vs ART"
                        f" {theirs.mean():.2f}, mean {kind} where both succeed"
                        f" ({int(both.sum())}) {ours_mean:.4g} vs ART {art_mean:.4g}"
                        if k
                        else "ART finished no image, so quality cannot be compared"
                    ),
                    "pass": (
                        bool(min(speedup, cpu_speedup) >= 10 and quality) if evaluable else None
                    ),
                }
            )
    return targets


_ROW_NAMES = {
    "keras_takd_batched": "keras_takd, batched",
    "keras_takd_one_at_a_time": "keras_takd, one image at a time",
    "art": "ART 1.20",
    "cleverhans": "cleverhans 4 (tf2)",
}


def markdown_report(results: dict[str, Any]) -> str:
    """The results table, the floor, the settings and the targets as markdown."""
    n = results["images"]["count"]
    lines = [
        f"# C&W attacks: speed against ART, cleverhans and the floor (benchmarks/{NAME}.py)",
        "",
        f"Generated by `{results['command']}` from {results['started_utc']} to"
        f" {results['finished_utc']}; every number below is measured in that run"
        f" (see {NAME}.json for per-image values, load and pass counts).",
        "",
        f"Machine: {results['machine']['cpu']}, {results['machine']['cores_usable']} usable"
        f" cores, no GPU. Versions: "
        + ", ".join(f"{k} {v}" for k, v in results["versions"].items())
        + ".",
        f"Model: {results['model']['builder']}, {results['model']['training']}, test accuracy"
        f" {results['model']['test_accuracy']:.4f}. Images: the first {n} correctly"
        " classified MNIST test images, untargeted.",
        "",
        "| attack | implementation | images timed | seconds | s / image | est. s for"
        f" {n} | optimiser img-it/s | model bwd rows/s | success | mean | median |"
        " cpu share | load1 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, runs in results["attacks"].items():
        for key in ("keras_takd_batched", "keras_takd_one_at_a_time", "art", "cleverhans"):
            run = runs.get(key)
            if run is None:
                continue
            if key == "cleverhans" and not run.get("runs"):
                lines.append(
                    f"| {kind} | {_ROW_NAMES[key]} | - | - | - | - | - | - | does not"
                    f" run: `{run['error'][:160]}` | - | - | - | - |"
                )
                continue
            note = ""
            if key == "art" and not run["finished"]:
                note = f" (stopped at {run['budget_s']:.0f} s, {run['images_finished']} done)"
            estimate = run["seconds_per_image"] * n
            estimate_text = fmt(estimate) if run["images"] != n else fmt(run["seconds"])
            if key == "art" and not run["finished"]:
                estimate_text = f"> {fmt(estimate)}"
            timing = run["timing"]
            success_text = f"{run['success_rate']:.2f}"
            if key == "art" and not run["finished"]:
                done = run["images_finished"]
                rate = np.mean(run["per_image_success"][:done]) if done else float("nan")
                success_text = f"{fmt(rate)} of {done} done"
            lines.append(
                f"| {kind} | {_ROW_NAMES[key]}{note} | {run['images']} | {fmt(run['seconds'])}"
                f" | {fmt(run['seconds_per_image'])} | {estimate_text}"
                f" | {fmt(run['optimizer_image_iterations_per_s'])}"
                f" | {fmt(run['model_backward_rows_per_s'])} | {success_text}"
                f" | {fmt(run['mean_distortion'])} | {fmt(run['median_distortion'])}"
                f" | {timing['cpu_share']:.2f} | {timing['load1_before']:.1f}-"
                f"{timing['load1_after']:.1f} |"
            )
    floor = results["floor"]
    if floor:
        lines += ["", "Floor (compiled forward + backward loop, gradient w.r.t. the images):", ""]
        for key, label in (
            ("batch", "bare model"),
            ("batch_counted", "through the pass counter"),
            ("batch_1", "bare model"),
        ):
            f = floor[key]
            lines.append(
                f"- {label}, batch {f['batch_size']}: median"
                f" {f['image_iterations_per_s_median']:.0f}"
                f" image-iterations/s (min {f['image_iterations_per_s_min']:.0f}, max"
                f" {f['image_iterations_per_s_max']:.0f}, {len(f['repeats'])} repeats of"
                f" {f['iterations_per_repeat']} iterations)"
            )
    gain = floor.get("batching_gain")
    if gain:
        lines.append(
            f"- batching gain, interleaved rounds: batch {gain['batch_size']} is"
            f" {gain['ratio_median']:.2f}x batch 1 per wall second"
            f" ({gain['ratio_per_cpu_s_median']:.2f}x per CPU second); no attack can be faster"
            " batched than one image at a time by more than this for the same iterations"
            " per image, except by saving per-call overhead"
        )
    overhead = {k: r["overhead"] for k, r in results["attacks"].items() if "overhead" in r}
    if overhead:
        lines += [
            "",
            "Per-iteration cost against the floor, interleaved (attack with abort_early=False,"
            " one c and an unreachable margin so the whole batch runs one solve, each round"
            " right after a floor run; both through the pass counter):",
            "",
        ]
        for kind, o in overhead.items():
            lines.append(
                f"- {kind}: {o['ratio_to_floor_median']:.2f}x the floor's rows/s (rounds: "
                + ", ".join(f"{r:.2f}" for r in o["ratios"])
                + f"; {o['iterations']} iterations, batch {o['batch_size']})"
            )
    lines += ["", "Settings (shared by every library):", ""]
    for kind, options in results["settings"].items():
        lines.append(f"- {kind}: " + ", ".join(f"{k}={v}" for k, v in options.items()))
    lines += ["", "Targets:", "", "| target | value | pass | detail |"]
    lines.append("|---|---|---|---|")
    for t in results["targets"]:
        verdict = {True: "PASS", False: "FAIL", None: "not evaluable"}[t["pass"]]
        lines.append(f"| {t['target']} | {t['value']} | {verdict} | {t['detail']} |")
    return "\n".join(lines) + "\n"

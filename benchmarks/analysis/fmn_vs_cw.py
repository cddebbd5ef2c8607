"""The FMN-against-C&W report (`fmn_vs_cw.py`): chunk merging, paired ratios, the tables.

FMN (arXiv:2102.12827) and foolbox's FMN against C&W (arXiv:1608.04644) on the same images:
per-image ratios and the ratio of means with a paired BCa bootstrap interval, widened to
Pocock's nominal level when the comparison has been looked at more than once.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
from common.reports import distortion_stats, fmt

NAME = "fmn_vs_cw"


# Pocock's constant C_P(K, alpha = 0.05): the two-sided critical value of each of K equally
# spaced looks that keeps the overall error at 5% (Jennison & Turnbull, "Group Sequential
# Methods", 2000, Table 2.1).
_POCOCK_CRITICAL = {1: 1.960, 2: 2.178, 3: 2.289, 4: 2.361, 5: 2.413}


def confidence_level(looks: int) -> float:
    """The nominal two-sided confidence level of each of `looks` looks (0.95 for one look)."""
    from scipy import stats

    return 1.0 - 2.0 * float(stats.norm.sf(_POCOCK_CRITICAL[looks]))


def ratio_stats(fmn: dict, cw: dict, level: float = 0.95) -> dict[str, Any]:
    """Per-image ratios FMN / C&W on the images both fooled, and the ratio of their means.

    The ratio of means carries a BCa bootstrap interval at `level` (`scipy.stats.bootstrap`,
    images resampled in pairs, seed 0): FMN's mean is within 2% of C&W's when the interval lies
    inside [0.98, 1.02], below it when the interval's top is under 1.
    """
    from scipy import stats

    both = np.array(fmn["success"]) & np.array(cw["success"])
    f, c = np.array(fmn["distance"])[both], np.array(cw["distance"])[both]
    ratio = f / np.maximum(c, 1e-12)
    if ratio.size == 0:
        return {"images_both": 0}
    out = {
        "images_both": int(both.sum()),
        "ratio_median": float(np.median(ratio)),
        "ratio_p90": float(np.percentile(ratio, 90)),
        "fmn_below_or_equal": int(np.sum(ratio <= 1.0)),
        "ratio_of_means": float(f.mean() / c.mean()),
    }
    if ratio.size >= 2 and np.ptp(f - c) > 0:
        interval = stats.bootstrap(
            (f, c),
            lambda a, b, axis: a.mean(axis) / b.mean(axis),
            paired=True,
            vectorized=True,
            method="BCa",
            confidence_level=level,
            random_state=0,
        ).confidence_interval
        out |= {"ratio_of_means_low": interval.low, "ratio_of_means_high": interval.high}
    return out


def merge_chunks(chunks: list[dict]) -> dict[str, Any]:
    """Concatenates the per-image lists of chunks and sums their seconds and passes.

    Only the leading chunks that exist count, so the images stay the first ones in order.
    """
    chunks = list(itertools.takewhile(lambda c: c is not None, chunks))
    good = [c for c in chunks if "error" not in c]
    if not good:
        return {"error": chunks[0]["error"]} if chunks else {}
    success = np.concatenate([c["success"] for c in good]).astype(bool)
    distance = np.concatenate([c["distance"] for c in good])
    merged = {
        "images": int(success.size),
        "success": success.tolist(),
        "distance": distance.tolist(),
        "success_rate": float(success.mean()),
        **{f"distortion_{k}": v for k, v in distortion_stats(distance, success).items()},
    }
    versions = sorted({c["version"] for c in good if c.get("version")})
    if versions:  # foolbox's
        merged["version"] = ", ".join(versions)
    sources = sorted({c["source"] for c in good if c.get("source")})
    if sources:  # results read from an evaluation's table: not timed or counted here
        return merged | {"source": ", ".join(sources)}
    passes = sum(c["passes"]["forward_rows"] + c["passes"]["backward_rows"] for c in good)
    wall = sum(c["timing"]["wall_s"] for c in good)
    cpu = sum(c["timing"]["cpu_s"] for c in good)
    return merged | {
        "wall_s": wall,
        "wall_s_per_image": wall / success.size,
        "passes_per_image": passes / success.size,
        # Image passes per CPU second: the cost of a pass, whatever else ran on the machine.
        "passes_per_cpu_s": passes / max(cpu, 1e-9),
        "cpu_share_min": min(c["timing"]["cpu_share"] for c in good),
    }


# Paired ratios of means: key -> (attack, reference). The first two go in the table's rows.
_PAIRS = {
    "paired": ("fmn", "cw"),
    "paired_foolbox": ("foolbox", "cw"),
    "paired_fmn_foolbox": ("fmn", "foolbox"),
}


_PAIRED = {kind: key for key, (kind, reference) in _PAIRS.items() if reference == "cw"}


def add_pairs(results: dict[str, Any]) -> None:
    """Adds to every comparison the paired statistics of FMN and foolbox against C&W."""
    for entries in results["comparisons"].values():
        for entry in entries.values():
            for key, (kind, reference) in _PAIRS.items():
                a, b = entry.get(kind), entry.get(reference)
                if not a or not b or "error" in a or "error" in b:
                    continue
                n = min(a.get("images", 0), b.get("images", 0))
                entry[key] = ratio_stats(
                    {k: a[k][:n] for k in ("success", "distance")},
                    {k: b[k][:n] for k in ("success", "distance")},
                    results.get("confidence_level", 0.95),
                ) | {"images": n}


def _ratio(paired: dict[str, Any]) -> str:
    """The ratio of means of a `_ratio_stats` result, with its interval when it has one."""
    text = f"{paired['ratio_of_means']:.4f}"
    if "ratio_of_means_low" in paired:
        text += f" [{paired['ratio_of_means_low']:.4f}, {paired['ratio_of_means_high']:.4f}]"
    return text


def markdown_report(results: dict[str, Any]) -> str:
    looks, level = results.get("looks", 1), results.get("confidence_level", 0.95)
    lines = [
        "# FMN against C&W at the paper's settings; APGD against PGD",
        "",
        f"Command: `{results['command']}` (started {results['started_utc']}, "
        f"finished {results.get('finished_utc', 'not yet: partial')}).",
        f"Commit {results['keras_takd_commit']}; {results['machine']['cpu']}, "
        f"{results['machine']['cores_usable']} cores. FMN: {results['fmn_steps']} steps.",
        "Test accuracy: "
        + ", ".join(f"{k} {v:.4f}" for k, v in results.get("test_accuracy", {}).items())
        + f"; images: the first {results['images_requested']} test images both classify "
        "correctly.",
        *(
            f"Model {name!r}: stage {info['stage']} ({info['role']}) at T = "
            f"{info['temperature']:g} of the run {info['run']}."
            for name, info in results.get("models", {}).items()
            if info.get("run")
        ),
        "",
        "Distortion: mean / median over each attack's successes. On the FMN and foolbox rows, "
        "over the first n images that attack and C&W both ran and both fooled: the per-image "
        "ratio to C&W (median, 90th percentile) and the ratio of the two means with its BCa "
        f"bootstrap interval (images resampled in pairs) at {100 * level:.2f}%"
        + (
            f", Pocock's nominal level for {looks} looks at the comparisons (overall 95%)"
            if looks > 1
            else ""
        )
        + ". Passes: forward + backward rows per image (padding included), "
        "counted inside the compiled loops; passes / CPU s compares the cost of a pass. "
        "Rows marked *reused* are read from a keras_takd evaluation's per_image.csv (not timed "
        "or counted here).",
        "",
        "| model | norm | attack | images | success | mean | median | paired n | ratio median "
        f"| ratio p90 | ratio of means [{100 * level:.4g}% CI] | s / image | passes / image "
        "| passes / CPU s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, entries in results["comparisons"].items():
        for norm, entry in entries.items():
            for kind in ("fmn", "cw", "foolbox"):
                paired = entry.get(_PAIRED.get(kind, ""), {})
                r = entry.get(kind)
                if not r:
                    continue
                if "error" in r:
                    lines.append(f"| {name} | {norm} | {kind} | - | error: {r['error'][:80]} |")
                    continue
                ratio = paired.get("images_both")
                means = _ratio(paired) if ratio else ""
                cost = (
                    "*reused* | | "
                    if r.get("source")
                    else f"{r['wall_s_per_image']:.3g} | {r['passes_per_image']:.0f} | "
                    f"{r.get('passes_per_cpu_s', float('nan')):.0f}"
                )
                lines.append(
                    f"| {name} | {norm} | {kind} | {r['images']} | {r['success_rate']:.2f} | "
                    f"{fmt(r['distortion_mean'], 4)} | {fmt(r['distortion_median'], 4)} | "
                    f"{paired.get('images_both', '') if ratio else ''} | "
                    f"{fmt(paired.get('ratio_median'), 4) if ratio else ''} | "
                    f"{fmt(paired.get('ratio_p90'), 4) if ratio else ''} | {means} | {cost} |"
                )
    peer = [
        (name, norm, entry["paired_fmn_foolbox"])
        for name, entries in results["comparisons"].items()
        for norm, entry in entries.items()
        if entry.get("paired_fmn_foolbox", {}).get("images_both")
    ]
    if peer:
        lines += [
            "",
            "Ours against foolbox's FMN on the same images (ratio of means ours / foolbox, same "
            "interval; images where ours is at or below foolbox's):",
            "",
        ]
        for name, norm, r in peer:
            lines.append(
                f"- {name} {norm}: {_ratio(r)}, n {r['images_both']}, "
                f"{r['fmn_below_or_equal']} at or below"
            )
    if results.get("floor"):
        first = next(iter(results["floor"].values()))
        lines += [
            "",
            "Per-iteration cost against the compiled forward + backward floor (model T1, batch "
            f"{first['batch_size']}, {first['iterations']} iterations a round, "
            f"{len(first['ratios'])} rounds of the floor and the attack in alternating order, "
            "both through the pass counter; attack backward rows per second / floor's; APGD at "
            "an eps that fools no row):",
            "",
        ]
        for name, f in results["floor"].items():
            rounds = ", ".join(f"{r:.2f}" for r in f["ratios"])
            lines.append(f"- {name}: {f['ratio_to_floor_median']:.2f}x (rounds {rounds})")
    if results["robust"]:
        lines += [
            "",
            "Robust accuracy at L-inf eps = 0.3 (100 steps each; PGD step 0.01, random start):",
            "",
            "| model | images | PGD-CE | APGD-CE | APGD-DLR |",
            "|---|---|---|---|---|",
        ]
        for name, r in results["robust"].items():
            if "error" in r:
                lines.append(f"| {name} | error: {r['error'][:80]} |")
                continue
            accs = " | ".join(
                f"{r[k]['robust_accuracy']:.2f}" for k in ("pgd_ce", "apgd_ce", "apgd_dlr")
            )
            lines.append(f"| {name} | {r['pgd_ce']['images']} | {accs} |")
    return "\n".join(lines) + "\n"

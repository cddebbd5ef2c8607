"""The C&W fidelity report (`cw_fidelity_to_carlini.py`): per-image agreement and its tables.

keras_takd's C&W attacks (arXiv:1608.04644) against Carlini's original code, image by image:
which sides match (same success and distortion within a tolerance), how far apart their
distortions are, where a one-image-at-a-time run first diverges from the original's solves,
and the markdown report, whose hand-written notes below a marker survive every rewrite.
"""

from __future__ import annotations

import json
import pathlib
import warnings
from typing import Any

import numpy as np
from references.carlini_original import SHIFT

from keras_takd.core import files

NAME = "cw_fidelity_to_carlini"


# The pairs compared per image: (first side, second side, column prefix of the result).
PAIRS = (
    ("original", "ours", ""),  # the comparison: keras_takd batched against the original
    ("original", "ours_single", "single_"),  # both one image at a time
    ("ours", "ours_single", "self_"),  # keras_takd against itself: the float noise floor
)


def compare(attack, x, y, sides, rtol: float):
    """Per-image rows: each side's success and distortions, and whether the sides match.

    A match is the same success and, where the first side succeeded, the same L0 or an L2 /
    L-inf within `rtol` (`within_1pct`: within 1%). `match` compares keras_takd batched with
    the original, `single_match` keras_takd one image at a time with the original and
    `self_match` keras_takd one at a time with batched; empty where a side is not cached. The
    original's success is decided by the adapter's logits and its distortions are measured
    in its own box; keras_takd's success by the Keras model.
    """
    import pandas as pd

    from keras_takd.attacks.common import perturbation_norms

    done = sides["done"]
    x, y = x[done], y[done]
    frame = pd.DataFrame({"attack": attack, "image": done, "label": y})
    norms = {}
    for side in ("original", "ours", "ours_single"):
        rows = sides[side]
        have = np.array([r is not None for r in rows], bool)
        if side == "original":
            logits = np.stack([r["logits"] for r in rows])
            success = np.array([bool(r["found"]) for r in rows]) & (logits.argmax(-1) != y)
            base = x - np.float32(SHIFT)
            adv = np.stack([r["x_adv_box"] for r in rows])
        else:
            success = np.array([bool(r["success"]) if r is not None else False for r in rows])
            base = x
            adv = np.stack(
                [r["x_adv"] if r is not None else xi for r, xi in zip(rows, x, strict=True)]
            )
        adv = np.where(success[:, None, None, None], adv, base)
        values = dict(zip(("l0", "l2", "linf"), perturbation_norms(adv, base), strict=True))
        norms[side] = (have, success, values[attack].astype(float))
        frame[f"{side}_success"] = pd.array(np.where(have, success, None), dtype="boolean")
        for metric, value in values.items():
            frame[f"{side}_{metric}"] = np.where(have, value, np.nan)
    add_pair_columns(frame, attack, rtol)
    frame["original_const"] = [_original_const(attack, str(r["log"])) for r in sides["original"]]
    for side in ("ours", "ours_single"):
        frame[f"{side}_const"] = [np.nan if r is None else float(r["const"]) for r in sides[side]]
    frame["original_cpu_seconds"] = [float(r["cpu_seconds"]) for r in sides["original"]]
    frame["ours_single_cpu_seconds"] = [
        np.nan if r is None else float(r["cpu_seconds"]) for r in sides["ours_single"]
    ]
    frame["single_max_pixel_difference"] = [
        np.nan if r is None else float(np.max(np.abs(r["x_adv"] - SHIFT - o["x_adv_box"])))
        for r, o in zip(sides["ours_single"], sides["original"], strict=True)
    ]
    frame["single_diverges_at"] = [
        None
        if r is None or "solves" not in r
        else _divergence(attack, str(o["log"]), str(r["solves"]))
        for r, o in zip(sides["ours_single"], sides["original"], strict=True)
    ]
    return frame


def add_pair_columns(frame, attack: str, rtol: float) -> None:
    """Adds each pair's relative difference, match and within-1% columns, from the sides'."""
    import pandas as pd

    for first, second, prefix in PAIRS:
        if f"{first}_{attack}" not in frame or f"{second}_{attack}" not in frame:
            continue
        a = frame[f"{first}_{attack}"].to_numpy(float)
        b = frame[f"{second}_{attack}"].to_numpy(float)
        both = ~np.isnan(a) & ~np.isnan(b)
        success_a = frame[f"{first}_success"].fillna(False).to_numpy(bool)
        success_b = frame[f"{second}_success"].fillna(False).to_numpy(bool)
        frame[f"{prefix}relative_difference"] = np.where(both, _relative_difference(a, b), np.nan)
        for column, tolerance in (("match", rtol), ("within_1pct", 1e-2)):
            value = _match(attack, success_a, a, success_b, b, tolerance)
            frame[f"{prefix}{column}"] = pd.array(np.where(both, value, None), dtype="boolean")


def _relative_difference(a, b):
    return np.abs(a - b) / np.maximum(np.maximum(a, b), 1e-12)


def _match(attack, success_a, a, success_b, b, rtol):
    """Same success and, where the first side succeeded, the same distortion."""
    close = (a == b) if attack == "l0" else np.isclose(a, b, rtol=rtol, atol=1e-6)
    return (success_a == success_b) & (close | ~success_a)


def _original_const(attack: str, log: str) -> float:
    """The c of the original's last successful solve, from what it printed (not for L2)."""
    const, last = np.nan, np.nan
    for line in log.splitlines():
        if line.startswith("try const"):
            const = float(line.split()[-1])
        elif line.startswith("Tau ") or "Equal count:" in line:
            last = const
    return last if attack != "l2" else np.nan


def solve_sequences(attack: str, log: str, solves: str) -> tuple[list[float], list[float]]:
    """What each successful solve left, per side: the original's printout and our trace.

    L0: the pixels the solution changed ("Equal count" in the original). L-inf: the new tau
    before the decrease factor, min(tau, distortion reached) ("Tau" in the original).
    """
    ours = [s for s in json.loads(solves) if s["solved"]]
    if attack == "l0":
        original = [float(line.split()[-1]) for line in log.splitlines() if "Equal count:" in line]
        return original, [float(s["changed"]) for s in ours]
    original = [float(line.split()[-1]) for line in log.splitlines() if line.startswith("Tau ")]
    return original, [min(s["tau"], s["reached"]) for s in ours]


def _divergence(attack: str, log: str, solves: str) -> str:
    """The first successful solve after which the two sides stand apart, e.g. "7 of 31/30"."""
    original, ours = solve_sequences(attack, log, solves)
    for k, (a, b) in enumerate(zip(original, ours, strict=False)):
        if not np.isclose(a, b, rtol=1e-6, atol=0):
            return f"{k + 1} of {len(original)}/{len(ours)}"
    if len(original) == len(ours):
        return f"never ({len(original)} solves)"
    return f"{min(len(original), len(ours)) + 1} of {len(original)}/{len(ours)}"


def summarize(frame, seconds: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Agreement per attack and pair of sides: success, matching distortion, their spread."""
    out = {}
    for attack, part in frame.groupby("attack", sort=False):
        out[attack] = {
            "images": len(part),
            "batched": _pair_summary(part, attack, "original", "ours", ""),
            "one_at_a_time": _pair_summary(part, attack, "original", "ours_single", "single_"),
            "noise_floor": _pair_summary(part, attack, "ours", "ours_single", "self_"),
            **seconds[attack],
        }
    return out


def _pair_summary(part, attack, first, second, prefix) -> dict[str, Any] | None:
    """One pair's counts over the images both sides have; None if there are none."""
    if f"{prefix}match" not in part:
        return None
    part = part[part[f"{prefix}match"].notna()]
    if part.empty:
        return None
    success_a = part[f"{first}_success"].astype(bool)
    success_b = part[f"{second}_success"].astype(bool)
    a, b = part[f"{first}_{attack}"], part[f"{second}_{attack}"]
    ratio = (b / a)[success_a & success_b].to_numpy(float)
    return {
        "images": len(part),
        f"{first}_success": int(success_a.sum()),
        f"{second}_success": int(success_b.sum()),
        "same_success": int((success_a == success_b).sum()),
        "match": int(part[f"{prefix}match"].astype(bool).sum()),
        "within_1pct": int(part[f"{prefix}within_1pct"].astype(bool).sum()),
        "median_relative_difference": float(part[f"{prefix}relative_difference"].median()),
        "max_relative_difference": float(part[f"{prefix}relative_difference"].max()),
        "median_ratio": float(np.median(ratio)) if ratio.size else None,
        "median_ratio_95ci": _median_interval(ratio),
        f"{first}_mean_distortion": float(a.mean()),
        f"{second}_mean_distortion": float(b.mean()),
    }


def _median_interval(ratio: np.ndarray) -> list[float] | None:
    """95% bootstrap interval of the median ratio, resampling images: BCa, or the percentile
    interval where BCa is undefined (most resamples' medians equal, e.g. all at exactly 1)."""
    from scipy import stats

    if ratio.size < 3 or np.ptp(ratio) == 0:
        return None
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():  # a degenerate BCa warns, then gives nan: next method
            warnings.simplefilter("ignore")
            result = stats.bootstrap(
                (ratio,), np.median, confidence_level=0.95, n_resamples=9999, random_state=0,
                method=method,
            )  # fmt: skip
        low, high = result.confidence_interval
        if np.isfinite(low) and np.isfinite(high):
            return [float(low), float(high)]
    return None


# Everything below this line in the markdown report is kept when the report is rewritten.
NOTES_MARKER = "<!-- Notes below this line are written by hand and kept on every rewrite. -->"


_NAMES = {"l0": "L0", "l2": "L2", "linf": "L-inf"}


_PAIR_NAMES = {
    "batched": "original / ours batched",
    "one_at_a_time": "original / ours one at a time",
    "noise_floor": "ours batched / one at a time",
}


def write_report(output_dir: pathlib.Path, frame, record: dict[str, Any]) -> None:
    """The csv, json and a markdown summary with per-image tables (hand notes kept)."""
    files.write_text_atomic(output_dir / f"{NAME}.csv", frame.to_csv(index=False))
    files.write_text_atomic(output_dir / f"{NAME}.json", json.dumps(record, indent=2) + "\n")
    write_markdown(output_dir, frame, record)


def rewrite_markdown(output_dir: pathlib.Path) -> None:
    """Redraws the markdown report from the csv and json in `output_dir`, running nothing.

    Raises:
        FileNotFoundError: the csv or the json is missing.
    """
    frame, record = read_report(output_dir)
    if frame is None:
        raise FileNotFoundError(
            f"--report_only: no {NAME}.csv and {NAME}.json in {output_dir}; expected a run's"
        )
    write_markdown(output_dir, frame, record)


def write_markdown(output_dir: pathlib.Path, frame, record: dict[str, Any]) -> None:
    """The markdown summary with per-image tables; the hand notes below the marker are kept."""
    md = output_dir / f"{NAME}.md"
    notes = ""
    if md.exists() and NOTES_MARKER in md.read_text():
        notes = md.read_text().split(NOTES_MARKER, 1)[1]
    lines = [
        "# keras_takd against Carlini's original attacks, per image",
        "",
        f"Model: {record['model']['builder']}, {record['model']['training']}, test accuracy "
        f"{record['model']['test_accuracy']:.4f}. Images: the first correctly classified MNIST "
        "test images, untargeted. A match is the same success and, for successes, the same L0 "
        f"or L2 / L-inf within rtol {record['rtol']}; within 1%: rtol 0.01. Ratio: second / "
        "first distortion over the images both fooled, median [95% bootstrap interval]. Each "
        "pair counts the images both of its sides have finished.",
        "",
        "| attack | pair | images | success | same success | match | within 1% | "
        "median / max rel. diff. | median ratio [95% CI] | mean distortion |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for attack, s in record["summary"].items():
        for pair, name in _PAIR_NAMES.items():
            if s.get(pair):
                lines.append(_summary_row(_NAMES[attack], name, s[pair]))
    lines += ["", "CPU seconds over the finished images:", ""]
    for attack, s in record["summary"].items():
        parts = [
            f"{key.removesuffix('_cpu_seconds').replace('_', ' ')} {value:.0f}"
            for key, value in s.items()
            if key.endswith("_cpu_seconds") and value
        ]
        lines.append(f"- {_NAMES[attack]}: " + ", ".join(parts))
    lines.append("")
    for attack in record["summary"]:
        lines += _image_table(frame[frame["attack"] == attack], attack)
    lines += ["Commands:", ""]
    for attack, run in record["runs"].items():
        lines += [f"- {_NAMES[attack]}: " + "; ".join(f"`{c}`" for c in run["commands"])]
    lines += ["", NOTES_MARKER + notes.rstrip("\n"), ""]
    files.write_text_atomic(md, "\n".join(lines))


def _summary_row(attack: str, name: str, s: dict[str, Any]) -> str:
    successes = [
        value for key, value in s.items() if key.endswith("_success") and key != "same_success"
    ]
    distortions = [value for key, value in s.items() if key.endswith("_mean_distortion")]
    ratio = "" if s["median_ratio"] is None else f"{s['median_ratio']:.4f}"
    if s["median_ratio_95ci"]:
        ratio += " [{:.4f}, {:.4f}]".format(*s["median_ratio_95ci"])
    return (
        f"| {attack} | {name} | {s['images']} | {successes[0]} / {successes[1]} | "
        f"{s['same_success']} | {s['match']} | {s['within_1pct']} | "
        f"{s['median_relative_difference']:.2g} / {s['max_relative_difference']:.2g} | {ratio} | "
        f"{distortions[0]:.4g} / {distortions[1]:.4g} |"
    )


def _image_table(part, attack: str) -> list[str]:
    """One markdown row per image: each side's success and distortion, and the matches."""
    import pandas as pd

    unit = " (pixels)" if attack == "l0" else ""
    fmt = (lambda v: f"{v:.0f}") if attack == "l0" else (lambda v: f"{v:.6g}")  # noqa: E731
    head = [
        "image",
        "label",
        "success (orig / batched / single)",
        f"{_NAMES[attack]}{unit} original",
        "batched",
        "single",
        "rel. diff. batched / single",
        "match batched / single",
        "c (orig / single)",
        "single diverges at solve",
    ]
    lines = [f"**{_NAMES[attack]}**", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in part.iterrows():
        cells = [str(int(r["image"])), str(int(r["label"]))]
        cells.append(
            " / ".join(_yes(r.get(f"{s}_success")) for s in ("original", "ours", "ours_single"))
        )
        cells += [_number(r.get(f"{s}_{attack}"), fmt) for s in ("original", "ours", "ours_single")]
        cells.append(
            " / ".join(
                _number(r.get(f"{p}relative_difference"), "{:.2g}".format) for p in ("", "single_")
            )
        )
        cells.append(" / ".join(_yes(r.get(f"{p}match")) for p in ("", "single_")))
        cells.append(
            " / ".join(
                _number(r.get(f"{s}_const"), "{:.4g}".format) for s in ("original", "ours_single")
            )
        )
        diverges = r.get("single_diverges_at")
        cells.append("-" if diverges is None or pd.isna(diverges) else str(diverges))
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def _yes(value) -> str:
    import pandas as pd

    return "-" if value is None or pd.isna(value) else ("yes" if bool(value) else "no")


def _number(value, fmt) -> str:
    import pandas as pd

    return "-" if value is None or pd.isna(value) else fmt(float(value))


def read_report(output_dir: pathlib.Path):
    """The rows and record of the report in `output_dir` ({} if none), in today's layout."""
    import pandas as pd

    csv, js = output_dir / f"{NAME}.csv", output_dir / f"{NAME}.json"
    if not (csv.exists() and js.exists()):
        return None, {}
    record = json.loads(js.read_text())
    if "runs" not in record:  # the layout before per-image caches: one command list
        record["runs"] = {
            attack: {
                "commands": [c for c in record["commands"] if f"--attacks={attack}" in c]
                or record["commands"],
                "keras_takd": ", ".join(record["keras_takd"]),
                "model": {"cache": record["model"]["cache"]},
                "settings": record["settings"][attack],
                "seconds": {
                    key: record["summary"][attack][key]
                    for key in ("original_cpu_seconds", "ours_cpu_seconds")
                },
            }
            for attack in record["summary"]
        }
    return pd.read_csv(csv), record

"""Every claim of `keras_takd.takd.analysis.claims` for each dataset of some results, as Markdown:
per dataset a table of the claims (claim, the paper's figure, ours, its interval and n, the
test applied, the verdict), one of the numbers behind them (a row per chain length, T and
stage) and, where FMN and C&W of one norm ran on the same images, how their measures compare.
Imports no plotting library.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Sequence

import pandas as pd

from keras_takd.core.statistics import DEFAULT_CONFIDENCE
from keras_takd.takd.analysis.claims.carlini_wagner import carlini_wagner_claims
from keras_takd.takd.analysis.claims.common import (
    NORM_ATTACKS,
    Claim,
    Context,
    attack_name,
    seeds_of,
    unsigned_interval_text,
)
from keras_takd.takd.analysis.claims.croce_hein import croce_hein_claims
from keras_takd.takd.analysis.claims.mandal_guo import mandal_guo_claims
from keras_takd.takd.analysis.claims.papernot import papernot_claims
from keras_takd.takd.analysis.replicates import declaration
from keras_takd.takd.analysis.statistics import SEED_COLUMN, attack_ratios, with_seed
from keras_takd.takd.analysis.tables import (
    chain_length,
    dataset_label,
    predictions_path,
    read_per_image,
    read_predictions,
    read_tables,
)


def check_claims(
    df: pd.DataFrame,
    dataset: str,
    per_image: pd.DataFrame | None = None,
    ci_level: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
    predictions: pd.DataFrame | None = None,
    primary_comparison: str | None = None,
    seed_half_width: float | None = None,
    validation: pd.DataFrame | None = None,
    declared_seeds: int | None = None,
) -> list[Claim]:
    """Every claim of `keras_takd.takd.analysis.claims` for one dataset of a results table.

    Args:
        df: the results table (results.csv of one or more runs).
        dataset: which dataset's rows to check.
        per_image: the per-image table of the same runs (`tables.read_per_image`), or
            None: the robustness claims are then inconclusive, without interval.
        ci_level: the level of every interval.
        seed: the bootstraps' seed.
        predictions: the models' per-image predictions (`tables.read_predictions`), or None:
            accuracy differences are then unpaired.
        primary_comparison: the comparison a study declared before it ran (e.g.
            "student-teacher@40"), reported first where the claims are made at the seed level.
        seed_half_width: the half-width a seed-level t-interval should reach: each
            seed-level comparison then says how many seeds its between-seed SD needs for it.
        validation: per-image rows of another run of the same settings, used only to
            validate a cheaper measure (FMN) against C&W at the seed level.
        declared_seeds: the seeds the study declared `primary_comparison` for (its
            `--num_seeds`); with fewer in the per-image rows the comparison is an interim
            look, not decided. None: not known.

    Raises:
        ValueError: no rows of `dataset`, a `ci_level` outside (0, 1), or per-image rows of
            several seeds, some of them missing from the results.
    """
    rows = df[df["dataset"] == dataset]
    if rows.empty:
        raise ValueError(f"no rows of dataset {dataset!r} in the results")
    if not 0 < ci_level < 1:
        raise ValueError(f"ci_level must be in (0, 1), e.g. 0.95, got {ci_level!r}")
    if per_image is not None:
        _check_seeds(rows, per_image[per_image["dataset"] == dataset], dataset)
    ctx = Context(
        rows,
        per_image,
        dataset,
        ci_level,
        seed,
        predictions,
        primary_comparison,
        seed_half_width,
        validation,
        declared_seeds,
    )
    return [
        *mandal_guo_claims(ctx),
        *papernot_claims(ctx),
        *carlini_wagner_claims(ctx),
        *croce_hein_claims(ctx),
    ]


def _check_seeds(rows: pd.DataFrame, per_image: pd.DataFrame, dataset: str) -> None:
    """Raises ValueError when the per-image rows hold several seeds, some the results lack."""
    found = sorted(int(s) for s in with_seed(per_image)[SEED_COLUMN].unique())
    known = seeds_of(rows)
    if len(found) > 1 and not set(found) <= set(known):
        raise ValueError(
            f"per-image rows of {dataset} of seeds {found}, results rows of seeds {known}: "
            "expected one seed, or a seed column in the results naming every seed of the "
            "per-image rows (the tables of the same runs)"
        )


def to_markdown(claims: Sequence[Claim], dataset: str, ci_level: float = 0.95) -> str:
    """A Markdown table of the claims, headed by the dataset's name, then the papers' words:
    each quoted sentence once, numbered, and the claims resting on it marked [q<number>]."""
    lines = [
        f"### {dataset_label(dataset)}",
        "",
        f"| source | claim | paper | ours | {ci_level:.0%} CI | n | test | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    quotes: dict[tuple[str, str], int] = {}
    for c in claims:
        claim = c.claim
        if c.quote:
            number = quotes.setdefault((c.source, c.quote), len(quotes) + 1)
            claim = f"{claim} [q{number}]"
        cells = (c.source, claim, c.paper, c.ours, c.interval, c.n, c.test, f"**{c.verdict}**")
        lines.append("| " + " | ".join(str(x).replace("|", "\\|") for x in cells) + " |")
    if quotes:
        lines += ["", "The papers' words:", ""]
        lines += [f"- [q{n}] {source}, {quote}" for (source, quote), n in quotes.items()]
    return "\n".join(lines) + "\n"


NUMBERS_COLUMNS = {
    "test_accuracy": ("accuracy", lambda v: f"{100 * v:.2f}%"),
    "sensitivity_logits_zero_fraction": ("logits grad < 1e-10", lambda v: f"{100 * v:.1f}%"),
    "sensitivity_softmax_zero_fraction": ("softmax grad < 1e-10", lambda v: f"{100 * v:.1f}%"),
    "confidence": ("confidence", lambda v: f"{v:.3f}"),
    "l0_mean": ("L0 mean (px)", lambda v: f"{v:.1f}"),
    "l2_mean": ("L2 mean", lambda v: f"{v:.3f}"),
    "linf_mean": ("L-inf mean", lambda v: f"{v:.3f}"),
    "l2_budget_success_rate": ("L2 <= budget", lambda v: f"{100 * v:.0f}%"),
    "l2_softmax_T_success_rate": ("L2 on softmax(z/T)", lambda v: f"{100 * v:.0f}%"),
}


def numbers_markdown(df: pd.DataFrame, dataset: str) -> str:
    """The numbers behind the claims, as a Markdown table: one row per (chain length, T, stage)
    of `dataset` (and seed, a column of its own, where the rows hold several), the columns of
    `NUMBERS_COLUMNS` that hold data."""
    rows = df[df["dataset"] == dataset].assign(_chain=lambda d: chain_length(d).astype(int))
    seeded = len(seeds_of(rows)) > 1
    keys = ["_chain", "temperature", "stage", *([SEED_COLUMN] if seeded else [])]
    rows = rows.sort_values(keys, kind="stable")
    columns = [c for c in NUMBERS_COLUMNS if c in rows and rows[c].notna().any()]
    header = ["chain", "T", "stage", *(["seed"] if seeded else []), "role"]
    header += [NUMBERS_COLUMNS[c][0] for c in columns]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for _, row in rows.iterrows():
        cells = [str(row["_chain"]), f"{row['temperature']:g}", str(int(row["stage"]))]
        cells += [str(int(row[SEED_COLUMN]))] if seeded else []
        cells.append(row["role"])
        cells += ["" if pd.isna(row[c]) else NUMBERS_COLUMNS[c][1](row[c]) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def render(
    results: Sequence[str | pathlib.Path],
    per_image: Sequence[str | pathlib.Path] | None = None,
    caption: str | None = None,
    ci_level: float = DEFAULT_CONFIDENCE,
    seed_half_width: float | None = None,
    validation: Sequence[str | pathlib.Path] | None = None,
) -> str:
    """The Markdown of every dataset in some results CSVs.

    Args:
        results: results CSVs (`tables.read_results`).
        per_image: per-image CSVs of the same runs; default: those beside the results CSVs
            (`tables.per_image_path`), where they exist. None found: robustness claims are
            inconclusive. The predictions beside the results CSVs (`tables.predictions_path`),
            where they exist, pair the accuracy comparisons.
        caption: a line printed above the tables.
        ci_level: the level of every interval.
        seed_half_width: see `check_claims`.
        validation: per-image CSVs of one other run of the same settings (its evaluations),
            read only to validate a cheaper measure (`check_claims`).

    Raises:
        FileNotFoundError, ValueError: see `tables.read_tables`.
    """
    table, images, paths = read_tables(results, per_image)
    other = read_per_image(validation) if validation else None
    beside = [p for p in map(predictions_path, results) if p.is_file()]
    predictions = read_predictions(beside, table) if beside else None
    parts = ["# Our results beside the papers' claims", ""]
    if caption:
        parts += [caption, ""]
    sources = ", ".join(str(p) for p in paths) or "none (verdicts without intervals)"
    parts += [
        f"Intervals: {ci_level:.0%}, paired over images where per-image data exist "
        f"(keras_takd.core.statistics; bootstrap seed 0). Per-image data: {sources}. "
        f"Per-image predictions: {', '.join(map(str, beside)) or 'none'} (without them "
        "accuracy differences are unpaired).",
        "",
        "A claim about a mean perturbation is decided by a test of the mean: the paired t-test "
        "of the per-image differences (scipy.stats.ttest_1samp), Holm-adjusted over the "
        "claim's family (its temperatures, or its roles), with the unadjusted BCa bootstrap "
        f"interval beside it; agrees when the adjusted p < {1 - ci_level:.2g} and the mean "
        "lies on the claimed side. The Wilcoxon signed-rank p, a test of the pseudo-median, "
        "is given as a secondary figure.",
        "",
    ]
    primary, declared_seeds = _declared_primary(results)
    for dataset in sorted(table["dataset"].unique()):
        checked = check_claims(
            table,
            dataset,
            images,
            ci_level,
            predictions=predictions,
            primary_comparison=primary,
            seed_half_width=seed_half_width,
            validation=other,
            declared_seeds=declared_seeds,
        )
        parts.append(to_markdown(checked, dataset, ci_level))
        parts.append(numbers_markdown(table, dataset))
        if images is not None:
            parts.append(attacks_markdown(images[images["dataset"] == dataset], ci_level))
    return "\n".join(p for p in parts if p is not None)


def attacks_markdown(per_image: pd.DataFrame, ci_level: float = DEFAULT_CONFIDENCE) -> str | None:
    """FMN against C&W on the same images, per model and norm (`statistics.attack_ratios`):
    how the two measures of a norm compare, or None where no model has both."""
    lines = []
    for cw, fmn in NORM_ATTACKS.values():
        table = attack_ratios(per_image, fmn, cw, ci_level)
        for _, row in table.iterrows():
            seed = f" seed {row[SEED_COLUMN]}" if SEED_COLUMN in table else ""
            lines.append(
                f"| {attack_name(cw).removeprefix('C&W ')} | {row['temperature']:g} | "
                f"{int(row['stage'])} {row['role']}{seed} | {row['n']} | {row[fmn]:.4g} | "
                f"{row[cw]:.4g} | {row['ratio'].estimate:.4f} "
                f"{unsigned_interval_text(row['ratio'], 4)} | {row['at_or_below']} |"
            )
    if not lines:
        return None
    return (
        "\n".join(
            [
                "FMN against C&W on the same images (those both attacks fooled), per model: the "
                f"ratio of the mean distances FMN / C&W with its {ci_level:.0%} paired BCa "
                "interval (scipy.stats.bootstrap), and the images where FMN found a perturbation "
                "at or below C&W's. Where both ran, the robustness claims above take each image's "
                "smaller.",
                "",
                f"| norm | T | model | n | FMN mean | C&W mean | FMN / C&W [{ci_level:.0%} CI] | "
                "FMN <= C&W |",
                "|---|---|---|---|---|---|---|---|",
                *lines,
            ]
        )
        + "\n"
    )


def _declared_primary(results: Sequence[str | pathlib.Path]) -> tuple[str | None, int | None]:
    """The primary comparison the runs' run.json declare and the seeds it was declared for
    (`replicates.declaration`), or (None, None).

    Raises:
        ValueError: two runs' run.json declare different ones.
    """
    declared = {}
    for path in [results] if isinstance(results, (str, pathlib.Path)) else results:
        run_json = pathlib.Path(path).parent / "run.json"
        if run_json.is_file():
            found = declaration(json.loads(run_json.read_text()))
            if found[0] is not None:
                declared[found] = run_json
    if len(declared) > 1:
        raise ValueError(
            "the runs declare different primary comparisons: "
            + "; ".join(f"{p}: {c} for {n} seeds" for (c, n), p in declared.items())
            + ": give the results of one study"
        )
    return next(iter(declared), (None, None))

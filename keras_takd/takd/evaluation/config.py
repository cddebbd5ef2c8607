"""The settings of an evaluation: one typed, validated object, and the id that names it.

`EvaluationConfig` holds everything an evaluation of `keras_takd.takd.evaluation` is asked to
do: which attacks, how many images, every option of every attack (resolved against the attack
functions' defaults), the budgets, the gradient-masking check and the shard. It is validated
once, when it is made, and passed down whole.

Its `identity(dataset, test_images)` is the part that decides the numbers (not which attacks
run, nor the shard), and `config_id` hashes it into the `eval_config` column and the cache
folder `eval/<id>/`. The identity's layout is that of every earlier release, so runs evaluated
before keep their ids and caches.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import pathlib
from collections.abc import Callable, Mapping
from typing import Any

from keras_takd.takd.schema import ALL_ATTACKS, APGD_ATTACKS, ATTACKS, FMN_ATTACKS, JSMA_ATTACK

ATTACK_FUNCTIONS = {
    "l0": "carlini_wagner_l0",
    "l2": "carlini_wagner_l2",
    "linf": "carlini_wagner_linf",
    **dict.fromkeys(FMN_ATTACKS, "fast_minimum_norm"),
    **dict.fromkeys(APGD_ATTACKS, "apgd"),
    JSMA_ATTACK: "jacobian_saliency_map",  # towards every wrong class: `units`
}
# The arguments that make one function several attacks: not options, and not in the identity.
FIXED_ARGUMENTS = {
    "fmn_l2": {"norm": "l2"},
    "fmn_linf": {"norm": "linf"},
    "fmn_l0": {"norm": "l0"},
    "apgd_ce": {"norm": "linf", "loss": "ce"},
    "apgd_dlr": {"norm": "linf", "loss": "dlr"},
}
# APGD's radius when not set: MNIST's standard L-inf eps (Madry et al.; Croce & Hein, Table 2).
DEFAULT_APGD_EPS = 0.3
# Budgets of Papernot et al.'s headline measure, by norm (MNIST values of arXiv:1511.04508).
DEFAULT_BUDGETS = {"l2": 1.0, "linf": 0.1}
# Keyword arguments of the attack functions that are not options of an evaluation.
_NOT_OPTIONS = {"targeted", "target", "allow_probabilities", "verbose"}


@dataclasses.dataclass(frozen=True)
class EvaluationConfig:
    """What an evaluation of a chain run computes (see `keras_takd.takd.evaluation`).

    Attributes:
        attacks: which of "l0", "l2", "linf" (C&W, the default) and of the optional attacks
            "fmn_l2", "fmn_linf", "fmn_l0", "apgd_ce", "apgd_dlr", "jsma" to run (any order;
            may be empty); kept in the canonical order of `schema.ALL_ATTACKS`.
        num_images: attack the first this many test images (C&W: 1,000); misclassified ones
            are skipped and counted.
        attack_options: {attack: {option: value}} over the attack functions' defaults (e.g.
            the paper's IV-C settings; APGD's "eps" defaults to `DEFAULT_APGD_EPS`). Resolved
            on creation to every option of every attack; the gradient-masking attack uses the
            L2 options.
        budgets: {"l2": ..., "linf": ...} for the fixed-budget success rates, over
            `DEFAULT_BUDGETS`.
        gradient_masking: also run L2 against softmax(logits / T) (`l2_softmax_T_*`).
        attack_images: {attack: count} to attack a different number of images with some
            attacks (e.g. {"l0": 20}: L0 costs several times L2); the gradient-masking attack
            follows "l2". Counts equal to `num_images` are dropped.
        metric_images: the attack-free metrics on this test prefix (None: all test images).
        shard_index: which contiguous block of the attacked images this process takes.
        num_shards: into how many blocks they are split.
        indicators: after each attack, check its attacked images for the indicators of attack
            failure (`schema.INDICATORS`: about a gradient per image, next to
            nothing beside a C&W attack). Not part of the identity: they change no attack's
            numbers, and their units record their own settings.

    Raises:
        ValueError: an unknown attack or option, a count < 1, or a bad shard.
    """

    attacks: tuple[str, ...] = ATTACKS
    num_images: int = 1000
    attack_options: Mapping[str, Mapping[str, Any]] | None = None
    budgets: Mapping[str, float] | None = None
    gradient_masking: bool = True
    attack_images: Mapping[str, int] | None = None
    metric_images: int | None = None
    shard_index: int = 0
    num_shards: int = 1
    indicators: bool = True

    def __post_init__(self):
        unknown = [a for a in self.attacks if a not in ALL_ATTACKS]
        if unknown:
            raise ValueError(f"unknown attack(s) {unknown}: expected some of {list(ALL_ATTACKS)}")
        for name in ("num_images", "metric_images"):
            value = getattr(self, name)
            if value is not None and int(value) < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        shard_range(self.num_images, self.shard_index, self.num_shards)
        resolved = {
            "attacks": tuple(a for a in ALL_ATTACKS if a in self.attacks),
            "attack_options": resolve_attack_options(self.attack_options),
            "budgets": {
                **DEFAULT_BUDGETS,
                **{k: float(v) for k, v in (self.budgets or {}).items()},
            },
            "attack_images": _check_attack_images(self.num_images, self.attack_images),
        }
        for name, value in resolved.items():
            object.__setattr__(self, name, value)

    @property
    def sharded(self) -> bool:
        return self.num_shards > 1

    @property
    def shard_dir(self) -> str:
        """The cache subfolder of this shard's attack units."""
        return f"shard{self.shard_index}of{self.num_shards}"

    def images_of(self, unit: str) -> int:
        """How many test images attack `unit` (an attack or the gradient-masking one) takes."""
        attack = "l2" if unit not in ALL_ATTACKS else unit
        return self.attack_images.get(attack, self.num_images)

    def block(self, unit: str) -> tuple[int, int]:
        """The images [start, stop) this shard attacks with `unit`."""
        return shard_range(self.images_of(unit), self.shard_index, self.num_shards)

    def check_test_images(self, test_images: int) -> None:
        """Raises ValueError unless every image count fits a test set of this size."""
        counts = {"num_images": self.num_images, "metric_images": self.metric_images}
        counts |= {f"attack_images {k}": v for k, v in self.attack_images.items()}
        for name, value in counts.items():
            if value is not None and not 1 <= value <= test_images:
                raise ValueError(f"{name}={value} must be in [1, {test_images}] (the test images)")

    def identity(self, dataset: str, test_images: int) -> dict:
        """The settings that decide the numbers, as hashed by `config_id`.

        `attack_images` is recorded only when it is not empty, so configurations without it
        keep the ids they always had. Likewise the optional attacks (FMN, APGD) enter only
        through the options set to other values than their functions' defaults
        (`optional_attack_options`), so that adding them to a run keeps its id and its cached
        C&W units; their defaults are thus part of the code's version, like the attacks' code.
        """
        metric_images = test_images if self.metric_images is None else self.metric_images
        config = {
            "data": {"dataset": dataset, "test_images": int(test_images)},
            "num_images": int(self.num_images),
            "metric_images": int(metric_images),
            "attack_options": {k: dict(self.attack_options[k]) for k in ATTACKS},
            "budgets": {k: float(v) for k, v in sorted(self.budgets.items())},
        }
        if self.attack_images:
            config["attack_images"] = {k: int(v) for k, v in sorted(self.attack_images.items())}
        defaults = resolve_attack_options()
        changed = {
            attack: {
                k: v for k, v in self.attack_options[attack].items() if v != defaults[attack][k]
            }
            for attack in ALL_ATTACKS
            if attack not in ATTACKS
        }
        changed = {attack: options for attack, options in changed.items() if options}
        if changed:
            config["optional_attack_options"] = changed
        return config


def resolve_attack_options(overrides: Mapping[str, Mapping[str, Any]] | None = None) -> dict:
    """Every option of every attack: the attack function's default unless overridden.

    The options of a C&W attack are its function's keyword-only arguments; those of an
    optional attack also its positional ones with a default (e.g. FMN's `steps`, APGD's
    `eps` with default `DEFAULT_APGD_EPS`), less `FIXED_ARGUMENTS`.

    Args:
        overrides: {attack: {option: value}}, e.g. {"l2": {"max_iterations": 1000}}.

    Returns:
        {attack: {option: value}} for all of `ALL_ATTACKS`, sorted by option name.

    Raises:
        ValueError: for an unknown attack or an option its function does not take.
    """
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(ALL_ATTACKS))
    if unknown:
        raise ValueError(f"unknown attack(s) {unknown}: expected some of {list(ALL_ATTACKS)}")
    resolved = {}
    for name in ALL_ATTACKS:
        defaults = _option_defaults(name)
        bad = sorted(set(overrides.get(name, {})) - set(defaults))
        if bad:
            raise ValueError(
                f"attack {name} has no option(s) {bad}: expected some of {sorted(defaults)}"
            )
        options = {**defaults, **{k: v for k, v in overrides.get(name, {}).items()}}
        resolved[name] = dict(sorted(options.items()))
    return resolved


def _option_defaults(name: str) -> dict[str, Any]:
    parameters = inspect.signature(attack_function(name)).parameters.values()
    kinds = [inspect.Parameter.KEYWORD_ONLY]
    if name not in ATTACKS:
        kinds.append(inspect.Parameter.POSITIONAL_OR_KEYWORD)
    excluded = _NOT_OPTIONS | set(FIXED_ARGUMENTS.get(name, {}))
    defaults = {
        p.name: p.default
        for p in parameters
        if p.kind in kinds and p.name not in excluded and p.default is not inspect.Parameter.empty
    }
    if name in APGD_ATTACKS:
        defaults["eps"] = DEFAULT_APGD_EPS
    return defaults


def attack_function(name: str) -> Callable:
    from keras_takd import attacks

    return getattr(attacks, ATTACK_FUNCTIONS[name])


def _check_attack_images(num_images: int, attack_images: Mapping[str, int] | None) -> dict:
    """The per-attack image counts that differ from `num_images`, checked (ValueError)."""
    overrides = dict(attack_images or {})
    unknown = sorted(set(overrides) - set(ALL_ATTACKS))
    if unknown:
        raise ValueError(
            f"attack_images names unknown attack(s) {unknown}: expected some of {list(ALL_ATTACKS)}"
        )
    for name, count in overrides.items():
        if int(count) < 1:
            raise ValueError(f"attack_images {name}={count} must be >= 1")
    return {name: int(n) for name, n in sorted(overrides.items()) if int(n) != num_images}


def config_id(config: Mapping) -> str:
    """A 12-hex-digit hash of a configuration (stable across runs and machines)."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def shard_range(num_images: int, shard_index: int, num_shards: int) -> tuple[int, int]:
    """The contiguous block [start, stop) of the first `num_images` images that a shard attacks.

    Raises:
        ValueError: unless 0 <= shard_index < num_shards and num_images >= 1.
    """
    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise ValueError(
            f"shard_index must be in [0, num_shards), got shard_index={shard_index}, "
            f"num_shards={num_shards}"
        )
    if num_images < 1:
        raise ValueError(f"num_images must be >= 1, got {num_images}")
    return num_images * shard_index // num_shards, num_images * (shard_index + 1) // num_shards


def shard_results_path(output_dir, shard_index: int, num_shards: int) -> pathlib.Path:
    """Where a shard writes its CSV by default: the results.csv of an unsharded run if N = 1."""
    name = "results.csv" if num_shards == 1 else f"results_shard{shard_index}of{num_shards}.csv"
    return pathlib.Path(output_dir) / name

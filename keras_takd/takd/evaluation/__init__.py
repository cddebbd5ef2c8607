"""Evaluate the trained chains of a run: metrics, C&W attacks, gradient masking, sharding.

The evaluation of Mandal & Guo, "Improving Defensive Distillation using Teacher Assistant"
(sections IV-C, V and VI): for every model of a `keras_takd.main` run, the attack-free metrics at
T = 1 (accuracy, both sensitivities, confidence; `keras_takd.core.metrics.model_metrics`) and the
minimal perturbations found by Carlini & Wagner's L0, L2 and L-inf attacks (arXiv:1608.04644) on
the first `num_images` test images; plus Papernot et al.'s success rate at a fixed budget
(arXiv:1511.04508) and the gradient-masking check: the same L2 attack run against
softmax(logits / T) at the chain's training temperature (columns `l2_softmax_T_*`).

Units of work and resuming. A unit is one model's metrics, or one attack on one model's block
of images. Each finished unit is a row of the run's record (`keras_takd.core.record`, table
`units`), stored with the identities it was computed for: the model's weights
(`units.weights_sha256`, a hash of the weights, not of the file) and architecture, the test
images and labels it used, the code of its module, and its settings (see `cache`). The
evaluation's configuration is also written to

    <output_dir>/eval/<config_id>/config.json

and the results CSV is rewritten atomically after every unit, so a killed evaluation loses at
most the units it was running and a rerun with the same settings computes only what is missing.
A stored unit is reused only when every identity matches: retrained to different weights,
saved with another architecture, given other test images or an edited attack, its units are
recomputed, with one line naming the unit and what differs; retrained to the same weights (the
same run with op determinism, another day), they are reused. Each unit also carries its schema
version and a checksum of its content; a unit that fails either, or lacks what its kind holds,
is recomputed with a one-line note, never trusted and never a crash. Units that earlier
versions cached as JSON files under eval/ are recomputed (they lack these identities).

Configuration. `config_id` is a hash of everything that decides the numbers: every option of
every attack (resolved against the attack functions' defaults), `num_images`, `metric_images`,
the budgets and the test set's content (`test_set_sha256` of the images and labels). Every
row written carries it in the `eval_config` column; a results CSV holding rows of another
configuration is refused (`ConfigMismatchError`) rather than mixed.
Which attacks run is not part of it: a later run may add attacks to the same results.
`attack_images` lets an attack take fewer (or more) images than `num_images`, e.g. L0, which
costs several times L2; the counts that differ are part of the configuration.

Sharding. `shard_index` / `num_shards` split the attacked images (the first `num_images` test
images) into CONTIGUOUS blocks: shard i attacks images [i * n // N, (i + 1) * n // N). Shard 0
also computes the attack-free metrics (they need no attack and are not split). A shard writes
`results_shard<i>of<N>.csv` holding SUFFICIENT STATISTICS per attack instead of means:
`<p>_attacked`, `<p>_excluded`, `<p>_successes`, `<p>_sum` (of the perturbations of successful
images), `<p>_max`, and for the budgets `<norm>_budget_within`. `merge_shards` adds them up
(mean = sum / successes, max = max of maxes), giving the table an unsharded run writes, up to
float round-off of the sums (about 1e-16 relative). Each shard CSV also records each model's
`weights_sha256`; `write_merged` refuses shards of different runs (one line naming the model
and both hashes) and, merging into a run's results.csv, writes the run's record under its
locks after checking the models against the run's.

Columns of the unsharded results CSV: the training columns (`schema.CHAIN_COLUMNS`), `stages`
(the chain length: the largest stage at the row's dataset and temperature), the
`schema.METRIC_COLUMNS` of every evaluated unit, and `eval_config`.

Where units run. `evaluate_run` hands the units it needs (`units.Unit`: which model, which
attack or metrics, which images, the settings) to an executor (`executors.Executor`, one method
`map(fn, units)` yielding (unit, result) as each finishes; `SerialExecutor`, in order in this
process, by default). A unit's compute function loads what it needs and returns its result;
the calling process alone stores each unit in the cache and writes the tables.

Modules: `config` (EvaluationConfig and its id), `runs` (the trained run, results-file checks),
`units` (a unit and its compute function), `indicator_units` (the indicators of attack
failure), `cache` (the unit cache), `executors` (where units run), `progress` (the progress
lines), `loop` (`evaluate_run`), `tables` (statistics and the CSV), `per_image` (the per-image
table), `shards` (merging).
"""

from keras_takd.core.results import ConfigMismatchError
from keras_takd.takd.evaluation.config import (
    ATTACK_FUNCTIONS,
    DEFAULT_BUDGETS,
    EvaluationConfig,
    config_id,
    resolve_attack_options,
    shard_range,
    shard_results_path,
)
from keras_takd.takd.evaluation.loop import evaluate_run
from keras_takd.takd.evaluation.per_image import (
    merge_per_image,
    merge_predictions,
    write_per_image,
)
from keras_takd.takd.evaluation.runs import Run, check_results_file, known_columns, read_run
from keras_takd.takd.evaluation.shards import merge_shards, write_merged
from keras_takd.takd.evaluation.tables import attack_statistics, final_columns, write_results

__all__ = [
    "ATTACK_FUNCTIONS",
    "DEFAULT_BUDGETS",
    "ConfigMismatchError",
    "EvaluationConfig",
    "Run",
    "attack_statistics",
    "check_results_file",
    "config_id",
    "evaluate_run",
    "final_columns",
    "known_columns",
    "merge_per_image",
    "merge_predictions",
    "merge_shards",
    "read_run",
    "resolve_attack_options",
    "shard_range",
    "shard_results_path",
    "write_per_image",
    "write_merged",
    "write_results",
]

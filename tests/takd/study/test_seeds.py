"""The study with several seeds (`python -m keras_takd.takd.study --num_seeds=2`, issue 25):
each seed's chain trained in its own folders, every model of every seed evaluated, and a rerun
that computes nothing."""

import pytest

pytestmark = pytest.mark.slow

SEEDS = (3, 4)
MODELS = [(3, 1), (3, 2), (4, 1), (4, 2)]  # (seed, stage)


def _flags(output_dir, data_dir) -> list[str]:
    """The tiny study of two seeds: one chain (T = 5) of 2 models per seed, L2 on 4 images."""
    return [
        f"--output_dir={output_dir}",
        f"--data_dir={data_dir}",
        "--dataset=mnist",
        "--stages=2",
        "--temperature=5",
        f"--seed={SEEDS[0]}",
        f"--num_seeds={len(SEEDS)}",
        "--epochs=1",
        "--batch_size=64",
        "--learning_rate=0.05",
        "--train_size=512",
        "--validation_size=64",
        "--test_size=64",
        "--attacks=l2",
        "--num_images=4",
        "--metric_images=16",
        "--l2_max_iterations=10",
        "--l2_binary_search_steps=2",
        "--nogradient_masking",
        "--noattack_verbose",
    ]


class _Counting:
    """A serial executor that remembers every unit it was handed."""

    def __init__(self):
        self.units = []

    def map(self, fn, units):
        for unit in units:
            self.units.append(unit)
            yield unit, fn(unit)


def test_a_study_of_two_seeds_trains_and_evaluates_every_model(
    cli, shared_data_dir, tmp_path, study_opening
):
    import pandas as pd

    from keras_takd.core.distillation import TrainConfig
    from keras_takd.takd.evaluation import EvaluationConfig
    from keras_takd.takd.evaluation.units import load_model
    from keras_takd.takd.study import run_study

    out = tmp_path / "seeds"
    done = cli("keras_takd.takd.study", *_flags(out, shared_data_dir))
    assert done.returncode == 0, done.stderr[-2000:]
    progress = [line for line in done.stdout.splitlines() if line.startswith("study: ")]
    assert "2 chains to train, 0 trained" in progress[0]
    assert "16 of 16 units done, 0 running, 0 left" in progress[-2]  # 2 x 2 stages, 4 x 3 units
    for seed, stage in MODELS:
        assert (out / f"mnist/T5/seed{seed}/stage{stage}/model.keras").is_file()
    assert sorted(p.name for p in (out / "mnist/init").iterdir()) == ["seed3", "seed4"]
    assert not (out / "mnist/T5/stage1").exists()
    results = pd.read_csv(out / "results.csv")
    assert list(zip(results.seed, results.stage, strict=True)) == MODELS
    assert results[["l2_attacked", "test_accuracy"]].notna().all().all()
    for stage in (1, 2):  # two trainings: each seed's own weights
        paths = [out / f"mnist/T5/seed{seed}/stage{stage}/model.keras" for seed in SEEDS]
        assert load_model(paths[0])[1] != load_model(paths[1])[1]
    per_image = pd.read_csv(out / "per_image.csv")
    assert sorted(set(zip(per_image.seed, per_image.stage, strict=True))) == MODELS
    # a rerun, in process, computes nothing
    counting = _Counting()
    data = dict(
        name="mnist", data_dir=shared_data_dir, validation_size=64, train_size=512, test_size=64
    )
    chains = dict(temperatures=[5.0], stages=2, seeds=list(SEEDS), deterministic=True)
    train = TrainConfig(epochs=1, batch_size=64, learning_rate=0.05, seed=SEEDS[0])
    l2 = {"l2": {"max_iterations": 10, "binary_search_steps": 2}}
    evaluation = EvaluationConfig(
        attacks=("l2",), num_images=4, metric_images=16, attack_options=l2, gradient_masking=False
    )
    lines = []
    run_study(out, data, chains, train, evaluation, counting, log=lines.append)
    opening = study_opening(lines)
    assert counting.units == [] and "0 chains to train, 2 trained; 16 of 16 units" in opening
    pd.testing.assert_frame_equal(pd.read_csv(out / "results.csv"), results)

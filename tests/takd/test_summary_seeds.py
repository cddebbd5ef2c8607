"""`keras_takd.takd.summary` on a trained and evaluated run of two seeds (issue 25)."""

import pytest

from keras_takd.takd.analysis.summary import summarize


@pytest.mark.slow
def test_the_summary_of_a_run_of_seeds_prints_each_seed_s_models(
    tiny_seeds_run, monkeypatch, evaluate, fake_attacks
):
    run_dir, data = tiny_seeds_run  # seeds 3 and 4, a teacher and a student at T = 5 each
    fake_attacks().install(monkeypatch)
    evaluate(run_dir, data, num_images=8, metric_images=16, attacks=("l2",), gradient_masking=False)
    lines = summarize(run_dir / "results.csv", 0.95).splitlines()
    assert "4 models" in lines[0]
    models = [
        f"mnist seed {s} T=5 stage {k} {r}"
        for s in (3, 4)
        for k, r in ((1, "teacher"), (2, "student"))
    ]
    for model in models:  # in the accuracy table, then in the attack's (indicators may follow)
        rows = [line for line in lines if model in line]
        assert len(rows) >= 2, rows
        assert "%" in rows[0] and " C&W L2 " in rows[1]
    seed_level = lines.index(next(line for line in lines if line.startswith("seed level")))
    assert lines[seed_level + 2].split()[:3] == ["student", "-", "teacher"]
    assert lines[seed_level + 2].split()[-2] == "2"  # seeds

"""keras_takd.takd.analysis.statistics: which images count."""

import math

import pandas as pd

from keras_takd.takd.analysis import statistics


def test_an_all_misclassified_model_counts_no_image():
    rows = pd.DataFrame(
        {
            "dataset": "mnist",
            "temperature": 1.0,
            "stage": [1, 1, 2, 2],
            "role": ["teacher", "teacher", "student", "student"],
            "attack": "l2",
            "image": [0, 1, 0, 1],
            "correct": [True, True, False, False],
            "success": [True, True, False, False],
            "distance": [1.0, 2.0, math.nan, math.nan],
        }
    )
    table = statistics.model_robustness(rows).set_index("stage")
    assert table.loc[1, "fooled"] == 2 and table.loc[2, "fooled"] == 0
    assert table.loc[2, "attacked"] == 0 and math.isnan(table.loc[2, "distance"].estimate)
    assert len(statistics.fooled(rows[rows["stage"] == 2])) == 0

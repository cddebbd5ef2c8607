"""A whole study as units on one executor: train the chains, evaluate them, report.

`pipeline.run_study` is the library entry point; `python -m keras_takd.takd.study` the command
(`__main__`). `chain_units` holds the training unit, `progress` the study's progress lines.
"""

from keras_takd.takd.study.pipeline import run_study

__all__ = ["run_study"]

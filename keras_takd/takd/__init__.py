"""Mandal & Guo, "Improving Defensive Distillation using Teacher Assistant": the chain study.

Teacher -> assistant -> student chains at temperature T (`chains`), their evaluation with
Carlini & Wagner's attacks (`evaluation`), the papers' claims (`claims`) and figures
(`figures`); command modules `train` (also `python -m keras_takd.main`), `evaluate`, `merge`,
`plot` and `compare`. Imports `keras_takd.core` and `keras_takd.attacks`, never
`keras_takd.smoothed`.
"""

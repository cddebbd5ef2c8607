"""Mandal & Guo, "Improving Defensive Distillation using Teacher Assistant": the chain study.

Teacher -> assistant -> student chains at temperature T (`chains`), their evaluation with
Carlini & Wagner's attacks (`evaluation`) and their analysis (`analysis`: tables, statistics,
figures, the papers' claims, the summary's tables), and a whole study as units on one
executor (`study`); command modules `train` (also `python -m keras_takd.main`), `evaluate`,
`merge`, `figures`, `claims`, `summary` and `study` (`python -m keras_takd.takd.study`). Imports
`keras_takd.core` and `keras_takd.attacks`, never `keras_takd.smoothed`.
"""

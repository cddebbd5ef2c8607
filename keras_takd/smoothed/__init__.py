"""Katz & Reches, "Knowledge Distillation via Smoothed Models and Adversarial Robustness".

Noise-injected (CNI) teachers (`noise_injection`), smoothed inference (`smoothing`), PGD
adversarial training and adversarial distillation (`adversarial`), transfer attacks
(`transfer`), the pipeline (`pipeline`), its figures (`figures`) and its command (`run`:
`python -m keras_takd.smoothed.run`). Imports `keras_takd.core` and `keras_takd.attacks`,
never `keras_takd.takd`.
"""

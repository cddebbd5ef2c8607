"""What both studies share: layers, data, models, distillation, metrics, run folders, files.

The temperature softmax (`layers`), the datasets (`data`), the classifiers (`models`), training
at temperature T and distillation (`distillation`), the attack-free metrics (`metrics`), run
folders and keyed results tables (`results`), atomic files (`files`), SavedModel export
(`export`), seeding (`seeding`) and the command-line plumbing (`cli`). Nothing here imports a
study (`keras_takd.takd`, `keras_takd.smoothed`).
"""

"""The statistics and the report of each benchmark, drawn from its JSON alone.

One module per script that has more than a table to draw: the script measures and records,
the module here computes what the report says (targets, agreement, paired ratios) and
formats it, so `--report_only` needs nothing but the JSON.
"""

"""What every benchmark shares: machine records, timing, pass counting, models, caches, reports.

The scripts in `benchmarks/` import these modules as `common.<module>` (Python puts a script's
folder on `sys.path`); the third-party runners live in `benchmarks/references/`.
"""

"""Runners of the third-party reference implementations the benchmarks compare against."""

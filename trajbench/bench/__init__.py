"""The benchmark: protocol, splits, windows, metrics, harness and the results table.

Import the pieces from their modules (``trajbench.bench.harness.run_benchmark``, ...);
this package initialiser stays empty so that importing one piece stays cheap.
"""

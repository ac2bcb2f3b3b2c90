"""ibin benchmarks: accuracy on real data with known ground truth, and speed.

Each module runs as ``python -m benchmarks.<name>`` and writes JSON to
``benchmarks/results/<name>.json`` with the machine, software versions,
parameters and the command that produced it.
"""

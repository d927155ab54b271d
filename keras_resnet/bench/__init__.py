"""Benchmarks that run their peer in the same command and report the ratio (the machines are noisy).

Each benchmark is a module here with a ``Config`` dataclass and a ``run(config) -> dict`` function; the
scripts in ``benchmarks/`` and ``kres bench`` are thin wrappers. Results are written as JSON and as a
markdown table under ``benchmarks/results/``.
"""

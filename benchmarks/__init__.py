"""Benchmarks of the Spark pipeline; each bench_*.py runs as a script (see its docstring)."""

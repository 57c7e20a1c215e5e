"""Benchmarks (see /work/shared/BENCHMARKS.md). Run e.g. `.venv/bin/python -m bench.boards --quick`."""

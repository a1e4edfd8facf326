"""Benchmark of the CDS service against a floor (a Flask app that only parses the body).

Run from the repository root: `python -m bench` (see BENCHMARKS.md)."""

"""Benchmarks: `python -m bench.edge` compares the edge data path with nginx."""

"""Benchmarks that check Canvas Studio's speed and memory goals: `python -m bench` (see bench/README.md)."""

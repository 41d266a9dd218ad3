"""The apps every server serves in the benchmarks (the same files for all of them)."""

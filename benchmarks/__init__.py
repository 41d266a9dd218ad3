"""fastserve's benchmark suite: the same apps under fastserve and its peers, measured with wrk.

Run ``python -m benchmarks --help`` from the repository root (or ``make bench``).
"""
